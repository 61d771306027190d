"""Feature splitting measured: feature trees across the size ladder, beside two baselines, checked
against the synthetic source's true hierarchy, and decoder geometry against activation similarity.

Edges come from :mod:`sae_core.trees` on held-out activations: small latent a -> large latent b
when the directed masked cosine (the follow-up post's score) is at least ``threshold`` and the
two co-fire on at least ``min_cofire`` tokens. Only *active* latents take part (a mask per size,
by default the report's latent classification, :func:`active_latents`); the others are counted
as excluded.

Every tree statistic (:data:`sae_core.trees.LEVEL_STATISTICS` per rung, chain depth over the
ladder) is reported beside

- the **permutation baseline**: the larger dictionary's codes shuffled across tokens (each
  latent keeps its firing rate, co-firing is broken), ``n_permutations`` seeded permutations,
  the interval being their range (:func:`permutation_baseline`);
- the **seed baseline**: the same rule between two dictionaries of the *same* size trained with
  different seeds, where nothing splits (:func:`seed_baseline`); one second seed, so its
  interval, like the real statistic's, is a bootstrap over latents.

Every sentence of chapter 7 built from these numbers is a function here (``*_sentence``), so the
edge cases (no edge, no true parent, no baseline) are unit-tested.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np
import torch
from scipy import sparse

from sae_core import stats, trees
from sae_core.report.pipeline import Family
from sae_core.similarity import max_cosine_similarity

THRESHOLDS = (0.4, 0.5, 0.6, 0.7, 0.8)  # Bricken et al. 0.4, the follow-up thread 0.6
TRUE_COS = 0.9  # a latent "is" a true feature when its decoder row is within this cosine of it
RECOVERY_MIN = 0.5  # a threshold recovers the hierarchy: precision and recall both at least this ...
STATISTIC_NAMES = {
    "edges_per_latent": "edges per latent",
    "branching_parents": "branching (children per parent)",
    "share_children_many": "share with several children",
    "share_merges": "merges (large latents with several parents)",
    "depth": "chain depth (rungs)",
}


def active_latents(family: Family, n_samples: int) -> dict[int, np.ndarray]:
    """Per size, the latents the report's classification calls *active* on ``n_samples`` held-out
    activations (firing at or above the family's density threshold: neither never-firing nor
    ultralow, :mod:`sae_core.report.latents`)."""
    from sae_core.report import latents

    return {s: latents.classify(family, s, n_samples).active for s in family.sizes}


def activity_threshold(family: Family, n_samples: int) -> float:
    """The family's density threshold between ultralow and active latents (:mod:`sae_core.report.latents`)."""
    from sae_core.report import latents

    return float(latents.density_threshold(family, n_samples).value)


# --------------------------------------------------------------------------- the trees
@dataclass
class TreeReport:
    sizes: list[int]
    n_tokens: int
    kind: str
    threshold: float
    min_cofire: int
    summaries: list[dict[str, float | int]]  # one per consecutive pair (small, large), at ``threshold``
    validation: list[trees.EdgeValidation] | None  # synthetic source only
    first_split: trees.FirstSplit | None
    twins: list[trees.TwinReport]
    levels: list[trees.TreeLevel]  # at ``threshold``
    identities: dict[int, np.ndarray] | None  # true feature of each latent (-1: none), synthetic only
    active: dict[int, np.ndarray] = field(default_factory=dict)  # [size] mask the trees are built over
    pairs: list[trees.ScoredPairs] = field(default_factory=list, repr=False)  # candidate edges per rung
    codes: dict[int, sparse.csr_matrix] = field(default_factory=dict, repr=False)  # codes of the tokens
    x: torch.Tensor | None = field(default=None, repr=False)  # the held-out activations [T, d]
    parent_of: np.ndarray | None = None  # the true hierarchy, synthetic only
    recovery: dict[int, trees.HierarchyRecovery] | None = None

    @property
    def rungs(self) -> list[tuple[int, int]]:
        return list(pairwise(self.sizes))

    @property
    def excluded(self) -> dict[int, int]:
        """Per size, latents left out of the trees: not active, or silent on the trees' tokens."""
        out = {s: int(s - self.active[s].sum()) for s in self.sizes}
        for (a, b), level in zip(self.rungs, self.levels, strict=True):
            out[a] = int(a - level.alive_small.sum())
            out[b] = int(b - level.alive_large.sum())
        return out

    @property
    def inactive(self) -> dict[int, int]:
        """Per size, latents the activity mask excludes."""
        return {s: int((~self.active[s]).sum()) for s in self.sizes}


def _true_hierarchy(family: Family) -> np.ndarray | None:
    parent_of = getattr(family.source, "parent_of", None)
    if family.true_features is None or parent_of is None:
        return None
    return np.asarray(parent_of.numpy() if hasattr(parent_of, "numpy") else parent_of, np.int64)


def _pair_stats(codes_small: sparse.csr_matrix, codes_large: sparse.csr_matrix, kind: str, min_cofire: int,
                large_tokens: np.ndarray | None = None) -> trees.PairStats:
    """Only what the score needs: pairs with the support an edge needs, the small-side masks for "mcs" only."""
    return trees.pair_stats(codes_small, codes_large, large_tokens=large_tokens, min_cofire=min_cofire,
                            small_masks=kind == "mcs")


