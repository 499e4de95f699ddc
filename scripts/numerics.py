"""The numerics targets of issue 5, measured on the float32 test corpus.

    python scripts/numerics.py

Prints, per corpus model (float32 parameters):
- the median |analytic − numeric| / |analytic| in float32 (precision="native") with central
  differences at the rule-of-thumb step u^(1/3)·scale (eps="rule"), with central differences at
  the step chosen from the data (eps="auto"), and with Richardson extrapolation (the native
  default: eps="auto"), and the ratios (target: ≥ 10×);
- the same with method="complex_step" (opt-in), and on how many leaves it was used (the rest
  fall back to finite differences: non-analytic or real-only code);
- false failures of the correct gradient in both precisions with the default method
  (target: 0);
- planted bugs in float32 native mode, one per leaf, of relative size 1.5e-3 of the leaf's
  largest gradient element: how many of them are caught at the right element (target: all).
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jaxcheck  # noqa: E402
from tests.helpers import CORPUS  # noqa: E402

PLANTED = 1.5e-3


def median_relative_error(result) -> float:
    rel = []
    for a, d in zip(
        jax.tree_util.tree_leaves(result.analytic), jax.tree_util.tree_leaves(result.numeric)
    ):
        a, d = np.asarray(a, np.float64).ravel(), np.asarray(d, np.float64).ravel()
        keep = np.abs(a) > 1e-3 * np.max(np.abs(a))  # elements the gradient actually has
        rel.append(np.abs(a[keep] - d[keep]) / np.abs(a[keep]))
    return float(np.median(np.concatenate(rel)))


def main() -> None:
    print(f"jaxcheck {jaxcheck.__version__} · jax {jax.__version__} · {jax.devices()[0]}")
    header = ["model", "central rule", "central auto", "richardson", "ratio rule",
              "ratio auto", "complex step", "(leaves)", "false fail f64", "false fail f32",
              "planted caught"]  # fmt: skip
    rows = []
    ratios, false_failures, caught_all, missed = [], 0, True, []
    for name, make in CORPUS.items():
        loss, params, args = make()
        runs = {"rule": ("central", "rule"), "auto": ("central", "auto"),
                "richardson": ("richardson", "auto")}  # fmt: skip
        errors = {
            k: median_relative_error(
                jaxcheck.check_grad(loss, params, *args, precision="native", method=m, eps=e)
            )
            for k, (m, e) in runs.items()
        }
        cs = jaxcheck.check_grad(loss, params, *args, precision="native", method="complex_step")
        false_failures += cs.n_failed
        used = sum(leaf.method == "complex_step" for leaf in cs.leaves.values())
        ratio = errors["rule"] / errors["richardson"]
        ratios.append(ratio)
        f64 = jaxcheck.check_grad(loss, params, *args)
        f32 = jaxcheck.check_grad(loss, params, *args, precision="native")
        false_failures += f64.n_failed + f32.n_failed
        g = jax.grad(loss)(params, *args)
        caught, planted = 0, 0
        rng = np.random.default_rng(0)
        for path, leaf in jax.tree_util.tree_flatten_with_path(g)[0]:
            key = jax.tree_util.keystr(path)
            flat = np.array(leaf).reshape(-1)
            i = int(rng.integers(flat.size))
            flat[i] += PLANTED * np.max(np.abs(flat))
            wrong = jax.tree_util.tree_map(lambda x: x, g)
            wrong = _replace(wrong, path, flat.reshape(leaf.shape))
            result = jaxcheck.check_grad(
                loss, params, *args, grad_fn=lambda *_, w=wrong: w, precision="native"
            )
            planted += 1
            index = tuple(int(j) for j in np.unravel_index(i, leaf.shape))
            hit = (key, index) in [(e.path, e.index) for e in result.failures]
            caught += hit
            if not hit:
                missed.append(f"{name}{key}{list(index)}")
        caught_all &= caught == planted
        rows.append([name, f"{errors['rule']:.1e}", f"{errors['auto']:.1e}",
                     f"{errors['richardson']:.1e}", f"{ratio:.0f}×",
                     f"{errors['auto'] / errors['richardson']:.1f}×",
                     f"{median_relative_error(cs):.1e}", f"{used}/{len(cs.leaves)}",
                     str(f64.n_failed),
                     str(f32.n_failed), f"{caught}/{planted}"])  # fmt: skip
    widths = [max(len(r[k]) for r in [header, *rows]) for k in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    print(
        f"\nsummary: richardson vs central at the rule-of-thumb step: median "
        f"{np.median(ratios):.0f}× (min {min(ratios):.0f}×); false failures {false_failures}; "
        f"every planted bug caught: {caught_all}"
        + (f" (missed: {', '.join(missed)})" if missed else "")
    )


def _replace(tree, path, value):
    flat, treedef = jax.tree_util.tree_flatten_with_path(tree)
    leaves = [value if p == path else x for p, x in flat]
    return jax.tree_util.tree_unflatten(treedef, leaves)


if __name__ == "__main__":
    main()
