"""Verdicts on real models and kernels that nobody on this project wrote, each correct and with a
planted bug in its gradient.

Each case is a model from flax (nnx and linen), equinox, JAX itself or Pallas (kernels in
interpret mode), at a small size, checked twice with `check_grad`'s default options:

- the correct gradient (`jax.grad(loss)` under test): any FAILED is a false failure, any
  INCONCLUSIVE is counted;
- a planted bug, of one of two kinds: the library's own gradient transform (`jax.grad`,
  `nnx.grad`, `eqx.filter_grad`) with one element of one leaf multiplied by a wrong factor (x1.1
  in float32, x1.5 in bfloat16, whose tolerance is 1/16), the element with the largest |g| of
  that leaf; or a wrong backward rule in a custom_vjp (a scale or a term dropped), which makes
  a whole leaf wrong. Caught means FAILED with the worst failure at the planted element (for a
  wrong rule: every failure in the planted leaf).

An exception is caught and its first line shown in the table; the script goes on. Cases in
float32, and in bfloat16 parameters (and data) where a model is trained that way.

    python scripts/models.py                     # every case (a few minutes on 2 CPU cores)
    python scripts/models.py --quick             # float32 only; Pallas attention and the
                                                 # native-precision Pallas rows left out
    python scripts/models.py --only 'pallas|eqx' # cases whose "name dtype" matches

Prints a markdown table, then the totals: false FAILED, INCONCLUSIVE, planted caught x/y.
Exits 1 when a correct gradient FAILED, a planted bug was missed, or a case raised.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import re
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxcheck

F32, BF16 = jnp.float32, jnp.bfloat16


@dataclasses.dataclass(frozen=True)
class Model:
    """A model ready to check: `fn(params, *args)`, and where its bug is planted."""

    fn: Callable[..., Any]
    params: Any
    args: tuple
    leaf: str  # the planted leaf's path, in any spelling ("['a']['b']", ".a.b")
    grad: Callable[[Callable[..., Any]], Callable[..., Any]] = jax.grad  # the library's
    bug: Callable[..., Any] | None = None  # fn with a wrong backward rule, else a wrong factor
    options: dict = dataclasses.field(default_factory=dict)  # beyond the defaults


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    dtype: Any
    build: Callable[[Any], Model]
    slow: bool = False  # left out by --quick

    @property
    def label(self) -> str:
        return f"{self.name} {jnp.dtype(self.dtype).name}"


def _names(path: str) -> tuple[str, ...]:
    """A key path as a tuple of names, whatever the spelling: "['a']['b'].value" and ".a.b"."""
    return tuple(n for n in re.findall(r"[A-Za-z_]\w*|\d+", path) if n != "value")


def _data(rng: np.random.Generator, *shape: int, dtype=F32, scale: float = 1.0):
    return jnp.asarray(rng.normal(size=shape) * scale, dtype)


def _mse(pred, y):
    return jnp.mean((pred.astype(F32) - y.astype(F32)) ** 2)


# ---- flax nnx ------------------------------------------------------------------------------


def nnx_transformer(dtype) -> Model:
    from flax import nnx

    class Block(nnx.Module):
        def __init__(self, d: int, heads: int, rngs: nnx.Rngs):
            kw = dict(dtype=dtype, param_dtype=dtype, rngs=rngs)
            self.ln1 = nnx.LayerNorm(d, **kw)
            self.attn = nnx.MultiHeadAttention(heads, d, decode=False, **kw)
            self.ln2 = nnx.LayerNorm(d, **kw)
            self.up = nnx.Linear(d, 2 * d, **kw)
            self.down = nnx.Linear(2 * d, d, **kw)

        def __call__(self, x):
            x = x + self.attn(self.ln1(x))
            return x + self.down(jax.nn.gelu(self.up(self.ln2(x))))

    def loss(model, x, y):
        return _mse(model(x), y)

    rng = np.random.default_rng(0)
    x, y = _data(rng, 2, 5, 8, dtype=dtype), _data(rng, 2, 5, 8, dtype=dtype)
    return Model(loss, Block(8, 2, nnx.Rngs(0)), (x, y), ".attn.query.kernel", nnx.grad)


def nnx_gru(dtype) -> Model:
    from flax import nnx

    rnn = nnx.RNN(nnx.GRUCell(3, 6, dtype=dtype, param_dtype=dtype, rngs=nnx.Rngs(1)))

    def loss(model, x, y):
        return _mse(model(x), y)

    rng = np.random.default_rng(1)
    x, y = _data(rng, 2, 5, 3, dtype=dtype), _data(rng, 2, 5, 6, dtype=dtype, scale=0.5)
    return Model(loss, rnn, (x, y), ".cell.dense_h.kernel", nnx.grad)


def nnx_conv_batchnorm(dtype) -> Model:
    from flax import nnx

    class ConvNet(nnx.Module):
        def __init__(self, rngs: nnx.Rngs):
            kw = dict(dtype=dtype, param_dtype=dtype, rngs=rngs)
            self.conv = nnx.Conv(2, 4, (3, 3), **kw)
            self.bn = nnx.BatchNorm(4, **kw)  # train mode: batch statistics
            self.head = nnx.Linear(4, 1, **kw)

        def __call__(self, x):
            h = jax.nn.relu(self.bn(self.conv(x)))
            return self.head(h.mean(axis=(1, 2)))

    def loss(model, x, y):
        return _mse(model(x), y)

    rng = np.random.default_rng(2)
    x, y = _data(rng, 4, 6, 6, 2, dtype=dtype), _data(rng, 4, 1, dtype=dtype)
    model = ConvNet(nnx.Rngs(2))
    model.train()
    return Model(loss, model, (x, y), ".conv.kernel", nnx.grad)


def nnx_embed(dtype) -> Model:
    import optax
    from flax import nnx

    class Tagger(nnx.Module):
        def __init__(self, rngs: nnx.Rngs):
            kw = dict(dtype=dtype, param_dtype=dtype, rngs=rngs)
            self.embed = nnx.Embed(20, 8, **kw)
            self.head = nnx.Linear(8, 5, **kw)

        def __call__(self, tokens):
            return self.head(jnp.tanh(self.embed(tokens)).mean(axis=1))

    def loss(model, tokens, labels):
        logits = model(tokens).astype(F32)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    rng = np.random.default_rng(3)
    tokens = jnp.asarray(rng.integers(0, 20, size=(4, 6)))
    labels = jnp.asarray(rng.integers(0, 5, size=(4,)))
    return Model(loss, Tagger(nnx.Rngs(3)), (tokens, labels), ".embed.embedding", nnx.grad)


# ---- flax linen ----------------------------------------------------------------------------


def linen_dense_layernorm(dtype) -> Model:
    import flax.linen as nn

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.Dense(16, dtype=dtype, param_dtype=dtype)(x)
            x = nn.gelu(nn.LayerNorm(dtype=dtype, param_dtype=dtype)(x))
            return nn.Dense(1, dtype=dtype, param_dtype=dtype)(x)

    net = Net()
    rng = np.random.default_rng(4)
    x, y = _data(rng, 8, 5, dtype=dtype), _data(rng, 8, 1, dtype=dtype)
    variables = net.init(jax.random.key(4), x)

    def loss(variables, x, y):
        return _mse(net.apply(variables, x), y)

    return Model(loss, variables, (x, y), "['params']['Dense_0']['kernel']")


# ---- equinox -------------------------------------------------------------------------------


def _eqx_cast(model, dtype):
    import equinox as eqx

    return jax.tree.map(lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a, model)


def eqx_mlp(dtype) -> Model:
    import equinox as eqx

    mlp = eqx.nn.MLP(6, 1, 16, 2, activation=jax.nn.softplus, key=jax.random.key(5))

    def loss(model, x, y):
        return _mse(jax.vmap(model)(x), y)

    rng = np.random.default_rng(5)
    x, y = _data(rng, 8, 6, dtype=dtype), _data(rng, 8, 1, dtype=dtype)
    return Model(loss, _eqx_cast(mlp, dtype), (x, y), ".layers[1].weight", eqx.filter_grad)


def eqx_attention(dtype) -> Model:
    import equinox as eqx

    mha = eqx.nn.MultiheadAttention(2, 8, inference=True, key=jax.random.key(6))

    def loss(model, x, y):
        return _mse(model(x, x, x), y)

    rng = np.random.default_rng(6)
    x, y = _data(rng, 6, 8, dtype=dtype), _data(rng, 6, 8, dtype=dtype)
    return Model(loss, _eqx_cast(mha, dtype), (x, y), ".query_proj.weight", eqx.filter_grad)


# ---- plain JAX -----------------------------------------------------------------------------


def scan_gru(dtype) -> Model:
    rng = np.random.default_rng(7)
    n_in, n_h = 3, 5
    params = {k: _data(rng, n_in + n_h, n_h, dtype=dtype, scale=0.5) for k in ("Wz", "Wr", "Wh")}
    params |= {k: jnp.zeros(n_h, dtype) for k in ("bz", "br", "bh")}

    def loss(p, xs, y):
        def step(h, x):
            hx = jnp.concatenate([h, x], axis=-1)
            z = jax.nn.sigmoid(hx @ p["Wz"] + p["bz"])
            r = jax.nn.sigmoid(hx @ p["Wr"] + p["br"])
            cand = jnp.tanh(jnp.concatenate([r * h, x], axis=-1) @ p["Wh"] + p["bh"])
            h = (1 - z) * h + z * cand
            return h, h

        h0 = jnp.zeros((xs.shape[1], n_h), xs.dtype)
        _, hs = jax.lax.scan(step, h0, xs)  # xs: (time, batch, features)
        return _mse(hs, y)

    xs, y = _data(rng, 6, 2, n_in, dtype=dtype), _data(rng, 6, 2, n_h, dtype=dtype, scale=0.5)
    return Model(loss, params, (xs, y), "['Wh']")


def moe_topk(dtype) -> Model:
    rng = np.random.default_rng(8)
    d, experts, hidden = 4, 4, 8
    params = {
        "router": _data(rng, d, experts, dtype=dtype),
        "W1": _data(rng, experts, d, hidden, dtype=dtype, scale=0.5),
        "W2": _data(rng, experts, hidden, d, dtype=dtype, scale=0.5),
    }

    def loss(p, x, y):
        top, chosen = jax.lax.top_k(x @ p["router"], 2)  # 2 of 4 experts per token
        gates = jax.nn.softmax(top, axis=-1)
        h = jnp.tanh(jnp.einsum("nd,edh->neh", x, p["W1"]))
        out = jnp.einsum("neh,ehd->ned", h, p["W2"])
        picked = jnp.take_along_axis(out, chosen[..., None], axis=1)
        return _mse(jnp.sum(gates[..., None] * picked, axis=1), y)

    x, y = _data(rng, 8, d, dtype=dtype), _data(rng, 8, d, dtype=dtype)
    return Model(loss, params, (x, y), "['W1']")


def dot_product_attention(dtype) -> Model:
    rng = np.random.default_rng(9)
    params = {k: _data(rng, 2, 6, 2, 4, dtype=dtype) for k in ("q", "k", "v")}

    def loss(p, w):
        out = jax.nn.dot_product_attention(p["q"], p["k"], p["v"], is_causal=True)
        return jnp.sum(out.astype(F32) * w)

    return Model(loss, params, (_data(rng, 2, 6, 2, 4),), "['k']")


def _layer_norm_rule(drop_rstd: bool):
    """A layer norm over the last axis with a handwritten custom_vjp; `drop_rstd` plants the
    bug of a backward that forgets the 1/σ scale of dx."""

    @jax.custom_vjp
    def layer_norm(h, gamma, beta):
        return _forward(h, gamma, beta)[0]

    def _forward(h, gamma, beta):
        mean = h.mean(-1, keepdims=True)
        rstd = jax.lax.rsqrt(((h - mean) ** 2).mean(-1, keepdims=True) + 1e-5)
        xhat = (h - mean) * rstd
        return xhat * gamma + beta, (xhat, rstd, gamma)

    def bwd(res, g):
        xhat, rstd, gamma = res
        dxhat = g * gamma
        dh = dxhat - dxhat.mean(-1, keepdims=True) - xhat * (dxhat * xhat).mean(-1, keepdims=True)
        dh = dh if drop_rstd else dh * rstd
        return dh, (g * xhat).sum(0), g.sum(0)

    layer_norm.defvjp(_forward, bwd)
    return layer_norm


def custom_layer_norm(dtype) -> Model:
    rng = np.random.default_rng(10)
    params = {
        "W": _data(rng, 5, 8, dtype=dtype, scale=2.0),
        "gamma": jnp.asarray(1 + 0.1 * rng.normal(size=8), dtype),
        "beta": _data(rng, 8, dtype=dtype, scale=0.1),
    }

    def make(rule):
        def loss(p, x, y):
            return _mse(jnp.tanh(rule(x @ p["W"], p["gamma"], p["beta"])), y)

        return loss

    x, y = _data(rng, 6, 5, dtype=dtype), _data(rng, 6, 8, dtype=dtype, scale=0.5)
    good, bad = make(_layer_norm_rule(False)), make(_layer_norm_rule(True))
    return Model(good, params, (x, y), "['W']", bug=bad)


# ---- Pallas, in interpret mode -------------------------------------------------------------


def pallas_norm(kind: str, precision: str):
    def build(dtype) -> Model:
        from jax.experimental.pallas.ops.gpu import layer_norm, rms_norm

        norm = {"layer_norm": layer_norm.layer_norm, "rms_norm": rms_norm.rms_norm}[kind]
        rng = np.random.default_rng(11)
        params = {
            "W": _data(rng, 16, 16, dtype=dtype, scale=0.5),
            "weight": jnp.asarray(1 + 0.1 * rng.normal(size=16), dtype),
            "bias": _data(rng, 16, dtype=dtype, scale=0.1),
        }

        def loss(p, x, y):  # the kernels take (batch, sequence, features)
            return _mse(norm(x @ p["W"], p["weight"], p["bias"], interpret=True), y)

        x, y = _data(rng, 2, 3, 16, dtype=dtype), _data(rng, 2, 3, 16, dtype=dtype)
        return Model(loss, params, (x, y), "['weight']", options={"precision": precision})

    return build


def pallas_mha(precision: str):
    def build(dtype) -> Model:
        from jax.experimental.pallas.ops.gpu import attention

        sizes = attention.BlockSizes(16, 16, 16, 16, 16, 16)
        mha = functools.partial(
            attention.mha, segment_ids=None, interpret=True, block_sizes=sizes, causal=True
        )
        rng = np.random.default_rng(12)
        params = {k: _data(rng, 1, 16, 1, 16, dtype=dtype, scale=0.5) for k in ("q", "k", "v")}

        def loss(p, w):  # (batch, sequence, heads, head dim)
            return jnp.sum(mha(p["q"], p["k"], p["v"]).astype(F32) * w)

        w = _data(rng, 1, 16, 1, 16)
        return Model(loss, params, (w,), "['v']", options={"precision": precision})

    return build


def _swish_rule(drop_term: bool):
    """swish(x) = x·σ(x) as a pallas_call, with its backward a pallas_call too; `drop_term`
    plants the bug of a derivative σ(x) that forgets x·σ(x)(1 − σ(x))."""
    from jax.experimental import pallas as pl

    def forward_kernel(x_ref, o_ref):
        x = x_ref[...]
        o_ref[...] = x * jax.nn.sigmoid(x)

    def backward_kernel(x_ref, g_ref, o_ref):
        x, g = x_ref[...], g_ref[...]
        s = jax.nn.sigmoid(x)
        o_ref[...] = g * (s if drop_term else s + x * s * (1 - s))

    def call(kernel, *xs):
        out = jax.ShapeDtypeStruct(xs[0].shape, xs[0].dtype)
        return pl.pallas_call(kernel, out_shape=out, interpret=True)(*xs)

    @jax.custom_vjp
    def swish(x):
        return call(forward_kernel, x)

    swish.defvjp(lambda x: (swish(x), x), lambda x, g: (call(backward_kernel, x, g),))
    return swish


def pallas_swish(dtype) -> Model:
    rng = np.random.default_rng(13)
    params = {"W": _data(rng, 4, 6, dtype=dtype)}  # one leaf: the wrong rule reaches only it

    def make(rule):
        def loss(p, x, y):
            return _mse(rule(x @ p["W"]) @ jnp.ones((6, 1), x.dtype), y)

        return loss

    x, y = _data(rng, 5, 4, dtype=dtype), _data(rng, 5, 1, dtype=dtype)
    good, bad = make(_swish_rule(False)), make(_swish_rule(True))
    return Model(good, params, (x, y), "['W']", bug=bad)


def _pallas_imports() -> bool:
    try:
        import jax.experimental.pallas  # noqa: F401
    except Exception:
        return False
    return True


def cases() -> list[Case]:
    out = [
        Case("nnx transformer block", F32, nnx_transformer),
        Case("nnx transformer block", BF16, nnx_transformer),
        Case("linen Dense+LayerNorm", F32, linen_dense_layernorm),
        Case("linen Dense+LayerNorm", BF16, linen_dense_layernorm),
        Case("equinox MLP", F32, eqx_mlp),
        Case("equinox MLP", BF16, eqx_mlp),
        Case("equinox MultiheadAttention", F32, eqx_attention),
        Case("nnx RNN(GRUCell)", F32, nnx_gru),
        Case("GRU over lax.scan", F32, scan_gru),
        Case("nnx Conv+BatchNorm (train)", F32, nnx_conv_batchnorm),
        Case("top-2 of 4 mixture of experts", F32, moe_topk),
        Case("top-2 of 4 mixture of experts", BF16, moe_topk),
        Case("nnx Embed + softmax CE", F32, nnx_embed),
        Case("jax.nn.dot_product_attention", F32, dot_product_attention),
        Case("jax.nn.dot_product_attention", BF16, dot_product_attention),
        Case("layer norm custom_vjp", F32, custom_layer_norm),
    ]
    if _pallas_imports():
        for precision in ("float64", "native"):
            suffix = "" if precision == "float64" else ", precision=native"
            native = precision == "native"
            builds = {
                "layer_norm": (pallas_norm("layer_norm", precision), native),
                "rms_norm": (pallas_norm("rms_norm", precision), native),
                "attention.mha": (pallas_mha(precision), True),
            }
            for kernel, (build, slow) in builds.items():
                out.append(Case(f"pallas gpu {kernel} (interpret){suffix}", F32, build, slow))
        out.append(Case("pallas_call swish custom_vjp (interpret)", F32, pallas_swish))
    return out


# ---- running a case ------------------------------------------------------------------------


@dataclasses.dataclass
class Row:
    case: str
    dtype: str
    params: str = "?"
    correct: str = "-"
    planted: str = "-"
    seconds: float = 0.0
    note: str = ""
    false_failed: bool = False
    inconclusive: bool = False
    caught: bool = False


def _first_line(e: BaseException) -> str:
    line = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {line[:140]}"


def _with_factor(grad_fn, names: tuple[str, ...], factor: float, params: Any, args: tuple):
    """grad_fn with the largest-|g| element of the leaf named `names` multiplied by factor."""
    grads = grad_fn(params, *args)
    flat, _ = jax.tree_util.tree_flatten_with_path(grads)
    found = [i for i, (p, _) in enumerate(flat) if _names(jax.tree_util.keystr(p)) == names]
    if len(found) != 1:
        raise LookupError(f"planted leaf {names} found {len(found)} times in the gradient")
    leaf = found[0]
    g = np.abs(np.asarray(flat[leaf][1], np.float64))
    index = tuple(int(i) for i in np.unravel_index(int(g.argmax()), g.shape))

    def planted(params, *args):
        leaves, tree = jax.tree_util.tree_flatten(grad_fn(params, *args))
        leaves[leaf] = leaves[leaf].at[index].multiply(factor)
        return jax.tree_util.tree_unflatten(tree, leaves)

    return planted, index


def _correct(result: jaxcheck.CheckResult) -> str:
    unverifiable = sum(leaf.n_unverifiable for leaf in result.leaves.values())
    return f"{result.verdict} ({unverifiable}/{result.n_failed})"


def _worst(result: jaxcheck.CheckResult) -> str:
    if not result.failures:
        return ""
    f = result.failures[0]
    return f"{f.name}: analytic {f.analytic:.6g}, numeric {f.numeric:.6g}, tol {f.tolerance:.1e}"


def run_case(case: Case) -> Row:
    row = Row(case.name, jnp.dtype(case.dtype).name)
    notes: list[str] = []
    t = time.perf_counter()
    try:
        model = case.build(case.dtype)
    except Exception as e:
        row.note, row.seconds = f"building: {_first_line(e)}", time.perf_counter() - t
        return row
    options = dict(progress=False, **model.options)
    try:
        result = jaxcheck.check_grad(model.fn, model.params, *model.args, **options)
        row.params, row.correct = str(result.n_checked), _correct(result)
        row.false_failed = result.verdict == "failed"
        row.inconclusive = result.verdict == "inconclusive"
        if result.verdict == "failed":
            notes.append(f"worst {_worst(result)}")
        elif result.verdict == "inconclusive":
            weak = [p for p, leaf in result.leaves.items() if leaf.verdict == "inconclusive"]
            notes.append(f"inconclusive leaves {', '.join(weak)}")
    except Exception as e:
        row.correct = "error"
        notes.append(f"correct: {_first_line(e)}")
        traceback.print_exc()
    names = _names(model.leaf)
    try:
        if model.bug is not None:
            result = jaxcheck.check_grad(model.bug, model.params, *model.args, **options)
            what, index = "wrong rule", None
        else:
            factor = 1.5 if jnp.dtype(case.dtype).itemsize < 4 else 1.1
            grad_fn, index = _with_factor(
                model.grad(model.fn), names, factor, model.params, model.args
            )
            result = jaxcheck.check_grad(
                model.fn, model.params, *model.args, grad_fn=grad_fn, **options
            )
            what = f"x{factor}"
        row.planted, row.caught = _planted(result, names, index, model.leaf, what)
        if not row.caught and index is not None:
            notes.append(f"planted element {_element(result, names, index)}")
    except Exception as e:
        row.planted = "error"
        notes.append(f"planted: {_first_line(e)}")
        traceback.print_exc()
    row.seconds = time.perf_counter() - t
    row.note = "; ".join(notes)
    return row


def _element(result: jaxcheck.CheckResult, names: tuple[str, ...], index: tuple) -> str:
    """The planted element's two gradients as the check recorded them."""
    values = []
    for tree in (result.analytic, result.numeric):
        flat, _ = jax.tree_util.tree_flatten_with_path(tree)
        leaf = [v for p, v in flat if _names(jax.tree_util.keystr(p)) == names]
        values.append(float(np.asarray(leaf[0], np.float64)[index]) if leaf else float("nan"))
    return f"analytic {values[0]:.6g}, numeric {values[1]:.6g}"


