"""Jaxpr types whose public home moved within the JAX versions jaxcheck supports (jax>=0.8).

`jax.extend.core` holds JAX's public jaxpr types; `DropVar` and `DebugInfo` joined it in JAX
0.10, and `jax.core`, where JAX 0.8 and 0.9 have them, deprecates them from 0.10 on. Modules
take these two from here and everything else from `jax.extend.core`.

`dce_jaxpr` (dead-code elimination, which JAX keeps internal) is JAX's where it is where
jaxcheck looks for it, else None: callers then read the whole program.
"""

from typing import Any

try:  # JAX >= 0.10
    from jax.extend.core import DebugInfo, DropVar
except ImportError:  # JAX 0.8, 0.9
    from jax.core import DebugInfo, DropVar  # type: ignore[attr-defined,no-redef]

dce_jaxpr: Any
try:  # internal in every supported JAX: (jaxpr, used_outputs) -> (jaxpr, used_inputs)
    from jax._src.interpreters.partial_eval import dce_jaxpr
except ImportError:  # moved or gone: no dead-code elimination
    dce_jaxpr = None

__all__ = ["DebugInfo", "DropVar", "dce_jaxpr"]
