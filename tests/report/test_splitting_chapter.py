"""Chapter 7's orchestration (report/splitting_chapter.py): the trees beside their baselines on a tiny family,
and every glued sentence when there is no tree (dictionaries without activations) or no true hierarchy."""

import re

from sae_core.report import analysis, sentences
from sae_core.report import splitting_chapter as chapter


def no_nan(values: dict) -> dict:
    for name, text in values.items():
        assert not re.search(r"\bnan\b", str(text)), (name, text)
    return values


def test_without_activations_every_sentence_says_why():
    settings = chapter.TreeSettings(large=64, n_heldout=100)
    none = chapter.trees_beside_baselines(None, settings)
    assert none.tree is None and not none.validated and none.rows == []
    text = no_nan(chapter.tree_text(none, settings))
    assert "without a model and site" in text["tree_sentence"] and text["tree_tokens"] == settings.n_tokens
    assert "none:" in text["seed_sizes"]
    assert "no activations" in chapter.subtrees_text(none)
    truth = no_nan(chapter.truth_text(none, none, settings, None))
    assert "no true hierarchy" in truth["recovery_sentence"] and truth["truth_baseline_sentence"] == ""
    assert chapter.threshold_curve(none, settings) is None
    assert chapter.examples(none, none) == (None, [])
    stats_table, validation = chapter.companion_tables(none, none)
    assert "this build's own" in str(stats_table[1]) and "no ground truth" in str(validation[1])
    rows, sentence = chapter.active_counts(None, 64, None)
    assert rows == [] and "no activations" in sentence
    assert text["tree_threshold"] == settings.threshold and text["second_seed"] == settings.second_seed


def test_where_the_truth_is_checked():
    fam = object()
    assert chapter.truth_where(fam, fam) == ""
    assert "no known hierarchy" in chapter.truth_where(None, fam)
    assert "ground-truth source beside it" in chapter.truth_where(object(), fam)


def test_active_table_names_both_cutoffs_and_never_prints_nan():
    rows = [{"size": 16, "n_active": 0, "n_latents": 16, "high_post": 0, "frac_high_post": float("nan"),
             "high_null": 0, "frac_high_null": float("nan")}]  # every latent dead
    headers, out = chapter.active_table(rows)
    assert "high share (0.5)" in headers and "high share (null cutoff)" in headers
    assert out[0][1] == "0 of 16" and "nan" not in " ".join(map(str, out[0]))


def test_trees_beside_baselines_on_a_tiny_family(family):
    large = family.sizes[-1]
    settings = chapter.TreeSettings(large=large, n_heldout=2048, n_tokens=1024, n_permutations=2,
                                    ablation_sizes=[16], second_seed=1, thresholds=(0.4, 0.6))
    own = chapter.trees_beside_baselines(family, settings)
    assert own.tree is not None and own.perm is not None and own.seed is not None
    assert len(own.rows) == len(family.sizes) - 1 and own.depth is not None
    text = no_nan(chapter.tree_text(own, settings))
    assert text["seed_sizes"] == "16" and text["tree_tokens"] == own.tree.n_tokens
    curve = chapter.threshold_curve(own, settings)
    assert own.validated and [p.threshold for p in curve] == [0.4, 0.6]
    shown, examples = chapter.examples(own, own)
    assert shown is own.tree and examples
    rows, sentence = chapter.active_counts(family, large, chapter.splitting.active_latents(family, 2048))
    assert len(rows) == len(family.sizes) - 1 and "nan" not in sentence
    truth = no_nan(chapter.truth_text(own, own, settings, curve))
    assert truth["truth_baseline_sentence"] == ""  # the family is its own ground truth: no second paragraph
    rows = analysis.splitting_table(family, large)
    verdict = sentences.splitting_verdict(rows)
    assert "could not be checked" in verdict  # no 4096-feature dictionary: the post's number is not claimed
