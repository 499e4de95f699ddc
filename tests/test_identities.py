"""check_vjp and check_jvp: planted bugs in custom rules and handwritten VJPs/JVPs."""

import html

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcheck


def dense_with_bwd(bwd_bug=None):
    """A tanh layer with a custom_vjp; bwd_bug(x, W, y, g, (dx, dW, db)) may plant a bug."""

    @jax.custom_vjp
    def dense(x, W, b):
        return jnp.tanh(x @ W + b[None])

    def fwd(x, W, b):
        y = jnp.tanh(x @ W + b[None])
        return y, (x, W, y)

    def bwd(res, g):
        x, W, y = res
        d = g * (1 - y**2)
        cts = (d @ W.T, x.T @ d, d.sum(0))
        return cts if bwd_bug is None else bwd_bug(x, W, y, g, cts)

    dense.defvjp(fwd, bwd)
    return dense


def point(n_in=6, n_out=6, batch=5, seed=0):
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal((batch, n_in)),
        rng.standard_normal((n_in, n_out)) / np.sqrt(n_in),
        rng.standard_normal(n_out) / 4,
    )


def test_a_correct_custom_vjp_passes_with_its_transforms():
    result = jaxcheck.check_vjp(dense_with_bwd(), *point())
    assert result.passed, result
    assert result.kind == "vjp"
    assert set(result.leaves) == {"['x']", "['W']", "['b']"}
    assert result.transforms == {"jit": "ok", "vmap": "ok"}
    assert any("1 custom rule" in n for n in result.notes)


PLANTED = {
    "wrong scale": (lambda x, W, y, g, c: (c[0], 2 * c[1], c[2]), "['W']"),
    "missing term": (lambda x, W, y, g, c: (c[0], c[1], jnp.zeros_like(c[2])), "['b']"),
    "transposed W": (lambda x, W, y, g, c: (c[0], c[1].T, c[2]), "['W']"),
    "no tanh derivative": (lambda x, W, y, g, c: (g @ W.T, c[1], c[2]), "['x']"),
    "sign of one row": (lambda x, W, y, g, c: (c[0], c[1].at[2].multiply(-1), c[2]), "['W']"),
}


@pytest.mark.parametrize("bug", sorted(PLANTED))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_planted_vjp_bug_is_caught_in_its_leaf(bug, seed):
    plant, leaf = PLANTED[bug]
    result = jaxcheck.check_vjp(dense_with_bwd(plant), *point(seed=seed), seed=seed)
    assert not result.passed
    assert [p for p, r in result.leaves.items() if not r.passed] == [leaf]
    assert result.failures and {e.path for e in result.failures} == {leaf}
    if bug == "sign of one row":
        assert {e.index[0] for e in result.failures} == {2}


def test_one_wrong_element_among_sixty_thousand_is_located_by_group_testing():
    plant = lambda x, W, y, g, c: (c[0], c[1].at[123, 77].add(0.05), c[2])  # noqa: E731
    result = jaxcheck.check_vjp(dense_with_bwd(plant), *point(200, 300, batch=4))
    assert not result.passed
    assert [(e.path, e.index) for e in result.failures] == [("['W']", (123, 77))]
    assert result.failures[0].analytic - result.failures[0].numeric == pytest.approx(0.05)


def fixed_point_sqrt(bwd_factor):
    """sqrt by Newton's iteration in a while_loop, differentiated implicitly (custom_vjp)."""

    @jax.custom_vjp
    def sqrt(a):
        def body(state):
            x, _ = state
            return 0.5 * (x + a / x), x

        def cond(state):
            x, last = state
            return jnp.max(jnp.abs(x - last)) > 1e-14 * jnp.max(x)

        return jax.lax.while_loop(cond, body, (jnp.ones_like(a) + a, jnp.zeros_like(a)))[0]

    def fwd(a):
        x = sqrt(a)
        return x, x

    sqrt.defvjp(fwd, lambda x, g: (bwd_factor * g / (2 * x),))
    return sqrt


def test_a_custom_vjp_around_a_while_loop_is_checked_through_forward_mode():
    a = jnp.array([0.5, 2.0, 9.0])
    assert jaxcheck.check_vjp(fixed_point_sqrt(1.0), a).passed
    result = jaxcheck.check_vjp(fixed_point_sqrt(2.0), a)
    assert not result.passed
    assert len(result.failures) == 3


