"""No two core modules import each other, not even inside a function (issue 20): each shared piece has
one home (the dictionary-row helpers in ``dictionary_rows``; other layouts' writers in ``formats``,
registered in ``sae.EXPORTERS``)."""

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "sae_core"


def core_imports(path: Path) -> set[str]:
    """The core modules (``sae_core.<name>``, one level) a file imports anywhere in it."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sae_core."):
            out.add(node.module.split(".")[1])
        elif isinstance(node, ast.ImportFrom) and node.module == "sae_core":
            out.update(alias.name for alias in node.names if (CORE / f"{alias.name}.py").is_file())
        elif isinstance(node, ast.Import):
            out.update(a.name.split(".")[1] for a in node.names if a.name.startswith("sae_core."))
    return out


def graph() -> dict[str, set[str]]:
    modules = {p.stem: p for p in CORE.glob("*.py") if p.stem != "__init__"}
    return {name: {m for m in core_imports(path) if m in modules and m != name} for name, path in modules.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle found by depth-first search (each reported once from where it was entered)."""
    found, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                found.append([*stack[stack.index(nxt):], node, nxt][1:] if nxt in stack else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*stack, node])
        state[node] = "done"

    for start in sorted(edges):
        if start not in state:
            visit(start, [])
    return found


def test_the_cycle_finder_finds_a_planted_cycle():
    assert cycles({"a": {"b"}, "b": {"a"}, "c": set()})
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}})
    assert not cycles({"a": {"b"}, "b": {"c"}, "c": set()})


def test_no_core_modules_import_each_other():
    edges = graph()
    assert {"sae", "formats", "similarity", "matching", "dictionary_rows"} <= set(edges)
    assert "formats" not in edges["sae"] and "sae" in edges["formats"]
    assert "similarity" not in edges["matching"] and "matching" in edges["similarity"]
    assert cycles(edges) == []
