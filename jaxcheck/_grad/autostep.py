"""Steps chosen from the data, for checks in float32 and lower precision without x64.

The textbook step u^(1/3)·|θ| assumes |f'''| ~ |f|; on real networks |f'''| per coordinate is
often 100× smaller, and the best float32 step is then ~10× larger and ~10× more accurate
(NUMERICS.md). Rather than assume the third (or, for Richardson, the seventh) derivative,
each leaf's step is chosen where the error model says the difference is most exact: on a
sample of the leaf's elements, the method is evaluated at the default step times each of
`MULTIPLIERS`, and the smallest multiplier whose median error estimate
(κ·(noise·Σ|w| + truncation), `stencils.compare`) is within 2× of the best is kept. For
central differences that estimate is σ/h + h²|f'''|/6 up to constants, so its minimum is
the step (3σ/|f'''|)^(1/3) with |f'''| measured rather than assumed.
"""

from __future__ import annotations

import numpy as np

from .._core.coords import Leaf
from .._engine.evaluator import Evaluator
from .._numerics import stencils as st
from .._numerics.methods import Method

MULTIPLIERS = 4.0 ** np.arange(-1, 11)  # × the default step: 1/4 … 4^10, up to the cap
SAMPLE = 64  # elements per leaf the choice is made on ...
MIN_SAMPLE = 4  # ... and at the fewest, where points are evaluated one at a time
NEAR_BEST = 2.0  # steps whose median error estimate is within this factor of the best qualify


def sample_size(engine: Evaluator, points: int, rows: int) -> int:
    """Elements the step is chosen on: SAMPLE where points are evaluated in batches (the
    search is a few compiled calls); where they are evaluated one at a time (the host), as
    many as keep the search's evaluations within `points`, what checking the leaf costs."""
    if not engine.one_at_a_time:
        return SAMPLE
    return int(min(SAMPLE, max(MIN_SAMPLE, points // (rows * len(MULTIPLIERS)))))


def multiplier(
    engine: Evaluator,
    leaf: Leaf,
    stencil: st.Stencil,
    method: Method,
    g: np.ndarray,
    tol: st.Tolerance,
    cap: np.ndarray,
    checked: int | None = None,
) -> float:
    """The factor on the leaf's default steps with the smallest median error estimate.

    cap: per element, the largest step allowed (the parameter's scale): a step beyond it
    probes another region of the loss, not this derivative. checked: how many elements the
    check compares (None: all); the sample's size (`sample_size`) is budgeted by it.
    """
    n = leaf.size
    rows = len(method.offsets)
    k = min(n, sample_size(engine, (n if checked is None else checked) * rows, rows))
    idx = np.sort(np.random.default_rng([leaf.position, 7]).choice(n, k, False))
    theta, h0 = stencil.theta[idx], stencil.h[idx]
    f0 = engine.evaluate(leaf, np.array([0]), stencil.theta[:1])[0]
    scores: dict[float, float] = {}
    for m in MULTIPLIERS:
        if np.any(m * h0 > cap[idx]) and m > 1:
            break
        if len(scores) >= 3 and list(scores.values())[-1] > 4 * min(scores.values()):
            break  # past the bottom of the V
        s = st.make_stencil(theta, m * h0, method)
        if s.lost().size:
            continue
        rows = len(s.offsets)
        f = engine.evaluate(leaf, np.tile(idx, rows), s.points.reshape(-1))
        verdict = st.compare(g[idx], f0, f.reshape(rows, -1), s, method, tol)
        scores[float(m)] = float(np.median(verdict.resolution))
    if not scores or not np.isfinite(min(scores.values())):
        return 1.0
    # The smallest step within NEAR_BEST of the best estimate: the bottom of the V is flat,
    # and the truncation estimate is less reliable at the larger steps.
    best = min(scores.values())
    return min(m for m, score in scores.items() if score <= NEAR_BEST * best)


def tuned(
    engine: Evaluator,
    leaf: Leaf,
    stencil: st.Stencil,
    method: Method,
    g: np.ndarray,
    tol: st.Tolerance,
    typical: float,
    checked: int | None = None,
) -> st.Stencil:
    """The leaf's stencil at the data-chosen step (steps at most 4× the parameter scale, or
    4 where parameters are smaller than 1: a tiny parameter, such as JAX's rand_small inputs
    of 1e-5, says nothing about the scale on which f varies)."""
    cap = 4 * np.maximum(np.abs(stencil.theta.astype(np.float64)), max(typical, 1.0))
    m = multiplier(engine, leaf, stencil, method, g, tol, cap, checked)
    wider = st.make_stencil(stencil.theta, m * stencil.h, method)
    return stencil if wider.lost().size else wider
