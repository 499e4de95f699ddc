"""What a check will do, decided once from its options and its parameters: the `Plan`.

The plan resolves what the options leave open against the leaves: the method and the step
rule (their defaults depend on the dtypes), the steps per leaf, and the tolerances. A mode
(`mode.Mode`) judges a `Problem` under it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

from .._core.coords import Coords
from .._core.errors import list_paths
from .._numerics import stencils as st
from . import under_test
from .options import Options


@dataclasses.dataclass(frozen=True)
class Plan:
    """The options, and what they leave open resolved against the checked leaves."""

    options: Options  # as given (validated); a new option needs no field here
    method: str  # the method named or the default one
    step_rule: str  # "auto" or "rule": how the steps not given are chosen
    steps: dict[str, float]  # leaf path -> the step given for it
    cotangent: Any  # as an array (`calling.adapt`)
    engine: dict[str, Any]  # the engine's options: chunk, max_memory, devices, progress, journal

    def tolerance(self, g_dtype, u_f: float | None = None) -> st.Tolerance:
        """The tolerance of a leaf whose gradient has dtype g_dtype (u_f None: u_g)."""
        g_dtype = g_dtype if jnp.issubdtype(g_dtype, jnp.floating) else np.float64
        u_g = st.unit_roundoff(g_dtype)
        return st.Tolerance(
            u_f=u_g if u_f is None else u_f,
            u_g=u_g,
            rtol=st.default_rtol(g_dtype) if self.options.rtol is None else self.options.rtol,
            atol=self.options.atol or 0.0,
        )

    def settings(self) -> dict[str, Any]:
        """What a journal's fingerprint records of the plan (everything but hvp_fn and the
        engine's options, which do not change the results)."""
        o = self.options
        return {
            "mode": o.mode, "method": self.method, "step_rule": self.step_rule,
            "kinks": o.kinks, "order": o.order, "directions": o.directions,
            "samples": o.samples, "seed": o.seed, "nondet_tol": o.nondet_tol,
            "cotangent": self.cotangent, "steps": self.steps,
            "numerics": (o.rtol, o.atol, o.precision),
        }  # fmt: skip


def build(options: Options, coords: Coords, cotangent: Any) -> Plan:
    """The plan of a check of these leaves (eps= naming a leaf that is not one raises here)."""
    o = options
    return Plan(
        options=o,
        method=o.method or default_method(coords, o.precision, o.order),
        step_rule=o.eps if isinstance(o.eps, str) else _default_rule(coords, o.precision),
        steps=leaf_steps(o.eps, coords),
        cotangent=cotangent,
        engine={
            "chunk": o.chunk_size,
            "max_memory": o.max_memory,
            "progress": o.progress,
            "journal": o.journal,
            "devices": o.devices,
        },
    )


def against_kinks(plan: Plan, kinks: tuple[str, ...]) -> tuple[Plan, str]:
    """The plan with central differences instead of the default Richardson where fn is not
    smooth (its program uses `kinks`), and the note that says so; else the plan as it is.

    Richardson's steps are long (u^(1/7), 10% of a float32 element's scale) and extrapolated:
    in a ReLU network a step that long crosses many kinks, and the extrapolation's own error
    estimate crosses the same ones (a conv net with batch norm: four correct elements failed
    by 1%). Central differences at u^(1/3) cross few, and the kink test sees those.
    """
    if plan.options.method is not None or plan.method != "richardson" or not kinks:
        return plan, ""
    note = (
        f"fn is not smooth everywhere (it uses {', '.join(kinks)}): central differences, "
        "whose short steps cross fewer kinks than Richardson's long ones"
    )
    return dataclasses.replace(plan, method="central"), note


def default_method(coords: Coords, precision: str, order: int) -> str:
    """Central differences, except in native low precision: Richardson is ~10× more exact."""
    return "richardson" if native_low(coords, precision) and order == 1 else "central"


def _default_rule(coords: Coords, precision: str) -> str:
    """Steps from the data where the rule of thumb is too coarse: native low precision."""
    return "auto" if native_low(coords, precision) else "rule"


def native_low(coords: Coords, precision: str) -> bool:
    """Whether the check works in float32 or a lower precision."""
    return precision == "native" and under_test.low(coords)


def leaf_steps(eps: Any, coords: Coords) -> dict[str, float]:
    """{leaf path: absolute step} for leaves with a user step (eps validated by `Options`)."""
    if eps is None or isinstance(eps, str):
        return {}
    if isinstance(eps, Mapping):
        known = {leaf.path for leaf in coords.checked}
        unknown = [k for k in eps if k not in known]
        if unknown:
            raise ValueError(
                f"eps= names {list_paths([str(k) for k in unknown])}, which are not checked "
                "leaves. Use key paths as the report writes them: "
                f"{list_paths(sorted(known))}."
            )
        return dict(eps)
    return {leaf.path: eps for leaf in coords.checked}
