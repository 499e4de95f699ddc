"""The batched engine: the sparse (jaxpr) path against the plain vmap path, chunks, compiling."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcheck
from jaxcheck._core.coords import Coords
from jaxcheck._engine import batched as _engine
from jaxcheck._engine import layout as _layout
from jaxcheck._engine import progress as _progress
from jaxcheck._engine import sparse as _sparse

from . import helpers as h

# ---- random models for the equivalence property ----------------------------------------------

ACTIVATIONS = {
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "sigmoid": jax.nn.sigmoid,
    "gelu": jax.nn.gelu,
    "softplus": jax.nn.softplus,
    "silu": jax.nn.silu,
}


def random_mlp(seed: int):
    """An MLP of 1-4 layers, a random activation, biases or not, an integer leaf mixed in."""
    rng = np.random.default_rng(seed)
    depth = int(rng.integers(1, 5))
    sizes = [int(s) for s in rng.integers(2, 9, depth + 1)]
    act_name = list(ACTIVATIONS)[seed % len(ACTIVATIONS)]
    act = ACTIVATIONS[act_name]
    params = {"layers": [], "power": np.int32(1 + seed % 2)}
    for a, b in zip(sizes[:-1], sizes[1:]):
        layer = {"W": rng.normal(size=(a, b)) / np.sqrt(a)}
        if rng.random() < 0.7:
            layer["b"] = rng.normal(size=(b,)) * 0.1
        params["layers"].append(layer)
    x = rng.normal(size=(int(rng.integers(1, 6)), sizes[0]))
    y = rng.normal(size=(x.shape[0], sizes[-1]))
    reduce = ["sum", "mean", "ce"][seed % 3]

    def loss(p, x, y):
        hidden = x
        for i, layer in enumerate(p["layers"]):
            hidden = hidden @ layer["W"]
            if "b" in layer:
                hidden = hidden + layer["b"][None]
            if i < len(p["layers"]) - 1:
                hidden = act(hidden)
        if reduce == "ce":
            return -jnp.sum(jax.nn.log_softmax(hidden, axis=-1) * jax.nn.softmax(y, axis=-1))
        err = jnp.abs(hidden - y) ** p["power"] if reduce == "sum" else (hidden - y) ** 2
        return jnp.sum(err) if reduce == "sum" else jnp.mean(err)

    return f"mlp{seed}-{depth}-{act_name}-{reduce}", loss, params, (x, y)


def structured_models():
    for name, make in h.CORPUS.items():
        yield name, *make()
    loss, params, x = h.custom_vjp_model(bug=False)
    yield "custom_vjp", loss, params, (x,)


MODELS = [random_mlp(seed) for seed in range(12)] + list(structured_models())


def _engines(loss, params, args):
    with jax.enable_x64(True), jax.default_matmul_precision("highest"):
        coords = Coords.build(params)
        values = coords.cast(jax.tree_util.tree_leaves(params), lambda leaf: np.float64)
        args = jax.tree_util.tree_map(
            lambda a: a.astype(np.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a, args
        )
        make = lambda delta: _engine.JaxEngine(loss, values, coords, args, delta=delta)  # noqa: E731
        return coords, values, args, make(True), make(False)


@pytest.mark.parametrize("name, loss, params, args", MODELS, ids=[m[0] for m in MODELS])
def test_the_sparse_path_computes_the_plain_paths_values(name, loss, params, args):
    coords, values, args, sparse, plain = _engines(loss, params, args)
    rng = np.random.default_rng(0)
    with jax.enable_x64(True), jax.default_matmul_precision("highest"):
        f0 = float(loss(coords.unflatten(values), *args))
        for leaf in coords.checked:
            theta = np.asarray(values[leaf.position]).reshape(-1)
            idx = rng.integers(0, leaf.size, 40)
            h_ = 1e-4 * np.maximum(np.abs(theta[idx]), 0.1)
            vals = np.concatenate([theta[idx] + h_, theta[idx] - h_])
            both = np.concatenate([idx, idx])
            a, b = sparse.evaluate(leaf, both, vals), plain.evaluate(leaf, both, vals)
            scale = max(abs(f0), float(np.max(np.abs(b))), 1e-300)
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-13 * scale, err_msg=leaf.path)
            # ... and so the finite differences, to the round-off of f over the step.
            d_a, d_b = (a[:40] - a[40:]) / (2 * h_), (b[:40] - b[40:]) / (2 * h_)
            np.testing.assert_allclose(d_a, d_b, rtol=0, atol=np.max(1e-12 * scale / h_))
    assert set(sparse.paths.values()) == {"sparse"}  # the fast path really ran
    assert set(plain.paths.values()) == {"vmap"}


def _off_in_one_element_per_leaf(loss):
    def wrong(p, *a):  # every gradient off by 3% in one element of each leaf
        g = jax.grad(loss, allow_int=True)(p, *a)
        return jax.tree_util.tree_map(
            lambda x: x.at[(0,) * x.ndim].multiply(1.03) if jnp.issubdtype(x.dtype, jnp.floating)
            else x, g)  # fmt: skip

    return wrong


@pytest.mark.parametrize("name, loss, params, args", MODELS[::3], ids=[m[0] for m in MODELS[::3]])
def test_the_sparse_path_never_changes_a_verdict(monkeypatch, name, loss, params, args):
    wrong = _off_in_one_element_per_leaf(loss)
    for grad_fn in (None, wrong):
        fast = jaxcheck.check_grad(loss, params, *args, grad_fn=grad_fn)
        monkeypatch.setattr(_engine.JaxEngine.__init__, "__kwdefaults__", {
            **_engine.JaxEngine.__init__.__kwdefaults__, "delta": False})  # fmt: skip
        plain = jaxcheck.check_grad(loss, params, *args, grad_fn=grad_fn)
        monkeypatch.undo()
        assert fast.passed == plain.passed == (grad_fn is None)
        assert sorted((e.path, e.index, e.status) for e in fast.failures) == sorted(
            (e.path, e.index, e.status) for e in plain.failures
        )
        for path in fast.leaves:
            assert fast.leaves[path].n_unverifiable == plain.leaves[path].n_unverifiable


def test_the_sparse_path_handles_linear_structure():
    """Transposes, reshapes that keep the perturbed axis, broadcasts, batch dims, reductions."""
    rng = np.random.default_rng(1)
    params = {"W": rng.normal(size=(3, 4, 5)), "v": rng.normal(size=(5,))}
    x = rng.normal(size=(2, 3, 4))

    def loss(p, x):
        t = jnp.einsum("bij,ijk->bk", x, p["W"])  # contracts two perturbed axes
        u = jnp.transpose(p["W"], (2, 0, 1)).reshape(5, 12)  # keeps the first axis whole
        s = jnp.einsum("bk,kn->bn", jnp.sin(t), u) * p["v"].sum()
        w = jax.lax.dot_general(p["W"], p["W"], (((2,), (2,)), ((0,), (0,))))  # batch dims
        return jnp.sum(jnp.cos(s)) + jnp.max(w) + jnp.sum(jnp.squeeze(p["v"][None]) ** 3)

    coords, values, _, sparse, plain = _engines(loss, params, (x,))
    _assert_every_element_agrees(coords, values, sparse, plain, tol=1e-13)
    assert set(sparse.paths.values()) == {"sparse"}


def _assert_every_element_agrees(coords, values, sparse, plain, tol):
    """Both paths' f with every element of each checked leaf moved by 0.01, to tol."""
    with jax.enable_x64(True):
        for leaf in coords.checked:
            theta = np.asarray(values[leaf.position]).reshape(-1)
            idx = np.arange(leaf.size)
            a = sparse.evaluate(leaf, idx, theta + 0.01)
            b = plain.evaluate(leaf, idx, theta + 0.01)
            np.testing.assert_allclose(a, b, rtol=tol, atol=tol, err_msg=leaf.path)


