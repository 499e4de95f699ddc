"""Test data the suite and the scripts share: the cases built from JAX's own gradient tests
(`corpus.py`, run whole by `scripts/corpus.py`, a slice by `tests/test_jax_corpus.py`) and the
course-style layer checks (`habits.py`: `scripts/habits.py`, `tests/test_habits.py`)."""
