"""check_grad: validate the input, pick the engine, judge, assemble the result."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._core import errors as _errors
from .._core.coords import Coords, OnlySpec
from .._core.result import CheckResult
from .._engine import journal as _journal
from .._engine import layout as _layout
from .._engine import progress as _progress
from .._engine.batched import JaxEngine
from .._engine.flat import FlatEngine
from .._engine.host import HostEngine
from .._numerics import complex as _complex
from .._numerics import methods
from .._numerics import stencils as st
from . import autostep as _autostep
from . import calling, elementwise, gradient, loss, options
from . import complex_step as _complex_step
from . import directional as _directional
from . import hessian as _hessian
from .assemble import assemble

SAMPLES = 64  # elements per leaf in mode="sample"


@_errors.hides_input_errors  # a mistake in the input shows the user's line
def check_grad(
    fn: Callable[..., Any],
    params: Any,
    *args: Any,
    grad_fn: Callable[..., Any] | None = None,
    argnums: int | Sequence[int] = 0,
    cotangent: Any = None,
    has_aux: bool = False,
    mode: str = "full",
    method: str | None = None,
    kinks: str = "report",
    order: int = 1,
    hvp_fn: Callable[..., Any] | None = None,
    eps: float | Mapping[str, float] | str | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    nondet_tol: float = 0.0,
    only: OnlySpec = None,
    precision: str = "float64",
    seed: int = 0,
    directions: int = _directional.DIRECTIONS,
    samples: int = SAMPLES,
    chunk_size: int | None = None,
    max_memory: int | str | None = None,
    progress: bool | None = None,
    journal: str | os.PathLike | None = None,
    devices: Any = None,
    cache_dir: str | os.PathLike | None = None,
    **unknown: Any,
) -> CheckResult:
    """Check a gradient against central finite differences, element by element.

    For every floating-point element θ_i of `params`, computes
    D_i = (fn(θ + h_i e_i) − fn(θ − h_i e_i)) / 2h_i and compares it with the gradient under
    test g_i. The element fails when |g_i − D_i| exceeds a tolerance built from an error
    model of the finite difference itself (round-off ∝ |fn| / h_i, truncation estimated from
    a second step 2h_i) plus `rtol·|g_i| + atol`; see the README's "How pass/fail is decided".

    Args:
        fn: `fn(params, *args)` returns the scalar loss. JAX code is evaluated in jit-compiled
            vmap batches; code JAX cannot trace (plain NumPy) is evaluated on the host, one
            point at a time. A non-scalar output is checked through a random projection w·fn.
        params: any pytree of parameters. Non-float leaves are skipped and listed.
        *args: data and targets, passed to fn and grad_fn unchanged (float arrays are cast
            to float64 when `precision="float64"`).
        grad_fn: the gradient under test, `grad_fn(params, *args)`, returning a pytree like
            params or one flat vector in `ravel_pytree(params)` order. None: `jax.grad(fn)`.
            What `jax.value_and_grad(fn)` returns, (value, grads), is accepted, and so are
            `nnx.grad`'s State and gradients given as NumPy arrays or torch tensors.
        argnums: as in `jax.grad`: the positional arguments checked (0: params). A tuple
            checks several; the leaves are named after fn's parameters (`x`, `w`, `b`) and
            grad_fn returns one gradient per argument, in argnums order.
        cotangent: for fn returning an array: check the gradient of ⟨cotangent, fn(...)⟩,
            a layer's backward pass given the upstream gradient `dout` (CS231n's
            `eval_numerical_gradient_array(f, x, df)`). None: a scalar fn, or a random w.
        has_aux: fn returns (loss, aux), as with `jax.grad(..., has_aux=True)`.
        mode: "full", every element; "directional", `directions` random directions per leaf,
            then group testing to locate the wrong elements of a failing leaf; "sample",
            `samples` random elements of every leaf.
        method: the finite difference: "central", "central4", "central6", "richardson"
            (extrapolation over h, h/2, h/4) or "forward" (n + 1 evaluations for a correct
            gradient); each with its own default step and error estimate. None: "central",
            or "richardson" when precision="native" checks float32 or lower-precision leaves.
            "complex_step": Im f(θ + i·h·e_i)/h, exact for complex-analytic losses; each leaf
            is verified against central differences along random directions first and falls
            back to the default method (with a note) where it disagrees.
        kinks: "report" (default): an element whose g lies between the one-sided slopes
            (ReLU, max, abs at θ) while D disagrees gets status "kink" and does not fail the
            check; "fail": kinks fail it.
        order: 1 checks the gradient; 2 checks Hessian-vector products H·v, for
            `directions` random unit directions v per leaf, element by element against
            central differences of the gradient (grad_fn's, else jax.grad's) along v.
        hvp_fn: with order=2, the H·v under test, `hvp_fn(params, v, *args)` with v a pytree
            like params, returning one like params. None: `jax.jvp(jax.grad(fn))`.
        eps: the step h: "rule" for h_i = u^p·max(|θ_i|, typical scale of the leaf), p the
            method's (1/3 for central differences); "auto" for that times the factor (1/4
            to 256) with the smallest error estimate on a sample of each leaf; None for
            "auto" when precision="native" checks float32 or lower, else "rule"; a number
            for the same absolute step everywhere; or {leaf path: step}.
        rtol: relative tolerance on |g_i|; default 1e-6 for float64 gradients, 64·u for
            lower-precision ones.
        atol: absolute tolerance added to every element's; default 0.
        nondet_tol: re-evaluations of fn at one point may differ by up to this much (torch's
            name and meaning: GPU atomics in a scatter-add or segment_sum reorder additions);
            such differences are reported in the notes and counted as noise in f, larger
            ones are "nondeterministic". Default 0: any difference beyond rounding.
        only: check only leaves whose key path matches: a regular expression (searched), a
            list of them, or a function of the path string.
        precision: "float64" (default) checks in float64 whatever the model's dtype, inside
            `jax.enable_x64` (the global config is untouched); "native" checks in the
            parameters' own dtypes.
        seed: seed of the random projection used for non-scalar outputs, and of the random
            directions and samples.
        directions: Gaussian directions per leaf in mode="directional".
        samples: elements checked per leaf in mode="sample".
        chunk_size: perturbations per compiled batch; None sizes chunks to fit max_memory.
        max_memory: bytes (or a string like "512MB") the check's batches may use; None: a
            quarter of an accelerator's memory, on CPU the smaller of 2 GiB and RAM/8.
        progress: a progress bar on stderr (needs `jaxcheck[progress]`, i.e. tqdm): None
            shows it on a terminal once a check has run two seconds; True always; False never.
        journal: a file that records every finished chunk of evaluations, so that a check
            killed at any moment resumes there when run again with the same journal; a
            journal made for other parameters, data, options or fn is refused.
        devices: the devices each chunk of perturbations is split over (a jax.sharding
            Mesh over them; parameters and data replicated). None: every local device when
            there are several. The results are those of a single-device run.
        cache_dir: a directory for JAX's persistent compilation cache, so that the same
            check in a fresh process (a regression script rerun) loads its executables
            instead of compiling them. Turned on for the whole process, every executable
            cached. None: the environment variable JAXCHECK_CACHE_DIR if set, else JAX's own
            setting (jax_compilation_cache_dir) is left as it is.

    Returns:
        A `CheckResult`.

    Raises:
        ValueError, TypeError: bad input, before any long computation, with the leaf path
            and the fix in the message.

    Example:
        >>> import jax.numpy as jnp, jaxcheck
        >>> loss = lambda p, x: jnp.sum(jnp.tanh(x @ p["w"]) ** 2)
        >>> params = {"w": jnp.ones((3, 2)) / 4}
        >>> jaxcheck.check_grad(loss, params, jnp.arange(6.0).reshape(2, 3)).passed
        True
    """
    options.refuse_unknown(unknown)
    options.validate(fn, grad_fn, mode, rtol, atol, precision, seed, chunk_size, progress)
    call = calling.adapt(fn, params, args, grad_fn, argnums, cotangent, has_aux)
    return _checked(call.fn, call.params, call.args, call.grad_fn, mode, method, kinks, order,
                    hvp_fn, eps, rtol, atol, nondet_tol, only, precision, seed, directions,
                    samples, chunk_size, max_memory, progress, journal, devices, cache_dir,
                    call.cotangent)  # fmt: skip


def _checked(fn, params, args, grad_fn, mode, method, kinks, order, hvp_fn, eps, rtol, atol,
             nondet_tol, only, precision, seed, directions, samples, chunk_size, max_memory,
             progress, journal, devices, cache_dir, cotangent) -> CheckResult:  # fmt: skip
    options.compilation_cache(cache_dir)
    coords = Coords.build(params, only)
    steps = options.steps_option(eps, coords)
    engine_options = {
        "chunk": chunk_size,
        "max_memory": options.memory_option(max_memory),
        "progress": _progress.ask(progress),
        "journal": options.journal_option(journal, order),
        "devices": options.devices_option(devices),
    }
    options.validate_order(order, hvp_fn, mode)
    options.validate_method(method, kinks, order, mode)
    plan = {
        "mode": mode,
        "method": method or _default_method(coords, precision, order),
        "step_rule": eps if isinstance(eps, str) else _default_rule(coords, precision),
        "kinks": kinks,
        "order": order,
        "hvp_fn": hvp_fn,
        "directions": options.count_option("directions", directions, "directions per leaf"),
        "samples": options.count_option("samples", samples, "elements sampled per leaf"),
        "seed": seed,
        "nondet_tol": options.nondet_option(nondet_tol),
        "cotangent": cotangent,
    }

    def run(grad_fn):
        with options.numerics(precision):
            return _check(
                fn, params, args, coords, grad_fn, steps, rtol, atol, precision, plan,
                engine_options,
            )  # fmt: skip

    result = run(grad_fn)
    if result.verdict == "failed" and grad_fn is not None:
        with options.numerics(precision):  # grad_fn is called in the check's numerics
            result = gradient.in_insertion_order(result, run, grad_fn, params, args, coords)
    return result


def _cast_args(args: tuple, precision: str) -> tuple:
    if precision == "native":
        return args

    def cast(x):
        if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jnp.floating):
            return x.astype(jnp.float64)
        if isinstance(x, np.ndarray) and np.issubdtype(x.dtype, np.floating):
            return x.astype(np.float64)
        return x

    return jax.tree_util.tree_map(cast, args)


# ---- the check -------------------------------------------------------------------------------


def _check(fn, params, args, coords, grad_fn, steps, rtol, atol, precision, plan, engine_options):
    seed, mode = plan["seed"], plan["mode"]
    notes: list[str] = []
    nondet = elementwise.Nondet(plan["nondet_tol"])
    leaves = jax.tree_util.tree_leaves(params)
    traced, why = loss.trace(fn, leaves, coords, args)
    values = coords.cast(leaves, options.working_dtype(precision, traced=traced is not None))
    work_params, work_args = coords.unflatten(values), _cast_args(args, precision)
    coords.check_finite(values)
    own_dtype, note = gradient.precision(coords, precision, plan["order"])
    own_note = len(notes)
    notes += [note] if note else []

    if traced is not None:  # compiled: op-by-op evaluation compiles every primitive on its own
        out = loss.abstract_output(fn, work_params, work_args)
    else:
        out = fn(work_params, *work_args)
    shape, out_dtype = loss.output_info(out, coords)
    w = None
    if plan["cotangent"] is not None:
        w = plan["cotangent"]
        if w.shape != shape:
            raise ValueError(
                f"cotangent has shape {w.shape}, but fn returns shape {shape}: pass the upstream "
                "gradient of fn's output (dout), shaped like the output."
            )
        w = w.astype(out_dtype)
        notes.append(f"checked the gradient of ⟨cotangent, fn(...)⟩ (fn returns shape {shape})")
    elif int(np.prod(shape)) != 1:
        if grad_fn is not None:
            raise ValueError(
                f"fn returned an array of shape {shape}, but grad_fn is given: a gradient "
                "belongs to a scalar loss. Make fn return the scalar loss that grad_fn "
                "differentiates (e.g. jnp.sum(...)), or drop grad_fn to check JAX's derivative "
                "of fn through a random projection w·fn(params)."
            )
        w = np.random.default_rng(seed).standard_normal(shape).astype(out_dtype)
        notes.append(
            f"fn returns shape {shape}: checked the scalar w·fn(params) for one random "
            f"w ~ N(0, I) (seed={seed}), which exposes any wrong Jacobian column almost surely"
        )
    fn_scalar = loss.scalarized(fn, w)
    # Every kept executable is keyed by this: fn, the projection, and the static part of the
    # params pytree (a registered node's aux data, an nnx Module's graph), as jax.jit retraces
    # on a new treedef.
    key = (fn, coords.treedef, None if w is None else (w.shape, w.tobytes()))
    if traced is not None:
        value = None
        if grad_fn is None and not own_dtype and not any(x.is_complex for x in coords.checked):
            # JAX's gradient at these very values: its program gives f(θ) too (one compilation
            # fewer); the gradient is read from the same executable below.
            def value():
                return gradient.jax_grad(fn_scalar, values, coords, work_args, key)[0]

        f_first = loss.base_value(fn_scalar, work_params, work_args, key, out_dtype, value)
    else:  # two calls: Python-side randomness differs between them
        f_first = float(fn_scalar(work_params, *work_args))
        again = float(fn_scalar(work_params, *work_args))
        nondet.seen = loss.check_base(f_first, again, out_dtype, nondet.tol)

    given, fn_given = coords, fn_scalar
    if any(leaf.is_complex for leaf in coords.checked):  # from here on: (x, y) pairs
        coords = _complex.realify(coords)
        values = _complex.to_pairs(values, coords)
        fn_scalar = _complex.of_pairs(fn_scalar, coords)
        key = (*key, "pairs", _complex.positions(coords))
        notes.append(
            "complex leaves: real and imaginary parts checked as separate elements, against "
            "JAX's convention g = ∂f/∂x − i·∂f/∂y (the conjugate of PyTorch's)"
        )
    if grad_fn is None and traced is None:
        raise TypeError(
            f"fn could not be traced by JAX ({why}), so jax.grad cannot compute the gradient "
            "to check. Pass your handwritten backward as grad_fn=, or write fn with jax.numpy."
        )
    grads, why_not = gradient.under_test(
        own_dtype, fn_given, fn_scalar, grad_fn, (params, args), (work_params, work_args),
        leaves, values, given, coords, key, f_first, traced is not None,
    )  # fmt: skip
    if why_not:
        notes[own_note] = why_not
    if grad_fn is not None:
        notes += gradient.dtype_notes(given, grads)
    typical = _typical_scale(coords, values)
    if plan["order"] == 2:
        if plan["hvp_fn"] is None and traced is None:
            raise TypeError(
                f"fn could not be traced by JAX ({why}), so jax.jvp(jax.grad(fn)) cannot give "
                "the Hessian-vector products to check: pass your own as hvp_fn=."
            )
        if plan["hvp_fn"] is not None and coords is not given:
            raise ValueError(
                "hvp_fn= with complex parameters is not supported: check H·v with JAX's own "
                "(hvp_fn=None), or pass the real and imaginary parts as separate real leaves."
            )
        derivatives = _hessian.Derivatives(
            values, coords, given, work_args, grad_fn, plan["hvp_fn"],
            _hessian.jax_derivatives(fn_scalar, values, coords, work_args)
            if traced is not None
            else None,
        )  # fmt: skip

        def tol_of(leaf):
            return _tolerances(np.asarray(grads[leaf.path]).dtype, None, rtol, atol)

        judged, used, hvp_notes = _hessian.check(
            derivatives, coords, grads, typical, steps, plan["directions"], seed, tol_of
        )
        engine_name = "jax" if grad_fn is None and plan["hvp_fn"] is None else "host"
        return assemble(coords, judged, used, notes + hvp_notes, precision, engine_name, order=2)
    # The complex step falls back to the default method (leaves where it is unusable).
    is_cs = plan["method"] == _complex_step.NAME
    method = methods.get(_default_method(given, precision, 1) if is_cs else plan["method"])
    if is_cs:
        _complex_step.validate(given)
    # Raises on a vanishing step, before the long part.
    stencils = elementwise.Stencils(coords, values, steps, typical, method, mode != "directional")

    # A journal for another check is refused here, before anything long.
    journal = _open_journal(engine_options["journal"], fn, values, work_args, plan, steps,
                            (rtol, atol, precision), coords)  # fmt: skip

    # The input is valid: from here on, the long part.
    if traced is None:
        notes.append(
            f"fn is not JAX-traceable ({why}): perturbations evaluated on the host, one at a time"
        )
        engine = HostEngine(fn_scalar, values, coords, work_args)
    else:

        def points(leaves):
            return _expected_points(leaves, plan)

        directions = plan["directions"] if mode == "directional" else None
        engine = _batched_or_host(
            fn_scalar, values, coords, work_args, key, engine_options, notes, points, directions
        )
    u_f = st.unit_roundoff(out_dtype)
    judged = {}
    bar = _progress.bar(engine_options["progress"], _expected_points(coords.checked, plan))
    engine.progress = bar.update
    if getattr(engine, "n_devices", 1) > 1:
        notes.append(f"each chunk of perturbations split over {engine.n_devices} devices")
    engine.journal = journal
    cs, cs_name = None, _complex_step.NAME
    if is_cs:
        cs = _complex_step.ComplexStep(
            fn_scalar, values, coords, work_args, key, engine_options, traced is None
        )
        cs.progress, cs.journal = bar.update, engine.journal
    tuned: set[str] = set()  # leaves whose data-chosen step is settled
    used: dict[str, str] = {}  # leaf path -> the method that judged it
    steps_used: dict[str, float] = {}
    g_scale = gradient.scale(grads)
    for leaf in coords.checked:
        g = np.asarray(grads[leaf.path])
        tol = {**_tolerances(g.dtype, u_f, rtol, atol), "g_scale": g_scale}
        tol["noise_floor"] = nondet.tol
        g = g.astype(np.float64).reshape(-1)
        rng = np.random.default_rng([seed, leaf.position])

        def elements(subset=None, leaf=leaf, g=g, tol=tol):
            if leaf.path not in tuned and plan["step_rule"] == "auto" and leaf.path not in steps:
                stencils[leaf] = _autostep.tuned(
                    engine, leaf, stencils[leaf], method, g, tol, typical[leaf.path]
                )
            tuned.add(leaf.path)
            s = stencils[leaf]
            verdict = elementwise.judge_leaf(
                engine, leaf, s, method, g, tol, subset=subset, nondet=nondet
            )
            if plan["kinks"] == "fail":
                at_kinks = verdict.status == st.KINK
                verdict.status[at_kinks] = st.MISMATCH
                verdict = dataclasses.replace(verdict, at_kinks=at_kinks)
            return verdict

        subset = None
        if mode == "sample":
            subset = np.sort(rng.choice(leaf.size, min(leaf.size, plan["samples"]), replace=False))
        if cs is not None:
            verdict, h, why = _complex_step_leaf(cs, engine, leaf, g, f_first, typical, steps,
                                                 seed, tol, subset, elements)  # fmt: skip
            if verdict is not None:
                judged[leaf.path], used[leaf.path] = verdict, cs_name
                steps_used[leaf.path] = h
                notes += [why] if why else []
                continue
            notes.append(
                f"complex step not used on {leaf.path}: {why}; checked with "
                f"{method.name} differences"
            )
        used[leaf.path] = method.name
        if mode != "directional":
            judged[leaf.path] = elements(subset)
        else:
            theta = np.asarray(values[leaf.position]).reshape(-1)
            step = _directional.direction_step(theta, typical[leaf.path], steps.get(leaf.path))
            judged[leaf.path] = _directional.check_leaf(
                engine, leaf, g, f_first, step, plan["directions"], rng, elements, **tol
            )
    bar.close()
    if nondet.seen > 0:
        notes.append(
            f"re-evaluations of fn at the same point differ by up to {nondet.seen:.1e}, within "
            f"nondet_tol={nondet.tol:g}: accepted, and counted as noise in every element's "
            "tolerance"
        )
    if engine.journal is not None:
        engine.journal.close()
        notes.append(engine.journal.note())
    if plan["step_rule"] == "auto" and tuned - set(steps):
        notes.append("steps chosen from the data per leaf (eps='auto'; eps='rule' for u^p·scale)")
    hint = _complex.conjugate_hint(coords, judged)
    notes += [hint] if hint else []
    for leaf in coords.checked:
        steps_used.setdefault(leaf.path, stencils.median_step(leaf))
    natural = abs(f_first) / max(typical.values())  # |f| over the parameters' scale
    u_g = max(st.unit_roundoff(np.asarray(g).dtype) for g in grads.values())
    st.verify_zeros([v for o in judged.values() for v in _verdicts_of(o)], natural, u_g)
    thetas = {leaf.path: values[leaf.position] for leaf in coords.checked}
    return assemble(
        coords, judged, steps_used, notes, precision, engine.name, mode,
        method=plan["method"], leaf_methods=used, advice=_advice(precision, plan, coords),
        thetas=thetas,
    )  # fmt: skip


def _verdicts_of(outcome) -> list:
    """The element verdicts of a leaf's outcome (a directional one: its directions too)."""
    if isinstance(outcome, _directional.DirectionalVerdict):
        return [outcome.probes, outcome.elements]
    return [outcome]


