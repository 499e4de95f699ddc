"""check_grad's behaviour: pytrees, options, precision, outputs, randomness, non-finite values."""

import dataclasses
import itertools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcheck
from tests import helpers as h


def quad(p, x):
    """A small JAX loss over a pytree with two float leaves."""
    return jnp.sum(jnp.tanh(x @ p["w"]) ** 2) + jnp.sum(p["b"] ** 3)


def quad_params():
    return {"w": jnp.linspace(-1.0, 1.0, 6).reshape(3, 2), "b": jnp.array([0.5, -0.2])}


X = jnp.arange(6.0).reshape(2, 3) / 6


def add_to_grad(leaf, index, amount):
    """A gradient function with one wrong element."""

    def grad_fn(p, x):
        g = jax.grad(quad)(p, x)
        return {**g, leaf: g[leaf].at[index].add(amount)}

    return grad_fn


# ---- pytrees and coordinates -----------------------------------------------------------------


class Pair(NamedTuple):
    weight: jax.Array
    bias: jax.Array


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class Dense:
    kernel: jax.Array
    scale: float


@pytest.mark.parametrize(
    "params, paths",
    [
        ([jnp.ones((2, 3)), jnp.ones(3)], ["[0]", "[1]"]),
        ((jnp.ones((2, 3)), jnp.ones(3)), ["[0]", "[1]"]),
        (Pair(jnp.ones((2, 3)), jnp.ones(3)), [".weight", ".bias"]),
        (
            {"layer": {"w": jnp.ones((2, 3)), "b": jnp.ones(3)}},
            ["['layer']['b']", "['layer']['w']"],
        ),
        (Dense(jnp.ones((2, 3)), 0.5), [".kernel", ".scale"]),
    ],
    ids=["list", "tuple", "namedtuple", "nested-dict", "dataclass"],
)
def test_any_pytree_works_and_reports_key_paths(params, paths):
    def loss(p, x):
        leaves = jax.tree_util.tree_leaves(p)
        mat = next(x for x in leaves if jnp.ndim(x) == 2)
        other = next(x for x in leaves if jnp.ndim(x) != 2)
        return jnp.sum(jnp.sin(x @ mat)) * jnp.sum(jnp.cos(jnp.asarray(other)))

    result = jaxcheck.check_grad(loss, params, jnp.ones((4, 2)))
    assert result.passed, result
    assert list(result.leaves) == paths
    assert jax.tree_util.tree_structure(result.numeric) == jax.tree_util.tree_structure(params)


def test_a_wrong_element_is_located_by_path_index_and_flat_coordinate():
    result = jaxcheck.check_grad(quad, quad_params(), X, grad_fn=add_to_grad("w", (2, 1), 1e-3))
    assert not result.passed
    [e] = result.failures
    assert (e.path, e.index, e.status) == ("['w']", (2, 1), "mismatch")
    assert e.flat_index == 2 + 5  # ravel_pytree order: b (2 elements), then w row-major
    # The gradient under test is float32 (the params' dtype): g + 1e-3 carries its rounding,
    # u·|g| ≈ 1e-7 against 1e-3.
    assert e.analytic - e.numeric == pytest.approx(1e-3, rel=1e-4)
    assert result.leaves["['b']"].passed and not result.leaves["['w']"].passed


def test_non_float_leaves_are_skipped_and_listed():
    params = {
        **quad_params(),
        "steps": 3,
        "mask": jnp.array([True, False]),
        "ids": np.arange(4),
        "key": jax.random.key(0),
        "act": jnp.tanh,
    }

    def loss(p, x):
        return quad(p, x) + p["act"](p["w"][0, 0]) * p["steps"]

    result = jaxcheck.check_grad(loss, params, X)
    assert result.passed, result
    assert dict(result.skipped) == {
        "['act']": "not an array (PjitFunction)",
        "['ids']": "integer",
        "['key']": "PRNG key",
        "['mask']": "bool",
        "['steps']": "integer",
    }
    assert np.isnan(result.numeric["ids"]).all() and result.numeric["act"] is None


