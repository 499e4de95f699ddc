"""jaxcheck.testing: assertions for test suites, with messages written for pytest's output."""

import subprocess
import sys
import textwrap

import jax.numpy as jnp
import pytest

import jaxcheck
from jaxcheck.testing import assert_grad, assert_jvp, assert_vjp
from tests.helpers import custom_vjp_model
from tests.spec_example import backward, data, loss


def test_assert_grad_message_names_the_worst_elements_leaves_values_and_tolerance():
    params, x, y = data()
    with pytest.raises(jaxcheck.GradCheckError) as info:
        assert_grad(loss, params, x, y, grad_fn=backward)
    message = str(info.value)
    first, second = message.splitlines()[:2]
    assert first.startswith("gradient check FAILED: 40 of 48 elements wrong, in 2 of 3 leaves")
    assert second == "  wrong leaves: ['W1'], ['b1']"
    assert "worst elements (10 of 40):" in message
    assert "analytic" in message and "tolerance" in message and "mismatch" in message
    assert isinstance(info.value, AssertionError)
    assert not info.value.result.passed


def test_assert_grad_returns_the_result_when_it_passes():
    params, x, y = data()
    result = assert_grad(loss, params, x, y, grad_fn=lambda *a: backward(*a, bug=False))
    assert result.passed
    assert jaxcheck.assert_grad is assert_grad


def test_assert_vjp_and_assert_jvp_catch_a_wrong_rule():
    fn, params, x = custom_vjp_model(bug=True)
    with pytest.raises(jaxcheck.GradCheckError):
        assert_vjp(fn, params, x)
    good, params, x = custom_vjp_model(bug=False)
    assert assert_vjp(good, params, x).passed
    assert assert_jvp(lambda w: jnp.tanh(w) * 2.0, jnp.ones(3)).passed


def test_pytest_shows_the_test_line_not_jaxcheck_internals(tmp_path):
    test = tmp_path / "test_user.py"
    test.write_text(
        textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path.parent)!r})
        sys.path.insert(0, {str(__import__("pathlib").Path(__file__).parent.parent)!r})
        from jaxcheck.testing import assert_grad
        from tests.spec_example import backward, data, loss

        def test_backward():
            params, x, y = data()
            assert_grad(loss, params, x, y, grad_fn=backward)
    """)
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1
    out = done.stdout
    assert "assert_grad(loss, params, x, y, grad_fn=backward)" in out
    assert "gradient check FAILED" in out and "['W1']" in out
    assert "jaxcheck/_" not in out and "testing.py:" not in out  # jaxcheck's frames are hidden
