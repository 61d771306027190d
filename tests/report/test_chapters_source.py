"""Static checks of the chapter sources: what a chapter builds for the reader must reach the page."""

import ast
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.py"))
SHOWN_CALLS = ("plots.table",)  # return a display object: shown only as a cell's last top-level expression


def undisplayed_calls(source: str) -> list[int]:
    """Lines (1-based within the file) of calls in SHOWN_CALLS whose result IPython never shows:
    any that is not the last top-level statement of its cell and not wrapped in display()."""
    lines, offset = [], 0
    for cell in re.split(r"(?m)^# %%.*\n", source):
        tree = ast.parse(cell)
        last = tree.body[-1] if tree.body else None
        for node in ast.walk(tree):
            if (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
                    and ast.unparse(node.value.func) in SHOWN_CALLS and node is not last):
                lines.append(offset + node.lineno)
        offset += cell.count("\n") + 1
    return lines


def test_the_check_finds_a_hidden_table():
    hidden = "# %%\nx = 1\nplots.table(['a'], [[1]])\ny = 2\n# %%\nplots.table(['a'], [[1]])\n"
    assert undisplayed_calls(hidden) == [3]
    assert undisplayed_calls("# %%\nif x:\n    plots.table(['a'], [[1]])\n") == [3]


@pytest.mark.parametrize("chapter", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_table_reaches_the_page(chapter):
    assert undisplayed_calls(chapter.read_text()) == [], f"{chapter.name}: wrap these tables in display()"
