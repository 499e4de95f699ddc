"""The batched JAX engine: perturbed evaluations of fn in jit-compiled vmap chunks.

One leaf is perturbed at a time and only that leaf is batched: vmap leaves computations whose
inputs are all unbatched unbatched, so everything that does not depend on the leaf is computed
once per chunk rather than once per perturbation. Chunks have a fixed size per leaf (the last
one is padded with the unperturbed point), so each leaf compiles once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from ._coords import Coords, Leaf

CHUNK_BUDGET_BYTES = 256 * 2**20  # perturbed leaf copies held at once, per chunk
MAX_CHUNK = 1024


def split_arrays(tree: Any) -> tuple[list[Any], Callable[[Sequence[Any]], Any]]:
    """Separate a pytree's array leaves (traced by jit) from the rest (closed over)."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    is_array = [isinstance(x, (jax.Array, np.ndarray, np.generic)) for x in leaves]
    dynamic = [x for x, a in zip(leaves, is_array) if a]

    def rebuild(values: Sequence[Any]) -> Any:
        it = iter(values)
        return treedef.unflatten([next(it) if a else x for x, a in zip(leaves, is_array)])

    return dynamic, rebuild


def chunk_size(leaf: Leaf, itemsize: int, n_points: int) -> int:
    """A power of two: as many perturbed copies of the leaf as fit the budget, at most n_points."""
    per_point = max(leaf.size * itemsize * 4, 1)  # the copy, its scatter and reshape
    fits = max(1, min(MAX_CHUNK, CHUNK_BUDGET_BYTES // per_point))
    wanted = 1 << max(0, int(n_points - 1).bit_length())
    return 1 << (min(fits, wanted).bit_length() - 1)


class JaxEngine:
    """Evaluates fn_scalar(params with one leaf's elements set to given values)."""

    name = "jax"

    def __init__(
        self,
        fn_scalar: Callable[..., Any],
        values: Sequence[Any],
        coords: Coords,
        args: tuple,
        chunk: int | None = None,
    ):
        self._fn = fn_scalar
        self._coords = coords
        self._values = list(values)
        self._params_dyn, self._params_rebuild = split_arrays(coords.unflatten(self._values))
        self._args_dyn, self._args_rebuild = split_arrays(args)
        self._chunk = chunk
        self._compiled: dict[int, Callable] = {}
        self.n_compiles = 0

    def _batched(self, leaf: Leaf) -> Callable:
        if leaf.position in self._compiled:
            return self._compiled[leaf.position]
        coords, fn = self._coords, self._fn
        params_rebuild, args_rebuild = self._params_rebuild, self._args_rebuild

        def one(base_flat, params_dyn, args_dyn, i, v):
            values = jax.tree_util.tree_leaves(params_rebuild(params_dyn))
            values[leaf.position] = base_flat.at[i].set(v).reshape(leaf.shape)
            return fn(coords.unflatten(values), *args_rebuild(args_dyn))

        def count_and_run(*a):
            self.n_compiles += 1  # runs only while tracing, i.e. once per compilation
            return jax.vmap(one, in_axes=(None, None, None, 0, 0))(*a)

        self._compiled[leaf.position] = jax.jit(count_and_run)
        return self._compiled[leaf.position]

    def evaluate(self, leaf: Leaf, idx: np.ndarray, vals: np.ndarray) -> np.ndarray:
        """f at the points where leaf element idx[k] is set to vals[k]; float64 on the host."""
        base = jax.numpy.asarray(self._values[leaf.position]).reshape(-1)
        batched = self._batched(leaf)
        n = len(idx)
        size = self._chunk or chunk_size(leaf, base.dtype.itemsize, n)
        pad = (-n) % size
        idx = np.concatenate([idx, np.zeros(pad, idx.dtype)])
        vals = np.concatenate([vals, np.repeat(np.asarray(base[:1]), pad).astype(vals.dtype)])
        out = [
            batched(base, self._params_dyn, self._args_dyn, idx[s : s + size], vals[s : s + size])
            for s in range(0, len(idx), size)
        ]
        return np.concatenate([np.asarray(o, dtype=np.float64).reshape(-1) for o in out])[:n]
