"""explore: a gradient checked over its input domain. Real bugs of JAX's own rules (still in
jax 0.10) are found from the function and a natural domain alone, with the special point as
the simplest failing input; planted rule bugs are found in their region; correct functions
are never FAILED anywhere."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy import special

import jaxcheck
from jaxcheck.testing import assert_grad_everywhere
from tests.cases.explore import CORRECT

F32, F64 = np.zeros((), np.float32), np.zeros((), np.float64)


def scalar(f):
    return lambda x: jnp.sum(f(x))


# ---- JAX's own gradient bugs, found from a domain alone ----------------------------------------


def test_ldexp_gradient_at_zero_is_found_and_shrunk_to_zero():
    """jax#37992: the gradient of ldexp(x, 3) is 1 instead of 8 at x == 0."""
    result = jaxcheck.explore(scalar(lambda x: jnp.ldexp(x, 3)), F32, domain=(-2.0, 2.0),
                              points=256)  # fmt: skip
    assert result.verdict == "failed", result
    assert float(result.minimal) == 0.0
    assert result.minimal_result.verdict == "failed"
    assert any(r.sign == "zero" for r in result.regions)
    assert str(result).splitlines()[1].startswith("minimal failing input: params = 0")


def test_i0_gradient_at_zero_is_found():
    """jax#40628: jax.scipy.special.i0's gradient is 1 at 0 (i1(0) = 0)."""
    result = jaxcheck.explore(scalar(special.i0), F32, domain=(-2.0, 2.0), points=256)
    assert result.verdict == "failed" and float(result.minimal) == 0.0, result


@pytest.mark.parametrize("template, near", [(F32, 0.03), (F64, 1e-5)])
def test_sinc_gradient_near_zero_is_found(template, near):
    """jax#34139: sinc's float32 gradient is 2% off at 3e-4 and 0 at 1e-6; the float64 one
    36% off at 1e-8 (resolved only at the domain's step: check_grad's relative one is too
    short there)."""
    result = jaxcheck.explore(scalar(jnp.sinc), template, domain=(-2.0, 2.0), points=512)
    assert result.verdict == "failed", result
    assert 0 < abs(float(result.minimal)) < near, result.minimal
    assert all(max(abs(r.lo), abs(r.hi)) < near for r in result.regions), result.regions


def test_logsumexp_with_a_zero_weight_is_found():
    """jax#22398: logsumexp(a, b=b)'s gradient with respect to b is 0 where b == 0."""
    result = jaxcheck.explore(
        lambda p: special.logsumexp(p["a"], b=p["b"]), {"a": np.zeros(2), "b": np.zeros(2)},
        domain={"['a']": (-3.0, 3.0), "['b']": (0.0, 2.0)}, points=256,
    )  # fmt: skip
    assert result.verdict == "failed", result
    assert 0.0 in np.asarray(result.minimal["b"]), result.minimal
    assert {r.path for r in result.regions} == {"['b']"}


@pytest.mark.parametrize("fn, lo, hi", [(jnp.expm1, -60.0, 5.0), (jax.nn.sigmoid, -5.0, 60.0)])
def test_a_gradient_that_drops_to_zero_in_a_tail_is_suspicious(fn, lo, hi):
    """jax#39794, #40342: in float64 expm1's gradient is exactly 0 below about -37 (and
    sigmoid's above +37), where exp(x) is representable; finite differences cannot resolve it
    either, so it is not failed, and not passed on faith: an abrupt zero, suspicious."""
    result = jaxcheck.explore(scalar(fn), F64, domain=(lo, hi), points=512)
    assert result.verdict == "inconclusive", result
    (zero,) = result.suspicious
    assert 36 < abs(zero.first) < 39 and abs(zero.far) == max(abs(lo), abs(hi))
    assert 0 < abs(zero.before) < 1e-15
    assert "suspicious" in str(result)


# ---- correct functions are never FAILED ---------------------------------------------------------


