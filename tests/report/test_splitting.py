"""Chapter 7's report layer: the sentences built from tree statistics and their baselines (edge cases fed
by hand), and the whole chain on a tiny cached family."""

import matplotlib
import numpy as np

from sae_core import trees
from sae_core.report import pipeline, splitting
from sae_core.report import splitting_plots as split_plots
from sae_core.report.splitting import CurvePoint, Estimate, RungStatistics

matplotlib.use("Agg")
NAN = float("nan")


def est(v: float, lo: float | None = None, hi: float | None = None) -> Estimate:
    return Estimate(v, v if lo is None else lo, v if hi is None else hi)


def rung(small: int, real: float, perm: float, seed: float | None, n_edges: int = 10,
         real_ci: tuple[float, float] | None = None) -> RungStatistics:
    """A rung whose every statistic has the given values (intervals: real_ci, else degenerate)."""
    lo, hi = real_ci or (real, real)
    stats_ = {k: est(real, lo, hi) for k in trees.LEVEL_STATISTICS}
    return RungStatistics(small, 2 * small, small, 2 * small, n_edges, stats_,
                          {k: est(perm) for k in trees.LEVEL_STATISTICS}, est(0.0),
                          None if seed is None else {k: est(seed) for k in trees.LEVEL_STATISTICS},
                          None if seed is None else 3)


def rates(n_split: int, n_linking: int, n_recovered: int, n_recoverable: int) -> trees.SplitRates:
    share = lambda a, b: a / b if b else NAN  # noqa: E731
    return trees.SplitRates(n_split, n_linking, n_recovered, n_recoverable, share(n_split, n_linking),
                            share(n_recovered, n_recoverable))


def point(t: float, real: trees.SplitRates, perm: list[trees.SplitRates]) -> CurvePoint:
    return CurvePoint(t, real, perm, None, real.n_linking, est(0.0), None)


# ----------------------------------------------------------------------------- sentences, edge cases
def test_baseline_sentence_no_edges_all_edges_and_the_boundary():
    assert "no rung" in splitting.baseline_sentence([])
    none = splitting.baseline_sentence([rung(64, 0.0, 0.0, 0.0, n_edges=0), rung(128, 0.0, 0.0, None, n_edges=0)])
    assert "draws no edge" in none
    above = splitting.baseline_sentence([rung(64, 0.5, 0.0, 0.1, real_ci=(0.4, 0.6)),
                                         rung(128, 0.6, 0.0, 0.2, real_ci=(0.5, 0.7))])
    assert "above shuffled codes on all 2 of 2 rungs" in above
    assert "above another seed of the same size on all 2 of 2 rungs" in above
    assert "50.0% [40.0%, 60.0%]" in above and "nan" not in above.lower()
    # the interval's lower end equal to the baseline is not above it
    tied = splitting.baseline_sentence([rung(64, 0.5, 0.0, 0.4, real_ci=(0.4, 0.6))])
    assert "above another seed of the same size on 0 of 1 rung" in tied and "not told apart" in tied
    assert splitting.exceeds(est(0.5, 0.4, 0.6), est(0.4)) is False
    assert splitting.exceeds(est(0.5, 0.41, 0.6), est(0.4)) is True
    assert splitting.exceeds(est(NAN), est(0.1)) is None and splitting.exceeds(est(0.3), None) is None
    no_seed = splitting.baseline_sentence([rung(64, 0.5, 0.0, None, real_ci=(0.4, 0.6))])
    assert "no rung can be judged against another seed" in no_seed


