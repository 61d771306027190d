"""The three layers import one way only: report -> sources -> core."""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "sae_core"


def _imports(path: Path) -> set[str]:
    """Every module named by an import statement in ``path`` (top level or inside functions)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _layer(module: str) -> str | None:
    if not module.startswith("sae_core"):
        return None
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ("sources", "report") else "core"


RANK = {"core": 0, "sources": 1, "report": 2}


def test_imports_point_down_the_layers():
    violations = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        own = _layer(".".join(rel.parts))
        for name in _imports(path):
            target = _layer(name)
            if target is not None and RANK[target] > RANK[own]:
                violations.append(f"{rel} ({own}) imports {name} ({target})")
    assert not violations, "\n".join(violations)


def test_layer_check_catches_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from sae_core.report.pipeline import cache_root\n")
    assert "sae_core.report.pipeline" in _imports(bad)
    assert RANK[_layer("sae_core.report.pipeline")] > RANK[_layer("sae_core.train")]


def test_core_import_loads_neither_sources_nor_report():
    code = ("import sys, sae_core; "
            "print([m for m in sys.modules if m.startswith(('sae_core.sources', 'sae_core.report'))])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_public_api_one_line_per_layer():
    code = ("from sae_core import max_cosine_similarity, train_family, SparseAutoencoder, one_to_one_mcs; "
            "from sae_core.sources import SyntheticSource, LMSourceConfig, lm_source; "
            "from sae_core.report import ensure_family, analysis")
    subprocess.run([sys.executable, "-c", code], check=True)