@pytest.mark.parametrize("only", ["w", ["w"], r"\['w'\]", lambda path: "w" in path])
def test_only_restricts_the_check(only):
    result = jaxcheck.check_grad(quad, quad_params(), X, only=only)
    assert list(result.leaves) == ["['w']"]
    assert ("['b']", "excluded by only=") in result.skipped
    assert np.isnan(result.numeric["b"]).all()


def test_only_skips_a_wrong_leaf_and_finds_it_when_included():
    grad_fn = add_to_grad("b", 0, 0.5)
    assert jaxcheck.check_grad(quad, quad_params(), X, grad_fn=grad_fn, only="w").passed
    assert not jaxcheck.check_grad(quad, quad_params(), X, grad_fn=grad_fn, only="b").passed


def test_user_arrays_are_not_modified_on_the_host():
    params, X_, t = h.seed000_data()
    before = {k: v.copy() for k, v in params.items()}
    jaxcheck.check_grad(h.seed000_loss, params, X_, t, grad_fn=h.seed000_backward)
    for k in params:
        np.testing.assert_array_equal(params[k], before[k])


# ---- precision -------------------------------------------------------------------------------


def test_float32_model_is_checked_in_float64_without_touching_the_config():
    loss, params, args = h.mlp_softmax_ce()
    assert not jax.config.jax_enable_x64
    result = jaxcheck.check_grad(loss, params, *args)
    assert not jax.config.jax_enable_x64
    assert result.precision == "float64" and result.passed, result
    # the finite differences in float64, the gradient under test in float32
    assert any("the gradient under test in float32" in n for n in result.notes)
    assert 1e-9 < result.difference < 1e-5
    upcast = jaxcheck.check_grad(loss, params, *args, precision="upcast")
    assert any("the gradient under test too" in n for n in upcast.notes)
    assert upcast.passed and upcast.difference < 1e-8  # only reachable with both in float64
    assert not jax.config.jax_enable_x64


def test_native_precision_checks_float32_in_float32_and_still_catches_a_bug():
    loss, params, args = h.mlp_softmax_ce()
    result = jaxcheck.check_grad(loss, params, *args, precision="native")
    assert result.passed, result
    assert result.leaves["['W1']"].step > 1e-4  # a float32 step, not a float64 one
    assert 1e-6 < result.difference < 1e-2

    def wrong(p, *a):
        g = jax.grad(loss)(p, *a)
        return {**g, "W2": g["W2"] * 1.05}

    bad = jaxcheck.check_grad(loss, params, *args, grad_fn=wrong, precision="native")
    assert {e.path for e in bad.failures} == {"['W2']"}


# ---- options ---------------------------------------------------------------------------------


def test_eps_overrides_the_step_globally_and_per_leaf():
    p = quad_params()
    result = jaxcheck.check_grad(quad, p, X, eps=1e-5)
    assert result.leaves["['w']"].step == pytest.approx(1e-5, rel=1e-6)
    result = jaxcheck.check_grad(quad, p, X, eps={"['b']": 1e-3})
    assert result.leaves["['b']"].step == pytest.approx(1e-3, rel=1e-9)
    assert result.leaves["['w']"].step < 1e-4  # the default, relative step


def test_the_step_actually_applied_is_used_in_float32():
    # 100 ± 1e-3 is not representable in float32: the applied step is 0.9765625e-3, and
    # dividing by the nominal 1e-3 would make the derivative of the identity 0.977.
    result = jaxcheck.check_grad(
        lambda p: p["w"], {"w": jnp.float32(100.0)}, eps=1e-3, precision="native", method="central"
    )
    assert float(result.numeric["w"]) == 1.0
    assert result.passed
    # the native default, Richardson: weights solved from the applied displacements
    result = jaxcheck.check_grad(
        lambda p: p["w"], {"w": jnp.float32(100.0)}, eps=1e-3, precision="native"
    )
    assert result.method == "richardson"
    assert float(result.numeric["w"]) == pytest.approx(1.0, abs=1e-9)


