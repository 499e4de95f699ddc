"""Models from Flax (linen, nnx) and Equinox as params: natural paths, skipped static leaves.

Each test imports its library with `pytest.importorskip`, so each runs when its library is
installed (the `test` extra) and is skipped otherwise, independently of the others.

The models are 2-layer tanh MLPs with float32 parameters (flax's and equinox's default); the
check runs in float64. The `*_scalar_head` tests cover a 1-unit output layer, whose bias
flax adds by an implicit size-1 broadcast.
"""

import dataclasses
import warnings

import jax
import jax.numpy as jnp
import pytest

import jaxcheck
from tests.helpers import assert_kinks_excused_and_hvp_factors_caught

X = jnp.linspace(-1.0, 1.0, 15, dtype=jnp.float32).reshape(5, 3)


def plant(grad, raw_path, index, factor=1.1):
    """`grad` with element `index` of the leaf at `raw_path` (as JAX's keystr writes it,
    `.value` of nnx Variables included) multiplied by `factor`: a 10% bug."""
    found = []

    def f(key_path, g):
        if jax.tree_util.keystr(key_path) != raw_path:
            return g
        found.append(raw_path)
        return g.at[index].multiply(factor)

    out = jax.tree_util.tree_map_with_path(f, grad)
    assert found, f"no leaf {raw_path} in the gradient"
    return out


def failures(result):
    return [(e.path, e.index) for e in result.failures]


# ---- flax.linen ------------------------------------------------------------------------------


def linen_model(n_out=2):
    nn = pytest.importorskip("flax.linen")

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            h = jnp.tanh(nn.Dense(4)(x))  # Dense_0: kernel (3, 4)
            return nn.Dense(n_out)(h)  # Dense_1

    model = MLP()
    variables = model.init(jax.random.key(0), X)

    def loss(variables, x):
        return jnp.sum(model.apply(variables, x) ** 2)

    return variables, loss


def test_linen_jax_grad_passes():
    variables, loss = linen_model()
    result = jaxcheck.check_grad(loss, variables, X)
    assert result.passed, result
    assert set(result.leaves) == {
        "['params']['Dense_0']['kernel']",
        "['params']['Dense_0']['bias']",
        "['params']['Dense_1']['kernel']",
        "['params']['Dense_1']['bias']",
    }


def test_linen_planted_bug_is_located():
    variables, loss = linen_model()
    path = "['params']['Dense_0']['kernel']"

    def grad_fn(v, x):
        return plant(jax.grad(loss)(v, x), path, (1, 2))

    result = jaxcheck.check_grad(loss, variables, X, grad_fn=grad_fn)
    assert failures(result) == [(path, (1, 2))]


# ---- flax.nnx --------------------------------------------------------------------------------


def nnx_model(n_out=2):
    nnx = pytest.importorskip("flax.nnx")

    class MLP(nnx.Module):
        def __init__(self, rngs):
            self.l1 = nnx.Linear(3, 4, rngs=rngs)
            self.l2 = nnx.Linear(4, n_out, rngs=rngs)

        def __call__(self, x):
            return self.l2(jnp.tanh(self.l1(x)))

    return nnx, MLP(nnx.Rngs(0))


def nnx_state(n_out=2):
    nnx, model = nnx_model(n_out)
    graphdef, state = nnx.split(model)

    def loss(state, x):
        return jnp.sum(nnx.merge(graphdef, state)(x) ** 2)

    return state, loss


NNX_STATE_PATHS = {"['l1']['kernel']", "['l1']['bias']", "['l2']['kernel']", "['l2']['bias']"}


def test_nnx_state_jax_grad_passes():
    state, loss = nnx_state()
    result = jaxcheck.check_grad(loss, state, X)
    assert result.passed, result
    assert set(result.leaves) == NNX_STATE_PATHS  # no trailing .value


def test_nnx_state_planted_bug_is_located():
    state, loss = nnx_state()

    def grad_fn(s, x):
        return plant(jax.grad(loss)(s, x), "['l1']['kernel'].value", (2, 3))

    result = jaxcheck.check_grad(loss, state, X, grad_fn=grad_fn)
    assert failures(result) == [("['l1']['kernel']", (2, 3))]


def test_nnx_state_only_and_eps_use_natural_paths():
    state, loss = nnx_state()
    result = jaxcheck.check_grad(loss, state, X, only=r"\['l2'\]", eps={"['l2']['kernel']": 1e-4})
    assert result.passed, result
    assert set(result.leaves) == {"['l2']['kernel']", "['l2']['bias']"}
    assert ("['l1']['kernel']", "excluded by only=") in result.skipped


