"""Foundations: coordinates and key paths, the result and its plots, errors."""
