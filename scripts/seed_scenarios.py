"""Print every seed scenario's verdict and timing, as one table measured in one run.

    python scripts/seed_scenarios.py [--repeat 3]

Each row runs jaxcheck.check_grad on one scenario from tests/helpers.py and prints what was
expected, what was found, and the median wall time of `--repeat` calls (the first call of a
JAX model includes compilation, so it is reported separately).
"""

from __future__ import annotations

import argparse
import pathlib
import platform
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import jax  # noqa: E402
import numpy as np  # noqa: E402

import jaxcheck  # noqa: E402
from tests import helpers as h  # noqa: E402


def scenarios():
    p0, X0, t0 = h.seed000_data()
    yield (
        "seed 000 2-2-1, correct",
        "pass",
        (h.seed000_loss, p0, X0, t0),
        {"grad_fn": h.seed000_backward},
    )
    yield (
        "seed 000, backprop ignores targets",
        "W1, W2 fail",
        (h.seed000_loss, p0, X0, t0),
        {"grad_fn": lambda p, X, t: h.seed000_backward(p, X, t, use_targets=False)},
    )
    p1, x1 = h.seed001_data(n_visible=64, n_hidden=16)
    yield (
        "seed 001 AE 64-16-64, fixed",
        "pass",
        (h.seed001_loss, p1, x1),
        {"grad_fn": lambda p, x: h.seed001_backward(p, x, fixed=True)},
    )
    *_, last = h.seed002_training()
    yield (
        "seed 002 at iteration 250",
        "pass",
        (h.seed002_loss, last, h.SEED002_X, h.SEED002_Y),
        {"grad_fn": h.seed002_backward},
    )
    p3, X3, Y3 = h.seed003_data()
    yield (
        "seed 003 gradient_check_n, bugs",
        "W2, b1 fail",
        (h.seed003_forward, p3, X3, Y3),
        {"grad_fn": h.seed003_backward},
    )
    loss, params, x = h.custom_vjp_model(bug=True)
    yield "custom_vjp, transposed dW", "W fails", (loss, params, x), {}
    for name, make in sorted(h.CORPUS.items()):
        loss, params, args = make()
        yield f"corpus {name} (float32)", "pass", (loss, params, *args), {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    repeat = parser.parse_args().repeat
    print(f"jaxcheck {jaxcheck.__version__}, jax {jax.__version__}, numpy {np.__version__}")
    print(
        f"{platform.processor() or platform.machine()}, {jax.devices()[0].platform}, "
        f"python {platform.python_version()}\n"
    )
    header = f"{'scenario':38} {'expected':13} {'found':24} {'n':>5} {'first s':>8} {'median s':>9}"
    print(header)
    print("-" * len(header))
    for name, expected, call, options in scenarios():
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            result = jaxcheck.check_grad(*call, **options)
            times.append(time.perf_counter() - start)
        bad = sorted({e.path for e in result.failures})
        found = "pass" if result.passed else ", ".join(bad) + " fail"
        print(
            f"{name:38} {expected:13} {found:24} {result.n_checked:>5} {times[0]:>8.2f} "
            f"{statistics.median(times[1:] or times):>9.2f}"
        )


if __name__ == "__main__":
    main()