def test_rtol_and_atol_loosen_the_check():
    grad_fn = add_to_grad("w", (0, 0), 1e-3)
    assert not jaxcheck.check_grad(quad, quad_params(), X, grad_fn=grad_fn).passed
    assert jaxcheck.check_grad(quad, quad_params(), X, grad_fn=grad_fn, atol=1e-2).passed
    relative = add_to_grad("b", 0, 0.75 * 1e-3)  # |g_b0| = 3 * 0.5**2 = 0.75
    assert jaxcheck.check_grad(quad, quad_params(), X, grad_fn=relative, rtol=1e-2).passed


@pytest.mark.parametrize("chunk_size", [1, 3, 7, None])
def test_chunking_and_padding_do_not_change_the_result(chunk_size):
    loss, params, args = h.layer_norm_model()
    reference = jaxcheck.check_grad(loss, params, *args, chunk_size=64)
    result = jaxcheck.check_grad(loss, params, *args, chunk_size=chunk_size)
    for a, b in zip(
        jax.tree_util.tree_leaves(reference.numeric), jax.tree_util.tree_leaves(result.numeric)
    ):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)  # ulp noise / h
    assert result.passed


def test_each_leaf_compiles_once_however_many_chunks():
    from jaxcheck._core.coords import Coords
    from jaxcheck._engine.batched import JaxEngine
    from jaxcheck._grad.runtime import numerics as _numerics

    params = quad_params()
    coords = Coords.build(params)
    with _numerics("float64"):
        values = coords.cast(jax.tree_util.tree_leaves(params), lambda leaf: np.float64)
        engine = JaxEngine(quad, values, coords, (X,), chunk=4)
        leaf = coords.checked[1]  # ['w'], 6 elements
        idx = np.arange(11) % 6
        vals = np.linspace(-1, 1, 11)
        out = engine.evaluate(leaf, idx, vals)
        engine.evaluate(leaf, idx[:5], vals[:5])
        assert engine.n_compiles == 1  # 3 + 2 chunks, one compilation
        for k in (0, 5, 10):
            w = np.asarray(values[1], dtype=np.float64).copy().reshape(-1)
            w[idx[k]] = vals[k]
            expected = quad({"b": values[0], "w": w.reshape(3, 2)}, X)
            assert out[k] == pytest.approx(float(expected), rel=1e-14)


# ---- outputs ---------------------------------------------------------------------------------


def test_non_scalar_output_is_checked_through_a_random_projection():
    layer = h.make_square_layer(bug=False)
    params = {"W": jnp.eye(4) / 2 + 0.1}
    x = jnp.linspace(-1, 1, 12).reshape(3, 4)
    result = jaxcheck.check_grad(lambda p, x: layer(p["W"], x), params, x)
    assert result.passed, result
    assert any("random" in n and "(3, 4)" in n for n in result.notes)


def test_non_scalar_output_catches_a_wrong_custom_vjp():
    layer = h.make_square_layer(bug=True)
    params = {"W": jnp.eye(4) / 2 + jnp.arange(16.0).reshape(4, 4) / 40}
    x = jnp.linspace(-1, 1, 12).reshape(3, 4)
    result = jaxcheck.check_grad(lambda p, x: layer(p["W"], x), params, x)
    assert not result.passed
    assert all(e.path == "['W']" and e.index[0] != e.index[1] for e in result.failures)


def test_size_one_outputs_count_as_scalars():
    params, X_, t = h.seed000_data()
    result = jaxcheck.check_grad(
        lambda p, X, t: np.sum(h.seed000_loss(p, X, t)).reshape(1, 1),
        params,
        X_,
        t,
        grad_fn=h.seed000_backward,
    )
    assert result.passed and not any("random" in n for n in result.notes)


