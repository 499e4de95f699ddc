"""Checks that cost O(probes), not O(n): random directions per leaf, and group testing.

`mode="directional"` compares, for k Gaussian directions v per leaf, the derivative along v
from the gradient under test, ⟨g, v⟩, with the central difference of t ↦ f(θ + t v). Both are
taken along the chord actually evaluated (θ ± h v rounded to the working dtype), and the
error model is the element-wise one (`stencils.compare`) applied to the one-dimensional
function: round-off from the noise in f, truncation from the ±2h pair. The gradient under
test is allowed what full mode allows each element, projected on the direction:
rtol·⟨|g|, |v|⟩ + atol·Σ|v_i|. Nothing scales with the number of elements.

An error of norm ‖δ‖ is missed by all k directions with a probability the report gives; a
leaf that fails is located by group testing (`_numerics/directions.py`), and the surviving
few candidates are checked element by element, so they are reported exactly as in full mode.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .._core.coords import Leaf
from .._engine import batched as _engine
from .._engine.evaluator import Evaluator
from .._numerics import stencils as st
from .._numerics.directions import (
    MISS_AT,
    DirectionalOutcome,
    detectable_norm,
    direction_step,
    isolate_at,
    locate,
    miss_probability,
    random_keys,
)
from .mode import Judged
from .plan import Plan
from .problem import Problem
from .session import Session

WIDESPREAD_SAMPLE = 32  # elements checked one by one to tell a leaf wrong throughout
ALONG = len(_engine.ALONG)  # points per direction, as the engine lays them out: θ ± h v, θ ± 2h v


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
    return st.compare_chord(
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
            g_floor=tol.g_floor,
            noise_floor=tol.noise_floor,
            rtol=0.0,
            atol=tol.rtol * weights[:, 0]
            + tol.atol * weights[:, 1]
            # the check-wide floor along a unit direction: rounding errors of size
            # u·g_scale in each element project onto it with norm ~ ‖v‖₂ = 1
            + tol.g_floor * tol.u_g * np.maximum(weights[:, 0], tol.g_scale)
            + tol.g_noise,
        ),
    )


def check_leaf(
    engine, leaf, g, f0, step, k, rng, check_elements, tol: st.Tolerance
) -> DirectionalOutcome:
    """k directions over the leaf; if any disagrees, group testing and element checks.

    check_elements(indices) -> the element-wise `Verdict` of those elements (full mode's).
    tol: for `probe`.
    """
    n = leaf.size
    whole = probe(engine, leaf, g, f0, step, random_keys(rng, k), np.zeros(n, np.int32),
                  np.zeros(k, np.int32), tol)  # fmt: skip
    tolerance = whole.tolerance
    g_norm = float(np.linalg.norm(g))
    result = dict(
        probes=whole,
        step=step,
        miss_probability=miss_probability(tolerance, n, MISS_AT * g_norm),
        detectable_norm=detectable_norm(tolerance, n),
    )
    verdict = DirectionalOutcome(**result, elements=None, located=None)
    if verdict.passed:
        return verdict

    def probe_fn(labels: np.ndarray, groups: np.ndarray) -> np.ndarray:
        keys = random_keys(rng, len(groups))
        return probe(engine, leaf, g, f0, step, keys, labels, groups, tol).status == st.MISMATCH

    sampled: list[st.Verdict] = []

    def widespread() -> bool:
        """Whether most of a random sample of the leaf's elements fails one by one."""
        idx = np.sort(rng.choice(n, min(n, WIDESPREAD_SAMPLE), replace=False))
        sampled.append(check_elements(idx))  # the whole leaf's, the sample's elements set
        return bool(np.isin(sampled[0].status[idx], st.FAILING).mean() >= 0.5)

    # Element checks on the sparse path cost a fraction of a direction: stop splitting early.
    located = locate(probe_fn, n, rng, isolate_at(engine.direction_cost(leaf)), widespread)
    if located.throughout:  # the sample's elements stand for the leaf (and its diagnosis)
        return DirectionalOutcome(**result, elements=sampled[0], located=located)
    elements = check_elements(located.candidates) if located.candidates.size else None
    if elements is not None and not np.isin(elements.status, st.FAILING).any():
        located = dataclasses.replace(
            located,
            note="the candidates group testing isolated all pass element by element (the error "
            "is spread thin or sits at the resolution): the leaf is reported as a whole",
        )
    return DirectionalOutcome(**result, elements=elements, located=located)


def judge(problem: Problem, plan: Plan, evaluator: Evaluator | None) -> Judged:
    """mode="directional": each checked leaf along `plan.options.directions` random directions; a
    leaf that fails is located by group testing, and its candidates checked element-wise."""
    assert evaluator is not None  # `evaluators.choose` made one
    session = Session(problem, plan, evaluator)
    verdicts, used = {}, {}
    for leaf in problem.coords.checked:
        g, tol = session.gradient(leaf)
        rng = np.random.default_rng([plan.options.seed, leaf.position])
        used[leaf.path] = session.method.name
        theta = np.asarray(problem.values[leaf.position]).reshape(-1)
        step = direction_step(theta, problem.typical[leaf.path], plan.steps.get(leaf.path),
                              u=session.u_computed)  # fmt: skip

        def elements(
            subset: np.ndarray | None = None,
            leaf: Leaf = leaf,
            g: np.ndarray = g,
            tol: st.Tolerance = tol,
        ) -> st.Verdict:
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
