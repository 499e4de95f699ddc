"""Time to first verdict: a cold check against the first call of jit(value_and_grad).

    python scripts/latency.py [--models mlp deep cnn nnx hyp2f1] [--no-torch]

Every number is the first call in a fresh process (imports and building the model
excluded), float64, on this machine, side by side in one run:

- `jax.jit(jax.value_and_grad(loss))(params, *data)`: what one training step costs cold,
  the yardstick (ratios are against it);
- `jaxcheck.check_grad` in full and in directional mode, first call and a repeat call, with
  the number of XLA compilations of the first call;
- the full check rerun in a fresh process with `cache_dir=` (JAX's persistent compilation
  cache, filled by a first process): what a regression script pays from its second run;
- `torch.autograd.gradcheck` on the same model in float64 (where torch is installed and the
  model has a torch twin);
- `jax.test_util.check_grads(loss, (params, *data), order=1, modes=["rev"])`.

The goal (issue 15): jaxcheck cold at most 3× the first jit(value_and_grad) call.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import machine  # noqa: E402

MODELS = ("mlp", "deep", "cnn", "nnx", "hyp2f1")
DESCRIPTIONS = {
    "mlp": "tanh MLP 8-16-4",
    "deep": "16 layers 6x6 + bias",
    "cnn": "CNN (2 convs 3x3, dense)",
    "nnx": "flax nnx Linear-BatchNorm-Linear",
    "hyp2f1": "scipy.special.hyp2f1, 4 leaves of 32",
}
KINDS = ("vg", "full", "directional", "cached", "check_grads", "torch")


# ---- the models ------------------------------------------------------------------------------


def build(name: str):
    """(loss, params, data) in JAX, float64."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    jax.config.update("jax_enable_x64", True)
    rng = np.random.default_rng(0)
    if name == "mlp":
        params = {
            "W1": rng.normal(size=(8, 16)) / 3,
            "b1": rng.normal(size=16) / 10,
            "W2": rng.normal(size=(16, 4)) / 4,
            "b2": rng.normal(size=4) / 10,
        }
        x, y = rng.normal(size=(16, 8)), rng.normal(size=(16, 4))

        def loss(p, x, y):
            h = jnp.tanh(x @ p["W1"] + p["b1"])
            return jnp.mean((h @ p["W2"] + p["b2"] - y) ** 2)

        return loss, jax.tree.map(jnp.asarray, params), (jnp.asarray(x), jnp.asarray(y))
    if name == "deep":
        params = [
            {
                "w": jnp.asarray(rng.normal(size=(6, 6)) / 2.5),
                "b": jnp.asarray(rng.normal(size=6) / 10),
            }
            for _ in range(16)
        ]
        x = jnp.asarray(rng.normal(size=(8, 6)))

        def loss(p, x):
            for layer in p:
                x = jnp.tanh(x @ layer["w"] + layer["b"])
            return jnp.sum(x**2)

        return loss, params, (x,)
    if name == "cnn":
        params = {
            "c1": rng.normal(size=(3, 3, 1, 16)) / 3,
            "b1": rng.normal(size=16) / 10,
            "c2": rng.normal(size=(3, 3, 16, 32)) / 12,
            "W": rng.normal(size=(128, 10)) / 11,
            "b": rng.normal(size=10) / 10,
        }
        x = rng.normal(size=(4, 8, 8, 1))
        y = np.eye(10)[rng.integers(0, 10, 4)]

        def conv(x, w):
            dn = ("NHWC", "HWIO", "NHWC")
            return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=dn)

        def loss(p, x, y):
            h = jnp.tanh(conv(x, p["c1"]) + p["b1"])
            h = h.reshape(4, 4, 2, 4, 2, 16).mean(axis=(2, 4))  # 2x2 average pooling
            h = jnp.tanh(conv(h, p["c2"]))
            h = h.reshape(4, 2, 2, 2, 2, 32).mean(axis=(2, 4)).reshape(4, -1)
            logits = h @ p["W"] + p["b"]
            return -jnp.mean(jnp.sum(y * jax.nn.log_softmax(logits), axis=-1))

        params = jax.tree.map(jnp.asarray, params)
        return loss, params, (jnp.asarray(x), jnp.asarray(y))
    if name == "nnx":
        from flax import nnx

        class Net(nnx.Module):
            def __init__(self, rngs):
                self.l1 = nnx.Linear(8, 12, rngs=rngs, param_dtype=jnp.float64)
                self.bn = nnx.BatchNorm(12, rngs=rngs, param_dtype=jnp.float64, dtype=jnp.float64)
                self.l2 = nnx.Linear(12, 5, rngs=rngs, param_dtype=jnp.float64)

            def __call__(self, x):
                return self.l2(jnp.tanh(self.bn(self.l1(x))))

        model = Net(nnx.Rngs(0))
        x, y = jnp.asarray(rng.normal(size=(16, 8))), jnp.asarray(rng.normal(size=(16, 5)))

        def loss(m, x, y):
            return jnp.mean((m(x) - y) ** 2)

        return loss, model, (x, y)
    if name == "hyp2f1":
        from jax.scipy.special import hyp2f1

        params = {
            "a": rng.uniform(0.5, 1.5, 32),
            "b": rng.uniform(0.5, 1.5, 32),
            "c": rng.uniform(2.0, 3.0, 32),
            "x": rng.uniform(0.0, 0.5, 32),
        }

        def loss(p):
            return jnp.sum(hyp2f1(p["a"], p["b"], p["c"], p["x"]))

        return loss, jax.tree.map(jnp.asarray, params), ()
    raise ValueError(name)


