"""The JAX engine along random directions (directional mode): f at θ + t·v for unit
Gaussian directions v drawn on the device, over a whole leaf or over labelled parts of it."""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np

from .._core.coords import Leaf

ALONG = range(4)  # points per direction: θ ± h v, θ ± 2h v


class Along:
    """`JaxEngine`'s directional programs (a mixin: it uses the engine's `_with_leaf`,
    `prepare` and `_run_chunks`)."""

    def _along(self, leaf: Leaf) -> Callable:
        """f at θ + t·v for unit Gaussian directions v over the leaf (or a labelled part)."""
        g_fn = self._with_leaf(leaf)
        jnp = jax.numpy

        def one(base_flat, params_dyn, args_dyn, labels, grad, ts, key, group):
            mask = labels == group
            # float32 draws cost half the random bits of float64, and the sequential threefry
            # 0.6x the time of the partitionable one: any direction will do.
            with jax.threefry_partitionable(False):
                v = jax.random.normal(key, base_flat.shape, np.float32)
            v = v.astype(base_flat.dtype) * mask
            v = v / jnp.maximum(jnp.linalg.norm(v), jnp.finfo(v.dtype).tiny)
            # The points share the direction (drawn once) and one copy of fn's graph.
            xs = base_flat[None] + ts[:, None] * v[None]
            fs = jax.vmap(lambda x: g_fn(x.reshape(leaf.shape), params_dyn, args_dyn))(xs)
            ss = jax.vmap(lambda x: jnp.dot(grad, x - base_flat))(xs)
            weights = jnp.stack([jnp.dot(jnp.abs(grad), jnp.abs(v)), jnp.sum(jnp.abs(v))])
            return fs, ss, weights

        return jax.vmap(one, in_axes=(None,) * 6 + (0, 0))

    def direction_cost(self, leaf: Leaf) -> float | None:
        """A direction's cost over one element evaluation's, from XLA's cost analysis of the
        two compiled programs (FLOPs plus bytes accessed, per member); None if unknown."""

        def per_member(kind):
            program = self.prepare(leaf, kind)[1]  # compiled (the check needs both)
            try:
                cost = program.run.cost_analysis()
                cost = cost[0] if isinstance(cost, (list, tuple)) else cost
                return (float(cost["flops"]) + float(cost["bytes accessed"])) / program.size
            except Exception:  # noqa: BLE001 - a backend that does not say
                return None

        d, e = per_member("direction"), per_member("element")
        return d / e if d and e else None

    def evaluate_along(self, leaf, grad, keys, labels, groups, ts):
        """For each direction b: f and ⟨grad, x − θ⟩ at x = θ + ts[j]·v_b, and (⟨|grad|, |v_b|⟩,
        Σ|v_b|). v_b: a unit Gaussian direction drawn from keys[b] (uint32[2]) on the elements
        whose label equals groups[b], zero elsewhere. Arrays [B, len(ts)], [B, len(ts)], [B, 2].
        """
        base, program, residuals = self.prepare(leaf, "direction")
        fixed = (
            np.asarray(labels, np.int32),
            np.asarray(grad, base.dtype),
            np.asarray(ts, base.dtype),
        )
        batched = [(keys, np.uint32, 0), (groups, np.int32, -1)]
        tag = (leaf.position, "direction")
        return self._run_chunks(program, residuals, fixed, batched, points=len(ts), tag=tag)
