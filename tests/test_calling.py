"""The checks people write: argnums, cotangent, has_aux, the gradient outputs they pass, and
the messages for the mistakes they make."""

import os
import re
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcheck

RNG = np.random.default_rng(0)

# ---- a CS231n layer: forward(x, w, b) -> (out, cache), backward(dout, cache) -> dx, dw, db ----


def affine_forward(x, w, b):
    out = x.reshape(x.shape[0], -1) @ w + b
    return out, (x, w, b)


def affine_backward(dout, cache, bug=None):
    x, w, b = cache
    dx = (dout @ w.T).reshape(x.shape)
    dw = x.reshape(x.shape[0], -1).T @ dout
    db = dout.sum(axis=0)
    if bug == "dw":
        dw = 2 * dw
    return dx, dw, db


def relu_forward(x):
    return np.maximum(0, x), x  # NumPy: not traceable by JAX, evaluated on the host


def relu_backward(dout, cache, bug=False):
    return dout * (cache > 0) if not bug else dout * (cache >= -0.1)


X, W, B = RNG.normal(size=(4, 3, 2)), RNG.normal(size=(6, 5)), RNG.normal(size=5)
DOUT = RNG.normal(size=(4, 5))


def test_a_layer_with_an_upstream_gradient_is_one_call_named_after_its_inputs():
    result = jaxcheck.check_grad(
        lambda x, w, b: affine_forward(x, w, b)[0], X, W, B, argnums=(0, 1, 2), cotangent=DOUT,
        grad_fn=lambda x, w, b: affine_backward(DOUT, affine_forward(x, w, b)[1]),
    )  # fmt: skip
    assert result.passed, result
    assert set(result.leaves) == {"['x']", "['w']", "['b']"}
    assert result.leaves["['x']"].shape == (4, 3, 2)


def test_a_wrong_layer_gradient_is_located_in_its_argument():
    result = jaxcheck.check_grad(
        lambda x, w, b: affine_forward(x, w, b)[0], X, W, B, argnums=(0, 1, 2), cotangent=DOUT,
        grad_fn=lambda x, w, b: affine_backward(DOUT, affine_forward(x, w, b)[1], bug="dw"),
    )  # fmt: skip
    assert result.verdict == "failed"
    assert {leaf.path for leaf in result.leaves.values() if not leaf.passed} == {"['w']"}
    assert "2 × numeric" in result.leaves["['w']"].diagnosis


def test_a_numpy_layer_with_an_upstream_gradient():
    x = RNG.normal(size=(5, 4)) + 0.05  # away from the kink at 0 by more than the step
    x[np.abs(x) < 0.2] = 0.5
    dout = RNG.normal(size=x.shape)
    good = jaxcheck.check_grad(lambda x: relu_forward(x)[0], x, cotangent=dout,
                               grad_fn=lambda x: relu_backward(dout, x))  # fmt: skip
    assert good.passed, good
    assert any("not JAX-traceable" in n for n in good.notes)
    x[0, 0] = -0.05  # where the planted bug's mask differs
    bad = jaxcheck.check_grad(lambda x: relu_forward(x)[0], x, cotangent=dout,
                              grad_fn=lambda x: relu_backward(dout, x, bug=True))  # fmt: skip
    assert [(e.path, e.index) for e in bad.failures] == [("params", (0, 0))]


def test_argnums_as_an_int_checks_that_argument_with_its_own_structure():
    def f(x, p):
        return jnp.sum(jnp.tanh(x @ p["w"]))

    x, p = RNG.normal(size=(3, 4)), {"w": RNG.normal(size=(4, 2))}
    result = jaxcheck.check_grad(f, x, p, argnums=1, grad_fn=jax.grad(f, argnums=1))
    assert result.passed and set(result.leaves) == {"['w']"}, result

    def thrice(x, p):
        return {"w": 3 * jax.grad(f, argnums=1)(x, p)["w"]}

    wrong = jaxcheck.check_grad(f, x, p, argnums=1, grad_fn=thrice)
    assert wrong.verdict == "failed"


