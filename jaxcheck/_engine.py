"""The batched JAX engine: perturbed evaluations of fn in jit-compiled vmap chunks.

One leaf is perturbed at a time and only that leaf is batched: vmap leaves computations whose
inputs are all unbatched unbatched, so everything that does not depend on the leaf is computed
once per chunk rather than once per perturbation. Each leaf is compiled once, for a fixed chunk
size (the last chunk is padded): the largest power of two whose compiled working memory, as
XLA reports it, fits the budget.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from ._coords import Coords, Leaf

CHUNK_BUDGET_BYTES = 256 * 2**20  # working memory of one compiled chunk
MAX_CHUNK = 1024
POINTS_PER_ELEMENT = 4  # a full check evaluates θ ± h and θ ± 2h for every element


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
        self._cache: dict[int, tuple[Callable, int]] = {}
        self.n_compiles = 0

    def _batched(self, leaf: Leaf) -> Callable:
        coords, fn = self._coords, self._fn
        params_rebuild, args_rebuild = self._params_rebuild, self._args_rebuild

        def one(base_flat, params_dyn, args_dyn, i, v):
            values = jax.tree_util.tree_leaves(params_rebuild(params_dyn))
            values[leaf.position] = base_flat.at[i].set(v).reshape(leaf.shape)
            return fn(coords.unflatten(values), *args_rebuild(args_dyn))

        return jax.jit(jax.vmap(one, in_axes=(None, None, None, 0, 0)))

    def _compiled(self, leaf: Leaf, base: jax.Array) -> tuple[Callable, int]:
        """The leaf's executable and its chunk size, compiled once and kept.

        The size is chosen for the whole check of the leaf, whichever call comes first.
        """
        if leaf.position in self._cache:
            return self._cache[leaf.position]
        batched = self._batched(leaf)
        n_points = POINTS_PER_ELEMENT * leaf.size + 1
        size = self._chunk or chunk_size(leaf, base.dtype.itemsize, n_points)
        while True:
            idx, vals = np.zeros(size, np.int32), np.zeros(size, base.dtype)
            compiled = batched.lower(base, self._params_dyn, self._args_dyn, idx, vals).compile()
            self.n_compiles += 1
            if self._chunk or size == 1 or _working_memory(compiled) <= CHUNK_BUDGET_BYTES:
                break
            size //= 2  # activations that scale with the chunk did not fit
        self._cache[leaf.position] = compiled, size
        return compiled, size

    def evaluate(self, leaf: Leaf, idx: np.ndarray, vals: np.ndarray) -> np.ndarray:
        """f at the points where leaf element idx[k] is set to vals[k]; float64 on the host."""
        base = jax.numpy.asarray(self._values[leaf.position]).reshape(-1)
        compiled, size = self._compiled(leaf, base)
        n = len(idx)
        pad = (-n) % size
        idx = np.concatenate([idx, np.zeros(pad, idx.dtype)]).astype(np.int32)
        vals = np.concatenate([vals, np.repeat(np.asarray(base[:1]), pad)]).astype(base.dtype)
        out = [
            compiled(base, self._params_dyn, self._args_dyn, idx[s : s + size], vals[s : s + size])
            for s in range(0, len(idx), size)
        ]
        return np.concatenate([np.asarray(o, dtype=np.float64).reshape(-1) for o in out])[:n]


def _working_memory(compiled) -> int:
    """Temporary plus output bytes of a compiled chunk; 0 where the backend does not say."""
    try:
        m = compiled.memory_analysis()
        return int(m.temp_size_in_bytes + m.output_size_in_bytes)
    except Exception:  # noqa: BLE001 - an estimate we can do without
        return 0
