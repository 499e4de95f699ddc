"""Random directions over a leaf, and group testing: the numerics of checks that cost
O(probes), not O(n) (directional mode; `check_vjp`/`check_jvp`; order=2).

A wrong gradient shows up along a direction v as e = ⟨δ, v⟩ with δ = g − ∇f; for Gaussian v
and unit-norm directions, e ~ N(0, ‖δ‖²/n), so an error of norm ‖δ‖ is missed by all k
directions with probability erf(τ √n / (‖δ‖ √2))^k (`miss_probability`).

When a leaf fails, `locate` isolates the wrong elements by group testing: the candidates are
split into random disjoint parts, each probed by directions restricted to it, and the parts
that fail are split again. One wrong element among n is found in about log_F(n) rounds of
F · r probes. What a leaf checked this way comes to is a `DirectionalOutcome`; a leaf checked
element by element comes to a `stencils.Verdict` (`LeafOutcome` is either).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np

from . import stencils as st

FANOUT = 4  # parts each surviving cell is split into per round
PROBES = 2  # directions per part: a part is cleared only if all of them agree
ISOLATE_AT = 8  # cells this small are checked element by element (at the least)
MAX_ISOLATE = 4096  # ... and cells this large at the most (`isolate_at`)
MAX_CELLS = 64  # more failing cells than this: too many wrong elements to isolate
WIDESPREAD_FAILING = 0.75  # a round with this share of its parts failing asks whether the
WIDESPREAD_LEFT = 64  # leaf is wrong throughout (`locate`'s `widespread`, once), where more
# candidates than this are left (fewer: checking them all costs about as much)
DETECT_MISS = 1e-3  # `detectable_norm` is missed with at most this probability


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
    throughout: bool = False  # stopped: the leaf is wrong throughout (`locate`'s widespread)


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


def locate(
    probe_fn: Callable[[np.ndarray, np.ndarray], np.ndarray],
    n: int,
    rng: np.random.Generator,
    isolate: int = ISOLATE_AT,
    widespread: Callable[[], bool] | None = None,
) -> Located:
    """Split the candidates until the failing cells are small enough to check element-wise
    (at most `isolate` elements).

    probe_fn(labels, groups) -> boolean array, True where the direction (restricted to
    labels == groups[b]) disagrees. widespread() -> whether the leaf is wrong throughout
    (a sample of its elements checked one by one): asked once, at the first round in which
    WIDESPREAD_FAILING of the parts fail and they hold more than WIDESPREAD_LEFT elements. A
    leaf wrong everywhere
    (a backward scaled by 0.3) is then reported as a whole, not split down to every element.
    """
    cells = [np.arange(n)]
    probes = 0
    asked = widespread is None
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
        results = np.asarray(probe_fn(labels, groups)).reshape(len(parts), PROBES)
        bad = [bool(b) for b in np.any(results, axis=1)]
        probes += len(groups)
        failing = [p for p, b in zip(parts, bad) if b]
        left = sum(len(p) for p in failing)
        many = len(failing) >= WIDESPREAD_FAILING * len(parts) and left > WIDESPREAD_LEFT
        if many and not asked:
            asked = True
            if widespread():  # type: ignore[misc] # asked is False only with a callback
                return Located(
                    np.array([], np.int64),
                    probes,
                    f"wrong throughout: {len(failing)} of {len(parts)} parts of the leaf "
                    "disagree, and most of a random sample of its elements fails one by one "
                    "(the failures listed are that sample's): the leaf is reported as a whole",
                    throughout=True,
                )
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
class DirectionalOutcome:
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


def random_keys(rng: np.random.Generator, k: int) -> np.ndarray:
    """k random PRNG keys (uint32 pairs), one per direction."""
    return rng.integers(0, 2**32, size=(k, 2), dtype=np.uint32)


# What judging one leaf comes to: its elements' verdict, or (directional mode) its directions'.
LeafOutcome = st.Verdict | DirectionalOutcome


def elements_of(outcome: LeafOutcome | None) -> st.Verdict | None:
    """The element verdict of a leaf's outcome (a directional one's isolated candidates)."""
    return outcome.elements if isinstance(outcome, DirectionalOutcome) else outcome


def compared_of(outcome: LeafOutcome) -> st.Verdict:
    """What the leaf was compared on: its elements, or its directions."""
    return outcome.probes if isinstance(outcome, DirectionalOutcome) else outcome


def verdicts_of(outcome: LeafOutcome) -> list[st.Verdict]:
    """Every element-like verdict of a leaf's outcome (a directional one: its directions too)."""
    if isinstance(outcome, DirectionalOutcome):
        return [v for v in (outcome.probes, outcome.elements) if v is not None]
    return [outcome]
