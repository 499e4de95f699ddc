"""Checks that cost O(probes), not O(n): random directions per leaf, and group testing.

`mode="directional"` compares, for k Gaussian directions v per leaf, the derivative along v
from the gradient under test, ⟨g, v⟩, with the central difference of t ↦ f(θ + t v). Both are
taken along the chord actually evaluated (θ ± h v rounded to the working dtype), and the
error model is the element-wise one (`stencils.judge`) applied to the one-dimensional
function: round-off from the noise in f, truncation from the ±2h pair. The gradient under
test is allowed what full mode allows each element, projected on the direction:
rtol·⟨|g|, |v|⟩ + atol·Σ|v_i|. Nothing scales with the number of elements.

A wrong gradient shows up as e = ⟨δ, v⟩ with δ = g − ∇f; for Gaussian v and unit-norm
directions, e ~ N(0, ‖δ‖²/n), so an error of norm ‖δ‖ is missed by all k directions with
probability erf(τ √n / (‖δ‖ √2))^k, which the report gives.

When a leaf fails, `locate` isolates the wrong elements by group testing: the candidates are
split into random disjoint parts, each probed by directions restricted to it, and the parts
that fail are split again. One wrong element among n is found in about log_F(n) rounds of
F · r probes. The surviving few candidates are then checked element by element, so they are
reported exactly as in full mode.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .._engine import batched as _engine
from .._numerics import stencils as st
from .leafwise import Session
from .plan import Judged

ALONG = len(_engine.ALONG)  # points per direction, as the engine lays them out: θ ± h v, θ ± 2h v
FANOUT = 4  # parts each surviving cell is split into per round
PROBES = 2  # directions per part: a part is cleared only if all of them agree
ISOLATE_AT = 8  # cells this small are checked element by element (at the least)
MAX_ISOLATE = 4096  # ... and cells this large at the most (`isolate_at`)
MAX_CELLS = 64  # more failing cells than this: too many wrong elements to isolate
DETECT_MISS = 1e-3  # `detectable_norm` is missed with at most this probability


def probe(
    engine,
    leaf,
    g,
    f0,
    h,
    keys,
    labels,
    groups,
    tol: st.Tolerance,
) -> st.Verdict:
    """Judge the derivative of f along each direction (keys[b], restricted to labels == groups[b]).

    g: the flat gradient under test. f0: f(θ). h: the step along the unit direction. The
    verdict has one "element" per direction. tol.g_noise: the gradient's measured rounding as
    it projects onto a unit direction (`rounding`).
    """
    ts = np.array([h, -h, 2 * h, -2 * h])  # (ALONG points per direction)
    f, s, weights = engine.evaluate_along(leaf, g, keys, labels, groups, ts)
    # f, s: [B, 4] values and ⟨g, x − θ⟩ at θ ± h v, θ ± 2h v; weights: [B, 2] ⟨|g|, |v|⟩, Σ|v|.
    analytic = (s[:, 0] - s[:, 1]) / (2 * h)
    shift = (s[:, 2] - s[:, 3]) / (4 * h) - analytic  # the ±2h chord's analytic derivative
    return st.judge_chord(
        analytic,
        shift,
        f0,
        f[:, 0],
        f[:, 1],
        f[:, 2],
        f[:, 3],
        h,
        st.Tolerance(
            u_f=tol.u_f,
            u_g=tol.u_g,
            noise_floor=tol.noise_floor,
            rtol=0.0,
            atol=tol.rtol * weights[:, 0]
            + tol.atol * weights[:, 1]
            # the check-wide floor along a unit direction: rounding errors of size
            # u·g_scale in each element project onto it with norm ~ ‖v‖₂ = 1
            + st.GRAD_FLOOR * tol.u_g * np.maximum(weights[:, 0], tol.g_scale)
            + tol.g_noise,
        ),
    )


def miss_probability(tolerance: np.ndarray, n: int, norm: float) -> float:
    """P(an error vector of this norm passes every direction): Π_b erf(τ_b √n / (‖δ‖ √2))."""
    if norm <= 0:
        return 1.0
    return float(np.prod([math.erf(t * math.sqrt(n) / (norm * math.sqrt(2))) for t in tolerance]))


def detectable_norm(tolerance: np.ndarray, n: int, miss: float = DETECT_MISS) -> float:
    """The smallest error norm missed with probability at most `miss` (bisection in log space)."""
    lo, hi = 1e-300, 1e300
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        if miss_probability(tolerance, n, mid) > miss:
            lo = mid
        else:
            hi = mid
    return hi


@dataclasses.dataclass
class Located:
    """What group testing found in one leaf."""

    candidates: np.ndarray  # element indices left to check one by one
    probes: int  # directions evaluated
    note: str  # "" when isolated; otherwise why not


def isolate_at(cost_ratio: float | None) -> int:
    """The cell size at which element checks are cheaper than another round of splitting.

    cost_ratio: a direction's cost over one element evaluation's (None: unknown, as where
    both are whole forward passes). Splitting a cell of c elements costs FANOUT · PROBES
    directions; checking its elements costs about ELEMENT_POINTS evaluations each.
    """
    if not cost_ratio:
        return ISOLATE_AT
    c = FANOUT * PROBES * cost_ratio / ELEMENT_POINTS
    return int(min(MAX_ISOLATE, max(ISOLATE_AT, c)))


ELEMENT_POINTS = 4  # evaluations an element check costs (±h, ±2h)


def locate(probe_fn, n: int, rng: np.random.Generator, isolate: int = ISOLATE_AT) -> Located:
    """Split the candidates until the failing cells are small enough to check element-wise
    (at most `isolate` elements).

    probe_fn(labels, groups) -> boolean array, True where the direction (restricted to
    labels == groups[b]) disagrees.
    """
    cells = [np.arange(n)]
    probes = 0
    while any(len(c) > isolate for c in cells):
        if len(cells) > MAX_CELLS:
            return Located(
                np.array([], np.int64),
                probes,
                f"too many wrong elements to isolate (more than {MAX_CELLS} separate groups "
                "disagree): the leaf is reported as a whole",
            )
        small = [c for c in cells if len(c) <= isolate]
        parts = []
        for c in cells:
            if len(c) > isolate:
                shuffled = rng.permutation(c)
                parts += [p for p in np.array_split(shuffled, FANOUT) if len(p)]
        labels = np.full(n, -1, np.int32)
        for j, p in enumerate(parts):
            labels[p] = j
        groups = np.repeat(np.arange(len(parts), dtype=np.int32), PROBES)
        bad = probe_fn(labels, groups).reshape(len(parts), PROBES).any(axis=1)
        probes += len(groups)
        failing = [p for p, b in zip(parts, bad) if b]
        if not failing and not small:
            return Located(
                np.array([], np.int64),
                probes,
                "the error does not concentrate on few elements: every part passes on its own "
                "(many small errors), so the leaf is reported as a whole",
            )
        cells = small + failing
    candidates = np.sort(np.concatenate(cells)) if cells else np.array([], np.int64)
    return Located(candidates, probes, "")


@dataclasses.dataclass(frozen=True)
class DirectionalVerdict:
    """One leaf checked along random directions (and, if it failed, localized)."""

    probes: st.Verdict  # the k directions over the whole leaf, one "element" each
    step: float  # the step along the unit directions
    miss_probability: float  # P(an error of norm MISS_AT·‖g‖ passes all k directions)
    detectable_norm: float  # error norm detected with probability ≥ 1 − DETECT_MISS
    elements: st.Verdict | None  # element-wise verdict of the isolated candidates
    located: Located | None  # None when the leaf passed

    @property
    def passed(self) -> bool:
        return not np.isin(self.probes.status, st.FAILING).any()


MISS_AT = 0.01  # miss_probability is reported for an error of this fraction of ‖g‖


def direction_step(
    theta: np.ndarray,
    typical: float,
    eps: float | None,
    power: float = 1.0 / 3.0,
    u: float | None = None,
) -> float:
    """The step t along a unit direction: each element moves about t/√n.

    By default t = u^p·‖θ‖ (u^p·typical·√n for an all-zero leaf), the directional analogue
    of the element-wise step u^p·max(|θ_i|, typical), p = 1/3 for central differences (1/2
    for the complex step), u the unit roundoff of θ's dtype or the coarser one fn computes in;
    with eps, t = eps·√n.
    """
    n = theta.size
    if eps is not None:
        return float(eps) * math.sqrt(n)
    c = max(st.unit_roundoff(theta.dtype), u or 0.0) ** power
    norm = float(np.linalg.norm(theta.astype(np.float64)))
    return c * (norm if norm > 0 else typical * math.sqrt(n))


def _keys(rng: np.random.Generator, k: int) -> np.ndarray:
    return rng.integers(0, 2**32, size=(k, 2), dtype=np.uint32)


def check_leaf(
    engine, leaf, g, f0, step, k, rng, judge_elements, tol: st.Tolerance
) -> DirectionalVerdict:
    """k directions over the leaf; if any disagrees, group testing and element checks.

    judge_elements(indices) -> the element-wise `Verdict` of those elements (full mode's).
    tol: for `probe`.
    """
    n = leaf.size
    whole = probe(engine, leaf, g, f0, step, _keys(rng, k), np.zeros(n, np.int32),
                  np.zeros(k, np.int32), tol)  # fmt: skip
    tolerance = whole.tolerance
    g_norm = float(np.linalg.norm(g))
    result = dict(
        probes=whole,
        step=step,
        miss_probability=miss_probability(tolerance, n, MISS_AT * g_norm),
        detectable_norm=detectable_norm(tolerance, n),
    )
    verdict = DirectionalVerdict(**result, elements=None, located=None)
    if verdict.passed:
        return verdict

    def probe_fn(labels, groups):
        keys = _keys(rng, len(groups))
        return probe(engine, leaf, g, f0, step, keys, labels, groups, tol).status == st.MISMATCH

    # Element checks on the sparse path cost a fraction of a direction: stop splitting early.
    cost = getattr(engine, "direction_cost", None)
    located = locate(probe_fn, n, rng, isolate_at(cost(leaf) if cost else None))
    elements = judge_elements(located.candidates) if located.candidates.size else None
    if elements is not None and not np.isin(elements.status, st.FAILING).any():
        located = dataclasses.replace(
            located,
            note="the candidates group testing isolated all pass element by element (the error "
            "is spread thin or sits at the resolution): the leaf is reported as a whole",
        )
    return DirectionalVerdict(**result, elements=elements, located=located)


def judge(problem, plan) -> Judged:
    """mode="directional": each checked leaf along `plan.options.directions` random directions; a
    leaf that fails is located by group testing, and its candidates checked element-wise."""
    session = Session(problem, plan)
    verdicts, used = {}, {}
    for leaf in problem.coords.checked:
        g, tol = session.gradient(leaf)
        rng = np.random.default_rng([plan.options.seed, leaf.position])
        used[leaf.path] = session.method.name
        theta = np.asarray(problem.values[leaf.position]).reshape(-1)
        step = direction_step(theta, problem.typical[leaf.path], plan.steps.get(leaf.path),
                              u=session.u_computed)  # fmt: skip

        def elements(subset=None, leaf=leaf, g=g, tol=tol):
            return session.elements(leaf, g, tol, subset)

        state = rng.bit_generator.state
        verdict = check_leaf(session.engine, leaf, g, problem.f0, step,
                             plan.options.directions, rng, elements, tol)  # fmt: skip
        rounding = problem.rounding
        if not verdict.passed and rounding is not None:
            # Along a unit direction the elements' rounding adds up to about its RMS.
            floor = rounding.floor(leaf.path)
            tol = tol.replace(g_noise=float(np.sqrt(np.mean(np.square(floor)))))
            rng.bit_generator.state = state  # the same directions, judged with it
            again = check_leaf(session.engine, leaf, g, problem.f0, step,
                               plan.options.directions, rng, elements, tol)  # fmt: skip
            if again.passed:
                session.rescued += int(np.isin(verdict.probes.status, st.FAILING).sum())
            verdict = again
        unstable = None if rounding is None else rounding.unstable.get(leaf.path)
        if unstable is not None and verdict.elements is None:
            # a gradient that changes between calls: its elements are judged (and marked)
            verdict = dataclasses.replace(verdict, elements=elements(np.flatnonzero(unstable)))
        verdicts[leaf.path] = verdict
    return session.finish(verdicts, used, {})