def test_nnx_module_passed_directly():
    _, model = nnx_model()

    def loss(model, x):
        return jnp.sum(model(x) ** 2)

    result = jaxcheck.check_grad(loss, model, X)
    assert result.passed, result
    assert set(result.leaves) == {".l1.kernel", ".l1.bias", ".l2.kernel", ".l2.bias"}

    def grad_fn(m, x):
        return plant(jax.grad(loss)(m, x), ".l2.kernel.value", (3, 1))

    result = jaxcheck.check_grad(loss, model, X, grad_fn=grad_fn)
    assert failures(result) == [(".l2.kernel", (3, 1))]


# ---- a 1-unit output layer -------------------------------------------------------------------


# flax adds the bias as `y + bias.reshape(1, n_out)`, which JAX >= 0.10 traces as an `add` of
# shapes (batch, 1) and (1, 1): the sparse engine once took the perturbed bias element of a
# 1-unit layer to change one row of the output instead of all of them (a false mismatch).
def test_linen_scalar_head():
    variables, loss = linen_model(n_out=1)
    result = jaxcheck.check_grad(loss, variables, X)
    assert result.passed, result


def test_nnx_scalar_head():
    state, loss = nnx_state(n_out=1)
    result = jaxcheck.check_grad(loss, state, X)
    assert result.passed, result


# ---- equinox ---------------------------------------------------------------------------------


def eqx_model():
    eqx = pytest.importorskip("equinox")
    model = eqx.nn.MLP(3, 2, width_size=4, depth=1, activation=jnp.tanh, key=jax.random.key(0))

    def loss(model, x):
        return jnp.sum(jax.vmap(model)(x) ** 2)

    return eqx, model, loss


def test_equinox_jax_grad_passes_and_skips_static_fields():
    _, model, loss = eqx_model()
    result = jaxcheck.check_grad(loss, model, X)
    assert result.passed, result
    assert set(result.leaves) == {
        ".layers[0].weight",
        ".layers[0].bias",
        ".layers[1].weight",
        ".layers[1].bias",
    }
    skipped = dict(result.skipped)
    assert skipped[".activation"].startswith("not an array")
    assert skipped[".final_activation"].startswith("not an array")


def test_equinox_planted_bug_is_located():
    eqx, model, loss = eqx_model()
    path = ".layers[0].weight"

    def grad_fn(m, x):
        return plant(eqx.filter_grad(loss)(m, x), path, (1, 2))

    result = jaxcheck.check_grad(loss, model, X, grad_fn=grad_fn)
    assert failures(result) == [(path, (1, 2))]


def test_equinox_only_with_natural_path():
    eqx, model, loss = eqx_model()

    def grad_fn(m, x):
        return plant(eqx.filter_grad(loss)(m, x), ".layers[0].weight", (1, 2))

    # The bug is in layer 0: checking layer 1 alone passes, layer 0 alone finds it.
    result = jaxcheck.check_grad(loss, model, X, grad_fn=grad_fn, only=r"\.layers\[1\]")
    assert result.passed, result
    assert set(result.leaves) == {".layers[1].weight", ".layers[1].bias"}
    result = jaxcheck.check_grad(loss, model, X, grad_fn=grad_fn, only=r"\.layers\[0\]\.weight")
    assert failures(result) == [(".layers[0].weight", (1, 2))]


# ---- `.value` is dropped only for nnx Variables ------------------------------------------------


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class Holder:
    value: jax.Array


def test_user_field_named_value_keeps_its_name():
    params = {"h": Holder(jnp.array([0.3, -0.7]))}
    result = jaxcheck.check_grad(lambda p: jnp.sum(jnp.sin(p["h"].value)), params)
    assert result.passed, result
    assert set(result.leaves) == {"['h'].value"}


# ---- nnx BatchNorm in train mode: float64 statistics meet float32 Variables ------------------


def nnx_batchnorm_model():
    nnx = pytest.importorskip("flax.nnx")

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.l1 = nnx.Linear(3, 4, rngs=rngs)
            self.bn = nnx.BatchNorm(4, rngs=rngs)  # train mode: writes its running statistics
            self.l2 = nnx.Linear(4, 2, rngs=rngs)

        def __call__(self, x):
            return self.l2(jnp.tanh(self.bn(self.l1(x))))

    return nnx, Net(nnx.Rngs(0))


