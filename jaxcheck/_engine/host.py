"""The host engine: plain Python evaluation for functions JAX cannot trace (NumPy code).

Same interface as the JAX engine, one call of fn per perturbed point,
as in the course exercises' loops.
The perturbed leaf is a private copy, set and restored in place, so the user's arrays are
never modified.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._core.coords import Coords, Leaf
from . import journal as _journal
from . import progress as _progress
from .progress import Progress

BLOCK = 64  # points per journal entry


class HostEngine:
    """Evaluates fn_scalar(params with one leaf's elements set to given values), one at a time."""

    name = "host"

    n_devices = 1
    one_at_a_time = True

    def __init__(
        self,
        fn_scalar: Callable[..., Any],
        values: Sequence[Any],
        coords: Coords,
        args: tuple,
        *,
        progress: Progress | None = None,
        journal: Any = None,
    ):
        self._fn = fn_scalar
        self._coords = coords
        self._values = list(values)
        self._args = args
        self.progress = progress
        self.journal = journal  # a `_journal.Journal`: blocks recorded there are not run again

    def close(self) -> None:
        """The progress bar and the journal closed (the journal's note stays readable)."""
        if self.progress is not None:
            self.progress.close()
        if self.journal is not None:
            self.journal.close()

    def direction_cost(self, leaf: Leaf) -> float | None:
        """Unknown: a direction and an element are both one evaluation of fn."""
        return None

    def evaluate(self, leaf: Leaf, idx: np.ndarray, vals: np.ndarray) -> np.ndarray:
        """f at the points where leaf element idx[k] is set to vals[k], in blocks of BLOCK
        points (the journal's unit)."""
        if self.progress is not None:
            self.progress.at(leaf.path)
        parts = []
        for s in range(0, len(idx), BLOCK):
            block = (idx[s : s + BLOCK], vals[s : s + BLOCK])
            (out,) = _journal.through(
                self.journal, (leaf.position, "element"), block,
                lambda block=block: [self._timed(leaf, *block)],
            )  # fmt: skip
            parts.append(out)
        return np.concatenate(parts) if parts else np.empty(0)

    def _timed(self, leaf: Leaf, idx: np.ndarray, vals: np.ndarray) -> np.ndarray:
        """`_evaluate`, its time told to the progress (a block of the host's points is its
        chunk: the cost line's pace)."""
        start = _progress.clock()
        out = self._evaluate(leaf, idx, vals)
        if self.progress is not None:
            self.progress.pace(len(idx), _progress.clock() - start)
        return out

    def _evaluate(self, leaf: Leaf, idx: np.ndarray, vals: np.ndarray) -> np.ndarray:
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
                self.progress.update(1)
        return out

    def evaluate_leaf(self, leaf: Leaf, rows: np.ndarray) -> np.ndarray:
        """As `JaxEngine.evaluate_leaf`: f with the whole leaf set to each row, one call each."""
        if self.progress is not None:
            self.progress.at(leaf.path)
        values = list(self._values)
        shape = np.shape(values[leaf.position])
        out = []
        for x in rows:
            values[leaf.position] = np.asarray(x).reshape(shape)
            out.append(float(self._fn(self._coords.unflatten(values), *self._args)))
            if self.progress is not None:
                self.progress.update(1)
        return np.asarray(out, np.float64)

    def evaluate_along(
        self,
        leaf: Leaf,
        grad: np.ndarray,
        keys: np.ndarray,
        labels: np.ndarray,
        groups: np.ndarray,
        ts: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """As `JaxEngine.evaluate_along`, with directions drawn by NumPy from the same keys."""
        if self.progress is not None:
            self.progress.at(leaf.path)
        theta = np.asarray(self._values[leaf.position])
        flat = theta.reshape(-1)
        values = list(self._values)
        f = np.empty((len(keys), len(ts)))
        s = np.empty((len(keys), len(ts)))
        weights = np.empty((len(keys), 2))
        for b, (key, group) in enumerate(zip(keys, groups)):
            v = np.random.default_rng(key).standard_normal(flat.size) * (labels == group)
            v /= max(float(np.linalg.norm(v)), np.finfo(np.float64).tiny)
            for j, t in enumerate(ts):
                x = (flat + t * v).astype(flat.dtype)
                values[leaf.position] = x.reshape(theta.shape)
                f[b, j] = float(self._fn(self._coords.unflatten(values), *self._args))
                s[b, j] = float(np.dot(grad, x.astype(np.float64) - flat))
                if self.progress is not None:
                    self.progress.update(1)
            weights[b] = np.dot(np.abs(grad), np.abs(v)), np.sum(np.abs(v))
        return f, s, weights
