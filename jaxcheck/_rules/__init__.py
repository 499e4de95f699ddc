"""check_vjp / check_jvp: the identities and their two sides (exact, or finite differences
where JAX cannot differentiate fn), linearity and the primal output, their report, jit/vmap
consistency, custom rules replaced by their primal computation.
"""