def test_has_aux_with_every_gradient_jax_gives():
    def f(p, x):
        return jnp.sum(jnp.sin(x @ p["w"])), {"logits": x @ p["w"]}

    p, x = {"w": RNG.normal(size=(3, 2))}, RNG.normal(size=(4, 3))
    for grad_fn in (None, jax.grad(f, has_aux=True), jax.value_and_grad(f, has_aux=True)):
        result = jaxcheck.check_grad(f, p, x, has_aux=True, grad_fn=grad_fn)
        assert result.passed, (grad_fn, result)


def test_value_and_grad_nnx_grad_and_torch_gradients_are_accepted():
    def f(p, x):
        return jnp.sum(jnp.tanh(x @ p["w"] + p["b"][None]))

    p, x = {"w": RNG.normal(size=(3, 2)), "b": RNG.normal(size=2)}, RNG.normal(size=(4, 3))
    assert jaxcheck.check_grad(f, p, x, grad_fn=jax.value_and_grad(f)).passed
    torch = pytest.importorskip("torch")

    def torch_grads(p, x):
        return {k: torch.tensor(np.asarray(v)) for k, v in jax.grad(f)(p, x).items()}

    assert jaxcheck.check_grad(f, p, x, grad_fn=torch_grads).passed


def test_nnx_grad_state_matches_the_module_and_a_bug_is_located():
    nnx = pytest.importorskip("flax.nnx")

    class M(nnx.Module):
        def __init__(self, rngs):
            self.l1 = nnx.Linear(3, 4, rngs=rngs)
            self.l2 = nnx.Linear(4, 1, rngs=rngs)

        def __call__(self, x):
            return self.l2(jnp.tanh(self.l1(x)))

    model, x = M(nnx.Rngs(0)), jnp.asarray(RNG.normal(size=(5, 3)), jnp.float32)

    def loss(m, x):
        return jnp.mean(m(x) ** 2)

    assert jaxcheck.check_grad(loss, model, x, grad_fn=nnx.grad(loss)).passed

    def wrong(m, x):
        g = nnx.grad(loss)(m, x)
        g["l1"]["bias"][...] = g["l1"]["bias"][...].at[2].add(0.5)
        return g

    result = jaxcheck.check_grad(loss, model, x, grad_fn=wrong)
    assert [(e.path, e.index) for e in result.failures] == [(".l1.bias", (2,))]


# ---- messages for the mistakes people make -----------------------------------------------------


def _loss(p, x, y):
    return jnp.mean((x @ p["w"] - y) ** 2)


P = {"w": RNG.normal(size=(3, 2))}
XX, YY = RNG.normal(size=(4, 3)), RNG.normal(size=(4, 2))

