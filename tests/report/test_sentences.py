"""The sentences of chapters 1, 3, 4, 6, 8 and 9 (sae_core/report/sentences.py) on their edge cases:
no low mode, every latent dead, one feature, a verdict exactly on its boundary. None may print "nan"."""

import re
from types import SimpleNamespace

import numpy as np
import pytest

from sae_core import stats
from sae_core.report import sentences as s
from sae_core.report.analysis import BimodalityRow, GroundTruth, NullComparison


def no_nan(text: str) -> str:
    assert not re.search(r"\bnan\b", text, re.I), text
    assert "inf" not in text.split(), text
    return text


# ------------------------------------------------------------------ helpers
def test_sizes_text_and_modes():
    assert s.sizes_text([]) == "none"
    assert s.sizes_text([64]) == "64"
    assert s.sizes_text([64, 128]) == "64 and 128"
    assert s.sizes_text([64, 128, 256]) == "64, 128 and 256"
    assert s.mode_text(float("nan")) == "none" and s.mode_text(0.3) == "0.30"
    assert s.pct(float("nan")) == "–" and s.pct(None, "n/a") == "n/a" and s.pct(0.25) == "25.0%"


# ------------------------------------------------------------------ chapter 1
def test_source_description_for_each_source():
    syn = {"source": "synthetic", "synthetic": {"n_features": 192, "d_in": 32, "mean_active": 4.0}}
    assert s.source_description(syn) == ("synthetic activations with 192 true features in 32 dimensions, 4 active "
                                         "per sample on average")
    lm = {"source": "lm", "lm": {"site": "blocks.2.mlp.hook_post", "model": "gpt", "corpus": "wiki"}}
    assert s.source_description(lm).startswith("blocks.2.mlp.hook_post of gpt on wiki")
    assert "2048 true features" in s.source_description(lm, {"n_features": 2048, "d_in": 128})
    one = {"source": "dictionaries", "dictionaries": ["a"]}
    assert s.source_description(one) == "1 dictionary read from disk, without activations"


def test_training_sentence_without_a_record_and_without_silent_share():
    assert "trained elsewhere" in s.training_sentence([32, 64], 16, None, None, None)
    text = no_nan(s.training_sentence([64, 128], 32, 150, 128, 1e-3, float("nan"), 50))
    assert "19,200 activations" in text and "silent" not in text
    assert "12.5% of the largest" in s.training_sentence([64, 128], 32, 150, 128, 1e-3, 0.125, 50)
    assert "in the last 150 training steps" in s.training_sentence([64], 32, 150, 128, 1e-3, 0.0, 400)  # not 400


def test_evaluation_sentences_quote_the_tables_l0_and_handle_no_activations():
    rows = [{"size": 64, "l0": 19.04, "fve": 0.5, "n_fve": 4096, "never_fires": 0.0},
            {"size": 512, "l0": 52.61, "fve": 0.9, "n_fve": 4096, "never_fires": 1.0}]
    text = no_nan(s.evaluation_sentences(rows, 4096, 3 / 4096))
    table = s.evaluation_table(rows)[1]
    assert f"L0 {table[0][1]}" in text and f"L0 {table[1][1]}" in text  # one number in the prose and the table
    assert "Without activations" in s.evaluation_sentences([], None)
    one = s.evaluation_sentences(rows[:1], 4096)
    assert "The one dictionary" in one and "largest" not in one


def test_evaluation_table_says_why_the_loss_recovered_is_missing():
    rows = [{"size": 64, "l0": 1.0, "fve": 0.5, "n_fve": 10, "never_fires": 1.0}]  # every latent dead
    ce = {64: SimpleNamespace(sae=3.0, recovered=float("nan"))}
    headers, out = s.evaluation_table(rows, ce)
    assert headers[-1] == "CE recovered" and out[0][3] == "100.0%"
    assert "costs nothing" in out[0][-1]


# ------------------------------------------------------------------ chapter 3
def row(**kw) -> BimodalityRow:
    base = {"size": 128, "against": 512, "n": 128, "low_mode": 0.3, "high_mode": 0.95, "frac_high_post": 0.6,
            "frac_high_null": 0.7, "mean": 0.6, "bimodal": True, "high_true": None, "low_true": None,
            "low_never": None}
    return BimodalityRow(**{**base, **kw})


