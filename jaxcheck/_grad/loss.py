"""The loss as the checker sees it: traceable or not, its output, one scalar, and fn(θ).

Everything here runs before the long part of a check, so a mistake in fn (a tuple returned,
a non-finite loss, hidden randomness) is reported at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.extend.core as jcore
import jax.numpy as jnp
import numpy as np

from .._core import gradients as _gradients
from .._core.coords import Coords
from .._engine.programs import cached_jit, split_arrays
from .._numerics import stencils as st
from . import fingerprint


def trace(
    fn: Callable[..., Any], leaves: Sequence[Any], coords: Coords, args: tuple
) -> tuple[Any, str]:
    """The abstract output of fn if JAX can trace it, else (None, the reason)."""
    checked = [leaves[leaf.position] for leaf in coords.checked]
    # Copies of the NumPy data: a trace that fails inside jax.enable_x64 can leave JAX holding
    # a float64 version of a NumPy constant, which later breaks the user's own float32 code
    # (jax 0.10: "RuntimeProgramInputMismatch ... expected f32 but got f64").
    args = jax.tree_util.tree_map(lambda x: x.copy() if isinstance(x, np.ndarray) else x, args)

    def with_checked(sel: Sequence[Any]) -> Any:
        values = list(leaves)
        for leaf, x in zip(coords.checked, sel):
            values[leaf.position] = x
        return fn(coords.unflatten(values), *args)

    try:
        return jax.eval_shape(with_checked, checked), ""
    except Exception as e:  # noqa: BLE001 - any failure to trace means: run it on the host
        return None, type(e).__name__


def output_info(out: Any, coords=None) -> tuple[tuple[int, ...], Any]:
    """(shape, dtype) of fn's output; a pytree output is refused with what it looks like:
    a gradient (fn and grad_fn swapped), or (loss, aux) without has_aux=True."""
    if isinstance(out, (tuple, list, dict)) or (
        coords is not None and len(jax.tree_util.tree_leaves(out)) > 1
    ):
        if coords is not None and _gradients.structure_matches(coords, out):
            raise TypeError(
                f"fn returned a {type(out).__name__} shaped like params: that is a gradient, "
                "not a loss. fn is the loss, fn(params, *args) -> scalar; pass the gradient "
                "function as grad_fn=: check_grad(loss, params, ..., grad_fn=gradient)."
            )
        if isinstance(out, (tuple, list)) and len(out) == 2:
            raise TypeError(
                f"fn returned a {type(out).__name__} of 2, not a loss. If it returns (loss, "
                "aux), pass has_aux=True (as with jax.grad)."
            )
        raise TypeError(
            f"fn returned a {type(out).__name__}, not a loss: it must return the loss as a "
            "number or array (with has_aux=True, a pair (loss, aux))."
        )
    if isinstance(out, (float, int)) and not isinstance(out, bool):
        return (), np.dtype(np.float64)
    if not hasattr(out, "shape") or not hasattr(out, "dtype"):
        raise TypeError(
            f"fn returned a {type(out).__name__}; it must return the loss as a number or array."
        )
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise TypeError(
            f"fn returned dtype {out.dtype}; a loss must be real floating-point (a complex or "
            "integer output has no gradient to check). Return e.g. jnp.abs(z) ** 2 or a float."
        )
    return tuple(int(d) for d in out.shape), np.dtype(out.dtype)


def scalarized(fn: Callable, w: np.ndarray | None) -> Callable:
    def fn_scalar(params: Any, *args: Any) -> Any:
        out = fn(params, *args)
        xp = jnp if isinstance(out, jax.Array) else np
        return xp.sum(xp.asarray(w) * out) if w is not None else xp.reshape(out, ())

    return fn_scalar


def check_base(f_first: float, f_again: float, out_dtype: Any, nondet_tol: float = 0.0) -> float:
    """Raise for a non-finite loss, or for two values of fn(θ) further apart than rounding
    and `nondet_tol`; return how far apart they are."""
    if not math.isfinite(f_first):
        raise ValueError(
            f"fn(params, *args) is {f_first} at the given parameters: the gradient cannot be "
            "checked where the loss is not finite. Look for log(0), division by zero or overflow "
            "at these parameters and data."
        )
    rounding = 4 * st.unit_roundoff(out_dtype) * max(abs(f_first), abs(f_again))
    if abs(f_first - f_again) > max(rounding, nondet_tol):
        raise ValueError(
            f"fn(params, *args) returned different values on two calls with the same inputs "
            f"({f_first!r}, then {f_again!r}): it has hidden randomness, such as dropout that "
            "draws a fresh mask on every call or noise from a global random state. Finite "
            "differences of a random function are meaningless. Fix the randomness: pass the "
            "PRNG key in args (fn(params, x, y, key)) and reuse it, or turn dropout off for "
            "the check. If the difference is the order of floating-point additions (GPU "
            "atomics in a scatter-add or segment_sum), pass nondet_tol= a bound on it."
        )
    return abs(f_first - f_again)


def abstract_output(f: Callable[..., Any], params: Any, args: tuple) -> Any:
    """The shape and dtype of f(params, *args), traced (arrays as arguments, the rest static)."""
    dyn, rebuild, _ = split_arrays((params, args))

    def run(dyn: Sequence[Any]) -> Any:
        p, a = rebuild(dyn)
        return f(p, *a)

    return jax.eval_shape(run, dyn)


class Base(NamedTuple):
    """fn's program at θ, traced (arrays as arguments, the rest static), its digest (the key
    of what is compiled from it: `fingerprint`), and fn(θ) where two traces of fn differ
    (else None: `base_value` computes it)."""

    program: jcore.ClosedJaxpr
    digest: str
    value: float | None


def program(fn_scalar: Callable[..., Any], params: Any, args: tuple, out_dtype: Any) -> Base:
    """fn_scalar's program at (params, args), after checking fn for hidden randomness.

    Python-side randomness (a NumPy draw, a PRNG key made from a counter) changes the traced
    program: two traces must agree. When they do not, both are run to show the values.
    """
    dyn, rebuild, _ = split_arrays((params, args))
    first, again = (jax.make_jaxpr(_fresh(fn_scalar, rebuild))(dyn) for _ in range(2))
    digest = fingerprint.digest(first)
    if digest == fingerprint.digest(again):
        return Base(first, digest, None)
    leaves = jax.tree_util.tree_leaves(dyn)
    f_first, f_again = (float(jax.jit(jcore.jaxpr_as_fun(c))(*leaves)[0]) for c in (first, again))
    check_base(f_first, f_again, out_dtype)
    return Base(first, digest, f_first)


def base_value(
    fn_scalar: Callable[..., Any],
    params: Any,
    args: tuple,
    key: tuple | None,
    out_dtype: Any,
    value: Callable[[], float] | None = None,
) -> float:
    """fn(θ), compiled (kept across calls under key, which names fn's program), checked finite.

    value: a function that computes fn(θ) some other way (from jax.value_and_grad's program,
    which the check needs anyway), or None to compile fn for it.
    """
    dyn, rebuild, static = split_arrays((params, args))
    if value:
        f = value()
    else:
        f = float(cached_jit(("base", key, static), lambda: _fresh(fn_scalar, rebuild))(dyn))
    check_base(f, f, out_dtype)
    return f


def _fresh(fn_scalar: Callable, rebuild: Callable) -> Callable:
    """fn_scalar of the dynamic values, a new function object each time: JAX caches traces
    per function, and a trace must see fn's globals and rules as they are now."""

    def run(dyn: Sequence[Any]) -> Any:
        p, a = rebuild(dyn)
        return fn_scalar(p, *a)

    return run


def of_checked(fn_scalar: Callable, coords, rebuild: Callable) -> Callable:
    """fn_scalar as a function of (the checked leaves, the other dynamic values and args)."""

    def run(sel: Sequence[Any], dyn: Sequence[Any]) -> Any:
        vals, a = rebuild(dyn)
        vals = list(vals)
        for leaf, x in zip(coords.checked, sel):
            vals[leaf.position] = x
        return fn_scalar(coords.unflatten(vals), *a)

    return run
