"""Sparse perturbations through a jaxpr: evaluate fn at B one-element perturbations of a leaf.

Setting one element of a leaf changes only part of each intermediate: a column of the first
layer's output, then (after the next dense layer) everything. This interpreter walks the jaxpr
of fn and represents each intermediate as one of

- an array: the same for every perturbation (everything that does not depend on the leaf),
  computed once;
- a `Patch`: B values that equal the unperturbed value `base` except on one patch each, the
  hyper-rectangle where the `axes` take the indices `sel[b]` and every other axis is whole.

Elementwise operations act on the patch only. Linear operations (`dot_general`, reductions,
transposes, broadcasts, reshapes that keep the patch's axes) map a patch to a patch, computed from
the patch and a slice of the other operand: a perturbed weight entering a matrix product costs
a rank-1 update, not the product. Anything else (control flow, gathers, `reduce_max`, ...)
falls back to `vmap` over the dense perturbed values, which is what the plain engine does.
Calls (`jit`, `custom_jvp_call`, `custom_vjp_call`, `remat`) are inlined and custom rules are
evaluated by their primal only: the values are fn's own at the perturbed points, independent
of any differentiation rule.

Where a patch's contracted or reduced axes are perturbed, the result is base + delta, which
differs from recomputing the whole sum by rounding only (and cancels the rounding of the base
in f(θ + h) − f(θ − h)).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.extend.core as jcore
import jax.numpy as jnp
import numpy as np
from jax import lax

from .patch import Patch, bind, put, read, run_eqns, take

ELEMENTWISE = frozenset(
    """abs acos acosh add and asin asinh atan atan2 atanh cbrt ceil clamp convert_element_type
    copy copy_p cos cosh digamma div eq erf erf_inv erfc exp exp2 expm1 floor ge gt igamma
    integer_pow is_finite le lgamma log log1p logistic lt max min mul ne neg nextafter not or
    pow real_pow reduce_precision rem round rsqrt select_n sign sin sinh sqrt square sub tan
    tanh xor""".split()
)
INLINE = {"pjit": "jaxpr", "jit": "jaxpr", "closed_call": "call_jaxpr", "core_call": "call_jaxpr",
          "custom_jvp_call": "call_jaxpr", "custom_vjp_call": "call_jaxpr",
          "custom_vjp_call_jaxpr": "fun_jaxpr", "remat": "jaxpr", "remat2": "jaxpr",
          "checkpoint": "jaxpr"}  # fmt: skip


def evaluate(closed: jcore.ClosedJaxpr, inputs: Sequence[Any], stats: dict | None = None):
    """The scalar output of the jaxpr for every perturbation: shape [B].

    stats, if given, receives "matmul_elements": the largest per-perturbation operand of a
    matrix product computed per perturbation (0 if none), which a chunk must materialize.
    """
    stats = {} if stats is None else stats
    stats["matmul_elements"] = 0
    (out,) = _eval(closed.jaxpr, closed.consts, inputs, stats)
    if isinstance(out, Patch):
        return out.val.reshape(-1)
    sizes = [x.sel.shape[0] for x in inputs if isinstance(x, Patch)]
    return jnp.broadcast_to(jnp.reshape(out, ()), (sizes[0],))


def _eval(jaxpr: jcore.Jaxpr, consts: Sequence[Any], inputs: Sequence[Any], stats: dict) -> list:
    env: dict[Any, Any] = dict(zip(jaxpr.constvars, consts))
    env.update(zip(jaxpr.invars, inputs))
    run_eqns(jaxpr.eqns, env, lambda eqn, invals: _apply(eqn, invals, stats))
    return [read(env, v) for v in jaxpr.outvars]


def _apply(eqn, invals, stats: dict) -> list[Any]:
    name = eqn.primitive.name
    if not any(isinstance(x, Patch) for x in invals):
        return bind(eqn, invals)
    if name in INLINE:
        inner = eqn.params[INLINE[name]]
        if isinstance(inner, jcore.ClosedJaxpr):
            return _eval(inner.jaxpr, inner.consts, invals, stats)
        return _eval(inner, (), invals, stats)
    if name == "dot_general":
        patches = [x.val for x in invals if isinstance(x, Patch)]
        biggest = max(int(np.prod(v.shape[1:])) for v in patches)
        if biggest > 1 and eqn.params["dimension_numbers"][0][0]:
            stats["matmul_elements"] = max(stats["matmul_elements"], biggest)
    rule = RULES.get(name)
    if rule is None and name in ELEMENTWISE:
        rule = _elementwise
    if rule is not None:
        out = rule(eqn, invals)
        if out is not None:
            return [out]
    return _fallback(eqn, invals)


def _fallback(eqn: jcore.JaxprEqn, invals: list[Any]) -> list[Any]:
    """vmap the primitive over the dense perturbed values; the plain engine's way."""
    patches = [x.dense() if isinstance(x, Patch) else None for x in invals]
    bases = [x.base if isinstance(x, Patch) else x for x in invals]
    sel = next(s.sel for s in patches if s is not None)
    base_out = bind(eqn, bases)
    vals = [s.val if s is not None else x for s, x in zip(patches, invals)]
    axes = [0 if s is not None else None for s in patches]
    outs = jax.vmap(lambda *xs: bind(eqn, xs), in_axes=axes)(*vals)
    return [Patch(b, (), sel, v) for b, v in zip(base_out, outs)]