def _planted(result, names, index, leaf, what) -> tuple[str, bool]:
    where = leaf + (f"[{', '.join(map(str, index))}]" if index is not None else "")
    if result.verdict != "failed":
        return f"no, {result.verdict} ({what} at {where})", False
    in_leaf = [f for f in result.failures if _names(f.path) == names]
    worst = result.failures[0]
    if index is None:
        located = len(in_leaf) == len(result.failures)
        head = "yes" if located else "no"
        return f"{head}: {len(in_leaf)} of {len(result.failures)} failures in {leaf}", located
    located = _names(worst.path) == names and tuple(worst.index) == index
    others = len(result.failures) - 1
    if located:
        return f"yes {what} at {where}" + (f" (+{others} others)" if others else ""), True
    return f"no: worst {worst.name} ({what} at {where}, {len(result.failures)} failing)", False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="float32 cases, fewer Pallas ones")
    parser.add_argument("--only", default="", help="a regex searched in each case's 'name dtype'")
    opts = parser.parse_args()
    selected = [c for c in cases() if re.search(opts.only, c.label)]
    if opts.quick:
        selected = [c for c in selected if c.dtype == F32 and not c.slow]
    rows, t_all = [], time.perf_counter()
    for case in selected:
        row = run_case(case)
        rows.append(row)
        print(f"{case.label}: correct {row.correct}, planted {row.planted}, "
              f"{row.seconds:.1f} s {row.note}", flush=True)  # fmt: skip
    header = ("case", "dtype", "params", "correct verdict (unverifiable/failed)",
              "planted caught", "time (s)", "note")  # fmt: skip
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        cells = (r.case, r.dtype, r.params, r.correct, r.planted, f"{r.seconds:.1f}",
                 r.note.replace("|", "\\|"))  # fmt: skip
        print("| " + " | ".join(cells) + " |")
    errors = sum("error" in (r.correct, r.planted) or r.note.startswith("building") for r in rows)
    caught = sum(r.caught for r in rows)
    false_failed = sum(r.false_failed for r in rows)
    inconclusive = sum(r.inconclusive for r in rows)
    print(f"\nfalse FAILED: {false_failed}; INCONCLUSIVE: {inconclusive}; "
          f"planted caught: {caught}/{len(rows)}; cases that raised: {errors}; "
          f"{time.perf_counter() - t_all:.0f} s in all")  # fmt: skip
    sys.exit(1 if false_failed or errors or caught < len(rows) else 0)


if __name__ == "__main__":
    main()
