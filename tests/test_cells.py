"""The chapters and the appendix show code a reader can take in whole: no shown code cell much longer than 40
lines (a definition that would read worse split is named below) and no line wider than 120 columns, the width the
book's code column fits without sideways scrolling (book/_static/wide-code.css; tests/test_book.py checks the
rendered pages). Cells folded with `hide-input` or removed with `remove-input` are not shown and not counted."""

import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "notebooks").glob("*.ipynb"))  # chapters 1-10 and the appendix
MAX_LINES = 42
MAX_COLUMNS = 120
# One definition per cell, longer than MAX_LINES, kept whole because splitting a class (or a single loop) reads
# worse than one long cell.
LONG_ON_PURPOSE = {"BPETokenizer", "learn_merges", "MultiHeadAttention", "MoE", "DSMiniConfig", "DSMiniModel"}


def _shown_code_cells(path: Path) -> list[tuple[str, str]]:
    cells = json.loads(path.read_text())["cells"]
    hidden = {"hide-input", "remove-input", "remove-cell"}
    return [(c["id"], "".join(c["source"])) for c in cells
            if c["cell_type"] == "code" and not hidden & set(c["metadata"].get("tags", []))]


def _defines(source: str) -> list[str]:
    tree = ast.parse(source)
    return [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_shown_code_cells_are_short(path):
    long = []
    for cell_id, source in _shown_code_cells(path):
        n = len(source.rstrip("\n").split("\n"))
        if n > MAX_LINES and not (len(_defines(source)) == 1 and _defines(source)[0] in LONG_ON_PURPOSE):
            long.append(f"cell {cell_id}: {n} lines ({', '.join(_defines(source)) or 'no definition'})")
    assert not long, f"{path.name}: split these cells or fold their plumbing:\n" + "\n".join(long)


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_shown_code_fits_the_column(path):
    wide = [f"cell {cell_id}: {len(line)} columns: {line.strip()[:60]}"
            for cell_id, source in _shown_code_cells(path) for line in source.split("\n") if len(line) > MAX_COLUMNS]
    assert not wide, f"{path.name}: lines wider than {MAX_COLUMNS} columns:\n" + "\n".join(wide)
