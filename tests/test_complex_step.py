"""method="complex_step": exact where the loss is complex-analytic, verified, and never trusted
blindly where it is not (abs, norm, var, softplus, logaddexp, real-only code)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcheck
from tests.helpers import CORPUS


def mlp(dtype=np.float64, extra=None):
    """A tanh MLP; extra(p, x) is added to its loss."""
    rng = np.random.default_rng(0)
    params = {
        "W": (rng.standard_normal((8, 5)) * 0.5).astype(dtype),
        "b": np.zeros(5, dtype),
        "V": (rng.standard_normal((5, 3)) * 0.5).astype(dtype),
    }
    x, y = rng.standard_normal((16, 8)).astype(dtype), rng.standard_normal((16, 3)).astype(dtype)

    def loss(p, x, y):
        h = jnp.tanh(x @ p["W"] + p["b"][None])
        value = jnp.mean((h @ p["V"] - y) ** 2)
        return value if extra is None else value + extra(p, x)

    return loss, params, (x, y)


def grad64(loss, params, *args):
    """jax.grad in float64 (outside a check, JAX would compute it in float32)."""
    with jax.enable_x64(True):
        return jax.tree_util.tree_map(np.array, jax.grad(loss)(params, *args))


def rel_errors(result, path):
    a, n = np.asarray(result.analytic[path]), np.asarray(result.numeric[path])
    return np.abs(a - n) / np.abs(a)


def test_analytic_losses_are_checked_to_rounding_and_reported_as_such():
    loss, params, args = mlp()
    result = jaxcheck.check_grad(loss, params, *args, method="complex_step")
    central = jaxcheck.check_grad(loss, params, *args)
    assert result.passed, result
    assert result.method == "complex_step"
    assert {leaf.method for leaf in result.leaves.values()} == {"complex_step"}
    assert "complex-step derivatives" in str(result)
    assert result.to_dict()["leaves"]["['W']"]["method"] == "complex_step"
    # no subtraction: errors at rounding level, far below central differences'
    assert np.median(rel_errors(result, "W")) < 1e-14
    assert np.median(rel_errors(result, "W")) < np.median(rel_errors(central, "W")) / 1e3


@pytest.mark.parametrize("precision", ["float64", "native"])
def test_a_planted_bug_below_finite_differences_resolution_is_caught(precision):
    # 3e-5 relative in float32 is under what even Richardson extrapolation resolves there
    loss, params, args = mlp(np.float32)
    g = jax.grad(loss)(params, *args)
    wrong = {**g, "W": g["W"].at[2, 3].multiply(1 + 3e-5 if precision == "native" else 1e-5)}
    result = jaxcheck.check_grad(
        loss, params, *args, grad_fn=lambda *_: wrong, method="complex_step", precision=precision
    )
    assert [(e.path, e.index) for e in result.failures] == [("['W']", (2, 3))], result
    if precision == "native":
        richardson = jaxcheck.check_grad(
            loss, params, *args, grad_fn=lambda *_: wrong, precision="native"
        )
        assert richardson.passed  # what the complex step adds


NOT_ANALYTIC = {
    "abs": lambda p, x: 0.1 * jnp.sum(jnp.abs(p["W"])),
    "norm": lambda p, x: 0.1 * jnp.linalg.norm(x @ p["W"]),
    "var": lambda p, x: jnp.var(x @ p["W"]),
    "std": lambda p, x: jnp.std(x @ p["W"]),
    "softplus": lambda p, x: jnp.mean(jax.nn.softplus(x @ p["W"])),
    "logaddexp": lambda p, x: jnp.mean(jnp.logaddexp(x @ p["W"], 0.0)),
    "cast to real": lambda p, x: jnp.sum(jnp.real(p["W"])) * 0.0 + jnp.sum(p["W"].real ** 2),
}


@pytest.mark.parametrize("name", list(NOT_ANALYTIC))
def test_non_analytic_terms_fall_back_to_finite_differences_with_a_note(name):
    loss, params, args = mlp(extra=NOT_ANALYTIC[name])
    result = jaxcheck.check_grad(loss, params, *args, method="complex_step")
    assert result.passed, result
    assert result.leaves["['W']"].method == "central"
    assert result.leaves["['V']"].method == "complex_step"  # the term does not touch V
    assert any("complex step not used on ['W']" in n for n in result.notes), result.notes
    assert "central differences on 1 of 3 leaves" in str(result)
    # and a wrong gradient of the fallen-back leaf is still caught and located
    g = grad64(loss, params, *args)
    wrong = {**g, "W": g["W"].copy()}
    wrong["W"][4, 1] *= 1.01
    bad = jaxcheck.check_grad(loss, params, *args, grad_fn=lambda *_: wrong, method="complex_step")
    assert [(e.path, e.index) for e in bad.failures] == [("['W']", (4, 1))], bad


def test_code_that_refuses_complex_input_falls_back():
    loss, params, args = CORPUS["scan_rnn"]()  # the scan carry is created real
    result = jaxcheck.check_grad(loss, params, *args, method="complex_step")
    assert result.passed, result
    assert result.leaves["['Wh']"].method == "central"
    assert result.leaves["['out']"].method == "complex_step"  # used after the scan only
    assert any("does not accept complex parameters (TypeError" in n for n in result.notes)


@pytest.mark.parametrize("precision", ["float64", "native"])
def test_convolutions_never_give_false_failures_and_still_catch_bugs(precision):
    # XLA's complex convolution uses three real products: inexact, verified or fallen back
    rng = np.random.default_rng(1)
    params = {"k": rng.standard_normal((3, 2, 5)).astype(np.float32)}
    x = rng.standard_normal((4, 2, 32)).astype(np.float32)

    def loss(p, x):
        z = jax.lax.conv_general_dilated(x.astype(p["k"].dtype), p["k"], (1,), "SAME")
        return jnp.sum(jnp.tanh(z) ** 2)

    result = jaxcheck.check_grad(loss, params, x, method="complex_step", precision=precision)
    assert result.passed, result
    g = jax.grad(loss)(params, x)
    wrong = {"k": g["k"].at[1, 0, 2].multiply(1.01)}
    bad = jaxcheck.check_grad(
        loss, params, x, grad_fn=lambda *_: wrong, method="complex_step", precision=precision
    )
    assert [(e.path, e.index) for e in bad.failures] == [("['k']", (1, 0, 2))], bad


def test_a_disagreement_too_small_for_the_directions_is_judged_by_finite_differences():
    # |θ_7| enters the loss with a small weight; the other elements' large third derivatives
    # make central differences along random directions too coarse to see it, so the complex
    # step passes verification and gets element 7 wrong; element-wise finite differences
    # resolve it and overrule the complex step there.
    rng = np.random.default_rng(2)
    params = {"w": rng.standard_normal(4096)}
    others = np.arange(4096) != 7

    def loss(p):
        w = p["w"]
        return jnp.sum(jnp.where(others, jnp.sin(30 * w), 0.5 * w**2)) + 1e-6 * jnp.abs(w[7])

    result = jaxcheck.check_grad(loss, params, method="complex_step")
    assert result.passed, result
    assert result.leaves["['w']"].method == "complex_step"
    assert any("disagree at 1 element(s) of ['w']" in n for n in result.notes), result.notes
    wrong = grad64(loss, params)
    wrong["w"][7] += 1e-3
    bad = jaxcheck.check_grad(loss, params, grad_fn=lambda *_: wrong, method="complex_step")
    assert [(e.path, e.index) for e in bad.failures] == [("['w']", (7,))], bad


def test_numpy_losses_on_the_host():
    loss, params, args = mlp()

    def np_loss(p, x, y):
        h = np.tanh(x @ p["W"] + p["b"][None])
        return np.mean((h @ p["V"] - y) ** 2)

    def np_grad(p, x, y):
        return jax.tree_util.tree_map(np.asarray, jax.grad(loss)(p, x, y))

    result = jaxcheck.check_grad(np_loss, params, *args, grad_fn=np_grad, method="complex_step")
    assert result.passed and result.engine == "host", result
    assert np.median(rel_errors(result, "W")) < 1e-14


def test_sample_mode_and_the_step():
    loss, params, args = mlp()
    result = jaxcheck.check_grad(loss, params, *args, method="complex_step", mode="sample",
                                 samples=7)  # fmt: skip
    assert result.passed and result.leaves["['W']"].n_checked == 7
    theta = np.abs(params["W"])
    expected = np.median(
        np.sqrt(np.finfo(np.float64).eps) * np.maximum(theta, np.sqrt(np.mean(theta**2)))
    )
    full = jaxcheck.check_grad(loss, params, *args, method="complex_step")
    assert full.leaves["['W']"].step == pytest.approx(expected)
    given = jaxcheck.check_grad(loss, params, *args, method="complex_step", eps=1e-10)
    assert given.leaves["['W']"].step == 1e-10 and given.passed


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"mode": "directional"}, "mode='directional' uses central differences"),
        ({"order": 2}, "order=2 with method='complex_step'"),
    ],
)
def test_bad_complex_step_options(kwargs, match):
    loss, params, args = mlp()
    with pytest.raises(ValueError, match=match):
        jaxcheck.check_grad(loss, params, *args, method="complex_step", **kwargs)


def test_complex_parameters_are_refused():
    params = {"z": jnp.array([1.0 + 2.0j, 0.5 - 1.0j])}
    with pytest.raises(ValueError, match=r"needs real parameters, but params\['z'\] is complex"):
        jaxcheck.check_grad(lambda p: jnp.sum(jnp.abs(p["z"]) ** 2), params, method="complex_step")