def test_a_handwritten_vjp_is_checked_against_jax_jvp():
    x, W, b = point()

    def layer(x, W, b):
        return jnp.tanh(x @ W + b[None])

    def backward(x, W, b, g):
        y = jnp.tanh(x @ W + b[None])
        d = g * (1 - y**2)
        return d @ W.T, x.T @ d, d.sum(0)

    assert jaxcheck.check_vjp(layer, x, W, b, vjp=backward).passed
    wrong = lambda *a: (lambda c: (c[0], c[1], c[2] / 5))(backward(*a))  # noqa: E731
    result = jaxcheck.check_vjp(layer, x, W, b, vjp=wrong)
    assert not result.passed
    assert {e.path for e in result.failures} == {"['b']"}


def test_one_primal_may_get_its_bare_cotangent():
    params = {"W": jnp.eye(3), "b": jnp.ones(3)}

    def f(p):
        return jnp.sin(p["W"] @ p["b"])

    def vjp(p, g):
        d = g * jnp.cos(p["W"] @ p["b"])
        return {"W": jnp.outer(d, p["b"]), "b": p["W"].T @ d * 1.5}  # b is wrong

    result = jaxcheck.check_vjp(f, params, vjp=vjp)
    assert [p for p, r in result.leaves.items() if not r.passed] == ["['p']['b']"]


def softplus_with_jvp(factor):
    @jax.custom_jvp
    def softplus(x):
        return jnp.logaddexp(x, 0.0)

    softplus.defjvp(lambda p, t: (softplus(p[0]), factor * t[0] * jax.nn.sigmoid(p[0])))
    return softplus


def test_check_jvp_catches_a_wrong_custom_jvp_and_passes_a_right_one():
    x = np.random.default_rng(0).standard_normal(10)
    right = jaxcheck.check_jvp(softplus_with_jvp(1.0), x)
    assert right.passed, right
    wrong = jaxcheck.check_jvp(lambda x: jnp.sum(softplus_with_jvp(1.001)(x) ** 2), x)
    assert not wrong.passed
    assert len(wrong.failures) == 10  # every column of J is off by 0.1%


def test_check_jvp_falls_back_to_forward_mode_where_reverse_mode_fails():
    def loop(x):  # a while_loop: forward mode only
        return jax.lax.while_loop(lambda c: c[1] < 3, lambda c: (jnp.sin(c[0]), c[1] + 1), (x, 0))[
            0
        ]

    @jax.custom_jvp
    def f(x):
        return loop(x)

    f.defjvp(lambda p, t: (f(p[0]), jax.jvp(loop, p, t)[1] * 1.01))
    result = jaxcheck.check_jvp(f, jnp.array([0.3, 0.6]))
    assert not result.passed
    assert any("reverse mode fails" in n for n in result.notes)


def test_check_jvp_on_a_custom_vjp_function_says_to_use_check_vjp():
    with pytest.raises(TypeError, match="check_vjp"):
        jaxcheck.check_jvp(dense_with_bwd(), *point())


def test_plain_jax_code_is_jax_against_itself_and_says_so():
    result = jaxcheck.check_vjp(lambda x: jnp.tanh(x) ** 2, jnp.arange(3.0))
    assert result.passed
    assert any("compares JAX with itself" in n for n in result.notes)


def test_a_rule_that_misbehaves_under_vmap_is_caught():
    @jax.custom_batching.custom_vmap
    def double(x):
        return 2 * x

    @double.def_vmap
    def _(axis_size, in_batched, x):
        return 3 * x, in_batched[0]  # wrong under vmap

    @jax.custom_vjp
    def f(x):
        return 2 * x

    f.defvjp(lambda x: (2 * x, None), lambda _, g: (double(g),))
    result = jaxcheck.check_vjp(f, jnp.arange(3.0))
    assert not result.passed
    assert result.transforms["jit"] == "ok"
    assert result.transforms["vmap"].startswith("differs")
    assert all(leaf.passed for leaf in result.leaves.values())


def test_a_rule_that_cannot_be_jitted_is_reported_and_can_be_excused():
    @jax.custom_vjp
    def f(x):
        return x**2

    f.defvjp(lambda x: (x**2, x), lambda x, g: (jnp.asarray(2 * np.asarray(x)) * g,))
    result = jaxcheck.check_vjp(f, jnp.arange(3.0))
    assert not result.passed
    assert result.transforms["jit"].startswith("raised TracerArrayConversionError")
    assert jaxcheck.check_vjp(f, jnp.arange(3.0), transforms=()).passed


