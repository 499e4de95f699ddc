"""Two measures of how check_grad's data flows, for the judging floor's renovation (issue 26).

1. The modules a check passes through: every call into a jaxcheck function during
   `check_grad(...)` on a small MLP (full mode), recorded with `sys.setprofile`; prints the
   number of distinct modules entered, the number of times the call moves from one module to
   another, and how many of those moves return to a module already left.
2. The longest parameter list of any function in `jaxcheck/` (read with `ast`) other than the
   public API's (the names `jaxcheck` exports: check_grad's keywords are its options), and how many
   functions with parameters have no annotations at all.

    python scripts/architecture.py
"""

from __future__ import annotations

import ast
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np

import jaxcheck

ROOT = pathlib.Path(jaxcheck.__file__).parent
PUBLIC = {name for name in dir(jaxcheck) if not name.startswith("_")}


def _model():
    rng = np.random.default_rng(0)
    params = {"W": jnp.asarray(rng.normal(size=(4, 8))), "b": jnp.zeros(8)}
    x = jnp.asarray(rng.normal(size=(16, 4)))

    def loss(p, x):
        return jnp.sum(jnp.tanh(x @ p["W"] + p["b"][None]) ** 2)

    return loss, params, x


RANK = {"_core": 0, "_engine": 1, "_numerics": 1, "_grad": 2, "_rules": 2, "_cli": 3}


def _rank(module: str) -> int:
    """The module's layer (tests/test_layers.py's): foundations 0 ... front ends 3."""
    parts = module.split(".")
    return RANK.get(parts[1], 3) if len(parts) > 1 else 3


def flow() -> tuple[int, int, int, int]:
    """(modules entered, moves between modules, moves back to a module already left, calls
    that climb a layer: a function of a lower layer calling one of a higher, through a
    callback)."""
    loss, params, x = _model()
    jaxcheck.check_grad(loss, params, x)  # warm: compile once
    path: list[str] = []
    climbs = [0]

    def profile(frame, event, arg):
        if event != "call":
            return
        name = frame.f_globals.get("__name__", "")
        if not name.startswith("jaxcheck"):
            return
        caller = frame.f_back.f_globals.get("__name__", "") if frame.f_back else ""
        if caller.startswith("jaxcheck") and _rank(name) > _rank(caller):
            climbs[0] += 1
        if not path or path[-1] != name:
            path.append(name)

    sys.setprofile(profile)
    try:
        jaxcheck.check_grad(loss, params, x)
    finally:
        sys.setprofile(None)
    left: set[str] = set()
    back = 0
    for a, b in zip(path, path[1:]):
        left.add(a)
        back += b in left
    return len(set(path)), len(path) - 1, back, climbs[0]


def parameters() -> tuple[int, str, int, int]:
    """(longest parameter list, where, functions with parameters, of them unannotated)."""
    longest, where, with_params, bare = 0, "", 0, 0
    for file in sorted(ROOT.rglob("*.py")):
        tree = ast.parse(file.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            a = node.args
            names = [*a.posonlyargs, *a.args, *a.kwonlyargs]
            names = [n for n in names if n.arg not in ("self", "cls")]
            n = len(names) + (a.vararg is not None) + (a.kwarg is not None)
            if n:
                with_params += 1
                every = [*names, *(x for x in (a.vararg, a.kwarg) if x is not None)]
                bare += all(x.annotation is None for x in every)
            if n > longest and node.name not in PUBLIC:
                longest, where = n, f"{file.relative_to(ROOT.parent)}:{node.lineno} {node.name}"
    return longest, where, with_params, bare


def main() -> None:
    jax.config.update("jax_enable_x64", False)
    modules, moves, back, climbs = flow()
    longest, where, with_params, bare = parameters()
    print("| measure | value |")
    print("|---|---|")
    print(f"| jaxcheck modules a full-mode check_grad enters | {modules} |")
    print(f"| moves between modules during it | {moves} |")
    print(f"| of them back to a module already left | {back} |")
    print(f"| calls that climb a layer (a callback into a higher one) | {climbs} |")
    print(f"| longest parameter list | {longest} ({where}) |")
    print(f"| functions with parameters, none annotated | {bare} of {with_params} |")


if __name__ == "__main__":
    main()
