"""Right in the user's own loop: the gradient under test's rounding is measured (float32 training
to convergence), fn's own precision is read from its program (casts inside a float64 check),
code that cannot run in float64 is checked as it runs, and a gradient that changes between two
calls is not reentrant."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxcheck
from jaxcheck._numerics.precision import computed_dtype

# ---- 1. float32 training to convergence -------------------------------------------------------


def mlp_problem(dtype=jnp.float32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(128, 8)).astype(np.float32)
    y = np.sin(x @ rng.normal(size=(8, 1))).astype(np.float32)
    k1, k2 = jax.random.split(jax.random.key(seed))
    params = {
        "W1": jax.random.normal(k1, (8, 32)) / 3,
        "b1": jnp.zeros(32),
        "W2": jax.random.normal(k2, (32, 1)) / 6,
        "b2": jnp.zeros(1),
    }
    return jax.tree.map(lambda a: a.astype(dtype), params), x.astype(dtype), y.astype(dtype)


def mlp_loss(p, x, y):
    h = jnp.tanh(x @ p["W1"] + p["b1"][None])
    return jnp.mean((h @ p["W2"] + p["b2"][None] - y) ** 2)


def trained(params, x, y, steps, lr=1e-2):
    opt = optax.adam(lr)

    @jax.jit
    def step(p, s):
        updates, s = opt.update(jax.grad(mlp_loss)(p, x, y), s, p)
        return optax.apply_updates(p, updates), s

    state = opt.init(params)
    for _ in range(steps):
        params, state = step(params, state)
    return params


@pytest.fixture(scope="module")
def converged():
    """An 8-32-1 tanh MLP in float32 after 300 Adam steps: max|g| fell ~500-fold, the float32
    gradient's rounding (~4e-8) did not."""
    params, x, y = mlp_problem()
    return trained(params, x, y, 300), x, y


def test_a_correct_float32_gradient_near_convergence_passes(converged):
    params, x, y = converged
    g = jax.grad(mlp_loss)(params, x, y)
    assert max(float(jnp.abs(v).max()) for v in jax.tree.leaves(g)) < 5e-3  # converged
    result = jaxcheck.check_grad(mlp_loss, params, x, y)
    assert result.verdict == "passed", result


def test_a_two_percent_error_in_one_element_near_convergence_is_located(converged):
    params, x, y = converged
    g = jax.grad(mlp_loss)(params, x, y)
    i = int(jnp.argmax(jnp.abs(g["W1"])))

    def planted(p, x, y):
        grads = jax.grad(mlp_loss)(p, x, y)
        return {**grads, "W1": grads["W1"].reshape(-1).at[i].multiply(1.02).reshape(8, 32)}

    result = jaxcheck.check_grad(mlp_loss, params, x, y, grad_fn=planted)
    index = np.unravel_index(i, (8, 32))
    assert [(e.path, e.index) for e in result.failures] == [("['W1']", index)], result


def test_the_gradients_rounding_is_measured_not_assumed(converged):
    """Without the measured rounding the same check fails (the floor ∝ u·max|g| is too small)."""
    params, x, y = converged
    result = jaxcheck.check_grad(mlp_loss, params, x, y)
    tolerance = np.concatenate([np.ravel(t) for t in jax.tree.leaves(result.resolution)])
    assert result.passed
    errors = [
        np.abs(np.ravel(a) - np.ravel(n))
        for a, n in zip(jax.tree.leaves(result.analytic), jax.tree.leaves(result.numeric))
    ]
    # the errors are the float32 gradient's rounding, far above the finite differences' own
    assert max(e.max() for e in errors) > 10 * np.nanmax(tolerance)
    assert any("own rounding" in n for n in result.notes), result.notes


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_gradmonitor_stays_green_through_training(dtype):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 4)).astype(np.float32)
    y = (np.sum(x, axis=1, keepdims=True) > 0).astype(np.float32)
    k1, k2 = jax.random.split(jax.random.key(1))
    params = {
        "W1": jax.random.normal(k1, (4, 16)),
        "b1": jnp.zeros(16),
        "W2": jax.random.normal(k2, (16, 1)) / 4,
        "b2": jnp.zeros(1),
    }
    params = jax.tree.map(lambda a: a.astype(dtype), params)

    def loss(p, x, y):
        h = jax.nn.sigmoid(x @ p["W1"] + p["b1"][None])
        return jnp.mean((jax.nn.sigmoid(h @ p["W2"] + p["b2"][None]) - y) ** 2)

    opt = optax.adam(3e-2)
    state = opt.init(params)
    monitor = jaxcheck.GradMonitor(loss, every=40)
    step = jax.jit(lambda p, s: opt.update(jax.grad(loss)(p, x, y), s, p))
    for i in range(361):
        monitor(i, params, x, y)
        updates, state = step(params, state)
        params = optax.apply_updates(params, updates)
    assert len(monitor.checks) == 10 and monitor.passed, monitor.history


