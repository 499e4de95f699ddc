"""The gradient under test: JAX's or the user's, in which dtype, and a flat vector's order.

By default, for lower-precision parameters, the gradient under test is computed at the
parameters and data in their own dtypes (what training computes) while the finite
differences are float64 (Chainer's `check_backward(dtype=float64)` rule); `own_dtype`
refuses, with a note, a fn whose value there is another function's (random draws in the
data's dtype). A flat gradient vector is read in the dicts' insertion order where that,
not ravel_pytree's sorted order, agrees with finite differences (`in_dict_order`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.extend.core as jcore
import jax.numpy as jnp
import numpy as np

from .._core import gradients as _gradients
from .._core.coords import Coords
from .._core.paths import insertion_order
from .._engine.programs import cached_jit, split_arrays
from .._numerics import complex as _complex
from .._numerics import stencils as st
from . import loss

ORDER_DIRECTIONS = 3  # random directions that decide a flat vector's order
ORDER_MARGIN = 8.0  # insertion order is taken where it agrees this much better


def in_dict_order(grad_fn, fn_scalar, params, work_call, coords: Coords, values, seed: int):
    """grad_fn, reading a flat gradient vector in the dicts' insertion order (W1, b1, W2, ...
    as a hand-written `gradients_to_vector` builds it) where that differs from
    ravel_pytree's sorted order and agrees with finite differences of fn along a few random
    directions far better than the sorted reading does; and the note that says which order
    was read (empty where the question does not arise). Decided once, as the gradient is
    first read, so every later call of grad_fn (the rounding's, the reentrancy test's) reads
    it the same way."""
    order = insertion_order(params)
    ravel = [leaf.path for leaf in coords.leaves]
    if order == ravel or sorted(order) != sorted(ravel):
        return grad_fn, ""
    if any(leaf.is_complex for leaf in coords.checked):
        return grad_fn, ""
    work_params, work_args = work_call
    out = grad_fn(work_params, *work_args)
    if not _gradients.is_flat(coords, out):
        return grad_fn, ""
    readings = {
        "sorted": _gradients.read(coords, out),
        "inserted": _gradients.read(coords, _gradients.reorder(coords, out, order)),
    }
    errors, scale = {name: 0.0 for name in readings}, 0.0
    rng = np.random.default_rng([seed, 11])
    checked = coords.checked
    theta = np.concatenate(
        [np.asarray(values[leaf.position], np.float64).ravel() for leaf in checked]
    )
    t = st.unit_roundoff(np.asarray(values[checked[0].position]).dtype) ** (1 / 3)
    t *= max(float(np.linalg.norm(theta)), 1.0)
    for _ in range(ORDER_DIRECTIONS):
        v = {leaf.path: rng.standard_normal(leaf.size) for leaf in checked}
        norm = np.sqrt(sum(float(np.sum(x**2)) for x in v.values()))
        at = []
        for sign in (1.0, -1.0):
            moved = list(values)
            for leaf in checked:
                x = np.asarray(values[leaf.position])
                step = sign * t * v[leaf.path].reshape(x.shape) / norm
                moved[leaf.position] = (x.astype(np.float64) + step).astype(x.dtype)
            at.append(float(fn_scalar(coords.unflatten(moved), *work_args)))
        d = (at[0] - at[1]) / (2 * t)
        scale += abs(d)
        for name, g in readings.items():
            slope = sum(float(np.dot(np.ravel(g[p]), v[p])) for p in v) / norm
            errors[name] += abs(slope - d)
    names = ", ".join(p for p in ravel if p in {leaf.path for leaf in coords.inexact_leaves})
    inserted = ", ".join(p for p in order if p in names.split(", "))
    if errors["inserted"] * ORDER_MARGIN < errors["sorted"]:
        note = (
            f"grad_fn returns one flat vector in the dict's insertion order ({inserted}), not "
            f"ravel_pytree's, which sorts dict keys ({names}): read in insertion order, which "
            "agrees with finite differences along random directions where the sorted order "
            "does not. Return a dict of gradients, or concatenate in ravel_pytree order."
        )
        return (lambda *a: _gradients.reorder(coords, grad_fn(*a), order)), note
    if errors["sorted"] > 1e-2 * scale and errors["inserted"] > 1e-2 * scale:
        return grad_fn, (
            f"grad_fn returns one flat vector, read in ravel_pytree order, which sorts dict keys "
            f"({names}); read in the dict's insertion order ({inserted}) it disagrees with "
            "finite differences as well"
        )
    return grad_fn, ""


def low(coords: Coords) -> bool:
    """Whether some checked leaf is float32 or lower precision (complex64 included)."""
    return any(low_dtype(x.dtype) for x in coords.checked)


def low_dtype(dtype: Any) -> bool:
    return jnp.finfo(dtype).bits < 64


def scale(grads: dict) -> float:
    """The largest finite |g| of the check."""
    tops = [np.abs(g[np.isfinite(g)]).max(initial=0.0) for g in map(np.asarray, grads.values())]
    return float(max(tops, default=0.0))


def precision(coords: Coords, precision: str, order: int) -> tuple[bool, str]:
    """Whether the gradient under test is computed in the parameters' own dtype (the default
    for lower-precision parameters), and the note that says how it is computed."""
    if precision == "native" or not low(coords):
        return False, ""
    if precision == "float64" and order == 1:
        dtypes = ", ".join(sorted({str(x.dtype) for x in coords.checked if low_dtype(x.dtype)}))
        return True, (
            f"finite differences in float64; the gradient under test in {dtypes}, as training "
            "computes it (precision='upcast' computes it in float64 too)"
        )
    return False, (
        "lower-precision leaves checked in float64, the gradient under test too "
        "(precision='float64' keeps the gradient in their own dtype)"
    )


def under_test(
    own: bool, fn_given: Callable[..., Any], fn_scalar: Callable[..., Any],
    grad_fn: Callable[..., Any] | None, given_call: tuple[Any, tuple], work_call: tuple[Any, tuple],
    leaves: Sequence[Any], values: Sequence[Any], given: Coords, coords: Coords,
    key: tuple | None, f64: float, traced: bool,
) -> tuple[dict[str, np.ndarray], str]:  # fmt: skip
    """{leaf path: the gradient under test} over `coords` (complex leaves as pairs), and the
    note that replaces the precision note where the own-dtype gradient was refused.

    own: computed at the parameters and data as given (`given_call`: params, args) in their
    own dtypes; else at the working ones (`work_call`). fn_given, given: fn and the
    coordinates before complex leaves became pairs; fn_scalar, coords, values: after.
    """
    (params, args), (work_params, work_args) = given_call, work_call
    if own:
        grads, why_not = own_dtype(fn_given, grad_fn, params, args, leaves, given, key, f64,
                                   traced)  # fmt: skip
        if grads is not None:
            return _complex.gradient_pairs(grads, coords), ""
    else:
        why_not = ""
    if grad_fn is None:
        return jax_grad(fn_scalar, values, coords, work_args, key)[1], why_not
    grads = _gradients.read(given, grad_fn(work_params, *work_args))
    return _complex.gradient_pairs(grads, coords), why_not


def evaluator(own, fn_given, grad_fn, given: Coords, key, given_args, work_args):
    """(every leaf's values, as_tested) -> {leaf path: the gradient under test there}, computed
    as it was at θ (as_tested: in the parameters' own dtypes with the data as given where
    `own`, else in the working precision) or in the working precision (as_tested=False)."""

    def at(values: list, as_tested: bool = True) -> dict[str, np.ndarray]:
        args = given_args if own and as_tested else work_args
        if grad_fn is None:
            return jax_grad(fn_given, values, given, args, key)[1]
        return _gradients.read(given, grad_fn(given.unflatten(values), *args))

    return at


def dtype_notes(given: Coords, grads: dict) -> list[str]:
    """A note where grad_fn returned a gradient in a lower precision than its parameter
    (as torch's check_grad_dtypes refuses): it is judged at its own dtype's tolerance."""
    low = []
    for leaf in given.checked:
        g = grads.get(leaf.path)
        if g is None or leaf.is_complex or not np.issubdtype(np.asarray(g).dtype, np.floating):
            continue
        if np.finfo(np.asarray(g).dtype).bits < np.finfo(leaf.dtype).bits:
            low.append((leaf.path, np.asarray(g).dtype, leaf.dtype))
    if not low:
        return []
    paths = ", ".join(p for p, _, _ in low[:4]) + (" ..." if len(low) > 4 else "")
    _, g_dtype, p_dtype = low[0]
    return [
        f"grad_fn returned {g_dtype} gradients for {p_dtype} parameters ({paths}): judged at "
        f"{g_dtype}'s tolerance, so an error below {g_dtype}'s rounding passes; return them in "
        "the parameters' dtype for a check at its precision"
    ]


def jax_grad(
    fn_scalar: Callable[..., Any],
    values: Sequence[Any],
    coords: Coords,
    args: tuple,
    key: tuple | None,
) -> tuple[float, dict[str, np.ndarray]]:
    """(f, jax.grad(f)) at values, compiled once (kept across calls)."""
    grad, inputs, slot = _value_and_grad(fn_scalar, values, coords, args)
    value, grads = cached_jit(("grad", key, *slot), lambda: grad)(*inputs)
    return float(value), {leaf.path: np.asarray(g) for leaf, g in zip(coords.checked, grads)}


def program(
    fn_scalar: Callable[..., Any], values: Sequence[Any], coords: Coords, args: tuple
) -> jcore.ClosedJaxpr:
    """The program `jax_grad` compiles, traced: custom_vjp and custom_jvp rules inlined, with
    the globals and closures they read, where fn's program names them only (the key's
    digest where a rule cannot be traced alone: `fingerprint.rules`)."""
    grad, inputs, _ = _value_and_grad(fn_scalar, values, coords, args)
    return jax.make_jaxpr(grad)(*inputs)


def _value_and_grad(
    fn_scalar: Callable[..., Any], values: Sequence[Any], coords: Coords, args: tuple
) -> tuple[Callable[..., Any], tuple[list[jax.Array], list[Any]], tuple[Any, tuple[int, ...]]]:
    """jax.value_and_grad of fn_scalar over the checked leaves (a new function: JAX caches
    traces per function), its inputs at values, and the static part of its key."""
    dyn, rebuild, static = split_arrays((values, args))
    checked = [jnp.asarray(values[leaf.position]) for leaf in coords.checked]
    positions = tuple(leaf.position for leaf in coords.checked)
    grad = jax.value_and_grad(loss.of_checked(fn_scalar, coords, rebuild))
    return grad, (checked, dyn), (static, positions)


def own_dtype(
    fn_scalar: Callable[..., Any],
    grad_fn: Callable[..., Any] | None,
    params: Any,
    args: tuple,
    leaves: Sequence[Any],
    coords: Coords,
    key: tuple | None,
    f64: float,
    traced: bool,
) -> tuple[dict[str, np.ndarray] | None, str]:
    """The gradient under test at the parameters and data in their own dtypes, or (None, why
    not) where fn is not the same function there: its value at them must agree with the
    float64 value f64 within √u of their dtype (random draws in the data's dtype, or a branch
    on the dtype, make another function, and its gradient is not this one's)."""
    if grad_fn is None:
        f, grads = jax_grad(fn_scalar, leaves, coords, args, key)
    else:
        grads = _gradients.read(coords, grad_fn(params, *args))
        if traced:
            dyn, rebuild, static = split_arrays((params, args))
            run = cached_jit(("own", key, static), lambda: lambda d: fn_scalar(*_call(rebuild, d)))
            f = float(run(dyn))
        else:
            f = float(fn_scalar(params, *args))
    u = max(st.unit_roundoff(x.dtype) for x in coords.checked if low_dtype(x.dtype))
    if abs(f - f64) <= np.sqrt(u) * max(abs(f64), abs(f)):
        return grads, ""
    return None, (
        f"fn is {f!r} at the parameters and data in their own dtypes but {f64!r} in float64, "
        "more apart than their rounding (random draws or a branch that depend on the dtype): "
        "the gradient under test computed in float64 too (precision='upcast')"
    )


def _call(rebuild: Callable[[Sequence[Any]], Any], dyn: Sequence[Any]) -> tuple[Any, ...]:
    p, a = rebuild(dyn)
    return (p, *a)