# ---- randomness and non-finite values --------------------------------------------------------


def test_hidden_randomness_is_an_error_that_names_the_fix():
    counter = itertools.count()

    def dropout_loss(p, x):
        key = jax.random.key(next(counter))  # a fresh mask on every call
        keep = jax.random.bernoulli(key, 0.5, x.shape)
        return quad(p, jnp.where(keep, x, 0.0))

    with pytest.raises(ValueError, match="PRNG key"):
        jaxcheck.check_grad(dropout_loss, quad_params(), X)

    def fixed(p, x, key):
        return quad(p, jnp.where(jax.random.bernoulli(key, 0.5, x.shape), x, 0.0))

    assert jaxcheck.check_grad(fixed, quad_params(), X, jax.random.key(0)).passed


def test_randomness_away_from_the_base_point_is_reported_as_nondeterministic():
    base = np.array([0.5, -0.25])
    rng = np.random.default_rng(0)

    def flaky(p):
        noise = 0.0 if np.array_equal(p["w"], base) else 1e-3 * rng.standard_normal()
        return float(np.sum(p["w"] ** 2)) + noise

    result = jaxcheck.check_grad(flaky, {"w": base.copy()}, grad_fn=lambda p: {"w": 2 * p["w"]})
    assert not result.passed
    assert {e.status for e in result.failures} == {"nondeterministic"}


def test_nonfinite_loss_at_the_base_point_is_an_error():
    with pytest.raises(ValueError, match="not finite"):
        jaxcheck.check_grad(lambda p: jnp.sum(jnp.log(p["w"])), {"w": jnp.array([1.0, 0.0])})


def test_nonfinite_parameter_is_an_error_naming_the_element():
    p = {"w": jnp.array([[1.0, 2.0], [jnp.inf, 0.0]])}
    with pytest.raises(ValueError, match=r"params\['w'\]\[1, 0\] is inf"):
        jaxcheck.check_grad(lambda p: jnp.sum(p["w"]), p)


def test_nonfinite_gradient_element_is_located():
    def grad_fn(p, x):
        g = jax.grad(quad)(p, x)
        return {**g, "b": g["b"].at[1].set(jnp.nan)}

    result = jaxcheck.check_grad(quad, quad_params(), X, grad_fn=grad_fn)
    [e] = result.failures
    assert (e.path, e.index, e.status) == ("['b']", (1,), "nonfinite")


def test_exact_zero_gradients_of_an_unused_leaf_are_verified():
    def loss(p, x):
        return quad(p, x) + 0.0 * jnp.sum(p["unused"])

    result = jaxcheck.check_grad(loss, {**quad_params(), "unused": jnp.ones(3)}, X)
    assert result.verdict == "passed", result
    leaf = result.leaves["['unused']"]
    assert (leaf.n_unverifiable, leaf.n_verified) == (0, 3)
    # a wrong nonzero gradient there is still a mismatch
    wrong = jaxcheck.check_grad(
        loss, {**quad_params(), "unused": jnp.ones(3)}, X,
        grad_fn=lambda p, x: {**jax.grad(loss)(p, x), "unused": jnp.full(3, 1e-3)},
    )  # fmt: skip
    assert {e.path for e in wrong.failures} == {"['unused']"}


def test_a_tiny_nonzero_gradient_stays_unverifiable_and_leaves_the_leaf_inconclusive():
    def loss(p):  # ∂/∂b = 1e-13 next to a loss of 1: below any step's resolution
        return 1.0 + jnp.sum(p["w"] ** 2) + 1e-13 * jnp.sum(p["b"])

    params = {"w": np.array([0.5, -0.7]), "b": np.array([0.3, 0.2])}
    result = jaxcheck.check_grad(loss, params)
    assert result.leaves["['b']"].n_unverifiable == 2
    assert result.leaves["['b']"].verdict == "inconclusive"
    assert result.leaves["['w']"].verdict == "passed"
    assert result.verdict == "inconclusive" and not result.passed
    assert "INCONCLUSIVE" in str(result) and "to make it conclusive" in str(result)
    with pytest.raises(jaxcheck.GradCheckError, match="INCONCLUSIVE"):
        jaxcheck.assert_grad(loss, params)


