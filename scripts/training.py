"""Trust in a training loop: the verdicts of jaxcheck at every check of a run on correct models.

Correct models are trained to well past convergence and checked every k steps, once with
`check_grad` at its default options (`jax.grad(loss)` under test) and once with `GradMonitor`
(its defaults, `on_failure="ignore"` so that the log stays readable). The gradient is correct,
so any FAILED verdict is a false failure (goal: 0); INCONCLUSIVE verdicts are counted too. At
the last step an error is planted in ONE element of the gradient (`jax.grad(loss)` with its
largest element, over all leaves, multiplied by 1.02 in float32, by 1.25 in bfloat16, whose
tolerance is 1/16 of |g|): it must be caught and located (the worst failing element reported
is the planted one).

Runs:
  a  the 2-3-1 sigmoid network with squared loss of the question "why does my gradient check
     fail near the minimum" (with biases, 4 XOR-like samples), plain SGD with a decaying
     learning rate, float32, 300 iterations, checked every 10
  b  an 8-32-1 tanh MLP trained with Adam on 128 samples, float32, 300 steps, every 25
  c  a 4-16-1 sigmoid MLP trained with Adam, float32, 400 steps, every 25
  d  the same MLP with bfloat16 parameters (and data)
  e  a small transformer block (flax nnx: LayerNorm, single-head MultiHeadAttention, LayerNorm,
     MLP, linear head), float32, trained 100 steps with Adam, every 25
  f  a custom_vjp rule redefined between two checks: a 1.5x wrong backward checked (must
     FAIL), then redefined correctly under the same global name while the loss function object
     stays the same, checked again (must PASS)

    python scripts/training.py            # every run (a few minutes on 2 CPU cores)
    python scripts/training.py --quick    # fewer steps and checks
    python scripts/training.py --only a,f # some runs

Seeds are fixed. Prints a markdown table at the end; exits 1 when a correct gradient FAILED,
a planted error was missed or mislocated, or a run raised. The time column is the time spent
in that checker's checks (training excluded); at each checked step check_grad runs first, so it
pays the compilations and GradMonitor reuses its executables.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxcheck

# The planted error: 2% in float32; in bfloat16, whose tolerance is 1/16 of |g| (a correct
# bfloat16 gradient is within a few of its units of 2^-8), 25%.
PLANTED_FACTOR = {"float32": 1.02, "bfloat16": 1.25}


@dataclasses.dataclass
class Row:
    run: str
    checker: str
    dtype: str
    checks: int = 0
    failed: int = 0
    inconclusive: int = 0
    planted: str = "-"
    end: str = "-"  # loss and max|g| at the last step
    seconds: float = 0.0
    note: str = ""
    ok: bool = True  # as the goal says: no FAILED, the planted error located, no exception


# ---- the planted error and where it is reported -------------------------------------------


def _names(path: str) -> tuple[str, ...]:
    """A key path as a tuple of names, whatever the spelling: "['a']['b'].value" and ".a.b"."""
    return tuple(n for n in re.findall(r"[A-Za-z_]\w*|\d+", path) if n != "value")


@dataclasses.dataclass(frozen=True)
class Planted:
    leaf: int  # position among the gradient's leaves
    path: str
    index: tuple[int, ...]

    @classmethod
    def largest(cls, grads: Any) -> Planted:
        """The element with the largest |g| over every leaf."""
        flat, _ = jax.tree_util.tree_flatten_with_path(grads)
        best = (-1.0, 0, "", ())
        for i, (path, g) in enumerate(flat):
            a = np.abs(np.asarray(g, np.float64))
            if a.size and a.max() > best[0]:
                index = tuple(int(j) for j in np.unravel_index(int(a.argmax()), a.shape))
                best = (float(a.max()), i, jax.tree_util.keystr(path), index)
        return cls(best[1], best[2], best[3])

    def grad_fn(self, loss: Callable[..., Any], factor: float):
        grad = jax.grad(loss)

        def planted(params, *args):
            leaves, tree = jax.tree_util.tree_flatten(grad(params, *args))
            leaves[self.leaf] = leaves[self.leaf].at[self.index].multiply(factor)
            return jax.tree_util.tree_unflatten(tree, leaves)

        return planted

    def name(self) -> str:
        return f"{self.path.removesuffix('.value')}[{', '.join(map(str, self.index))}]"

    def verdict(self, result: jaxcheck.CheckResult) -> str:
        """Caught ("yes <element>") when the check failed with the planted element as the worst
        failure (saying how many others failed with it); else why not."""
        if result.verdict != "failed":
            return f"no ({result.verdict})"
        worst = result.failures[0] if result.failures else None
        if worst and _names(worst.path) == _names(self.path) and tuple(worst.index) == self.index:
            others = len(result.failures) - 1
            return f"yes {self.name()}" + (f" (+{others} others failing)" if others else "")
        where = worst.name if worst else "?"
        return f"no (worst failure {where} of {len(result.failures)}; planted {self.name()})"


# ---- one run: train, check every k steps with both checkers ------------------------------


@dataclasses.dataclass
class Run:
    name: str
    loss: Callable[..., Any]
    params: Any
    args: tuple
    steps: int
    every: int
    update: Callable[[Any, Any, Any], tuple[Any, Any]]  # (params, grads, state) -> new
    state: Any = None


def _max_abs(tree: Any) -> float:
    return max(float(np.abs(np.asarray(g, np.float64)).max()) for g in jax.tree.leaves(tree))


def train_and_check(run: Run) -> list[Row]:
    """Train; at steps 0, every, ..., steps check with check_grad and with GradMonitor."""
    dtype = str(jax.tree.leaves(run.params)[0].dtype)
    rows = [Row(run.name, "check_grad", dtype), Row(run.name, "GradMonitor", dtype)]
    seconds = [0.0, 0.0]
    monitor = jaxcheck.GradMonitor(run.loss, every=run.every, on_failure="ignore")
    value_and_grad = jax.jit(jax.value_and_grad(run.loss))
    params, state = run.params, run.state
    for step in range(run.steps + 1):
        value, grads = value_and_grad(params, *run.args)
        if step % run.every == 0:
            t = time.perf_counter()
            result = jaxcheck.check_grad(run.loss, params, *run.args, progress=False)
            seconds[0] += time.perf_counter() - t
            t = time.perf_counter()
            monitored = monitor(step, params, *run.args, loss=value)
            seconds[1] += time.perf_counter() - t
            for row, res in zip(rows, (result, monitored)):
                row.checks += 1
                row.failed += res.verdict == "failed"
                row.inconclusive += res.verdict == "inconclusive"
                if res.verdict != "passed" and not row.note:
                    row.note = f"first {res.verdict.upper()} at step {step}: {_brief(res)}"
        else:
            monitor(step, params, *run.args, loss=value)
        if step < run.steps:
            params, state = run.update(params, grads, state)
    planted = Planted.largest(grads)
    grad_fn = planted.grad_fn(run.loss, PLANTED_FACTOR[dtype])
    t = time.perf_counter()
    result = jaxcheck.check_grad(run.loss, params, *run.args, grad_fn=grad_fn, progress=False)
    seconds[0] += time.perf_counter() - t
    t = time.perf_counter()
    late = jaxcheck.GradMonitor(run.loss, every=1, grad_fn=grad_fn, on_failure="ignore")
    monitored = late(run.steps, params, *run.args)
    seconds[1] += time.perf_counter() - t
    end = f"{float(value):.2e}, {_max_abs(grads):.1e}"
    for row, res, s in zip(rows, (result, monitored), seconds):
        row.planted, row.end, row.seconds = planted.verdict(res), end, s
        row.ok = row.failed == 0 and row.planted.startswith(f"yes {planted.name()}")
    return rows


def _brief(result: jaxcheck.CheckResult) -> str:
    """The worst element of a check that did not pass, in a line."""
    if result.failures:
        f = result.failures[0]
        return (
            f"{result.n_failed} of {result.n_checked} wrong, worst {f.name} analytic "
            f"{f.analytic:.6g} numeric {f.numeric:.6g} tolerance {f.tolerance:.1e}"
        )
    unverifiable = sum(leaf.n_unverifiable for leaf in result.leaves.values())
    weak = [p for p, leaf in result.leaves.items() if leaf.verdict == "inconclusive"]
    return f"{unverifiable} of {result.n_checked} unverifiable, in {', '.join(weak) or '?'}"


def _sgd(rates: np.ndarray):
    def update(params, grads, step):
        step = step or 0
        new = jax.tree.map(lambda p, g: p - jnp.asarray(rates[step], p.dtype) * g, params, grads)
        return new, step + 1

    return update


def _adam(rate: float, params: Any):
    opt = optax.adam(rate)

    @jax.jit
    def step(params, grads, state):
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return step, opt.init(params)


# ---- the models ----------------------------------------------------------------------------


def sigmoid_231_loss(p, X, Y):
    hidden = jax.nn.sigmoid(X @ p["W1"] + p["b1"])
    yhat = jax.nn.sigmoid(hidden @ p["W2"] + p["b2"])
    return 0.5 * jnp.sum((Y - yhat) ** 2)


def run_a(quick: bool) -> Run:
    X = jnp.array([[0, 0], [0, 1], [1, 0], [1, 1]], jnp.float32)
    Y = jnp.array([[0.1], [0.9], [0.9], [0.1]], jnp.float32)
    rng = np.random.default_rng(3)
    params = {
        "W1": jnp.asarray(rng.normal(size=(2, 3)) * 2, jnp.float32),
        "b1": jnp.zeros(3, jnp.float32),
        "W2": jnp.asarray(rng.normal(size=(3, 1)) * 2, jnp.float32),
        "b2": jnp.zeros(1, jnp.float32),
    }
    steps = 100 if quick else 300
    rates = np.linspace(20.0, 5.0, steps)
    return Run("a: 2-3-1 sigmoid, SGD", sigmoid_231_loss, params, (X, Y), steps, 10, _sgd(rates))


def _mlp_params(sizes, rng, dtype):
    params = {}
    for i, (m, n) in enumerate(zip(sizes[:-1], sizes[1:])):
        params[f"W{i + 1}"] = jnp.asarray(rng.normal(size=(m, n)) / np.sqrt(m), dtype)
        params[f"b{i + 1}"] = jnp.zeros(n, dtype)
    return params


def tanh_mlp_loss(p, x, y):
    h = jnp.tanh(x @ p["W1"] + p["b1"])
    return jnp.mean((h @ p["W2"] + p["b2"] - y) ** 2)


def run_b(quick: bool) -> Run:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(128, 8))
    y = np.sin(x @ rng.normal(size=(8, 1)) / 2) + 0.1 * x[:, :1] ** 2
    params = _mlp_params((8, 32, 1), rng, jnp.float32)
    update, state = _adam(1e-2, params)
    data = (jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32))
    steps = 100 if quick else 300
    return Run("b: 8-32-1 tanh, Adam", tanh_mlp_loss, params, data, steps, 25, update, state)


def sigmoid_mlp_loss(p, x, y):
    h = jax.nn.sigmoid(x @ p["W1"] + p["b1"])
    return jnp.mean((jax.nn.sigmoid(h @ p["W2"] + p["b2"]) - y) ** 2)


def run_cd(quick: bool, dtype) -> Run:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(64, 4))
    y = (np.sum(x[:, :2] ** 2, axis=1, keepdims=True) < 1.4).astype(float) * 0.8 + 0.1
    params = _mlp_params((4, 16, 1), rng, dtype)
    update, state = _adam(3e-2, params)
    data = (jnp.asarray(x, dtype), jnp.asarray(y, dtype))
    steps = 100 if quick else 400
    name = "c: 4-16-1 sigmoid, Adam" if dtype == jnp.float32 else "d: 4-16-1 sigmoid, Adam, bf16"
    return Run(name, sigmoid_mlp_loss, params, data, steps, 25, update, state)


def run_e(quick: bool) -> Run:
    from flax import nnx

    class Block(nnx.Module):
        def __init__(self, d: int, rngs: nnx.Rngs):
            self.ln1 = nnx.LayerNorm(d, rngs=rngs)
            self.attn = nnx.MultiHeadAttention(1, d, decode=False, rngs=rngs)
            self.ln2 = nnx.LayerNorm(d, rngs=rngs)
            self.up = nnx.Linear(d, 2 * d, rngs=rngs)
            self.down = nnx.Linear(2 * d, d, rngs=rngs)
            self.head = nnx.Linear(d, 1, rngs=rngs)

        def __call__(self, x):
            x = x + self.attn(self.ln1(x))
            x = x + self.down(jax.nn.gelu(self.up(self.ln2(x))))
            return self.head(x)

    graphdef, params = nnx.split(Block(8, nnx.Rngs(0)))

    def loss(params, x, y):
        return jnp.mean((nnx.merge(graphdef, params)(x) - y) ** 2)

    rng = np.random.default_rng(4)
    x = rng.normal(size=(4, 6, 8))
    y = np.cumsum(x[..., :1], axis=1) / np.arange(1, 7)[:, None]  # running mean: needs attention
    update, state = _adam(1e-2, params)
    data = (jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32))
    steps = 50 if quick else 100
    return Run("e: transformer block (nnx), Adam", loss, params, data, steps, 25, update, state)


# ---- f: a rule redefined between two checks ------------------------------------------------


def _rule_with(scale: float):
    @jax.custom_vjp
    def softplus(x):
        return jnp.logaddexp(x, 0.0)

    def fwd(x):
        return softplus(x), x

    def bwd(x, g):
        return (scale * g * jax.nn.sigmoid(x),)

    softplus.defvjp(fwd, bwd)
    return softplus


rule = _rule_with(1.5)


def rule_loss(p, x):
    return jnp.sum(rule(x @ p["W"]) ** 2)


def run_f() -> list[Row]:
    global rule
    rng = np.random.default_rng(5)
    params = {"W": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32)}
    x = jnp.asarray(rng.normal(size=(4, 3)), jnp.float32)
    rows = []
    for label, scale, expected in (("wrong bwd (1.5x)", 1.5, "failed"), ("fixed", 1.0, "passed")):
        rule = _rule_with(scale)  # the same global name; rule_loss is the same object
        t = time.perf_counter()
        result = jaxcheck.check_grad(rule_loss, params, x, progress=False)
        row = Row(f"f: rule redefined, {label}", "check_grad", "float32", checks=1)
        row.seconds = time.perf_counter() - t
        row.failed = int(result.verdict == "failed")
        row.inconclusive = int(result.verdict == "inconclusive")
        row.planted = f"{result.verdict.upper()} (must be {expected.upper()})"
        row.ok = result.verdict == expected
        if not row.ok:
            row.note = f"wrong verdict: {_brief(result)}"
        rows.append(row)
    return rows


# ---- main ----------------------------------------------------------------------------------


RUNS: dict[str, Callable[[bool], Any]] = {
    "a": run_a,
    "b": run_b,
    "c": lambda quick: run_cd(quick, jnp.float32),
    "d": lambda quick: run_cd(quick, jnp.bfloat16),
    "e": run_e,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps (and so checks)")
    parser.add_argument("--only", default="abcdef", help="runs to do, e.g. 'a,f' (default all)")
    opts = parser.parse_args()
    wanted = [c for c in opts.only if c.isalpha()]
    rows: list[Row] = []
    t_all = time.perf_counter()
    for key in wanted:
        t = time.perf_counter()
        try:
            if key == "f":
                new = run_f()
            else:
                new = train_and_check(RUNS[key](opts.quick))
        except Exception as e:  # a run that raises is reported, not fatal
            first = (str(e).splitlines() or [""])[0][:120]
            new = [Row(key, "-", "-", note=f"error: {type(e).__name__}: {first}", ok=False)]
            traceback.print_exc()
        rows += new
        for row in new:
            print(f"{row.run} [{row.checker}]: {row.checks} checks, {row.failed} FAILED, "
                  f"{row.inconclusive} INCONCLUSIVE, planted {row.planted} "
                  f"({time.perf_counter() - t:.1f} s) {row.note}", flush=True)  # fmt: skip
    header = ("run", "checker", "dtype", "checks", "FAILED", "INCONCLUSIVE", "planted caught "
              "at the end", "loss, max abs g at end", "time (s)", "note")  # fmt: skip
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        note = r.note.replace("|", "\\|")[:160]
        cells = (r.run, r.checker, r.dtype, r.checks, r.failed, r.inconclusive, r.planted,
                 r.end, f"{r.seconds:.1f}", note)  # fmt: skip
        print("| " + " | ".join(str(c) for c in cells) + " |")
    bad = [r for r in rows if not r.ok]
    total = sum(r.failed for r in rows if not r.run.startswith("f: rule redefined, wrong"))
    print(f"\n{total} FAILED verdicts on correct gradients, "
          f"{sum(r.inconclusive for r in rows)} INCONCLUSIVE, "
          f"{len(rows) - len(bad)} of {len(rows)} rows as expected; "
          f"{time.perf_counter() - t_all:.0f} s in all")  # fmt: skip
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
