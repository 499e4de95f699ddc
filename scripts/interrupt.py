"""How fast Ctrl-C stops a long check: a full check of a scan GRU in a fresh process, SIGINT
after T seconds, the time until the process has exited, and the line it printed.

    python scripts/interrupt.py [--batch 4] [--at 3 6 10] [--base PATH]

The model is the one a user reported a 20-minute silent full check on: a GRU over 256 steps,
64 inputs, 128 hidden units (74,112 parameters, float32). `--base PATH` runs the same
interruptions against another checkout of jaxcheck (e.g. `git worktree add /tmp/base HEAD~3`)
side by side, for a before/after table.
"""

from __future__ import annotations

import argparse
import pathlib
import signal
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]

CHILD = """
import jax, jax.numpy as jnp, numpy as np, jaxcheck

def gru(n_in=64, n_h=128, T=256, B={batch}):
    rng = np.random.default_rng(7)
    shape = (n_in + n_h, n_h)
    p = {{k: (rng.standard_normal(shape) * 0.5 / np.sqrt(n_in + n_h)).astype(np.float32)
          for k in ("Wz", "Wr", "Wh")}}
    p |= {{k: np.zeros(n_h, np.float32) for k in ("bz", "br", "bh")}}

    def loss(p, xs, y):
        def step(h, x):
            hx = jnp.concatenate([h, x], axis=-1)
            z = jax.nn.sigmoid(hx @ p["Wz"] + p["bz"])
            r = jax.nn.sigmoid(hx @ p["Wr"] + p["br"])
            c = jnp.tanh(jnp.concatenate([r * h, x], axis=-1) @ p["Wh"] + p["bh"])
            h = (1 - z) * h + z * c
            return h, h

        _, hs = jax.lax.scan(step, jnp.zeros((xs.shape[1], n_h), xs.dtype), xs)
        return jnp.mean((hs - y) ** 2)

    xs = rng.standard_normal((T, B, n_in)).astype(np.float32)
    y = (rng.standard_normal((T, B, n_h)) * 0.5).astype(np.float32)
    return loss, p, (xs, y)

loss, params, data = gru()
jaxcheck.check_grad(loss, params, *data)
"""


def interrupt(checkout: pathlib.Path, batch: int, after: float) -> tuple[float, int, str]:
    """(seconds from SIGINT to exit, exit code, the line jaxcheck printed)."""
    # run in the checkout: its jaxcheck comes first on sys.path, before an installed one
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import jaxcheck; assert jaxcheck.__file__.startswith("
            f"{str(checkout)!r}), jaxcheck.__file__\n" + CHILD.format(batch=batch),
        ],
        cwd=checkout,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(after)
    sent = time.monotonic()
    child.send_signal(signal.SIGINT)
    child.wait()
    gone = time.monotonic() - sent
    lines = [line for line in child.stderr.read().splitlines() if "interrupted" in line]
    return gone, child.returncode, lines[-1] if lines else "(no line)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--at", type=float, nargs="+", default=[3.0, 6.0, 10.0])
    parser.add_argument("--base", type=pathlib.Path, help="another checkout, side by side")
    args = parser.parse_args()
    checkouts = [("this", ROOT)] + ([("base", args.base)] if args.base else [])
    print(f"scan GRU, 74,112 parameters, batch {args.batch}: SIGINT after T s of a full check\n")
    print("| checkout | T (s) | exit after SIGINT (s) | exit code | line |")
    print("|---|---|---|---|---|")
    for after in args.at:
        for name, path in checkouts:
            gone, code, line = interrupt(path, args.batch, after)
            print(f"| {name} | {after:g} | {gone:.2f} | {code} | {line[:100]} |", flush=True)


if __name__ == "__main__":
    main()
