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
    # once for the gradient under test, once again at the same point (reentrancy)
    assert seen == [(np.float32, np.float32)] * 2


def test_a_loss_whose_draws_depend_on_the_dtype_falls_back_to_a_float64_gradient():
    def loss(p, x, key):  # noise drawn in the data's dtype: another function in float64
        noisy = x + 0.1 * jax.random.normal(key, x.shape, x.dtype)
        return jnp.sum(jnp.tanh(noisy @ p["w"]))

    params = {"w": jnp.ones((3, 2), jnp.float32) / 2}
    x = jnp.arange(6.0, dtype=jnp.float32).reshape(2, 3) / 6
    result = jaxcheck.check_grad(loss, params, x, jax.random.key(0))
    assert result.passed, result
    assert any("computed in float64 too" in n for n in result.notes)


# ---- 5. the habits of the seeds and of model libraries ----------------------------------------


def dict_net():
    rng = np.random.default_rng(0)
    params = {
        "W1": rng.normal(size=(3, 4)), "b1": rng.normal(size=(1, 4)),
        "W2": rng.normal(size=(4, 2)), "b2": rng.normal(size=(1, 2)),
    }  # fmt: skip
    return params, rng.normal(size=(5, 3)), rng.normal(size=(5, 2))


def dict_net_loss(p, X, Y):
    h = np.tanh(X @ p["W1"] + p["b1"])
    return 0.5 * np.sum((h @ p["W2"] + p["b2"] - Y) ** 2)


def dict_net_vector(p, X, Y):
    """deeplearning.ai's gradients_to_vector: W1, b1, W2, b2 in the dict's own order."""
    h = np.tanh(X @ p["W1"] + p["b1"])
    e = h @ p["W2"] + p["b2"] - Y
    dh = e @ p["W2"].T * (1 - h**2)
    g = {
        "W1": X.T @ dh,
        "b1": dh.sum(0, keepdims=True),
        "W2": h.T @ e,
        "b2": e.sum(0, keepdims=True),
    }
    return np.concatenate([g[k].reshape(-1) for k in ("W1", "b1", "W2", "b2")])


def test_a_flat_gradient_in_the_dicts_insertion_order_is_accepted_with_a_note():
    params, X, Y = dict_net()
    result = jaxcheck.check_grad(dict_net_loss, params, X, Y, grad_fn=dict_net_vector)
    assert result.verdict == "passed", result
    assert any("insertion order" in n and "sorts dict keys" in n for n in result.notes)


def test_a_wrong_flat_gradient_in_insertion_order_is_located_with_a_note():
    params, X, Y = dict_net()

    def wrong(p, X, Y):
        v = dict_net_vector(p, X, Y)
        v[12] += 0.5  # b1[0, 0] in insertion order (W1 has 12 elements)
        return v

    result = jaxcheck.check_grad(dict_net_loss, params, X, Y, grad_fn=wrong)
    assert [(e.path, e.index) for e in result.failures] == [("['b1']", (0, 0))]
    assert any("insertion order" in n for n in result.notes)


def test_the_order_of_a_flat_vector_is_decided_as_it_is_read_not_by_a_second_check():
    """The flat vector's order is settled when the gradient is first read (against finite
    differences along random directions): grad_fn is called to decide it, to read it, and
    once more for the reentrancy test, not again for a whole second check."""
    params, X, Y = dict_net()
    calls = []

    def counted(p, X, Y):
        calls.append(1)
        return dict_net_vector(p, X, Y)

    result = jaxcheck.check_grad(dict_net_loss, params, X, Y, grad_fn=counted)
    assert result.verdict == "passed" and len(calls) <= 3, (result, len(calls))


def test_a_flat_vector_wrong_in_either_order_says_so():
    params, X, Y = dict_net()
    n = sum(np.size(v) for v in params.values())
    result = jaxcheck.check_grad(dict_net_loss, params, X, Y, grad_fn=lambda p, X, Y: np.ones(n))
    assert result.verdict == "failed"
    assert any("disagrees with finite differences as well" in n for n in result.notes), result


def test_equinox_hyperparameters_are_not_parameters():
    eqx = pytest.importorskip("equinox")

    class Net(eqx.Module):
        lin: eqx.nn.Linear
        drop: eqx.nn.Dropout

        def __init__(self, key):
            self.lin = eqx.nn.Linear(2, 3, key=key)
            self.drop = eqx.nn.Dropout(0.13)

        def __call__(self, x):  # p enters the value, as in an inverted-dropout scale
            return self.drop(self.lin(x), inference=True) * (1 - self.drop.p)

    net = Net(jax.random.key(0))
    x = jnp.arange(8.0).reshape(4, 2) / 8

    def loss(m, x):
        return jnp.sum(jnp.tanh(jax.vmap(m)(x)))

    for grad_fn in (None, eqx.filter_grad(loss)):
        result = jaxcheck.check_grad(loss, net, x, grad_fn=grad_fn)
        assert result.passed, result
        assert ".drop.p" in dict(result.skipped)
        assert "eqx.filter_grad" in dict(result.skipped)[".drop.p"]
    forced = jaxcheck.check_grad(loss, net, x, only=["lin", "drop.p"])
    assert ".drop.p" in forced.leaves  # only= overrides the library's choice


