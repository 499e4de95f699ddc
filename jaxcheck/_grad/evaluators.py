"""Which evaluator a check's modes use, decided in one place: `choose`.

In this order, so that bad input is refused before anything long: the steps are validated
(a vanishing step raises), the journal is opened (one made for another check is refused), the
progress started (with the points the check evaluates and, for the line a long check says
about its cost, a faster mode: `faster`), then the evaluator chosen (compiling its first
program is the probe):

- `host.HostEngine` where JAX cannot trace fn, or fn traces but cannot be batched with vmap;
- `flat.FlatEngine`, one program over the raveled leaves, where the cost model (`layout`) says
  it is cheaper than a program per leaf and it compiles;
- else `batched.JaxEngine`, a program per leaf.

Each choice that is not the plain one is said in a note on the problem.
"""

from __future__ import annotations

import jax

from .._engine import journal as _journal
from .._engine import layout as _layout
from .._engine import progress as _progress
from .._engine.batched import ALONG, JaxEngine
from .._engine.evaluator import Evaluator
from .._engine.flat import FlatEngine
from .._engine.host import HostEngine
from .._numerics import methods
from . import complex_step as _complex_step
from . import elementwise
from .plan import Plan
from .problem import Problem
from .session import stencils_of

FASTER = 10  # how many times fewer points a mode must evaluate to be named as the faster one


def choose(problem: Problem, plan: Plan, progress: _progress.Progress) -> Evaluator:
    """The evaluator of an order-1 check of the problem under the plan, telling `progress`."""
    p = problem
    stencils_of(p, plan)  # raises on a vanishing step, before the long part
    journal = _open_journal(p, plan)
    leaves = p.coords.checked
    what = f"{plan.options.mode} check"
    paths = [leaf.path for leaf in leaves]
    bar = progress.start(expected_points(leaves, plan), paths, what, faster(leaves, plan))
    if not p.traced:
        p.notes.append(
            f"fn is not JAX-traceable ({p.why}): perturbations evaluated on the host, one at a time"
        )
        return HostEngine(p.fn_scalar, p.values, p.coords, p.args, progress=bar, journal=journal)
    evaluator = _batched_or_host(p, plan, bar, journal)
    if evaluator.n_devices > 1:
        p.notes.append(f"each chunk of perturbations split over {evaluator.n_devices} devices")
    return evaluator


def expected_points(leaves, plan: Plan, mode: str | None = None) -> int:
    """Evaluations of a passing check of these leaves (in `mode`; None: the plan's): the
    first points everywhere, the rest on each sample."""
    mode = mode or plan.options.mode
    if mode == "directional":
        return len(ALONG) * plan.options.directions * len(leaves)
    sizes = [leaf.size for leaf in leaves]
    if mode == "sample":
        sizes = [min(n, plan.options.samples) for n in sizes]
    if plan.method == _complex_step.NAME:  # h and 3h per element, and the verification
        return sum(2 * n + 6 * _complex_step.VERIFY_DIRECTIONS for n in sizes)
    method = methods.get(plan.method)
    first, rest = len(method.first), len(method.offsets) - len(method.first)
    return sum(first * n + 1 + rest * min(n, elementwise.NOISE_SAMPLE) for n in sizes)


def faster(leaves, plan: Plan) -> str:
    """A mode that evaluates at least FASTER times fewer points than the plan's, said in the
    line of a long check's cost ("": none). Directional first: it also locates wrong elements."""
    now = expected_points(leaves, plan)
    o = plan.options
    n = expected_points(leaves, plan, "directional")
    if o.mode != "directional" and n * FASTER <= now:
        return (
            f'mode="directional" evaluates about {n:,} (random directions per leaf; wrong '
            "elements then located in a leaf that fails)"
        )
    n = expected_points(leaves, plan, "sample")
    if o.mode == "full" and n * FASTER <= now:
        return f'mode="sample" evaluates about {n:,} ({o.samples} random elements per leaf)'
    return ""


def _open_journal(p: Problem, plan: Plan) -> _journal.Journal | None:
    """The journal at the plan's path (None: no journal), fingerprinted for this check."""
    path = plan.engine["journal"]
    if path is None:
        return None
    settings = {**plan.settings(), "leaves": [leaf.path for leaf in p.coords.checked]}
    return _journal.Journal(path, _journal.fingerprint(p.fn, p.values, p.args, settings))


def _batched_or_host(
    p: Problem, plan: Plan, progress: _progress.Progress, journal: _journal.Journal | None
) -> Evaluator:
    """The JAX engine if fn can be vmapped and compiled, else the host loop (with a note):
    one program for every leaf where the cost model (`layout`) says it is cheaper, else
    (or where that one fails to compile) a program per leaf.

    Compiling the first program is the probe; its executable is kept for the check itself.
    """
    opts = {**plan.engine, "progress": progress, "journal": journal}
    directions = plan.options.directions if plan.options.mode == "directional" else None
    opts["directions"] = directions
    kind = "direction" if directions else "element"  # the program the mode runs first
    call = (p.fn_scalar, p.values, p.coords, p.args)
    engine = JaxEngine(*call, cache_key=p.key, **opts)
    platform = jax.devices()[0].platform
    points = {leaf.position: expected_points([leaf], plan) for leaf in p.coords.checked}
    layout = _layout.choose(p.coords, p.values, engine.flops, platform, points)
    if layout is not None:
        try:
            flat = FlatEngine(*call, layout, cache_key=p.key, **opts)
            flat.prepare()
            own = [leaf for leaf in p.coords.checked if leaf.position not in layout.spans]
            if own:  # the probe of the per-leaf programs too
                flat.prepare(own[0], kind)
            return flat
        except Exception:  # noqa: BLE001 - the per-leaf engine may still batch it
            pass
    try:
        engine.prepare(p.coords.checked[0], kind)
    except Exception as e:  # noqa: BLE001 - any failure to batch means: run it on the host
        p.notes.append(
            f"fn traces but cannot be batched with vmap ({type(e).__name__}): perturbations "
            "evaluated on the host, one at a time"
        )
        return HostEngine(*call, progress=progress, journal=journal)
    return engine
