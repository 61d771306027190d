"""Chapter 7 in a few calls: the trees of a family beside their two baselines, for the family and for
the ground-truth companion, and every sentence the chapter glues from them (built in
:mod:`sae_core.report.splitting`), each saying why when there is no tree to report on."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sae_core.report import splitting
from sae_core.report.pipeline import Family, ensure_family, family_params, merge_overrides

NO_ACTIVATIONS = ("These dictionaries were read without a model and site to take activations from, so no tree "
                  "can be built.")


@dataclass
class TreeSettings:
    """Chapter 7's parameters for the trees and their baselines."""

    large: int
    n_heldout: int
    n_tokens: int = 8192
    threshold: float = 0.6
    min_cofire: int = 5
    n_permutations: int = 3
    seed: int = 0
    ablation_sizes: Sequence[int] = ()
    second_seed: int = 1
    thresholds: Sequence[float] = splitting.THRESHOLDS


@dataclass
class Trees:
    """A family's trees (None without activations) beside shuffled codes and another seed."""

    tree: splitting.TreeReport | None = None
    perm: splitting.PermutationBaseline | None = None
    seed: splitting.SeedBaseline | None = None
    rows: list[splitting.RungStatistics] = field(default_factory=list)
    depth: splitting.DepthStatistics | None = None

    @property
    def validated(self) -> bool:
        """Whether the trees can be checked against a true hierarchy."""
        return self.tree is not None and self.tree.validation is not None


def trees_beside_baselines(family: Family | None, settings: TreeSettings,
                           active: Mapping[int, np.ndarray] | None = None, companion: bool = False) -> Trees:
    """Trees over active latents (``active``: masks per size; default the family's classification), the
    permutation baseline and, where the dictionaries can be retrained, the seed baseline with its second-seed
    family (chapter 5's for the main family; one size for a companion)."""
    if family is None or not family.has_activations:
        return Trees()
    active = splitting.active_latents(family, settings.n_heldout) if active is None else active
    tree = splitting.feature_trees(family, n_tokens=settings.n_tokens, threshold=settings.threshold,
                                   min_cofire=settings.min_cofire, active=active)
    perm = splitting.permutation_baseline(tree, settings.n_permutations, settings.seed)
    sizes = splitting.seed_family_sizes(family, settings.ablation_sizes, settings.large, companion=companion)
    seed = None
    if family.params["source"] != "dictionaries" and sizes:  # dictionaries read from disk cannot be retrained
        other = ensure_family(family_params(merge_overrides({**family.params, "sizes": sizes},
                                                            {"seed": settings.second_seed})))
        seed = splitting.seed_baseline(tree, family, other, settings.second_seed,
                                       splitting.activity_threshold(family, settings.n_heldout))
    return Trees(tree, perm, seed, splitting.rung_statistics(tree, perm, seed), splitting.depth_statistics(tree, perm))


def tree_text(trees: Trees, settings: TreeSettings) -> dict[str, Any]:
    """The glued names of the trees' section: the rule's settings, sizes of the seed baseline, latents excluded,
    the trees against their baselines, the shares of splits and merges, twins."""
    rule = {"tree_threshold": settings.threshold, "tree_min_cofire": settings.min_cofire,
            "tree_permutations": settings.n_permutations, "second_seed": settings.second_seed}
    if trees.tree is None:
        return {**rule, "tree_tokens": settings.n_tokens, "seed_sizes": splitting.seed_sizes_text(None),
                "excluded_sentence": "These dictionaries were read without activations, so no tree is built.",
                "baseline_sentence": "", "tree_sentence": NO_ACTIVATIONS, "twins_sentence": ""}
    return {**rule, "tree_tokens": trees.tree.n_tokens, "seed_sizes": splitting.seed_sizes_text(trees.seed),
            "excluded_sentence": splitting.excluded_sentence(trees.tree, settings.n_heldout),
            "baseline_sentence": splitting.baseline_sentence(trees.rows, trees.depth),
            "tree_sentence": splitting.tree_sentence(trees.tree),
            "twins_sentence": splitting.twins_sentence(trees.tree)}


