"""Directional mode on a 10-million-parameter float32 MLP: a planted wrong element is found.

    python scripts/large_model.py [--hidden 2048] [--batch 32] [--seed 0] [--planted-only]

Builds a 784-2048-2048-2048-10 tanh MLP with biases (10,020,874 parameters, float32) and
softmax cross-entropy on a batch of random data, then

1. checks jax.grad in mode="directional" (it must pass);
2. plants one wrong element in the gradient of the middle weight matrix, an error of 10% of
   that leaf's gradient norm, and checks again: the report must name that leaf and index.

Prints the time of each check (first call, compilation included) and the result tables.
`--planted-only` skips step 1, so the planted check is timed alone in a fresh process
(all compilation included).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

import jaxcheck


def build(hidden: int, batch: int, seed: int):
    rng = np.random.default_rng(seed)
    sizes = [784, hidden, hidden, hidden, 10]
    params = {}
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        params[f"W{i}"] = jnp.asarray(rng.normal(size=(a, b)) / np.sqrt(a), jnp.float32)
        params[f"b{i}"] = jnp.asarray(rng.normal(size=b) * 0.1, jnp.float32)
    x = jnp.asarray(rng.normal(size=(batch, 784)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 10, batch))

    def loss(p, x, y):
        h = x
        for i in range(len(sizes) - 1):
            h = h @ p[f"W{i}"] + p[f"b{i}"][None]
            if i < len(sizes) - 2:
                h = jnp.tanh(h)
        logp = jax.nn.log_softmax(h)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    return loss, params, (x, y)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--planted-only", action="store_true", help="skip the correct check")
    opts = ap.parse_args()
    loss, params, args = build(opts.hidden, opts.batch, opts.seed)
    n = sum(int(v.size) for v in params.values())
    print(f"jaxcheck {jaxcheck.__version__} · jax {jax.__version__} · {jax.devices()[0]}")
    print(f"MLP 784-{opts.hidden}x3-10, float32, {n:,} parameters, batch {opts.batch}")

    good, t_good = None, float("nan")
    if not opts.planted_only:
        t = time.perf_counter()
        good = jaxcheck.check_grad(loss, params, *args, mode="directional", progress=False)
        t_good = time.perf_counter() - t
        print(f"\ncorrect gradient: {'PASSED' if good.passed else 'FAILED'} in {t_good:.1f} s")
        print(good)

    g = jax.grad(loss)(params, *args)
    target, index = "W1", (1234, 567)
    wrong = np.array(g[target])
    wrong[index] += 0.1 * np.linalg.norm(wrong)
    planted = {**g, target: jnp.asarray(wrong)}
    t = time.perf_counter()
    bad = jaxcheck.check_grad(
        loss, params, *args, grad_fn=lambda p, x, y: planted, mode="directional", progress=False
    )
    t_bad = time.perf_counter() - t
    found = [(e.path, e.index) for e in bad.failures]
    ok = found == [(f"['{target}']", index)]
    print(f"\nplanted error at {target}{list(index)}: found {found} in {t_bad:.1f} s")
    print(bad)
    passes = "not run" if good is None else str(good.passed)
    print(
        f"\nsummary: correct passes: {passes} ({t_good:.1f} s); planted element found "
        f"exactly: {ok} ({t_bad:.1f} s)"
    )


if __name__ == "__main__":
    main()
