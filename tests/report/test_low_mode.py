"""The low-mode anatomy, ablations and feature trees on small cached families."""

import pytest
import torch

from sae_core.report import analysis, low_mode, low_mode_chapter, pipeline, splitting


def test_baseline_ablation_is_a_subset_of_the_family_and_overrides_make_a_new_one(family, monkeypatch):
    same = low_mode.ablation_family(family, {}, [16, 64], progress=False)
    assert same.sizes == [16, 64] and same.saes[16] is family.saes[16]
    noisy = low_mode.ablation_family(family, {"synthetic": {"noise_std": 0.05}}, [16, 64], progress=False)
    assert noisy.key != family.key and noisy.params["synthetic"]["noise_std"] == 0.05
    assert noisy.params["synthetic"]["n_features"] == 24  # the other source settings are kept
    assert low_mode.ablation_name({"synthetic": {"noise_std": 0.05}}) == "noise_std=0.05"


def test_seed_ceiling_and_rows_are_shares(family):
    other = low_mode.ablation_family(family, {"seed": 1}, family.sizes, progress=False)
    ceiling = low_mode.seed_ceiling(family, other, 32, 64)
    assert set(ceiling.same_size) == {16, 32, 64}
    assert all(0 <= v <= 1 for v in ceiling.same_size.values())
    # a family against itself shares every feature
    self_ceiling = low_mode.seed_ceiling(family, family, 32, 64)
    assert all(v == 1.0 for v in self_ceiling.same_size.values())


def test_low_mode_size_leads_with_the_largest_low_part(family):
    cut = 0.999  # nearly everything is "low": the requested size has a low part
    assert analysis.low_mode_size(family, 16, 64, cut) == 16
    cut = -1.0  # nothing is low: fall back to the requested size
    assert analysis.low_mode_size(family, 16, 64, cut) == 16


def test_random_sets_never_reuse_an_sae_initialisation(family):
    from sae_core.sae import SAEConfig, SparseAutoencoder
    from sae_core.similarity import gaussian_dictionary
    from sae_core.train import sae_seed

    init = SparseAutoencoder(SAEConfig(d_in=8, d_sae=16, seed=sae_seed(0, 16))).features
    for r in range(4):
        a = gaussian_dictionary(16, 8, seed=analysis.RANDOM_SEED_BASE + 4 * r)
        assert not torch.allclose(a / a.norm(dim=1, keepdim=True), init)


def test_feature_trees_report_on_a_family(family):
    report = splitting.feature_trees(family, n_tokens=2048, min_cofire=2)
    assert [(r["small"], r["large"]) for r in report.summaries] == [(16, 32), (32, 64)]
    for r in report.summaries:
        shares = r["share_children_0"] + r["share_children_1"] + r["share_children_many"]
        assert shares != shares or abs(shares - 1) < 1e-9  # NaN only when nothing is alive
    assert report.validation is not None and len(report.validation) == 2
    lines = splitting.describe_subtree(report, 0)
    assert lines[0].startswith("16:0")


def test_normalised_family_scales_its_held_out_samples(family, tiny_params):
    scaled = low_mode.ablation_family(family, {"normalize_activations": True}, [16, 64], progress=False)
    assert scaled.key != family.key and scaled.activation_scale != 1.0
    x = scaled.sample(4096)
    assert abs(float(x.pow(2).sum(1).mean()) / 8 - 1) < 0.1  # mean squared norm d_in = 8
    assert family.activation_scale == 1.0
    # the option at its default leaves the parameters, and so the cache key, as before it existed
    assert "normalize_activations" not in pipeline.family_params({**tiny_params, "normalize_activations": False})


def test_settings_apply_only_to_their_source():
    assert low_mode.applies_to({"l1_coeff": 3e-3}, "lm") and low_mode.applies_to({"l1_coeff": 3e-3}, "synthetic")
    assert low_mode.applies_to({"synthetic": {"noise_std": 0.05}}, "synthetic")
    assert not low_mode.applies_to({"synthetic": {"noise_std": 0.05}}, "lm")