def feature_trees(family: Family, n_tokens: int = 16384, kind: str = "directed",
                  threshold: float = trees.DIRECTED_THRESHOLD, min_cofire: int = 5,
                  true_cos_threshold: float = TRUE_COS, active: Mapping[int, np.ndarray] | None = None) -> TreeReport:
    """Trees across every consecutive pair of the family's sizes, on ``n_tokens`` held-out activations,
    over the latents of ``active`` (``{size: mask}``; default: all)."""
    sizes = family.sizes
    x = family.sample(n_tokens)
    codes = dict(zip(sizes, trees.encode_sparse([family.saes[s] for s in sizes], x), strict=True))
    active = {s: (np.ones(s, bool) if active is None else np.asarray(active[s], bool)) for s in sizes}
    pairs, twins = [], []
    for a, b in pairwise(sizes):
        st = _pair_stats(codes[a], codes[b], kind, min_cofire)
        pairs.append(trees.scored_pairs(st, kind=kind, min_cofire=min_cofire, alive_small=active[a],
                                        alive_large=active[b]))
        twins.append(trees.decoder_vs_activation(family.features(a), family.features(b), st,
                                                 codes=(codes[a], codes[b])))
    levels = [trees.level_at(p, threshold) for p in pairs]
    summaries = [{"small": a, "large": b, **trees.level_summary(lv)}
                 for (a, b), lv in zip(pairwise(sizes), levels, strict=True)]
    validation = first = identities = recovery = None
    parent_of = _true_hierarchy(family)
    if parent_of is not None:
        identities = {s: trees.identify_latents(family.features(s), family.true_features, true_cos_threshold).feature
                      for s in sizes}
        validation = [trees.validate_edges(level, identities[a], identities[b], parent_of)
                      for level, (a, b) in zip(levels, pairwise(sizes), strict=True)]
        first = trees.first_split_size({s: family.features(s) for s in sizes}, family.true_features, parent_of,
                                       true_cos_threshold)
        recovery = {s: trees.recovered_hierarchy(identities[s], parent_of) for s in sizes}
    return TreeReport(sizes, int(x.shape[0]), kind, threshold, min_cofire, summaries, validation, first, twins,
                      levels, identities, active, pairs, codes, x, parent_of, recovery)


# --------------------------------------------------------------------------- baselines
@dataclass
class PermutationBaseline:
    n_permutations: int
    seed: int
    pairs: list[list[trees.ScoredPairs]]  # [permutation][rung] candidate edges with shuffled large codes


def permutation_baseline(report: TreeReport, n_permutations: int = 3, seed: int = 0,
                         workers: int = 2) -> PermutationBaseline:
    """The report's rungs with the larger dictionary's codes shuffled across tokens: permutation ``k``
    (seeded by ``(seed, k)``) shuffles every rung's large codes, so a ladder of shuffled rungs gives the
    chance depth too. Same tokens, masks, score and support as the real trees."""
    perms = trees.token_permutations(report.n_tokens, n_permutations, seed)
    floor = min((*THRESHOLDS, report.threshold))

    def one(task: tuple[int, int]) -> trees.ScoredPairs:
        k, r = task
        a, b = report.rungs[r]
        st = _pair_stats(report.codes[a], report.codes[b], report.kind, report.min_cofire, large_tokens=perms[k])
        p = trees.scored_pairs(st, kind=report.kind, min_cofire=report.min_cofire,
                               alive_small=report.active[a], alive_large=report.active[b])
        keep = p.score >= floor  # only pairs that can be an edge at some threshold of the sweep
        return trees.ScoredPairs(p.n_small, p.n_large, p.kind, p.min_cofire, p.small[keep], p.large[keep],
                                 p.score[keep], p.alive_small, p.alive_large)

    tasks = [(k, r) for k in range(n_permutations) for r in range(len(report.rungs))]
    # the sparse products release the GIL: two threads use both cores of the book's machine
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(tasks)))) as pool:
        done = dict(zip(tasks, pool.map(one, tasks), strict=True))
    return PermutationBaseline(n_permutations, seed,
                               [[done[(k, r)] for r in range(len(report.rungs))] for k in range(n_permutations)])


@dataclass
class SeedBaseline:
    second_seed: int
    sizes: list[int]  # sizes with a second-seed dictionary that start a rung of the ladder
    pairs: dict[int, trees.ScoredPairs]  # size -> candidate edges, seed a -> seed b at that size
    identities: dict[int, np.ndarray] | None  # true feature of each second-seed latent, synthetic only
    excluded: dict[int, int] = field(default_factory=dict)  # second-seed latents left out (inactive)


def seed_family_sizes(family: Family, ablation_sizes: Sequence[int], large: int, companion: bool) -> list[int]:
    """Sizes at which to train (or load) the second seed. The main family: chapter 5's second-seed family,
    ``ablation_sizes`` and the reference ``large`` (already trained by the book, so free). A companion,
    which no other chapter retrains: the smallest of ``ablation_sizes`` that starts a rung, one dictionary
    (training time grows with the size)."""
    wanted = sorted({int(s) for s in ablation_sizes} & set(family.sizes))
    if companion:
        return [s for s in wanted if s < family.sizes[-1]][:1]
    return sorted(set(wanted) | ({large} if large in family.sizes else set()))


