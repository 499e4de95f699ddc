"""The precision a program actually computes in, read from its jaxpr.

A float64 check of a function that casts to float32 inside (a mixed-precision layer,
`jax.nn.dot_product_attention` casting its logits before the softmax, a float32-only kernel
in a `pallas_call`) has float32's rounding in f and in its gradient, whatever the dtype of
its inputs. Every value the program (and every program nested in it: `pjit`, `scan`,
`cond`, custom rules, kernels) produces has a dtype; the coarsest floating-point one bounds
the rounding of the result.

`kinks` reads the same program for the primitives whose value is not smooth in their inputs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jax.extend.core as jcore
import jax.numpy as jnp
import numpy as np

from .._core import jaxpr as _jaxpr


def computed_dtype(closed: Any) -> np.dtype | None:
    """The coarsest floating-point (or complex) dtype of any value computed in the program
    (a `ClosedJaxpr` or `Jaxpr`) that its outputs depend on, as a real dtype; None where it
    computes no float. Values the outputs do not depend on (float32 running statistics an nnx
    BatchNorm in train mode writes into its state) do not round the result."""
    coarsest: np.dtype | None = None
    for var in _values(live(closed.jaxpr if hasattr(closed, "jaxpr") else closed)):
        real = real_dtype(getattr(getattr(var, "aval", None), "dtype", None))
        if real is not None and (coarsest is None or eps(real) > eps(coarsest)):
            coarsest = real
    return coarsest


def live(jaxpr: Any) -> Any:
    """The jaxpr without the equations its outputs do not depend on (JAX's dead-code
    elimination, which also prunes `pjit`, `scan`, `cond` and `while` bodies; equations with
    effects stay). The jaxpr itself where JAX's elimination is unavailable or fails on it."""
    if _jaxpr.dce_jaxpr is None:
        return jaxpr
    try:
        return _jaxpr.dce_jaxpr(jaxpr, [True] * len(jaxpr.outvars), instantiate=True)[0]
    except Exception:  # a primitive whose rule JAX lacks: read everything, as before
        return jaxpr


def eps(dtype: Any) -> float:
    """Machine epsilon of a float dtype."""
    return float(jnp.finfo(dtype).eps)


def coarser(a: Any, b: Any) -> np.dtype:
    """The coarser of two float dtypes (the one with the larger machine epsilon)."""
    return np.dtype(a) if eps(a) >= eps(b) else np.dtype(b)


def _values(jaxpr: Any) -> Iterator[Any]:
    """Every variable a jaxpr and the jaxprs in its equations' parameters compute."""
    for eqn in equations(jaxpr):
        yield from eqn.outvars


def equations(jaxpr: Any) -> Iterator[Any]:
    """Every equation of a jaxpr (or ClosedJaxpr) and of the jaxprs in its equations'
    parameters (`pjit`, `scan`, `cond`, custom rules, kernels)."""
    seen: set[int] = set()
    stack = [jaxpr.jaxpr if isinstance(jaxpr, jcore.ClosedJaxpr) else jaxpr]
    while stack:
        j = stack.pop()
        if id(j) in seen:
            continue
        seen.add(id(j))
        for eqn in j.eqns:
            yield eqn
            for param in eqn.params.values():
                stack.extend(_jaxprs(param))


def _jaxprs(param: Any) -> list[Any]:
    if isinstance(param, jcore.ClosedJaxpr):
        return [param.jaxpr]
    if isinstance(param, jcore.Jaxpr):
        return [param]
    if isinstance(param, (tuple, list)):
        return [j for p in param for j in _jaxprs(p)]
    inner = getattr(param, "jaxpr", None)  # e.g. a pallas_call's kernel, wrapped
    if isinstance(inner, (jcore.Jaxpr, jcore.ClosedJaxpr)):
        return _jaxprs(inner)
    return []


def real_dtype(dtype: Any) -> np.dtype | None:
    """A float dtype as itself, a complex one as its parts' dtype; None for anything else."""
    if dtype is None:
        return None
    try:
        dtype = np.dtype(dtype)
    except TypeError:  # an extended dtype: a PRNG key, float0
        return None
    if dtype.kind == "c":
        return np.dtype(np.float32) if dtype.itemsize == 8 else np.dtype(np.float64)
    return dtype if jnp.issubdtype(dtype, jnp.floating) else None


# Elementwise primitives with a kink or a jump where their argument crosses a threshold (ReLU
# is `max`, leaky ReLU and piecewise rules `select_n`, clipping `clamp`): applied to a layer's
# activations they put one at every unit, and a long step crosses many. Order statistics
# (`reduce_max`, `sort`, `argmax`: a softmax's stabilizing max) have one only where two values
# tie, and are not counted; nor is `sign`, whose common use (an eigenvector's sign fixed)
# jumps only where a component crosses zero.
NOT_SMOOTH = frozenset("abs ceil clamp floor max min rem round select_n".split())


def kinks(closed: Any) -> tuple[str, ...]:
    """The names of the elementwise non-smooth primitives the program uses, sorted (empty:
    smooth between ties)."""
    return tuple(sorted({e.primitive.name for e in equations(closed)} & NOT_SMOOTH))
