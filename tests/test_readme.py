"""The README's first examples run as they stand, and print what the README says."""

import pathlib
import re

import jax

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_the_first_example_runs_as_it_stands(capsys):
    namespace: dict = {}
    with jax.numpy_rank_promotion("allow"):  # the suite raises on it; a user's session does not
        exec(compile(_python_blocks()[0], "README.md", "exec"), namespace)  # noqa: S102
    assert namespace["result"].passed
    assert "PASSED" in capsys.readouterr().out


def test_the_layer_example_runs_and_names_the_leaves_after_the_inputs():
    namespace: dict = {}
    exec(compile(_python_blocks()[1], "README.md", "exec"), namespace)  # noqa: S102
    result = namespace["result"]
    assert result.passed and set(result.leaves) == {"['x']", "['w']", "['b']"}


def test_the_readme_says_no_seed_numbers_and_cites_no_file_outside_the_repository():
    text = README.read_text()
    assert not re.search(r"[Ss]eed 00\d|seeds'|NUMERICS\.md|\.\./shared", text)
