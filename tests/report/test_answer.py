"""The answer by class: counts per setting, and the sentences built from them, at their edges."""

import dataclasses

import numpy as np
import pytest
import torch

from sae_core import stats
from sae_core.report import analysis, answer, latents, low_mode_chapter


def make(n_low, never, ultralow, active, unmoved, n=1024, setting="language model, this report's initialisation"):
    """A LowByClass with the given counts (the arrays are not read by the sentences)."""
    c = latents.LatentClasses(n, 1000, 1e-3, np.zeros(n, int), None)
    return answer.LowByClass(setting, n, 8192, 0.401, n, n_low, 327680, 2e-4, never, ultralow, active, unmoved,
                             None if unmoved is None else 0, 0.2, 1e-6, 0.03, np.zeros(n), c)


def test_verdict_on_and_around_its_boundaries():
    assert answer.verdict(make(9, 9, 0, 0, 9)) == "no low mode"  # below MIN_LOW
    assert answer.verdict(make(10, 10, 0, 0, 10)) == answer.UNTRAINED
    assert answer.verdict(make(100, 60, 30, 10, 90)) == answer.UNTRAINED  # exactly 90% unmoved
    assert answer.verdict(make(100, 10, 30, 60, 95)) == answer.UNTRAINED  # active, but the rows never moved
    assert answer.verdict(make(100, 60, 29, 11, 89)) == answer.PARTLY  # 89% inactive, 89% unmoved
    assert answer.verdict(make(100, 60, 30, 10, 89)) == "inactive latents, some moved"
    assert answer.verdict(make(100, 100, 0, 0, None)) == "latents that (almost) never fire"  # no training record


def test_answer_sentence_states_each_count_and_never_nan():
    text = answer.answer_sentence(make(235, 114, 100, 21, 230))
    for piece in ("235 of the 1,024 features", "114 (48.5%) never fire on 327,680", "100 (42.6%) fire at ultralow",
                  "21 (8.9%) are active", "230 (97.9%) still have cosine ≥ 0.9", "of the high-MCS features, 20.0%"):
        assert piece in text
    assert "nan" not in text.lower() and text.startswith("Language model")
    assert "decoder rows stayed close to their random start" in text  # 98% unmoved
    assert "21 of them fire above the ultralow threshold all the same" in text
    mixed = answer.answer_sentence(make(100, 20, 20, 60, 40))
    assert "stayed close" not in mixed
    assert "not only latents with untrained decoders: 60 are active. 0 of the 60" in mixed
    strict = answer.answer_sentence(dataclasses.replace(make(235, 114, 100, 21, 230), unmoved_strict=200))
    assert "230 (97.9%) still have cosine ≥ 0.9 with their initial decoder row, 200 (85.1%) even ≥ 0.99" in strict
    none = answer.answer_sentence(make(3, 3, 0, 0, 3))
    assert none.startswith("Language model, this report's initialisation: no low mode. Only 3 of the 1,024")
    all_dead = answer.answer_sentence(make(1024, 1024, 0, 0, 1024))
    assert "1024 (100.0%) never fire" in all_dead and "stayed close to their random start" in all_dead
    one = answer.answer_sentence(make(1, 1, 0, 0, 1, n=1))
    assert "no low mode" in one and "1 of the 1 features" in one


def test_overall_answer_counts_settings_and_names_exceptions():
    rows = [make(200, 150, 40, 10, 195, setting="a"), make(300, 290, 10, 0, 300, setting="b"),
            make(100, 20, 20, 60, 40, setting="c"), make(2, 2, 0, 0, 2, setting="d")]
    text = answer.overall_answer(rows)
    assert text.startswith("In 2 of the 3 dictionaries with a low mode (each setting at each size measured, with at "
                           "least 10 features below the cutoff), at least 90% of the low features keep their initial "
                           "decoder row. In the others, too many low features moved: c at 1024 (partly trained "
                           "features, 60 active low).")
    assert answer.overall_answer([make(2, 2, 0, 0, 2)]).startswith("None of the 1 settings")
    many = [make(100, 10, 10, 80, 10, setting=f"s{i}") for i in range(6)]
    assert answer.overall_answer(many).endswith("; and 2 more.")
    assert answer.overall_answer([]) == "No setting was measured."


