"""Execute every notebook in notebooks/ and store it with its outputs, so that a reader on a
code host sees the tables and plots.

    python scripts/execute_notebooks.py [NAME.ipynb ...]

Run it after changing a notebook or the reports it shows; tests/test_notebooks.py checks that
each stored notebook is executed, and executes it again.
"""

from __future__ import annotations

import pathlib
import sys

import nbformat
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parents[1] / "notebooks"


def main() -> None:
    names = sys.argv[1:]
    paths = [ROOT / n for n in names] if names else sorted(ROOT.glob("*.ipynb"))
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        NotebookClient(nb, timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": str(ROOT)}}).execute()  # fmt: skip
        nbformat.write(nb, path)
        print(f"executed {path.name}")


if __name__ == "__main__":
    main()