def _common(invals: list[Any]) -> list[Any]:
    """Patches on the same selection, or all made dense."""
    patches = [x for x in invals if isinstance(x, Patch)]
    if all(s.same_patch(patches[0]) for s in patches):
        return invals
    return [x.dense() if isinstance(x, Patch) else x for x in invals]


def _elementwise(eqn: jcore.JaxprEqn, invals: list[Any]) -> Patch:
    shape = tuple(eqn.outvars[0].aval.shape)  # type: ignore[attr-defined]
    # An operand broadcast along a selected axis of size 1 ((1, 1) + (B, 1), as a Dense(1)
    # bias enters): its one selected element reaches every output row, so it goes dense.
    invals = [
        x.dense()
        if isinstance(x, Patch)
        and np.ndim(x.base) == len(shape)
        and any(np.shape(x.base)[a] != shape[a] for a in x.axes)
        else x
        for x in invals
    ]
    invals = _common([_lift(x, shape) if isinstance(x, Patch) else x for x in invals])
    first = next(x for x in invals if isinstance(x, Patch))
    shape = (first.sel.shape[0], *(np.shape(first.base)[a] for a in first.free))
    vals = []
    for x in invals:
        if isinstance(x, Patch):
            vals.append(x.val)
        elif np.ndim(x) == 0:
            vals.append(jnp.broadcast_to(x, shape))
        else:
            vals.append(take(x, first.axes, first.sel))
    (base,) = bind(eqn, [x.base if isinstance(x, Patch) else x for x in invals])
    (val,) = bind(eqn, vals)
    return Patch(base, first.axes, first.sel, val)


def _lift(x: Patch, shape: tuple) -> Patch:
    """A rank-0 operand of an elementwise operation with a larger output, broadcast to it."""
    if np.ndim(x.base) == len(shape):
        return x
    n = x.sel.shape[0]
    val = jnp.broadcast_to(x.val.reshape(n, *(1 for _ in shape)), (n, *shape))
    return Patch(jnp.broadcast_to(x.base, shape), (), x.sel[:, :0], val)


def _drop_axes(x: Patch, dims: Sequence[int]) -> tuple[list[int], jax.Array, tuple[int, ...]]:
    """The selection once `dims` are removed: the remaining selected axes (renumbered), their
    sel columns, and the positions of the removed free axes in x.val."""
    axes = [a - sum(d < a for d in dims) for a in x.axes if a not in dims]
    sel = x.sel[:, [k for k, a in enumerate(x.axes) if a not in dims]]
    free_dims = tuple(1 + x.free.index(d) for d in dims if d in x.free)
    return axes, sel, free_dims


def _reduce_sum(eqn: jcore.JaxprEqn, invals: list[Any]) -> Patch:
    (x,) = invals
    reduced = tuple(eqn.params["axes"])
    (base,) = bind(eqn, [x.base])
    axes, sel, free_reduced = _drop_axes(x, reduced)
    if len(axes) == len(x.axes):  # the patch's own elements are summed: exact
        return Patch(base, axes, sel, jnp.sum(x.val, axis=free_reduced))
    delta = jnp.sum(x.val - take(x.base, x.axes, x.sel), axis=free_reduced)
    return Patch(base, axes, sel, take(base, axes, sel) + delta)


