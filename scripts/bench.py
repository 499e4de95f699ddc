"""jaxcheck's full check against the other ways to check a gradient, measured side by side.

    python scripts/bench.py [--models ae-m ae-l mlp-ce] [--sample 2000] [--repeat 3]

One table, one run, one machine: for each model (BENCHMARKS.md), the time of a full
per-element check by

- jaxcheck, first call in a fresh process (compilation included) and a repeat call;
- torch.autograd.gradcheck in its default slow mode on float64 tensors (if torch is
  installed: pip install "jaxcheck[bench]", the CPU build);
- the seeds' NumPy loop (seed 002's computeNumericalGradient: perturb one coordinate, two
  forward passes, repeat), timed on --sample coordinates and scaled to n;
- the plain reading of the card: ravel_pytree, then jit(vmap) over perturbed flat vectors,
  timed on --sample coordinates and scaled to n;
- the black-box bound: 2n forward passes at this machine's float64 matrix-multiply rate,
  measured in this run.

Ratios are "how many times slower than jaxcheck". jaxcheck's first call runs in a child
process (a fresh JAX), as do its memory figures: peak resident memory growth during the check.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time

import numpy as np

MODELS = ("ae-m", "ae-l", "mlp-ce")


# ---- the models, in NumPy terms (each runner converts) ---------------------------------------


def model(name: str):
    """(params as NumPy float64 dict, data tuple, forward FLOPs, loss kind)."""
    rng = np.random.default_rng(0)
    if name in ("ae-m", "ae-l"):
        hidden, m = (64, 8) if name == "ae-m" else (200, 1)
        params = {
            "W1": rng.uniform(-0.3, 0.3, (784, hidden)),
            "W2": rng.uniform(-0.3, 0.3, (hidden, 784)),
        }
        x = rng.uniform(0, 1, (m, 784))
        return params, (x,), 2 * 2 * m * 784 * hidden, "ae"
    sizes = [256, 256, 256, 10]
    params = {}
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        params[f"W{i}"] = rng.normal(size=(a, b)) / np.sqrt(a)
        params[f"b{i}"] = rng.normal(size=(b,)) * 0.1
    x = rng.normal(size=(32, 256))
    y = np.eye(10)[rng.integers(0, 10, 32)]
    flops = 2 * 32 * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    return params, (x, y), flops, "mlp"


def make_loss(kind: str, sigmoid, tanh, log_softmax, total):
    """The model's loss written once, for NumPy, JAX or torch arrays."""
    if kind == "ae":

        def loss(p, x):
            z = sigmoid(sigmoid(x @ p["W1"]) @ p["W2"])
            return total(0.5 * (z - x) ** 2)

        return loss

    def loss(p, x, y):
        h = x
        n = len(p) // 2
        for i in range(n):
            h = h @ p[f"W{i}"] + p[f"b{i}"][None]
            if i < n - 1:
                h = tanh(h)
        return -total(log_softmax(h) * y) / x.shape[0]

    return loss


def jax_loss(kind: str):
    import jax
    import jax.numpy as jnp

    return make_loss(kind, jax.nn.sigmoid, jnp.tanh, jax.nn.log_softmax, jnp.sum)


def numpy_loss(kind: str):
    def sigmoid(z):
        return 1.0 / (1.0 + np.exp(-z))

    def log_softmax(h):
        h = h - h.max(axis=1, keepdims=True)
        return h - np.log(np.sum(np.exp(h), axis=1, keepdims=True))

    return make_loss(kind, sigmoid, np.tanh, log_softmax, np.sum)


# ---- the runners -----------------------------------------------------------------------------


def child(name: str, repeat: int) -> None:
    """In a fresh process: jaxcheck's first call, then repeats; prints one JSON line."""
    import jaxcheck
    from jaxcheck._engine import batched as _engine

    params, data, _, kind = model(name)
    loss = jax_loss(kind)
    peak = PeakMemory()
    t = time.perf_counter()
    with peak:
        result = jaxcheck.check_grad(loss, params, *data, progress=False)
    first = time.perf_counter() - t
    again = []
    for _ in range(repeat):
        t = time.perf_counter()
        jaxcheck.check_grad(loss, params, *data, progress=False)
        again.append(time.perf_counter() - t)
    print(
        json.dumps(
            {
                "first": first,
                "repeat": statistics.median(again),
                "passed": result.passed,
                "n": result.n_checked,
                "unverifiable": len(result.unverifiable),
                "peak_growth": peak.growth,
                "budget": _engine.default_max_memory(),
            }
        )
    )