def test_unfound_sentence_states_the_nulls():
    recur = stats.count_vs_null(11, 76, 0.01)
    u = answer.Unfound(4096, 8192, 76, recur, (2, 10), (3, 10), 1.0, 0.99)
    text = answer.unfound_sentence(u, 1)
    assert "11 have a match above the cutoff in the 8192-feature dictionary of seed 1, against 0.76 expected" in text
    assert "14.5× chance" in text and "for 2 of the 10 scored (20%), against 3 of 10 (30%)" in text
    assert "p = 1.000" in text and text.endswith("With 10 scored, the test cannot tell the two rates apart unless "
                                                  "they differ greatly.")
    powered = answer.unfound_sentence(answer.Unfound(4096, 8192, 76, recur, (8, 40), (20, 40), 0.01, 0.99), 1)
    assert powered.endswith("(Fisher's exact test p = 0.010).")
    none = answer.unfound_sentence(answer.Unfound(4096, 8192, 0, None, (0, 0), (0, 0), None, 0.99), 1)
    assert "no active low feature" in none
    unscored = answer.unfound_sentence(answer.Unfound(4096, 8192, 3, None, (0, 0), (0, 0), None, 0.99), 1)
    assert unscored.endswith("None fires often enough to score its reconstruction.")
    assert "read from disk cannot do" in answer.unfound_sentence(None, 1)


def test_low_by_class_counts_match_the_classes(family):
    cut = stats.null_cutoff(8, 64)
    r = answer.low_by_class(family, 32, 64, cut, 2048, 1e-2, "synthetic")
    c = latents.classify(family, 32, 2048, 1e-2)
    low = r.values < cut
    assert r.n_low == low.sum() and r.never + r.ultralow + r.active == r.n_low
    assert r.never == (low & c.never_fires).sum() and r.active == (low & c.active).sum()
    assert r.unmoved == (low & c.unmoved).sum()
    points = answer.class_points([("base", family, 1e-2)], 0.99, 2048)
    assert [(p.size, p.against) for p in points] == [(16, 64), (32, 64)]
    assert points[1].low_share == pytest.approx(r.low_share)
    header, rows = answer.points_table(points)
    assert len(header) == len(rows[0]) == 6 and rows[1][:2] == ["base", 32]
    assert rows[1][4] == f"{r.low_share:.1%}"
    c32 = latents.classify(family, 32, 2048, 1e-2)
    assert points[1].unmoved_share == pytest.approx(c32.unmoved.mean()) and points[1].x == points[1].unmoved_share
    assert answer.x_label(points).startswith("unmoved from initialisation")
    no_record = dataclasses.replace(points[1], unmoved_share=None)
    assert no_record.x == no_record.inactive_share and answer.x_label([no_record]).startswith("never fires")
    assert answer.fit_class_points(points) is None  # one family: no interval over families
    assert "too few" in answer.fit_sentence(points, None)


def test_near_duplicate_share_finds_copied_rows():
    import torch

    rows = torch.randn(50, 16, generator=torch.Generator().manual_seed(0))
    assert low_mode_chapter.near_duplicate_share(rows) == 0.0
    rows[1] = rows[0] * 2.0
    assert low_mode_chapter.near_duplicate_share(rows) == pytest.approx(2 / 50)


def test_chance_cutoffs_state_both_nulls(family):
    chapter = low_mode_chapter.LowModeChapter([family], 16, 32, 64, [16, 32], 0.99, 2048)
    text = chapter.chance_sentence(n_samples=2048)
    (line,) = chapter.chance_lines(n_samples=2048)
    assert line.d_cutoff == pytest.approx(stats.null_cutoff(8, 64))
    assert f"in all 8 dimensions they reach {stats.null_cutoff(8, 64):.3f}" in text and "nan" not in text
    assert f"the activations span {line.span_dim} of 8 dimensions" in text
    v = analysis.mcs_values(family, 16, 64)
    assert line.above[0] == pytest.approx(float((v >= line.d_cutoff).mean()))
    assert f"{line.above[1]:.1%} above the span's" in text
    header, rows = chapter.chance_table(n_samples=2048)
    assert len(rows) == 1 and len(rows[0]) == len(header) and rows[0][1].startswith(f"{line.d_cutoff:.3f}")
    assert chapter.chance_lines(n_samples=2048) is chapter.chance_lines(n_samples=2048)  # one set of draws
    band = (v >= line.d_cutoff) & (v < line.span_cutoff)
    assert line.between == band.sum()
    c16 = latents.classify(family, 16, 2048, chapter.thresholds[family.key].value)
    assert line.between_trained == (band & c16.active & ~c16.unmoved).sum()
    noisy = dataclasses.replace(line, between=7, between_trained=3)
    assert low_mode_chapter.chance_sentence(noisy).endswith("; 3 of them are active with moved decoder rows.")
    untrained = low_mode_chapter.ChanceLines("x", 8, 64, 16, 0.99, 0.5, 3, 0.4, 0.6, 0.5, 0.7, None)
    assert low_mode_chapter.chance_sentence(untrained).endswith("they reach 0.500.")