def test_pair_sentence_bimodal_and_not():
    assert "was bimodal" in s.pair_sentence(row(), [128])
    text = no_nan(s.pair_sentence(row(bimodal=False, low_mode=float("nan"), frac_high_post=1.0), []))
    assert "not bimodal" in text and "0.0% of the features lay below 0.5" in text and "No smaller size" in text


def test_modes_text_without_a_low_mode_says_so():
    assert s.modes_text(row()) == "0.30 and 0.95"
    text = no_nan(s.modes_text(row(low_mode=float("nan"), frac_high_post=1.0)))
    assert text.startswith("no low mode")


def truth(**kw) -> GroundTruth:
    base = {"size": 128, "against": 512, "cutoff": 0.4, "true_cos_threshold": 0.9, "n_high": 100, "n_low": 28,
            "high_matching_true": 0.8, "low_matching_true": 0.1, "low_never": 0.5, "high_never": 0.0,
            "mcs_to_largest": np.zeros(1), "mcs_to_true": np.zeros(1)}
    return GroundTruth(**{**base, **kw})


def test_truth_verdict_edge_cases():
    assert "Chapter 5" in s.truth_verdict(None)
    assert "were more often" in s.truth_verdict(truth())
    equal = s.truth_verdict(truth(high_matching_true=0.5, low_matching_true=0.5))  # on the boundary: not more
    assert "not more" in equal
    no_low = no_nan(s.truth_verdict(truth(n_low=0, low_matching_true=None, low_never=None)))
    assert "lay above the null cutoff" in no_low and "could not be compared" in no_low
    all_dead = s.truth_verdict(truth(low_never=1.0, high_never=1.0))
    assert "100.0% of the 100 high-MCS features and 100.0% of the 28 low-MCS features never fired" in all_dead


def test_truth_where():
    fam = SimpleNamespace(params={"synthetic": {"n_features": 10, "d_in": 4}})
    assert s.truth_where(fam, fam) == ""
    assert "no known features" in s.truth_where(None, fam)
    assert "10 true features in 4 dimensions" in s.truth_where(fam, object())


# ------------------------------------------------------------------ chapter 4
def comparison(n_low: int, consistent: bool = True, n_random: int = 3) -> NullComparison:
    names = ["learned", *(f"random {i + 1}" for i in range(n_random)), "alt"]
    k = len(names)
    if n_low < 10:
        return NullComparison(128, 512, 0.4, names, np.full((k, k), np.nan), {}, np.zeros(n_low), None, [],
                              float("nan"), False, f"absent: only {n_low} of 128 features have MCS below 0.400")
    dist = np.arange(k * k, dtype=float).reshape(k, k) / 1000
    dist = dist + dist.T
    test = SimpleNamespace(w1=0.01, expected=0.008, p_value=0.5, p_text="p = 0.5")
    return NullComparison(128, 512, 0.4, names, dist, {}, np.zeros(n_low), test, [test] * n_random, 0.007,
                          consistent, "consistent with the random null")


def test_lead_sentence_cases():
    assert s.lead_sentence(128, 128, 512, 40, 40) == "The compared pair is the post's, 128 vs 512."
    assert "leads with 64 vs 512" in s.lead_sentence(128, 64, 512, 3, 40)
    assert "no low mode" in s.lead_sentence(128, 128, 512, 9, 9)
    assert "no low mode" not in s.lead_sentence(128, 128, 512, 10, 10)  # exactly the minimum: a low mode


def test_comparison_row_is_the_texts_numbers():
    cmp = comparison(40)
    r = s.comparison_row(cmp, 3)
    assert r["learned_vs_random"] == pytest.approx(np.mean(cmp.distances[0, 1:4]))
    text = s.distances_sentence(r)
    assert f"{r['learned_vs_random']:.4f}" in text and f"{r['random_vs_random']:.4f}" in text
    assert s.emd_table([r])[1][0][2] == f"{r['learned_vs_random']:.4f}"  # the table's cell is the text's number


def test_no_low_part_gives_no_distances_and_no_nan():
    cmp = comparison(3)
    r = s.comparison_row(cmp, 3)
    assert set(r) == {"size", "n_low"}
    assert no_nan(s.distances_sentence(r, cmp.verdict)).startswith("There is no low part")
    assert s.random_tests_sentence(cmp) == ""
    assert no_nan(s.chance_verdict(cmp)).startswith("Not testable: absent")
    assert "None of these sizes" in s.by_size_sentence([r])
    assert s.emd_table([r])[1][0][2:7] == ["–"] * 5


