"""The rule under test under `jax.jit` and `jax.vmap`: its values must equal the eager ones.

A batching rule that is wrong (`custom_vmap`), or a rule that cannot be traced (a NumPy call
in a `bwd`), shows here and nowhere else: the identities themselves run eagerly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def consistency(name: str, call: Callable, primals: tuple, inputs: list, rtol, atol) -> str:
    """ "ok", or what differs or fails when call(primals, x) runs under `name` ("jit", "vmap").

    vmap maps over a batch of copies of the primals and over the inputs (cotangents or
    tangents) at once; float0 tangents of integer primals stay unbatched.
    """
    try:
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
    worst, where = 0.0, ""
    for j, (e, m) in enumerate(zip(eager, moved)):
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
            if ratio.size and ratio.max() > max(worst, 1.0):
                i = int(np.argmax(ratio))
                worst = float(ratio.max())
                index = np.unravel_index(i, x.shape) if x.shape else ()
                where = (
                    f"differs from the eager values: output{jax.tree_util.keystr(path)}"
                    f"{list(map(int, index)) if index else ''} is {y.reshape(-1)[i]:.6g}, "
                    f"eagerly {x.reshape(-1)[i]:.6g} (direction {j})"
                )
    return where or "ok"
