"""The command line's parts: the spec file, the baseline comparison, the demo."""