def test_one_random_set_has_no_random_pairs():
    r = s.comparison_row(comparison(40, n_random=1), 1)
    assert not np.isfinite(r["random_vs_random"])
    assert "from each other" not in no_nan(s.distances_sentence(r))


def test_chance_verdict_and_companion_sentence():
    assert s.chance_verdict(comparison(40)).startswith("Reproduced for 128 vs 512")
    assert s.chance_verdict(comparison(40, consistent=False)).startswith("Not reproduced")
    assert s.truth_nulls_sentence(None, 0) == ""
    assert "too few" in s.truth_nulls_sentence(comparison(40), 256)


# ------------------------------------------------------------------ chapter 6
def test_cross_verdict_on_its_boundaries():
    # strongly iff the printed lower end of Fisher's interval is at least 0.50: r chosen so that it is 0.5
    n = 103

    def r_with_lower_end(low: float) -> float:
        return float(np.tanh(np.arctanh(low) + 1.96 / np.sqrt(n - 3)))

    edge = s.cross_verdict(SimpleNamespace(pearson=r_with_lower_end(0.5), spearman=0.5, n=n), (64, 128, 256))
    assert edge.startswith("strongly") and "interval 0.50–" in edge  # the verdict agrees with the printed number
    below = s.cross_verdict(SimpleNamespace(pearson=r_with_lower_end(0.49), spearman=0.5, n=n), (64, 128, 256))
    assert below.startswith("moderately") and "interval 0.49–" in below
    assert s.cross_verdict(SimpleNamespace(pearson=0.0, spearman=0.0, n=n), (64, 128, 256)).startswith("weakly")
    near_zero = s.cross_verdict(SimpleNamespace(pearson=r_with_lower_end(-0.001), spearman=0.1, n=n), (1, 2, 4))
    assert "interval 0.00–" in near_zero and "-0.00" not in near_zero


def test_cross_verdict_constant_and_tiny_samples():
    const = no_nan(s.cross_verdict(SimpleNamespace(pearson=float("nan"), spearman=float("nan"), n=64), (64, 128, 256)))
    assert const.startswith("not measurably") and "constant" in const
    one = no_nan(s.cross_verdict(SimpleNamespace(pearson=1.0, spearman=1.0, n=1), (1, 2, 4)))
    assert "1 feature cannot" in one
    perfect = no_nan(s.cross_verdict(SimpleNamespace(pearson=1.0, spearman=float("nan"), n=50), (1, 2, 4)))
    assert perfect.startswith("strongly") and "Spearman undefined" in perfect
    table = s.cross_table([(1, 2, 4)], [SimpleNamespace(pearson=float("nan"), spearman=float("nan"), n=3,
                                                        frac_low_low=0.0, frac_high_high=1.0)])
    assert table[1][0][4:6] == ["–", "–"] and "(< 0.5)" in table[0][6]
    assert s.truth_cross_sentence([], []) == ""


# ------------------------------------------------------------------ chapter 8
def test_bimodal_verdict_cases():
    shape = stats.Bimodality(0.3, 0.9, 2.0, 3.0, 0.5, 0.4, True)
    assert no_nan(s.bimodal_verdict(shape, 128, 512, [128])).startswith("Reproduced for 128 vs 512")
    assert "0.25 of the smaller peak's density" in s.bimodal_verdict(shape, 128, 512, [128])
    empty_valley = stats.Bimodality(0.3, 0.9, 2.0, 3.0, 0.0, 0.4, True)
    assert "No histogram bin between the modes held a feature" in s.bimodal_verdict(empty_valley, 128, 512, [128])
    none_low = stats.Bimodality(float("nan"), 0.9, float("nan"), float("nan"), float("nan"), 0.0, False)
    text = no_nan(s.bimodal_verdict(none_low, 128, 512, []))
    assert "no feature lay below 0.5" in text and "No smaller size" in text


def split_rows(shares_post, highs_null, shares_null, sizes=(1024, 2048, 4096)):
    return [{"size": z, "high_post": 0, "low_post": 0, "frac_high_post": p, "high_null": h, "low_null": 0,
             "frac_high_null": f, "null_cutoff": 0.301} for z, p, h, f in zip(sizes, shares_post, highs_null,
                                                                              shares_null, strict=True)]