MISTAKES = {
    "the transform as grad_fn": (dict(grad_fn=jax.grad), (XX, YY), TypeError,
                                 r"grad_fn=jax\.grad is the transform itself.*jax\.grad\(fn\)"),
    "the gradient as fn": (dict(fn=jax.grad(_loss)), (XX, YY), TypeError,
                           r"shaped like params: that is a gradient.*grad_fn="),
    "targets forgotten": ({}, (XX,), TypeError,
                          r"fn\(params, \*args\).*missing a required argument: 'y'.*targets"),
    "backward(dout, cache) as grad_fn": (dict(grad_fn=affine_backward), (XX, YY), TypeError,
                                         r"backward\(dout, cache.*cotangent=dout"),
    "inputs as one tuple (torch's gradcheck habit)": (
        dict(fn=lambda x, w: jnp.sum(x @ w)), (), TypeError,
        r"one tuple of 2, as torch.autograd.gradcheck.*argnums=\(0, 1\)"),
    "the gradients instead of a function": (dict(grad_fn={"w": np.zeros((3, 2))}), (XX, YY),
                                            TypeError, r"got a dict. It looks like the gradients"),
    "tol=": (dict(tol=1e-5), (XX, YY), TypeError, r"tol=.*did you mean rtol=.*atol="),
    "epsilon=": (dict(epsilon=1e-5), (XX, YY), TypeError, r"epsilon=.*did you mean eps="),
    "tolerance=": (dict(tolerance=1e-5), (XX, YY), TypeError, r"tolerance=.*mean rtol=.*atol="),
    "eps_size=": (dict(eps_size=1e-5), (XX, YY), TypeError, r"eps_size= \(did you mean eps=\?\)"),
    "a None gradient leaf": (dict(grad_fn=lambda p, x, y: {"w": None}), (XX, YY), TypeError,
                             r"gradient for params\['w'\] is None"),
    "grad_fn returns None": (dict(grad_fn=lambda p, x, y: None), (XX, YY), TypeError,
                             r"grad_fn returned None.*return"),
    "(loss, aux) without has_aux": (dict(fn=lambda p, x, y: (_loss(p, x, y), 0)), (XX, YY),
                                    TypeError, r"tuple of 2.*has_aux=True"),
    "argnums out of range": (dict(argnums=3), (XX, YY), ValueError,
                             r"argnums=3.*positions 0 to 2"),
    "one gradient per argnum": (dict(argnums=(0, 1), grad_fn=jax.grad(_loss)), (XX, YY),
                                ValueError, r"one gradient per argument.*a tuple of 2"),
    "a cotangent of the wrong shape": (dict(fn=lambda p, x, y: x @ p["w"], cotangent=np.ones(3)),
                                       (XX, YY), ValueError,
                                       r"cotangent has shape \(3,\).*\(4, 2\)"),
}  # fmt: skip


@pytest.mark.parametrize("case", MISTAKES)
def test_each_common_mistake_gets_the_fix(case):
    options, args, kind, match = MISTAKES[case]
    fn = options.pop("fn", _loss)
    params = (XX, P["w"]) if "torch" in case else P
    with pytest.raises(kind, match=match):
        jaxcheck.check_grad(fn, params, *args, **options)


def test_torch_parameters_are_refused_in_one_line():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match=r"params\['w'\] is a torch.Tensor.*detach\(\)\.numpy"):
        jaxcheck.check_grad(_loss, {"w": torch.ones(3, 2)}, XX, YY)


def test_a_lower_precision_gradient_is_said():
    def grad_fn(p, x, y):
        return {"w": np.asarray(jax.grad(_loss)(p, x, y)["w"], np.float32)}

    with jax.enable_x64(True):
        result = jaxcheck.check_grad(_loss, P, XX, YY, grad_fn=grad_fn)
    assert any("float32 gradients for float64 parameters" in n for n in result.notes), result


def test_an_input_error_under_pytest_shows_the_users_line_not_jaxchecks_frames(tmp_path):
    test = tmp_path / "test_user.py"
    test.write_text(textwrap.dedent("""
        import jax.numpy as jnp
        import jaxcheck

        def test_mine():
            jaxcheck.check_grad(lambda p, x, y: jnp.sum(p * x), jnp.ones(3), jnp.ones(3))
    """))  # fmt: skip
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:xdist",
        "-p",
        "no:cacheprovider",
        str(test),
    ]
    out = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 1, out.stdout
    assert "targets too" in out.stdout
    frames = [line for line in out.stdout.splitlines() if "jaxcheck/" in line and ".py:" in line]
    assert len(frames) <= 1, out.stdout
    assert len(out.stdout.splitlines()) < 40, out.stdout


