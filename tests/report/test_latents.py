"""The one classification of latents: held-out firing counts, the density threshold, the classes."""

import numpy as np
import pytest
import torch

from sae_core.report import latents, pipeline


def test_heldout_fires_counts_every_firing_and_smaller_samples_are_prefixes(family):
    x = family.sample(5000)
    assert torch.equal(family.sample(1000), x[:1000])  # one fixed order: prefixes
    for size in family.sizes:
        with torch.no_grad():
            brute = (family.saes[size].encode(x) > 0).sum(0).numpy()  # all codes at once
        assert np.array_equal(latents.heldout_fires(family, size, 5000, chunk=333), brute)
    # stored in the family's folder: a fresh Family object (another chapter) reads the same counts
    again = pipeline.ensure_family(family.params, progress=False)
    assert np.array_equal(latents.heldout_fires(again, 64, 5000), latents.heldout_fires(family, 64, 5000))


def test_density_valley_finds_the_gap_between_two_clusters_and_none_without_one():
    rng = np.random.default_rng(0)
    two = np.concatenate([rng.normal(-5.0, 0.3, 400), rng.normal(-1.5, 0.3, 600)])
    valley, modes = latents.density_valley(two, low=-6.0)
    assert -4.5 < valley < -2.0 and modes[0] < -4.0 and modes[1] > -2.5
    one = rng.normal(-2.0, 0.4, 1000)
    assert latents.density_valley(one, low=-6.0) is None
    assert latents.density_valley(np.array([-2.0, -3.0]), low=-6.0) is None  # too few to say


def test_classes_partition_the_dictionary_and_follow_their_definitions(family):
    n = 4096
    threshold = latents.density_threshold(family, n)
    assert threshold.n_samples == n and threshold.value > 0
    assert isinstance(threshold.describe(), str) and "nan" not in threshold.describe()
    for size in family.sizes:
        c = latents.classify(family, size, n)
        parts = c.never_fires.astype(int) + c.ultralow.astype(int) + c.active.astype(int)
        assert (parts == 1).all()  # every latent in exactly one firing class
        assert np.array_equal(c.never_fires, latents.heldout_fires(family, size, n) == 0)
        assert (c.density[c.ultralow] < c.threshold).all() and (c.density[c.active] >= c.threshold).all()
        assert np.array_equal(c.unmoved, family.latent_stats[size]["init_cosine"].numpy() >= latents.UNMOVED_COS)
        assert c.detection_limit == pytest.approx(3 / n)


def test_class_counts_add_up_to_the_low_part():
    c = latents.LatentClasses(6, 100, 0.05, np.array([0, 0, 1, 2, 10, 50]),
                              np.array([1.0, 0.95, 0.2, 0.99, 0.1, 0.3]))
    low = np.array([True, True, True, False, False, True])
    rows = {r.name: r for r in latents.class_counts(c, low)}
    assert (rows["never fires"].n_class, rows["never fires"].n_low) == (2, 2)
    assert (rows["ultralow"].n_class, rows["ultralow"].n_low) == (2, 1)
    assert (rows["active"].n_class, rows["active"].n_low) == (2, 1)
    assert sum(rows[n].n_low for n in latents.FIRING) == low.sum() == rows["active"].n_low_total
    assert rows["ultralow · moved"].n_low == 1 and rows["ultralow · unmoved"].n_low == 0
    assert rows["active"].share_of_low == pytest.approx(0.25) and rows["active"].low_share_of_class == 0.5
    empty = latents.class_counts(c, np.zeros(6, bool))
    assert all(r.share_of_low is None for r in empty)  # no low part: no share, not nan


def test_robustness_never_fires_can_only_shrink_as_n_grows(family):
    cut = np.ones(64, bool)
    r = latents.robustness(family, 64, cut, 8192, threshold=1e-3, ns=(1024, 4096))
    assert r.ns == [1024, 4096, 8192]
    assert all(a >= b for a, b in zip(r.never_fires, r.never_fires[1:], strict=False))
    assert all(a + b + c == 64 for a, b, c in zip(r.never_fires, r.ultralow, r.active, strict=True))


def test_direction_share_one_direction_and_random():
    same = np.tile(np.array([[1.0, 2.0, 0.5]]), (5, 1))
    d = latents.DirectionShare.of(same)
    assert d.mean_cosine == pytest.approx(1.0) and d.top_share == pytest.approx(1.0)
    rng = np.random.default_rng(1)
    r = latents.DirectionShare.of(rng.standard_normal((200, 128)))
    assert abs(r.mean_cosine) < 0.01 and r.top_share < 0.05
    assert latents.DirectionShare.of(np.ones((1, 4))) is None  # one vector: nothing to share


