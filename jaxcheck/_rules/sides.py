"""The two sides of ⟨u, Jᵀw⟩ = ⟨Ju, w⟩, for a batch of tangents u on one leaf.

A side maps (U [B, n], js [B]) to `Pairs`: ⟨w_j, J U_b⟩ for each direction b, the magnitude
its rounding is relative to, and its own error bound where it is not exact. It is computed
through a JVP function (`forward`: the JVP under test, or `jax.jvp` of the reference), through
explicit vectors Jᵀw_j (`explicit`: a VJP's cotangents paired with U), or by finite
differences of fn (`finite.py`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt
from jax.typing import ArrayLike

from .._core.coords import Coords, Leaf
from .._core.paths import leaf_paths
from .transforms import is_float0, stack


class Pairs(NamedTuple):
    """One side of the identity along a batch of directions (one entry per direction)."""

    value: np.ndarray  # Re⟨w_j, J U_b⟩
    scale: np.ndarray  # Σ|w_j||J U_b|: rounding is relative to it
    slack: np.ndarray  # the side's own error bound (finite differences); 0 where exact


Side = Callable[[np.ndarray, np.ndarray], Pairs]  # (U [B, n], js [B]) -> Pairs


def exact(value: npt.ArrayLike, scale: npt.ArrayLike) -> Pairs:
    value, scale = np.asarray(value), np.asarray(scale)
    return Pairs(value, scale, np.zeros(value.shape))


@dataclasses.dataclass(frozen=True)
class Point:
    """The primals of a check (flat and as fn takes them) and its random cotangents."""

    coords: Coords  # leaf paths named after fn's parameters: ['x'], ['params']['W']
    values: list  # tree_leaves of the primals, in the working dtype
    primals: tuple
    positional: tuple[str, ...]  # each leaf's path in the tuple of primals: [0], [1]['W']
    w: tuple  # the random cotangents, pytrees shaped like fn's output

    def tangents(self, given: dict[int, Any]) -> tuple:
        """Tangents: given[position] (flat) where given, zero elsewhere (float0 if not float)."""
        out: list[Any] = []
        for leaf in self.coords.leaves:
            x = self.values[leaf.position]
            if leaf.position in given:
                out.append(jnp.reshape(given[leaf.position], leaf.shape))
            elif leaf.is_float or leaf.is_complex:
                out.append(jnp.zeros(jnp.shape(x), jnp.asarray(x).dtype))
            else:
                out.append(np.zeros(np.shape(x), jax.dtypes.float0))
        return tuple(self.coords.unflatten(list(out)))

    def dtype(self, leaf: Leaf):
        return np.asarray(self.values[leaf.position]).dtype


def forward(point: Point, jvp: Callable, leaf: Leaf, vectorize: bool) -> Side:
    """(U, js) -> ⟨w_j, J U_b⟩ through a JVP function `jvp(primals, tangents)`."""
    w = jax.tree_util.tree_map(stack, *point.w)

    def one(u: ArrayLike, j: ArrayLike) -> tuple[jax.Array, jax.Array]:
        tangent = tangent_out(jvp(point.primals, point.tangents({leaf.position: u})))
        wj = jax.tree_util.tree_map(lambda x: x if is_float0(x) else x[j], w)
        return pair(tangent, wj)

    def looped(U: np.ndarray, js: np.ndarray) -> Pairs:
        pairs = [one(u, j) for u, j in zip(U, js)]
        return exact(*(np.array([float(p[i]) for p in pairs]) for i in (0, 1)))

    if not vectorize:
        return looped
    batched = jax.jit(jax.vmap(one))
    vmapped = [True]

    def side(U: np.ndarray, js: np.ndarray) -> Pairs:
        if vmapped[0]:
            try:
                return exact(*batched(U, js))
            except Exception:  # noqa: BLE001 - a kernel that cannot be vmapped (Pallas in
                vmapped[0] = False  # interpret mode): one direction at a time
        return looped(U, js)

    return side


def explicit(cotangents: list[dict]) -> Callable[[Leaf], Side]:
    """The same through explicit vectors Jᵀw_j (one dict {leaf path: flat array} per j)."""

    def side(leaf: Leaf) -> Side:
        def apply(U: np.ndarray, js: np.ndarray) -> Pairs:
            V = np.stack([cotangents[j][leaf.path] for j in js])
            with np.errstate(invalid="ignore"):  # a NaN reference is reported, not warned
                return exact(np.real(np.sum(U * V, axis=1)), np.sum(np.abs(U) * np.abs(V), axis=1))

        return apply

    return side


def vjp_vectors(point: Point, vjp: Callable, who: str, ws=None) -> list[dict]:
    """{leaf path: flat Jᵀw} for each cotangent w (`point.w` by default) through `vjp`."""
    out = []
    for w in point.w if ws is None else ws:
        ct = vjp(*point.primals, w)
        if len(point.primals) == 1 and same_structure(ct, point.primals[0]):
            ct = (ct,)  # one primal: its bare cotangent
        out.append(cotangent_leaves(point, ct, who))
    return out


def tangent_out(result: Any) -> Any:
    """The tangent output of a JVP function's (out, tangent_out)."""
    if not (isinstance(result, (tuple, list)) and len(result) == 2):
        raise TypeError(
            f"the JVP returned a {type(result).__name__}; it must return (out, tangent_out) "
            "like jax.jvp."
        )
    return result[1]


def pair(a: Any, b: Any) -> tuple[jax.Array, jax.Array]:
    """(Re Σ a_i b_i, Σ |a_i||b_i|) over matching pytrees, skipping float0 leaves."""
    value: Any = 0.0
    scale: Any = 0.0
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        if is_float0(x) or is_float0(y):
            continue
        value = value + jnp.real(jnp.sum(x * y))
        scale = scale + jnp.sum(jnp.abs(x) * jnp.abs(y))
    return jnp.asarray(value), jnp.asarray(scale)


def same_structure(a: Any, b: Any) -> bool:
    return bool(jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b))  # type: ignore[operator]


def cotangent_leaves(point: Point, ct: Any, who: str) -> dict[str, np.ndarray]:
    """{leaf path: flat cotangent} from a VJP's output (one cotangent per primal, in order),
    with its shape checked."""
    if isinstance(ct, list):
        ct = tuple(ct)
    flat = dict(leaf_paths(ct))
    out = {}
    for leaf in point.coords.checked:
        where = point.positional[leaf.position]
        name = f"primal{where} ({leaf.path})"
        if where not in flat:
            raise ValueError(
                f"the {who} returned no cotangent for {name}: return one cotangent per "
                f"primal, in order, shaped like it (got paths {sorted(flat)[:8]})."
            )
        x = np.asarray(flat[where])
        if x.shape != leaf.shape:
            raise ValueError(
                f"the {who} returned a cotangent of shape {x.shape} for {name}, "
                f"which has shape {leaf.shape}."
            )
        out[leaf.path] = x.reshape(-1)
    return out