def seed_baseline(report: TreeReport, family: Family, other: Family, second_seed: int,
                  density_threshold: float | None = None, true_cos_threshold: float = TRUE_COS) -> SeedBaseline:
    """For each size ``s`` that starts a rung and that ``other`` (the same settings, another seed) has:
    edges from ``family``'s dictionary of size ``s`` to ``other``'s, by the same rule, on the same
    tokens (``report.x``, encoded by ``other``'s SAEs). ``family``'s latents keep the report's mask;
    ``other``'s are active when their firing density on those tokens is at least ``density_threshold``
    (the family's own threshold, :func:`activity_threshold`; default: when they fire at all), so the
    second seed costs no held-out pass of its own."""
    sizes = [s for s in report.sizes[:-1] if s in other.saes]
    pairs, ident, excluded = {}, {} if report.parent_of is not None else None, {}
    if sizes:
        codes = dict(zip(sizes, trees.encode_sparse([other.saes[s] for s in sizes], report.x), strict=True))
        for s in sizes:
            density = np.bincount(codes[s].indices, minlength=s) / report.n_tokens
            mask = density > 0 if density_threshold is None else density >= density_threshold
            excluded[s] = int((~mask).sum())
            st = _pair_stats(report.codes[s], codes[s], report.kind, report.min_cofire)
            pairs[s] = trees.scored_pairs(st, kind=report.kind, min_cofire=report.min_cofire,
                                          alive_small=report.active[s], alive_large=mask)
            if ident is not None:
                ident[s] = trees.identify_latents(other.features(s), family.true_features, true_cos_threshold).feature
    return SeedBaseline(second_seed, sizes, pairs, ident, excluded)


def seed_sizes_text(seed: SeedBaseline | None) -> str:
    """The sizes the seed baseline covers, or why there is none."""
    if seed is None:
        return "none: these dictionaries cannot be retrained with another seed, or have no activations"
    if not seed.sizes:
        return "none: no size with a second seed starts a rung of this ladder"
    return ", ".join(str(s) for s in seed.sizes)


# --------------------------------------------------------------------------- statistics beside baselines
@dataclass
class Estimate:
    value: float
    lo: float
    hi: float

    def text(self, fmt: str = ".2f") -> str:
        """``value [lo, hi]``, "–" for an undefined value; a degenerate interval is not repeated."""
        if not np.isfinite(self.value):
            return "–"
        if not (np.isfinite(self.lo) and np.isfinite(self.hi)) or self.lo == self.hi == self.value:
            return f"{self.value:{fmt}}"
        return f"{self.value:{fmt}} [{self.lo:{fmt}}, {self.hi:{fmt}}]"


def _range(values: Sequence[float]) -> Estimate:
    """Mean of ``values`` and their range (NaN-free values only)."""
    v = np.asarray([x for x in values if np.isfinite(x)], np.float64)
    if v.size == 0:
        return Estimate(float("nan"), float("nan"), float("nan"))
    return Estimate(float(v.mean()), float(v.min()), float(v.max()))


def _bootstrapped(level: trees.TreeLevel, n_boot: int, seed: int) -> dict[str, Estimate]:
    point, ci = trees.level_statistics(level), trees.level_intervals(level, n_boot=n_boot, seed=seed)
    return {k: Estimate(point[k], *ci[k]) for k in point}


@dataclass
class RungStatistics:
    small: int
    large: int
    n_small: int  # latents in the tree (active and firing on the tokens)
    n_large: int
    n_edges: int
    real: dict[str, Estimate]  # bootstrap interval over latents
    permuted: dict[str, Estimate]  # mean and range over permutations
    permuted_edges: Estimate
    seed: dict[str, Estimate] | None  # bootstrap interval; None when this rung has no second seed
    seed_edges: int | None


def rung_statistics(report: TreeReport, perm: PermutationBaseline | None, seed: SeedBaseline | None,
                    threshold: float | None = None, n_boot: int = 200) -> list[RungStatistics]:
    """Each rung's statistics at ``threshold`` (default: the report's) beside the two baselines."""
    threshold = report.threshold if threshold is None else threshold
    rows = []
    for k, ((a, b), pairs) in enumerate(zip(report.rungs, report.pairs, strict=True)):
        level = trees.level_at(pairs, threshold)
        shuffled = [trees.level_at(p[k], threshold) for p in perm.pairs] if perm is not None else []
        perm_stats = [trees.level_statistics(lv) for lv in shuffled]
        permuted = {name: _range([s[name] for s in perm_stats]) for name in trees.LEVEL_STATISTICS}
        seed_level = trees.level_at(seed.pairs[a], threshold) if seed is not None and a in seed.pairs else None
        rows.append(RungStatistics(
            a, b, int(level.alive_small.sum()), int(level.alive_large.sum()), int(level.src.size),
            _bootstrapped(level, n_boot, k), permuted, _range([lv.src.size for lv in shuffled]),
            _bootstrapped(seed_level, n_boot, k) if seed_level is not None else None,
            int(seed_level.src.size) if seed_level is not None else None,
        ))
    return rows


