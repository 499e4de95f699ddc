"""Full-check time against the number of devices the perturbations are split over.

    python scripts/scaling.py                 # simulated CPU devices: 1, 2, 4, 8
    python scripts/scaling.py --devices 1 2   # a subset
    python scripts/scaling.py --real          # the machine's own devices (a GPU box)

Each device count runs in a fresh process (XLA_FLAGS=--xla_force_host_platform_device_count=N
must be set before JAX starts). Per count: the median of --repeat full checks of a tanh MLP
(after one warm-up check that compiles), the ratio to one device, and whether the values are
bit-identical to the single-device run. Simulated devices share the host's cores, so on CPU
the table shows the overhead of sharding, not a speedup beyond the core count.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent("""
    import hashlib, json, os, statistics, sys, time
    import jax, jax.numpy as jnp, numpy as np
    sys.path.insert(0, {root!r})
    import jaxcheck

    n, hidden, repeat = {n}, {hidden}, {repeat}
    rng = np.random.default_rng(0)
    params = {{
        "W1": rng.standard_normal((64, hidden)) / 8, "b1": np.zeros(hidden),
        "W2": rng.standard_normal((hidden, 10)) / np.sqrt(hidden), "b2": np.zeros(10),
    }}
    x, y = rng.standard_normal((32, 64)), rng.standard_normal((32, 10))

    def loss(p, x, y):
        return jnp.mean((jnp.tanh(x @ p["W1"] + p["b1"][None]) @ p["W2"] + p["b2"][None] - y) ** 2)

    devices = jax.devices()[:n]
    jaxcheck.check_grad(loss, params, x, y, devices=devices)  # compile
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        r = jaxcheck.check_grad(loss, params, x, y, devices=devices)
        times.append(time.perf_counter() - t)
    digest = hashlib.sha256(b"".join(np.asarray(r.numeric[k]).tobytes() for k in sorted(params)))
    size = sum(v.size for v in params.values())
    print(json.dumps({{"n": len(devices), "platform": devices[0].platform,
                      "median": statistics.median(times), "passed": r.passed,
                      "params": size, "digest": digest.hexdigest()}}))
""")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--real", action="store_true", help="use the machine's own devices")
    args = parser.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rows = []
    for n in args.devices:
        env = dict(os.environ)
        if not args.real:
            env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={n}"
            env["JAX_PLATFORMS"] = "cpu"
        code = CHILD.format(root=root, n=n, hidden=args.hidden, repeat=args.repeat)
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              text=True, check=True)  # fmt: skip
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    base = rows[0]
    print(f"full check of a 64-{args.hidden}-10 tanh MLP ({base['params']:,} parameters, "
          f"float64), median of {args.repeat}, {os.cpu_count()} host cores")  # fmt: skip
    print(f"{'devices':>8} {'platform':>9} {'seconds':>8} {'vs 1':>6}  identical values")
    for r in rows:
        same = r["digest"] == base["digest"]
        ratio = base["median"] / r["median"]
        print(f"{r['n']:>8} {r['platform']:>9} {r['median']:>8.2f} {ratio:>5.2f}x  {same}")


if __name__ == "__main__":
    main()