def _advice(precision: str, plan: dict, coords: Coords) -> str:
    """What would let finite differences resolve more of the gradient."""
    if precision == "native" and _native_low(coords, precision):
        return (
            "check with precision='float64' (the default: finite differences of the loss in "
            "float64, the gradient under test in its own dtype); in this dtype the loss's "
            "rounding hides most of the gradient"
        )
    tips = ["a larger step (eps=, or jaxcheck.sweep_eps to find one)"]
    if plan["method"] in ("central", "forward"):
        tips.append("method='central4' or 'richardson'")
    tips.append("another point, where the gradient is not negligible against the loss")
    return "try " + "; ".join(tips)


def _complex_step_leaf(cs, engine, leaf, g, f0, typical, steps, seed, tol, subset, elements):
    """(verdict, median step, note) by the complex step, or (None, None, why not)."""
    theta = np.asarray(cs.values[leaf.position]).reshape(-1)
    scale, eps = typical[leaf.path], steps.get(leaf.path)
    t = _directional.direction_step(theta, scale, eps)
    along = _directional.direction_step(theta, scale, eps, power=_complex_step.POWER)
    rng = np.random.default_rng([seed, leaf.position, 1])
    cs_engine, why = cs.verify(leaf, engine, g, f0, t, along, rng, tol)
    if cs_engine is None:
        return None, None, why
    h = np.full(theta.shape, eps) if eps else _complex_step.default_steps(theta, scale)
    verdict, overruled = cs.judge(cs_engine, leaf, g, h, tol, subset, confirm=elements)
    note = ""
    if overruled:
        note = (
            f"complex step and finite differences disagree at {overruled} element(s) of "
            f"{leaf.path} ({_complex_step.WHY_WRONG}): judged by finite differences"
        )
    return verdict, float(np.median(h)), note


