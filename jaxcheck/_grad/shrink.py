"""A failing input made as simple as it can be while it still fails (hypothesis's shrinking).

From the failing point, each element is tried at simpler values, simplest first: 0, then ±1,
then the nearest integer, a half-integer, fewer significant digits, another element's value
(fewer distinct values), and a smaller magnitude. A simplification is kept when the point
still fails, and the passes repeat until none is kept (or the budget of trials is spent).
The simplest failing input of JAX's `ldexp(x, 3)` gradient bug is x = 0; of `sinc`'s, a tiny x.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

BUDGET = 256  # predicate calls at most


def complexity(x: float, dtype: Any = np.float64) -> tuple:
    """How complicated a value is: zero < ±1 < integers < half-integers < short decimals <
    others (digits as the shortest repr in its dtype: float32's 0.0005 is short), and smaller
    magnitudes first within each."""
    if x == 0:
        return (0, 0.0)
    a = abs(x)
    if a == 1:
        return (1, 0.0)
    size = abs(math.log10(a)) if np.isfinite(a) else math.inf
    if float(x).is_integer():
        return (2, size)
    if (2 * x).is_integer():
        return (3, size)
    return (4 + _digits(x, dtype), size)


def _digits(x: float, dtype: Any) -> int:
    text = np.format_float_scientific(np.dtype(dtype).type(x), unique=True)
    mantissa = text.split("e")[0].lstrip("-").replace(".", "").rstrip("0")
    return max(len(mantissa), 1)


def candidates(x: float, others: np.ndarray, dtype: Any = np.float64) -> list[float]:
    """Simpler values to try for one element, simplest first."""
    out = [0.0, math.copysign(1.0, x), float(round(x)), math.floor(2 * x) / 2]
    out += [float(f"{x:.{d}g}") for d in (1, 2, 3)]
    out += [float(v) for v in np.unique(others)]
    out += [x / 10, x / 2]
    seen, keep = set(), []
    for v in out:
        if np.isfinite(v) and v not in seen and complexity(v, dtype) < complexity(x, dtype):
            seen.add(v)
            keep.append(v)
    return sorted(keep, key=lambda v: complexity(v, dtype))


def shrink(x: np.ndarray, fails: Callable[[np.ndarray], bool], space: Any,
           budget: int = BUDGET) -> np.ndarray:  # fmt: skip
    """The simplest point found that still `fails`, from the failing point x (flat)."""
    best = np.array(x, np.float64)
    dtypes = np.empty(best.size, object)
    for leaf, a, b in space.spans():
        dtypes[a:b] = np.dtype(leaf.dtype)
    calls = 0
    changed = True
    while changed and calls < budget:
        changed = False
        order = [-complexity(float(v), d)[0] for v, d in zip(best, dtypes)]
        for i in np.argsort(order, kind="stable"):
            others = np.delete(best, i)
            for v in candidates(float(best[i]), others, dtypes[i]):
                if calls >= budget:
                    break
                v = float(np.asarray(v).astype(dtypes[i]))  # representable in the leaf
                if complexity(v, dtypes[i]) >= complexity(float(best[i]), dtypes[i]):
                    continue
                trial = best.copy()
                trial[i] = v
                calls += 1
                if fails(trial):
                    best, changed = trial, True
                    break
    return best
