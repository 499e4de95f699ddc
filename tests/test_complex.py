"""Complex parameters: real and imaginary parts checked, JAX's convention, bugs located."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcheck


def loss(p, x):
    h = jnp.tanh(x @ p["W"])  # complex hidden layer
    return jnp.sum(jnp.abs(h) ** 2) + jnp.real(jnp.sum(p["b"] * jnp.conj(p["b"]) * p["c"]))


def loss_np(p, x):
    h = np.tanh(x @ p["W"])
    return float(np.sum(np.abs(h) ** 2) + np.real(np.sum(p["b"] * np.conj(p["b"]) * p["c"])))


def params_and_data(seed=0):
    rng = np.random.default_rng(seed)
    W = (rng.standard_normal((4, 3)) + 1j * rng.standard_normal((4, 3))) / 3
    params = {"W": W, "b": np.array([1 + 2j, 0.5 - 1j]), "c": np.array([0.7, -0.3])}
    return params, rng.standard_normal((5, 4))


def jax_gradient(p, x):
    with jax.enable_x64(True):
        return jax.tree_util.tree_map(np.array, jax.grad(loss)(p, x))


@pytest.mark.parametrize("mode", ["full", "directional", "sample"])
def test_a_correct_complex_gradient_passes_in_every_mode(mode):
    p, x = params_and_data()
    result = jaxcheck.check_grad(loss, p, x, mode=mode)
    assert result.passed, result
    assert result.leaves["['W']"].shape == (4, 3)
    assert result.leaves["['W']"].dtype == "complex128"
    if mode == "full":
        assert result.leaves["['W']"].n_checked == 24  # real and imaginary part of each
        numeric = result.numeric["W"]
        assert np.iscomplexobj(numeric)
        np.testing.assert_allclose(numeric, jax_gradient(p, x)["W"], rtol=1e-6)


@pytest.mark.parametrize("part", ["real", "imag"])
@pytest.mark.parametrize("mode", ["full", "directional"])
def test_one_wrong_part_of_one_complex_element_is_located(part, mode):
    p, x = params_and_data()
    g = jax_gradient(p, x)
    g["W"][2, 1] += 0.2 if part == "real" else 0.2j
    result = jaxcheck.check_grad(loss, p, x, grad_fn=lambda *_: g, mode=mode)
    assert not result.passed
    [bad] = result.failures
    assert (bad.path, bad.index, bad.part) == ("['W']", (2, 1), part)
    assert bad.name == f"['W'][2, 1].{part}"
    assert bad.flat_index == 2 * 3 + 1  # ravel_pytree order counts complex elements once
    expected = g["W"][2, 1] - (0.2 if part == "real" else 0.2j)
    assert bad.numeric == pytest.approx(getattr(expected, part), rel=1e-6)
    assert bad.analytic == pytest.approx(getattr(g["W"][2, 1], part))


def test_a_conjugated_gradient_fails_with_the_convention_named():
    p, x = params_and_data()
    conj = jax.tree_util.tree_map(np.conj, jax_gradient(p, x))
    result = jaxcheck.check_grad(loss, p, x, grad_fn=lambda *_: conj)
    assert not result.passed
    assert {e.part for e in result.failures} == {"imag"}
    assert any("looks conjugated" in n and "['W']" in n for n in result.notes), result.notes


def test_a_custom_vjp_with_a_conjugate_too_many_is_caught():
    @jax.custom_vjp
    def scale(z, a):
        return z * a

    def fwd(z, a):
        return z * a, (z, a)

    def bwd(res, ct):
        z, a = res
        # JAX's VJP is the transpose, not the adjoint: ct * a. PyTorch habits write conj(a).
        return ct * jnp.conj(a), jnp.sum(ct * z)

    scale.defvjp(fwd, bwd)
    a = jnp.array(0.3 + 0.8j)

    def f(p):
        return jnp.sum(jnp.abs(scale(p["z"], a)) ** 2)

    result = jaxcheck.check_grad(f, {"z": jnp.array([1.0 + 1j, -0.5 + 2j])})
    assert not result.passed
    assert {e.path for e in result.failures} == {"['z']"}


def test_the_host_engine_checks_complex_numpy_code():
    p, x = params_and_data()
    g = jax_gradient(p, x)
    assert jaxcheck.check_grad(loss_np, p, x, grad_fn=lambda *_: g).passed
    g["b"][1] -= 0.5j
    result = jaxcheck.check_grad(loss_np, p, x, grad_fn=lambda *_: g)
    assert result.engine == "host"
    assert [e.name for e in result.failures] == ["['b'][1].imag"]


def test_a_complex_python_scalar_and_a_flat_complex_gradient():
    def f(p):
        return jnp.abs(p[0]) ** 2 + p[1] ** 2

    params = [1.0 + 2.0j, 3.0]
    good = np.array([2.0 - 4.0j, 6.0])  # ravel_pytree order, JAX's convention
    assert jaxcheck.check_grad(f, params, grad_fn=lambda p: good).passed
    with pytest.raises(TypeError, match=r"params\[1\].*nonzero imaginary part"):
        jaxcheck.check_grad(f, params, grad_fn=lambda p: np.array([2.0 - 4.0j, 6.0 + 1j]))