def test_sweep_row_against_brute_force(family):
    row = low_mode.sweep_row(family, "baseline", n_heldout=2048)
    assert row.l1_coeff == 3e-2 and not row.normalized and row.activation_scale == 1.0 and row.init == "transposed"
    cut = low_mode.split_cutoff(family, 64)
    for size in (16, 32):
        f_small, f_large = family.features(size), family.features(64)
        cos = (f_small / f_small.norm(dim=1, keepdim=True)) @ (f_large / f_large.norm(dim=1, keepdim=True)).T
        best = cos.max(1).values.numpy()
        assert row.high_post[size] == pytest.approx(float((best >= 0.5).mean()))
        assert row.low_share[size] == pytest.approx(float((best < cut).mean()))
    assert row.post_numbers is None  # the family has neither 256 nor 4096 features
    assert row.never_share[64] == pytest.approx(float((analysis.heldout_fires(family, 64, 2048) == 0).mean()))
    # raw mean squared norm of the source: the same number computed by hand
    x = torch.cat([family.source.batch(i, 32) for i in range(4)]).double()
    assert low_mode.raw_activation_norm(family, n_batches=4) == pytest.approx(float(x.pow(2).sum(1).mean()))


def _row(source, alpha, normalized, low, post, init="transposed"):
    return low_mode.SweepRow(source, "s", alpha, normalized, 1.0, init, 8192, {256: 0.95, 4096: 0.2}, {1024: low}, {},
                             post)


def test_alpha_sentence_names_the_coefficients_and_the_gap():
    rows = [_row("language model", 1e-3, False, 0.0, False), _row("language model", 3e-3, False, 0.5, True),
            _row("synthetic", 1e-3, False, 0.4, True), _row("synthetic", 3e-3, False, 0.9, False),
            _row("language model", 1e-3, True, 0.3, True), _row("language model", 3e-3, True, 0.6, False),
            _row("synthetic", 1e-3, True, 0.32, True), _row("synthetic", 3e-3, True, 0.62, False)]
    text = low_mode.alpha_sentence(rows, 1024)
    assert "on the language model without normalisation, at α = 0.003 (tried: 0.001, 0.003)" in text
    assert "on the synthetic without normalisation, at α = 0.001" in text
    # gaps: without (0.4 + 0.4) / 2 = 40%, with (0.02 + 0.02) / 2 = 2%
    assert "differs by 40.0% on average over 2 values of α without normalisation and by 2.0%" in text
    assert text.endswith("normalisation brings the sources together.")
    # another initialisation is named, and left out of the gap between sources
    with_post = low_mode.alpha_sentence([*rows, _row("synthetic", 1e-3, False, 0.99, True, init="post")], 1024)
    assert ("on the synthetic without normalisation and the post initialisation, at α = 0.001 (tried: 0.001)"
            in with_post)
    assert "differs by 40.0% on average over 2 values" in with_post
    none = [_row("synthetic", 1e-3, False, 0.4, None)]
    assert "are not checked" in low_mode.alpha_sentence(none, 1024)
    assert low_mode.alpha_sentence([], 1024) == ""


def test_the_chapter_sweep_rows_and_alpha_sentence(family):
    chapter = low_mode_chapter.LowModeChapter([family], 16, 32, 64, [16, 32], 0.99, 2048)
    assert chapter.sweep_rows([]) == []
    assert chapter.alpha_sentence([]) == ""  # sweep_intro says it once
    assert "does not sweep" in chapter.sweep_intro([], 0)
    rows = chapter.sweep_rows([("base", family, "baseline")])
    assert len(rows) == 1 and set(rows[0].low_share) == {16, 32}
    assert chapter.alpha_sentence(rows) == low_mode.alpha_sentence(rows, 16)
    assert chapter.lead([]) == chapter.n_heldout_text  # no setting measured: the sample is all there is to say