def test_nnx_batch_statistics_and_rng_state_are_not_parameters():
    nnx = pytest.importorskip("flax.nnx")

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.lin = nnx.Linear(3, 4, rngs=rngs)
            self.bn = nnx.BatchNorm(4, rngs=rngs)
            self.drop = nnx.Dropout(0.5, rngs=rngs)

        def __call__(self, x):
            return self.drop(self.bn(self.lin(x)), deterministic=True)

    model = Net(nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (6, 3))
    result = jaxcheck.check_grad(lambda m, x: jnp.sum(jnp.tanh(m(x))), model, x)
    assert set(result.leaves) == {".bn.bias", ".bn.scale", ".lin.bias", ".lin.kernel"}
    skipped = dict(result.skipped)
    assert "nnx.BatchStat" in skipped[".bn.mean"] and "nnx.BatchStat" in skipped[".bn.var"]


def test_linen_collections_other_than_params_are_not_parameters():
    nn = pytest.importorskip("flax.linen")

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.BatchNorm(use_running_average=True)(nn.Dense(3)(x))

    x = jnp.ones((4, 2)) * jnp.arange(4.0)[:, None]
    variables = Net().init(jax.random.key(0), x)
    assert set(variables) == {"params", "batch_stats"}

    def loss(v, x):
        return jnp.sum(jnp.tanh(Net().apply(v, x)))

    result = jaxcheck.check_grad(loss, variables, x)
    assert result.passed and all(p.startswith("['params']") for p in result.leaves)
    assert (
        "flax collection 'batch_stats'"
        in dict(result.skipped)["['batch_stats']['BatchNorm_0']['mean']"]
    )


# ---- 6. nondeterminism within a tolerance --------------------------------------------------------


def test_nondet_tol_accepts_reordered_additions_and_says_so():
    rng = np.random.default_rng(0)

    def atomics(p):  # a sum whose last bits change from call to call, like GPU atomics
        return float(np.sum(p["w"] ** 2)) * (1 + 1e-14 * rng.standard_normal())

    params, grad_fn = {"w": np.array([0.5, -0.25, 1.0])}, lambda p: {"w": 2 * p["w"]}
    with pytest.raises(ValueError, match="nondet_tol"):
        jaxcheck.check_grad(atomics, params, grad_fn=grad_fn)
    result = jaxcheck.check_grad(atomics, params, grad_fn=grad_fn, nondet_tol=1e-12)
    assert result.passed, result
    assert any("within nondet_tol=1e-12" in n for n in result.notes)
    wrong = jaxcheck.check_grad(
        atomics, params, grad_fn=lambda p: {"w": 2 * p["w"] + 1e-3}, nondet_tol=1e-12
    )
    assert wrong.verdict == "failed"
    with pytest.raises(ValueError, match="nondet_tol=-1"):
        jaxcheck.check_grad(atomics, params, grad_fn=grad_fn, nondet_tol=-1)


def test_noise_beyond_nondet_tol_is_still_nondeterministic():
    rng = np.random.default_rng(0)
    base = np.array([0.5, -0.25])

    def flaky(p):
        noise = 0.0 if np.array_equal(p["w"], base) else 1e-3 * rng.standard_normal()
        return float(np.sum(p["w"] ** 2)) + noise

    result = jaxcheck.check_grad(
        flaky, {"w": base.copy()}, grad_fn=lambda p: {"w": 2 * p["w"]}, nondet_tol=1e-9
    )
    assert {e.status for e in result.failures} == {"nondeterministic"}


# ---- 7. no crash on valid input ------------------------------------------------------------------


def test_fn_closing_over_a_typed_prng_key_is_checked():
    key = jax.random.key(1)

    def loss(p, x):
        return jnp.sum((x @ p["w"] + 0.1 * jax.random.normal(key, (3,))[None]) ** 2)

    assert jaxcheck.check_grad(loss, {"w": jnp.ones((2, 3))}, jnp.ones((4, 2))).passed


def test_check_vjp_hands_jax_arrays_to_a_custom_vjp_rule():
    @jax.custom_vjp
    def f(x):
        return jnp.sin(x)

    f.defvjp(lambda x: (jnp.sin(x), x), lambda x, g: (g.at[0].multiply(1.0) * jnp.cos(x),))
    assert jaxcheck.check_vjp(f, jnp.arange(3.0)).passed


@pytest.mark.parametrize(
    "fn", [jnp.linalg.solve, lambda a, b: jnp.linalg.inv(a) @ b], ids=["solve", "inv"]
)
def test_check_vjp_and_jvp_through_custom_linear_solve(fn):
    a = jnp.eye(3) * 3 + 0.1 * jnp.arange(9.0).reshape(3, 3)
    b = jnp.arange(3.0)
    assert jaxcheck.check_vjp(fn, a, b).passed
    assert jaxcheck.check_jvp(fn, a, b).passed
    assert jaxcheck.check_vjp(jax.scipy.linalg.expm, a / 10).passed


