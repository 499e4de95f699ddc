"""The README is a landing page: its example runs as it stands and prints what the README shows,
its quick start is the two lines CI runs, and its links point at files in the repository."""

import contextlib
import io
import pathlib
import re

import jax

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), re.S)


def test_the_example_runs_as_it_stands_and_prints_what_the_readme_shows():
    (code,) = _blocks("python")
    printed = io.StringIO()
    namespace = {"__name__": "__main__"}
    with contextlib.redirect_stdout(printed), jax.numpy_rank_promotion("allow"):
        exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102
    shown = re.search(r"prints\n\n```text\n(.*?)```", README.read_text(), re.S).group(1)
    assert printed.getvalue().strip() == shown.strip()
    assert "FAILED" in shown and "diagnosis ['b1']: analytic ≈ 4 × numeric" in shown


def test_the_quick_start_is_the_two_lines_ci_runs():
    quick_start = _blocks("bash")[0].strip().splitlines()
    assert quick_start == ["pip install . && jaxcheck demo", 'pip install -e ".[test]" && pytest']
    assert (
        "not\npublished on PyPI" in README.read_text()
        or "not published on PyPI" in README.read_text()
    )


def test_the_readme_is_a_landing_page_with_a_command_that_serves_the_docs():
    text = README.read_text()
    assert len(text.splitlines()) <= 150
    assert 'pip install -e ".[docs]" && mkdocs serve' in text


def test_every_relative_link_points_at_a_file_of_the_repository():
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README.read_text()):
        if not target.startswith(("http://", "https://")):
            assert (ROOT / target).exists(), target


def test_the_readme_says_no_seed_numbers_and_cites_no_file_outside_the_repository():
    text = README.read_text()
    assert not re.search(r"[Ss]eed 00\d|seeds'|NUMERICS\.md|\.\./shared", text)


def test_the_demo_prints_what_the_readme_shows():
    import subprocess
    import sys

    shown = re.findall(r"```text\n(.*?)```", README.read_text(), re.S)[0]
    printed = subprocess.run(
        [sys.executable, "-m", "jaxcheck", "demo"], capture_output=True, text=True, check=True
    ).stdout
    for line in shown.splitlines():
        if line.strip() and line != "...":
            assert line in printed.splitlines(), line