CONVS = {  # (input shape, kernel shape, conv_general_dilated keywords)
    "nhwc-same": ((2, 6, 6, 3), (3, 3, 3, 4), dict(window_strides=(1, 1), padding="SAME",
                  dimension_numbers=("NHWC", "HWIO", "NHWC"))),
    "nchw-strided": ((2, 3, 7, 7), (4, 3, 3, 2), dict(window_strides=(2, 1), padding="VALID",
                     dimension_numbers=("NCHW", "OIHW", "NCHW"))),
    "dilated": ((1, 2, 9, 9), (3, 2, 2, 2), dict(window_strides=(1, 1), padding=((1, 0), (2, 1)),
                rhs_dilation=(2, 3))),
    "transposed": ((1, 2, 4, 4), (3, 2, 3, 3), dict(window_strides=(1, 1), padding=((2, 2), (1, 2)),
                   lhs_dilation=(2, 2))),
    "1d": ((2, 3, 10), (2, 3, 4), dict(window_strides=(2,), padding="SAME")),
    "grouped": ((1, 4, 5, 5), (6, 2, 3, 3), dict(window_strides=(1, 1), padding="SAME",
                feature_group_count=2)),
}  # fmt: skip


@pytest.mark.parametrize("case", CONVS)
def test_the_sparse_path_computes_convolutions(monkeypatch, case):
    """A perturbed kernel (and a perturbed input, through a bias) of a convolution: one input
    feature into one output feature per perturbation, the plain path's values."""
    x_shape, k_shape, kw = CONVS[case]
    rng = np.random.default_rng(2)
    feature = 1 if "NHWC" not in kw.get("dimension_numbers", ()) else -1
    params = {"k": rng.normal(size=k_shape) / 3, "c": rng.normal(size=x_shape[feature]) / 3,
              "k2": rng.normal(size=k_shape[:1] * 2 + k_shape[2:]) / 3}  # fmt: skip
    params["k2"] = params["k2"][:, : k_shape[0] // kw.get("feature_group_count", 1)]
    x = rng.normal(size=x_shape)
    bias_shape = [1] * len(x_shape)
    bias_shape[feature] = x_shape[feature]

    def loss(p, x):
        conv = lambda a, k: jax.lax.conv_general_dilated(a, k, **kw)  # noqa: E731
        h = jnp.tanh(conv(jnp.sin(x + p["c"].reshape(bias_shape)), p["k"]))
        if "dimension_numbers" not in kw:  # a second convolution of a perturbed input
            h = conv(h, p["k2"])
        return jnp.sum(h**2) + jnp.sum(jnp.cos(h))

    used = []
    rule = _sparse.RULES["conv_general_dilated"]
    monkeypatch.setitem(_sparse.RULES, "conv_general_dilated",
                        lambda eqn, invals: used.append(1) or rule(eqn, invals))  # fmt: skip
    coords, values, _, sparse, plain = _engines(loss, params, (x,))
    _assert_every_element_agrees(coords, values, sparse, plain, tol=1e-12)
    assert used and set(sparse.paths.values()) == {"sparse"}, sparse.paths


# ---- chunks and compilation ------------------------------------------------------------------


def test_chunks_are_powers_of_two_bounded_by_memory_and_need():
    def leaf(n):
        return n

    budget = 2**30
    assert _engine.first_chunk(leaf(10), 8, 21, budget, sparse=True) == 32  # one padded chunk
    assert _engine.first_chunk(leaf(10), 8, 10**6, budget, sparse=True) == 4096
    assert _engine.first_chunk(leaf(10), 8, 10**6, budget, sparse=False) == 1024
    big = _engine.first_chunk(leaf(10**6), 8, 10**6, budget, sparse=False)
    assert big * 10**6 * 8 * _engine.LEAF_COPIES <= budget // 2 and big & (big - 1) == 0


def test_chunks_shrink_to_fit_max_memory():
    """A scalar leaf feeding a 256×256 product: 512 KiB of activations per perturbation."""
    x = jnp.linspace(-1.0, 1.0, 256 * 256).reshape(256, 256)

    def loss(p, x):
        return jnp.sum(jnp.tanh(x @ (x * p["s"])) ** 2)

    params = {"s": jnp.array(0.7)}
    reference = jaxcheck.check_grad(loss, params, x)
    with jax.enable_x64(True):
        coords = Coords.build(params)
        values = coords.cast(jax.tree_util.tree_leaves(params), lambda leaf: np.float64)
        engine = _engine.JaxEngine(loss, values, coords, (x,), max_memory=3 * 2**20)
        engine.evaluate(coords.checked[0], np.zeros(5, np.int32), np.full(5, 0.7))
        size, compiles = engine._cache[(0, "element")].size, engine.n_compiles
        assert size < 8 and compiles > 1  # shrunk, then kept
        engine.evaluate(coords.checked[0], np.zeros(9, np.int32), np.full(9, 0.7))
        assert engine.n_compiles == compiles
    small = jaxcheck.check_grad(loss, params, x, max_memory="3MiB")
    assert float(small.numeric["s"]) == pytest.approx(float(reference.numeric["s"]), rel=1e-9)


def test_a_small_model_compiles_one_program_and_a_repeat_compiles_nothing():
    loss, params, args = h.mlp_softmax_ce()
    _engine.EXECUTABLES.clear()  # nothing kept from an earlier test of the same program
    before = _engine.EXECUTABLES.compiled
    first = jaxcheck.check_grad(loss, params, *args)
    # flat: all leaves at once
    assert _engine.EXECUTABLES.compiled - before == 1 < len(first.leaves)
    assert first.engine == "jax-flat" and "one program for every leaf" in str(first)
    before = _engine.EXECUTABLES.compiled
    again = jaxcheck.check_grad(loss, params, *args)
    assert _engine.EXECUTABLES.compiled == before
    np.testing.assert_array_equal(first.numeric["W2"], again.numeric["W2"])
    jaxcheck.check_grad(loss, params, *args, max_memory="512MB")  # another key: compiles again
    assert _engine.EXECUTABLES.compiled > before


def _deep(n_layers):
    rng = np.random.default_rng(n_layers)
    params = [
        {"w": jnp.asarray(rng.normal(size=(4, 4)) / 2), "b": jnp.asarray(rng.normal(size=4))}
        for _ in range(n_layers)
    ]

    def loss(p, x):
        for layer in p:
            x = jnp.tanh(x @ layer["w"] + layer["b"][None])
        return jnp.sum(x**2)

    return loss, params, jnp.asarray(rng.normal(size=(3, 4)))


@pytest.mark.parametrize("mode", ["full", "directional"])
def test_compilations_do_not_grow_with_the_number_of_leaves(mode):
    """Every XLA compilation of a check (base value, gradient, chunks), counted by JAX."""
    counts = []
    for n_layers in (1, 4, 16):
        loss, params, x = _deep(n_layers)
        with h.count_compilations() as compiled:
            result = jaxcheck.check_grad(loss, params, x, mode=mode)
        assert result.passed, result
        counts.append(len(compiled))
    assert counts[1] == counts[2] and max(counts) <= 8, counts  # (the first: one-time set-up)


@pytest.mark.parametrize("name, loss, params, args", MODELS[::3], ids=[m[0] for m in MODELS[::3]])
def test_one_program_for_all_leaves_never_changes_a_verdict(monkeypatch, name, loss, params, args):
    wrong = _off_in_one_element_per_leaf(loss)
    for grad_fn in (None, wrong):
        results = []
        for flops in (np.inf, 0.0):  # always flat (where it can be), never
            monkeypatch.setitem(_layout.FLOPS_PER_COMPILE, "cpu", flops)
            results.append(jaxcheck.check_grad(loss, params, *args, grad_fn=grad_fn))
        flat, per_leaf = results
        assert flat.passed == per_leaf.passed == (grad_fn is None), (flat, per_leaf)
        assert sorted((e.path, e.index, e.status) for e in flat.failures) == sorted(
            (e.path, e.index, e.status) for e in per_leaf.failures
        )
        for path in flat.leaves:
            assert flat.leaves[path].n_unverifiable == per_leaf.leaves[path].n_unverifiable


def test_the_probe_does_not_fix_a_small_chunk_size(monkeypatch):
    seen = []
    original = _engine.JaxEngine._compiled

    def spy(self, leaf, base, *rest):
        out = original(self, leaf, base, *rest)
        seen.append(out.size)
        return out

    loss, params, args = h.mlp_softmax_ce()
    monkeypatch.setattr(_engine.JaxEngine, "_compiled", spy)
    monkeypatch.setitem(_layout.FLOPS_PER_COMPILE, "cpu", 0.0)  # a program per leaf
    jaxcheck.check_grad(loss, params, *args, only="W2", max_memory="1GiB")
    assert set(seen) == {1024}  # 2 * 256 + 1 points: one padded chunk


# ---- progress and options --------------------------------------------------------------------


def test_progress_bar_on_request_and_silence_otherwise(monkeypatch, capsys):
    pytest.importorskip("tqdm")
    monkeypatch.setattr(_progress, "DELAY_S", 0.0)
    loss, params, args = h.mlp_softmax_ce()
    jaxcheck.check_grad(loss, params, *args, progress=True)
    assert re.search(r"jaxcheck:.*pt", capsys.readouterr().err)
    jaxcheck.check_grad(loss, params, *args, progress=False)
    assert capsys.readouterr().err == ""
    # default, not a terminal here: plain lines (tests/test_progress.py), never tqdm's bar
    jaxcheck.check_grad(loss, params, *args)
    assert "pt/s" not in capsys.readouterr().err
    monkeypatch.setattr(_progress, "DELAY_S", 2.0)
    monkeypatch.setattr(_progress, "clock", lambda: 0.0)  # a check that takes no time
    jaxcheck.check_grad(loss, params, *args)  # says nothing at all
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    "options, match",
    [
        ({"max_memory": "lots"}, "max_memory='lots'.*512MB"),
        ({"max_memory": 100}, "at least 1 MiB"),
        ({"progress": "yes"}, "progress='yes'"),
    ],
)
def test_engine_options_are_validated(options, match):
    loss, params, args = h.mlp_softmax_ce()
    with pytest.raises(ValueError, match=match):
        jaxcheck.check_grad(loss, params, *args, **options)