def test_check_vjp_of_a_pure_callback_is_checked_against_finite_differences():
    @jax.custom_vjp
    def f(x):
        return jax.pure_callback(np.sin, jax.ShapeDtypeStruct(x.shape, x.dtype), x)

    f.defvjp(lambda x: (f(x), x), lambda x, g: (g * jnp.cos(x),))
    result = jaxcheck.check_vjp(f, jnp.arange(3.0), transforms=("jit",))
    assert result.passed and any("central differences" in n for n in result.notes), result
    with pytest.raises(TypeError, match="custom_vjp.*check_grad"):  # no rule at all
        jaxcheck.check_vjp(
            lambda x: jax.pure_callback(np.sin, jax.ShapeDtypeStruct(x.shape, x.dtype), x),
            jnp.arange(3.0),
        )
    w = jnp.array([1.0, -0.5, 2.0])
    assert jaxcheck.check_grad(lambda x: jnp.sum(w * f(x)), jnp.arange(3.0)).passed


def test_a_float32_output_of_float64_inputs_gets_a_float32_tolerance():
    def fn(x):
        return jnp.sin(x).astype(jnp.float32)

    with jax.enable_x64(True):
        x = jnp.linspace(0.1, 3.0, 40, dtype=jnp.float64)
        assert jaxcheck.check_vjp(fn, x).passed
        assert jaxcheck.check_jvp(fn, x).passed


def test_jaxs_own_rules_are_not_called_missing():
    result = jaxcheck.check_vjp(jnp.logaddexp, jnp.arange(3.0), jnp.ones(3))
    assert any("JAX's own" in n for n in result.notes)
    assert not any("fn has no custom_vjp" in n for n in result.notes)


# ---- 8. the report never misleads ------------------------------------------------------------


def test_a_leaf_failing_only_by_nan_shows_nan_not_zero():
    def grad_fn(p):
        return {"w": jnp.array([2.0, jnp.nan]) * p["w"]}

    result = jaxcheck.check_grad(lambda p: jnp.sum(p["w"] ** 2), {"w": jnp.array([1.0, 2.0])},
                                 grad_fn=grad_fn)  # fmt: skip
    leaf = result.leaves["['w']"]
    assert leaf.verdict == "failed" and np.isnan(leaf.difference) and np.isnan(leaf.max_abs_error)
    assert "0.0e+00" not in str(result).split("worst")[0]


def test_check_jvp_says_when_the_reference_itself_is_not_finite():
    result = jaxcheck.check_jvp(jnp.sqrt, jnp.array([0.0, 1.0, 4.0]))
    assert any("reference" in n and "not finite" in n for n in result.notes)


def test_a_small_error_spread_over_a_leaf_is_called_approximate():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 3))
    jitter = 1 + 1e-5 * rng.standard_normal((3, 2))  # an iterative solver's tolerance

    def loss(p):
        return jnp.sum(jnp.tanh(x @ p["w"]) ** 2)

    params = {"w": rng.normal(size=(3, 2))}
    result = jaxcheck.check_grad(
        loss, params, grad_fn=lambda p: {"w": jax.grad(loss)(p)["w"] * jitter}
    )
    assert result.verdict == "failed"
    assert "approximate by design" in result.leaves["['w']"].diagnosis, result
    planted = jaxcheck.check_grad(
        loss, params, grad_fn=lambda p: {"w": jax.grad(loss)(p)["w"] * 1.001}
    )
    assert "constant factor" in planted.leaves["['w']"].diagnosis  # not approximate


def test_a_zero_to_rounding_before_a_batch_norm_is_verified_and_a_missing_term_is_not():
    """The bias before a batch norm has a true gradient of 0; JAX computes ~1e-17 of rounding."""
    rng = np.random.default_rng(0)
    params = {"W": rng.normal(size=(3, 5)), "b": rng.normal(size=5), "V": rng.normal(size=(5, 2))}
    x, y = rng.normal(size=(8, 3)), rng.normal(size=(8, 2))

    def loss(p, x, y):
        h = x @ p["W"] + p["b"][None]
        h = (h - h.mean(0, keepdims=True)) / jnp.sqrt(h.var(0, keepdims=True) + 1e-5)
        return jnp.mean((jnp.tanh(h) @ p["V"] - y) ** 2)

    with jax.enable_x64(True):
        g = np.asarray(jax.grad(loss)(params, x, y)["b"])
    assert 0 < np.max(np.abs(g)) < 1e-14  # rounding, not an exact zero
    result = jaxcheck.check_grad(loss, params, x, y)
    assert result.verdict == "passed" and result.leaves["['b']"].n_unverifiable == 0, result

    def wrong(p, x, y):  # a real (small) gradient term where the true one is 0
        out = jax.grad(loss)(p, x, y)
        return {**out, "b": out["b"] + 1e-9}

    bad = jaxcheck.check_grad(loss, params, x, y, grad_fn=wrong)
    assert bad.verdict != "passed" and bad.leaves["['b']"].n_verified == 0, bad
