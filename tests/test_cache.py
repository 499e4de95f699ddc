"""The persistent compilation cache: the same check in a fresh process compiles nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import jaxcheck

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