def _dot_general(eqn: jcore.JaxprEqn, invals: list[Any]) -> Patch | None:
    lhs, rhs = invals
    if isinstance(lhs, Patch) == isinstance(rhs, Patch):
        return None
    x_is_lhs = isinstance(lhs, Patch)
    x, y = (lhs, jnp.asarray(rhs)) if x_is_lhs else (rhs, jnp.asarray(lhs))
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    xc, yc, xb, yb = (lc, rc, lb, rb) if x_is_lhs else (rc, lc, rb, lb)
    x_nd, y_nd = np.ndim(x.base), y.ndim
    x_free = [a for a in range(x_nd) if a not in xc and a not in xb]
    y_free = [a for a in range(y.ndim) if a not in yc and a not in yb]
    # y's axes paired with a selected contracting or batch axis are indexed by the selection.
    y_idx = {}
    for a in x.axes:
        if a in xc:
            y_idx[yc[list(xc).index(a)]] = x.axes.index(a)
        elif a in xb:
            y_idx[yb[list(xb).index(a)]] = x.axes.index(a)
    x_left = [a for a in range(x_nd) if a not in x.axes]
    y_left = [a for a in range(y_nd) if a not in y_idx]
    pairs_c = [(x_left.index(a), y_left.index(b)) for a, b in zip(xc, yc) if a not in x.axes]
    pairs_b = [(x_left.index(a), y_left.index(b)) for a, b in zip(xb, yb) if a not in x.axes]
    xc2, yc2 = [p[0] for p in pairs_c], [p[1] for p in pairs_c]
    xb2, yb2 = [p[0] for p in pairs_b], [p[1] for p in pairs_b]
    dims = ((xc2, yc2), (xb2, yb2)) if x_is_lhs else ((yc2, xc2), (yb2, xb2))
    params = {k: v for k, v in eqn.params.items() if k != "dimension_numbers"}
    params.pop("out_sharding", None)

    contracted = any(a in xc for a in x.axes)
    xv = x.val - take(x.base, x.axes, x.sel) if contracted else x.val

    def one(s: jax.Array, v: jax.Array) -> jax.Array:
        yy = y[tuple(s[y_idx[a]] if a in y_idx else slice(None) for a in range(y_nd))]
        operands = (v, yy) if x_is_lhs else (yy, v)
        if not xc2:  # an outer product: a broadcast multiply, which XLA fuses with what follows
            return _outer(*operands, dims[1])
        return lax.dot_general(*operands, dims, **params)

    out = jax.vmap(one)(x.sel, xv)
    # Where the selected axes of x land in the output: batch axes first, then lhs free, rhs free.
    nb = len(xb)
    n_lhs_free = len(x_free) if x_is_lhs else len(y_free)
    out_pos = {}
    for a in x.axes:
        if a in xb:
            out_pos[a] = list(xb).index(a)
        elif a in x_free:
            out_pos[a] = nb + x_free.index(a) + (0 if x_is_lhs else n_lhs_free)
    order = sorted(out_pos, key=lambda a: out_pos[a])
    axes = [out_pos[a] for a in order]
    sel = x.sel[:, [x.axes.index(a) for a in order]]
    (base,) = bind(eqn, [x.base, y] if x_is_lhs else [y, x.base])
    base = lax.optimization_barrier(base)
    if contracted:
        out = take(base, axes, sel) + out
    return Patch(base, axes, sel, out.astype(base.dtype))


def _outer(a: jax.Array, b: jax.Array, batch: tuple[list[int], list[int]]) -> jax.Array:
    """dot_general without contracting dimensions, as a product of broadcasts."""
    ba, bb = batch
    fa = [d for d in range(a.ndim) if d not in ba]
    fb = [d for d in range(b.ndim) if d not in bb]
    a = jnp.transpose(a, [*ba, *fa]).reshape(
        *(a.shape[d] for d in ba), *(a.shape[d] for d in fa), *(1 for _ in fb)
    )
    b = jnp.transpose(b, [*bb, *fb]).reshape(
        *(b.shape[d] for d in bb), *(1 for _ in fa), *(b.shape[d] for d in fb)
    )
    return a * b


def _transpose(eqn: jcore.JaxprEqn, invals: list[Any]) -> Patch:
    (x,) = invals
    perm = list(eqn.params["permutation"])
    (base,) = bind(eqn, [x.base])
    new_pos = {a: perm.index(a) for a in x.axes}
    order = sorted(x.axes, key=lambda a: new_pos[a])
    free = x.free
    val = jnp.transpose(x.val, [0] + [1 + free.index(p) for p in perm if p in free])
    return Patch(base, [new_pos[a] for a in order], x.sel[:, [x.axes.index(a) for a in order]], val)


def _broadcast_in_dim(eqn: jcore.JaxprEqn, invals: list[Any]) -> Patch | None:
    (x,) = invals
    shape, dims = eqn.params["shape"], eqn.params["broadcast_dimensions"]
    in_shape = np.shape(x.base)
    if any(in_shape[a] != shape[dims[a]] for a in x.axes):
        x = x.dense()  # a selected axis of size 1 is broadcast
    (base,) = bind(eqn, [x.base])
    out_axes = [dims[a] for a in x.axes]
    out_free = [d for d in range(len(shape)) if d not in out_axes]
    val = lax.broadcast_in_dim(
        x.val,
        (x.val.shape[0], *(shape[d] for d in out_free)),
        (0, *(1 + out_free.index(dims[a]) for a in x.free)),
    )
    return Patch(base, out_axes, x.sel, val)


