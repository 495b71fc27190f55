"""The notebooks' conventions, checked on the stored files.

nbval (run by the same pytest command) re-runs each notebook and compares its
outputs; these tests check what nbval cannot see: that the stored outputs come
from one run from top to bottom, that errors appear only where a cell says it
expects one, and that each notebook starts from a fresh database of its own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("[0-9][0-9]-*.ipynb"))


def _code_cells(path: Path) -> list[dict[str, Any]]:
    notebook = json.loads(path.read_text(encoding="utf-8"))
    return [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]


def _source(cell: dict[str, Any]) -> str:
    return "".join(cell["source"])


def test_there_are_notebooks() -> None:
    assert [path.name for path in NOTEBOOKS][:1] == ["00-index.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_starts_with_a_title(path: Path) -> None:
    first = json.loads(path.read_text(encoding="utf-8"))["cells"][0]
    assert first["cell_type"] == "markdown"
    assert _source(first).startswith("# ")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_outputs_were_stored_by_one_run_from_top_to_bottom(path: Path) -> None:
    counts = [cell["execution_count"] for cell in _code_cells(path)]
    assert counts == list(range(1, len(counts) + 1)), (
        f"{path.name}: execution counts {counts}; store outputs with "
        f"jupyter nbconvert --to notebook --execute --inplace {path.name}"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_errors_only_in_cells_tagged_raises_exception(path: Path) -> None:
    for cell in _code_cells(path):
        tagged = "raises-exception" in cell["metadata"].get("tags", [])
        failed = any(output["output_type"] == "error" for output in cell["outputs"])
        assert tagged == failed, f"{path.name}: {_source(cell)!r}"
        # The tag is the one marker: nbval warns when a comment repeats it.
        assert "NBVAL_RAISES_EXCEPTION" not in _source(cell)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_everything_awaitable_is_awaited_at_top_level(path: Path) -> None:
    for cell in _code_cells(path):
        assert "asyncio.run(" not in _source(cell), f"{path.name}: {_source(cell)!r}"


@pytest.mark.parametrize(
    "path", [p for p in NOTEBOOKS if p.name != "00-index.ipynb"], ids=lambda path: path.name
)
def test_the_setup_cell_makes_a_fresh_database(path: Path) -> None:
    cells = _code_cells(path)
    assert 'scratch_database("nb")' in _source(cells[0])
    assert not any("scratch_database" in _source(cell) for cell in cells[1:])
