"""Split a chunk of perturbed evaluations into the part that does not depend on the chunk.

A chunk computes f at B perturbed points from (the leaf, the other params, the args) and (the
indices, the values) of the B perturbations. Much of its graph depends only on the first
group: the unperturbed forward pass, the base values of every intermediate. Inside one XLA
executable that work is recomputed for every chunk and, worse, XLA fuses it into the
per-perturbation loop (on CPU a matrix product fused into the elementwise loop that consumes
it made the whole chunk twice as slow). `split` traces the chunk once and cuts its jaxpr in
two: `prepare`, run once per leaf, computes the values that the per-perturbation part reads
(the residuals), and `run` evaluates a chunk from those residuals and the perturbations.

Work that grows the data (broadcasts, iotas, outer products: an output larger than every
input) stays in `run`, where XLA fuses it for free, so the residuals are no larger than the
forward pass's own intermediates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.extend.core as jcore
import numpy as np

from .._core.jaxpr import DropVar
from .patch import read, run_eqns


class Staged:
    """`prepare(*known) -> residuals` and `run(residuals, *perturbation) -> out`, both jitted."""

    def __init__(self, prepare: Callable, run: Callable, residual_avals: list, run_fn=None):
        self.prepare, self.run, self.residual_avals = prepare, run, residual_avals
        self.run_fn = run_fn  # run, not jitted: to jit again with shardings


def split(fn: Callable, known: Sequence[Any], unknown: Sequence[Any]) -> Staged:
    """Trace fn(*known, *unknown) and split it where the values stop depending on `known` only.

    `known` and `unknown` are sequences of pytrees of arrays; `prepare` takes the first,
    `run` the residuals and the second.
    """
    known_leaves, known_def = jax.tree_util.tree_flatten(list(known))
    unknown_leaves, unknown_def = jax.tree_util.tree_flatten(list(unknown))

    def flat(*leaves: Any) -> Any:
        k = known_def.unflatten(leaves[: len(known_leaves)])  # type: ignore[attr-defined]
        u = unknown_def.unflatten(leaves[len(known_leaves) :])  # type: ignore[attr-defined]
        return fn(*k, *u)

    closed = jax.make_jaxpr(flat)(*known_leaves, *unknown_leaves)
    jaxpr = closed.jaxpr
    n_known = len(known_leaves)
    late: set = set(jaxpr.invars[n_known:])  # variables computed per chunk
    early_eqns, late_eqns = [], []
    for eqn in jaxpr.eqns:
        ins = [v for v in eqn.invars if not isinstance(v, jcore.Literal)]
        if any(v in late for v in ins) or _grows(eqn):
            late_eqns.append(eqn)
            late.update(v for v in eqn.outvars if not isinstance(v, DropVar))
        else:
            early_eqns.append(eqn)
    needed: list = []
    seen: set = set()
    for eqn in late_eqns:
        for v in eqn.invars:
            _need(v, late, needed, seen)
    for v in jaxpr.outvars:
        _need(v, late, needed, seen)

    consts = dict(zip(jaxpr.constvars, closed.consts))

    def prepare(*known: Any) -> list[Any]:
        env = dict(consts)
        env.update(zip(jaxpr.invars[:n_known], jax.tree_util.tree_leaves(list(known))))
        run_eqns(early_eqns, env)
        # in the traced dtypes: a NumPy float64 constant of fn (a module-level table, as in
        # jax.scipy.special.owens_t) passed straight through would stay float64 without x64
        return [_canonical(env[v], v.aval.dtype) for v in needed]

    def run(residuals: list[Any], *unknown: Any) -> list[Any]:
        env = dict(zip(needed, residuals))
        env.update(zip(jaxpr.invars[n_known:], jax.tree_util.tree_leaves(list(unknown))))
        run_eqns(late_eqns, env)
        return [read(env, v) for v in jaxpr.outvars]

    avals = [jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype) for v in needed]
    return Staged(jax.jit(prepare), jax.jit(run), avals, run)


def _canonical(x: jax.Array | np.ndarray, dtype: np.dtype) -> jax.Array | np.ndarray:
    """x in the dtype JAX computes dtype as under the current config (floats only)."""
    if not jax.numpy.issubdtype(dtype, jax.numpy.inexact):
        return x
    return jax.numpy.asarray(x, jax.dtypes.canonicalize_dtype(dtype))


def _grows(eqn: jcore.JaxprEqn) -> bool:
    """An equation whose output is larger than each of its inputs: cheaper to recompute."""
    sizes = [int(np.prod(v.aval.shape)) for v in eqn.invars if hasattr(v.aval, "shape")]
    outs = [int(np.prod(v.aval.shape)) for v in eqn.outvars if hasattr(v.aval, "shape")]
    return max(outs, default=0) > max(sizes, default=0)


def _need(v, late: set, needed: list, seen: set) -> None:
    if isinstance(v, jcore.Literal) or v in late or v in seen:
        return
    seen.add(v)
    needed.append(v)
