"""What a check will run, as a short digest: the key of every executable kept across checks.

A kept executable must be found again for the same program, never for the same Python
object: in a notebook, re-running a cell redefines a custom_vjp's backward (a new rule, the
loss the same function object), a global that the backward reads changes, or a closure's
value does, and the program changes while `fn` does not. The digest is taken of the traced
programs: the jaxprs' text, the values of their constants (captured globals and closures,
which the text does not show; nested jaxprs' too), and the identity of each Python function
a program calls back into (pure_callback, io_callback: the text masks their addresses). The
same program traced again gives the same digest, so a repeated check compiles nothing.

The text names a custom_jvp or custom_vjp rule without showing it: where the gradient under
test is JAX's, `rules` digests each such call's pullback, the rule traced into it as it is
now (JAX's gradient of everything else is a function of fn's program alone). Tracing the
calls alone costs a few milliseconds each, a small part of tracing fn's whole gradient.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import jax
import jax.extend.core as jcore
import jax.numpy as jnp
import numpy as np

from .._core.jaxpr import DebugInfo, DropVar

# The primitives that run a Python rule under differentiation (custom_jvp, custom_vjp).
RULES = ("custom_jvp_call", "custom_vjp_call")


def digest(*programs: jcore.ClosedJaxpr | None) -> str:
    """A digest of the closed jaxprs (None: a program not traced, marked as such)."""
    h = hashlib.blake2b(digest_size=16)
    seen: dict[int, bytes] = {}  # a constant shared by several programs is hashed once
    for closed in programs:
        if closed is None:
            h.update(b"\0untraced\0")
            continue
        h.update(str(closed.jaxpr).encode())
        for jaxpr in _walk(closed):
            for x in jaxpr.consts if isinstance(jaxpr, jcore.ClosedJaxpr) else ():
                if id(x) not in seen:
                    seen[id(x)] = _value(x)
                h.update(seen[id(x)])
            for eqn in _eqns(jaxpr):
                # pure_callback's and io_callback's parameter (JAX's _FlatCallback)
                f = getattr(eqn.params.get("callback"), "callback_func", None)
                if f is not None:
                    h.update(f"callback {id(f)}".encode())
    return h.hexdigest()


def has_rules(closed: jcore.ClosedJaxpr) -> bool:
    """Whether the program calls a custom_jvp or custom_vjp function, nested ones included."""
    return any(True for _ in _calls(closed))


def rules(closed: jcore.ClosedJaxpr) -> str | None:
    """A digest of the custom_jvp and custom_vjp rules that the program calls: each call's
    pullback at its input types, traced (with the globals and closures the rule reads now);
    None where a call cannot be traced alone (a collective over a shard_map's axis)."""
    try:
        return digest(*(_pullback(*_alone(eqn)) for eqn in _calls(closed)))
    except Exception:  # noqa: BLE001 - the caller digests the gradient's whole program instead
        return None


def _calls(closed: jcore.ClosedJaxpr) -> Iterator[jcore.JaxprEqn]:
    for jaxpr in _walk(closed):
        yield from (eqn for eqn in _eqns(jaxpr) if eqn.primitive.name.startswith(RULES))


def _alone(eqn: jcore.JaxprEqn) -> tuple[jcore.ClosedJaxpr, int]:
    """The equation as a program of its own (its literals kept, its unused outputs named),
    and how many of its first inputs are the values the function closes over (JAX passes
    them first, and differentiates a custom_vjp with respect to its arguments only)."""
    n = eqn.params.get("num_consts", 0)
    fixed = list(dict.fromkeys(v for v in eqn.invars[:n] if isinstance(v, jcore.Var)))
    free = [v for v in eqn.invars[n:] if isinstance(v, jcore.Var) and v not in fixed]
    invars = fixed + list(dict.fromkeys(free))
    outvars = [jcore.Var(v.aval) if isinstance(v, DropVar) else v for v in eqn.outvars]
    info = DebugInfo(
        "jaxcheck fingerprint", eqn.primitive.name, tuple(f"x{i}" for i in range(len(invars))),
        tuple(f"y{i}" for i in range(len(outvars))),
    )  # fmt: skip
    jaxpr = jcore.Jaxpr([], invars, outvars, [eqn.replace(outvars=outvars)], eqn.effects, info)
    return jcore.ClosedJaxpr(jaxpr, []), len(fixed)


def _pullback(closed: jcore.ClosedJaxpr, n_fixed: int) -> jcore.ClosedJaxpr:
    """jax.vjp of the program with respect to its inputs after the first n_fixed, traced at
    its input types."""
    f = jcore.jaxpr_as_fun(closed)

    def pullback(*xs: Any) -> Any:
        out, vjp = jax.vjp(lambda *free: f(*xs[:n_fixed], *free), *xs[n_fixed:])
        return vjp([_cotangent(y) for y in out])

    avals = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in closed.in_avals]
    return jax.make_jaxpr(pullback)(*avals)


def _cotangent(y: jax.Array) -> jax.Array | np.ndarray:
    """Ones for a floating output; an integer output's cotangent type, float0, else."""
    if jax.dtypes.issubdtype(y.dtype, np.inexact):
        return jnp.ones_like(y)
    return np.zeros(y.shape, jax.dtypes.float0)


def _walk(program: jcore.ClosedJaxpr | jcore.Jaxpr) -> Iterator[Any]:
    """program and every jaxpr nested in its equations (a jit, a scan's body, a cond's
    branches, a custom function's primal), depth first."""
    yield program
    for eqn in _eqns(program):
        for value in eqn.params.values():
            for v in value if isinstance(value, (tuple, list)) else (value,):
                if isinstance(v, (jcore.Jaxpr, jcore.ClosedJaxpr)):
                    yield from _walk(v)


def _eqns(program: jcore.ClosedJaxpr | jcore.Jaxpr) -> list[jcore.JaxprEqn]:
    return (program.jaxpr if isinstance(program, jcore.ClosedJaxpr) else program).eqns


def _value(x: Any) -> bytes:
    """A constant's shape, dtype and bytes, hashed; a typed PRNG key by its key data."""
    if jax.dtypes.issubdtype(getattr(x, "dtype", None), jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    a = np.ascontiguousarray(np.asarray(x))
    h = hashlib.blake2b(f"{a.shape} {a.dtype}".encode(), digest_size=16)
    h.update(a.reshape(-1).view(np.uint8).data)
    return h.digest()