@dataclass
class DepthStatistics:
    real: Estimate  # mean chain depth from the smallest dictionary, bootstrap interval
    permuted: Estimate  # mean and range over permutations
    full_real: float  # share of roots whose chain reaches the largest dictionary
    full_permuted: Estimate
    n_rungs: int


def depth_statistics(report: TreeReport, perm: PermutationBaseline | None, threshold: float | None = None,
                     n_boot: int = 200) -> DepthStatistics:
    threshold = report.threshold if threshold is None else threshold
    real = trees.depth_statistics([trees.level_at(p, threshold) for p in report.pairs], n_boot=n_boot)
    shuffled = [trees.depth_statistics([trees.level_at(p, threshold) for p in rungs], n_boot=2)
                for rungs in (perm.pairs if perm is not None else [])]
    return DepthStatistics(Estimate(real["depth"], real["depth_lo"], real["depth_hi"]),
                           _range([d["depth"] for d in shuffled]), real["share_full_depth"],
                           _range([d["share_full_depth"] for d in shuffled]), real["n_rungs"])


def exceeds(real: Estimate, *baselines: Estimate | None) -> bool | None:
    """Whether the real statistic's interval lies wholly above every baseline's interval (None when the real
    value or every baseline is undefined)."""
    given = [b for b in baselines if b is not None and np.isfinite(b.value)]
    if not np.isfinite(real.value) or not given:
        return None
    lo = real.lo if np.isfinite(real.lo) else real.value
    return all(lo > (b.hi if np.isfinite(b.hi) else b.value) for b in given)


# --------------------------------------------------------------------------- the threshold curve
@dataclass
class CurvePoint:
    threshold: float
    real: trees.SplitRates
    permuted: list[trees.SplitRates]  # one per permutation
    seed: trees.SplitRates | None  # the seed baseline's edges against the truth
    edges: int
    permuted_edges: Estimate
    seed_edges: int | None

    @property
    def permuted_precision(self) -> Estimate:
        return _range([r.precision for r in self.permuted])

    @property
    def permuted_recall(self) -> Estimate:
        return _range([r.recall for r in self.permuted])


def threshold_curve(report: TreeReport, perm: PermutationBaseline | None, seed: SeedBaseline | None,
                    thresholds: Sequence[float] = THRESHOLDS) -> list[CurvePoint] | None:
    """Precision and recall of true parent -> child edges (pooled over rungs, :func:`trees.pooled_split_rates`)
    at each threshold, for the trees and for both baselines; None without a true hierarchy."""
    if report.parent_of is None or report.identities is None:
        return None
    ids, parent_of = report.identities, report.parent_of

    def rates(levels: Sequence[trees.TreeLevel], rungs: Sequence[tuple[int, int]],
              large_ids: Mapping[int, np.ndarray] | None = None) -> trees.SplitRates:
        large_ids = ids if large_ids is None else large_ids
        return trees.pooled_split_rates([trees.validate_edges(lv, ids[a], large_ids[b], parent_of)
                                         for lv, (a, b) in zip(levels, rungs, strict=True)])

    out = []
    for t in thresholds:
        levels = [trees.level_at(p, t) for p in report.pairs]
        shuffled = [[trees.level_at(p, t) for p in rungs] for rungs in (perm.pairs if perm is not None else [])]
        seed_rates, seed_edges = None, None
        if seed is not None and seed.sizes and seed.identities is not None:
            seed_levels = [trees.level_at(seed.pairs[s], t) for s in seed.sizes]
            seed_rates = rates(seed_levels, [(s, s) for s in seed.sizes], large_ids=seed.identities)
            seed_edges = int(sum(lv.src.size for lv in seed_levels))
        out.append(CurvePoint(
            float(t), rates(levels, report.rungs), [rates(lvs, report.rungs) for lvs in shuffled], seed_rates,
            int(sum(lv.src.size for lv in levels)), _range([sum(lv.src.size for lv in lvs) for lvs in shuffled]),
            seed_edges,
        ))
    return out


def recovering_thresholds(curve: Sequence[CurvePoint], minimum: float = RECOVERY_MIN) -> list[float]:
    """Thresholds that recover the hierarchy: precision and recall both at least ``minimum``, and precision
    above every permutation's (chance)."""
    found = []
    for p in curve:
        chance = p.permuted_precision
        beats = not np.isfinite(chance.value) or p.real.precision > chance.hi
        if (np.isfinite(p.real.precision) and np.isfinite(p.real.recall) and p.real.precision >= minimum
                and p.real.recall >= minimum and beats):
            found.append(p.threshold)
    return found