def test_the_float32_sinc_gradient_still_fails_while_its_neighbours_pass():
    # the measured noise of sinc's float32 gradient at 1e-3 is far above what a
    # backward-stable computation makes: it is not excused as rounding
    x = jnp.array([1e-3, 0.3, 0.7, 2.5], jnp.float32)
    result = jaxcheck.check_grad(lambda x: jnp.sum(jnp.sinc(x)), x)
    assert [(e.path, e.index) for e in result.failures] == [("params", (0,))], result


def _bf16_mlp(seed):
    rng = np.random.default_rng(seed)
    sizes = (6, 16, 16, 1)
    params = [
        {
            "W": jnp.asarray(rng.normal(size=(a, b)) / np.sqrt(a), jnp.bfloat16),
            "b": jnp.asarray(rng.normal(size=b) / 10, jnp.bfloat16),
        }
        for a, b in zip(sizes, sizes[1:])
    ]
    x = jnp.asarray(rng.normal(size=(8, 6)), jnp.bfloat16)
    y = jnp.asarray(rng.normal(size=(8, 1)), jnp.bfloat16)

    def loss(p, x, y):
        for layer in p[:-1]:
            x = jax.nn.softplus(x @ layer["W"] + layer["b"][None])
        return jnp.mean((x @ p[-1]["W"] + p[-1]["b"][None] - y) ** 2)

    return loss, params, x, y


@pytest.mark.parametrize("seed", [5, 8])
def test_a_bfloat16_error_below_an_assumed_floor_is_caught(seed):
    """An assumed floor of 10·u·max|g| is 8% of the largest gradient in bfloat16: a 50% error
    in an element 15% of that size hid under it. The floor is measured instead."""
    loss, params, x, y = _bf16_mlp(seed)
    assert jaxcheck.check_grad(loss, params, x, y).passed
    g = jax.grad(loss)(params, x, y)
    top = max(float(jnp.abs(v).max()) for v in jax.tree.leaves(g))
    W = np.abs(np.asarray(g[1]["W"], np.float64)).reshape(-1)
    i = int(np.argmin(np.abs(W - 0.15 * top)))

    def planted(p, x, y):
        grads = jax.grad(loss)(p, x, y)
        grads[1]["W"] = grads[1]["W"].reshape(-1).at[i].multiply(1.5).reshape(16, 16)
        return grads

    result = jaxcheck.check_grad(loss, params, x, y, grad_fn=planted)
    index = tuple(int(j) for j in np.unravel_index(i, (16, 16)))
    assert [(e.path, e.index) for e in result.failures] == [("[1]['W']", index)], result


