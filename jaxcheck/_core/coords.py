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
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .errors import format_index, list_paths
from .paths import OnlySpec, leaf_paths, library_reasons, qualified


def is_torch(x: Any) -> bool:
    """Whether x is a torch tensor (duck-typed: torch need not be installed)."""
    return type(x).__module__.split(".")[0] == "torch" and hasattr(x, "detach")


def is_linen_module(x: Any) -> bool:
    """Whether x is a flax.linen Module, found by its MRO without importing flax."""
    return any(
        c.__name__ == "Module" and c.__module__.startswith("flax.linen") for c in type(x).__mro__
    )


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
            if is_linen_module(x):
                raise TypeError(
                    f"{qualified(path)} is a flax.linen Module ({type(x).__name__}), which holds "
                    "no parameters: linen keeps them in the variables that init returns. Check "
                    "those, applying the model inside the loss:\n"
                    "    variables = model.init(jax.random.key(0), x)\n"
                    "    def loss(variables, x, y):\n"
                    "        return jnp.mean((model.apply(variables, x) - y) ** 2)\n"
                    "    jaxcheck.check_grad(loss, variables, x, y)"
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
