"""Verdicts a user can trust: no executable serves another program, no wrong gradient passes in
low precision, the gradient training uses is the one tested, exact zeros are agreement."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcheck


def tanh_mlp(dtype, seed=0):
    k = jax.random.split(jax.random.key(seed), 4)
    params = {
        "W1": jax.random.normal(k[0], (8, 16)) / 3,
        "b1": jnp.zeros(16),
        "W2": jax.random.normal(k[1], (16, 4)) / 4,
        "b2": jnp.zeros(4),
    }
    params = jax.tree.map(lambda a: a.astype(dtype), params)
    x = jax.random.normal(k[2], (5, 8)).astype(dtype)
    y = jax.random.normal(k[3], (5, 4)).astype(dtype)
    return params, x, y


def mlp_loss(p, x, y):
    h = jnp.tanh(x @ p["W1"] + p["b1"][None])
    return jnp.mean((h @ p["W2"] + p["b2"][None] - y) ** 2)


WRONG = {
    "zero": lambda g: jnp.zeros_like(g),
    "twice": lambda g: 2 * g,
    "sign": lambda g: -g,
}


# ---- 1. a cached executable never serves another program -------------------------------------


@jax.tree_util.register_pytree_node_class
class Moded:
    """A pytree whose aux data (static) changes the function."""

    def __init__(self, w, mode):
        self.w, self.mode = w, mode

    def tree_flatten(self):
        return (self.w,), self.mode

    @classmethod
    def tree_unflatten(cls, mode, children):
        return cls(children[0], mode)


def moded_loss(p, x):
    scale = 2.0 if p.mode == "train" else 3.0
    return jnp.sum(jnp.sin(p.w * x) * scale)


def test_the_static_part_of_params_is_part_of_the_compiled_programs_key():
    x = jnp.arange(1.0, 4.0)
    for mode in ("train", "eval", "train"):
        result = jaxcheck.check_grad(moded_loss, Moded(jnp.ones(3), mode), x)
        assert result.passed, (mode, result)
        expected = (2.0 if mode == "train" else 3.0) * x * jnp.cos(x)
        np.testing.assert_allclose(result.analytic.w, expected, rtol=1e-6)


def test_an_nnx_module_switched_to_eval_is_checked_as_an_eval_module():
    nnx = pytest.importorskip("flax.nnx")

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.l1 = nnx.Linear(3, 4, rngs=rngs)
            self.bn = nnx.BatchNorm(4, rngs=rngs)
            self.l2 = nnx.Linear(4, 1, rngs=rngs)

        def __call__(self, x):
            return self.l2(jnp.tanh(self.bn(self.l1(x))))

    model = Net(nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (8, 3))
    y = jnp.ones((8, 1))

    def loss(m, x, y):
        return jnp.mean((m(x) - y) ** 2)

    assert jaxcheck.check_grad(loss, model, x, y).passed
    model.eval()
    assert jaxcheck.check_grad(loss, model, x, y).passed


def test_leaves_are_shown_and_keyed_by_the_same_name():
    bare = jaxcheck.check_grad(lambda w: jnp.sum(w**3), jnp.array([1.0, 2.0]))
    assert list(bare.leaves) == ["params"]
    assert "params" in str(bare) and bare.leaves["params"].path == "params"
    custom = jaxcheck.check_grad(moded_loss, Moded(jnp.ones(3), "train"), jnp.ones(3))
    assert list(custom.leaves) == ["[0]"]
    assert "flat index" not in str(custom)

    def wrong(w):
        return 3 * w**2 + jnp.array([0.0, 1.0])

    failed = jaxcheck.check_grad(lambda w: jnp.sum(w**3), jnp.array([1.0, 2.0]), grad_fn=wrong)
    assert [e.name for e in failed.failures] == ["params[1]"]


# ---- 2. low precision: a wrong gradient never passes -------------------------------------------


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize("kind", sorted(WRONG))
def test_a_wrong_low_precision_gradient_never_passes(dtype, kind):
    params, x, y = tanh_mlp(dtype)

    def grad_fn(p, x, y):
        return jax.tree.map(WRONG[kind], jax.grad(mlp_loss)(p, x, y))

    native = jaxcheck.check_grad(mlp_loss, params, x, y, grad_fn=grad_fn, precision="native")
    assert not native.passed and native.verdict in ("failed", "inconclusive"), native
    default = jaxcheck.check_grad(mlp_loss, params, x, y, grad_fn=grad_fn)
    assert default.verdict == "failed", default
    assert {e.path for e in default.failures} == {"['W1']", "['W2']", "['b1']", "['b2']"}


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_a_correct_low_precision_gradient_passes_by_default_and_is_never_failed(dtype):
    params, x, y = tanh_mlp(dtype)
    assert jaxcheck.check_grad(mlp_loss, params, x, y).verdict == "passed"
    native = jaxcheck.check_grad(mlp_loss, params, x, y, precision="native")
    assert native.verdict in ("passed", "inconclusive"), native


def test_bfloat16_native_check_that_verifies_nothing_is_inconclusive_with_advice():
    params, x, y = tanh_mlp(jnp.bfloat16)
    result = jaxcheck.check_grad(
        mlp_loss, params, x, y, precision="native",
        grad_fn=lambda p, x, y: jax.tree.map(jnp.zeros_like, p),
    )  # fmt: skip
    assert result.verdict == "inconclusive" and not result.passed
    assert "precision='float64'" in result.advice
    assert result.to_dict()["verdict"] == "inconclusive"
    with pytest.raises(jaxcheck.GradCheckError, match="precision='float64'"):
        jaxcheck.assert_grad(
            mlp_loss, params, x, y, precision="native",
            grad_fn=lambda p, x, y: jax.tree.map(jnp.zeros_like, p),
        )  # fmt: skip


def relu_net():
    rng = np.random.default_rng(0)
    params = {"W": rng.normal(size=(6, 10)), "b": rng.normal(size=10) - 1.0}
    x = rng.normal(size=(4, 6))
    return params, x


def relu_loss(p, x):
    return jnp.sum(jax.nn.relu(x @ p["W"] + p["b"][None]) ** 2)


def test_dead_relu_units_are_verified_exact_zeros_not_unverifiable():
    params, x = relu_net()
    dead = np.all(x @ params["W"] + params["b"] <= 0, axis=0)
    assert dead.sum() >= 2  # the point has dead units
    result = jaxcheck.check_grad(relu_loss, params, x)
    assert result.verdict == "passed", result
    assert result.leaves["['b']"].n_unverifiable == 0
    assert result.leaves["['W']"].n_unverifiable == 0
    assert result.n_verified + len(result.kinks) == result.n_checked


def test_a_wrong_gradient_on_a_dead_unit_is_caught():
    params, x = relu_net()
    dead = int(np.flatnonzero(np.all(x @ params["W"] + params["b"] <= 0, axis=0))[0])

    def grad_fn(p, x):
        g = jax.grad(relu_loss)(p, x)
        return {**g, "b": g["b"].at[dead].set(0.5)}

    result = jaxcheck.check_grad(relu_loss, params, x, grad_fn=grad_fn)
    assert [(e.path, e.index) for e in result.failures] == [("['b']", (dead,))]


def test_the_headline_counts_unverifiable_elements_and_kinks():
    def loss(p):
        return 1.0 + jnp.sum(jnp.abs(p["w"])) + 1e-13 * jnp.sum(p["b"]) + jnp.sum(p["c"] ** 2)

    params = {"w": np.array([0.0, 1.0, -2.0]), "b": np.array([1.0]), "c": np.arange(1.0, 5.0)}
    result = jaxcheck.check_grad(loss, params)
    head = repr(result)
    assert "1 unverifiable" in head and "1 at kinks" in head, head
    assert "all 8 checked elements agree" not in head


# ---- 3. float32 models: the gradient training uses is the one tested --------------------------


@pytest.mark.parametrize("x0", [3e-4, 1e-6])
def test_a_float32_only_gradient_error_is_caught_by_default(x0):
    # JAX's float32 gradient of sinc near 0 cancels catastrophically (2% off at 3e-4, 0 at 1e-6)
    def loss(x):
        return jnp.sum(jnp.sinc(x))

    x = jnp.array([x0, 0.3, 0.7], jnp.float32)
    g32 = jax.grad(loss)(x)
    with jax.enable_x64(True):
        g64 = np.asarray(jax.grad(loss)(jnp.asarray(x, jnp.float64)))
    assert abs(float(g32[0]) - g64[0]) > 1e-2 * abs(g64[0])  # the bug is there
    result = jaxcheck.check_grad(loss, x)
    assert [(e.path, e.index) for e in result.failures] == [("params", (0,))], result
    assert result.failures[0].analytic == pytest.approx(float(g32[0]), rel=1e-6)
    # the all-float64 check cannot see it: both sides computed in float64
    assert jaxcheck.check_grad(loss, x, precision="upcast").passed


def test_a_float32_handwritten_backward_is_called_with_the_float32_arrays():
    seen = []

    def grad_fn(p, x):
        seen.append((p["w"].dtype, x.dtype))
        return {"w": 2 * x * np.sum(x * p["w"])}

    def loss(p, x):
        return float(np.sum(x * p["w"]) ** 2)

    params, x = {"w": np.array([0.5, -1.0], np.float32)}, np.array([1.0, 2.0], np.float32)
    assert jaxcheck.check_grad(loss, params, x, grad_fn=grad_fn).passed
    assert seen == [(np.float32, np.float32)]


def test_a_loss_whose_draws_depend_on_the_dtype_falls_back_to_a_float64_gradient():
    def loss(p, x, key):  # noise drawn in the data's dtype: another function in float64
        noisy = x + 0.1 * jax.random.normal(key, x.shape, x.dtype)
        return jnp.sum(jnp.tanh(noisy @ p["w"]))

    params = {"w": jnp.ones((3, 2), jnp.float32) / 2}
    x = jnp.arange(6.0, dtype=jnp.float32).reshape(2, 3) / 6
    result = jaxcheck.check_grad(loss, params, x, jax.random.key(0))
    assert result.passed, result
    assert any("computed in float64 too" in n for n in result.notes)
