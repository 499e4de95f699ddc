"""check_grad as a pipeline: options validated once, the plan, the problem, the mode's
verdicts, the result.

    Options.make      the keywords, validated into one frozen value      (options.py)
    calling.adapt     argnums, has_aux, cotangent: fn(params, *args)     (calling.py)
    Coords.build      the flat coordinates of the leaves checked         (_core/coords.py)
    plan.build        method, steps, tolerances, engine options          (plan.py)
    prepare           fn traced, one scalar, f(θ), the gradient under test (problem.py)
    evaluators.choose the evaluator of f at perturbed points         (evaluators.py)
    MODES[...].judge  each leaf's verdict                  (full.py, directional.py, hessian.py)
    assemble          the leaf reports and the check's outcome           (assemble.py)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .._core import errors as _errors
from .._core.coords import Coords, OnlySpec
from .._core.result import CheckResult
from .._engine import progress as _progress
from . import calling, directional, evaluators, full, hessian
from . import plan as _plan
from .assemble import assemble
from .mode import Mode
from .options import DIRECTIONS, NAMES, SAMPLES, Options
from .problem import NotInFloat64, prepare
from .runtime import compilation_cache, numerics

# The modes (`mode.Mode`) of an order-1 check; order=2 is `hessian`'s.
MODES: dict[str, Mode] = {"full": full, "sample": full, "directional": directional}


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
    directions: int = DIRECTIONS,
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
    a second step 2h_i) plus `rtol·|g_i| + atol`; see docs/explanation/verdicts.md.

    Args:
        fn: `fn(params, *args)` returns the scalar loss. JAX code is evaluated in jit-compiled
            vmap batches; code JAX cannot trace (plain NumPy) is evaluated on the host, one
            point at a time. A non-scalar output is checked through a random projection w·fn.
        params: any pytree of parameters. Non-float leaves are skipped and listed.
        *args: data and targets, passed to fn and grad_fn unchanged (float arrays are cast
            to float64 when `precision="float64"`). Data may also come as keywords that fn's
            signature names (`check_grad(loss, params, x=x, y=y)`): passed on to fn and
            grad_fn as keywords, not differentiated, as `jax.grad(fn)(params, x=x)` does.
            A keyword that is neither an option nor fn's is refused with the option meant.
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
        nondet_tol: re-evaluations of fn, or of the gradient under test, at one point may
            differ by up to this much (torch's name and meaning: GPU atomics in a scatter-add
            or segment_sum reorder additions); such differences are reported in the notes,
            the largest one measured counted as noise in f, larger ones are
            "nondeterministic" (for the gradient: torch's "not reentrant"). It changes nothing
            else: a deterministic check gives the same verdict with or without it. Default
            0: any difference beyond rounding.
        only: check only leaves whose key path matches: a regular expression (searched), a
            list of them, or a function of the path string.
        precision: "float64" (default): finite differences in float64 whatever the model's
            dtype, inside `jax.enable_x64` (the global config is untouched), the gradient
            under test in the parameters' own dtypes; "upcast": the gradient in float64 too;
            "native": everything in the parameters' own dtypes. Where fn computes in a
            coarser precision inside (a cast to float32), that precision's rounding and steps
            are used, with a note; where fn cannot run in float64 at all (a kernel, a scan
            carry built in float32), the check runs as "native", with a note.
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
    given = {name: value for name, value in locals().items() if name in NAMES}
    data, unknown = calling.split_keywords(fn, unknown, hvp_fn)  # fn's keywords: data
    return check_with(fn, params, args, grad_fn, Options.make(**given, **unknown), data)


@_errors.hides_input_errors
def check_with(fn, params, args: tuple, grad_fn, options: Options, keywords=None) -> CheckResult:
    """check_grad(fn, params, *args, grad_fn=grad_fn, **options, **keywords), options
    validated, keywords the data fn takes by name."""
    calling.validate_functions(fn, grad_fn)
    o = options
    call = calling.adapt(fn, params, args, grad_fn, o.argnums, o.cotangent, o.has_aux, keywords)
    compilation_cache(o.cache_dir)
    coords = Coords.build(call.params, o.only)
    plan = _plan.build(o, coords, call.cotangent)
    mode = hessian if o.order == 2 else MODES[o.mode]
    progress = _progress.Progress(o.progress)  # said at a Ctrl-C: what was evaluated
    native_note = ""

    def run(grad_fn: Callable[..., Any] | None) -> CheckResult:
        interruptions = progress.interruptions(o.journal, resumable=o.order == 1)  # one line
        with interruptions, numerics(o.precision), calling.explained(call, fn):
            problem = prepare(call.fn, call.params, call.args, coords, grad_fn, plan)
            if native_note:
                problem.notes.insert(0, native_note)
            used, kink_note = _plan.against_kinks(plan, problem.kinks)
            if kink_note:
                problem.notes.append(kink_note)
            if mode is hessian:
                return assemble(problem, used, mode.judge(problem, used, None))
            evaluator = evaluators.choose(problem, used, progress)
            try:
                judged = mode.judge(problem, used, evaluator)
            except BaseException:  # Ctrl-C included: the journal closed, every line in it
                evaluator.close()
                raise
            return assemble(problem, used, judged)

    try:
        result = run(call.grad_fn)
    except NotInFloat64 as e:  # a kernel, or code that builds float32 arrays itself
        o = o.replace(precision="native")
        plan = _plan.build(o, coords, call.cotangent)
        native_note = (
            f"fn cannot run in float64 (it raises {e} there: a kernel, or code that builds "
            "float32 arrays itself, such as a scan's carry): checked in the dtypes it runs in, "
            "as precision='native' checks"
        )
        result = run(call.grad_fn)
    return result
