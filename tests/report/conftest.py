"""The tiny synthetic family the report-layer tests share (trained once per test into its own cache)."""

import pytest

from sae_core.report import pipeline

TINY = {"source": "synthetic", "sizes": [16, 32, 64], "n_steps": 60, "batch_size": 32, "seed": 0, "l1_coeff": 3e-2,
        "synthetic": {"d_in": 8, "n_features": 24, "mean_active": 2.0, "n_parents": 2, "children_per_parent": 2}}


@pytest.fixture
def tiny_params() -> dict:
    """The tiny family's notebook parameters (a copy: tests may extend it)."""
    return {**TINY, "synthetic": dict(TINY["synthetic"])}


@pytest.fixture
def family(tmp_path, monkeypatch, tiny_params):
    monkeypatch.setenv("SAE_REPORT_CACHE", str(tmp_path))
    return pipeline.ensure_family(pipeline.family_params(tiny_params), progress=False)