def test_threshold_sentence_edge_cases():
    assert "no true hierarchy" in splitting.threshold_sentence(None)
    zero = [point(t, rates(0, 0, 0, 0), [rates(0, 0, 0, 0)]) for t in splitting.THRESHOLDS]
    assert "No threshold can recover" in splitting.threshold_sentence(zero)
    # exactly 50% precision and recall, chance precision below: on the boundary, recovered
    boundary = [point(0.4, rates(1, 4, 1, 4), [rates(0, 3, 0, 4)]),
                point(0.6, rates(5, 10, 2, 4), [rates(0, 2, 0, 4)])]
    assert splitting.recovering_thresholds(boundary) == [0.6]
    sentence = splitting.threshold_sentence(boundary)
    assert sentence.startswith("Threshold 0.6 recovers the hierarchy") and "nan" not in sentence.lower()
    # precision equal to a permutation's: not above chance
    at_chance = [point(0.6, rates(5, 10, 2, 4), [rates(1, 2, 0, 4)])]
    assert splitting.recovering_thresholds(at_chance) == []
    assert splitting.threshold_sentence(at_chance).startswith("No threshold from 0.6 to 0.6")
    # no edge links two features at any threshold: precision undefined, said in words, not "nan"
    empty = [point(t, rates(0, 0, 0, 3), [rates(0, 0, 0, 3)]) for t in (0.4, 0.8)]
    text = splitting.threshold_sentence(empty)
    assert "No threshold" in text and "nan" not in text.lower() and "–" in text


def test_recovery_truth_and_count_sentences_edge_cases():
    rep = tiny_report({64: trees.HierarchyRecovery(0, 0, 0, 0, 3), 128: trees.HierarchyRecovery(0, 0, 0, 0, 5)})
    assert "no hierarchy" in splitting.recovery_sentence(rep)
    none = tiny_report({64: trees.HierarchyRecovery(4, 8, 1, 0, 3), 128: trees.HierarchyRecovery(4, 8, 2, 0, 5)})
    assert "No child is learned at any size" in splitting.recovery_sentence(none)
    some = tiny_report({64: trees.HierarchyRecovery(4, 8, 1, 0, 3), 128: trees.HierarchyRecovery(4, 8, 3, 6, 9)})
    s = splitting.recovery_sentence(some)
    assert "1/0 at 64, 3/6 at 128" in s and "6 of 8 (75.0%)" in s
    assert "no true hierarchy" in splitting.recovery_sentence(tiny_report(None))
    fs = trees.FirstSplit(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))
    rep = tiny_report(None)
    rep.first_split, rep.validation = fs, []
    assert "no true parent" in splitting.truth_sentence(rep)

    row = lambda size, n, high: {"size": size, "n_active": n, "n_latents": size, "high_post": high,  # noqa: E731
                                 "frac_high_post": high / n if n else NAN, "n_reference_active": 100}
    assert "holds over active latents" in splitting.active_count_sentence([row(64, 60, 40), row(128, 120, 60)])
    assert "share does not fall" in splitting.active_count_sentence([row(64, 60, 20), row(128, 120, 60)])
    assert "does not rise" in splitting.active_count_sentence([row(64, 60, 40), row(128, 120, 30)])
    assert "Fewer than two" in splitting.active_count_sentence([row(64, 0, 0), row(128, 120, 30)])


def test_tables_and_estimates_never_print_nan():
    assert Estimate(NAN, NAN, NAN).text() == "–" and est(0.25).text(".1%") == "25.0%"
    assert Estimate(0.5, NAN, NAN).text() == "0.50"
    rows = [rung(64, NAN, NAN, None, n_edges=0)]
    depth = splitting.DepthStatistics(est(NAN), est(NAN), NAN, est(NAN), 1)
    for headers, body in (splitting.statistics_table(rows, depth), splitting.statistics_table([]),
                          splitting.curve_table(None), splitting.validation_table(None),
                          splitting.recovery_table(None),
                          splitting.curve_table([point(0.6, rates(0, 0, 0, 0), [])])):
        text = " ".join(map(str, headers)) + " ".join(str(c) for r in body for c in r)
        assert "nan" not in text.lower(), text
    assert "no trees" in splitting.examples_sentence([])
    assert splitting.seed_sizes_text(None).startswith("none")
    assert "no size" in splitting.seed_sizes_text(splitting.SeedBaseline(1, [], {}, None))
    assert splitting.seed_sizes_text(splitting.SeedBaseline(1, [64, 256], {}, None)) == "64, 256"
    empty = splitting.Example("true split", "rule", None)
    assert "exists here" in splitting.examples_sentence([empty])


