"""One contract for every evaluator and every mode (in the style of optax's `test_scalers`):
the same small models, correct and with one wrong element, judged by each mode on each
evaluator that can run it, give the same verdicts, and the same failing elements.

Evaluators: one program for every leaf (`FlatEngine`), a program per leaf (`JaxEngine`), and
the host loop (`HostEngine`, one point at a time). Modes: full, sample, directional."""

import jax
import numpy as np
import pytest

import jaxcheck
from jaxcheck._engine import layout as _layout
from jaxcheck._engine.host import HostEngine
from jaxcheck._grad import evaluators as _evaluators
from tests import helpers as h

EVALUATORS = ("flat", "per_leaf", "host")
MODES = ("full", "sample", "directional")
MODELS = {"mlp_softmax_ce": h.mlp_softmax_ce, "layer_norm": h.layer_norm_model}


def _use(evaluator: str, monkeypatch) -> None:
    if evaluator == "host":

        def host(p, plan, progress, journal):
            return HostEngine(
                p.fn_scalar, p.values, p.coords, p.args, progress=progress, journal=journal
            )

        monkeypatch.setattr(_evaluators, "_batched_or_host", host)
    else:  # the cost model decides flat or per leaf: make it choose
        flops = np.inf if evaluator == "flat" else 0.0
        monkeypatch.setitem(_layout.FLOPS_PER_COMPILE, "cpu", flops)


def _wrong_element(loss, params, args):
    """jax.grad with the largest element of the first leaf 10% off, and where it is."""
    g = jax.grad(loss)(params, *args)
    leaves, tree = jax.tree_util.tree_flatten(g)
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(g)[0]]
    i = int(np.argmax(np.abs(np.asarray(leaves[0]))))
    index = tuple(int(j) for j in np.unravel_index(i, leaves[0].shape))

    def grad_fn(p, *a):
        out = jax.tree_util.tree_leaves(jax.grad(loss)(p, *a))
        out[0] = out[0].at[index].multiply(1.1)
        return jax.tree_util.tree_unflatten(tree, out)

    return grad_fn, (paths[0], index)


def _outcome(result) -> tuple:
    failing = sorted((e.path, e.index) for e in result.failures)
    return result.verdict, {p: leaf.verdict for p, leaf in result.leaves.items()}, failing


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", MODELS)
def test_every_evaluator_gives_the_same_verdicts(name, mode, monkeypatch):
    loss, params, args = MODELS[name]()
    grad_fn, where = _wrong_element(loss, params, args)
    options = {"mode": mode, "samples": 8, "seed": 1}
    seen = {}
    for evaluator in EVALUATORS:
        with monkeypatch.context() as m:
            _use(evaluator, m)
            correct = jaxcheck.check_grad(loss, params, *args, **options)
            wrong = jaxcheck.check_grad(loss, params, *args, grad_fn=grad_fn, **options)
        assert correct.verdict == "passed", (evaluator, correct)
        if mode != "sample":  # a sample may not hold the wrong element (it is the same sample)
            assert wrong.verdict == "failed", (evaluator, wrong)
            assert where in {(e.path, e.index) for e in wrong.failures}, (evaluator, wrong)
        engine = {"host": "host", "flat": "jax-flat", "per_leaf": "jax"}[evaluator]
        assert correct.engine == engine, (evaluator, correct.engine)
        seen[evaluator] = (_outcome(correct), _outcome(wrong))
    first = seen[EVALUATORS[0]]
    for evaluator in EVALUATORS[1:]:
        assert seen[evaluator] == first, (evaluator, seen)


@pytest.mark.parametrize("evaluator", EVALUATORS)
def test_every_evaluator_a_check_uses_is_an_evaluator(evaluator, monkeypatch):
    """The one interface (`_engine/evaluator.Evaluator`), its progress and journal given when
    it is made, not set afterwards."""
    from jaxcheck._engine.evaluator import Evaluator

    seen = []
    original = _evaluators.choose

    def spy(*a, **k):
        seen.append(original(*a, **k))
        return seen[-1]

    _use(evaluator, monkeypatch)
    monkeypatch.setattr(_evaluators, "choose", spy)
    loss, params, args = MODELS["mlp_softmax_ce"]()
    assert jaxcheck.check_grad(loss, params, *args, progress=False).passed
    (engine,) = seen
    assert isinstance(engine, Evaluator), type(engine)
    assert engine.progress is not None  # the (silent) bar's, from construction
