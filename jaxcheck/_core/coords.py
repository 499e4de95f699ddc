"""The coordinate system over a parameter pytree.

Every array leaf gets its key path (as `jax.tree_util.keystr` writes it, less the `.value` of
flax.nnx Variables: see `leaf_paths`) and its offset in
`ravel_pytree(params)` order, so an element is named three ways: leaf path, multi-index
within the leaf, and flat coordinate. Only floating-point leaves are checked; the rest are
listed with the reason they were skipped, never silently cast (`ravel_pytree` would promote
them: jax issues #29593, #6135).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import FlattenedIndexKey, GetAttrKey, tree_flatten_with_path

from .errors import GradientTypeError, GradientValueError, format_index, list_paths

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
    if isinstance(tree, dict):
        items = tree.items()
    elif type(tree) in (list, tuple):
        items = enumerate(tree)
    else:
        return [p for p, _ in leaf_paths(tree)]
    key = (lambda k: f"[{k!r}]") if isinstance(tree, dict) else (lambda i: f"[{i}]")
    return [key(k) + ("" if p == ROOT else p) for k, v in items for p in insertion_order(v)]


@dataclasses.dataclass(frozen=True)
class Leaf:
    """One leaf of `params`."""

    path: str  # keystr of the leaf's key path, e.g. "['dense']['kernel']"
    position: int  # position in tree_leaves(params)
    shape: tuple[int, ...]
    dtype: Any  # numpy dtype, or None for a leaf that is not an array
    offset: int  # first flat coordinate in ravel_pytree(params) order (-1 if not an array)
    checked: bool
    skip_reason: str = ""
    # A complex leaf seen as real (`_complex.realify`): shape (*leaf shape, 2), real dtype,
    # the last axis holding (∂/∂x, −∂/∂y) pairs. Reports show the complex leaf.
    complex_pairs: bool = False

    @property
    def is_float(self) -> bool:
        return self.dtype is not None and bool(jnp.issubdtype(self.dtype, jnp.floating))

    @property
    def is_complex(self) -> bool:
        return self.dtype is not None and bool(jnp.issubdtype(self.dtype, jnp.complexfloating))

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def index(self, flat: int) -> tuple[int, ...]:
        """Multi-index within the leaf of element `flat` (C order)."""
        return tuple(int(i) for i in np.unravel_index(flat, self.shape)) if self.shape else ()


def is_torch(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "torch" and hasattr(x, "detach")


def _from_torch(x: Any) -> Any:
    """A torch tensor as the NumPy array it holds (a gradient computed by torch code)."""
    return x.detach().cpu().numpy() if is_torch(x) else x


def _names(path: str) -> tuple[str, ...]:
    """The key names along a path, whatever the container: .l1.bias and ['l1']['bias']."""
    return tuple(re.findall(r"\w+", path))


def _paths_with_none(tree: Any) -> list[tuple[str, Any]]:
    flat = tree_flatten_with_path(tree, is_leaf=lambda x: x is None)[0]
    return [(_keystr(k), x) for k, x in flat]


def _describe(x: Any) -> tuple[tuple[int, ...], Any, str]:
    """(shape, dtype, skip reason or "") of one leaf."""
    if isinstance(x, bool):
        return (), np.dtype(bool), "bool"
    if isinstance(x, int):
        return (), np.dtype(np.int64), "integer"
    if isinstance(x, float):
        return (), np.dtype(np.float64), ""
    if isinstance(x, complex):
        return (), np.dtype(np.complex128), ""
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        return (), None, f"not an array ({type(x).__name__})"
    dtype = x.dtype
    shape = tuple(int(d) for d in x.shape)
    if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        return shape, dtype, "PRNG key"
    if jnp.issubdtype(dtype, jnp.floating):
        return shape, np.dtype(dtype), "" if all(shape) else "empty"
    if jnp.issubdtype(dtype, jnp.complexfloating):
        return shape, np.dtype(dtype), "" if all(shape) else "empty"
    if jnp.issubdtype(dtype, jnp.bool_):
        return shape, np.dtype(dtype), "bool"
    if jnp.issubdtype(dtype, jnp.integer):
        return shape, np.dtype(dtype), "integer"
    return shape, dtype, f"dtype {dtype}"


def _only_matcher(only: OnlySpec) -> Callable[[str], bool]:
    if only is None:
        return lambda path: True
    if callable(only):
        return lambda path: bool(only(path))
    patterns = [only] if isinstance(only, str) else only
    if not isinstance(patterns, (list, tuple)) or not all(isinstance(p, str) for p in patterns):
        raise TypeError(
            f"only= must be a regular expression, a list of them, or a function of the leaf "
            f"path; got {only!r}. Example: only=r\"\\['W1'\\]\" or only=['W1', 'b1']."
        )
    compiled = [re.compile(p) for p in patterns]
    return lambda path: any(c.search(path) for c in compiled)


@dataclasses.dataclass(frozen=True)
class Coords:
    """All leaves of `params`, which of them are checked, and how to rebuild the tree."""

    leaves: tuple[Leaf, ...]
    treedef: Any
    n_flat: int  # length of ravel_pytree(params)

    @property
    def checked(self) -> tuple[Leaf, ...]:
        return tuple(leaf for leaf in self.leaves if leaf.checked)

    @property
    def inexact_leaves(self) -> tuple[Leaf, ...]:
        return tuple(leaf for leaf in self.leaves if leaf.is_float or leaf.is_complex)

    @property
    def skipped(self) -> tuple[tuple[str, str], ...]:
        return tuple((leaf.path, leaf.skip_reason) for leaf in self.leaves if not leaf.checked)

    @classmethod
    def build(cls, params: Any, only: OnlySpec = None) -> Coords:
        treedef = jax.tree_util.tree_structure(params)
        match = _only_matcher(only)
        leaves, offset = [], 0
        library = library_reasons(params)
        for position, (path, x) in enumerate(leaf_paths(params)):
            if is_torch(x):
                raise TypeError(
                    f"The parameter {qualified(path)} is a torch.Tensor: jaxcheck evaluates JAX "
                    "and NumPy functions. Pass t.detach().numpy() (and write fn with NumPy or "
                    "jax.numpy), or check torch code with torch.autograd.gradcheck."
                )
            shape, dtype, reason = _describe(x)
            if not reason and library[position] and (only is None or not match(path)):
                reason = library[position]  # only= naming the leaf checks it all the same
            if not reason and not match(path):
                reason = "excluded by only="
            is_array = dtype is not None
            leaves.append(
                Leaf(path, position, shape, dtype, offset if is_array else -1, not reason, reason)
            )
            offset += int(np.prod(shape, dtype=np.int64)) if is_array else 0
        coords = cls(tuple(leaves), treedef, offset)
        coords._validate(only)
        return coords

    def _validate(self, only: OnlySpec) -> None:
        if any(leaf.checked for leaf in self.leaves):
            return
        floats = [leaf.path for leaf in self.inexact_leaves]
        if not self.leaves:
            raise ValueError(
                "params is empty: it has no leaves to check. Pass the pytree of arrays that fn "
                "differentiates, e.g. {'W': W, 'b': b}."
            )
        if floats and only is not None:
            raise ValueError(
                f"only={only!r} matches none of the floating-point leaves of params: "
                f"{list_paths(floats)}. only= is a regular expression searched in these paths."
            )
        skipped = "; ".join(f"{p}: {r}" for p, r in self.skipped[:8])
        raise ValueError(
            "params has no floating-point elements to check "
            f"(skipped leaves: {skipped or 'none'}). Gradients are checked for float leaves "
            "(float16/bfloat16/float32/float64, and complex ones); cast parameters with "
            ".astype(float)."
        )

    def unflatten(self, values: Sequence[Any]) -> Any:
        return jax.tree_util.tree_unflatten(self.treedef, list(values))

    def check_finite(self, values: Sequence[Any]) -> None:
        """Raise if a checked parameter element is NaN or inf."""
        for leaf in self.checked:
            arr = np.asarray(values[leaf.position])
            bad = np.flatnonzero(~np.isfinite(arr))
            if bad.size:
                idx = leaf.index(int(bad[0]))
                raise ValueError(
                    f"{qualified(leaf.path)}{format_index(idx)} is {arr.reshape(-1)[bad[0]]} "
                    f"({bad.size} non-finite element(s) in this leaf): the gradient cannot be "
                    "checked at a point where the parameters are not finite. Re-initialize or "
                    "check the training step that produced them."
                )

    # ---- values -------------------------------------------------------------------------

    def cast(self, values: Sequence[Any], dtype_of: Callable[[Leaf], Any]) -> list[Any]:
        """Cast float leaves to `dtype_of(leaf)`, complex ones to its complex counterpart,
        keeping NumPy arrays NumPy and JAX arrays JAX."""
        out = list(values)
        for leaf in self.inexact_leaves:
            x, dtype = out[leaf.position], dtype_of(leaf)
            if leaf.is_complex:
                dtype = np.result_type(dtype, np.complex64)
            if isinstance(x, jax.Array):
                out[leaf.position] = x.astype(dtype)
            else:
                out[leaf.position] = np.asarray(x, dtype=dtype)
        return out

    # ---- the gradient under test ---------------------------------------------------------

    def gradient(self, grad: Any) -> dict[str, np.ndarray]:
        """Map a user gradient (pytree like params, or one flat vector) to checked leaves.

        Returns {leaf path: float array shaped like the leaf}; raises a ValueError or
        TypeError naming the leaf and the fix when structure, shape or dtype is wrong.
        """
        if grad is None:
            raise GradientTypeError(
                "grad_fn returned None: does it end with `return` of the gradients? Return a "
                "pytree like params, or one flat vector in ravel_pytree(params) order."
            )
        grad = jax.tree_util.tree_map(_from_torch, grad)
        grad = self._unwrapped(grad)
        flat = self._flat_vector(grad)
        if flat is not None:
            return self._split_flat(flat)
        entries = dict(leaf_paths(grad))
        nones = [p for p, x in _paths_with_none(grad) if x is None]
        by_path = {leaf.path: leaf for leaf in self.leaves}
        missing = [leaf.path for leaf in self.checked if leaf.path not in entries]
        if missing and nones:
            named = {_names(p): p for p in nones}
            none_paths = [leaf.path for leaf in self.checked if _names(leaf.path) in named]
            if none_paths:
                raise GradientTypeError(
                    f"The gradient for {list_paths([qualified(p) for p in none_paths])} is None: "
                    "grad_fn returned None there (a branch that does not compute it, a "
                    "parameter left out of the backward pass). Return an array, zeros if that "
                    "gradient is truly zero."
                )
        if missing:  # the same leaves under another container (an nnx State for a Module)
            entries = self._by_names(entries)
        extra = [p for p in entries if p not in by_path]
        missing = [leaf.path for leaf in self.checked if leaf.path not in entries]
        if extra or missing:
            raise GradientValueError(
                "grad_fn returned a pytree whose structure differs from params: "
                + (f"missing {list_paths(missing)}" if missing else "")
                + ("; " if missing and extra else "")
                + (f"extra {list_paths(extra)}" if extra else "")
                + ". Return gradients with exactly the structure of params (same keys and "
                "nesting), or one flat vector in ravel_pytree(params) order."
            )
        out, problems = {}, []
        for leaf in self.checked:
            try:
                out[leaf.path] = self._leaf_gradient(leaf, entries[leaf.path])
            except (ValueError, TypeError) as e:
                problems.append(e)
        if len(problems) == 1:
            raise problems[0]
        # name every wrong leaf at once (the autoencoder question has two transposed gradients)
        if problems:
            kind = (GradientTypeError if all(isinstance(e, TypeError) for e in problems)
                    else GradientValueError)  # fmt: skip
            raise kind(
                f"{len(problems)} gradient leaves are wrong:\n"
                + "\n".join(f"- {e}" for e in problems)
            )
        return out

    def structure_matches(self, tree: Any) -> bool:
        """Whether tree has a leaf of each checked leaf's shape at its path (a gradient)."""
        shapes = {_names(p): np.shape(x) for p, x in leaf_paths(tree)}
        return bool(self.checked) and all(
            shapes.get(_names(leaf.path)) == leaf.shape for leaf in self.checked
        )

    def _matches(self, tree: Any) -> bool:
        """Whether tree holds a value for every checked leaf (by path or by key names)."""
        if self._flat_vector_or_none(tree) is not None:
            return True
        names = {_names(p) for p, _ in leaf_paths(tree)}
        return all(_names(leaf.path) in names for leaf in self.checked)

    def _flat_vector_or_none(self, tree: Any):
        try:
            return self._flat_vector(tree)
        except (ValueError, TypeError):
            return None

    def _unwrapped(self, grad: Any) -> Any:
        """The gradients out of the pairs people return: jax.value_and_grad's (value,
        grads), and jax.grad(..., has_aux=True)'s (grads, aux)."""
        if not isinstance(grad, (tuple, list)) or len(grad) != 2 or self._matches(grad):
            return grad
        first, second = grad
        if self._matches(second) and (np.ndim(first) == 0 or isinstance(first, (tuple, list))):
            return second  # (value, grads), or ((value, aux), grads)
        if self._matches(first):
            return first  # (grads, aux)
        return grad

    def _by_names(self, entries: dict[str, Any]) -> dict[str, Any]:
        """entries re-keyed to the params' paths where the key names agree one to one
        (['l1']['bias'] for .l1.bias); an entry matching no leaf keeps its path."""
        by_names: dict[tuple[str, ...], list[str]] = {}
        for leaf in self.leaves:
            by_names.setdefault(_names(leaf.path), []).append(leaf.path)
        out = {}
        for path, x in entries.items():
            target = by_names.get(_names(path), [])
            key = target[0] if len(target) == 1 else path
            if key in out:  # two entries for one leaf: not the same leaves after all
                return entries
            out[key] = x
        return out

    def is_flat(self, grad: Any) -> bool:
        """Whether grad is one flat vector of this params' length."""
        try:
            return self._flat_vector(grad) is not None
        except (ValueError, TypeError):
            return False

    def reorder(self, flat: Any, paths: Sequence[str]) -> np.ndarray:
        """A flat vector laid out leaf by leaf in the order `paths`, in ravel_pytree order."""
        flat = np.reshape(np.asarray(flat), -1)
        everything = flat.size == self.n_flat
        by_path = {leaf.path: leaf for leaf in self.leaves}
        parts, offset = {}, 0
        for path in paths:
            leaf = by_path[path]
            if leaf.dtype is None or not (everything or leaf.is_float or leaf.is_complex):
                continue
            parts[path] = flat[offset : offset + leaf.size]
            offset += leaf.size
        return np.concatenate([parts[leaf.path] for leaf in self.leaves if leaf.path in parts])

    def _flat_vector(self, grad: Any) -> np.ndarray | None:
        """The gradient as a 1-D array if it is given in ravel_pytree order, else None."""
        if len(self.leaves) == 1 and self.leaves[0].path == ROOT:
            return None  # params is a single array: the gradient is shaped like it
        if not hasattr(grad, "shape") or not hasattr(grad, "dtype"):
            return None
        shape = tuple(grad.shape)
        if len(shape) == 2 and 1 in shape:
            shape = (shape[0] * shape[1],)  # a column or row vector, as in the seeds
        if len(shape) != 1:
            raise GradientValueError(
                f"grad_fn returned one array of shape {tuple(grad.shape)}; params has "
                f"{len(self.leaves)} leaves. Return a pytree shaped like params, or a flat vector "
                f"of length {self.n_flat} in ravel_pytree(params) order."
            )
        n_float = sum(leaf.size for leaf in self.inexact_leaves)
        if shape[0] not in (self.n_flat, n_float):
            raise GradientValueError(
                f"grad_fn returned a flat vector of length {shape[0]}, but ravel_pytree(params) "
                f"has {self.n_flat} elements ({n_float} of them floating-point). Return the "
                "gradient of every parameter, concatenated in ravel_pytree(params) order."
            )
        has_complex = any(leaf.is_complex for leaf in self.checked)
        self._check_dtype("the flat gradient vector", grad.dtype, has_complex)
        return np.asarray(grad).reshape(-1)

    def _split_flat(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        has_all = flat.size == self.n_flat
        out, offset = {}, 0
        for leaf in self.leaves:
            if leaf.dtype is None:
                continue
            if not (leaf.is_float or leaf.is_complex) and not has_all:
                continue  # a float-only vector leaves out integer, bool and key leaves
            if leaf.checked:
                part = flat[offset : offset + leaf.size].reshape(leaf.shape)
                if leaf.is_float and np.iscomplexobj(part):
                    if np.any(part.imag != 0):
                        raise GradientTypeError(
                            f"The gradient for {qualified(leaf.path)} (in the flat vector) has a "
                            "nonzero imaginary part but the parameter is real: the gradient of "
                            "a real loss with respect to a real parameter is real."
                        )
                    part = part.real
                out[leaf.path] = part
            offset += leaf.size
        return out

    @staticmethod
    def _check_dtype(where: str, dtype: Any, complex_param: bool = False) -> None:
        if dtype == jax.dtypes.float0:
            raise GradientTypeError(
                f"{where} has dtype float0 (the gradient JAX gives integer inputs); return a float "
                "array of zeros, or leave non-float parameters out of the check."
            )
        if complex_param and jnp.issubdtype(dtype, jnp.complexfloating):
            return
        if jnp.issubdtype(dtype, jnp.complexfloating):
            raise GradientTypeError(
                f"{where} is complex ({dtype}) but the parameter is real: return the real "
                "gradient (for a real loss of real parameters the gradient is real)."
            )
        if not jnp.issubdtype(dtype, jnp.floating):
            raise GradientTypeError(
                f"{where} has dtype {dtype}; a gradient must be floating-point. An integer "
                "gradient usually means an integer array was built with np.zeros(shape, int) or "
                "from integer data: build it with a float dtype."
            )

    def _leaf_gradient(self, leaf: Leaf, value: Any) -> np.ndarray:
        where = f"The gradient for {qualified(leaf.path)}"
        if not hasattr(value, "shape"):
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise GradientTypeError(f"{where} is a {type(value).__name__}; return an array.")
            value = np.asarray(value, dtype=np.float64)
        shape = tuple(int(d) for d in value.shape)
        if shape != leaf.shape:
            hint = ""
            if len(shape) == 2 and shape == leaf.shape[::-1]:
                hint = (
                    " It looks transposed: the gradient has the parameter's shape reversed, as "
                    "when dW = delta' * a is formed instead of a' * delta. Transpose it (.T) or "
                    "swap the operands of the product."
                )
            elif int(np.prod(shape, dtype=np.int64)) == leaf.size:
                hint = (
                    " It has the same number of elements: reshape it to the parameter's shape "
                    "if the layout is right."
                )
            raise GradientValueError(
                f"{where} has shape {shape}, but the parameter has shape {leaf.shape}.{hint}"
            )
        self._check_dtype(where, value.dtype, leaf.is_complex)
        return np.asarray(value)  # keeps its dtype: the tolerance depends on it
