"""`jaxcheck.explore` on gradient bugs from JAX's issue tracker and on correct functions.

Each bug case is the function and a natural domain, nothing else: explore must find it (or,
where finite differences cannot resolve it, report the tail as suspicious), with the special
point as its simplest failing input. Each correct case must never be FAILED, in float32 and
float64. Prints one markdown table (docs/guide/explore.md shows it), with the wall time of each
exploration.

    python scripts/explore_corpus.py [--points 4096] [--only NAME]

Cases are taken from public issues of jax-ml/jax (numbers in the table); some are fixed in
the installed jax (the table says what explore finds there, whatever it is).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy import special

import jaxcheck

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from tests.cases.explore import CORRECT  # noqa: E402

F32, F64 = np.zeros((), np.float32), np.zeros((), np.float64)


def scalar(f):
    return lambda x: jnp.sum(f(x))


# name -> (issue, fn, template, domain, what explore should say)
BUGS = {
    "ldexp(x, 3) at 0": ("#37992", scalar(lambda x: jnp.ldexp(x, 3)), F32, (-2.0, 2.0), "failed"),
    "i0 at 0": ("#40628", scalar(special.i0), F32, (-2.0, 2.0), "failed"),
    "sinc near 0, float32": ("#34139", scalar(jnp.sinc), F32, (-2.0, 2.0), "failed"),
    "sinc near 0, float64": ("#34139", scalar(jnp.sinc), F64, (-2.0, 2.0), "failed"),
    "logsumexp(a, b) at b == 0": (
        "#22398",
        lambda p: special.logsumexp(p["a"], b=p["b"]),
        {"a": np.zeros(2), "b": np.zeros(2)},
        {"['a']": (-3.0, 3.0), "['b']": (0.0, 2.0)},
        "failed",
    ),
    "expm1 below -37, float64": ("#39794", scalar(jnp.expm1), F64, (-60.0, 5.0), "suspicious"),
    "sigmoid above +37, float64": (
        "#40342",
        scalar(jax.nn.sigmoid),
        F64,
        (-5.0, 60.0),
        "suspicious",
    ),  # fmt: skip
    "xlogy at 0": (
        "#15598",
        lambda p: special.xlogy(p["x"], p["y"]),
        {"x": F64, "y": F64},
        {"['x']": (-2.0, 2.0), "['y']": (0.0, 3.0)},
        "fixed?",
    ),
    "x ** y at x == 0": (
        "#14397",
        lambda p: p["x"] ** p["y"],
        {"x": F64, "y": F64},
        {"['x']": (0.0, 2.0), "['y']": (0.5, 3.0)},
        "fixed?",
    ),
}


def _minimal(result) -> str:
    if result.minimal is None:
        return ""
    leaves = jax.tree_util.tree_leaves_with_path(result.minimal)
    return ", ".join(
        f"{jax.tree_util.keystr(p) or 'x'}={np.asarray(v).tolist()}" for p, v in leaves
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=4096)
    parser.add_argument("--only", action="append", default=[])
    a = parser.parse_args()
    rows = []
    for name, (issue, fn, template, domain, expect) in BUGS.items():
        if a.only and not any(o in name for o in a.only):
            continue
        start = time.monotonic()
        r = jaxcheck.explore(fn, template, domain=domain, points=a.points)
        found = r.verdict if not r.suspicious or r.verdict == "failed" else "suspicious"
        rows.append((f"{name} ({issue})", expect, found, _minimal(r),
                     f"{r.n_failed}/{r.n_inconclusive}/{r.n_skipped}",
                     f"{time.monotonic() - start:.1f}"))  # fmt: skip
    for name, (fn, domain) in CORRECT.items():
        if a.only and not any(o in name for o in a.only):
            continue
        for template, dtype in ((F32, "float32"), (F64, "float64")):
            start = time.monotonic()
            r = jaxcheck.explore(scalar(fn), template, domain=domain, points=a.points)
            found = r.verdict if not r.suspicious else f"{r.verdict} (suspicious tail)"
            rows.append((f"{name}, {dtype} (correct)", "not failed", found, _minimal(r),
                         f"{r.n_failed}/{r.n_inconclusive}/{r.n_skipped}",
                         f"{time.monotonic() - start:.1f}"))  # fmt: skip
    print(f"{a.points} points per exploration\n")
    print("| case | expected | explore says | minimal failing input | failed/inconclusive/"
          "skipped points | s |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    wrong = [r for r in rows if r[1] == "not failed" and r[2].startswith("failed")]
    missed = [r for r in rows if r[1] == "failed" and r[2] != "failed"]
    print(f"\ncorrect functions FAILED: {len(wrong)}; bugs missed: {len(missed)}")


if __name__ == "__main__":
    main()