def test_bfloat16_near_a_minimum_is_inconclusive_not_passed_when_rounding_drowns_a_bug():
    """A bfloat16 sigmoid MLP trained past convergence: the gradient's own rounding (measured:
    its values jitter by ~1e-4 between neighbouring points) is as large as the gradients. A
    3x error in the largest element is then no verdict either way: inconclusive, saying
    why, never "passed"; upcast (the gradient in float64) verifies the formula."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(64, 4))
    y = (np.sum(x[:, :2] ** 2, axis=1, keepdims=True) < 1.4) * 0.8 + 0.1
    x, y = jnp.asarray(x, jnp.bfloat16), jnp.asarray(y, jnp.bfloat16)
    k1, k2 = jax.random.split(jax.random.key(2))
    params = {"W1": jax.random.normal(k1, (4, 16)), "b1": jnp.zeros(16),
              "W2": jax.random.normal(k2, (16, 1)) / 4, "b2": jnp.zeros(1)}  # fmt: skip
    params = jax.tree.map(lambda a: a.astype(jnp.bfloat16), params)

    def loss(p, x, y):
        h = jax.nn.sigmoid(x @ p["W1"] + p["b1"][None])
        return jnp.mean((jax.nn.sigmoid(h @ p["W2"] + p["b2"][None]) - y) ** 2)

    opt = optax.adam(3e-2)
    state = opt.init(params)
    step = jax.jit(lambda p, s: opt.update(jax.grad(loss)(p, x, y), s, p))
    for _ in range(400):
        updates, state = step(params, state)
        params = optax.apply_updates(params, updates)
    g = jax.grad(loss)(params, x, y)
    i = int(jnp.argmax(jnp.abs(g["W2"])))

    def planted(p, x, y):
        grads = jax.grad(loss)(p, x, y)
        return {**grads, "W2": grads["W2"].at[i, 0].multiply(3.0)}

    result = jaxcheck.check_grad(loss, params, x, y, grad_fn=planted)
    assert result.verdict == "inconclusive", result
    assert "precision='upcast'" in result.advice and "own rounding" in result.advice
    assert jaxcheck.check_grad(loss, params, x, y, grad_fn=planted, precision="upcast").failures


def test_a_zero_bias_before_a_bfloat16_layer_norm_is_not_failed_by_a_saturated_long_step():
    """flax linen Dense + LayerNorm in bfloat16: the Dense bias is initialized to zeros and its
    elements are unverifiable at the default step (fn computes in bfloat16), so they are
    judged again at longer ones. An all-zero leaf's scale is the model's, as its steps are:
    moved by 50 of those the layer norm saturates, f is flat, and D ≈ 0 there is no evidence
    against g (it was: four correct elements FAILED)."""
    import flax.linen as nn

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            kw = dict(dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
            x = nn.gelu(nn.LayerNorm(**kw)(nn.Dense(16, **kw)(x)))
            return nn.Dense(1, **kw)(x)

    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.normal(size=(8, 5)), jnp.bfloat16)
    y = jnp.asarray(rng.normal(size=(8, 1)), jnp.bfloat16)
    net = Net()
    variables = net.init(jax.random.key(4), x)

    def loss(variables, x, y):
        return jnp.mean((net.apply(variables, x).astype(jnp.float32) - y) ** 2)

    result = jaxcheck.check_grad(loss, variables, x, y)
    assert result.verdict != "failed", result


# ---- 2. fn's own precision, read from its program ---------------------------------------------


def test_the_precision_fn_computes_in_is_read_from_its_program():
    with jax.enable_x64(True):
        x = jnp.ones((1, 4, 2, 8))
        cast = jax.make_jaxpr(lambda x: jnp.sum(jnp.sin(x.astype(jnp.float32))))(x)
        attention = jax.make_jaxpr(lambda q: jnp.sum(jax.nn.dot_product_attention(q, q, q)))(x)
        plain = jax.make_jaxpr(lambda x: jnp.sum(x**2))(x)

        def body(c, a):  # a bfloat16 round trip inside a scan
            return c + a.astype(jnp.bfloat16).astype(c.dtype), None

        scan = jax.make_jaxpr(lambda x: jax.lax.scan(body, x[0], x)[0])(x)
    assert computed_dtype(cast) == np.float32
    assert computed_dtype(attention) == np.float32
    assert computed_dtype(plain) == np.float64
    assert computed_dtype(scan) == jnp.bfloat16


C = np.random.default_rng(0).normal(size=32)


def sin_in_float32(x):
    return jnp.sum(jnp.sin(x.astype(jnp.float32)) * C)


@pytest.mark.parametrize("precision", ["float64", "upcast"])
def test_fn_that_casts_to_float32_inside_is_judged_at_float32s_rounding(precision):
    x = np.random.default_rng(1).normal(size=32)
    result = jaxcheck.check_grad(sin_in_float32, x, precision=precision)
    assert result.verdict == "passed", result
    assert any("computes in float32 inside" in n for n in result.notes), result.notes


def test_a_wrong_rule_inside_a_float32_cast_is_still_caught():
    @jax.custom_jvp
    def sin(x):
        return jnp.sin(x)

    sin.defjvp(lambda p, t: (sin(p[0]), 1.01 * jnp.cos(p[0]) * t[0]))  # 1% too large

    x = np.random.default_rng(1).normal(size=32)
    result = jaxcheck.check_grad(lambda x: jnp.sum(sin(x.astype(jnp.float32)) * C), x)
    assert result.n_failed >= 16, result
    assert result.leaves["params"].diagnosis.startswith("analytic ≈ 1.01"), result


def test_dot_product_attention_passes_upcast():
    k = jax.random.split(jax.random.key(0), 3)
    q, kk, v = (jax.random.normal(ki, (1, 6, 2, 4)) for ki in k)

    def loss(p):
        return jnp.sum(jax.nn.dot_product_attention(p["q"], p["k"], p["v"]) ** 2)

    result = jaxcheck.check_grad(loss, {"q": q, "k": kk, "v": v}, precision="upcast")
    assert result.verdict == "passed", result


# ---- 2b. code that cannot run in float64 is checked as it runs ---------------------------------


def scan_with_float32_carry(w, xs):
    def body(c, x):
        return jnp.tanh(c * w + x), None

    carry = jnp.zeros(xs.shape[1:], jnp.float32)  # built in float32, as nnx.RNN does
    return jnp.sum(jax.lax.scan(body, carry, xs)[0] ** 2)


def test_code_that_builds_float32_arrays_itself_is_checked_in_its_own_dtype():
    w = jnp.full((3,), 0.7, jnp.float32)
    xs = jax.random.normal(jax.random.key(0), (5, 3))
    result = jaxcheck.check_grad(scan_with_float32_carry, w, xs)
    assert result.verdict == "passed", result
    assert result.precision == "native"
    assert any("cannot run in float64" in n for n in result.notes), result.notes

    def wrong(w, xs):
        return 2 * jax.grad(scan_with_float32_carry)(w, xs)

    bad = jaxcheck.check_grad(scan_with_float32_carry, w, xs, grad_fn=wrong)
    assert bad.n_failed == 3, bad


# ---- 5c. a gradient that changes between calls is not reentrant -------------------------------


def jittery(scale):
    """torch's test_gradcheck_nondeterministic: the backward jitters by `scale` per call."""
    rng = np.random.default_rng(0)

    def grad_fn(x):
        return 2 * x * (1 + scale * rng.random(x.shape))

    return grad_fn