def tiny_report(recovery) -> splitting.TreeReport:
    sizes = [64, 128]
    level = trees.tree_level(np.zeros((64, 128)), 0.6)
    return splitting.TreeReport(sizes, 100, "directed", 0.6, 5, [], None, None, [], [level], None,
                                {s: np.ones(s, bool) for s in sizes}, recovery=recovery)


def test_excluded_sentence_counts_inactive_latents():
    rep = tiny_report(None)
    assert "none is excluded" in splitting.excluded_sentence(rep, 4096)
    rep.active[64][:3] = False
    text = splitting.excluded_sentence(rep, 4096)
    assert "3 latents are excluded" in text and "3 of 64, 0 of 128" in text


# ----------------------------------------------------------------------------- the chain on a family


def test_trees_baselines_curve_and_figures_on_a_family(family):
    active = splitting.active_latents(family, 2048)
    active[16][0] = False  # a mask is a parameter: one latent left out by hand
    rep = splitting.feature_trees(family, n_tokens=2048, min_cofire=2, active=active)
    assert rep.rungs == [(16, 32), (32, 64)] and rep.inactive[16] >= 1
    assert not rep.levels[0].alive_small[0] and 0 not in rep.levels[0].src
    assert rep.recovery is not None and set(rep.recovery) == {16, 32, 64}
    perm = splitting.permutation_baseline(rep, 2, seed=0)
    assert len(perm.pairs) == 2 and all(len(p) == 2 for p in perm.pairs)
    other = pipeline.ensure_family(pipeline.family_params(
        pipeline.merge_overrides({**family.params, "sizes": [16, 32]}, {"seed": 1})), progress=False)
    seed = splitting.seed_baseline(rep, family, other, 1, splitting.activity_threshold(family, 2048))
    assert seed.sizes == [16, 32] and seed.identities is not None
    strict = splitting.seed_baseline(rep, family, other, 1, density_threshold=1.01)  # nothing is that dense
    assert all(strict.excluded[s] == s for s in strict.sizes)
    assert all(p.small.size == 0 for p in strict.pairs.values())
    assert splitting.seed_family_sizes(family, [16, 32], 64, companion=False) == [16, 32, 64]
    assert splitting.seed_family_sizes(family, [16, 32, 64], 64, companion=True) == [16]
    rows = splitting.rung_statistics(rep, perm, seed)
    assert [r.small for r in rows] == [16, 32] and all(r.seed is not None for r in rows)
    depth = splitting.depth_statistics(rep, perm)
    curve = splitting.threshold_curve(rep, perm, seed, splitting.THRESHOLDS)
    assert [p.threshold for p in curve] == list(splitting.THRESHOLDS)
    edges = [p.edges for p in curve]
    assert edges == sorted(edges, reverse=True)  # a higher threshold never adds an edge
    examples = splitting.example_subtrees(rep, perm)
    assert [e.label for e in examples] == ["true split", "baseline-level link"]
    for ex in examples:
        if ex.rung is not None:
            assert (ex.chosen, ex.chosen_score) in {(j, s) for j, s, _ in ex.children}
            if ex.label == "baseline-level link":
                assert ex.chosen_score <= ex.chance
            else:
                assert dict((j, k) for j, _, k in ex.children)[ex.chosen] == "split"
    texts = [splitting.baseline_sentence(rows, depth), splitting.threshold_sentence(curve),
             splitting.recovery_sentence(rep), splitting.truth_sentence(rep), splitting.examples_sentence(examples),
             splitting.excluded_sentence(rep, 2048), splitting.tree_sentence(rep), splitting.twins_sentence(rep)]
    for text in texts:
        assert text and "nan" not in text.lower(), text
    assert splitting.largest_trees(rep, 2)[0] in range(16)
    for fig in (split_plots.precision_recall(curve), split_plots.precision_recall(None),
                split_plots.edges_against_baselines([("synthetic", rows)]), split_plots.edges_against_baselines([]),
                split_plots.subtrees(rep, examples), split_plots.subtrees(rep, [])):
        assert fig.axes
    counts = splitting.active_high_low(family, 64, active)
    assert [r["size"] for r in counts] == [16, 32] and counts[0]["n_active"] == int(active[16].sum())