# The check evaluates fn at float64 parameters; BatchNorm writes statistics computed from them
# into its BatchStat Variables with a scatter, which JAX warns about (a FutureWarning, an error
# in future JAX) unless those Variables are float64 too: the check casts every float leaf of
# params (BatchStat included, though not checked) and of the data, so none is left float32.
@pytest.mark.parametrize("form", ["module", "state", "params and batch stats as data"])
def test_nnx_batchnorm_check_casts_its_statistics_too(form):
    nnx, model = nnx_batchnorm_model()
    if form == "module":
        params, args = model, (X,)

        def loss(m, x):
            return jnp.sum(m(x) ** 2)

    elif form == "state":
        graphdef, params = nnx.split(model)
        args = (X,)

        def loss(state, x):
            return jnp.sum(nnx.merge(graphdef, state)(x) ** 2)

    else:
        graphdef, params, stats = nnx.split(model, nnx.Param, ...)
        pure = nnx.as_pure if hasattr(nnx, "as_pure") else nnx.pure  # flax >= 0.12.5: as_pure
        args = (pure(stats), X)  # arrays, not Variables: data

        def loss(params, stats, x):
            return jnp.sum(nnx.merge(graphdef, params, stats)(x) ** 2)

    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        result = jaxcheck.check_grad(loss, params, *args)
    assert result.passed, result
    assert {p.split("'")[1] if p[0] == "[" else p.split(".")[1] for p in result.leaves} == {
        "l1",
        "bn",
        "l2",
    }


def test_nnx_batchnorm_pure_stats_in_the_closure_are_not_fn_precision():
    """Train mode writes float32 running statistics nothing returns: fn computes in float64
    (the check was inconclusive, "fn computes in float32 inside")."""
    nnx, model = nnx_batchnorm_model()
    graphdef, params, stats = nnx.split(model, nnx.Param, ...)
    pure = nnx.as_pure(stats) if hasattr(nnx, "as_pure") else nnx.pure(stats)

    def loss(params, x):
        return jnp.sum(nnx.merge(graphdef, params, pure)(x) ** 2)

    with warnings.catch_warnings():  # float64 statistics scattered into the closure's float32
        warnings.simplefilter("ignore", FutureWarning)
        result = jaxcheck.check_grad(loss, params, X)
    assert result.verdict == "passed", result
    assert not any("computes in float32" in n for n in result.notes), result.notes


def nnx_relu_batchnorm_loss(seed):
    """Linear(4, 8) -> BatchNorm in train mode -> relu -> Linear(8, 1), squared error over 16
    examples, as the nnx state; l1's bias is invisible to the loss (the batch norm subtracts
    it), so its gradient and its row of H are rounding."""
    nnx = pytest.importorskip("flax.nnx")

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.l1 = nnx.Linear(4, 8, rngs=rngs)
            self.bn = nnx.BatchNorm(8, rngs=rngs)
            self.l2 = nnx.Linear(8, 1, rngs=rngs)

        def __call__(self, x):
            return self.l2(jax.nn.relu(self.bn(self.l1(x))))

    x = jax.random.normal(jax.random.key(1), (16, 4))
    y = jax.random.normal(jax.random.key(2), (16, 1))
    graphdef, state = nnx.split(Net(nnx.Rngs(seed)))

    def loss(s, x, y):
        return jnp.mean((nnx.merge(graphdef, s)(x) - y) ** 2)

    def hvp(s, v, x, y):
        return jax.jvp(lambda q: jax.grad(loss)(q, x, y), (s,), (v,))[1]

    return loss, state, (x, y), hvp


def test_nnx_batchnorm_hessian_of_a_bias_it_cancels_is_not_failed():
    """float64: H·v on l1's bias is rounding (1e-17) whose noise is that of the gradient's
    terms, not of its value (one element failed, error 4.7e-12 against τ = 2.9e-12)."""
    loss, state, args, hvp = nnx_relu_batchnorm_loss(0)
    assert jaxcheck.check_grad(loss, state, *args, order=2).verdict == "passed"
    bad = jaxcheck.check_grad(
        loss, state, *args, order=2, hvp_fn=lambda *a: jax.tree.map(lambda h: 1.01 * h, hvp(*a))
    )
    assert bad.verdict == "failed", bad


@pytest.mark.parametrize("seed", [0, 3])
def test_nnx_relu_batchnorm_hessian_in_float32_is_not_failed_at_kinks(seed):
    """Native float32 steps cross ReLU kinks of the gradient (up to 7 correct elements failed);
    a factor on H·v is still caught."""
    loss, state, args, hvp = nnx_relu_batchnorm_loss(seed)
    assert_kinks_excused_and_hvp_factors_caught(loss, state, args, hvp, at_least=30)