# --------------------------------------------------------------------------- the post's counts over active latents
def active_high_low(family: Family, large: int, active: Mapping[int, np.ndarray],
                    null_q: float = 0.99) -> list[dict[str, float]]:
    """The post's Figures 11-12 counted over active latents only: each active latent of a smaller
    dictionary against the *active* latents of ``large``, with the 0.5 cutoff and the null cutoff for
    that many reference latents."""
    ref = np.asarray(active[large], bool)
    n_ref = int(ref.sum())
    null_cut = stats.null_cutoff(family.d_in, n_ref, null_q) if n_ref else float("nan")
    rows = []
    for size in family.sizes:
        if size >= large:
            continue
        mask = np.asarray(active[size], bool)
        if n_ref and mask.any():
            v = max_cosine_similarity(family.features(size)[torch.from_numpy(mask)],
                                      family.features(large)[torch.from_numpy(ref)]).values.numpy()
        else:
            v = np.zeros(0)
        high_post = int((v >= stats.POST_CUTOFF).sum())
        high_null = int((v >= null_cut).sum()) if n_ref else 0
        n = int(v.size)
        rows.append({"size": size, "n_active": n, "n_latents": size, "high_post": high_post,
                     "low_post": n - high_post, "frac_high_post": high_post / n if n else float("nan"),
                     "high_null": high_null, "low_null": n - high_null,
                     "frac_high_null": high_null / n if n else float("nan"), "null_cutoff": null_cut,
                     "n_reference_active": n_ref})
    return rows


# --------------------------------------------------------------------------- example subtrees
@dataclass
class Example:
    """One drawn subtree: a small latent and its children at one rung."""

    label: str  # the class of outcome
    rule: str  # how it was chosen
    rung: int | None  # index of the rung; None when no edge of this class exists
    root: int = -1
    children: list[tuple[int, float, str]] = field(default_factory=list)  # (large latent, score, edge kind)
    root_feature: int = -1
    chance: float = float("nan")  # the median score of the shuffled codes' edges at that rung
    chosen: int = -1  # the large latent of the edge the rule chose
    chosen_score: float = float("nan")


def _chance_level(perm: PermutationBaseline | None, k: int, threshold: float) -> float:
    """The median score of the shuffled codes' edges at rung ``k`` and ``threshold`` (pooled over
    permutations; NaN when shuffled codes draw no edge there)."""
    scores = [p[k].score[p[k].score >= threshold] for p in (perm.pairs if perm is not None else [])]
    scores = np.concatenate(scores) if scores else np.zeros(0)
    return float(np.median(scores)) if scores.size else float("nan")


def example_subtrees(report: TreeReport, perm: PermutationBaseline | None) -> list[Example]:
    """One subtree per class of outcome, by a fixed rule: the **true split** is the edge labelled a
    split (parent -> its child) with the highest score over the ladder; the **baseline-level link** is
    the edge with the highest score among those scoring at most the median score of the shuffled
    codes' edges at its rung (a typical chance edge), taken among the links between unrelated true
    features when the source has a hierarchy and such links exist. Each is drawn with every edge of
    its small latent at that rung."""
    edges = []  # (rung, src, dst, score, kind)
    for k, level in enumerate(report.levels):
        kinds = report.validation[k].kinds if report.validation is not None else np.full(level.src.size, "")
        edges += [(k, int(i), int(j), float(s), str(kind))
                  for i, j, s, kind in zip(level.src, level.dst, level.score, kinds, strict=True)]

    def build(label: str, rule: str, chosen) -> Example:
        if chosen is None:
            return Example(label, rule, None)
        k, i = chosen[0], chosen[1]
        kids = [(j, s, kind) for kk, ii, j, s, kind in edges if kk == k and ii == i]
        feat = int(report.identities[report.sizes[k]][i]) if report.identities is not None else -1
        return Example(label, rule, k, i, sorted(kids, key=lambda c: -c[1]), feat,
                       _chance_level(perm, k, report.threshold), chosen[2], chosen[3])

    best = lambda pool: max(pool, key=lambda e: (e[3], -e[0], -e[1], -e[2])) if pool else None  # noqa: E731
    out = []
    if report.validation is not None:
        out.append(build("true split", "the true parent -> child edge with the highest score",
                         best([e for e in edges if e[4] == "split"])))
    if perm is not None:
        level = [_chance_level(perm, k, report.threshold) for k in range(len(report.levels))]
        at_chance = [e for e in edges if np.isfinite(level[e[0]]) and e[3] <= level[e[0]]]
        unrelated = [e for e in at_chance if e[4] == "unrelated"]
        out.append(build("baseline-level link",
                         "the highest-scoring edge at or below the median score of shuffled codes' edges at its rung"
                         + (", between unrelated true features" if unrelated else ""),
                         best(unrelated or at_chance)))
    return out


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


def largest_trees(report: TreeReport, n: int = 3) -> list[int]:
    """The ``n`` latents of the smallest dictionary with the most descendants in the drawn tree (each
    large latent under its best parent), ties to the lowest index."""
    below = np.zeros(report.sizes[-1], np.int64)
    for level in reversed(report.levels):
        count = np.zeros(level.n_small, np.int64)
        kept = level.best_parent >= 0
        np.add.at(count, level.best_parent[kept], 1 + below[np.flatnonzero(kept)])
        below = count
    return [int(i) for i in np.argsort(-below, kind="stable")[:n]]


# --------------------------------------------------------------------------- sentences
def pct(x: float) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:.1%}"