def _direction_test(enc_top: float, dec_top: float, n: int = 40) -> "latents.EncoderDirectionTest":
    share = latents.DirectionShare
    return latents.EncoderDirectionTest(
        4096, share(n, enc_top / 2, enc_top) if n >= 2 else None, share(n, dec_top / 2, dec_top) if n >= 2 else None,
        share(n, 0.05, 0.06), share(n, -1e-5, 0.011), (0.002, 0.02))


def test_encoder_sentence_tells_shared_encoders_from_random_ones():
    # encoders above the random 99% quantiles, decoders at chance: the 2024 update's picture
    text = answer.encoder_sentence("language model", _direction_test(0.275, 0.015))
    assert text.startswith("Language model, 4096 features: the 40 ultralow latents' encoder directions")
    assert "27.5% of their squared singular values" in text and "random directions 0.000 and 1.1%" in text
    assert text.endswith("while their decoder rows do not, as the 2024 update reports.")
    # decoders above chance too
    assert "Their decoder rows share one less strongly, but above chance." in answer.encoder_sentence(
        "synthetic", _direction_test(0.275, 0.04))
    # encoders exactly at the random quantile are not "shared" (the test asks for more than it)
    assert "do not share one direction beyond chance" in answer.encoder_sentence("x", _direction_test(0.02, 0.01))
    # above random but below the active latents' own alignment (the default LM with the post's initialisation)
    assert "nothing singles them out" in answer.encoder_sentence("x", _direction_test(0.05, 0.01))
    one = answer.encoder_sentence("language model", _direction_test(0.3, 0.3, n=1))
    assert "fewer than two ultralow latents" in one and "nan" not in one


def test_resampling_settings_state_how_repetitive_the_activations_are(family):
    import torch

    share = low_mode_chapter.data_near_duplicate_share(family, n_rows=300)
    x = family.sample(family.heldout_n(65536))
    rows = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:300]]
    brute = np.mean([max(float(torch.nn.functional.cosine_similarity(rows[i], rows[j], dim=0))
                         for j in range(300) if j != i) > 0.99 for i in range(300)])
    assert share == pytest.approx(brute)
    chapter = low_mode_chapter.LowModeChapter([family], 16, 32, 64, [16, 32], 0.99, 2048)
    settings = chapter.settings([{"resample_every": 20}], progress=False)
    resampled = [s for s in settings if s.overrides.get("resample_every")]
    assert len(resampled) == 1 and all(s.data_near_duplicates is None for s in settings if s is not resampled[0])
    text = chapter.ablation_sentence(settings)
    assert f"{resampled[0].data_near_duplicates:.1%} of 2,000 held-out activations drawn at random" in text
    assert "Dictionaries read from disk" in chapter.ablation_sentence([])


def test_the_true_match_sentence_compares_low_trained_features_with_high_ones():
    from scipy.stats import fisher_exact

    none = answer.TrueMatch(0, 56, 239, 968, float(fisher_exact([[0, 56], [239, 729]]).pvalue))
    text = answer.true_match_sentence(none)
    assert "Of these 56 active, moved low features, 0 (0.0%) lie within cosine 0.9 of a true feature" in text
    assert "against 239 of the 968 high-MCS features (24.7%; Fisher's exact test p < 1e-6)" in text
    assert text.endswith("less often true features than the features both dictionaries share.")
    more = answer.TrueMatch(30, 40, 10, 100, float(fisher_exact([[30, 10], [10, 90]]).pvalue))
    assert answer.true_match_sentence(more).endswith("real features the larger dictionary missed.")
    alike = answer.TrueMatch(1, 4, 25, 100, 1.0)
    assert answer.true_match_sentence(alike).endswith("about as often as the features both dictionaries share.")
    assert answer.true_match_sentence(answer.TrueMatch(2, 5, 0, 0, None)).endswith("of a true feature.")
    assert answer.true_match_sentence(None) == ""
    assert answer.true_match_sentence(answer.TrueMatch(0, 0, 3, 9, None)) == ""


def test_low_by_class_counts_true_features_on_a_ground_truth_source(family):
    from sae_core.similarity import max_cosine_similarity

    cut = stats.null_cutoff(8, 64)
    r = answer.low_by_class(family, 32, 64, cut, 2048, 1e-2, "synthetic")
    c = latents.classify(family, 32, 2048, 1e-2)
    low = r.values < cut
    near = max_cosine_similarity(family.features(32), family.true_features).values.numpy() >= 0.9
    trained = low & c.active & ~c.unmoved
    assert (r.truth.low, r.truth.low_true) == (trained.sum(), (near & trained).sum())
    assert (r.truth.high, r.truth.high_true) == ((~low).sum(), (near & ~low).sum())


