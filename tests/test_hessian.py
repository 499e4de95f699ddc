"""order=2: Hessian-vector products against differences of the gradient; planted HVP bugs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcheck
from tests.helpers import CORPUS, assert_kinks_excused_and_hvp_factors_caught


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_the_corpus_hessians_pass(name):
    loss, params, args = CORPUS[name]()
    result = jaxcheck.check_grad(loss, params, *args, order=2)
    assert result.passed, result
    assert result.order == 2
    assert result.n_checked == sum(x.size for x in jax.tree_util.tree_leaves(params))


def mlp():
    rng = np.random.default_rng(0)
    params = {"W": rng.standard_normal((4, 3)) / 2, "b": rng.standard_normal(3) / 4}
    x = rng.standard_normal((5, 4))

    def loss(p, x):
        return jnp.sum(jnp.tanh(x @ p["W"] + p["b"][None]) ** 2)

    def hvp(p, v, x):
        return jax.jvp(lambda q: jax.grad(loss)(q, x), (p,), (v,))[1]

    return loss, params, x, hvp


def test_one_wrong_hvp_element_is_located():
    loss, params, x, hvp = mlp()

    def wrong(p, v, x):
        out = hvp(p, v, x)
        return {**out, "W": out["W"].at[1, 2].add(0.01)}

    assert jaxcheck.check_grad(loss, params, x, order=2, hvp_fn=hvp).passed
    result = jaxcheck.check_grad(loss, params, x, order=2, hvp_fn=wrong)
    assert [(e.path, e.index) for e in result.failures] == [("['W']", (1, 2))]


def test_a_missing_cross_term_is_named_as_a_block_of_the_hessian():
    loss, params, x, hvp = mlp()

    def no_cross(p, v, x):  # H_bW v_W dropped from the b rows
        out = hvp(p, v, x)
        only_b = hvp(p, {"W": jnp.zeros_like(v["W"]), "b": v["b"]}, x)
        return {**out, "b": only_b["b"]}

    result = jaxcheck.check_grad(loss, params, x, order=2, hvp_fn=no_cross)
    assert not result.passed
    assert {e.path for e in result.failures} == {"['b']"}
    assert any("H·v wrong in ['b'] along directions on ['W']" in n for n in result.notes)


def test_a_numpy_gradient_and_hvp_on_the_host():
    rng = np.random.default_rng(1)
    A = rng.standard_normal((5, 5))
    S = (A + A.T) / 2

    def loss(p):
        return float(0.5 * p["x"] @ A @ p["x"] + np.sum(np.cos(p["x"])))

    def grad(p):
        return {"x": S @ p["x"] - np.sin(p["x"])}

    def hvp(p, v):
        return {"x": S @ v["x"] - np.cos(p["x"]) * v["x"]}

    def unsymmetrized(p, v):  # A v instead of ((A + Aᵀ) / 2) v
        return {"x": A @ v["x"] - np.cos(p["x"]) * v["x"]}

    params = {"x": rng.standard_normal(5)}
    good = jaxcheck.check_grad(loss, params, grad_fn=grad, order=2, hvp_fn=hvp)
    assert good.passed, good
    bad = jaxcheck.check_grad(loss, params, grad_fn=grad, order=2, hvp_fn=unsymmetrized)
    assert not bad.passed and bad.failures


def test_float32_native_hessians_pass():
    loss, params, args = CORPUS["mlp_softmax_ce"]()
    assert jaxcheck.check_grad(loss, params, *args, order=2, precision="native").passed


def test_complex_parameters_with_jax_hessians():
    def loss(p):
        return jnp.sum(jnp.abs(jnp.sin(p["z"])) ** 2)

    result = jaxcheck.check_grad(loss, {"z": jnp.array([0.3 + 0.2j, -1.0 + 0.5j])}, order=2)
    assert result.passed, result


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"order": 3}, ValueError, "order=3"),
        ({"hvp_fn": lambda *a: a[0]}, ValueError, "pass order=2"),
        ({"order": 2, "mode": "directional"}, ValueError, "leave mode"),
        ({"order": 2, "hvp_fn": 3}, TypeError, "hvp_fn must be a function"),
    ],
)
def test_bad_order_options(kwargs, error, match):
    loss, params, x, _ = mlp()
    with pytest.raises(error, match=match):
        jaxcheck.check_grad(loss, params, x, **kwargs)


def test_numpy_code_needs_its_own_hvp():
    def loss(p):
        return float(np.sum(np.asarray(p["x"]) ** 3))

    with pytest.raises(TypeError, match="hvp_fn="):
        jaxcheck.check_grad(
            loss, {"x": np.ones(3)}, grad_fn=lambda p: {"x": 3 * p["x"] ** 2}, order=2
        )


@pytest.mark.parametrize(
    "fn",
    [lambda x: 2 * x, lambda x: jnp.sum(LINEAR @ x), lambda x: LINEAR @ x + 1.0],
    ids=["scale", "matvec_sum", "affine"],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_zero_hessian_is_verified_not_inconclusive(fn, dtype):
    """torch's gradgradcheck self-test on a linear map: H·v = 0 against second differences
    that are zero bit for bit is agreement (it was inconclusive, every element unverifiable);
    a nonzero H·v there, however small, still fails."""
    x = np.random.default_rng(1).normal(size=4).astype(dtype)
    result = jaxcheck.check_grad(fn, x, order=2)
    assert result.verdict == "passed", result
    assert not result.unverifiable
    bad = jaxcheck.check_grad(fn, x, order=2, hvp_fn=lambda p, v: 1e-6 * v)
    assert bad.verdict == "failed", bad
    assert bad.n_failed == 4, bad


LINEAR = jnp.asarray(np.random.default_rng(0).normal(size=(4, 4)))


def relu_batchnorm(seed):
    """x W1 + b1 -> batch norm -> relu -> W2, squared error over 16 examples, float32."""
    rng = np.random.default_rng(seed)
    params = {
        "W1": rng.normal(size=(4, 8)).astype(np.float32) / 2,
        "b1": np.zeros(8, np.float32),
        "W2": rng.normal(size=(8, 1)).astype(np.float32) / 3,
    }
    x, y = (rng.normal(size=(16, n)).astype(np.float32) for n in (4, 1))

    def loss(p, x, y):
        z = x @ p["W1"] + p["b1"][None]
        mean, var = jnp.mean(z, 0, keepdims=True), jnp.var(z, 0, keepdims=True)
        z = (z - mean) / jnp.sqrt(var + 1e-5)
        return jnp.mean((jax.nn.relu(z) @ p["W2"] - y) ** 2)

    def hvp(p, v, x, y):
        return jax.jvp(lambda q: jax.grad(loss)(q, x, y), (p,), (v,))[1]

    return loss, params, (x, y), hvp


@pytest.mark.parametrize("seed", [3, 5])
def test_float32_steps_across_relu_kinks_of_the_gradient_are_not_failures(seed):
    """A native float32 chord crosses kinks of the gradient (a unit changing sides): correct
    elements failed (2 each); a shorter chord along the same direction agrees. A wrong H·v
    disagrees along both and is still caught."""
    loss, params, args, hvp = relu_batchnorm(seed)
    assert_kinks_excused_and_hvp_factors_caught(loss, params, args, hvp, at_least=20)
