"""The one-line diagnosis of a failing leaf: each bug kind planted, and none claimed at random."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcheck
from jaxcheck._numerics import diagnosis as _diagnosis
from jaxcheck._numerics import stencils as _stencils

RNG = np.random.default_rng(0)
PARAMS = {"W": RNG.normal(size=(6, 6)) / 2, "V": RNG.normal(size=(6, 3)) / 2,
          "b": RNG.normal(size=6) / 4}  # fmt: skip
X = RNG.normal(size=(8, 6))
Y = RNG.normal(size=(8, 3))


def loss(p, x, y):
    h = jnp.tanh(x @ p["W"] + p["b"][None])
    return jnp.mean((h @ p["V"] - y) ** 2)


def decayed(p, x, y):
    return loss(p, x, y) + 0.01 * jnp.sum(p["W"] ** 2)


def planted(edit, of=loss):
    """grad_fn: JAX's gradient of `of`, with `edit(grads)` applied (a dict -> a dict)."""

    def grad_fn(p, x, y):
        g = {k: np.array(v) for k, v in jax.grad(of)(p, x, y).items()}
        return edit(g, p)

    return grad_fn


def _edit(key, f):
    def edit(g, p):
        g[key] = f(g[key], np.asarray(p[key]))
        return g

    return edit


def _row(g, _):
    g = g.copy()
    g[3] *= 1.5
    return g


def _column(g, _):
    g = g.copy()
    g[:, 2] += 0.3
    return g


CASES = {
    "factor": (loss, _edit("W", lambda g, t: 4 * g), "W", "4 × numeric"),
    "sign": (loss, _edit("V", lambda g, t: -g), "V", "sign is flipped"),
    "transposed": (loss, _edit("W", lambda g, t: g.T), "W", "transposed"),
    "weight decay missing": (
        decayed,
        lambda g, p: {**g, "W": g["W"] - 0.02 * np.asarray(p["W"])},
        "W",
        "0.01·‖θ‖² in the loss is missing",
    ),  # fmt: skip
    "zero": (loss, _edit("b", lambda g, t: np.zeros_like(g)), "b", "gradient is 0 everywhere"),
    "constant": (loss, _edit("V", lambda g, t: g + 0.01), "V", "≈ 0.01 at every element"),
    "row": (loss, _edit("W", _row), "W", "only row 3"),
    "column": (loss, _edit("W", _column), "W", "only column 2"),
}


@pytest.mark.parametrize("case", CASES)
def test_each_planted_bug_kind_is_diagnosed(case):
    fn, edit, leaf, expected = CASES[case]
    result = jaxcheck.check_grad(fn, PARAMS, X, Y, grad_fn=planted(edit, fn))
    assert result.verdict == "failed"
    report = result.leaves[f"['{leaf}']"]
    assert expected in report.diagnosis, report.diagnosis
    assert f"diagnosis ['{leaf}']: " in str(result)  # printed with the report
    assert "diagnosis" in result.failure_message()
    for other in result.leaves.values():  # the correct leaves get none
        if other.path != report.path:
            assert other.diagnosis == ""


def test_a_constant_at_theta_equal_ones_is_not_called_weight_decay_alone():
    """At θ = ones a constant added to the backward and a term λ·θ cannot be told apart:
    the diagnosis says both (it once said "0.01·θ (weight decay)" for a constant)."""
    ones = {k: np.ones_like(v) for k, v in PARAMS.items()}
    result = jaxcheck.check_grad(
        loss, ones, X, Y, grad_fn=planted(_edit("V", lambda g, t: g + 0.01))
    )
    said = result.leaves["['V']"].diagnosis
    assert "constant added" in said and "0.01·θ" in said and "cannot tell them apart" in said, said
    varied = jaxcheck.check_grad(
        loss, PARAMS, X, Y, grad_fn=planted(_edit("V", lambda g, t: g + 0.01))
    )
    assert "θ" not in varied.leaves["['V']"].diagnosis  # θ varies: the constant alone
    decay = jaxcheck.check_grad(
        loss, PARAMS, X, Y, grad_fn=planted(_edit("V", lambda g, t: g + 0.01 * t))
    )
    assert "0.01·θ" in decay.leaves["['V']"].diagnosis
    assert "constant" not in decay.leaves["['V']"].diagnosis


@pytest.mark.parametrize("factor, said", [(2.0, "analytic = 2 × numeric"), (-1.0, "sign")])
def test_a_one_element_leaf_still_gets_its_ratio(factor, said):
    def scaled(p, x):
        return jnp.sum(jnp.tanh(x * p["w"]) * p["s"])

    params = {"w": np.array([0.3, -0.7, 1.1]), "s": np.array(0.8)}
    x = np.array([0.5, 1.5, -2.0])

    def grad_fn(p, x):
        g = jax.grad(scaled)(p, x)
        return {"w": g["w"], "s": factor * g["s"]}

    result = jaxcheck.check_grad(scaled, params, x, grad_fn=grad_fn)
    assert said in result.leaves["['s']"].diagnosis, result.leaves["['s']"].diagnosis
    assert result.leaves["['w']"].diagnosis == ""


def test_a_gradient_only_wrong_at_kinks_is_diagnosed_with_kinks_fail():
    def relu_loss(p, x):
        return jnp.sum(jax.nn.relu(x * p["w"]))

    params = {"w": np.array([1.0, -1.0, 2.0, 0.5, 0.0, 0.0])}
    x = np.ones(6)

    def grad_fn(p, x):  # between the one-sided slopes 0 and 1 at w = 0, right elsewhere
        return {"w": np.where(p["w"] == 0, 0.9, p["w"] > 0)}

    result = jaxcheck.check_grad(relu_loss, params, x, kinks="fail", grad_fn=grad_fn)
    assert result.verdict == "failed"
    assert "only where fn has a kink" in result.leaves["['w']"].diagnosis


@pytest.mark.parametrize("seed", range(20))
def test_random_errors_get_no_diagnosis(seed):
    """Wrong elements at random places, by random amounts: no pattern is claimed."""
    rng = np.random.default_rng(seed)
    size = int(np.size(PARAMS["W"]))
    idx = rng.choice(size, int(rng.integers(1, 12)), replace=False)
    noise = rng.normal(size=idx.size)  # drawn once: the gradient is the same at every call

    def edit(g, _):
        w = g["W"].reshape(-1).copy()
        w[idx] += noise * (0.1 + np.abs(w[idx]))
        g["W"] = w.reshape(g["W"].shape)
        return g

    result = jaxcheck.check_grad(loss, PARAMS, X, Y, grad_fn=planted(edit))
    assert result.verdict == "failed"
    assert result.leaves["['W']"].diagnosis == ""


@pytest.mark.parametrize("seed", range(10))
def test_dense_random_errors_get_no_diagnosis(seed):
    rng = np.random.default_rng(100 + seed)
    d = rng.normal(size=64)
    a = d + rng.normal(size=64) * (0.05 + 0.5 * rng.random())
    n = a.size
    v = _stencils.Verdict(
        analytic=a,
        numeric=d,
        abs_error=np.abs(a - d),
        tolerance=np.full(n, 1e-9),
        resolution=np.full(n, 1e-10),
        excess_noise=np.ones(n),
        status=np.full(n, _stencils.MISMATCH),
    )
    assert _diagnosis.diagnose(v, (8, 8), rng.normal(size=64)) == ""