def torch_twin(name: str):
    """(loss of a tuple of tensors, the tensors) for torch.autograd.gradcheck, or None."""
    import numpy as np

    try:
        import torch
    except ImportError:
        return None
    import jax

    loss, params, data = build(name)
    if name not in ("mlp", "deep"):
        return None

    def tensor(x, grad=True):
        return torch.tensor(np.asarray(x), dtype=torch.float64, requires_grad=grad)

    leaves = [tensor(x) for x in jax.tree.leaves(params)]
    data = [tensor(x, grad=False) for x in data]
    if name == "mlp":
        x, y = data

        def f(W1, b1, W2, b2):
            return torch.mean((torch.tanh(x @ W1 + b1) @ W2 + b2 - y) ** 2)

        return f, tuple(tensor(params[k]) for k in ("W1", "b1", "W2", "b2"))

    (x,) = data
    order = [(leaves[2 * i + 1], leaves[2 * i]) for i in range(16)]  # dict leaves: b, w
    flat = tuple(t for pair in order for t in pair)

    def f(*ts):
        h = x
        for i in range(16):
            w, b = ts[2 * i], ts[2 * i + 1]
            h = torch.tanh(h @ w + b)
        return torch.sum(h**2)

    return f, flat


# ---- one measurement, in a fresh process -----------------------------------------------------


def child(name: str, kind: str) -> dict:
    if kind == "torch":
        twin = torch_twin(name)
        if twin is None:
            return {}
        import torch

        f, inputs = twin
        t = time.perf_counter()
        ok = torch.autograd.gradcheck(f, inputs)
        return {"first": time.perf_counter() - t, "passed": bool(ok)}
    import jax

    compiles = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, _s, **kw: (
            compiles.append(1) if event == "/jax/core/compile/backend_compile_duration" else None
        )
    )
    loss, params, data = build(name)
    jax.block_until_ready(jax.tree.leaves((params, data)))
    if kind == "vg":
        t = time.perf_counter()
        jax.block_until_ready(jax.jit(jax.value_and_grad(loss))(params, *data))
        return {"first": time.perf_counter() - t, "compiles": len(compiles)}
    if kind == "check_grads":
        from jax.test_util import check_grads

        if not isinstance(params, (dict, list)):
            return {}
        t = time.perf_counter()
        check_grads(lambda p: loss(p, *data), (params,), order=1, modes=["rev"])
        return {"first": time.perf_counter() - t, "passed": True}
    import jaxcheck

    mode, options = kind, {}
    if kind == "cached":
        mode, options = "full", {"cache_dir": os.environ["LATENCY_CACHE_DIR"]}
    t = time.perf_counter()
    result = jaxcheck.check_grad(loss, params, *data, mode=mode, progress=False, **options)
    first, n_compiles = time.perf_counter() - t, len(compiles)
    again = []
    for _ in range(3):
        t = time.perf_counter()
        jaxcheck.check_grad(loss, params, *data, mode=mode, progress=False, **options)
        again.append(time.perf_counter() - t)
    return {
        "first": first,
        "repeat": statistics.median(again),
        "compiles": n_compiles,
        "passed": result.passed,
        "verdict": result.verdict,
        "n": result.n_checked,
    }


def measure(name: str, kind: str) -> dict:
    env = dict(os.environ)
    if kind == "cached":  # a first process fills the cache, the second is timed
        env["LATENCY_CACHE_DIR"] = tempfile.mkdtemp(prefix="jaxcheck-latency-")
        subprocess.run([sys.executable, __file__, "--child", name, kind], env=env,
                       capture_output=True)  # fmt: skip
    out = subprocess.run(
        [sys.executable, __file__, "--child", name, kind], capture_output=True, text=True, env=env
    )
    if out.returncode != 0:
        sys.stderr.write(out.stderr[-2000:])
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "?"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    ap.add_argument("--no-torch", action="store_true", help="skip torch.autograd.gradcheck")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return

    import jax

    print(f"# {datetime.date.today()}, jax {jax.__version__}, {machine()}, "
          f"backend {jax.default_backend()}; seconds, first call in a fresh process")  # fmt: skip
    print()
    print("| model | params | jit(value_and_grad) | jaxcheck full | (compiles) | full repeat "
          "| jaxcheck directional | (compiles) | directional repeat | full, rerun with cache_dir "
          "| torch gradcheck | jax check_grads |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.models:
        row = {k: measure(name, k) for k in KINDS if not (k == "torch" and args.no_torch)}
        base = row["vg"].get("first")

        def cell(r, key="first", rel=True, base=base):
            if key not in r:
                return r.get("error", "—")[:40]
            v = r[key]
            if not rel or base is None:
                return f"{v:.2f}"
            return f"{v:.2f} ({v / base:.1f}×)"

        full, dire = row["full"], row["directional"]
        verdicts = {full.get("verdict"), dire.get("verdict")} - {"passed"}
        flag = f" **{', '.join(map(str, verdicts))}**" if verdicts else ""
        print(
            f"| {DESCRIPTIONS[name]}{flag} | {full.get('n', '?')} | {cell(row['vg'], rel=False)} "
            f"| {cell(full)} | {full.get('compiles', '—')} | {cell(full, 'repeat', False)} "
            f"| {cell(dire)} | {dire.get('compiles', '—')} | {cell(dire, 'repeat', False)} "
            f"| {cell(row['cached'])} | {cell(row.get('torch', {}))} "
            f"| {cell(row['check_grads'])} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
