"""Compiled executables kept across checks: in this process they are found by the program that
will run (never by the function object: a cell re-run in a notebook changes a rule, a global or a
closure's value, and not the loss), and a repeat compiles nothing; with the persistent
compilation cache, the same check in a fresh process compiles nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcheck

from . import helpers as h

CHILD = r"""
import json, sys
import jax, jax.numpy as jnp, numpy as np
import jaxcheck

compiles, hits = [], []  # executables built (a cache hit is timed as a compilation too)
def listen(event, **kw):
    if event == "/jax/compilation_cache/cache_misses":
        compiles.append(1)
    if event == "/jax/compilation_cache/cache_hits":
        hits.append(1)
jax.monitoring.register_event_listener(listen)

rng = np.random.default_rng(0)
params = {"W": jnp.asarray(rng.normal(size=(5, 4))), "b": jnp.asarray(rng.normal(size=4))}
x = jnp.asarray(rng.normal(size=(7, 5)))
loss = lambda p, x: jnp.sum(jnp.tanh(x @ p["W"] + p["b"][None]) ** 2)
kwargs = json.loads(sys.argv[1])
jax.block_until_ready((params, x))
compiles.clear(); hits.clear()  # the check's own, not the set-up's
result = jaxcheck.check_grad(loss, params, x, **kwargs)
print(json.dumps({"compiles": len(compiles), "hits": len(hits), "passed": result.passed,
                  "numeric": np.asarray(result.numeric["W"]).tolist()}))
"""


def _run(kwargs: dict, env: dict | None = None) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(kwargs)],
        capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_second_process_compiles_nothing(tmp_path):
    first = _run({"cache_dir": str(tmp_path / "cache")})
    second = _run({"cache_dir": str(tmp_path / "cache")})
    assert first["compiles"] > 0 and first["passed"]
    assert second["compiles"] == 0 and second["hits"] >= first["compiles"], second
    assert second["numeric"] == first["numeric"]


def test_the_environment_variable_turns_it_on(tmp_path):
    env = {"JAXCHECK_CACHE_DIR": str(tmp_path / "env-cache")}
    first = _run({}, env)
    assert first["compiles"] > 0 and os.listdir(tmp_path / "env-cache")
    assert _run({}, env)["compiles"] == 0


def test_a_cache_dir_that_cannot_be_made_is_refused_before_the_check(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ValueError, match="cannot be used as the compilation cache"):
        jaxcheck.check_grad(lambda p: p**2, 1.0, cache_dir=str(blocker / "cache"))
    with pytest.raises(TypeError, match="a directory path"):
        jaxcheck.check_grad(lambda p: p**2, 1.0, cache_dir=3)


# ---- executables kept in this process: found by the program, never by the function ----------

RULE = """
@jax.custom_vjp
def act(z):
    return jnp.tanh(z)

def act_fwd(z):
    return jnp.tanh(z), z

def act_bwd(z, g):
    return ({factor} * SCALE * g * (1 - jnp.tanh(z) ** 2),)

act.defvjp(act_fwd, act_bwd)
"""

JVP_RULE = """
@jax.custom_jvp
def act(z):
    return jnp.tanh(z)

@act.defjvp
def act_jvp(primals, tangents):
    (z,), (t,) = primals, tangents
    return jnp.tanh(z), {factor} * t * (1 - jnp.tanh(z) ** 2)
"""

RNG = np.random.default_rng(0)
P = {"W": jnp.asarray(RNG.normal(size=(3, 2)))}
X = jnp.asarray(RNG.normal(size=(4, 3)))


def _notebook(**names) -> dict:
    """A notebook's globals, where `loss` calls `act` by its global name: a cell (exec'd
    here) that defines `act` again changes what the same loss object runs."""
    ns = {"jax": jax, "jnp": jnp, **names}
    exec("def loss(p, x):\n    return jnp.sum(act(x @ p['W']) ** 2)", ns)
    return ns


def _ratio(result) -> float:
    """analytic / numeric of the check's largest gradient element."""
    a, n = np.asarray(result.analytic["W"]), np.asarray(result.numeric["W"])
    i = np.argmax(np.abs(n))
    return float(a.flat[i] / n.flat[i])


def test_a_rule_defined_again_gets_a_fresh_verdict():
    ns = _notebook(SCALE=1.0)
    exec(RULE.format(factor=1.5), ns)  # cell 1: the backward 1.5x too large
    loss = ns["loss"]
    wrong = jaxcheck.check_grad(loss, P, X)
    assert not wrong.passed and _ratio(wrong) == pytest.approx(1.5, rel=1e-6)
    exec(RULE.format(factor=1.0), ns)  # cell 1 fixed and run again; the same loss object
    fixed = jaxcheck.check_grad(loss, P, X)
    assert fixed.passed and _ratio(fixed) == pytest.approx(1.0, rel=1e-6), fixed
    np.testing.assert_allclose(fixed.numeric["W"], wrong.numeric["W"])  # the loss is the same


def test_a_global_that_the_rule_reads_gets_a_fresh_verdict():
    ns = _notebook(SCALE=1.5)
    exec(RULE.format(factor=1.0), ns)
    loss = ns["loss"]
    assert not jaxcheck.check_grad(loss, P, X).passed
    ns["SCALE"] = 1.0  # the same rule objects, reading another value
    assert jaxcheck.check_grad(loss, P, X).passed
    ns["SCALE"] = 1.5  # back to the first program: its executables, nothing compiled
    with h.count_compilations() as compiled:
        again = jaxcheck.check_grad(loss, P, X)
    assert not again.passed and _ratio(again) == pytest.approx(1.5, rel=1e-6)
    assert not compiled, len(compiled)


