"""Each seed document's scenario, reproduced: the checker catches and locates its bug."""

import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import jaxcheck
from tests import helpers as h


def test_seed000_correct_backprop_passes_on_the_host():
    params, X, t = h.seed000_data()
    result = jaxcheck.check_grad(h.seed000_loss, params, X, t, grad_fn=h.seed000_backward)
    assert result.passed
    assert result.engine == "host"
    assert any("not JAX-traceable" in n for n in result.notes)
    assert result.n_checked == 6


def test_seed000_the_check_depends_on_the_targets():
    params, X, t = h.seed000_data()
    a = jaxcheck.check_grad(h.seed000_loss, params, X, t, grad_fn=h.seed000_backward)
    b = jaxcheck.check_grad(h.seed000_loss, params, X, t + 0.3, grad_fn=h.seed000_backward)
    assert not np.allclose(a.numeric["W2"], b.numeric["W2"])

    def ignores_targets(p, X, t):
        return h.seed000_backward(p, X, t, use_targets=False)

    result = jaxcheck.check_grad(h.seed000_loss, params, X, t, grad_fn=ignores_targets)
    assert not result.passed
    assert {e.path for e in result.failures} == {"['W1']", "['W2']"}


def test_seed001_transposed_gradients_are_named_with_both_shapes():
    params, x = h.seed001_data()  # the seed's 784-200-784 autoencoder
    with pytest.raises(ValueError) as info:
        jaxcheck.check_grad(h.seed001_loss, params, x, grad_fn=h.seed001_backward)
    message = str(info.value)
    assert "params['decoder']" in message and "params['encoder']" in message
    assert "(784, 200)" in message and "(200, 784)" in message
    assert "transposed" in message


def test_seed001_fixed_backward_passes():
    params, x = h.seed001_data(n_visible=30, n_hidden=7)
    result = jaxcheck.check_grad(
        h.seed001_loss, params, x, grad_fn=lambda p, x: h.seed001_backward(p, x, fixed=True)
    )
    assert result.passed, result
    assert result.difference < 1e-8


def test_seed002_correct_gradient_passes_all_along_training_to_the_minimum():
    seed_threshold_failures = 0
    smallest = np.inf
    for p in h.seed002_training():
        g = h.seed002_backward(p, h.SEED002_X, h.SEED002_Y)
        flat = np.concatenate([g["W1"].ravel(), g["W2"].ravel()])
        num = h.seed002_numerical_gradient(p, h.SEED002_X, h.SEED002_Y)
        diff = np.linalg.norm(flat - num) / np.linalg.norm(flat + num)
        seed_threshold_failures += diff >= 10e-8
        smallest = min(smallest, np.abs(flat).min())
        result = jaxcheck.check_grad(
            h.seed002_loss, p, h.SEED002_X, h.SEED002_Y, grad_fn=h.seed002_backward
        )
        assert result.passed, result
    # The seed's complaint is real: its fixed threshold fails this correct gradient...
    assert seed_threshold_failures > 100
    # ...as the gradients become tiny near the minimum.
    assert smallest < 1e-6


def test_seed002_a_wrong_gradient_is_caught_near_the_minimum():
    *_, last = h.seed002_training()

    def missing_factor(p, X, y):
        g = h.seed002_backward(p, X, y)
        return {"W1": g["W1"], "W2": g["W2"] * 1.01}  # a 1% error on tiny gradients

    result = jaxcheck.check_grad(
        h.seed002_loss, last, h.SEED002_X, h.SEED002_Y, grad_fn=missing_factor
    )
    assert {e.path for e in result.failures} == {"['W2']"}


def test_seed003_exactly_the_planted_bugs_fail():
    params, X, Y = h.seed003_data()
    result = jaxcheck.check_grad(h.seed003_forward, params, X, Y, grad_fn=h.seed003_backward)
    assert not result.passed
    failed = {path for path, leaf in result.leaves.items() if not leaf.passed}
    assert failed == {"['W2']", "['b1']"}
    # db1 = 4/m: every element with a nonzero gradient is 4x the numeric one.
    for e in result.failures:
        ratio = e.analytic / e.numeric
        assert ratio == pytest.approx(4.0 if e.path == "['b1']" else 2.0, rel=1e-6)


def test_seed003_fixed_backward_passes():
    params, X, Y = h.seed003_data()
    result = jaxcheck.check_grad(
        h.seed003_forward,
        params,
        X,
        Y,
        grad_fn=lambda p, X, Y: h.seed003_backward(p, X, Y, bugs=False),
    )
    assert result.passed, result


def test_seed003_flat_vector_in_ravel_pytree_order():
    """dictionary_to_vector style: the gradient as one (n, 1) column vector."""
    params, X, Y = h.seed003_data()

    def vector_backward(p, X, Y):
        flat, _ = ravel_pytree(h.seed003_backward(p, X, Y))
        return np.asarray(flat).reshape(-1, 1)

    result = jaxcheck.check_grad(h.seed003_forward, params, X, Y, grad_fn=vector_backward)
    assert {e.path for e in result.failures} == {"['W2']", "['b1']"}


def test_custom_vjp_with_a_transposed_square_gradient_is_caught_in_that_leaf():
    loss, params, x = h.custom_vjp_model(bug=True)
    result = jaxcheck.check_grad(loss, params, x)  # jax.grad uses the wrong custom rule
    assert not result.passed
    assert {e.path for e in result.failures} == {"['W']"}
    assert result.leaves["['v']"].passed
    # Diagonal elements are unaffected by a transposition, so they pass.
    assert all(e.index[0] != e.index[1] for e in result.failures)
    assert result.leaves["['W']"].n_failed == 30


def test_custom_vjp_fixed_rule_passes():
    loss, params, x = h.custom_vjp_model(bug=False)
    assert jaxcheck.check_grad(loss, params, x).passed
