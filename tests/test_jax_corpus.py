"""A slice of scripts/corpus.py in the suite: JAX's own gradient tests, both precisions.

The whole corpus (584 cases, `python scripts/corpus.py`) takes an hour; here a fixed slice of
its hardest cases (kinks, ties, domains, near-singular linear algebra, special functions):
a correct gradient is never FAILED, and a 1% error planted with a wrong `custom_jvp` is
FAILED wherever the correct check was conclusive.
"""

import importlib.util
import pathlib
import sys

import pytest

SCRIPTS = pathlib.Path(__file__).resolve().parent.parent / "scripts"


def _load(name):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


SLICE = [
    "lax.reduce_window[max,(4,6),(2, 1),(1, 2),SAME,(1, 1),(1, 1)]",
    "lax.cummax[(3, 4, 5),axis=1,reverse=True]",
    "numpy.sort[(3,4),axis=-1,some_equal]",
    "numpy.top_k[(5,8),k=3]",
    "numpy.round[decimals=1]",
    "lax.rem[(5, 8),(1, 8)]",
    "lax.asin",
    "numpy.arccosh[positive]",
    "lax.atan[special]",
    "special.fresnel",
    "special.ndtri",
    "special.betaln[x,1 at geomspace(1,1e30)]",
    "linalg.pinv[(5, 3),hermitian=False]",
    "linalg.det[singular corank 1]",
    "scipy.linalg.solve_triangular[lower=True,trans=1,(4,4),(4,3)]",
    "special.owens_t",
]


def _cases():
    corpus = _load("corpus")
    by_name = {c.name: c for c in corpus.CASES}
    return corpus, [by_name[n] for n in SLICE]


CORPUS, CASES = _cases()


@pytest.mark.parametrize("precision", ["float64", "float32 native"])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_jax_gradient_tests_are_never_failed_and_planted_errors_are(case, precision):
    outcome = CORPUS.run_case(case, 0, precision)
    assert outcome.verdict in ("passed", "inconclusive"), outcome
    if outcome.verdict == "passed" and outcome.resolvable[0.01]:
        assert outcome.planted[0.01] == "failed", outcome
    assert outcome.planted[0.01] != "passed" or not outcome.resolvable[0.01], outcome