def num(x: float) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:.2f}"


def excluded_sentence(report: TreeReport, n_samples: int) -> str:
    """How many latents the activity mask leaves out of the trees, per size."""
    inactive = report.inactive
    total = sum(inactive.values())
    if total == 0:
        return (f"Every latent of every size is active on the {n_samples:,} held-out activations, so none is "
                "excluded from the trees.")
    parts = ", ".join(f"{inactive[s]} of {s}" for s in report.sizes)
    return (f"The trees are built over active latents only: {total:,} latents are excluded as never firing or "
            f"ultralow on the {n_samples:,} held-out activations ({parts}, by size).")


def baseline_sentence(rows: Sequence[RungStatistics], depth: DepthStatistics | None = None,
                      statistic: str = "share_children_many") -> str:
    """Whether the share of small latents with several children (or ``statistic``) exceeds each baseline,
    rung by rung (the trees' bootstrap interval wholly above the baseline's), with the first and last rung's
    numbers and the chain depth against shuffled codes."""
    if not rows:
        return "There is no rung to compare with the baselines."
    if sum(r.n_edges for r in rows) == 0:
        return "The rule draws no edge on any rung, so no splitting is seen, above chance or not."
    name = STATISTIC_NAMES[statistic]
    fmt = ".1%" if statistic.startswith("share") else ".2f"
    vs_perm = [exceeds(r.real[statistic], r.permuted[statistic]) for r in rows]
    vs_seed = [exceeds(r.real[statistic], r.seed[statistic]) if r.seed else None for r in rows]

    def tally(verdicts: list[bool | None], what: str) -> str:
        judged = [v for v in verdicts if v is not None]
        if not judged:
            return f"no rung can be judged against {what}"
        n = sum(judged)
        return (f"above {what} on {'all ' if n == len(judged) and n > 1 else ''}{n} of {len(judged)} rung"
                f"{'s' if len(judged) > 1 else ''}")

    shown = []
    for r in (rows[0], rows[-1]) if len(rows) > 1 else (rows[0],):
        seed_part = f", another seed {r.seed[statistic].text(fmt)}" if r.seed else ""
        shown.append(f"{r.small} → {r.large}: {r.real[statistic].text(fmt)}, shuffled codes "
                     f"{r.permuted[statistic].text(fmt)}{seed_part}")
    text = (f"The {name} lies {tally(vs_perm, 'shuffled codes')} and {tally(vs_seed, 'another seed of the same size')}"
            f" ({'; '.join(shown)}).")
    if any(v is False for v in vs_seed):
        text += (" Where the trees' interval does not clear the seed baseline, two dictionaries of the same size, in "
                 "which nothing can split, are linked about as often or more, so the splitting there is not told apart "
                 "from what the rule draws between any two dictionaries.")
    if depth is not None and np.isfinite(depth.real.value):
        above = exceeds(depth.real, depth.permuted)
        text += (f" Chains from the smallest dictionary run {depth.real.text()} rungs on average, against "
                 f"{depth.permuted.text()} with shuffled codes"
                 + ("." if above is None else ": deeper than chance." if above else ": no deeper than chance."))
    return text


def threshold_sentence(curve: Sequence[CurvePoint] | None, minimum: float = RECOVERY_MIN) -> str:
    """Which threshold of the sweep, if any, recovers the true hierarchy (the rule of :func:`recovering_thresholds`)."""
    if curve is None:
        return "There is no true hierarchy in this build to score the thresholds against."
    if not curve:
        return "No threshold was swept."
    if all(p.real.n_recoverable == 0 for p in curve):
        return ("No threshold can recover the hierarchy here: no true parent and child are both learned as "
                "features (within cosine 0.9) in the two dictionaries of any rung, so there is no true split to "
                "find (recall is undefined).")
    good = recovering_thresholds(curve, minimum)
    best = max(curve, key=lambda p: (np.nan_to_num(p.real.recall), np.nan_to_num(p.real.precision)))
    detail = (f"at {best.threshold:g} the edges find {best.real.n_recovered} of {best.real.n_recoverable} "
              f"recoverable true parent → child pairs (recall {pct(best.real.recall)}) with precision "
              f"{pct(best.real.precision)} ({best.real.n_split} of {best.real.n_linking} edges that link two "
              f"different features), against a chance precision of {pct(best.permuted_precision.value)} with "
              "shuffled codes")
    if good:
        listed = ", ".join(f"{t:g}" for t in good)
        return (f"Threshold{'s' if len(good) > 1 else ''} {listed} recover{'' if len(good) > 1 else 's'} the "
                f"hierarchy (precision and recall at least {minimum:.0%}, precision above chance): {detail}.")
    return (f"No threshold from {curve[0].threshold:g} to {curve[-1].threshold:g} recovers the hierarchy (precision "
            f"and recall at least {minimum:.0%} with precision above chance); the best recall is {detail}.")