def square(x):
    return jnp.sum(x**2)


def test_a_backward_that_is_not_reentrant_fails():
    x = np.random.default_rng(2).normal(size=(5, 5))
    result = jaxcheck.check_grad(square, x, grad_fn=jittery(1e-6))
    assert result.verdict == "failed", result
    assert {e.status for e in result.failures} == {"nondeterministic"}
    assert any("not reentrant" in n for n in result.notes), result.notes


def test_nondet_tol_accepts_a_backward_jitter_within_it():
    x = np.random.default_rng(2).normal(size=(5, 5))
    result = jaxcheck.check_grad(square, x, grad_fn=jittery(1e-12), nondet_tol=1e-10)
    assert result.verdict == "passed", result
    assert jaxcheck.check_grad(square, x, grad_fn=jittery(0.0)).passed


@pytest.mark.parametrize(
    "fn",
    [lambda x: x, square, lambda x: jnp.prod(x), lambda x: jnp.sum(jnp.sin(x))],
    ids=["identity", "square", "prod", "sin"],
)
@pytest.mark.parametrize("scale", [1.0, 1e-4])
def test_nondet_tol_changes_nothing_in_a_deterministic_check(fn, scale):
    """torch's meaning: nondet_tol widens what counts as the same value when a computation is
    repeated, and nothing else (it once entered every element's tolerance as noise in f: a
    deterministic prod at 1e-4 came back inconclusive, every element unverifiable)."""
    x = np.random.default_rng(2).normal(size=(5, 5)) * scale
    plain = jaxcheck.check_grad(fn, x)
    loose = jaxcheck.check_grad(fn, x, nondet_tol=1e-5)
    assert plain.verdict == loose.verdict == "passed", loose
    assert not loose.unverifiable
    np.testing.assert_array_equal(plain.resolution, loose.resolution)  # the same tolerances
    np.testing.assert_array_equal(plain.numeric, loose.numeric)


def test_nondet_tol_accepts_torchs_jittered_backward():
    """torch's test_gradcheck_nondeterministic: a backward jittering by 1e-6 of itself per
    call passes with nondet_tol=1e-5, and so does the same rule without jitter."""
    x = np.random.default_rng(2).normal(size=(5, 5))
    for jitter in (0.0, 1e-6):
        result = jaxcheck.check_grad(square, x, grad_fn=jittery(jitter), nondet_tol=1e-5)
        assert result.verdict == "passed", result


# ---- 2c. a flat direction under coarse rounding is verified, not unverifiable ---------------


