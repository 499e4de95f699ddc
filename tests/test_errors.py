"""Bad input gets a clear error before any long computation: what, where, and how to fix it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcheck
from tests import helpers as h


def loss(p, x):
    return jnp.sum(jnp.tanh(x @ p["W"]) * p["b"][None])


PARAMS = {"W": jnp.ones((3, 2)) / 3, "b": jnp.array([0.5, -1.0])}
X = jnp.arange(12.0).reshape(4, 3) / 12


def expensive(p, x):
    raise AssertionError("fn must not be evaluated at perturbed points for bad input")


def check(grad, **options):
    return jaxcheck.check_grad(loss, PARAMS, X, grad_fn=lambda p, x: grad, **options)


def good_grad():
    return jax.grad(loss)(PARAMS, X)


def test_missing_and_extra_gradient_paths_are_named():
    with pytest.raises(ValueError) as info:
        check({"W": good_grad()["W"], "bias": good_grad()["b"]})
    assert "missing ['b']" in str(info.value) and "extra ['bias']" in str(info.value)
    assert "structure of params" in str(info.value)


def test_transposed_gradient_is_named_with_both_shapes():
    with pytest.raises(ValueError, match=r"params\['W'\] has shape \(2, 3\).*\(3, 2\).*transposed"):
        check({**good_grad(), "W": good_grad()["W"].T})


def test_same_size_wrong_shape_suggests_a_reshape():
    with pytest.raises(ValueError, match=r"shape \(6,\).*reshape"):
        check({**good_grad(), "W": good_grad()["W"].reshape(6)})


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((3, 2), int), "dtype int64; a gradient must be floating-point"),
        (np.zeros((3, 2), complex), "complex"),
        (np.zeros((3, 2), jax.dtypes.float0), "float0"),
    ],
    ids=["integer", "complex", "float0"],
)
def test_gradient_dtype_errors(bad, match):
    with pytest.raises(TypeError, match=match):
        check({**good_grad(), "W": bad})


def test_flat_vector_of_the_wrong_length():
    with pytest.raises(ValueError, match="length 7.*has 8 elements"):
        check(np.zeros(7))


def test_flat_vector_may_leave_out_non_float_leaves():
    params = {**PARAMS, "count": np.arange(3)}
    g = good_grad()
    flat = np.concatenate([np.ravel(g["W"]), np.ravel(g["b"])])  # ravel order: W, b, count

    wrong = flat + np.eye(8)[7]  # b[1], the last float coordinate
    result = jaxcheck.check_grad(loss, params, X, grad_fn=lambda p, x: wrong)
    [e] = result.failures
    assert (e.path, e.index) == ("['b']", (1,))


def test_empty_params():
    with pytest.raises(ValueError, match="params is empty"):
        jaxcheck.check_grad(expensive, {}, X)


def test_params_with_nothing_to_check():
    with pytest.raises(ValueError, match="no floating-point elements.*integer"):
        jaxcheck.check_grad(expensive, {"n": np.arange(3)}, X)


def test_only_matching_nothing_lists_the_paths():
    with pytest.raises(ValueError, match=r"only='kernel' matches none.*\['W'\], \['b'\]"):
        jaxcheck.check_grad(expensive, PARAMS, X, only="kernel")


def test_non_scalar_output_with_a_handwritten_gradient_explains_why():
    with pytest.raises(ValueError, match=r"shape \(4, 2\), but grad_fn is given.*scalar loss"):
        jaxcheck.check_grad(
            lambda p, x: jnp.tanh(x @ p["W"]), PARAMS, X, grad_fn=lambda p, x: good_grad()
        )


@pytest.mark.parametrize(
    "fn, match",
    [
        (lambda p, x: (loss(p, x), 0.0), "returned a tuple.*has_aux=True"),
        (lambda p, x: jnp.sum(x @ p["W"]).astype(int), "dtype int"),
        (lambda p, x: "loss", "returned a str"),
    ],
    ids=["tuple", "integer", "string"],
)
def test_outputs_that_are_not_a_loss(fn, match):
    with pytest.raises(TypeError, match=match):
        jaxcheck.check_grad(fn, PARAMS, X)


def test_jax_grad_of_numpy_code_asks_for_grad_fn():
    params, X_, t = h.seed000_data()
    with pytest.raises(TypeError, match="could not be traced by JAX.*grad_fn="):
        jaxcheck.check_grad(h.seed000_loss, params, X_, t)


@pytest.mark.parametrize(
    "options, error, match",
    [
        ({"mode": "fast"}, ValueError, "mode='fast' is not available"),
        ({"precision": "float32"}, ValueError, "'float64' .* or 'native'"),
        ({"rtol": -1.0}, ValueError, "rtol=-1.0"),
        ({"atol": float("nan")}, ValueError, "atol=nan"),
        ({"eps": 0.0}, ValueError, "eps=0.0.*> 0"),
        ({"eps": {"['w']": 1e-4}}, ValueError, r"eps= names \['w'\].*\['W'\], \['b'\]"),
        ({"eps": 1e-30}, ValueError, r"step 1e-30 vanishes at params\['W'\]\[0, 0\]"),
        ({"chunk_size": 0}, ValueError, "chunk_size=0"),
        ({"grad_fn": "backward"}, TypeError, "grad_fn must be a function"),
        ({"only": 3}, TypeError, "only= must be"),
    ],
)
def test_bad_options(options, error, match):
    with pytest.raises(error, match=match):
        jaxcheck.check_grad(loss, PARAMS, X, **options)


def test_gradient_errors_come_before_any_compilation(monkeypatch):
    from jaxcheck._engine import batched as _engine

    def no_compiling(*args, **kwargs):
        raise AssertionError("compiled before validating the gradient")

    monkeypatch.setattr(_engine.JaxEngine, "_compiled", no_compiling)
    with pytest.raises(ValueError, match="transposed"):
        check({**good_grad(), "W": good_grad()["W"].T})
    with pytest.raises(ValueError, match="vanishes"):
        check(good_grad(), eps=1e-30)


def test_advice_for_a_loss_that_casts_to_float32_names_the_cast_not_upcast():
    """A gradient drowned in its own rounding usually asks for precision='upcast'; where fn
    casts to float32 itself, upcasting the parameters changes nothing: say what does."""
    from jaxcheck._core.coords import Coords
    from jaxcheck._grad import plan, session
    from jaxcheck._grad.options import Options

    coords = Coords.build({"w": np.ones(3)})
    checked = plan.build(Options.make(), coords, None)
    own = session._advice(checked, coords, None, drowned=2)
    assert "precision='upcast'" in own  # float64 inside: the gradient's rounding is the limit
    cast = session._advice(checked, coords, np.dtype(np.float32), drowned=2)
    assert "fn computes in float32 inside" in cast and "upcast" not in cast, cast
    assert "its float32 casts or dtype= settings made float64" in cast