def test_direction_share_matches_gram_matrix_and_svd():
    rng = np.random.default_rng(3)
    v = rng.standard_normal((40, 7)) + np.array([2.0, 0, 0, 0, 0, 0, 1.0])  # a shared component
    u = v / np.linalg.norm(v, axis=1, keepdims=True)
    gram = u @ u.T
    sv = np.linalg.svd(u, compute_uv=False)
    d = latents.DirectionShare.of(v)
    assert d.mean_cosine == pytest.approx((gram.sum() - 40) / (40 * 39), rel=1e-10)
    assert d.top_share == pytest.approx(sv[0] ** 2 / (sv ** 2).sum(), rel=1e-10)


def test_encoder_direction_test_sees_a_planted_shared_encoder_direction(family):
    c = latents.classify(family, 64, 2048)
    sae = family.saes[64]
    planted = np.flatnonzero(c.active)[:6]
    counts = np.where(np.isin(np.arange(64), planted), 1, c.n_samples)
    fake = latents.LatentClasses(64, c.n_samples, 0.01, counts, c.init_cosine)  # the planted latents are "ultralow"
    with torch.no_grad():
        saved = sae.W_enc.clone()
        direction = torch.randn(sae.cfg.d_in, generator=torch.Generator().manual_seed(0))
        sae.W_enc[:, torch.from_numpy(planted)] = direction[:, None]
        try:
            res = latents.encoder_direction_test(family, fake, n_random=50)
        finally:
            sae.W_enc.copy_(saved)
    assert res.ultralow_encoder.mean_cosine == pytest.approx(1.0, abs=1e-6)
    assert res.ultralow_encoder.top_share > res.random_q99[1]
    with pytest.raises(ValueError):
        latents.detection_limit(0)


def test_the_threshold_ignores_densities_below_the_detection_limit(monkeypatch):
    """Latents seen firing once or twice pile up at 1/n and 2/n: a counting artefact, not a mode. With a
    spike there and one real cluster above, there is no valley (fallback); with two real clusters, the
    valley lies between them, not between the spike and the first."""
    from types import SimpleNamespace

    n = 100_000
    rng = np.random.default_rng(0)
    spike = np.ones(400, int)  # 400 latents fired once: density 1e-5 < 3/n = 3e-5
    high = (10 ** rng.normal(-1.5, 0.2, 300) * n).astype(int)  # a cluster at 3e-2
    mid = (10 ** rng.normal(-3.5, 0.15, 300) * n).astype(int)  # a cluster at 3e-4
    fake = SimpleNamespace(sizes=[1], memo={}, heldout_n=lambda m: min(m, n))
    monkeypatch.setattr(latents, "heldout_fires", lambda family, size, m: np.concatenate([spike, high]))
    assert not latents.density_threshold(fake, n).from_valley
    fake.memo.clear()
    monkeypatch.setattr(latents, "heldout_fires", lambda family, size, m: np.concatenate([spike, mid, high]))
    t = latents.density_threshold(fake, n)
    assert t.from_valley and 3e-4 < t.value < 3e-2 and t.modes[0] > np.log10(3 / n)


def test_reconstruction_table_is_the_direct_computation_and_stored_once(family):
    from sae_core.report import analysis

    rows = analysis.reconstruction_table(family, n_samples=4096)
    n = family.heldout_n(min(4096, analysis.FVE_SAMPLES))
    x = family.sample(n)
    for row in rows:
        with torch.no_grad():
            x_hat, f = family.saes[row["size"]](x, output_features=True)
        assert row["fve"] == pytest.approx(1 - float((x - x_hat).pow(2).sum()) / float((x - x.mean(0)).pow(2).sum()),
                                           rel=1e-5)
        assert row["l0"] == pytest.approx(float((f > 0).sum(1).float().mean()), rel=1e-6)
    stored = sorted((family.path / "heldout").glob("recon_*.json"))
    assert len(stored) == len(rows)
    # the firing pass stored them; without it (its counts already stored), a separate pass gives the same values
    for path in stored:
        path.unlink()
    again = analysis.reconstruction_table(family, n_samples=4096)
    for row, other in zip(rows, again, strict=True):
        assert other["l0"] == pytest.approx(row["l0"], rel=1e-9) and other["fve"] == pytest.approx(row["fve"], rel=1e-6)
    family.saes[rows[0]["size"]].W_dec.data.zero_()  # a second call reads the stored values, not the weights
    assert analysis.reconstruction_table(family, n_samples=4096) == again


def test_one_firing_pass_stores_the_prefix_counts_the_robustness_table_reads(family, monkeypatch):
    monkeypatch.setattr(latents, "ROBUSTNESS_NS", (1000,))
    full = latents.heldout_fires(family, 64, 4096, chunk=512)
    assert (family.path / "heldout" / f"fires_{latents.FIRES_VERSION}_64_1000.npy").is_file()
    x = family.sample(family.heldout_n(4096))
    with torch.no_grad():
        assert np.array_equal(full, (family.saes[64].encode(x) > 0).sum(0).numpy())
        prefix = (family.saes[64].encode(x[:1000]) > 0).sum(0).numpy()
    family.memo.clear()
    assert np.array_equal(latents.heldout_fires(family, 64, 1000), prefix)

