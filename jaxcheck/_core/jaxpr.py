"""Jaxpr types whose public home moved within the JAX versions jaxcheck supports (jax>=0.8).

`jax.extend.core` holds JAX's public jaxpr types; `DropVar` and `DebugInfo` joined it in JAX
0.10, and `jax.core`, where JAX 0.8 and 0.9 have them, deprecates them from 0.10 on. Modules
take these two from here and everything else from `jax.extend.core`.
"""

try:  # JAX >= 0.10
    from jax.extend.core import DebugInfo, DropVar
except ImportError:  # JAX 0.8, 0.9
    from jax.core import DebugInfo, DropVar  # type: ignore[attr-defined,no-redef]

__all__ = ["DebugInfo", "DropVar"]