def _open_journal(path, fn, values, args, plan, steps, numerics, coords):
    """The `_journal.Journal` at path (None: no journal), fingerprinted for this check."""
    if path is None:
        return None
    settings = {k: v for k, v in plan.items() if k != "hvp_fn"}
    settings.update(steps=steps, numerics=numerics, leaves=[leaf.path for leaf in coords.checked])
    return _journal.Journal(path, _journal.fingerprint(fn, values, args, settings))


def _default_method(coords: Coords, precision: str, order: int) -> str:
    """Central differences, except in native low precision: Richardson is ~10× more exact."""
    return "richardson" if _native_low(coords, precision) and order == 1 else "central"


def _default_rule(coords: Coords, precision: str) -> str:
    """Steps from the data where the rule of thumb is too coarse: native low precision."""
    return "auto" if _native_low(coords, precision) else "rule"


def _native_low(coords: Coords, precision: str) -> bool:
    """Whether the check works in float32 or a lower precision."""
    return precision == "native" and gradient.low(coords)


def _tolerances(g_dtype, u_f: float | None, rtol, atol) -> dict[str, float]:
    """u_f, u_g, rtol, atol for a leaf whose gradient has dtype g_dtype (u_f None: u_g)."""
    g_dtype = g_dtype if jnp.issubdtype(g_dtype, jnp.floating) else np.float64
    u_g = st.unit_roundoff(g_dtype)
    return {
        "u_f": u_g if u_f is None else u_f,
        "u_g": u_g,
        "rtol": st.default_rtol(g_dtype) if rtol is None else rtol,
        "atol": atol or 0.0,
    }


