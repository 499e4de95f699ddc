"""Correct float32 models pass with default settings; planted bugs in them are caught."""

import jax
import numpy as np
import pytest

import jaxcheck
from tests import helpers as h


@pytest.mark.parametrize("name", sorted(h.CORPUS))
def test_correct_float32_model_passes_with_defaults(name):
    loss, params, args = h.CORPUS[name]()
    result = jaxcheck.check_grad(loss, params, *args)
    assert result.passed, result
    assert result.precision == "float64" and result.engine in ("jax", "jax-flat", "jax-mixed")
    assert result.difference < 1e-7
    assert not jax.config.jax_enable_x64  # the check never flips the global config


@pytest.mark.parametrize("name", sorted(h.CORPUS))
def test_a_wrong_scale_on_one_leaf_is_caught_and_located(name):
    loss, params, args = h.CORPUS[name]()
    target = sorted(params)[-1]

    def wrong(p, *a):
        g = jax.grad(loss)(p, *a)
        return {**g, target: g[target] * 1.001}

    result = jaxcheck.check_grad(loss, params, *args, grad_fn=wrong)
    assert {e.path for e in result.failures} == {f"['{target}']"}
    assert all(e.status == "mismatch" for e in result.failures)
    g = np.asarray(jax.grad(loss)(params, *args)[target]).ravel()
    leaf = result.leaves[f"['{target}']"]
    # Every element whose gradient is resolvable is flagged; only zero gradients can hide.
    assert leaf.n_failed + leaf.n_unverifiable >= np.count_nonzero(
        np.abs(g) > 1e-6 * np.abs(g).max()
    )
