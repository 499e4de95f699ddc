"""Engines: where a perturbation is evaluated (batched JAX programs, the sparse jaxpr
path, the host loop), and how (chunks, journal, progress).
"""
