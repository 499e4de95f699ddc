"""The host engine: plain Python evaluation for functions JAX cannot trace (NumPy code).

Same interface as the JAX engine, one call of fn per perturbed point, as in the seeds' loops.
The perturbed leaf is a private copy, set and restored in place, so the user's arrays are
never modified.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ._coords import Coords, Leaf


class HostEngine:
    """Evaluates fn_scalar(params with one leaf's elements set to given values), one at a time."""

    name = "host"

    def __init__(
        self, fn_scalar: Callable[..., Any], values: Sequence[Any], coords: Coords, args: tuple
    ):
        self._fn = fn_scalar
        self._coords = coords
        self._values = list(values)
        self._args = args
        self.progress = None

    def evaluate(self, leaf: Leaf, idx: np.ndarray, vals: np.ndarray) -> np.ndarray:
        arr = np.array(self._values[leaf.position], copy=True)
        flat = arr.reshape(-1)  # a view of the private copy
        values = list(self._values)
        values[leaf.position] = arr
        params = self._coords.unflatten(values)
        out = np.empty(len(idx), dtype=np.float64)
        for k, (i, v) in enumerate(zip(idx, vals)):
            old = flat[i]
            flat[i] = v
            out[k] = float(self._fn(params, *self._args))
            flat[i] = old
            if self.progress is not None:
                self.progress(1)
        return out