def test_the_fit_sentence_states_the_fit_over_families_and_its_axis():
    pts = [answer.ClassPoint(f"s{k}", f"k{k}", "synthetic", size, 8192, 0.5, 0.1 * k + size / 40960, 0.01 * k,
                             0.1 * k + size / 40960 + 0.01 * ((k + size) % 3))
           for k in range(1, 5) for size in (1024, 4096)]
    fit = answer.fit_class_points(pts, seed=0)
    text = answer.fit_sentence(pts, fit)
    assert fit.n_groups == 4 and "× unmoved share" in text and "bootstrap over the 4 families" in text
    assert 0.5 < fit.slope < 1.5
    assert text.endswith("(s4, size 1024).") or text.endswith("(s4, size 4096).")
    assert "nan" not in text


def test_the_initialisation_is_regenerated_exactly_and_movement_is_reported(family):
    from sae_core.report import pipeline
    from sae_core.train import initial_sae

    # the decoder rows regenerated from the seed give the cosine the training record stored
    init = initial_sae(pipeline.train_config(family.params, progress=False), family.d_in, 32)
    final = family.saes[32].features
    cos = torch.nn.functional.cosine_similarity(init.features, final, dim=1)
    torch.testing.assert_close(cos, family.latent_stats[32]["init_cosine"], atol=1e-5, rtol=0)
    enc = latents.encoder_init_cosine(family, 32)
    direct = torch.nn.functional.cosine_similarity(init.W_enc.detach(), family.saes[32].W_enc.detach(), dim=0)
    np.testing.assert_allclose(enc, direct.numpy(), atol=1e-6)
    r = answer.low_by_class(family, 32, 64, stats.null_cutoff(8, 64), 2048, 1e-2, "synthetic")
    low = r.values < stats.null_cutoff(8, 64)
    assert r.movement.decoder_low == pytest.approx(float(np.median(cos.numpy()[low])))
    assert r.movement.encoder_low == pytest.approx(float(np.median(enc[low])))
    text = answer.movement_sentence(r.movement)
    assert f"median cosine of {r.movement.decoder_low:.2f}" in text and "of the 60 training steps" in text
    assert answer.movement_sentence(None) == ""
    bare = answer.Movement(0.98, None, None, None, None, 0)
    expected = " The low features' decoder rows kept a median cosine of 0.98 with their initial rows."
    assert answer.movement_sentence(bare) == expected


def test_the_short_answer_for_the_abstract():
    r = dataclasses.replace(make(238, 115, 90, 33, 238), movement=answer.Movement(0.98, 0.32, 0.88, 0.43, 106, 1200))
    text = answer.short_answer(r)
    assert text == ("Language model, this report's initialisation: 238 of the 1,024 features of the 1024-feature "
                    "dictionary (23.2%) lie below the null cutoff 0.401 against 8192. 100.0% of them keep cosine ≥ 0.9 "
                    "with their initial decoder row (median 0.98; high-MCS features 0.32). 86.1% never fire or fire "
                    "at ultralow density on 327,680 held-out activations.")
    none = answer.short_answer(make(3, 3, 0, 0, 3))
    assert "no low mode (3 of the 1,024 features" in none and "held-out activations" in none
    no_record = answer.short_answer(make(100, 50, 0, 50, None))
    assert "keep cosine" not in no_record and "50.0% never fire" in no_record


def test_the_ablation_intro_names_what_was_trained_and_what_the_sweep_adds():
    chapter = low_mode_chapter.LowModeChapter.__new__(low_mode_chapter.LowModeChapter)  # the intro reads no data
    only_post = chapter.ablation_intro([{"init": "post"}])
    assert "init=\"post\"" in only_post and "the sweep profile (make book PROFILE=sweep) trains them" in only_post
    assert "resampling of dead latents" in only_post.split("leaves out")[1] and "`" not in only_post
    every = chapter.ablation_intro([{"init": "post"}, {"resample_every": 400}, {"lr_warmup": 100, "lr_decay": 0.2},
                                    {"synthetic": {"noise_std": 0.05}}])
    assert "leaves out" not in every and every.count(";") >= 3
    odd = chapter.ablation_intro([{"l1_coeff": 0.003}])
    assert "l1_coeff=0.003" in odd
    assert chapter.ablation_intro([]) == "This build trains no ablation family (its ablations list is empty)."
