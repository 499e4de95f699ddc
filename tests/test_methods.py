"""method= and kinks=: every finite-difference method on the corpus, planted bugs, kinks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcheck
from jaxcheck._numerics import methods as _methods
from tests.helpers import CORPUS

METHODS = _methods.METHODS


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", ["mlp_softmax_ce", "layer_norm", "attention"])
def test_no_false_failures_on_the_corpus(name, method):
    loss, params, args = CORPUS[name]()
    result = jaxcheck.check_grad(loss, params, *args, method=method)
    assert result.passed, result
    assert result.method == method


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("precision", ["float64", "native"])
def test_a_planted_bug_is_caught_and_located_by_every_method(method, precision):
    loss, params, args = CORPUS["mlp_softmax_ce"]()
    g = jax.grad(loss)(params, *args)
    wrong = {**g, "W2": g["W2"].at[3, 5].add(1e-3)}
    result = jaxcheck.check_grad(
        loss, params, *args, grad_fn=lambda *_: wrong, method=method, precision=precision
    )
    assert [(e.path, e.index) for e in result.failures] == [("['W2']", (3, 5))], result


def test_forward_differences_cost_n_plus_one_evaluations_for_a_correct_gradient():
    calls = [0]
    rng = np.random.default_rng(0)
    params = {"w": rng.standard_normal(600)}

    def loss(p):
        calls[0] += 1
        return float(np.sum(np.sin(p["w"])))

    def grad(p):
        return {"w": np.cos(p["w"])}

    result = jaxcheck.check_grad(loss, params, grad_fn=grad, method="forward")
    assert result.passed
    # before the check: one trace attempt, the output's shape, two calls for hidden randomness;
    # the 256 elements of the noise sample also get θ + 2h, θ − h, θ − 2h
    extra = 4 + 3 * 256
    assert calls[0] == 600 + 1 + extra


def test_each_method_takes_its_own_step_and_reports_it():
    loss, params, args = CORPUS["layer_norm"]()
    steps = {
        m: jaxcheck.check_grad(loss, params, *args, method=m).leaves["['W']"].step
        for m in ("forward", "central", "central4", "richardson")
    }
    assert steps["forward"] < steps["central"] < steps["central4"] < steps["richardson"]


def test_native_float32_steps_are_chosen_from_the_data():
    loss, params, args = CORPUS["mlp_softmax_ce"]()
    check = lambda eps: jaxcheck.check_grad(  # noqa: E731
        loss, params, *args, precision="native", method="central", eps=eps
    )
    rule, auto, default = check("rule"), check("auto"), check(None)
    u = float(np.finfo(np.float32).eps)
    rms = float(np.sqrt(np.mean(np.asarray(params["W2"]) ** 2)))
    assert rule.leaves["['W2']"].step == pytest.approx(u ** (1 / 3) * rms, rel=0.5)
    assert auto.leaves["['W2']"].step > 2 * rule.leaves["['W2']"].step
    assert default.leaves["['W2']"].step == auto.leaves["['W2']"].step
    error = lambda r: np.median(np.abs(np.asarray(r.numeric["W2"]) - np.asarray(r.analytic["W2"])))  # noqa: E731
    assert error(auto) < error(rule) / 3
    assert auto.passed and rule.passed


def relu_net():
    """A ReLU network whose hidden unit 1 sits exactly at zero for every example."""
    params = {
        "W1": jnp.array([[1.0, 0.0, -0.5], [0.5, 0.0, 1.0]]),
        "b1": jnp.array([0.1, 0.0, 0.2]),
        "w2": jnp.array([1.0, -2.0, 0.7]),
    }
    x = jnp.array([[0.3, 0.8], [-0.4, 0.9], [1.0, -0.2]])

    def loss(p, x):
        h = jax.nn.relu(x @ p["W1"] + p["b1"][None])
        return jnp.sum((h @ p["w2"]) ** 2)

    return loss, params, x


def test_relu_units_at_exactly_zero_are_kinks_not_failures():
    loss, params, x = relu_net()
    result = jaxcheck.check_grad(loss, params, x)
    assert result.passed, result
    assert result.kinks
    assert {(e.path, e.index) for e in result.kinks} >= {("['b1']", (1,))}
    assert all(e.index[-1] == 1 for e in result.kinks if e.path == "['W1']")
    assert "kink" in str(result)
    strict = jaxcheck.check_grad(loss, params, x, kinks="fail")
    assert not strict.passed
    assert {(e.path, e.index) for e in strict.failures} == {(e.path, e.index) for e in result.kinks}


@pytest.mark.parametrize(
    "fn",
    [
        lambda p: jnp.sum(jnp.abs(p["x"])),
        # max pooling as flax.linen.max_pool does it, with a tie in the second window
        lambda p: jax.lax.reduce_window(p["x"], -jnp.inf, jax.lax.max, (2,), (2,), "VALID").sum(),
    ],
    ids=["abs", "max_pool"],
)
def test_abs_and_max_pooling_at_their_kinks(fn):
    params = {"x": jnp.array([0.0, 1.0, 2.0, 2.0])}
    result = jaxcheck.check_grad(fn, params)
    assert result.passed, result
    assert result.kinks


@pytest.mark.parametrize("precision", ["float64", "native"])
@pytest.mark.parametrize("method", ["central", "central4", "central6", "richardson"])
def test_a_wrong_gradient_at_a_smooth_point_is_never_called_a_kink(method, precision):
    result = jaxcheck.check_grad(
        lambda p: jnp.sum(jnp.sin(p["x"])),
        {"x": jnp.linspace(-2.0, 2.0, 9)},
        grad_fn=lambda p: {"x": jnp.cos(p["x"]) * 1.001},
        method=method,
        precision=precision,
    )
    assert not result.kinks, result
    failed = {e.index[0] for e in result.failures}
    assert failed == set(range(9)) if precision == "float64" else 4 in failed, result


def test_the_error_estimate_is_reported_per_element():
    loss, params, args = CORPUS["layer_norm"]()
    central = jaxcheck.check_grad(loss, params, *args)
    richardson = jaxcheck.check_grad(loss, params, *args, method="richardson")
    res_c = np.median(np.asarray(central.resolution["W"]))
    res_r = np.median(np.asarray(richardson.resolution["W"]))
    assert np.all(np.isfinite(np.asarray(central.resolution["W"])))
    assert res_r < res_c


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"method": "five-point"}, "method='five-point' is not available"),
        ({"kinks": "ignore"}, "kinks='ignore'"),
        ({"eps": "best"}, "eps='best'"),
        ({"order": 2, "method": "forward"}, "leave method at 'central'"),
    ],
)
def test_bad_method_options(kwargs, match):
    loss, params, args = CORPUS["layer_norm"]()
    with pytest.raises(ValueError, match=match):
        jaxcheck.check_grad(loss, params, *args, **kwargs)


def _conv_batchnorm_relu(seed):
    """A float32 conv net with batch norm and ReLU: hundreds of kinks a long step crosses."""
    rng = np.random.default_rng(seed)

    def f32(*shape):
        return jnp.asarray(rng.normal(size=shape), jnp.float32)

    params = {"kernel": f32(3, 3, 2, 4) / 3, "bias": jnp.zeros(4, jnp.float32),
              "scale": jnp.ones(4, jnp.float32), "shift": jnp.zeros(4, jnp.float32),
              "head": f32(4, 1) / 2}  # fmt: skip
    x, y = f32(4, 6, 6, 2), f32(4, 1)

    def loss(p, x, y):
        dims = ("NHWC", "HWIO", "NHWC")
        h = jax.lax.conv_general_dilated(x, p["kernel"], (1, 1), "SAME", dimension_numbers=dims)
        h = h + p["bias"][None, None, None]
        mean = h.mean(axis=(0, 1, 2), keepdims=True)
        var = h.var(axis=(0, 1, 2), keepdims=True)
        norm = (h - mean) / jnp.sqrt(var + 1e-5)
        h = jax.nn.relu(norm * p["scale"][None, None, None] + p["shift"][None, None, None])
        return jnp.mean((h.mean(axis=(1, 2)) @ p["head"] - y) ** 2)

    return loss, params, (x, y)


@pytest.mark.parametrize("seed", [2, 4])
def test_native_low_precision_uses_central_differences_where_fn_has_kinks(seed):
    """Richardson's long extrapolated steps (the native float32 default for smooth fn) cross
    the ReLU kinks of a conv + batch norm net and failed correct kernel elements by 1%."""
    loss, params, args = _conv_batchnorm_relu(seed)
    result = jaxcheck.check_grad(loss, params, *args, precision="native")
    assert result.method == "central" and result.n_failed == 0, result
    assert any("not smooth everywhere (it uses" in n and "max" in n for n in result.notes)
    # asked for by name, Richardson is what runs
    named = jaxcheck.check_grad(loss, params, *args, precision="native", method="richardson")
    assert named.method == "richardson"
    # and a smooth fn keeps the more exact default
    smooth = jaxcheck.check_grad(
        lambda p: jnp.sum(jnp.tanh(p["w"]) ** 2), {"w": jnp.linspace(-1, 1, 5)},
        precision="native",
    )  # fmt: skip
    assert smooth.method == "richardson" and smooth.passed