def test_a_repeated_check_with_argnums_or_has_aux_compiles_nothing_new():
    from . import helpers as h

    def f(x, w):
        return jnp.sum(jnp.tanh(x @ w)), None

    x, w = RNG.normal(size=(3, 4)), RNG.normal(size=(4, 2))
    jaxcheck.check_grad(f, x, w, argnums=(0, 1), has_aux=True)
    with h.count_compilations() as counted:
        again = jaxcheck.check_grad(f, x, w, argnums=(0, 1), has_aux=True)
    assert again.passed and len(counted) == 0


def test_jaxcheck_traceback_keeps_jaxchecks_frames(monkeypatch):
    import traceback

    def frames():
        try:
            jaxcheck.check_grad(_loss, P, XX, YY, grad_fn=lambda p, x, y: None)
        except TypeError as e:
            return [f.filename for f in traceback.extract_tb(e.__traceback__)]

    assert not any("jaxcheck" in f and "tests" not in f for f in frames())
    monkeypatch.setenv("JAXCHECK_TRACEBACK", "1")
    assert any(os.path.join("jaxcheck", "_core") in f for f in frames())  # the raising frame


# ---- arguments in the wrong shape: swapped, packed, as keywords, traced ----------------------


def test_params_and_data_swapped_say_so_with_fns_own_error_as_the_cause():
    import traceback

    with pytest.raises(TypeError) as info:
        jaxcheck.check_grad(_loss, XX, P, YY)  # params second: fn indexes an array with "w"
    message = str(info.value)
    assert re.search(
        r"_loss raised IndexError: .* on its first call, and its arguments look swapped: .*"
        r"first argument given is an array of shape \(4, 3\), which looks like data, while the "
        r"second is a dict of 1 array \('w'\), which looks like the parameters\. Pass the "
        r"parameters first: check_grad\(_loss, p, x, y\)",
        message,
    ), message
    cause = info.value.__cause__
    assert isinstance(cause, IndexError)
    frames = traceback.extract_tb(cause.__traceback__)
    assert frames[0].name == "_loss"  # the user's line, and no jaxcheck frame before it
    package = os.path.dirname(os.path.abspath(jaxcheck.__file__)) + os.sep  # by location, not name
    assert not any(os.path.abspath(f.filename).startswith(package) for f in frames), frames


def test_an_array_first_and_a_dict_after_it_is_not_refused_when_fn_works():
    def f(x, data):
        return jnp.sum(jnp.tanh(x * data["scale"]))

    result = jaxcheck.check_grad(f, XX, {"scale": YY[:, :1]})
    assert result.passed, result

    def failing_backward(x, data):
        raise KeyError("scale")  # grad_fn's own error, not fn's: no word about the order

    with pytest.raises(KeyError):
        jaxcheck.check_grad(f, XX, {"scale": YY[:, :1]}, grad_fn=failing_backward)


def test_parameters_packed_in_a_tuple_for_a_function_that_takes_them_one_by_one():
    def mlp_loss(W1, W2, x, y):
        return jnp.mean((jnp.tanh(x @ W1) @ W2 - y) ** 2)

    W1, W2 = RNG.normal(size=(3, 5)), RNG.normal(size=(5, 2))
    with pytest.raises(TypeError) as info:
        jaxcheck.check_grad(mlp_loss, (W1, W2), XX, YY)
    assert (
        "The parameters came as one tuple of 2, but mlp_loss takes them one by one (W1, W2): "
        "pass them unpacked and say which to check, check_grad(mlp_loss, W1, W2, x, y, "
        "argnums=(0, 1))" in str(info.value)
    ), info.value
    assert "targets" not in str(info.value)
    result = jaxcheck.check_grad(mlp_loss, W1, W2, XX, YY, argnums=(0, 1))  # the fix works
    assert result.passed and set(result.leaves) == {"['W1']", "['W2']"}, result


