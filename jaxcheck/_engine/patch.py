"""Patches: B perturbed copies of an array stored as the part that differs, and the jaxpr
walking the sparse interpreter (`sparse`) and the chunk splitter (`split`) share.

A `Patch` holds B values that equal the unperturbed `base` except on one hyper-rectangle each,
where the selected `axes` take the indices `sel[b]` (every other axis whole).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import jax.extend.core as jcore
import jax.numpy as jnp
import numpy as np

from .._core.jaxpr import DropVar


class Patch:
    """B values equal to `base` except where `axes` take the indices `sel[b]`: there, `val[b]`.

    base: the unperturbed value, shape S. axes: sorted selected axes of S.
    sel: int32 [B, len(axes)].
    val: [B, *(S[a] for a not in axes)].
    """

    __slots__ = ("base", "axes", "sel", "val")

    def __init__(
        self, base: jax.Array, axes: Iterable[int], sel: jax.Array, val: jax.Array
    ) -> None:
        self.base, self.axes, self.sel, self.val = base, tuple(axes), sel, val

    @property
    def free(self) -> list[int]:
        return [a for a in range(np.ndim(self.base)) if a not in self.axes]

    def same_patch(self, other: Patch) -> bool:
        return self.axes == other.axes and self.sel is other.sel

    def dense(self) -> Patch:
        """The same values with no selected axes: val holds every element."""
        if not self.axes:
            return self
        return Patch(self.base, (), self.sel[:, :0], put(self.base, self.axes, self.sel, self.val))


def _index(ndim: int, axes: Sequence[int], s) -> tuple:
    return tuple(s[axes.index(a)] if a in axes else slice(None) for a in range(ndim))


def take(x, axes: Sequence[int], sel) -> jax.Array:
    """x's patch at each member's selection: [B, *free shape]."""
    x = jnp.asarray(x)
    if not axes:
        return jnp.broadcast_to(x, (sel.shape[0], *x.shape))
    return jax.vmap(lambda s: x[_index(x.ndim, list(axes), s)])(sel)


def put(base, axes: Sequence[int], sel, val) -> jax.Array:
    """The dense [B, *S] values: base with each member's patch replaced by val[b]."""
    if not axes:
        return val
    return jax.vmap(lambda s, v: base.at[_index(base.ndim, list(axes), s)].set(v))(sel, val)


def read(env: dict, v) -> Any:
    """A jaxpr variable's value in env (a literal's own value)."""
    return v.val if isinstance(v, jcore.Literal) else env[v]


def run_eqns(eqns, env: dict, apply: Callable | None = None) -> None:
    """Evaluate equations in order, reading and writing env; apply(eqn, invals) -> outputs."""
    apply = apply or bind
    for eqn in eqns:
        outs = apply(eqn, [read(env, v) for v in eqn.invars])
        for var, x in zip(eqn.outvars, outs):
            if not isinstance(var, DropVar):
                env[var] = x


def bind(eqn: jcore.JaxprEqn, invals: Sequence[Any]) -> list[Any]:
    params = eqn.primitive.get_bind_params(eqn.params)
    subfuns = []
    if isinstance(params, tuple):  # jax < 0.9 also returned the sub-functions
        subfuns, params = params
    with eqn.ctx.manager:
        out = eqn.primitive.bind(*subfuns, *invals, **params)
    return list(out) if eqn.primitive.multiple_results else [out]
