"""Directional and sample modes: correct models pass, planted bugs are caught and located."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcheck
from jaxcheck._core.coords import Coords
from jaxcheck._engine import batched as _engine
from jaxcheck._grad import directional as _directional_mode
from jaxcheck._numerics import directions as _directional
from tests import helpers as h

# ---- correct models pass ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["directional", "sample"])
@pytest.mark.parametrize("name", sorted(h.CORPUS))
def test_correct_model_passes(name, mode):
    loss, params, args = h.CORPUS[name]()
    result = jaxcheck.check_grad(loss, params, *args, mode=mode)
    assert result.passed, result
    assert result.mode == mode
    assert set(result.leaves) == {f"['{k}']" for k in params}


def test_directional_report_gives_the_miss_probability_of_each_leaf():
    loss, params, args = h.mlp_softmax_ce()
    few = jaxcheck.check_grad(loss, params, *args, mode="directional", directions=1)
    many = jaxcheck.check_grad(loss, params, *args, mode="directional", directions=8)
    for path, leaf in many.leaves.items():
        assert leaf.directions == 8 and few.leaves[path].directions == 1
        assert 0 <= leaf.miss_probability <= few.leaves[path].miss_probability <= 1
        assert leaf.detectable_norm > 0 and math.isfinite(leaf.detectable_norm)
        assert leaf.directional_error <= leaf.directional_tolerance
    assert "P(miss 1%)" in str(many) and "random directions" in str(many)


def test_miss_probability_matches_its_formula():
    tol, n = np.array([1e-3, 2e-3]), 100
    norm = 1e-2
    expected = math.erf(1e-3 * 10 / (norm * math.sqrt(2))) * math.erf(2e-3 * 10 / (norm * 2**0.5))
    assert _directional.miss_probability(tol, n, norm) == pytest.approx(expected)
    found = _directional.detectable_norm(tol, n)
    assert _directional.miss_probability(tol, n, found) == pytest.approx(1e-3, rel=1e-6)


# ---- planted bugs: caught every time, in the right leaf ---------------------------------------


def _mlp_bug(kind):
    loss, params, args = h.mlp_softmax_ce()

    def grad_fn(p, *a):
        g = dict(jax.grad(loss)(p, *a))
        if kind == "scale":
            g["b2"] = g["b2"] * 1.1
        elif kind == "missing_term":  # the gradient of a forgotten L2 term on W1
            g["W1"] = g["W1"] - 0.01 * p["W1"]
        elif kind == "transposed":  # W2 is square: the shape cannot reveal it
            g["W2"] = g["W2"].T
        elif kind == "sign_row":
            g["W3"] = g["W3"].at[3].multiply(-1.0)
        return g

    target = {"scale": "b2", "missing_term": "W1", "transposed": "W2", "sign_row": "W3"}[kind]
    return loss, params, args, grad_fn, target


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("kind", ["scale", "missing_term", "transposed", "sign_row"])
def test_planted_single_leaf_bug_is_caught_in_its_leaf(kind, seed):
    loss, params, args, grad_fn, target = _mlp_bug(kind)
    result = jaxcheck.check_grad(
        loss, params, *args, grad_fn=grad_fn, mode="directional", seed=seed
    )
    assert not result.passed
    assert [p for p, leaf in result.leaves.items() if not leaf.passed] == [f"['{target}']"]
    assert {e.path for e in result.failures} <= {f"['{target}']"}


def test_sign_flip_on_one_row_is_located_to_that_row():
    loss, params, args, grad_fn, _ = _mlp_bug("sign_row")
    result = jaxcheck.check_grad(loss, params, *args, grad_fn=grad_fn, mode="directional")
    g = np.asarray(jax.grad(loss)(params, *args)["W3"])
    wrong = {(3, j) for j in range(g.shape[1]) if abs(g[3, j]) > 1e-6}
    assert {e.index for e in result.failures} == wrong
    assert all(e.status == "mismatch" for e in result.failures)


def test_custom_vjp_with_transposed_square_weight_is_caught():
    loss, params, x = h.custom_vjp_model(bug=True)
    result = jaxcheck.check_grad(loss, params, x, mode="directional")
    assert not result.leaves["['W']"].passed and result.leaves["['v']"].passed
    good_loss, _, _ = h.custom_vjp_model(bug=False)
    assert jaxcheck.check_grad(good_loss, params, x, mode="directional").passed


def _big_linear_model(n_in=512, n_out=512, seed=0):
    rng = np.random.default_rng(seed)
    params = {"W": jnp.asarray(rng.normal(size=(n_in, n_out)) / np.sqrt(n_in), jnp.float32),
              "b": jnp.zeros(n_out, jnp.float32)}  # fmt: skip
    x = jnp.asarray(rng.normal(size=(4, n_in)), jnp.float32)

    def loss(p, x):
        return jnp.sum(jnp.tanh(x @ p["W"] + p["b"][None]) ** 2)

    return loss, params, x


def test_one_wrong_element_among_262144_is_found_in_logarithmic_probes():
    loss, params, x = _big_linear_model()
    g = jax.grad(loss)(params, x)
    W = np.array(g["W"])
    W[300, 17] += 0.1 * np.linalg.norm(W)
    bad = {"W": jnp.asarray(W), "b": g["b"]}
    result = jaxcheck.check_grad(loss, params, x, grad_fn=lambda p, x: bad, mode="directional")
    assert [(e.path, e.index) for e in result.failures] == [("['W']", (300, 17))]
    leaf = result.leaves["['W']"]
    n = 512 * 512
    rounds = math.ceil(math.log(n / _directional.ISOLATE_AT, _directional.FANOUT)) + 1
    assert 0 < leaf.probes <= rounds * _directional.FANOUT * _directional.PROBES
    # only candidates, element-wise: cells as large as element checks are cheaper than a round
    assert leaf.n_checked <= _directional.MAX_ISOLATE * 2
    assert result.leaves["['b']"].passed


def test_splitting_stops_where_element_checks_are_cheaper_than_a_round():
    assert _directional.isolate_at(None) == _directional.ISOLATE_AT  # cost unknown
    assert _directional.isolate_at(1.0) == _directional.ISOLATE_AT  # both whole forward passes
    assert _directional.isolate_at(100.0) == 200  # FANOUT * PROBES * 100 / 4 points
    assert _directional.isolate_at(1e9) == _directional.MAX_ISOLATE
    # On the sparse path a one-element change of W costs far less than a dense direction.
    loss, params, x = _big_linear_model(64, 64)
    with jax.enable_x64(True):
        coords = Coords.build(params)
        values = coords.cast(jax.tree_util.tree_leaves(params), lambda leaf: np.float64)
        engine = _engine.JaxEngine(loss, values, coords, (np.asarray(x, np.float64),))
        ratio = engine.direction_cost(coords.checked[0])
    assert ratio > 10


def test_an_error_everywhere_is_reported_for_the_leaf_not_isolated():
    loss, params, x = _big_linear_model(64, 64)

    def grad_fn(p, x):
        g = jax.grad(loss)(p, x)
        return {**g, "W": g["W"] * 1.5}

    result = jaxcheck.check_grad(loss, params, x, grad_fn=grad_fn, mode="directional")
    leaf = result.leaves["['W']"]
    assert not result.passed and not leaf.passed
    assert "wrong throughout" in leaf.located
    assert leaf.located in str(result)
    assert 0 < leaf.n_failed <= _directional_mode.WIDESPREAD_SAMPLE  # a sample, not all 4096
    assert "1.5 × numeric" in leaf.diagnosis, leaf.diagnosis


def test_a_leaf_wrong_throughout_on_the_host_is_not_split_down_to_its_elements():
    """A kernel evaluated one point at a time (a flash-attention dK scaled by 0.3): group
    testing stops once most parts fail and a sample of elements fails one by one; the leaf
    is reported as a whole, its diagnosis fitted on the sample (every one of 1,024 elements
    was once located one by one, in minutes)."""
    rng = np.random.default_rng(0)
    params = {"W": rng.normal(size=(32, 32)) / 6}
    X = rng.normal(size=(8, 32))
    evaluations = [0]

    def loss(p, X):  # plain NumPy: the host engine, one point at a time
        evaluations[0] += 1
        return float(np.sum(np.tanh(np.asarray(X) @ p["W"]) ** 2))

    def backward(p, X):
        z = np.tanh(X @ p["W"])
        return {"W": 0.3 * (X.T @ (2 * z * (1 - z**2)))}

    result = jaxcheck.check_grad(loss, params, X, grad_fn=backward, mode="directional")
    leaf = result.leaves["['W']"]
    assert result.engine == "host" and result.verdict == "failed"
    assert "wrong throughout" in leaf.located, leaf.located
    assert leaf.n_failed <= _directional_mode.WIDESPREAD_SAMPLE
    assert "0.3 × numeric" in leaf.diagnosis, leaf.diagnosis
    assert leaf.probes <= 16  # one round of group testing
    directional, evaluations[0] = evaluations[0], 0
    full = jaxcheck.check_grad(loss, params, X, grad_fn=backward)
    assert full.leaves["['W']"].n_failed == 1024
    assert directional * 4 < evaluations[0], (directional, evaluations[0])


def test_many_scattered_wrong_elements_are_still_located_one_by_one():
    """Sixty wrong elements among 4096 fail in most parts of the first rounds, but not in a
    sample of the leaf's elements: group testing goes on and finds every one of them."""
    loss, params, x = _big_linear_model(64, 64)
    wrong = np.random.default_rng(3).choice(4096, 60, replace=False)

    def grad_fn(p, x):
        g = jax.grad(loss)(p, x)
        w = g["W"].reshape(-1).at[wrong].multiply(1.5).reshape(g["W"].shape)
        return {**g, "W": w}

    result = jaxcheck.check_grad(loss, params, x, grad_fn=grad_fn, mode="directional")
    leaf = result.leaves["['W']"]
    assert "wrong throughout" not in leaf.located
    flat = sorted(np.ravel_multi_index(e.index, (64, 64)) for e in result.failures)
    assert flat == sorted(wrong.tolist()), (len(flat), leaf.located)