def test_data_as_keywords_is_passed_on_to_fn_and_grad_fn_like_positional_data():
    positional = jaxcheck.check_grad(_loss, P, XX, YY)
    by_name = jaxcheck.check_grad(_loss, P, x=XX, y=YY)
    assert by_name.passed and by_name.difference == positional.difference, by_name

    def wrong(p, x, y):
        return {"w": 1.5 * jax.grad(_loss)(p, x, y)["w"]}

    assert jaxcheck.check_grad(_loss, P, XX, y=YY, grad_fn=wrong).verdict == "failed"

    def keyword_only(p, *, x, y):
        return _loss(p, x, y)

    assert jaxcheck.check_grad(keyword_only, P, x=XX, y=YY).passed
    # cast to float64 like positional data: float32 data would make fn compute in float32
    x32 = XX.astype(np.float32)
    result = jaxcheck.check_grad(keyword_only, P, x=x32, y=YY)
    assert result.passed and not any("computes in" in n for n in result.notes), result.notes

    def f(x, w, y):
        return jnp.sum((x @ w - y) ** 2)

    both = jaxcheck.check_grad(f, XX, P["w"], y=YY, argnums=(0, 1))
    assert both.passed and set(both.leaves) == {"['x']", "['w']"}, both


KEYWORD_MISTAKES = {
    "keyword-only data given positionally": (
        lambda p, *, x, y: _loss(p, x, y), (XX, YY), {},
        r"takes x, y by keyword only: pass them as keywords, check_grad\(fn, p, x=x, y=y\)"),
    "a data keyword named like an option": (
        lambda p, x, *, eps: _loss(p, x, YY) * eps, (XX,), {"eps": 1e-3},
        r"missing a required argument: 'eps'.*eps= is also one of check_grad's own options.*"
        r"functools\.partial"),
    "a keyword fn does not take": (
        _loss, (XX, YY), {"z": YY}, r"unexpected keyword argument z="),
    "a mistyped option where fn takes **kwargs": (
        lambda p, x, y, **kw: _loss(p, x, y), (XX, YY), {"tol": 1e-5},
        r"tol=.*did you mean rtol=.*atol="),
}  # fmt: skip


@pytest.mark.parametrize("case", KEYWORD_MISTAKES)
def test_keyword_mistakes_get_the_fix(case):
    fn, args, keywords, match = KEYWORD_MISTAKES[case]
    with pytest.raises(TypeError, match=match):
        jaxcheck.check_grad(fn, P, *args, **keywords)


def test_a_linen_module_as_params_asks_for_its_variables():
    nn = pytest.importorskip("flax.linen")

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(2)(jnp.tanh(nn.Dense(4)(x)))

    model = MLP()
    with pytest.raises(TypeError) as info:
        jaxcheck.check_grad(lambda m, x, y: jnp.mean((m(x) - y) ** 2), model, XX, YY)
    assert re.match(
        r"params is a flax.linen Module \(MLP\), which holds no parameters", str(info.value)
    )
    assert "variables = model.init(jax.random.key(0), x)" in str(info.value)
    assert "model.apply(variables, x)" in str(info.value)
    assert info.value.__traceback__ is None or len(traceback_frames(info.value)) <= 1


def traceback_frames(e):
    import traceback

    return [f for f in traceback.extract_tb(e.__traceback__) if "jaxcheck" in f.filename]


@pytest.mark.parametrize("transform", ["jit", "vmap"])
def test_check_grad_under_a_transform_says_to_call_it_outside(transform):
    def step(p, x):
        jaxcheck.check_grad(_loss, p, x, YY)
        return p

    with pytest.raises(TypeError) as info:
        if transform == "jit":
            jax.jit(step)(P, XX)
        else:
            jax.vmap(step, in_axes=(None, 0))(P, np.stack([XX, XX]))
    where = r"params\['w'\]" if transform == "jit" else "x"
    assert re.match(
        where + r" is a traced value \(\w+Tracer\): check_grad was called inside jax.jit, vmap, "
        r"grad or another transform.*call it outside the transformed function",
        str(info.value),
        re.DOTALL,
    ), info.value
    assert "GradMonitor" in str(info.value)
