"""Run jaxcheck on a corpus built from JAX's own gradient tests and print its verdicts.

The cases (`tests/cases/corpus.py`) are the functions, shapes and input domains of JAX's
tests/lax_autodiff_test.py, lax_numpy_test.py, lax_scipy_test.py and linalg_test.py. Every
case is checked at several random points, in float64 and in float32 with precision="native"
(no float64 anywhere: the TPU case), with JAX's own gradient (correct) and with a planted
error: the function wrapped in a `custom_jvp` whose tangent is off by 1% and by 0.1%.

A correct gradient reported FAILED is a false failure (the goal is zero); a planted error
reported PASSED or INCONCLUSIVE is a miss. A planted error counts only where the precision
can resolve it: where the correct check passed and its tolerance at some element is below
half the planted error there (a gradient that is zero everywhere, as floor's, has nothing
to plant).

    python scripts/corpus.py                 # every case, seeds 0-2, both precisions
    python scripts/corpus.py --seeds 1 --only linalg --verbose
    python scripts/corpus.py --seeds 1 --several   # the cases of several arguments
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import os
import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import jaxcheck  # noqa: E402
from jaxcheck._core.paths import leaf_paths  # noqa: E402
from tests.cases.corpus import CASES  # noqa: E402

PLANTED = (1e-2, 1e-3)
PRECISIONS = ("float64", "float32 native")


def planted(fn, factor):
    """fn with a custom_jvp whose tangent is `factor` times the true one."""

    @jax.custom_jvp
    def wrong(*p):
        return fn(*p)

    @wrong.defjvp
    def wrong_jvp(primals, tangents):
        out, t = jax.jvp(fn, primals, tangents)
        return out, jax.tree.map(lambda x: x * factor, t)

    return wrong


def as_loss(fn, n):
    """fn(*params) as fn(params) (one array for one parameter, else a tuple), a complex
    output as its real and imaginary parts."""

    def real(out):
        return jnp.stack([jnp.real(out), jnp.imag(out)]) if jnp.iscomplexobj(out) else out

    if n == 1:
        return lambda p: real(fn(p))
    return lambda p: real(fn(*p))


@dataclasses.dataclass
class Outcome:
    case: str
    precision: str
    seed: int
    verdict: str
    n_checked: int
    n_unverifiable: int
    planted: dict  # {relative error: verdict}
    resolvable: dict  # {relative error: whether the correct check could resolve it}
    seconds: float
    detail: str = ""


def run_case(case, seed, precision) -> Outcome:
    rng = np.random.default_rng(seed)
    raw = case.make(rng)
    if precision == "float64":
        params = tuple(np.asarray(x, np.float64) for x in raw)
        options = {}
    else:
        params = tuple(jnp.asarray(x, jnp.float32) for x in raw)
        options = {"precision": "native"}
    p = params[0] if len(params) == 1 else params
    t0 = time.perf_counter()
    detail = ""
    try:
        result = jaxcheck.check_grad(as_loss(case.fn, len(params)), p, seed=seed, **options)
        verdict = result.verdict
        if verdict == "failed":
            detail = "; ".join(
                f"{e.name} {e.status} g={e.analytic:.4g} D={e.numeric:.4g} tol={e.tolerance:.2g}"
                for e in result.failures[:3]
            )
    except Exception as e:  # noqa: BLE001 - a crash on valid input is an outcome to report
        return Outcome(case.name, precision, seed, "error", 0, 0, {}, {},
                       time.perf_counter() - t0, f"{type(e).__name__}: {e}"[:300])  # fmt: skip
    conclusive = result.verdict == "passed"
    resolvable = {rel: conclusive and _resolvable(result, rel) for rel in PLANTED}
    verdicts = {}
    for rel in PLANTED:
        try:
            wrong = jaxcheck.check_grad(
                as_loss(planted(case.fn, 1 + rel), len(params)), p, seed=seed, **options
            )
            verdicts[rel] = wrong.verdict
        except Exception as e:  # noqa: BLE001
            verdicts[rel] = f"error {type(e).__name__}"
    return Outcome(
        case.name, precision, seed, verdict, result.n_checked, len(result.unverifiable),
        verdicts, resolvable, time.perf_counter() - t0, detail,
    )  # fmt: skip


def _leaf(tree, path):
    return dict(leaf_paths(tree))[path]


def _resolvable(result, rel) -> bool:
    """Whether some element's tolerance (resolution + rtol·|g|) is below half of a planted
    relative error `rel` there: the check could see that error."""
    rtol = 1e-6 if result.precision != "native" else 64 * float(np.finfo(np.float32).eps)
    for path in result.leaves:
        a = np.abs(np.ravel(_leaf(result.analytic, path)))
        res = np.abs(np.ravel(_leaf(result.resolution, path)))
        with np.errstate(invalid="ignore"):
            if np.any(res + rtol * a < 0.5 * rel * a):
                return True
    return False


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="random points per case")
    parser.add_argument("--only", action="append", default=[], help="substring of case names")
    parser.add_argument("--precision", choices=PRECISIONS, action="append")
    parser.add_argument("--verbose", action="store_true", help="one line per check")
    parser.add_argument("--several", action="store_true", help="only cases of several arguments")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    cases = [c for c in CASES if not args.only or any(s in c.name for s in args.only)]
    if args.several:  # (where check_grad sees several leaves: the engine's layout matters)
        cases = [c for c in cases if len(c.make(np.random.default_rng(0))) > 1]
    precisions = args.precision or PRECISIONS
    outcomes = []
    t0 = time.perf_counter()
    for case in cases:
        for precision in precisions:
            for seed in range(args.seeds):
                o = run_case(case, seed, precision)
                outcomes.append(o)
                bad = o.verdict in ("failed", "error") or any(
                    v != "failed" and o.resolvable[rel] for rel, v in o.planted.items()
                )
                if args.verbose or bad:
                    planted_s = " ".join(f"{rel:g}:{v}" for rel, v in o.planted.items())
                    line = f"{o.case:36s} {o.precision:15s} seed {o.seed} {o.verdict:12s} "
                    print(f"{line}planted {planted_s} {o.seconds:5.1f}s {o.detail}", flush=True)
    print_table(outcomes, len({c.name.split("[")[0] for c in cases}), time.perf_counter() - t0)
    return 0


def print_table(outcomes, n_functions, seconds) -> None:
    by = collections.defaultdict(list)
    for o in outcomes:
        by[o.precision].append(o)
    print()
    print(f"corpus: {len({o.case for o in outcomes})} cases of {n_functions} functions, "
          f"{len({o.seed for o in outcomes})} points each, {seconds:.0f} s")  # fmt: skip
    header = ["precision", "checks", "false failures", "errors", "inconclusive",
              "unverifiable elements", "1% caught", "0.1% caught", "time"]  # fmt: skip
    rows = []
    for precision, group in by.items():
        caught = []
        for rel in PLANTED:
            res = [o for o in group if o.resolvable.get(rel)]
            caught.append(f"{sum(o.planted.get(rel) == 'failed' for o in res)}/{len(res)}")
        rows.append([
            precision, str(len(group)), str(sum(o.verdict == "failed" for o in group)),
            str(sum(o.verdict == "error" for o in group)),
            str(sum(o.verdict == "inconclusive" for o in group)),
            f"{sum(o.n_unverifiable for o in group)} of {sum(o.n_checked for o in group)}",
            *caught,
            f"{sum(o.seconds for o in group):.0f} s",
        ])  # fmt: skip
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")


if __name__ == "__main__":
    sys.exit(main())
