"""The Taylor test: R1 converges at rate 2 for a right gradient and at rate 1 for a wrong one,
R2 at 3 for a right Hessian-vector product; the rates are read where rounding does not
dominate, and the verdict needs no tolerance."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcheck

RNG = np.random.default_rng(0)


def model(dtype):
    params = {"W": RNG.normal(size=(4, 3)).astype(dtype), "b": np.zeros(3, dtype)}
    x = RNG.normal(size=(8, 4)).astype(dtype)

    def loss(p, x):
        return jnp.mean(jnp.tanh(x @ p["W"] + p["b"][None]) ** 2)

    return loss, params, x


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_right_gradient_converges_at_rate_two(dtype):
    loss, params, x = model(dtype)
    result = jaxcheck.taylor_test(loss, params, x)
    assert result.verdict == "passed", result
    used = result.rates["R1"][result.used["R1"]]
    assert used.size >= 5 and np.all(np.abs(used[-5:] - 2) < 0.1), result
    assert np.all(np.abs(result.rates["R0"][result.used["R0"]] - 1) < 0.1)
    assert "Computed convergence rates (R1)" in str(result)


@pytest.mark.parametrize("error", [1.01, 1.0001])
def test_a_wrong_gradient_converges_at_rate_one(error):
    loss, params, x = model(np.float64)
    g = jax.grad(loss)

    def grad_fn(p, x):
        return {"W": g(p, x)["W"] * error, "b": g(p, x)["b"]}

    result = jaxcheck.taylor_test(loss, params, x, grad_fn=grad_fn)
    assert result.verdict == "failed", result
    assert any("not 2: the gradient is wrong" in n for n in result.notes), result.notes


def test_the_hessian_vector_product_converges_at_rate_three_or_fails():
    loss, params, x = model(np.float64)
    g = jax.grad(loss)

    def hvp(p, v, x, scale=1.0):
        hv = jax.jvp(lambda q: g(q, x), (p,), (v,))[1]
        return jax.tree_util.tree_map(lambda a: scale * a, hv)

    assert jaxcheck.taylor_test(loss, params, x, hvp_fn=hvp).verdict == "passed"
    bad = jaxcheck.taylor_test(loss, params, x, hvp_fn=lambda p, v, x: hvp(p, v, x, 1.1))
    assert bad.verdict == "failed" and "Hessian-vector product" in str(bad), bad


def test_a_linear_function_is_exact_along_every_direction():
    result = jaxcheck.taylor_test(lambda p: jnp.sum(3.0 * p), jnp.ones(3))
    assert result.verdict == "passed"
    assert any("linear" in n for n in result.notes)
    wrong = jaxcheck.taylor_test(lambda p: jnp.sum(3.0 * p), jnp.ones(3),
                                 grad_fn=lambda p: 3.1 * jnp.ones(3))  # fmt: skip
    assert wrong.verdict == "failed"


def test_a_function_constant_along_the_direction_is_inconclusive():
    result = jaxcheck.taylor_test(lambda p: jnp.sum(p * 0.0) + 1.0, jnp.ones(3))
    assert result.verdict == "inconclusive"


def test_a_given_direction_is_used_and_checked():
    loss, params, x = model(np.float64)
    direction = jax.tree_util.tree_map(jnp.ones_like, params)
    assert jaxcheck.taylor_test(loss, params, x, direction=direction).passed
    with pytest.raises(ValueError, match="direction= must be shaped like params"):
        jaxcheck.taylor_test(loss, params, x, direction={"W": jnp.ones(3)})


def test_the_result_serializes_and_plots():
    loss, params, x = model(np.float64)
    result = jaxcheck.taylor_test(loss, params, x, steps=8)
    d = result.to_dict()
    assert d["verdict"] == "passed" and len(d["steps"]) == 8 and len(d["rates"]["R1"]) == 7
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    ax = result.plot()
    assert len(ax.get_lines()) >= 3


def test_a_numpy_loss_with_a_handwritten_gradient_is_tested_on_the_host():
    """NumPy code cannot be traced: f is evaluated as it is, and a 1% bug still fails."""
    rng = np.random.default_rng(0)
    params, x = {"W": rng.normal(size=(3, 2))}, rng.normal(size=(4, 3))

    def loss(p, x):
        return float(np.sum(np.tanh(x @ p["W"])))

    def grad(p, x):
        return {"W": x.T @ (1 - np.tanh(x @ p["W"]) ** 2)}

    assert jaxcheck.taylor_test(loss, params, x, grad_fn=grad).passed
    wrong = jaxcheck.taylor_test(
        loss, params, x, grad_fn=lambda p, x: {"W": 1.01 * grad(p, x)["W"]}
    )
    assert wrong.verdict == "failed"
