"""The step sizes and the error model, on functions whose derivatives are known exactly."""

import numpy as np
import pytest

from jaxcheck import _stencils as st


def judge_function(f, theta, g, h=None, **options):
    """Run the error model on f: R -> R applied element-wise at points theta."""
    theta = np.asarray(theta, dtype=np.float64)
    h = st.default_steps(theta, 1.0) if h is None else np.full(theta.shape, h)
    s = st.make_stencil(theta, h)
    options = {"u_f": 2.2e-16, "u_g": 2.2e-16, "rtol": 1e-6, "atol": 0.0, **options}
    # F(θ) = Σ_i f(θ_i) is separable: F(θ ± h e_i) = F(θ) − f(θ_i) + f(θ_i ± h).
    base = np.sum(f(theta))
    shift = lambda values: base - f(theta) + f(values)  # noqa: E731
    return st.judge(
        np.asarray(g, dtype=np.float64),
        base,
        shift(s.plus1),
        shift(s.minus1),
        shift(s.plus2),
        shift(s.minus2),
        s,
        **options,
    )


def test_default_step_is_relative_with_a_floor_for_zeros():
    theta = np.array([0.0, 1e-3, 2.0, -50.0])
    h = st.default_steps(theta, typical=0.1)
    c = np.finfo(np.float64).eps ** (1 / 3)
    np.testing.assert_allclose(h, c * np.array([0.1, 0.1, 2.0, 50.0]))


def test_applied_step_is_exact_in_float32():
    theta = np.array([100.0, 3.0], np.float32)
    s = st.make_stencil(theta, np.array([1e-3, 1e-3]))
    assert s.h1[0] != 1e-3
    assert s.h1[0] == (float(s.plus1[0]) - float(s.minus1[0])) / 2
    assert s.plus1.dtype == np.float32 and s.h1.dtype == np.float64


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
