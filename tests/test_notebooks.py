"""Every notebook in notebooks/ runs top to bottom, so examples cannot rot; the checks of what
they show live here, run after the notebook's own cells (a reader sees no test code), and the
notebooks are stored executed (`python scripts/execute_notebooks.py`), so a reader on a code
host sees the tables and plots."""

import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((pathlib.Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))

# What each notebook must show, checked in its kernel after its last cell.
CHECKS = {
    "autoencoder_bug.ipynb": """
assert "transposed" in message
assert "params['decoder']" in message and "params['encoder']" in message
assert set(np.ndindex(H, V)) - failed == lined_up
assert sum(e.path == "['encoder']" for e in matlab.failures) == V * H
assert not result.passed
assert {e.path for e in result.failures} == {"['encoder']"}
assert len(result.failures) == n_visible * n_hidden
assert result.leaves["['decoder']"].passed
assert at_tied.passed
assert fixed.passed and fixed.difference < 1e-8
""",
    "eps_sweep_and_training.ipynb": """
assert result.passed
assert min(bad.difference["['W2']"]) > 100 * min(sweep.difference["['W2']"])
assert monitor.passed
""",
    "large_model_directional.ipynb": """
assert result.passed and result.mode == "directional"
for name in params:
    assert result.leaves[f"['{name}']"].directions == 4
    assert result.leaves[f"['{name}']"].probes == 0
    assert result.leaves[f"['{name}']"].miss_probability < 1e-2
    assert upcast.leaves[f"['{name}']"].miss_probability < 1e-3
assert upcast.passed
assert not bad.passed
assert [(e.path, e.index) for e in bad.failures] == [(f"['{target}']", index)]
assert [p for p, leaf in bad.leaves.items() if not leaf.passed] == [f"['{target}']"]
""",
    "quickstart.ipynb": """
assert {e.path for e in result.failures} == {"['W1']", "['b1']"}
assert fixed.passed
""",
}


def test_there_are_notebooks_and_each_has_its_checks():
    assert NOTEBOOKS
    assert {p.name for p in NOTEBOOKS} == set(CHECKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes(path):
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(CHECKS[path.name]))
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("text/html" in o.get("data", {}) for o in outputs)  # the result rendered as HTML


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebooks_are_stored_executed_without_test_code(path):
    nb = nbformat.read(path, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code), "run scripts/execute_notebooks.py"
    assert any(cell.outputs for cell in code)
    assert not any(line.lstrip().startswith("assert ") for cell in code
                   for line in cell.source.splitlines())  # fmt: skip
