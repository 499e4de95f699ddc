"""Complex parameters, checked as pairs of real numbers.

A complex leaf z = x + iy of shape S is seen by the rest of the checker as a real leaf of
shape (*S, 2) holding (x, y): its elements are perturbed, batched, judged and located like
any others, real and imaginary parts in the same batches. fn gets z back unchanged
(`lax.complex(x, y)` is exact).

The gradient follows JAX's convention for a real loss f of complex z:
`jax.grad(f)(z) = ∂f/∂x − i ∂f/∂y` (twice the Wirtinger derivative ∂f/∂z; gradient descent
steps along its conjugate). PyTorch returns the conjugate, ∂f/∂x + i ∂f/∂y. So the pair
compared with the finite differences (∂f/∂x, ∂f/∂y) is (Re g, −Im g).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from .._core.coords import Coords
from . import directions as _directions
from . import stencils as st


def realify(coords: Coords) -> Coords:
    """The coordinates with every checked complex leaf replaced by its real (x, y) pairs."""
    leaves = []
    for leaf in coords.leaves:
        if leaf.checked and leaf.is_complex:
            real = np.finfo(leaf.dtype).dtype  # complex128 -> float64
            leaf = dataclasses.replace(leaf, shape=(*leaf.shape, 2), dtype=real, complex_pairs=True)
        leaves.append(leaf)
    return dataclasses.replace(coords, leaves=tuple(leaves))


def positions(coords: Coords) -> tuple[int, ...]:
    return tuple(leaf.position for leaf in coords.leaves if leaf.complex_pairs)


def to_pairs(values: Sequence[Any], real_coords: Coords) -> list[Any]:
    """Complex leaves as real arrays of (x, y) pairs, NumPy staying NumPy and JAX staying JAX."""
    out = list(values)
    for p in positions(real_coords):
        z = out[p]
        xp = jax.numpy if isinstance(z, jax.Array) else np
        out[p] = xp.stack([xp.real(z), xp.imag(z)], axis=-1)
    return out


def from_pairs(values: Sequence[Any], real_coords: Coords) -> list[Any]:
    """The inverse of `to_pairs`, exactly."""
    out = list(values)
    for p in positions(real_coords):
        x = out[p]
        z: Any
        if isinstance(x, np.ndarray):
            z = np.empty(x.shape[:-1], np.result_type(x.dtype, np.complex64))
            z.real, z.imag = x[..., 0], x[..., 1]
        else:
            z = jax.lax.complex(x[..., 0], x[..., 1])
        out[p] = z
    return out


def of_pairs(fn: Callable[..., Any], real_coords: Coords) -> Callable[..., Any]:
    """fn as a function of params whose complex leaves are given as (x, y) pairs."""

    def fn_pairs(params: Any, *args: Any) -> Any:
        values = from_pairs(jax.tree_util.tree_leaves(params), real_coords)
        return fn(real_coords.unflatten(values), *args)

    return fn_pairs


def gradient_pairs(grads: dict[str, np.ndarray], real_coords: Coords) -> dict[str, np.ndarray]:
    """A gradient in JAX's convention, g = ∂f/∂x − i ∂f/∂y, as the pairs (Re g, −Im g)."""
    out = dict(grads)
    for leaf in real_coords.checked:
        if leaf.complex_pairs:
            g = np.asarray(grads[leaf.path])
            out[leaf.path] = np.stack([np.real(g), -np.imag(g)], axis=-1)
    return out


def complex_view(x: np.ndarray) -> np.ndarray:
    """Pairs (a, b) of the checked derivatives back to the complex gradient a − ib."""
    return x[..., 0] - 1j * x[..., 1]


def conjugate_hint(real_coords: Coords, judged: dict) -> str:
    """A note when a complex leaf fails only in imaginary parts that match −(expected):
    a gradient in PyTorch's convention (∂f/∂x + i ∂f/∂y), or a conjugate missed in a VJP rule.
    """
    hinted = []
    for leaf in real_coords.checked:
        outcome = judged.get(leaf.path)
        v = _directions.elements_of(outcome)
        if not leaf.complex_pairs or v is None:
            continue
        failing = np.isin(v.status, st.FAILING)
        imag = np.arange(failing.size) % 2 == 1
        if not failing.any() or (failing & ~imag).any():
            continue
        with np.errstate(invalid="ignore"):
            flipped = np.abs(v.analytic + v.numeric) <= v.tolerance
        if flipped[failing].all():
            hinted.append(leaf.path)
    if not hinted:
        return ""
    return (
        f"the imaginary parts of the gradient for {', '.join(hinted)} have the wrong sign: it "
        "looks conjugated (PyTorch's convention ∂f/∂x + i·∂f/∂y, or a missing conj in a VJP "
        "rule). JAX's convention is g = ∂f/∂x − i·∂f/∂y: return jnp.conj of it"
    )
