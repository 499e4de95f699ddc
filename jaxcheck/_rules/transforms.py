"""The rule under test under `jax.jit` and `jax.vmap`: its values must equal the eager ones;
and its primal output must equal fn's.

A batching rule that is wrong (`custom_vmap`), or a `custom_vjp` whose `bwd` cannot be traced
(a NumPy call), shows here and nowhere else: the identities themselves run eagerly. A
handwritten `vjp=`/`jvp=` that cannot be traced is not wrong (it is only ever called eagerly):
`untraceable` says so, and the check skips the transforms for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._core.errors import NOT_JAX_CODE, one_line


def consistency(
    name: str, call: Callable, primals: tuple, inputs: list, rtol, atol, eager=None
) -> str:
    """ "ok", or what differs or fails when call(primals, x) runs under `name` ("jit", "vmap").

    vmap maps over a batch of copies of the primals and over the inputs (cotangents or
    tangents) at once; float0 tangents of integer primals stay unbatched. eager: the eager
    values, where already computed.
    """
    try:
        if eager is None:
            eager = [call(primals, x) for x in inputs]
        if name == "jit":
            jitted = jax.jit(call)
            moved = [jitted(primals, x) for x in inputs]
        else:
            k = len(inputs)
            many = jax.tree_util.tree_map(lambda x: jnp.stack([x] * k), primals)
            axes = jax.tree_util.tree_map(lambda x: None if is_float0(x) else 0, inputs[0])
            out = jax.vmap(call, in_axes=(0, axes))(many, jax.tree_util.tree_map(stack, *inputs))
            moved = [jax.tree_util.tree_map(lambda x, i=i: x[i], out) for i in range(k)]
    except Exception as e:  # noqa: BLE001 - the report says what failed
        first = str(e).splitlines()[0][:160] if str(e) else ""
        return f"raised {type(e).__name__}: {first}"
    return _compare(eager, moved, rtol, atol)


def is_float0(x: Any) -> bool:
    return getattr(x, "dtype", None) == jax.dtypes.float0


def stack(*xs: Any) -> Any:
    """Stack per-direction values on a new leading axis; a float0 zero stays one unstacked."""
    return xs[0] if is_float0(xs[0]) else jnp.stack(xs)


def _compare(eager: list, moved: list, rtol: float, atol: float) -> str:
    """ "ok", or where the transformed values differ most from the eager ones."""
    worst = _worst(eager, moved, rtol, atol)
    if worst is None:
        return "ok"
    where, got, expected, j, _ = worst
    return (
        f"differs from the eager values: output{where} is {got:.6g}, eagerly {expected:.6g} "
        f"(direction {j})"
    )


def primal_output(got: Any, expected: Any, rtol: float, atol: float) -> str:
    """ "ok", or where the rule's primal output (a `custom_vjp` fwd's, a JVP's `out`)
    differs from fn's value beyond rounding."""
    shapes = [np.shape(x) for x in jax.tree_util.tree_leaves(got)]
    expected_shapes = [np.shape(x) for x in jax.tree_util.tree_leaves(expected)]
    if shapes != expected_shapes:
        return (
            f"the rule's primal output has shapes {shapes}, fn's value {expected_shapes}: the "
            "rule must return what fn computes"
        )
    # compared leaf by leaf in order: a list where fn returns a tuple is the same output
    worst = _worst([expected], [jax.tree_util.tree_leaves(got)], rtol, atol)
    if worst is None:
        return "ok"
    where, got_i, expected_i, _, count = worst
    return (
        f"the rule's primal output differs from fn's value: output{where} is {got_i:.6g}, fn "
        f"gives {expected_i:.6g} ({count}); the rule must return what fn computes"
    )


def untraceable(call: Callable, primals: tuple, x: Any) -> str:
    """ "" if JAX can trace call(primals, x), else what it raised (a NumPy call on a tracer)."""
    try:
        jax.eval_shape(call, primals, x)
    except NOT_JAX_CODE as e:
        return one_line(e, 120)
    return ""


def _worst(expected: list, got: list, rtol: float, atol: float):
    """(output path and index, got, expected, which pair, how many elements differ) of the
    element differing most beyond rtol·(|x| + mean|x|) + atol, or None."""
    worst, found, count, total = 0.0, None, 0, 0
    for j, (e, m) in enumerate(zip(expected, got)):
        flat_e = jax.tree_util.tree_flatten_with_path(e)[0]
        flat_m = jax.tree_util.tree_leaves(m)
        for (path, x), y in zip(flat_e, flat_m):
            x, y = np.asarray(x), np.asarray(y)
            if is_float0(x):
                continue
            with np.errstate(invalid="ignore", divide="ignore"):
                tol = rtol * (np.abs(x) + np.mean(np.abs(x))) + atol
                ratio = np.abs(x - y) / np.maximum(tol, np.finfo(np.float64).tiny)
            ratio = np.where(np.isnan(ratio) & (np.isnan(x) != np.isnan(y)), np.inf, ratio)
            ratio = np.nan_to_num(ratio, nan=0.0)
            count, total = count + int((ratio > 1.0).sum()), total + ratio.size
            if ratio.size and ratio.max() > max(worst, 1.0):
                i = int(np.argmax(ratio))
                worst = float(ratio.max())
                index = np.unravel_index(i, x.shape) if x.shape else ()
                where = f"{jax.tree_util.keystr(path)}{list(map(int, index)) if index else ''}"
                found = (where, y.reshape(-1)[i], x.reshape(-1)[i], j)
    return None if found is None else (*found, f"{count} of {total} elements")