@pytest.mark.parametrize("template", [F32, F64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", CORRECT)
def test_a_correct_function_is_never_failed(name, template):
    fn, domain = CORRECT[name]
    result = jaxcheck.explore(scalar(fn), template, domain=domain, points=512)
    assert result.verdict != "failed", result
    assert result.n_checked > 256


@pytest.mark.parametrize("template", [np.zeros(2, np.float32), np.zeros(2)])
def test_correct_functions_of_several_elements_are_never_failed(template):
    both = {"x": template, "y": template}
    for fn, domain in [
        (lambda p: jnp.sum(jnp.logaddexp(p["x"], p["y"])), (-30.0, 30.0)),
        (lambda p: jnp.sum(jax.nn.log_softmax(jnp.concatenate([p["x"], p["y"]]))[:2]),
         (-30.0, 30.0)),
        (lambda p: jnp.sum(special.xlogy(p["x"], p["y"] + 2.0)), (0.0, 5.0)),
    ]:  # fmt: skip
        result = jaxcheck.explore(fn, both, domain=domain, points=256)
        assert result.verdict != "failed", result


# ---- planted rule bugs, found in their region --------------------------------------------------


def _softplus_with_a_bug_above(threshold):
    @jax.custom_jvp
    def softplus(x):
        return jnp.logaddexp(x, 0.0)

    @softplus.defjvp
    def _(primals, tangents):
        (x,), (t,) = primals, tangents
        slope = jax.nn.sigmoid(x)
        slope = jnp.where(x > threshold, 0.5 * slope, slope)  # wrong above the threshold
        return softplus(x), slope * t

    return softplus


def test_a_custom_jvp_wrong_in_a_region_is_located_there():
    result = jaxcheck.explore(scalar(_softplus_with_a_bug_above(5.0)), F32, domain=(-20.0, 20.0),
                              points=512)  # fmt: skip
    assert result.verdict == "failed", result
    (region,) = result.regions
    assert region.sign == "positive" and region.lo > 5.0 and region.hi <= 20.0, region
    assert 5.0 < float(result.minimal) <= 20.0
    assert float(result.minimal) == round(float(result.minimal))  # shrunk to an integer


def test_a_handwritten_gradient_is_explored_through_grad_fn():
    def grad_fn(x):  # d/dx x³ = 3x², wrong for x < -1
        return jnp.where(x < -1.0, 2.0 * x**2, 3.0 * x**2)

    result = jaxcheck.explore(lambda x: jnp.sum(x**3), F64, grad_fn=grad_fn, domain=(-3.0, 3.0),
                              points=256)  # fmt: skip
    assert result.verdict == "failed"
    assert all(r.hi < -1.0 for r in result.regions), result.regions
    assert float(result.minimal) == -2.0


def test_check_vjp_identities_run_at_every_point():
    @jax.custom_vjp
    def f(x):
        return jnp.sin(x)

    def bwd(x, g):
        return (jnp.where(x < 0.0, -1.0, 1.0) * g * jnp.cos(x),)  # wrong sign for x < 0

    f.defvjp(lambda x: (jnp.sin(x), x), bwd)
    result = jaxcheck.explore(f, F64, domain=(-2.0, 2.0), points=48, check="vjp")
    assert result.verdict == "failed" and result.check == "vjp"
    assert all(r.hi < 0 for r in result.regions), result.regions
    assert -2.0 <= float(result.minimal) < 0.0
    assert not jaxcheck.explore(jnp.sin, F64, domain=(-2.0, 2.0), points=24, check="vjp").n_failed


# ---- the domain's edge, determinism, the budget, errors -----------------------------------------


def test_points_where_fn_is_not_finite_are_skipped_not_failed():
    result = jaxcheck.explore(scalar(jnp.log), F64, domain=(-1.0, 1.0), points=256)
    assert result.verdict != "failed", result
    assert result.n_skipped > 64  # the negative half, the domain's edge


def test_the_points_are_deterministic_for_a_seed():
    fn = scalar(_softplus_with_a_bug_above(5.0))
    a, b = (jaxcheck.explore(fn, F32, domain=(-20.0, 20.0), points=128, seed=3) for _ in "ab")
    c = jaxcheck.explore(fn, F32, domain=(-20.0, 20.0), points=128, seed=4)
    assert a.n_failed == b.n_failed and float(a.minimal) == float(b.minimal)
    assert [f.x.tolist() for f in a.failures] == [f.x.tolist() for f in b.failures]
    assert [f.x.tolist() for f in a.failures] != [f.x.tolist() for f in c.failures]


def test_special_values_come_first_and_log_scale_magnitudes_are_reached():
    from jaxcheck._core.coords import Coords
    from jaxcheck._grad.domain import Domain

    coords = Coords.build(F64)
    (leaf,) = coords.checked
    drawn = Domain.make((-1e30, 1e30), coords).draw(leaf, 512, np.random.default_rng(0))[:, 0]
    assert list(drawn[:4]) == [0.0, -0.0, 1.0, -1.0] and np.signbit(drawn[1])
    assert {1e-8, 1e30, -1e30} <= set(drawn.tolist())
    assert np.sum(np.abs(drawn) < 1e-3) > 50 and np.sum(np.abs(drawn) > 1e20) > 50


def test_max_time_stops_with_a_note():
    result = jaxcheck.explore(scalar(jnp.tanh), F64, domain=(-3.0, 3.0), points=4096,
                              max_time=1e-9)  # fmt: skip
    assert result.n_checked < 4096
    assert any("max_time" in n for n in result.notes)


@pytest.mark.parametrize(
    "options, match",
    [
        ({"domain": (2.0, 1.0)}, "lo <= hi"),
        ({"domain": "wide"}, r"pass \(lo, hi\)"),
        ({"domain": {"['w']": (0.0, 1.0)}}, "not checked leaves"),
        ({"points": 0}, "points=0"),
        ({"check": "hessian"}, "check='hessian'"),
        ({"max_time": -1}, "max_time=-1"),
    ],
)
def test_bad_options_are_refused_with_the_fix(options, match):
    with pytest.raises((ValueError, TypeError), match=match):
        jaxcheck.explore(scalar(jnp.tanh), F64, **options)


def test_assert_grad_everywhere_raises_with_the_minimal_input():
    with pytest.raises(jaxcheck.GradCheckError, match="minimal failing input: params = 0"):
        assert_grad_everywhere(scalar(lambda x: jnp.ldexp(x, 3)), F32, domain=(-2.0, 2.0),
                               points=128)  # fmt: skip
    assert assert_grad_everywhere(scalar(jnp.tanh), F64, domain=(-3.0, 3.0), points=128).passed


def test_a_journal_resumes_an_exploration(tmp_path):
    path = tmp_path / "explore.journal"
    fn = scalar(jnp.tanh)
    first = jaxcheck.explore(fn, F64, domain=(-3.0, 3.0), points=256, journal=path)
    again = jaxcheck.explore(fn, F64, domain=(-3.0, 3.0), points=256, journal=path)
    assert first.verdict == again.verdict and first.n_checked == again.n_checked
    assert any("replayed" in n for n in again.notes), again.notes