def recovery_sentence(report: TreeReport) -> str:
    """How many true parents and children each size learns as features, and whether the hierarchy is learned."""
    if report.recovery is None:
        return "There is no true hierarchy in this build."
    rec = report.recovery
    first = rec[report.sizes[0]]
    if first.n_parents == 0:
        return "This synthetic source has no hierarchy (no true parent), so there is nothing to recover."
    best_children = max(rec.values(), key=lambda r: r.children_found)
    best_size = max(report.sizes, key=lambda s: (rec[s].children_found, -s))
    parts = ", ".join(f"{rec[s].parents_found}/{rec[s].children_found} at {s}" for s in report.sizes)
    head = (f"Of the {first.n_parents} true parents and {first.n_children} children, the dictionaries learn "
            f"(parents/children, within cosine 0.9): {parts}.")
    both = [s for s in report.sizes if rec[s].parents_found and rec[s].children_found]
    if best_children.children_found == 0:
        return head + (" No child is learned at any size, so the hierarchy is not learned at these settings, and the "
                       "trees cannot show true splits.")
    if not both:
        return head + (f" Children are learned (most at {best_size}: {rec[best_size].children_found}) but never with "
                       "their parents in the same dictionary.")
    return head + (f" The most children are learned at {best_size}: {rec[best_size].children_found} of "
                   f"{first.n_children} ({pct(rec[best_size].children_found / first.n_children)}).")


def active_count_sentence(rows: Sequence[Mapping[str, float]]) -> str:
    """The post's "more high-MCS features, a smaller share of them", counted over active latents."""
    rows = [r for r in rows if r["n_active"] > 0]
    if len(rows) < 2:
        return "Fewer than two dictionaries have active latents, so the count over active latents has no trend."
    first, last = rows[0], rows[-1]
    more = last["high_post"] > first["high_post"]
    smaller = last["frac_high_post"] < first["frac_high_post"]
    verdict = ("so the post's pattern (more high-MCS features, a smaller share of them) holds over active latents"
               if more and smaller else
               "so over active latents the count rises but the share does not fall" if more else
               "so over active latents the count of high-MCS features does not rise")
    return (f"Over active latents only (against the {first['n_reference_active']} active latents of the reference), "
            f"the number of high-MCS features (0.5) went from {first['high_post']} of {first['n_active']} at "
            f"{first['size']} to {last['high_post']} of {last['n_active']} at {last['size']}, a share from "
            f"{pct(first['frac_high_post'])} to {pct(last['frac_high_post'])}, {verdict}.")


def tree_sentence(report: TreeReport) -> str:
    """The shares of small latents with several children and of merges, first to last rung."""
    if not report.summaries:
        return "The family has a single size, so there is no rung to build a tree across."
    first, last = report.summaries[0], report.summaries[-1]
    return (f"From {first['small']} → {first['large']} to {last['small']} → {last['large']}, the share of active "
            f"small latents with more than one child went from {pct(first['share_children_many'])} to "
            f"{pct(last['share_children_many'])}, and the share of large latents with more than one parent (merges) "
            f"from {pct(first['share_merges'])} to {pct(last['share_merges'])}.")


def twins_table(report: TreeReport) -> tuple[list[str], list[list[object]]]:
    return (["small → large", "matched pairs (both alive)", "twins that fire differently", "fire alike, not twins"],
            [[f"{a} → {b}", int(t.alive.sum()), t.n_twins_fire_differently, t.n_fire_alike_not_twins]
             for (a, b), t in zip(report.rungs, report.twins, strict=True)])


def twins_sentence(report: TreeReport) -> str:
    rows = twins_table(report)[1]
    return ("The second table pairs each small latent with the large latent whose decoder row is closest (its MCS "
            "partner) and compares that with how the two fire, as in Bricken et al.'s universality analysis: \"twins "
            "that fire differently\" have decoder cosine at least 0.9 but activation correlation below 0.5 "
            f"({sum(r[2] for r in rows)} pairs in all), \"fire alike, not twins\" the reverse (cosine below 0.5, "
            f"correlation at least 0.9; {sum(r[3] for r in rows)} pairs).")


def statistics_table(rows: Sequence[RungStatistics], depth: DepthStatistics | None = None,
                     empty: str = "no tree in this build") -> tuple[list[str], list[list[object]]]:
    """One line per rung and statistic: the trees, shuffled codes, another seed; then the chain depth."""
    headers = ["small → large", "statistic", "trees", "shuffled codes", "another seed",
               "edges (trees / shuffled / seed)"]
    out: list[list[object]] = []
    for r in rows:
        for k, name in enumerate(trees.LEVEL_STATISTICS):
            fmt = ".1%" if name.startswith("share") else ".2f"
            edges = (f"{r.n_edges} / {r.permuted_edges.text('.0f')} / "
                     f"{'–' if r.seed_edges is None else r.seed_edges}") if k == 0 else ""
            out.append([f"{r.small} → {r.large}" if k == 0 else "", STATISTIC_NAMES[name], r.real[name].text(fmt),
                        r.permuted[name].text(fmt), r.seed[name].text(fmt) if r.seed else "–", edges])
    if depth is not None:
        out.append(["whole ladder", STATISTIC_NAMES["depth"], depth.real.text(), depth.permuted.text(), "–", ""])
        out.append(["", "share of chains to the largest", pct(depth.full_real), depth.full_permuted.text(".1%"), "–",
                    ""])
    if not out:
        out.append(["–", empty, "–", "–", "–", "–"])
    return headers, out


