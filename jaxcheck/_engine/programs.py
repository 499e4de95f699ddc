"""Compiled programs kept across calls: `cached_jit`, the split of a pytree into the arrays
jit traces and a key for the rest, and what XLA says a compiled program's memory is."""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

CACHE_SIZE = 64  # compiled executables kept across calls (here, and by each engine)
_JITS: collections.OrderedDict[Any, Callable] = collections.OrderedDict()


def cached_jit(key: Any, make: Callable[[], Callable]) -> Callable:
    """jax.jit(make()), kept across calls under `key` (jit's own cache is per function object)."""
    if key not in _JITS:
        _JITS[key] = jax.jit(make())
        while len(_JITS) > CACHE_SIZE:
            _JITS.popitem(last=False)
    _JITS.move_to_end(key)
    return _JITS[key]


def split_arrays(tree: Any) -> tuple[list[Any], Callable[[Sequence[Any]], Any], tuple]:
    """A pytree's array leaves (traced by jit), a rebuild function, and a key for the rest."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    is_array = [isinstance(x, (jax.Array, np.ndarray, np.generic)) for x in leaves]
    dynamic = [x for x, a in zip(leaves, is_array) if a]

    def rebuild(values: Sequence[Any]) -> Any:
        it = iter(values)
        return jax.tree_util.tree_unflatten(
            treedef, [next(it) if a else x for x, a in zip(leaves, is_array)]
        )

    static = tuple(
        (np.shape(x), str(x.dtype)) if a else _hashable(x) for x, a in zip(leaves, is_array)
    )
    return dynamic, rebuild, (treedef, static)


def _hashable(x: Any) -> Any:
    try:
        hash(x)
        return x
    except TypeError:
        return ("id", id(x))


def working_memory(compiled: jax.stages.Compiled) -> int:
    """Temporary plus output bytes of a compiled chunk; 0 where the backend does not say."""
    try:
        m = compiled.memory_analysis()
        return int(m.temp_size_in_bytes + m.output_size_in_bytes)  # type: ignore[union-attr]
    except Exception:  # noqa: BLE001 - an estimate we can do without
        return 0