def attention_loss(p, x, y):
    p = jax.tree.map(lambda a: a.astype(jnp.float32), p)  # a module computing in float32
    x = x.astype(jnp.float32)
    q, k, v = (x @ p[f"W{n}"] + p[f"b{n}"][None] for n in "qkv")
    attn = jax.nn.softmax(q @ k.T / 2.0, axis=-1)  # the key bias shifts a whole row: no effect
    return jnp.mean((attn @ v - y) ** 2)


def attention_params():
    k = jax.random.split(jax.random.key(3), 8)
    params = {f"W{n}": jax.random.normal(k[i], (4, 4)) / 2 for i, n in enumerate("qkv")}
    params |= {f"b{n}": jax.random.normal(k[3 + i], (4,)) / 4 for i, n in enumerate("qkv")}
    return params, jax.random.normal(k[6], (6, 4)), jax.random.normal(k[7], (6, 4))


def test_a_gradient_that_is_zero_by_symmetry_is_verified_in_a_float32_model():
    params, x, y = attention_params()
    with jax.enable_x64(True):
        g = jax.grad(attention_loss)(jax.tree.map(lambda a: a.astype(jnp.float64), params), x, y)
        assert float(jnp.abs(g["bk"]).max()) < 1e-6  # zero but for float32 rounding
    result = jaxcheck.check_grad(attention_loss, params, x, y)
    assert result.verdict == "passed", result
    assert result.leaves["['bk']"].n_verified == 4


def test_a_wrong_key_bias_gradient_is_still_caught():
    params, x, y = attention_params()

    def wrong(p, x, y):
        grads = jax.grad(attention_loss)(p, x, y)
        return {**grads, "bk": grads["bk"] + 0.05}

    result = jaxcheck.check_grad(attention_loss, params, x, y, grad_fn=wrong)
    assert {e.path for e in result.failures} == {"['bk']"}, result


def test_an_unresolvable_float32_loss_says_why_in_words():
    def loss(x):  # a loss of 1 in float32 hides a gradient of 1e-12
        return 1.0 + 1e-12 * jnp.sum(x.astype(jnp.float32) ** 2)

    result = jaxcheck.check_grad(loss, np.linspace(0.5, 1.5, 6))
    assert result.verdict == "inconclusive", result
    assert "computes in float32 inside" in result.advice, result.advice


def test_a_backward_that_is_not_reentrant_fails_in_directional_mode_too():
    x = np.random.default_rng(2).normal(size=(5, 5))
    result = jaxcheck.check_grad(square, x, grad_fn=jittery(1e-6), mode="directional")
    assert result.verdict == "failed", result
    assert {e.status for e in result.failures} == {"nondeterministic"}


# ---- fn's precision counts only the casts its output depends on ---------------------------------

FLOAT32_NOTE = "computes in float32 inside"
W = {"W": np.random.default_rng(3).normal(size=(3, 2))}


def discards_a_float32_value(p):
    _ = jnp.sum(p["W"].astype(jnp.float32))  # computed, never used: XLA drops it
    return jnp.sum(jnp.sin(p["W"]))


def discards_float32_values_in_nested_programs(p):
    inner = jax.jit(lambda w: (jnp.sin(w), jnp.sum(w.astype(jnp.float32))))
    a, _ = inner(p["W"])

    def body(c, w):
        return c + jnp.cos(w), w.astype(jnp.float32) * 2

    c, _ = jax.lax.scan(body, 0.0 * p["W"][0], p["W"])
    return jnp.sum(a) + jnp.sum(c)


def rounds_through_float32(p):
    return jnp.sum(jnp.sin(p["W"].astype(jnp.float32)).astype(p["W"].dtype))


@pytest.mark.parametrize(
    "fn", [discards_a_float32_value, discards_float32_values_in_nested_programs]
)
def test_a_float32_value_the_output_does_not_use_is_not_its_precision(fn):
    with jax.enable_x64(True):
        assert computed_dtype(jax.make_jaxpr(fn)(W)) == np.float64
    result = jaxcheck.check_grad(fn, W)
    assert result.verdict == "passed", result
    assert not any(FLOAT32_NOTE in n for n in result.notes), result.notes


def test_a_float32_cast_the_output_depends_on_is_still_its_precision():
    with jax.enable_x64(True):
        assert computed_dtype(jax.make_jaxpr(rounds_through_float32)(W)) == np.float32
    result = jaxcheck.check_grad(rounds_through_float32, W)
    assert any(FLOAT32_NOTE in n for n in result.notes), result.notes
