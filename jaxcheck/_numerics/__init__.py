"""Numerics: stencils and the error model (where the tolerance is decided), the
methods, complex pairs, the diagnosis of a failing leaf.
"""
