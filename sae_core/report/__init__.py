"""The report: cached families from a chapter's parameters, the chapters' analyses and plots,
and the papermill + Jupyter Book build (``python -m sae_core.report``). Imports sources and core.

    from sae_core.report import ensure_family, analysis, plots
"""

from sae_core.report import analysis, pipeline
from sae_core.report.pipeline import Family, ensure_family, family_params

__all__ = ["Family", "analysis", "ensure_family", "family_params", "pipeline"]