def test_directional_mode_on_the_host_engine():
    rng = np.random.default_rng(0)
    params = {"W": rng.normal(size=(20, 5)), "b": rng.normal(size=5)}
    X = rng.normal(size=(8, 20))

    def loss(p, X):  # plain NumPy: not traceable
        return float(np.sum(np.tanh(np.asarray(X) @ p["W"] + p["b"]) ** 2))

    def backward(p, X, bug=False):
        z = np.tanh(X @ p["W"] + p["b"])
        dz = 2 * z * (1 - z**2)
        dW = X.T @ dz
        if bug:
            dW[7, 2] *= 1.5
        return {"W": dW, "b": dz.sum(axis=0)}

    good = jaxcheck.check_grad(loss, params, X, grad_fn=backward, mode="directional")
    assert good.engine == "host" and good.passed, good
    bad = jaxcheck.check_grad(
        loss, params, X, grad_fn=lambda p, X: backward(p, X, bug=True), mode="directional"
    )
    assert [(e.path, e.index) for e in bad.failures] == [("['W']", (7, 2))]


# ---- sample mode ------------------------------------------------------------------------------


def test_sample_mode_checks_m_elements_of_every_leaf_and_catches_a_bias_bug():
    loss, params, args, grad_fn, target = _mlp_bug("scale")  # b2 (16 elements) scaled
    result = jaxcheck.check_grad(loss, params, *args, grad_fn=grad_fn, mode="sample", samples=16)
    assert {p: leaf.n_checked for p, leaf in result.leaves.items()} == {
        f"['{k}']": min(16, v.size) for k, v in params.items()
    }
    assert not result.passed and {e.path for e in result.failures} == {"['b2']"}
    numeric = np.asarray(result.numeric["W1"])
    assert np.isfinite(numeric).sum() == 16  # NaN where not sampled


@pytest.mark.parametrize(
    "option, value", [("directions", 0), ("samples", -1), ("directions", 2.5), ("mode", "fast")]
)
def test_bad_mode_options_are_errors(option, value):
    loss, params, args = h.mlp_softmax_ce()
    with pytest.raises(ValueError, match=option):
        jaxcheck.check_grad(loss, params, *args, **{option: value})