def test_memory_strings():
    from jaxcheck._grad.options import memory_option

    assert memory_option("2GiB") == 2 * 2**30
    assert memory_option("512MB") == 512 * 10**6
    assert memory_option(3_000_000) == 3_000_000
    assert memory_option(None) is None


def test_a_size_one_bias_broadcast_over_the_batch_is_perturbed_in_every_row():
    # flax's Dense(1): y + bias.reshape(1, 1), an add of (B, 1) and (1, 1) in the jaxpr
    params = {"w": jnp.array([[0.3], [-0.2], [0.5]]), "b": jnp.array([0.1])}
    x = jnp.arange(12.0).reshape(4, 3) / 10

    def loss(p, x):
        return jnp.sum(jnp.tanh(x @ p["w"] + p["b"].reshape(1, 1)) ** 2)

    result = jaxcheck.check_grad(loss, params, x)
    assert result.passed, result


def test_small_leaves_share_one_program_beside_a_large_one_and_errors_are_located(monkeypatch):
    rng = np.random.default_rng(3)
    params = {
        "big": jnp.asarray(rng.normal(size=(80, 80)) / 9),  # a program of its own
        "b": jnp.asarray(rng.normal(size=80)),
        "c": jnp.asarray(rng.normal(size=4)),
        "s": jnp.asarray(0.7),
    }
    x = jnp.asarray(rng.normal(size=(64, 80)))

    def loss(p, x):
        h = jnp.tanh(x @ p["big"] + p["b"][None])
        return jnp.sum(h[:, :4] * p["c"][None]) * p["s"]

    def wrong(p, x):
        g = jax.grad(loss)(p, x)
        return {**g, "big": g["big"].at[3, 5].add(0.05), "b": g["b"].at[2].multiply(1.1)}

    results = []
    for flops in (_layout.FLOPS_PER_COMPILE["cpu"], 0.0):  # the cost model, then per leaf
        monkeypatch.setitem(_layout.FLOPS_PER_COMPILE, "cpu", flops)
        results.append([jaxcheck.check_grad(loss, params, x, grad_fn=g) for g in (None, wrong)])
    (good, bad), (good_own, bad_own) = results
    assert good.engine == bad.engine == "jax-mixed" and good_own.engine == "jax"
    assert "one program for the small leaves" in str(good)
    assert good.passed and good_own.passed
    located = sorted((e.path, e.index) for e in bad.failures)
    assert located == [("['b']", (2,)), ("['big']", (3, 5))], bad
    assert located == sorted((e.path, e.index) for e in bad_own.failures)
