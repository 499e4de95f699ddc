"""GradMonitor: checks every N steps of an optax training loop without changing the training."""

import re

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import pytest

import jaxcheck

matplotlib.use("Agg")
optax = pytest.importorskip("optax")

X = np.array([[3, 5], [5, 1], [10, 2]], dtype=float) / np.array([10, 5])
Y = np.array([[75], [82], [93]], dtype=float) / 100


def loss(p, x, y):
    yhat = jax.nn.sigmoid(jax.nn.sigmoid(x @ p["W1"]) @ p["W2"])
    return 0.5 * jnp.sum((y - yhat) ** 2)


def train(monitor=None, steps=120, jit=False):
    rng = np.random.default_rng(0)
    params = {"W1": jnp.asarray(rng.random((2, 3)) / 100), "W2": jnp.asarray(rng.random((3, 1)))}
    opt = optax.sgd(0.5, momentum=0.5)
    state = opt.init(params)

    def train_step(step, params, state):
        value, grads = jax.value_and_grad(loss)(params, X, Y)
        if monitor is not None:
            monitor(step, params, X, Y, loss=value)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    train_step = jax.jit(train_step) if jit else train_step
    for step in range(steps):
        params, state = train_step(step, params, state)
    return params


def test_the_monitor_checks_every_n_steps_and_never_changes_the_training():
    monitor = jaxcheck.GradMonitor(loss, every=40)
    with_monitor, without = train(monitor), train()
    for k in with_monitor:
        assert np.array_equal(with_monitor[k], without[k])  # bit for bit
    assert [r.step for r in monitor.checks] == [0, 40, 80]
    assert len(monitor.history) == 120
    assert monitor.passed and monitor.last.passed
    first, last = monitor.checks[0], monitor.checks[-1]
    assert set(first.leaf_difference) == {"['W1']", "['W2']"}
    assert last.loss < first.loss
    assert 0 < last.min_abs_grad < np.inf
    assert not jax.config.jax_enable_x64
    assert monitor.to_dict()[1]["difference"] is None  # unchecked steps carry no check


def test_a_wrong_gradient_is_caught_during_training():
    def wrong(p, x, y):
        g = jax.grad(loss)(p, x, y)
        return {**g, "W2": g["W2"] * 1.01}

    monitor = jaxcheck.GradMonitor(loss, every=50, grad_fn=wrong, on_failure="ignore")
    train(monitor, steps=60)
    assert not monitor.passed
    assert all(r.n_failed == 3 for r in monitor.checks)
    # the warning names the wrong leaf, what kind of bug it is, and the worst element
    with pytest.warns(UserWarning, match=r"step 0: FAILED.*wrong: \['W2'\] \(analytic ≈ 1.01 × "
                      r"numeric.*worst \['W2'\]\[\d, 0\]: analytic"):  # fmt: skip
        warned = jaxcheck.GradMonitor(loss, every=50, grad_fn=wrong)
        warned(0, {"W1": jnp.ones((2, 3)) / 10, "W2": jnp.ones((3, 1))}, X, Y)
    assert re.fullmatch(r"GradMonitor\(loss, every=50: 1 checks, 1 failed \(first at step 0; "
                        r"last: FAILED.*\)\)", repr(warned)), repr(warned)  # fmt: skip
    raising = jaxcheck.GradMonitor(loss, every=50, grad_fn=wrong, on_failure="raise")
    with pytest.raises(jaxcheck.GradCheckError):
        train(raising, steps=1)


def test_large_models_are_checked_in_directional_mode_by_default():
    params = {"W": jnp.ones((200, 120)) / 100}
    x = jnp.ones((4, 200))
    monitor = jaxcheck.GradMonitor(lambda p, x: jnp.sum(jnp.tanh(x @ p["W"]) ** 2), every=1)
    result = monitor(0, params, x)
    assert result.mode == "directional" and result.passed
    assert monitor.checks[0].min_abs_grad > 0