def recovery_table(report: TreeReport | None) -> tuple[list[str], list[list[object]]]:
    """Per size: latents identified with a true feature, true parents and children learned."""
    headers = ["size", "true features learned", "parents learned", "children learned", "excluded (inactive)"]
    if report is None or report.recovery is None:
        return headers, [["–", "no ground truth", "–", "–", "–"]]
    rows = []
    for s in report.sizes:
        r = report.recovery[s]
        rows.append([s, r.features_found, f"{r.parents_found} of {r.n_parents}",
                     f"{r.children_found} of {r.n_children}", report.inactive[s]])
    return headers, rows


def validation_table(report: TreeReport | None) -> tuple[list[str], list[list[object]]]:
    """Per rung at the report's threshold: identified edges by kind, precision, recall of true splits."""
    headers = ["small → large", "identified edges", "same feature", "true split", "other", "precision",
               "recall of true splits (recoverable)", "recall of carried features"]
    if report is None or report.validation is None:
        return headers, [["–", "no ground truth", "–", "–", "–", "–", "–", "–"]]
    rows = []
    for (a, b), v in zip(report.rungs, report.validation, strict=True):
        other = v.counts["absorbed"] + v.counts["sibling"] + v.counts["unrelated"]
        rows.append([f"{a} → {b}", v.counts["same"] + v.counts["split"] + other, v.counts["same"], v.counts["split"],
                     other, pct(v.precision), f"{pct(v.recall_split)} ({v.n_recoverable_split})", pct(v.recall_same)])
    return headers, rows


def truth_sentence(report: TreeReport) -> str:
    """When true parents first split, and how many identified edges are true splits."""
    if report.first_split is None or report.validation is None:
        return "There is no true hierarchy to check the trees against in this build."
    fs = report.first_split
    if fs.parents.size == 0:
        return "The source has no true parent, so no edge can be a true split."
    split_sizes = fs.split_size[fs.split_size > 0]
    never = int((fs.split_size < 0).sum())
    splits = sum(v.counts["split"] for v in report.validation)
    unrelated = sum(v.counts["unrelated"] + v.counts["sibling"] + v.counts["absorbed"] for v in report.validation)
    identified = splits + unrelated + sum(v.counts["same"] for v in report.validation)
    first = (f"Of the {fs.parents.size} true parents, a child first appeared as a learned feature at a median size of "
             f"{int(np.median(split_sizes))} ({never} never within the ladder)." if split_sizes.size else
             f"None of the {fs.parents.size} true parents has a child learned as a feature within the ladder.")
    if identified == 0:
        return first + (" No edge joins two latents that are both identified with true features (within cosine 0.9), "
                        "so the edges cannot be checked against the hierarchy here.")
    return first + (f" Across all rungs at the threshold {report.threshold:g}, {splits} identified edges are true "
                    f"parent → child splits and {unrelated} link features the hierarchy does not relate"
                    + (": the splitting seen in MCS terms includes true splitting." if splits > unrelated else
                       ": most links between different features are not the true hierarchy."))


def curve_table(curve: Sequence[CurvePoint] | None) -> tuple[list[str], list[list[object]]]:
    """Per threshold: edges, precision and recall of the trees, shuffled codes and another seed."""
    headers = ["threshold", "edges (trees / shuffled / seed)", "precision", "recall (found of recoverable)",
               "precision, shuffled", "recall, shuffled", "precision, seed", "recall, seed"]
    if not curve:
        return headers, [["–", "no ground truth", "–", "–", "–", "–", "–", "–"]]
    rows = []
    for p in curve:
        rows.append([
            f"{p.threshold:g}",
            f"{p.edges} / {p.permuted_edges.text('.0f')} / {'–' if p.seed_edges is None else p.seed_edges}",
            f"{pct(p.real.precision)} ({p.real.n_split} of {p.real.n_linking})",
            f"{pct(p.real.recall)} ({p.real.n_recovered} of {p.real.n_recoverable})",
            p.permuted_precision.text(".1%"), p.permuted_recall.text(".1%"),
            pct(p.seed.precision) if p.seed is not None else "–", pct(p.seed.recall) if p.seed is not None else "–",
        ])
    return headers, rows


def examples_sentence(examples: Sequence[Example]) -> str:
    """What each drawn subtree shows, or why a class has none."""
    if not examples:
        return "There are no trees to draw examples from in this build."
    parts = []
    for ex in examples:
        if ex.rung is None:
            parts.append(f"No edge of the class \"{ex.label}\" exists here, so its panel is empty.")
            continue
        chance = (f"; the shuffled codes' edges at that rung score {ex.chance:.2f} at the median"
                  if np.isfinite(ex.chance) else "")
        parts.append(f"The {ex.label} panel shows latent {ex.root} of rung {ex.rung + 1} with its "
                     f"{len(ex.children)} edge{'s' if len(ex.children) != 1 else ''}; the chosen edge scores "
                     f"{num(ex.chosen_score)}{chance}.")
    return " ".join(parts)
