"""Checked by mypy in CI (`.ci/run`), not collected by pytest: the public API's return types
are what a type checker sees, not Any (the decorators keep the signatures)."""

from typing import assert_type

import jax.numpy as jnp

import jaxcheck
from jaxcheck import CheckResult, ExploreResult, IdentityResult, SweepResult, TaylorResult
from jaxcheck.testing import assert_grad_everywhere


def loss(p: jnp.ndarray) -> jnp.ndarray:
    return jnp.sum(p**2)


assert_type(jaxcheck.check_grad(loss, jnp.ones(3)), CheckResult)
assert_type(jaxcheck.assert_grad(loss, jnp.ones(3)), CheckResult)
assert_type(jaxcheck.check_vjp(jnp.sin, jnp.ones(3)), IdentityResult)
assert_type(jaxcheck.check_jvp(jnp.sin, jnp.ones(3)), IdentityResult)
assert_type(jaxcheck.sweep_eps(loss, jnp.ones(3)), SweepResult)
assert_type(jaxcheck.explore(loss, jnp.ones(3)), ExploreResult)
assert_type(assert_grad_everywhere(loss, jnp.ones(3)), ExploreResult)
assert_type(jaxcheck.taylor_test(loss, jnp.ones(3)), TaylorResult)
