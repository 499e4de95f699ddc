"""sweep_eps: the V-shaped error curve per leaf, and its plot."""

import jax.numpy as jnp
import numpy as np
import pytest

import jaxcheck
from tests import helpers as h


def seed002_at(iteration):
    for k, params in enumerate(h.seed002_training()):
        if k == iteration:
            return params, h.SEED002_X, h.SEED002_Y


def test_the_curve_is_a_v_with_its_bottom_near_the_default_step():
    params, X, y = seed002_at(50)
    sweep = jaxcheck.sweep_eps(
        h.seed002_loss, params, X, y, grad_fn=h.seed002_backward, steps=10.0 ** -np.arange(1, 14)
    )
    for path, d in sweep.difference.items():
        best = int(np.nanargmin(d))
        assert 0 < best < len(d) - 1, (path, d)  # falls, then rises: a V
        assert d[0] > 10 * d[best] and d[-1] > 10 * d[best], (path, d)
        ratio = sweep.best_step[path] / sweep.default_step[path]
        assert 1e-2 < ratio < 1e2, (path, sweep.best_step[path], sweep.default_step[path])
    assert "best step" in str(sweep)
    assert "<table>" in sweep._repr_html_() and "best step" in sweep._repr_html_()
    assert repr(sweep).startswith("SweepResult(")
    assert sweep.to_dict()["best_step"] == sweep.best_step


def test_a_wrong_gradient_has_no_v_only_a_floor():
    sweep = jaxcheck.sweep_eps(
        lambda p: jnp.sum(jnp.sin(p["x"])),
        {"x": jnp.linspace(0.0, 1.0, 5)},
        grad_fn=lambda p: {"x": jnp.cos(p["x"]) * 1.01},
        steps=10.0 ** -np.arange(2, 10),
    )
    d = sweep.difference["['x']"]
    assert np.all(d > 1e-3)  # the bug's own size, at every step


def test_steps_that_vanish_are_skipped_and_the_default_grid_follows_the_dtype():
    f = lambda p: jnp.sum(jnp.exp(p["x"]))  # noqa: E731
    params = {"x": jnp.array([1.0, 2.0], jnp.float32)}
    sweep = jaxcheck.sweep_eps(f, params, precision="native")
    assert sweep.steps.min() >= 1e-7 and sweep.steps.max() == pytest.approx(0.1)
    sweep = jaxcheck.sweep_eps(f, params, precision="native", steps=[1e-2, 1e-12])
    assert np.isnan(sweep.difference["['x']"][1])  # 2 ± 1e-12 == 2 in float32


def test_plot_draws_one_curve_per_leaf():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    params, X, y = seed002_at(5)
    sweep = jaxcheck.sweep_eps(h.seed002_loss, params, X, y, grad_fn=h.seed002_backward,
                               steps=[1e-2, 1e-5, 1e-9])  # fmt: skip
    ax = sweep.plot()
    assert len(ax.get_lines()) == 2 * len(sweep.difference)  # a curve and a default-step line
    labels = [line.get_label() for line in ax.get_lines()]
    assert all(f"{p}: default step" in labels for p in sweep.difference)  # labelled


def test_eps_is_refused():
    with pytest.raises(ValueError, match="steps="):
        jaxcheck.sweep_eps(lambda p: jnp.sum(p**2), jnp.ones(2), eps=1e-3)
