"""check_vjp / check_jvp: the identities, their report, jit/vmap consistency, custom
rules replaced by their primal computation.
"""