def subtrees_text(trees: Trees, family: Family | None = None) -> str:
    """The three largest subtrees of the smallest dictionary, as text; with ``family`` (a source with
    tokens), each node followed by the tokens it fires on most (:func:`cards.with_top_tokens`)."""
    if trees.tree is None:
        return "No tree: these dictionaries have no activations."
    from sae_core.report import cards

    blocks = []
    for root in splitting.largest_trees(trees.tree):
        lines = splitting.describe_subtree(trees.tree, root, depth=3)
        if family is not None:
            lines = cards.with_top_tokens(lines, family, trees.tree.n_tokens)
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def truth_where(truth_family: Family | None, family: Family) -> str:
    """Where the check against the true hierarchy runs."""
    if truth_family is family:
        return ""
    if truth_family is None:
        return ("This build's source has no known hierarchy, and no ground-truth source was set beside it "
                "(parameter `ground_truth`).")
    return ("A language model has no known hierarchy. So the trees and their baselines were built the same way "
            "on the ground-truth source beside it, with the same sizes and training settings.")


def truth_text(truth: Trees, own: Trees, settings: TreeSettings,
               curve: Sequence[splitting.CurvePoint] | None) -> dict[str, str]:
    """The glued sentences of the section on the true hierarchy."""
    if not truth.validated:
        return {"recovery_sentence": "There is no true hierarchy to check the trees against in this build.",
                "truth_tree_sentence": "", "truth_baseline_sentence": "",
                "split_threshold_sentence": splitting.threshold_sentence(None)}
    beside = truth.tree is not own.tree
    return {"recovery_sentence": splitting.recovery_sentence(truth.tree),
            "truth_tree_sentence": splitting.truth_sentence(truth.tree),
            "truth_baseline_sentence": (splitting.excluded_sentence(truth.tree, settings.n_heldout) + " "
                                        + splitting.baseline_sentence(truth.rows, truth.depth)) if beside else "",
            "split_threshold_sentence": splitting.threshold_sentence(curve)}


def threshold_curve(truth: Trees, settings: TreeSettings) -> list[splitting.CurvePoint] | None:
    return splitting.threshold_curve(truth.tree, truth.perm, truth.seed, settings.thresholds) if truth.validated \
        else None


def examples(truth: Trees, own: Trees) -> tuple[splitting.TreeReport | None, list[splitting.Example]]:
    """The tree the example subtrees are drawn from (the ground truth's when it can be checked, else the
    family's own) and the examples, one per class of outcome."""
    shown = truth if truth.validated else own
    if shown.tree is None:
        return None, []
    return shown.tree, splitting.example_subtrees(shown.tree, shown.perm)


def companion_tables(truth: Trees, own: Trees) -> list[tuple[list[str], list[list[object]]]]:
    """The ground truth's statistics beside their baselines (unless they are the family's own, above) and the
    validation of its edges against the true hierarchy."""
    beside = truth.tree is not own.tree
    return [splitting.statistics_table(truth.rows if beside else [], truth.depth if beside else None,
                                       empty="the ground truth's trees are this build's own, above"),
            splitting.validation_table(truth.tree if truth.validated else None)]


def active_counts(family: Family, large: int, active: Mapping[int, np.ndarray] | None,
                  null_q: float = 0.99) -> tuple[list[dict[str, float]], str]:
    """The post's counts over active latents (:func:`splitting.active_high_low`) and their sentence; without
    activations no rows, and a sentence that says why."""
    if active is None:
        return [], "These dictionaries have no activations to classify their latents by, so there is no such count."
    rows = splitting.active_high_low(family, large, active, null_q)
    return rows, splitting.active_count_sentence(rows)


def active_table(rows: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[object]]]:
    """The post's counts over active latents, with both cutoffs named."""
    return (["size", "active latents", "high (0.5)", "high share (0.5)", "high (null cutoff)",
             "high share (null cutoff)"],
            [[r["size"], f"{r['n_active']} of {r['n_latents']}", r["high_post"], splitting.pct(r["frac_high_post"]),
              r["high_null"], splitting.pct(r["frac_high_null"])] for r in rows])
