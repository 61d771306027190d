"""Feature splitting measured: feature trees across the size ladder, checked against the
synthetic source's true hierarchy, and decoder geometry against activation similarity.

Edges come from :mod:`sae_core.trees` on held-out activations: small latent a -> large latent
b when the directed masked cosine (the follow-up post's score) is at least ``threshold`` and
the two co-fire on at least ``min_cofire`` tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from sae_core import trees
from sae_core.report.pipeline import Family


@dataclass
class TreeReport:
    sizes: list[int]
    n_tokens: int
    kind: str
    threshold: float
    min_cofire: int
    summaries: list[dict[str, float | int]]  # one per consecutive pair (small, large)
    validation: list[trees.EdgeValidation] | None  # synthetic source only
    first_split: trees.FirstSplit | None
    twins: list[trees.TwinReport]
    levels: list[trees.TreeLevel]
    identities: dict[int, np.ndarray] | None  # true feature of each latent (-1: none), synthetic only


def feature_trees(family: Family, n_tokens: int = 16384, kind: str = "directed",
                  threshold: float = trees.DIRECTED_THRESHOLD, min_cofire: int = 5,
                  true_cos_threshold: float = 0.9) -> TreeReport:
    """Trees across every consecutive pair of the family's sizes, on ``n_tokens`` held-out activations."""
    sizes = family.sizes
    x = family.sample(n_tokens)
    stats_list = trees.ladder_coactivation([family.saes[s] for s in sizes], x)
    levels = trees.build_ladder(stats_list, kind=kind, threshold=threshold, min_cofire=min_cofire)
    summaries = []
    for (small, large), summary in zip(pairwise(sizes), trees.ladder_summary(levels), strict=True):
        summaries.append({"small": small, "large": large, **summary})
    twins = [trees.decoder_vs_activation(family.features(a), family.features(b), st)
             for a, b, st in zip(sizes, sizes[1:], stats_list, strict=False)]
    validation = first = identities = None
    if family.true_features is not None and getattr(family.source, "parent_of", None) is not None:
        parent_of = family.source.parent_of.numpy()
        identities = {s: trees.identify_latents(family.features(s), family.true_features, true_cos_threshold).feature
                      for s in sizes}
        validation = [trees.validate_edges(level, identities[a], identities[b], parent_of)
                      for level, a, b in zip(levels, sizes, sizes[1:], strict=False)]
        first = trees.first_split_size({s: family.features(s) for s in sizes}, family.true_features, parent_of,
                                       true_cos_threshold)
    return TreeReport(sizes, n_tokens, kind, threshold, min_cofire, summaries, validation, first, twins, levels,
                      identities)


def describe_subtree(report: TreeReport, root: int, start: int = 0, depth: int = 3) -> list[str]:
    """Lines ``size:latent [true feature]`` of the drawn tree below one latent, indented by level."""
    lines: list[str] = []

    def label(level: int, latent: int) -> str:
        size = report.sizes[level]
        if report.identities is None:
            return f"{size}:{latent}"
        feat = int(report.identities[size][latent])
        return f"{size}:{latent} [{'no true feature' if feat < 0 else f'feature {feat}'}]"

    def walk(level: int, latent: int, indent: int) -> None:
        lines.append("  " * indent + label(level, latent))
        if level - start >= depth or level >= len(report.levels):
            return
        children = np.flatnonzero(report.levels[level].best_parent == latent)
        for child in children[:4]:
            walk(level + 1, int(child), indent + 1)

    walk(start, root, 0)
    return lines