def test_splitting_verdict_needs_the_posts_number():
    rows = split_rows([0.5, 0.4, 0.368], [600, 800, 1000], [0.6, 0.4, 0.25])
    text = s.splitting_verdict(rows)
    assert text.startswith("Partly reproduced") and "36.8% of the 4096-feature" in text and "not below" in text
    assert "null cutoff 0.301" in text and "post's cutoff 0.5" in text  # each number names its cutoff
    exact = split_rows([0.5, 0.4, 0.25], [600, 800, 1000], [0.6, 0.4, 0.25])  # exactly 25%: not below
    assert s.splitting_verdict(exact).startswith("Partly")
    shown_as_25 = split_rows([0.5, 0.4, 0.2499], [600, 800, 1000], [0.6, 0.4, 0.25])  # printed 25.0%: not below
    assert s.splitting_verdict(shown_as_25).startswith("Partly") and "25.0%" in s.splitting_verdict(shown_as_25)
    below = split_rows([0.5, 0.4, 0.2449], [600, 800, 1000], [0.6, 0.4, 0.25])
    assert s.splitting_verdict(below).startswith("Reproduced.")


def test_splitting_verdict_flat_counts_and_missing_sizes():
    flat = split_rows([0.5, 0.4, 0.2], [600, 600, 600], [0.6, 0.4, 0.25])  # equal counts: does not rise
    assert s.splitting_verdict(flat).startswith("Not reproduced") and "did not rise" in s.splitting_verdict(flat)
    small = split_rows([0.5, 0.4], [6, 8], [0.6, 0.4], sizes=(64, 128))
    assert "could not be checked" in no_nan(s.splitting_verdict(small))
    assert s.splitting_verdict(small[:1]).startswith("Not testable")
    assert s.splitting_verdict([]).startswith("Not testable")
    assert s.splitting_share_text(small, "null") == "60.0% → 40.0% (null cutoff 0.301)"
    assert s.splitting_share_text(small, "post") == "50.0% → 40.0% (0.5)"
    assert s.splitting_values(small)["high_null_last"] == 8


def test_truth_and_differs_sentences():
    assert "no true features" in s.truth_sentence(None)
    assert "one side" in no_nan(s.truth_sentence(truth(high_matching_true=None)))
    assert "80.0% of the 100 high-MCS" in s.truth_sentence(truth())
    syn = {"source": "synthetic", "n_steps": 10, "batch_size": 4}
    assert "40 activations each" in s.differs_sentence(syn, None)
    assert "activations each" not in s.differs_sentence({"source": "dictionaries"}, None)
    gpt = {"corpus_tokens": 1000, "config": {"vocab_size": 4096}, "train_config": {"steps": 600}, "val_loss": 5.5}
    lm = {"source": "lm", "n_steps": 10, "batch_size": 4, "lm": {"corpus": "wiki"}}
    assert "4,096-token tokenizer" in s.differs_sentence(lm, gpt)


# ------------------------------------------------------------------ chapter 9
def test_pca_sentence_keeps_the_reference_out_of_high_and_low():
    pca = SimpleNamespace(size=np.array([4] * 4 + [8] * 8), high=np.array([True, False, False, True] + [True] * 8),
                          explained=(0.2, 0.1))
    text = s.pca_sentence(pca, [4, 8], 8, 0.5)
    assert "2 of the 4 smaller rows were low" in text and "The 8 rows of the 8-feature dictionary" in text


def test_hub_sentence_each_way():
    assert "no token" in s.hub_sentence(None, 512)
    hubs = SimpleNamespace(n=10, distinct_random=3, distinct_learned=3, vocab=100)
    assert "exactly as many" in s.hub_sentence(hubs, 512)
    hubs.distinct_learned = 9
    assert "more tokens" in s.hub_sentence(hubs, 512)
    hubs.distinct_learned = 1
    assert "fewer tokens" in s.hub_sentence(hubs, 512)


def test_tables_never_print_nan():
    r = row(low_mode=float("nan"), high_mode=float("nan"), frac_high_post=float("nan"))
    cells = s.bimodality_table([r])[1][0]
    assert "nan" not in " ".join(map(str, cells))
    out = s.layers_table({"layer 0": np.array([0.1, 0.2])})[1]
    assert out[0][3] != "nan" and out[0][4] == "none"