def test_a_closure_value_that_the_rule_reads_gets_a_fresh_verdict():
    def model():
        scale = 1.5

        @jax.custom_vjp
        def act(z):
            return jnp.tanh(z)

        def act_bwd(z, g):
            return (scale * g * (1 - jnp.tanh(z) ** 2),)

        act.defvjp(lambda z: (jnp.tanh(z), z), act_bwd)

        def fix():
            nonlocal scale
            scale = 1.0

        return (lambda p, x: jnp.sum(act(x @ p["W"]) ** 2)), fix

    loss, fix = model()
    assert not jaxcheck.check_grad(loss, P, X).passed
    fix()  # the closure's cell holds another value; every function object is the same
    assert jaxcheck.check_grad(loss, P, X).passed


def test_a_custom_jvp_rule_defined_again_gets_a_fresh_verdict():
    ns = _notebook()
    exec(JVP_RULE.format(factor=2.0), ns)
    loss = ns["loss"]
    wrong = jaxcheck.check_grad(loss, P, X)
    assert not wrong.passed and _ratio(wrong) == pytest.approx(2.0, rel=1e-6)
    exec(JVP_RULE.format(factor=1.0), ns)
    assert jaxcheck.check_grad(loss, P, X).passed


@pytest.mark.parametrize("power", [3.0, jnp.full((4, 2), 3.0)], ids=["scalar", "array"])
def test_a_global_in_the_loss_gets_fresh_finite_differences(power):
    """A hand-written gradient that is right for the loss as it is now: the finite
    differences must be of that loss, not of the one compiled for the first check."""
    ns = {"jnp": jnp, "POWER": 2.0}
    exec(
        "def loss(p, x):\n    return jnp.sum(jnp.tanh(x @ p['W']) ** POWER)\n"
        "def grad(p, x):\n"
        "    t = jnp.tanh(x @ p['W'])\n"
        "    return {'W': x.T @ (POWER * t ** (POWER - 1) * (1 - t**2))}\n",
        ns,
    )
    first = jaxcheck.check_grad(ns["loss"], P, X, grad_fn=ns["grad"])
    assert first.passed, first
    ns["POWER"] = power  # a literal in the program (a Python float), or a constant (an array)
    second = jaxcheck.check_grad(ns["loss"], P, X, grad_fn=ns["grad"])
    assert second.passed, second
    assert not np.allclose(second.numeric["W"], first.numeric["W"])


def test_a_callback_defined_again_gets_a_fresh_verdict():
    """The text of a jaxpr masks a callback's address: its identity is part of the key."""
    ns = {"jax": jax, "jnp": jnp, "np": np}
    cell = "def host_tanh(z):\n    return np.tanh({factor} * np.asarray(z))\n"
    exec(
        "def loss(p, x):\n"
        "    z = x @ p['W']\n"
        "    out = jax.ShapeDtypeStruct(z.shape, z.dtype)\n"
        "    return jnp.sum(jax.pure_callback(host_tanh, out, z, vmap_method='sequential'))\n",
        ns,
    )

    def grad(p, x):  # of tanh, the fixed callback
        return {"W": x.T @ (1 - jnp.tanh(x @ p["W"]) ** 2)}

    exec(cell.format(factor=2.0), ns)
    assert not jaxcheck.check_grad(ns["loss"], P, X, grad_fn=grad).passed
    exec(cell.format(factor=1.0), ns)
    assert jaxcheck.check_grad(ns["loss"], P, X, grad_fn=grad).passed


def test_a_repeated_check_compiles_nothing():
    """Nor does a cell run again unchanged: new function objects, the same program."""
    ns = _notebook(SCALE=1.0, SHIFT=jnp.linspace(0.0, 1.0, 2))
    exec("def loss(p, x):\n    return jnp.sum(act(x @ p['W'] + SHIFT[None]) ** 2)", ns)
    exec(RULE.format(factor=1.0), ns)
    params = {"W": P["W"] * 0.5}  # new values: nothing kept from another test
    with h.count_compilations() as compiled:
        first = jaxcheck.check_grad(ns["loss"], params, X)
    assert first.passed and compiled
    with h.count_compilations() as compiled:
        again = jaxcheck.check_grad(ns["loss"], params, X)
        exec(RULE.format(factor=1.0), ns)
        rerun = jaxcheck.check_grad(ns["loss"], params, X)
    assert not compiled, len(compiled)
    for result in (again, rerun):
        np.testing.assert_array_equal(result.numeric["W"], first.numeric["W"])


def test_the_monitor_compiles_nothing_after_its_first_check():
    def loss(p, x):
        return jnp.sum(jnp.tanh(x @ p["W"]) ** 2) + 1e-3 * jnp.sum(p["W"] ** 4)

    monitor = jaxcheck.GradMonitor(loss, every=1)
    params = {"W": P["W"] * 0.25}
    counts = []
    for _ in range(3):
        with h.count_compilations() as compiled:
            assert monitor(len(monitor.history), params, X).passed
        counts.append(len(compiled))
        params = jax.tree_util.tree_map(lambda w: w - 0.1 * w, params)
    assert counts[0] > 0 and counts[1:] == [0, 0], counts
