"""The result as a value: printed, rendered as HTML, serialized, and asserted on."""

import html
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcheck


def loss(p, x):
    return jnp.sum(jnp.tanh(x @ p["w"]) ** 2) + jnp.sum(p["b"] ** 2)


PARAMS = {"w": jnp.linspace(-1, 1, 6).reshape(3, 2), "b": jnp.array([1.0, 2.0]), "n": 3}
X = jnp.ones((2, 3))


@pytest.fixture(scope="module")
def failed():
    def grad_fn(p, x):
        g = jax.grad(loss)({"w": p["w"], "b": p["b"]}, x)
        return {**g, "w": g["w"].at[1, 0].add(0.1).at[2, 1].add(1.0)}

    return jaxcheck.check_grad(loss, PARAMS, X, grad_fn=grad_fn)


def test_failures_are_sorted_worst_first(failed):
    assert [(e.path, e.index) for e in failed.failures] == [("['w']", (2, 1)), ("['w']", (1, 0))]
    assert failed.n_failed == 2 and failed.n_checked == 8


def test_str_has_verdict_leaf_table_worst_elements_and_skips(failed):
    text = str(failed)
    assert text.startswith("jaxcheck: FAILED: 2 of 8 elements wrong, in 1 of 2 leaves")
    assert "['w']  (3, 2)" in text and "FAILED" in text
    assert "worst elements (2 of 2)" in text and "['w'][2, 1]" in text
    assert "skipped: ['n'] (integer)" in text
    assert "FAILED" in repr(failed)


def test_html_rendering_is_a_table(failed):
    page = failed._repr_html_()
    assert page.count("<table>") == 2
    assert "[&#x27;w&#x27;][2, 1]" in page  # escaped


def test_to_dict_and_json_round_trip(failed):
    d = json.loads(failed.to_json())
    assert d["passed"] is False and d["n_failed"] == 2
    assert d["leaves"]["['w']"]["shape"] == [3, 2]
    assert d["failures"][0]["index"] == [2, 1] and d["failures"][0]["status"] == "mismatch"
    assert d["skipped"] == [{"path": "['n']", "reason": "integer"}]
    assert "numeric" not in d
    arrays = json.loads(failed.to_json(arrays=True))
    assert len(arrays["numeric"]["['w']"]) == 6
    assert arrays["numeric"]["['n']"] == [None]  # NaN (not checked) becomes null


def test_numeric_and_analytic_keep_the_params_structure(failed):
    assert failed.numeric["w"].shape == (3, 2)
    assert failed.analytic["w"][2, 1] - failed.numeric["w"][2, 1] == pytest.approx(1.0, rel=1e-6)


def test_passed_result_reads_as_passed():
    result = jaxcheck.check_grad(loss, PARAMS, X)
    assert str(result).startswith("jaxcheck: PASSED: all 8 checked elements agree")
    assert "worst elements" not in str(result)


@pytest.fixture(scope="module")
def doubled():
    """A planted factor-2 bug in one leaf: its diagnosis names the factor."""

    def grad_fn(p, x):
        g = jax.grad(loss)({"w": p["w"], "b": p["b"]}, x)
        return {**g, "b": 2 * g["b"]}

    return jaxcheck.check_grad(loss, PARAMS, X, grad_fn=grad_fn)


def test_html_has_every_line_of_the_text_report(doubled):
    diagnosis = doubled.leaves["['b']"].diagnosis
    assert "2 × numeric" in diagnosis
    page = doubled._repr_html_()
    assert f"diagnosis [&#x27;b&#x27;]: {html.escape(diagnosis)}" in page
    assert "worst elements (2 of 2):" in page
    text = str(doubled)
    for line in text.splitlines()[1:]:  # below the headline: tables aside, each line is in the HTML
        if line.strip() and "  " not in line.strip():
            assert html.escape(line.strip()) in page, line


def test_html_has_the_unverifiable_and_kink_lines():
    def kinked(p):  # abs at 0 is a kink; b's gradient 1e-13 is below what differences resolve
        return 1.0 + jnp.sum(jnp.abs(p["w"])) + 1e-13 * jnp.sum(p["b"]) + jnp.sum(p["c"] ** 2)

    params = {"w": np.array([0.0, 1.0]), "b": np.array([1.0]), "c": np.arange(1.0, 5.0)}
    result = jaxcheck.check_grad(kinked, params)
    assert result.kinks and result.unverifiable
    page = result._repr_html_()
    assert "element(s) at kinks of f" in page and "element(s) unverifiable" in page


def test_plot_has_a_legend_for_its_marks(failed):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jaxcheck._core.plots import LEGEND_LABELS

    ax = failed.plot()
    legend = ax.get_legend()
    assert legend is not None
    assert tuple(t.get_text() for t in legend.get_texts()) == LEGEND_LABELS
    assert LEGEND_LABELS == (
        "element: not wrong",
        "element: wrong",
        "leaf's median resolution (finite-difference error estimate)",
    )
    plt.close(ax.figure)
