"""Key paths: how a leaf of a parameter pytree is named, for params, gradients, only= and
eps= alike (`keystr`, less the `.value` of flax.nnx Variables), and which leaves a model
library counts as parameters."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jax
from jax.tree_util import FlattenedIndexKey, GetAttrKey, tree_flatten_with_path

OnlySpec = str | Sequence[str] | Callable[[str], bool] | None
ROOT = "params"  # the path of params that is a single array: shown and keyed the same


def qualified(path: str) -> str:
    """The name of a leaf in a message: `params['W1']`, or `params` for a bare array."""
    return path if path == ROOT else f"{ROOT}{path}"


def _keystr(key_path: Sequence[Any]) -> str:
    """`jax.tree_util.keystr`, except that the flat index of a custom pytree without keys
    reads `[0]` (not `[<flat index 0>]`) and the root (a bare array) reads `params`."""
    if not key_path:
        return ROOT
    return "".join(f"[{k.key}]" if isinstance(k, FlattenedIndexKey) else str(k) for k in key_path)


def _is_nnx_variable(x: Any) -> bool:
    """A flax.nnx Variable (Param, BatchStat, ...) or VariableState, found without importing
    flax (an optional dependency): by the name and module of a class in its MRO."""
    return any(
        c.__name__ in ("Variable", "VariableState")
        and c.__module__.startswith(("flax.nnx", "flax.experimental.nnx"))
        for c in type(x).__mro__
    )


def _is_from(x: Any, name: str, modules: tuple[str, ...]) -> bool:
    return any(c.__name__ == name and c.__module__.startswith(modules) for c in type(x).__mro__)


def _is_eqx_module(x: Any) -> bool:
    return _is_from(x, "Module", ("equinox",))


LINEN_COLLECTIONS = ("batch_stats", "cache", "intermediates", "losses", "spectral", "perturbations")


def library_reasons(tree: Any) -> list[str]:
    """Per leaf (in `tree_leaves` order), why the model library says it is not a parameter,
    or "": what `nnx.grad`, `eqx.filter_grad` and linen's `params` collection differentiate.

    - flax.nnx: only `nnx.Param` Variables (BatchNorm statistics, RNG state are not);
    - equinox: only inexact arrays (`eqx.is_inexact_array`: a Python float such as
      `Dropout.p` is a hyperparameter, whose gradient Equinox stops on purpose);
    - flax.linen: variables {"params": ..., "batch_stats": ...}: the "params" collection.
    """
    nodes = tree_flatten_with_path(tree, is_leaf=_is_nnx_variable)[0]
    in_eqx = any(map(_is_eqx_module, jax.tree_util.tree_leaves(tree, is_leaf=_is_eqx_module)))
    linen = isinstance(tree, Mapping) and "params" in tree and len(tree) > 1
    linen = linen and all(k == "params" or k in LINEN_COLLECTIONS for k in tree)
    out = []
    for key_path, node in nodes:
        if _is_nnx_variable(node):
            kind = getattr(node, "type", type(node))  # a VariableState names its type
            reason = ""
            if not any(c.__name__ == "Param" for c in getattr(kind, "__mro__", ())):
                reason = f"nnx.{kind.__name__}, not an nnx.Param (nnx.grad leaves it out)"
            out += [reason] * len(jax.tree_util.tree_leaves(node))
            continue
        reason = ""
        if in_eqx and isinstance(node, (float, int, complex)) and not isinstance(node, bool):
            reason = "a Python number in an Equinox module (eqx.filter_grad leaves it out)"
        elif linen and key_path and getattr(key_path[0], "key", None) != "params":
            reason = f"flax collection '{key_path[0].key}', not 'params'"
        out.append(reason)
    return out


def leaf_paths(tree: Any) -> list[tuple[str, Any]]:
    """(path, leaf) for every leaf of `tree`, in `tree_leaves` order.

    The path is `keystr` of the leaf's key path (`_keystr`: a bare array is `params`, a
    custom pytree's unnamed children `[0]`, `[1]`...), except that the `.value` attribute of a
    flax.nnx Variable is left out, so an nnx State reads `['l1']['kernel']` (not
    `['l1']['kernel'].value`) like linen variables do. Only a key that is the `value`
    attribute of a Variable is dropped; a user field called `value` keeps its name. The one
    naming of paths for params, gradients, only= and eps=.
    """
    out = []
    for key_path, node in tree_flatten_with_path(tree, is_leaf=_is_nnx_variable)[0]:
        if not _is_nnx_variable(node):
            out.append((_keystr(key_path), node))
            continue
        for sub_path, x in tree_flatten_with_path(node)[0]:
            if sub_path and isinstance(sub_path[0], GetAttrKey) and sub_path[0].name == "value":
                sub_path = sub_path[1:]
            out.append((_keystr((*key_path, *sub_path)), x))
    return out


def insertion_order(tree: Any) -> list[str]:
    """Leaf paths with every dict walked in its insertion order (JAX sorts dict keys): the
    order of a flat gradient built by hand, as deeplearning.ai's `gradients_to_vector` does."""
    items: Iterable[tuple[Any, Any]]
    if isinstance(tree, dict):
        items = tree.items()
    elif type(tree) in (list, tuple):
        items = enumerate(tree)
    else:
        return [p for p, _ in leaf_paths(tree)]
    key = (lambda k: f"[{k!r}]") if isinstance(tree, dict) else (lambda i: f"[{i}]")
    return [key(k) + ("" if p == ROOT else p) for k, v in items for p in insertion_order(v)]


def _names(path: str) -> tuple[str, ...]:
    """The key names along a path, whatever the container: .l1.bias and ['l1']['bias']."""
    return tuple(re.findall(r"\w+", path))


def _paths_with_none(tree: Any) -> list[tuple[str, Any]]:
    flat = tree_flatten_with_path(tree, is_leaf=lambda x: x is None)[0]
    return [(_keystr(k), x) for k, x in flat]