# ---- assert_grad -----------------------------------------------------------------------------


def test_assert_grad_raises_an_assertion_error_carrying_the_result():
    with pytest.raises(jaxcheck.GradCheckError) as info:
        jaxcheck.assert_grad(quad, quad_params(), X, grad_fn=add_to_grad("b", 1, 0.1))
    assert isinstance(info.value, AssertionError)
    assert info.value.result.failures[0].path == "['b']"
    assert "['b'][1]" in str(info.value)
    assert jaxcheck.assert_grad(quad, quad_params(), X).passed


def test_low_precision_python_float_and_complex_leaves_are_all_checked():
    params = {
        "half": jnp.array([0.5, -1.5], jnp.bfloat16),
        "scale": 2.0,
        "z": jnp.array([1 + 2j]),
    }

    def loss(p):
        return jnp.sum(jnp.sin(p["half"].astype(jnp.float32)) * p["scale"]) + jnp.abs(p["z"][0])

    result = jaxcheck.check_grad(loss, params)
    assert result.passed, result
    assert list(result.leaves) == ["['half']", "['scale']", "['z']"]
    assert result.leaves["['half']"].dtype == "bfloat16"
    assert result.leaves["['z']"].dtype == "complex64"  # the parameter's own dtype
    assert result.skipped == ()


def test_a_function_that_traces_but_cannot_be_vmapped_runs_on_the_host():
    def host_only(x):
        return np.asarray(np.sum(np.asarray(x) ** 2), dtype=x.dtype)

    def loss(p):
        shape = jax.ShapeDtypeStruct((), p["w"].dtype)
        # vmap_method="sequential" would batch it; without one, vmap is an error.
        return jax.pure_callback(host_only, shape, p["w"])

    result = jaxcheck.check_grad(
        loss, {"w": jnp.array([1.0, -2.0])}, grad_fn=lambda p: {"w": 2 * p["w"]}
    )
    assert result.passed, result
    assert result.engine == "host"
    assert any("cannot be batched with vmap" in n for n in result.notes)


def test_a_single_array_as_params_and_empty_leaves():
    def grad_fn(w):
        return jnp.cos(w).at[2].add(1.0)

    result = jaxcheck.check_grad(lambda w: jnp.sum(jnp.sin(w)), jnp.arange(4.0), grad_fn=grad_fn)
    assert [e.name for e in result.failures] == ["params[2]"]
    assert "params[2]" in str(result)

    params = {"w": jnp.arange(4.0), "e": jnp.zeros((0, 3))}
    result = jaxcheck.check_grad(lambda p: jnp.sum(jnp.sin(p["w"])) + jnp.sum(p["e"]), params)
    assert result.passed and result.engine in ("jax", "jax-flat", "jax-mixed")
    assert ("['e']", "empty") in result.skipped


def test_a_numpy_loss_leaves_the_users_float32_jax_code_working():
    # jax 0.10: a trace that fails inside enable_x64 could leave a float64 copy of a NumPy
    # argument behind, and the user's next float32 X @ W failed with an XLA input mismatch.
    X = np.ones((3, 2))
    params = {"W": np.full((2, 3), 0.1)}

    def loss(p, X):
        return float(np.sum(np.exp(X @ p["W"])))

    assert jaxcheck.check_grad(
        loss, params, X, grad_fn=lambda p, X: {"W": X.T @ np.exp(X @ p["W"])}
    ).passed
    assert (X @ jnp.ones((2, 3), jnp.float32)).dtype == jnp.float32