class PeakMemory:
    """Peak growth of this process's resident memory inside the block (sampled every 5 ms)."""

    def __enter__(self):
        self.base = self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())
        self.growth = self.peak - self.base


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run_jaxcheck(name: str, repeat: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", name, "--repeat", str(repeat)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_torch(name: str) -> float | None:
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(os.cpu_count() or 1)
    params, data, _, kind = model(name)
    keys = list(params)
    tensors = [torch.tensor(params[k], dtype=torch.float64, requires_grad=True) for k in keys]
    tdata = [torch.tensor(d, dtype=torch.float64) for d in data]

    loss = make_loss(
        kind, torch.sigmoid, torch.tanh, lambda h: torch.log_softmax(h, dim=1), torch.sum
    )

    def fn(*ws):
        return loss(dict(zip(keys, ws)), *tdata)

    t = time.perf_counter()
    assert torch.autograd.gradcheck(fn, tuple(tensors))
    return time.perf_counter() - t


def run_seed_loop(name: str, sample: int) -> float:
    """seed 002's computeNumericalGradient on `sample` coordinates, scaled to n."""
    params, data, _, kind = model(name)
    loss = numpy_loss(kind)
    keys = list(params)
    n = sum(params[k].size for k in keys)
    rng = np.random.default_rng(1)
    picks = [
        (k, int(i)) for k, i in zip(rng.choice(keys, sample), rng.integers(0, 1 << 30, sample))
    ]
    eps = 1e-4
    t = time.perf_counter()
    for k, i in picks:
        flat = params[k].reshape(-1)
        i %= flat.size
        old = flat[i]
        flat[i] = old + eps
        plus = loss(params, *data)
        flat[i] = old - eps
        minus = loss(params, *data)
        flat[i] = old
        _ = (plus - minus) / (2 * eps)
    return (time.perf_counter() - t) / sample * n


def run_plain_vmap(name: str, sample: int) -> float:
    """ravel_pytree, then jit(vmap) over 2·sample perturbed flat vectors; scaled to n."""
    import jax
    from jax.flatten_util import ravel_pytree

    params, data, _, kind = model(name)
    loss = jax_loss(kind)
    with jax.enable_x64(True):
        flat, unravel = ravel_pytree(params)
        n = flat.size
        chunk = 64

        def one(i, s):
            return loss(unravel(flat.at[i].add(s)), *data)

        batched = jax.jit(jax.vmap(one))
        idx = np.random.default_rng(2).integers(0, n, chunk).astype(np.int32)
        steps = np.full(chunk, 1e-5)
        batched(idx, steps).block_until_ready()  # compile outside the timing
        rounds = max(1, 2 * sample // chunk)
        t = time.perf_counter()
        for r in range(rounds):
            batched(idx, steps if r % 2 else -steps).block_until_ready()
        per_point = (time.perf_counter() - t) / (rounds * chunk)
    return per_point * 2 * n


def matmul_rate() -> float:
    """float64 FLOP/s of a 2048² matrix product (NumPy's BLAS), best of 5."""
    a = np.random.default_rng(3).normal(size=(2048, 2048))
    best = np.inf
    for _ in range(5):
        t = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - t)
    return 2 * 2048**3 / best


# ---- the table -------------------------------------------------------------------------------


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def fmt(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds:.2f}"


def ratio(other: float | None, ours: float) -> str:
    return "—" if other is None else f"{other / ours:.1f}×"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    ap.add_argument("--sample", type=int, default=2000, help="coordinates timed for the loops")
    ap.add_argument("--repeat", type=int, default=3, help="repeat calls (median)")
    ap.add_argument("--no-torch", action="store_true", help="skip torch.autograd.gradcheck")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.repeat)
        return

    import jax

    import jaxcheck

    try:
        import torch

        torch_version = torch.__version__
    except ImportError:
        torch_version = "not installed"
    rate = matmul_rate()
    print(f"jaxcheck {jaxcheck.__version__} · jax {jax.__version__} · torch {torch_version}")
    print(f"{machine()} · {datetime.date.today()} · float64 matmul {rate / 1e9:.1f} GFLOP/s")
    print("Full per-element check, float64; seconds (ratio = time / jaxcheck's).")
    print()
    head = (
        "| model | n (unverifiable) | jaxcheck first | jaxcheck repeat | torch gradcheck "
        "| seeds' loop* "
        "| ravel+vmap* | black-box bound | peak memory |"
    )
    print(head)
    print("|---" * (head.count("|") - 1) + "|")
    for name in args.models:
        params, _, flops, _ = model(name)
        n = sum(v.size for v in params.values())
        ours = run_jaxcheck(name, args.repeat)
        theirs = None if args.no_torch else run_torch(name)
        loop = run_seed_loop(name, args.sample)
        plain = run_plain_vmap(name, args.sample)
        bound = 2 * n * flops / rate
        first, rep = ours["first"], ours["repeat"]
        verdict = "" if ours["passed"] else " (FAILED)"
        print(
            f"| {name}{verdict} | {n:,} ({ours['unverifiable']}) | {fmt(first)} | {fmt(rep)} "
            f"| {fmt(theirs)} ({ratio(theirs, first)} / {ratio(theirs, rep)}) "
            f"| {fmt(loop)} ({ratio(loop, rep)}) | {fmt(plain)} ({ratio(plain, rep)}) "
            f"| {fmt(bound)} ({ratio(bound, rep)}) "
            f"| {ours['peak_growth'] / 2**20:.0f} MiB of {ours['budget'] / 2**20:.0f} |"
        )
        sys.stdout.flush()
    print()
    print(
        "torch ratios: against jaxcheck's first call / its repeat; other ratios against the "
        "repeat. *timed on --sample coordinates and scaled to n. Peak memory: growth of the "
        "check's process's peak resident memory during the first call, against max_memory's "
        "default. Unverifiable: elements whose gradient is below what finite differences resolve."
    )


if __name__ == "__main__":
    main()