def test_complex_primals_use_jax_transpose_convention():
    a = jnp.array(0.3 + 0.8j)

    def make(conj):
        @jax.custom_vjp
        def scale(z):
            return z * a

        scale.defvjp(lambda z: (z * a, None), lambda _, g: (g * (jnp.conj(a) if conj else a),))
        return scale

    z = jnp.array([1.0 + 1j, -0.5 + 2j])
    assert jaxcheck.check_vjp(make(False), z).passed
    result = jaxcheck.check_vjp(make(True), z)
    assert not result.passed
    assert {e.part for e in result.failures} == {"real", "imag"}


def test_integer_primals_are_skipped():
    def f(x, n):
        return x * n

    result = jaxcheck.check_vjp(f, jnp.arange(3.0), 2)
    assert list(result.leaves) == ["['x']"]
    assert result.passed


def test_the_result_prints_and_serializes():
    plant = lambda x, W, y, g, c: (c[0], c[1].at[1, 2].add(0.3), c[2])  # noqa: E731
    result = jaxcheck.check_vjp(dense_with_bwd(plant), *point())
    text = str(result)
    assert "FAILED" in text and "['W'][1, 2]" in text
    d = result.to_dict()
    assert d["passed"] is False and d["failures"][0]["index"] == [1, 2]
    assert "[&#x27;W&#x27;][1, 2]" in result._repr_html_()
    assert result.to_json()
    # every line of the text report outside its tables is in the notebook's HTML too
    for line in text.splitlines():
        if line.strip() and "  " not in line.strip() and not line.startswith("["):
            assert html.escape(line.strip().rstrip(":")) in result._repr_html_(), line


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: jaxcheck.check_vjp(3, jnp.ones(2)), TypeError, "fn must be a function"),
        (lambda: jaxcheck.check_vjp(jnp.sin), ValueError, "needs the point"),
        (lambda: jaxcheck.check_vjp(jnp.sin, jnp.ones(2), vjp=3), TypeError, "vjp= must be"),
        (lambda: jaxcheck.check_jvp(jnp.sin, jnp.ones(2), transforms="jit"), ValueError, "tuple"),
        (lambda: jaxcheck.check_vjp(jnp.sin, jnp.ones(2), directions=0), ValueError, "positive"),
        (
            lambda: jaxcheck.check_vjp(jnp.sin, jnp.ones(2), vjp=lambda x, g: jnp.ones(3)),
            ValueError,
            r"shape \(3,\) for primal\[0\]",
        ),
        (
            lambda: jaxcheck.check_vjp(lambda x: np.sin(np.asarray(x)), jnp.ones(2)),
            TypeError,
            "could not be traced",
        ),
        (lambda: jaxcheck.check_vjp(jnp.sin, jnp.array([1.0, np.nan])), ValueError, "not finite"),
    ],
)
def test_bad_input_is_refused_with_a_fix(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_check_jvp_with_an_integer_primal_runs_every_transform():
    result = jaxcheck.check_jvp(lambda x, n: jnp.sin(x) * n, jnp.arange(3.0), 2)
    assert result.passed, result
    assert result.transforms == {"jit": "ok", "vmap": "ok"}


# ---- rules checked as the peers check them (ChainRulesTestUtils, torch, Chainer) ------------


def numpy_layer():
    """A tanh layer and its backward written in NumPy, as a course assignment writes it."""

    def layer(x, W):
        return jnp.tanh(x @ W)

    def backward(x, W, dout):
        y = np.tanh(np.asarray(x) @ np.asarray(W))
        d = np.asarray(dout) * (1 - y**2)
        return d @ np.asarray(W).T, np.asarray(x).T @ d

    return layer, backward


def test_a_numpy_backward_is_checked_eagerly_with_leaves_named_after_the_parameters():
    layer, backward = numpy_layer()
    x, W, _ = point()
    result = jaxcheck.check_vjp(layer, x, W, vjp=backward)
    assert result.passed, result
    assert list(result.leaves) == ["['x']", "['W']"]
    assert result.transforms == {}  # not traceable, so not run under jit/vmap; not wrong
    assert any("cannot be traced" in n and "TracerArrayConversionError" in n for n in result.notes)
    assert "differs under" not in str(result)
    wrong = lambda x, W, g: (lambda c: (c[0], c[1].T.T * 1.01))(backward(x, W, g))  # noqa: E731
    bad = jaxcheck.check_vjp(layer, x, W, vjp=wrong)
    assert not bad.passed
    assert {e.path for e in bad.failures} == {"['W']"}


def test_check_vjp_and_check_jvp_name_every_leaf_after_fns_parameters():
    def f(params, x, n):
        return jnp.sin(x @ params["W"] + params["b"][None]) * n

    params = {"W": jnp.ones((3, 2)) / 3, "b": jnp.zeros(2)}
    x = jnp.arange(6.0).reshape(2, 3) / 6
    for check in (jaxcheck.check_vjp, jaxcheck.check_jvp):
        result = check(f, params, x, 2)
        assert result.passed, result
        assert list(result.leaves) == ["['params']['W']", "['params']['b']", "['x']"]
        assert result.leaves["['x']"].path == "['x']"
    # no names in the signature: check_grad's names for argnums, arg<position>
    result = jaxcheck.check_vjp(lambda *a: a[0] * a[1], jnp.ones(2), jnp.ones(2))
    assert list(result.leaves) == ["['arg0']", "['arg1']"]


def test_a_rule_whose_primal_output_is_not_fns_fails_and_says_where():
    # ChainRulesTestUtils' "primal wrong": the derivative is right, the primal is not
    x = jnp.arange(1.0, 4.0)

    def vjp_rule(scale):
        @jax.custom_vjp
        def f(x):
            return jnp.sin(x)

        f.defvjp(lambda x: (scale * jnp.sin(x), x), lambda x, g: (g * jnp.cos(x),))
        return f

    def jvp_rule(scale):
        @jax.custom_jvp
        def f(x):
            return jnp.sin(x)

        f.defjvp(lambda p, t: (scale * jnp.sin(p[0]), jnp.cos(p[0]) * t[0]))
        return f

    for check, make in ((jaxcheck.check_vjp, vjp_rule), (jaxcheck.check_jvp, jvp_rule)):
        right = check(make(1.0), x)
        assert right.passed and right.primal_output == "ok", right
        wrong = check(make(2.5), x)
        assert not wrong.passed
        assert all(leaf.passed for leaf in wrong.leaves.values())  # the derivative is right
        assert "differs from fn's value" in wrong.primal_output
        assert "(3 of 3 elements)" in wrong.primal_output
        assert "the primal output differs from fn's" in str(wrong)
        assert wrong.to_dict()["primal_output"] == wrong.primal_output
    layer, backward = numpy_layer()
    handwritten = jaxcheck.check_vjp(layer, *point()[:2], vjp=backward)
    assert handwritten.primal_output is None  # a vjp= has no primal output


def affine_with_bwd(bug):
    @jax.custom_vjp
    def f(x, W):
        return x @ W

    f.defvjp(lambda x, W: (x @ W, (x, W)), lambda r, g: (g @ r[1].T, r[0].T @ bug(g)))
    return f


NONLINEAR = {
    # torch gradcheck's "backward not multiplied by grad_output"
    "offset": (lambda g: g + 1e-2, "for a zero cotangent the VJP returns"),
    "squared": (lambda g: g * jnp.abs(g), "vjp(a·w₁ + w₂)"),
}


@pytest.mark.parametrize("bug", sorted(NONLINEAR))
def test_a_vjp_not_linear_in_its_cotangent_fails_in_its_leaf(bug):
    plant, message = NONLINEAR[bug]
    x, W, _ = point()
    assert jaxcheck.check_vjp(affine_with_bwd(lambda g: g), x, W, rtol=0.1).passed
    result = jaxcheck.check_vjp(affine_with_bwd(plant), x, W, rtol=0.1)
    assert not result.passed
    assert [p for p, leaf in result.leaves.items() if not leaf.passed] == ["['W']"]
    linear = result.leaves["['W']"].linear
    assert linear.startswith("not linear in the cotangent") and message in linear
    assert "['W'][" in linear  # the element
    assert "1 of 2 leaves not linear in the cotangent" in str(result)
    if bug == "offset":  # rtol=0.1 hides the offset from ⟨u, Jᵀw⟩ = ⟨Ju, w⟩ itself
        assert result.leaves["['W']"].holds


def test_a_jvp_not_linear_in_its_tangent_fails():
    @jax.custom_jvp
    def f(x):
        return jnp.sin(x)

    f.defjvp(lambda p, t: (jnp.sin(p[0]), jnp.cos(p[0]) * t[0] + 1e-2))
    result = jaxcheck.check_jvp(f, jnp.arange(1.0, 4.0), rtol=0.1)
    assert not result.passed
    assert result.leaves["['x']"].linear.startswith("not linear in the tangent")
    assert "output[" in result.leaves["['x']"].linear


def callback_layer(bug=None):
    """tanh(x @ W) computed on the host (JAX cannot differentiate it) with a custom_vjp."""

    @jax.custom_vjp
    def f(x, W):
        shape = jax.ShapeDtypeStruct((x.shape[0], W.shape[1]), x.dtype)
        host = lambda x, W: np.tanh(np.asarray(x) @ np.asarray(W)).astype(x.dtype)  # noqa: E731
        return jax.pure_callback(host, shape, x, W, vmap_method="sequential")

    def fwd(x, W):
        y = f(x, W)
        return y, (x, W, y)

    def bwd(res, g):
        x, W, y = res
        d = g * (1 - y**2)
        dx, dW = d @ W.T, x.T @ d
        return (dx, dW) if bug is None else bug(dx, dW)

    f.defvjp(fwd, bwd)
    return f


def test_a_pure_callback_primal_is_checked_against_finite_differences():
    x, W, _ = point()
    result = jaxcheck.check_vjp(callback_layer(), x, W)
    assert result.passed, result
    assert any("central differences" in n and "float64" in n for n in result.notes)
    planted = callback_layer(lambda dx, dW: (dx, dW.at[1, 2].add(0.05)))
    bad = jaxcheck.check_vjp(planted, x, W)
    assert not bad.passed
    assert [(e.path, e.index) for e in bad.failures] == [("['W']", (1, 2))]
    assert bad.failures[0].analytic - bad.failures[0].numeric == pytest.approx(0.05, rel=1e-6)
    # float32 primals: the differences are taken in float64 all the same (Chainer's dtype=)
    x32, W32 = x.astype(np.float32), W.astype(np.float32)
    native = jaxcheck.check_vjp(callback_layer(), x32, W32, precision="native")
    assert native.passed, native
    assert any("central differences" in n and "float64" in n for n in native.notes)


def test_a_custom_jvp_around_a_pure_callback_is_checked_against_finite_differences():
    def make(factor):
        @jax.custom_jvp
        def f(x):
            return jax.pure_callback(np.sin, jax.ShapeDtypeStruct(x.shape, x.dtype), x)

        f.defjvp(lambda p, t: (f(p[0]), factor * jnp.cos(p[0]) * t[0]))
        return f

    x = jnp.linspace(-1.0, 2.0, 7)
    assert jaxcheck.check_jvp(make(1.0), x, transforms=()).passed
    wrong = jaxcheck.check_jvp(make(1.001), x, transforms=())
    assert not wrong.passed and len(wrong.failures) == 7


def test_a_function_jax_cannot_differentiate_and_without_a_rule_is_refused_with_a_fix():
    def f(x):
        return jax.pure_callback(np.sin, jax.ShapeDtypeStruct(x.shape, x.dtype), x)

    with pytest.raises(TypeError, match=r"cannot differentiate fn.*custom_vjp.*check_grad"):
        jaxcheck.check_vjp(f, jnp.arange(3.0))


def test_a_pallas_kernel_jax_cannot_differentiate_is_checked_against_finite_differences():
    pl = pytest.importorskip("jax.experimental.pallas")

    def kernel(x_ref, o_ref):  # Σ_i sin(x[i, :]), accumulated over a grid of rows
        @pl.when(pl.program_id(0) == 0)
        def _():
            o_ref[...] = jnp.zeros_like(o_ref)

        o_ref[...] += jnp.sin(x_ref[...])

    def column_sum(x):
        n, m = x.shape
        return pl.pallas_call(
            kernel, out_shape=jax.ShapeDtypeStruct((1, m), x.dtype), grid=(n,),
            in_specs=[pl.BlockSpec((1, m), lambda i: (i, 0))],
            out_specs=pl.BlockSpec((1, m), lambda i: (0, 0)), interpret=True,
        )(x)[0]  # fmt: skip

    def make(bug):
        @jax.custom_vjp
        def f(x):
            return column_sum(x)

        def bwd(x, g):
            dx = g[None] * jnp.cos(x)
            return (dx.at[2, 1].multiply(1.1) if bug else dx,)

        f.defvjp(lambda x: (column_sum(x), x), bwd)
        return f

    x = jnp.asarray(np.random.default_rng(0).standard_normal((3, 4)))
    result = jaxcheck.check_vjp(make(False), x)
    assert result.passed, result
    assert any("cannot differentiate" in n and "central differences" in n for n in result.notes)
    bad = jaxcheck.check_vjp(make(True), x, transforms=())
    assert [(e.path, e.index) for e in bad.failures] == [("['x']", (2, 1))]


# ---- rules that ship inside the jax package, kernels that refuse float64 ---------------------


def _rules_in(fn, *args):
    """is_jax_rule of every custom rule in fn's program, in order."""
    from jaxcheck._rules import primal

    found = []

    def walk(jaxpr):
        for e in jaxpr.eqns:
            if e.primitive.name in primal.CUSTOM:
                found.append(primal.is_jax_rule(e.params["call_jaxpr"]))
            for v in e.params.values():
                inner = getattr(v, "jaxpr", None)
                if inner is not None:
                    walk(getattr(inner, "jaxpr", inner))

    walk(jax.make_jaxpr(fn)(*args).jaxpr)
    return found


def _pallas_attention():
    attention = pytest.importorskip("jax.experimental.pallas.ops.gpu.attention")
    blocks = attention.BlockSizes(block_q=16, block_k=16, block_q_dkv=16, block_kv_dkv=16,
                                  block_q_dq=16, block_kv_dq=16)  # fmt: skip

    def mha(q, k, v):  # interpret=True: the kernel runs on the CPU
        return attention.mha(q, k, v, None, 1.0, False, blocks, "triton", None, 2, None, True)

    return mha


def test_only_jax_cores_rules_are_trusted_not_every_module_in_the_package():
    """jax.nn.relu's rule is JAX's (kept in the reference); a Pallas attention kernel and
    jax.experimental.ode ship inside the jax package but are rules like any user's (they were
    kept, so the reference called the rule under test)."""
    from jax.experimental import ode

    assert _rules_in(jax.nn.relu, jnp.ones(3)) == [True]
    odeint = lambda y0: ode.odeint(lambda y, t: -y, y0, jnp.linspace(0.0, 1.0, 3))  # noqa: E731
    assert _rules_in(odeint, jnp.ones(2)) == [False]
    q = jnp.ones((1, 16, 1, 16))
    assert _rules_in(_pallas_attention(), q, q, q) == [False]


def test_a_pallas_attention_kernel_inside_jax_is_checked_and_its_wrong_dk_caught():
    """The flash-attention kernel of jax.experimental.pallas.ops (it builds float32 carries,
    so it cannot run in float64: checked natively, with a note), its dK scaled by 0.3."""
    mha = _pallas_attention()
    rng = np.random.default_rng(0)
    q, k, v = (jnp.asarray(rng.normal(size=(1, 16, 1, 16)), jnp.float32) for _ in range(3))

    def wrong(q, k, v, ct):
        dq, dk, dv = jax.vjp(mha, q, k, v)[1](ct)
        return dq, 0.3 * dk, dv

    bad = jaxcheck.check_vjp(mha, q, k, v, vjp=wrong, transforms=())
    assert not bad.passed
    assert [path for path, leaf in bad.leaves.items() if not leaf.passed] == ["['k']"], bad
    assert any("cannot run in float64" in n for n in bad.notes), bad.notes
    assert any("1 custom rule(s) replaced" in n for n in bad.notes), bad.notes


def test_an_assertion_without_a_message_inside_a_rule_says_where_and_what_to_try():
    @jax.custom_vjp
    def f(x):
        return jnp.sin(x)

    def bwd(x, g):
        if g.shape != (99,):  # a kernel's shape assertion: no message (pytest rewrites
            raise AssertionError  # an `assert` in a test file to give it one)
        return (g * jnp.cos(x),)

    f.defvjp(lambda x: (jnp.sin(x), x), bwd)
    with pytest.raises(RuntimeError, match=r"assertion without a message failed in bwd") as e:
        jaxcheck.check_vjp(f, jnp.arange(3.0))
    assert "precision='native'" in str(e.value) and "transforms=()" in str(e.value)
