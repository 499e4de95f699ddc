"""The step sizes and the error model, on functions whose derivatives are known exactly."""

import numpy as np
import pytest

from jaxcheck._numerics import methods as methods
from jaxcheck._numerics import stencils as st


def judge_function(f, theta, g, h=None, method="central", **options):
    """Run the error model on f: R -> R applied element-wise at points theta."""
    m = methods.get(method)
    theta = np.asarray(theta, dtype=np.float64)
    h = st.default_steps(theta, 1.0, m) if h is None else np.full(theta.shape, h)
    s = st.make_stencil(theta, h, m)
    tol = st.Tolerance(**{"u_f": 2.2e-16, "u_g": 2.2e-16, "rtol": 1e-6, "atol": 0.0, **options})
    # F(θ) = Σ_i f(θ_i) is separable: F(θ ± h e_i) = F(θ) − f(θ_i) + f(θ_i ± h).
    base = np.sum(f(theta))
    F = base - f(theta)[None] + f(s.points)
    return st.compare(np.asarray(g, dtype=np.float64), base, F, s, m, tol)


def test_default_step_is_relative_with_a_floor_for_zeros():
    theta = np.array([0.0, 1e-3, 2.0, -50.0])
    h = st.default_steps(theta, typical=0.1, method=methods.get("central"))
    c = np.finfo(np.float64).eps ** (1 / 3)
    np.testing.assert_allclose(h, c * np.array([0.1, 0.1, 2.0, 50.0]))


def test_applied_displacements_are_exact_in_float32():
    theta = np.array([100.0, 3.0], np.float32)
    s = st.make_stencil(theta, np.array([1e-3, 1e-3]), methods.get("central"))
    plus = s.row(1.0)
    assert s.disp[plus, 0] != 1e-3
    assert s.disp[plus, 0] == float(s.points[plus, 0]) - float(theta[0])
    assert s.points.dtype == np.float32 and s.disp.dtype == np.float64


@pytest.mark.parametrize("method", methods.METHODS)
def test_weights_are_exact_for_polynomials_of_the_stencil_degree(method):
    m = methods.get(method)
    rng = np.random.default_rng(0)
    h = np.array([0.1, 0.01])
    offsets = [0.0, *m.primary] if 0.0 not in m.primary else list(m.primary)
    offsets = sorted(set(offsets) - {0.0}) if 0.0 not in m.primary else list(m.primary)
    disp = np.stack([o * h * (1 + 1e-3 * rng.standard_normal(2)) for o in offsets])
    w = methods.weights(disp, h)
    for degree in range(len(offsets)):
        expected = 1.0 if degree == 1 else 0.0
        np.testing.assert_allclose(np.sum(w * disp**degree, axis=0), expected, atol=1e-6)


@pytest.mark.parametrize("method", methods.METHODS)
def test_every_method_passes_correct_and_fails_wrong_gradients(method):
    theta = np.linspace(-2, 2, 9)
    assert (judge_function(np.sin, theta, np.cos(theta), method=method).status == st.OK).all()
    wrong = np.cos(theta) * 1.001
    assert (judge_function(np.sin, theta, wrong, method=method).status == st.MISMATCH).all()


def test_higher_orders_are_more_accurate_in_float32_where_central_is_limited():
    theta = np.linspace(0.5, 2.0, 50).astype(np.float32)
    errors = {}
    for method in ("central", "richardson", "central4"):
        m = methods.get(method)
        s = st.make_stencil(theta, st.default_steps(theta, 1.0, m), m)
        f = lambda x: np.exp(x.astype(np.float32)).astype(np.float32)  # noqa: E731
        F = (f(s.points) - f(theta)[None]).astype(np.float64)  # f values around θ, float32
        d, _ = st.estimate(s, F, 0.0, m.primary)
        errors[method] = np.median(np.abs(d - np.exp(theta.astype(np.float64))) / np.exp(theta))
    assert errors["richardson"] < errors["central"] / 5, errors
    assert errors["central4"] < errors["central"] / 5, errors


def test_a_relu_at_zero_is_a_kink_not_a_mismatch():
    theta = np.array([0.0, 0.0, 1.0])
    relu = lambda x: np.maximum(x, 0.0)  # noqa: E731
    g = np.array([0.0, 1.0, 1.0])  # the subgradients JAX returns at 0, and the slope
    v = judge_function(relu, theta, g)
    assert list(v.status) == [st.KINK, st.KINK, st.OK]
    wrong = judge_function(relu, theta, np.array([2.0, -1.0, 1.0]))
    assert list(wrong.status[:2]) == [st.MISMATCH, st.MISMATCH]


def test_correct_gradients_pass_and_wrong_ones_fail():
    theta = np.linspace(-2, 2, 9)
    v = judge_function(np.sin, theta, np.cos(theta))
    assert (v.status == st.OK).all()
    np.testing.assert_allclose(v.numeric, np.cos(theta), atol=1e-9)
    wrong = np.cos(theta) * (1 + 1e-4)
    assert (judge_function(np.sin, theta, wrong).status == st.MISMATCH).all()


def test_tiny_gradients_near_a_minimum_with_a_large_offset_do_not_fail():
    """Seed 002's situation: |g| ~ 1e-9 and f ~ 1e3: round-off ∝ |f|/h, not |g|, decides."""
    theta = np.array([1e-9, -3e-10, 0.0, 2e-9])
    f = lambda t: 1e3 / 4 + 0.5 * t**2  # noqa: E731
    v = judge_function(f, theta, theta)
    assert not np.isin(v.status, st.FAILING).any()
    assert (v.status == st.UNVERIFIABLE).all()  # below what differences resolve at |f| = 1e3


def test_truncation_error_is_estimated_from_the_data():
    """A large step on exp: the truncation error h²/6·e^θ widens the tolerance."""
    theta = np.array([0.0, 1.0])
    v = judge_function(np.exp, theta, np.exp(theta), h=1e-2)
    assert (v.status == st.OK).all()
    true_error = np.abs(v.numeric - np.exp(theta))
    assert (v.tolerance > true_error).all()
    assert (v.resolution < 100 * true_error).all()  # an estimate, not a blanket allowance


def test_noise_in_f_is_measured_not_assumed():
    """Noise far above round-off (a float32 reduction in a float64 check, say) widens τ."""
    rng = np.random.default_rng(0)
    theta = np.linspace(-1, 1, 64)

    def noisy(t):
        return np.sin(t) + 1e-9 * rng.standard_normal(t.shape)

    v = judge_function(noisy, theta, np.cos(theta))
    assert not np.isin(v.status, st.FAILING).any()
    assert np.median(v.excess_noise) > 1e3


def test_nonfinite_values_are_their_own_status():
    theta = np.array([0.5, 1.0])
    v = judge_function(np.sin, theta, np.array([np.nan, np.cos(1.0)]))
    assert list(v.status) == [st.NONFINITE, st.OK]


@pytest.mark.parametrize("dtype, expected", [(np.float64, 1e-6), (np.float32, 64 * 2**-23)])
def test_default_rtol(dtype, expected):
    assert st.default_rtol(dtype) == pytest.approx(expected)