def test_plots():
    monitor = jaxcheck.GradMonitor(loss, every=20)
    train(monitor, steps=41)
    axes = monitor.plot()  # Axes, as result.plot() and sweep.plot() return
    assert [ax.get_title() for ax in axes] == [
        "cost", "gradient difference (red: failed)", "min |g|",
    ]  # fmt: skip
    ax = monitor.last.plot()
    assert len(ax.get_xticklabels()) == 2


@pytest.mark.parametrize("kwargs", [{"every": 0}, {"on_failure": "explode"}])
def test_bad_monitor_options(kwargs):
    with pytest.raises(ValueError):
        jaxcheck.GradMonitor(loss, **kwargs)


# ---- inside a jitted training step: the checks run on the host, beside the training --------


def test_the_monitor_inside_a_jitted_step_checks_the_steps_values():
    monitor = jaxcheck.GradMonitor(loss, every=40)
    with_monitor, without = train(monitor, jit=True), train(jit=True)
    for k in with_monitor:
        assert np.array_equal(with_monitor[k], without[k])  # bit for bit
    assert [r.step for r in monitor.checks] == [0, 40, 80]
    assert [r.step for r in monitor.history] == list(range(120))
    assert monitor.passed and monitor.last.passed
    eager = jaxcheck.GradMonitor(loss, every=40)
    train(eager)  # the same checks as an eager loop's, at the same values
    for jitted, plain in zip(monitor.history, eager.history):
        assert jitted.loss == pytest.approx(plain.loss, rel=1e-6)
        assert jitted.passed == plain.passed and jitted.n_failed == plain.n_failed
    assert not jax.config.jax_enable_x64


def test_a_wrong_gradient_is_caught_at_its_step_inside_a_jitted_step():
    def wrong(p, x, y):
        g = jax.grad(loss)(p, x, y)
        return {**g, "W2": g["W2"] * 1.01}

    monitor = jaxcheck.GradMonitor(loss, every=50, grad_fn=wrong)
    with pytest.warns(UserWarning, match=r"FAILED.*wrong: \['W2'\]") as warned:
        train(monitor, steps=60, jit=True)
        monitor.wait()
    assert [str(w.message).split(":")[0] for w in warned] == [
        "jaxcheck at step 0", "jaxcheck at step 50",
    ]  # fmt: skip
    assert [(r.step, r.n_failed) for r in monitor.checks] == [(0, 3), (50, 3)]
    assert not monitor.passed

    raising = jaxcheck.GradMonitor(loss, every=50, grad_fn=wrong, on_failure="raise")
    step = jax.jit(lambda i, p: raising(i, p, X, Y))
    p = {"W1": jnp.ones((2, 3)) / 10, "W2": jnp.ones((3, 1))}
    step(0, p)
    assert not raising.history[0].passed  # reading the history waits for the check
    with pytest.raises(Exception, match="GradCheckError"):  # the next step stops the loop
        jax.block_until_ready(step(1, p))
    with pytest.raises(jaxcheck.GradCheckError, match=r"wrong leaves: \['W2'\]"):
        raising.wait()


def test_a_step_number_fixed_at_trace_time_and_an_input_error_inside_jit():
    monitor = jaxcheck.GradMonitor(loss, every=2)
    step = jax.jit(lambda i, p: monitor(i, p, X, Y), static_argnums=0)
    p = {"W1": jnp.ones((2, 3)) / 10, "W2": jnp.ones((3, 1))}
    for i in range(3):
        step(i, p)
    assert [(r.step, r.checked) for r in monitor.history] == [(0, True), (1, False), (2, True)]

    forgot_y = jaxcheck.GradMonitor(loss, every=1)
    jax.jit(lambda p: forgot_y(0, p, X))(p)
    with pytest.raises(TypeError, match="missing a required argument: 'y'"):
        forgot_y.wait()
