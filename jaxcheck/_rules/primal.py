"""Custom differentiation rules in a traced function: finding them and taking them out.

`jax.custom_vjp` and `jax.custom_jvp` functions appear in a jaxpr as `custom_vjp_call` and
`custom_jvp_call` equations that carry the primal computation (`call_jaxpr`) beside the rule.
`without_rules` rewrites each into a plain call of its primal computation, everywhere (inside
`jit`, `scan`, `cond`, `while_loop` bodies too), so that JAX differentiates what the function
computes instead of what its rules claim: the reference for `check_vjp` and `check_jvp`.

JAX's own rules (`jax.nn.relu`, `jnp.logaddexp`, ...) stay: they are tested by JAX, and some
exist because the primal computation differentiates badly (relu's derivative at 0, the
overflow-safe logaddexp). A rule is JAX's when its primal function is defined in JAX's core
source, `jax/_src/` outside Pallas: kernels and experimental code that ship inside the jax
package (`jax.experimental.pallas.ops.*`'s attention, `jax.experimental.ode`) are rules like
any user's, checked against their primal computation.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import jax
import jax.extend.core as jcore

CUSTOM = ("custom_vjp_call", "custom_jvp_call")
_JAX = os.path.dirname(os.path.abspath(jax.__file__))
_JAX_SOURCE = os.path.join(_JAX, "_src") + os.sep  # JAX's core, whose rules JAX tests
_NOT_CORE = (os.path.join(_JAX, "_src", "pallas") + os.sep,)  # inside it, but kernels' tools


def is_jax_rule(call: jcore.ClosedJaxpr) -> bool:
    """Whether a rule's primal function is defined in JAX's core (`jax/_src/`, not Pallas)."""
    info = getattr(call.jaxpr, "debug_info", None)
    where = getattr(info, "func_src_info", None) or ""
    path = where.rpartition(" at ")[2].rpartition(":")[0]
    if not path:
        return False
    path = os.path.abspath(path)
    return path.startswith(_JAX_SOURCE) and not path.startswith(_NOT_CORE)


def without_rules(closed: jcore.ClosedJaxpr) -> tuple[jcore.ClosedJaxpr, int, int]:
    """The jaxpr with every custom rule replaced by its primal computation; the number of
    those rules, and of JAX's own rules (kept)."""
    found = [0, 0]

    def jaxpr(j: jcore.Jaxpr) -> jcore.Jaxpr:
        eqns = []
        for e in j.eqns:
            if e.primitive.name in CUSTOM and is_jax_rule(e.params["call_jaxpr"]):
                found[1] += 1
            if e.primitive.name in CUSTOM and not is_jax_rule(e.params["call_jaxpr"]):
                found[0] += 1
                call = closed_jaxpr(e.params["call_jaxpr"])
                e = e.replace(primitive=jcore.primitives.closed_call_p, params={"call_jaxpr": call})
            else:
                e = e.replace(params={k: param(v) for k, v in e.params.items()})
            eqns.append(e)
        return j.replace(eqns=eqns)

    def closed_jaxpr(c: jcore.ClosedJaxpr) -> jcore.ClosedJaxpr:
        return jcore.ClosedJaxpr(jaxpr(c.jaxpr), c.consts)

    def param(v: Any) -> Any:
        if isinstance(v, jcore.ClosedJaxpr):
            return closed_jaxpr(v)
        if isinstance(v, jcore.Jaxpr):
            return jaxpr(v)
        if isinstance(v, tuple) and any(isinstance(x, (jcore.ClosedJaxpr, jcore.Jaxpr)) for x in v):
            parts = [param(x) for x in v]
            # a namedtuple stays one (lax.custom_linear_solve's _LinearSolveTuple: .solve, ...)
            return type(v)(*parts) if hasattr(v, "_fields") else tuple(parts)
        return v

    return closed_jaxpr(closed), found[0], found[1]


def primal_function(fn: Callable, primals: tuple) -> tuple[Callable, int, int]:
    """fn without its custom rules, as a function of the same primals; the number of rules
    taken out, and of JAX's own rules kept."""
    closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*primals)
    stripped, n_rules, n_jax = without_rules(closed)
    out_tree = jax.tree_util.tree_structure(out_shape)
    run = jcore.jaxpr_as_fun(stripped)

    def reference(*p: Any) -> Any:
        return jax.tree_util.tree_unflatten(out_tree, run(*jax.tree_util.tree_leaves(p)))

    return reference, n_rules, n_jax
