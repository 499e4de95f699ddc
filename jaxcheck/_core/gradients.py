"""The gradient under test read against the coordinates: a pytree like params (or another
container with the same key names: an nnx State for a Module), one flat vector, the pairs
people return ((value, grads), (grads, aux)), torch tensors; refused, naming the leaf and the
fix, where it cannot be compared (`WrongGradient`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .coords import Coords, Leaf, is_torch
from .errors import GradientTypeError, GradientValueError, WrongGradient, list_paths
from .paths import ROOT, _names, _paths_with_none, leaf_paths, qualified


def _from_torch(x: Any) -> Any:
    """A torch tensor as the NumPy array it holds (a gradient computed by torch code)."""
    return x.detach().cpu().numpy() if is_torch(x) else x


def read(coords: Coords, grad: Any) -> dict[str, np.ndarray]:
    """`GradientReader.gradient`: {checked leaf path: the gradient shaped like the leaf}."""
    return GradientReader(coords).gradient(grad)


def structure_matches(coords: Coords, tree: Any) -> bool:
    """Whether tree has a leaf of each checked leaf's shape at its path (a gradient)."""
    return GradientReader(coords).structure_matches(tree)


def is_flat(coords: Coords, grad: Any) -> bool:
    """Whether grad is one flat vector of params' length."""
    return GradientReader(coords).is_flat(grad)


def reorder(coords: Coords, flat: Any, paths: Sequence[str]) -> np.ndarray:
    """A flat vector laid out leaf by leaf in the order `paths`, in ravel_pytree order."""
    return GradientReader(coords).reorder(flat, paths)


class GradientReader:
    """A user gradient read against the coordinates (which it never changes)."""

    def __init__(self, coords: Coords):
        self.coords = coords

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
        by_path = {leaf.path: leaf for leaf in self.coords.leaves}
        missing = [leaf.path for leaf in self.coords.checked if leaf.path not in entries]
        nones = [p for p, x in _paths_with_none(grad) if x is None] if missing else []
        if nones:
            named = {_names(p): p for p in nones}
            none_paths = [leaf.path for leaf in self.coords.checked if _names(leaf.path) in named]
            if none_paths:
                raise self._located(
                    GradientTypeError(
                        f"The gradient for {list_paths([qualified(p) for p in none_paths])} is "
                        "None: grad_fn returned None there (a branch that does not compute it, a "
                        "parameter left out of the backward pass). Return an array, zeros if "
                        "that gradient is truly zero."
                    ),
                    [(p, "grad_fn returned None for it") for p in none_paths],
                )
        if missing:  # the same leaves under another container (an nnx State for a Module)
            entries = self._by_names(entries)
        extra = [p for p in entries if p not in by_path]
        missing = [leaf.path for leaf in self.coords.checked if leaf.path not in entries]
        if extra or missing:
            raise self._located(
                GradientValueError(
                    "grad_fn returned a pytree whose structure differs from params: "
                    + (f"missing {list_paths(missing)}" if missing else "")
                    + ("; " if missing and extra else "")
                    + (f"extra {list_paths(extra)}" if extra else "")
                    + ". Return gradients with exactly the structure of params (same keys and "
                    "nesting), or one flat vector in ravel_pytree(params) order."
                ),
                [(p, "not in the pytree grad_fn returned") for p in missing],
            )
        out, problems, reasons = {}, [], []
        for leaf in self.coords.checked:
            try:
                out[leaf.path] = self._leaf_gradient(leaf, entries[leaf.path])
            except (ValueError, TypeError) as e:
                problems.append(e)
                reasons.append((leaf.path, str(e)))
        if len(problems) == 1:
            kind = GradientTypeError if isinstance(problems[0], TypeError) else GradientValueError
            raise self._located(kind(str(problems[0])), reasons) from None
        # name every wrong leaf at once (the autoencoder question has two transposed gradients)
        if problems:
            kind = (GradientTypeError if all(isinstance(e, TypeError) for e in problems)
                    else GradientValueError)  # fmt: skip
            raise self._located(
                kind(
                    f"{len(problems)} gradient leaves are wrong:\n"
                    + "\n".join(f"- {e}" for e in problems)
                ),
                reasons,
            )
        return out

    def _located(self, e: WrongGradient, reasons: Sequence[tuple[str, str]]) -> WrongGradient:
        """e, naming the leaves it is about and the other checked leaves, which can still be
        compared (none where no leaf is named: the gradient as a whole is wrong)."""
        e.reasons = tuple(reasons)
        bad = {path for path, _ in e.reasons}
        e.comparable = tuple(
            leaf.path for leaf in self.coords.checked if bad and leaf.path not in bad
        )
        return e

    def structure_matches(self, tree: Any) -> bool:
        """Whether tree has a leaf of each checked leaf's shape at its path (a gradient)."""
        shapes = {_names(p): np.shape(x) for p, x in leaf_paths(tree)}
        return bool(self.coords.checked) and all(
            shapes.get(_names(leaf.path)) == leaf.shape for leaf in self.coords.checked
        )

    def _matches(self, tree: Any) -> bool:
        """Whether tree holds a value for every checked leaf (by path or by key names)."""
        if self.is_flat(tree):
            return True
        names = {_names(p) for p, _ in leaf_paths(tree)}
        return all(_names(leaf.path) in names for leaf in self.coords.checked)

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
        for leaf in self.coords.leaves:
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
        everything = flat.size == self.coords.n_flat
        by_path = {leaf.path: leaf for leaf in self.coords.leaves}
        parts, offset = {}, 0
        for path in paths:
            leaf = by_path[path]
            if leaf.dtype is None or not (everything or leaf.is_float or leaf.is_complex):
                continue
            parts[path] = flat[offset : offset + leaf.size]
            offset += leaf.size
        return np.concatenate(
            [parts[leaf.path] for leaf in self.coords.leaves if leaf.path in parts]
        )

    def _flat_vector(self, grad: Any) -> np.ndarray | None:
        """The gradient as a 1-D array if it is given in ravel_pytree order, else None."""
        if len(self.coords.leaves) == 1 and self.coords.leaves[0].path == ROOT:
            return None  # params is a single array: the gradient is shaped like it
        if not hasattr(grad, "shape") or not hasattr(grad, "dtype"):
            return None
        shape = tuple(grad.shape)
        if len(shape) == 2 and 1 in shape:
            shape = (shape[0] * shape[1],)  # a column or row vector, as in the seeds
        if len(shape) != 1:
            raise GradientValueError(
                f"grad_fn returned one array of shape {tuple(grad.shape)}; params has "
                f"{len(self.coords.leaves)} leaves. Return a pytree shaped like params, or a flat "
                f"vector of length {self.coords.n_flat} in ravel_pytree(params) order."
            )
        n_float = sum(leaf.size for leaf in self.coords.inexact_leaves)
        if shape[0] not in (self.coords.n_flat, n_float):
            raise GradientValueError(
                f"grad_fn returned a flat vector of length {shape[0]}, but ravel_pytree(params) "
                f"has {self.coords.n_flat} elements ({n_float} of them floating-point). Return the "
                "gradient of every parameter, concatenated in ravel_pytree(params) order."
            )
        has_complex = any(leaf.is_complex for leaf in self.coords.checked)
        self._check_dtype("the flat gradient vector", grad.dtype, has_complex)
        return np.asarray(grad).reshape(-1)

    def _split_flat(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        has_all = flat.size == self.coords.n_flat
        out, offset = {}, 0
        for leaf in self.coords.leaves:
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