def _reshape(eqn: jcore.JaxprEqn, invals: list[Any]) -> Patch | None:
    (x,) = invals
    if eqn.params.get("dimensions") is not None:
        return None
    in_shape, out_shape = np.shape(x.base), tuple(eqn.params["new_sizes"])
    # A selected axis survives if it is a whole output axis at the same flat offset.
    out_axes: list[int] = []
    for a in x.axes:
        pre = int(np.prod(in_shape[:a]))
        match = [
            d
            for d in range(len(out_shape))
            if int(np.prod(out_shape[:d])) == pre and out_shape[d] == in_shape[a]
        ]
        if not match:
            x = x.dense()
            out_axes = []
            break
        out_axes.append(match[0])
    (base,) = bind(eqn, [x.base])
    free_shape = [out_shape[d] for d in range(len(out_shape)) if d not in out_axes]
    return Patch(base, out_axes, x.sel, x.val.reshape(x.val.shape[0], *free_shape))


def _squeeze(eqn: jcore.JaxprEqn, invals: list[Any]) -> Patch:
    (x,) = invals
    (base,) = bind(eqn, [x.base])
    axes, sel, free_dims = _drop_axes(x, tuple(eqn.params["dimensions"]))
    return Patch(base, axes, sel, jnp.squeeze(x.val, free_dims))


def _conv(eqn: jcore.JaxprEqn, invals: list[Any]) -> Patch | None:
    """A convolution with one perturbed operand whose feature axis is selected.

    conv(x, w + d) = conv(x, w) + conv(x, d), and likewise in x. A one-element change of the
    kernel at input feature i, output feature o reaches output feature o only, from input
    feature i only: each perturbation convolves one input feature into one output feature.
    A change of the input at feature i convolves with the kernel's slice at i (every output
    feature changes).
    """
    lhs, rhs = invals
    p = eqn.params
    if isinstance(lhs, Patch) == isinstance(rhs, Patch):
        return None
    if p["feature_group_count"] != 1 or p["batch_group_count"] != 1:
        return None
    dn = p["dimension_numbers"]
    x_is_lhs = isinstance(lhs, Patch)
    x, y = (lhs, jnp.asarray(rhs)) if x_is_lhs else (rhs, jnp.asarray(lhs))
    # The feature axis x shares with y, and (for a kernel) its output feature axis.
    x_in, y_in = (dn.lhs_spec[1], dn.rhs_spec[1]) if x_is_lhs else (dn.rhs_spec[1], dn.lhs_spec[1])
    x_out = dn.rhs_spec[0] if not x_is_lhs and dn.rhs_spec[0] in x.axes else None
    if x_in not in x.axes and x_out is None:
        return None
    slice_in = x_in in x.axes
    sel_in = x.sel[:, x.axes.index(x_in)] if slice_in else x.sel[:, 0]
    cut = [a for a in (x_in, x_out) if a is not None and a in x.axes]
    small = [1 if a in cut else n for a, n in enumerate(np.shape(x.base))]
    change = put(
        jnp.zeros(small, x.val.dtype),
        x.axes,
        x.sel.at[:, [x.axes.index(a) for a in cut]].set(0),
        x.val - take(x.base, x.axes, x.sel),
    )

    def one(i: jax.Array, c: jax.Array) -> jax.Array:
        yy = lax.dynamic_slice_in_dim(y, i, 1, y_in) if slice_in else y
        return bind(eqn, [c, yy] if x_is_lhs else [yy, c])[0]

    out = jax.vmap(one)(sel_in, change)
    (base,) = bind(eqn, [x.base, y] if x_is_lhs else [y, x.base])
    base = lax.optimization_barrier(base)
    if x_out is None:
        return Patch(base, (), x.sel[:, :0], (base[None] + out).astype(base.dtype))
    f_out = dn.out_spec[1]
    sel = x.sel[:, [x.axes.index(x_out)]]
    out = jnp.squeeze(out, 1 + f_out)
    return Patch(base, (f_out,), sel, (take(base, (f_out,), sel) + out).astype(base.dtype))


RULES = {
    "reduce_sum": _reduce_sum,
    "dot_general": _dot_general,
    "transpose": _transpose,
    "broadcast_in_dim": _broadcast_in_dim,
    "reshape": _reshape,
    "squeeze": _squeeze,
    "conv_general_dilated": _conv,
}