def _expected_points(leaves, plan: dict) -> int:
    """Evaluations of a passing check of these leaves: the first points everywhere, the rest
    on each sample."""
    if plan["mode"] == "directional":
        return _directional.ALONG * plan["directions"] * len(leaves)
    sizes = [leaf.size for leaf in leaves]
    if plan["mode"] == "sample":
        sizes = [min(n, plan["samples"]) for n in sizes]
    if plan["method"] == _complex_step.NAME:  # h and 3h per element, and the verification
        return sum(2 * n + 6 * _complex_step.VERIFY_DIRECTIONS for n in sizes)
    method = methods.get(plan["method"])
    first, rest = len(method.first), len(method.offsets) - len(method.first)
    return sum(first * n + 1 + rest * min(n, elementwise.NOISE_SAMPLE) for n in sizes)


def _batched_or_host(fn_scalar, values, coords, args, key, engine_options, notes, points,
                     directions=None):  # fmt: skip
    """The JAX engine if fn can be vmapped and compiled, else the host loop (with a note):
    one program for every leaf where the cost model (`layout`) says it is cheaper, else
    (or where that one fails to compile) a program per leaf.

    Compiling the first program is the probe; its executable is kept for the check itself.
    """
    opts = {k: v for k, v in engine_options.items() if k not in ("progress", "journal")}
    opts["directions"] = directions
    kind = "direction" if directions else "element"  # the program the mode runs first
    engine = JaxEngine(fn_scalar, values, coords, args, cache_key=key, **opts)
    layout = _layout.choose(coords, values, engine.flops, jax.devices()[0].platform, points)
    if layout is not None:
        try:
            flat = FlatEngine(fn_scalar, values, coords, args, layout, cache_key=key, **opts)
            flat.prepare()
            own = [leaf for leaf in coords.checked if leaf.position not in layout.spans]
            if own:  # the probe of the per-leaf programs too
                flat.prepare(own[0], kind)
            return flat
        except Exception:  # noqa: BLE001 - the per-leaf engine may still batch it
            pass
    try:
        engine.prepare(coords.checked[0], kind)
    except Exception as e:  # noqa: BLE001 - any failure to batch means: run it on the host
        notes.append(
            f"fn traces but cannot be batched with vmap ({type(e).__name__}): perturbations "
            "evaluated on the host, one at a time"
        )
        return HostEngine(fn_scalar, values, coords, args)
    return engine


def _typical_scale(coords: Coords, values: list) -> dict[str, float]:
    """Each leaf's RMS value; the model's for an all-zero leaf (1 if everything is zero)."""
    checked = [np.asarray(values[leaf.position]).reshape(-1) for leaf in coords.checked]
    rms = [float(np.sqrt(np.mean(t.astype(np.float64) ** 2))) for t in checked]
    sizes = [t.size for t in checked]
    model = float(np.sqrt(np.dot(np.square(rms), sizes) / max(sum(sizes), 1)))
    return {leaf.path: r or model or 1.0 for leaf, r in zip(coords.checked, rms)}
