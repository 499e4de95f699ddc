"""The documentation site (docs/, mkdocs.yml): every example on every page runs when the site is
built (`mkdocs build --strict`, in CI), so these tests check what makes that true, and that a
failing example does fail a build."""

import pathlib
import re
import subprocess
import sys

import pytest

import jaxcheck

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.md") if "notebooks" not in p.parts)
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.M | re.S)


def test_every_python_example_runs_when_the_site_is_built():
    for page in PAGES:
        for language, info, body in FENCE.findall(page.read_text()):
            if language == "python":
                runs = 'exec="on"' in info
                run_elsewhere = body.startswith('--8<-- "docs/examples/')  # a file a block runs
                assert runs or run_elsewhere or 'title="Not run' in info, f"{page}: {body[:80]}"


def test_the_site_is_built_strict_and_every_page_and_notebook_is_in_the_nav():
    config = (ROOT / "mkdocs.yml").read_text()
    assert re.search(r"^strict: true$", config, re.M)
    assert "markdown-exec" in config and "execute: false" in config
    for page in PAGES:
        assert str(page.relative_to(DOCS)) in config, page
    for notebook in (ROOT / "notebooks").glob("*.ipynb"):
        assert f"notebooks/{notebook.name}" in config, notebook
    assert (DOCS / "notebooks").resolve() == (ROOT / "notebooks").resolve()


def test_the_api_reference_documents_every_public_name():
    reference = "".join(p.read_text() for p in (DOCS / "api").glob("*.md"))
    public = [name for name in dir(jaxcheck) if isinstance(getattr(jaxcheck, name), type)]
    public += [
        name for name in dir(jaxcheck) if type(getattr(jaxcheck, name)).__name__ == "function"
    ]
    for name in public:
        if getattr(jaxcheck, name).__module__.startswith("jaxcheck") and not name.startswith("_"):
            assert f"::: jaxcheck.{name}\n" in reference, name
    assert "::: jaxcheck.testing\n" in reference


def test_the_pages_say_no_seed_numbers():
    for page in [*PAGES, *(ROOT / "notebooks").glob("*.ipynb")]:
        assert not re.search(r"[Ss]eed 00\d", page.read_text()), page


def test_an_example_that_raises_fails_the_build(tmp_path):
    pytest.importorskip("markdown_exec")
    pytest.importorskip("mkdocs")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text(
        '# Page\n\n```python exec="on"\nprint(1 / 0)\n```\n'
    )
    (tmp_path / "mkdocs.yml").write_text(
        "site_name: t\nstrict: true\nplugins:\n  - markdown-exec\n"
        "markdown_extensions:\n  - pymdownx.superfences\n"
    )
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert build.returncode != 0
    assert "ZeroDivisionError" in build.stderr + build.stdout
