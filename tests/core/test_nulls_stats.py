"""Analytic null against Monte Carlo and quadrature; EMD against scipy; split and correlation."""

import numpy as np
import pytest
from scipy import integrate
from scipy import stats as sps
from scipy.stats import wasserstein_distance

from sae_core import nulls
from sae_core.similarity import sampled_null_mcs
from sae_core.stats import (
    bimodality,
    bootstrap_wasserstein,
    cross_dictionary_correlation,
    distance_matrix,
    histogram_modes,
    null_cutoff,
    split_high_low,
    truncated_null_distribution,
    truncated_null_test,
    truncated_null_tests,
    wasserstein1,
    wasserstein1_to_null,
)


@pytest.mark.parametrize("k", [3, 16, 128, 4096])
def test_cosine_density_integrates_to_one_and_matches_cdf(k):
    total, _ = integrate.quad(lambda x: np.exp(nulls.cosine_logpdf(x, k)), -1, 1, points=[0.0], limit=200)
    assert total == pytest.approx(1.0, abs=1e-8)
    part, _ = integrate.quad(lambda x: np.exp(nulls.cosine_logpdf(x, k)), -1, 0.1, points=[0.0], limit=200)
    assert nulls.cosine_cdf(0.1, k) == pytest.approx(part, abs=1e-8)
    assert nulls.cosine_cdf(0.1, k) + nulls.cosine_sf(0.1, k) == pytest.approx(1.0, abs=1e-12)


def test_cosine_density_matches_monte_carlo():
    rng = np.random.default_rng(0)
    u = rng.normal(size=(200_000, 10))
    x = u[:, 0] / np.linalg.norm(u, axis=1)  # cosine with e_1
    for t in (-0.5, 0.0, 0.3):
        assert np.mean(x <= t) == pytest.approx(nulls.cosine_cdf(t, 10), abs=4e-3)


@pytest.mark.parametrize("k,m", [(128, 8192), (512, 65536), (4096, 10**6), (2, 1)])
def test_mcs_null_pdf_cdf_quantile_consistent(k, m):
    lo, hi = nulls.mcs_null_quantile([1e-9, 1 - 1e-9], k, m)
    total, _ = integrate.quad(lambda x: nulls.mcs_null_pdf(x, k, m), lo, hi, limit=400)
    assert total == pytest.approx(1.0, abs=1e-6)
    q = np.array([0.01, 0.25, 0.5, 0.9, 0.999])
    x = nulls.mcs_null_quantile(q, k, m)
    np.testing.assert_allclose(nulls.mcs_null_cdf(x, k, m), q, rtol=1e-7)
    assert np.all(np.diff(x) > 0)
    assert np.all(np.isfinite(nulls.mcs_null_logpdf(x, k, m)))


def test_mcs_null_for_m_equal_one_is_the_cosine_itself():
    x = np.linspace(-0.9, 0.9, 7)
    np.testing.assert_allclose(nulls.mcs_null_pdf(x, 20, 1), np.exp(nulls.cosine_logpdf(x, 20)), rtol=1e-12)


def test_analytic_null_matches_random_dictionaries_at_the_post_scale():
    """K=128, N=1024, M=8192: the sampled null is the analytic one, with mean near 0.3."""
    sampled = sampled_null_mcs(1024, 8192, 128, seed=0).numpy()
    emd = wasserstein1_to_null(sampled, 128, 8192)
    mean = nulls.mcs_null_mean(128, 8192)
    print(f"EMD(sampled, analytic) = {emd:.4f}; analytic mean {mean:.4f}, sampled mean {sampled.mean():.4f}")
    assert emd < 0.004  # ~ the W1 between 1024 draws and their law (about 1/sqrt(1024) * spread)
    assert abs(sampled.mean() - mean) < 0.003
    assert 0.28 < mean < 0.36
    # a null for the wrong dimension is far off, so the check can fail
    assert wasserstein1_to_null(sampled, 64, 8192) > 10 * emd


def test_mcs_null_mean_matches_quadrature_of_density():
    k, m = 64, 1000
    direct, _ = integrate.quad(lambda x: x * nulls.mcs_null_pdf(x, k, m), -1, 1, points=[0.3, 0.4, 0.5], limit=400)
    assert nulls.mcs_null_mean(k, m) == pytest.approx(direct, abs=1e-7)


def test_null_rejects_bad_parameters():
    with pytest.raises(ValueError, match="K must be"):
        nulls.mcs_null_pdf(0.1, 1, 10)
    with pytest.raises(ValueError, match="M must be"):
        nulls.mcs_null_cdf(0.1, 10, 0)
    with pytest.raises(ValueError, match="lie in"):
        nulls.mcs_null_quantile(1.5, 10, 10)


def test_wasserstein_matches_scipy():
    rng = np.random.default_rng(1)
    for n, m in [(1, 1), (5, 9), (1000, 333), (4000, 4000)]:
        u, v = rng.normal(size=n), rng.exponential(size=m)
        assert wasserstein1(u, v) == pytest.approx(wasserstein_distance(u, v), abs=1e-9)
    ties = np.array([0.1, 0.1, 0.2, 0.5])
    assert wasserstein1(ties, ties[::-1]) == 0.0
    assert wasserstein1([0.0], [2.0]) == pytest.approx(2.0)


def test_wasserstein_to_null_matches_scipy_against_a_dense_quantile_sample():
    k, m = 128, 4096
    dense = nulls.mcs_null_quantile((np.arange(200_000) + 0.5) / 200_000, k, m)
    sample = np.random.default_rng(2).uniform(0.1, 0.6, size=500)
    assert wasserstein1_to_null(sample, k, m) == pytest.approx(wasserstein_distance(sample, dense), abs=1e-4)


def test_distance_matrix_and_cutoff():
    rng = np.random.default_rng(3)
    samples = {"a": rng.uniform(0, 1, 300), "b": rng.uniform(0, 1, 400), "c": rng.uniform(0.2, 1, 300)}
    names, dist = distance_matrix(samples)
    assert names == ["a", "b", "c"]
    assert np.allclose(dist, dist.T) and np.all(np.diag(dist) == 0)
    assert dist[0, 1] == pytest.approx(wasserstein_distance(samples["a"], samples["b"]), abs=1e-9)
    _, below = distance_matrix(samples, cutoff=0.5)
    a_low, c_low = samples["a"][samples["a"] < 0.5], samples["c"][samples["c"] < 0.5]
    assert below[0, 2] == pytest.approx(wasserstein_distance(a_low, c_low), abs=1e-9)
    with pytest.raises(ValueError, match="no values below"):
        distance_matrix({"x": [0.9], "y": [0.8]}, cutoff=0.5)


def test_bootstrap_interval_covers_estimate_and_shrinks_with_n():
    small = bootstrap_wasserstein(sampled_null_mcs(200, 2048, 64, seed=1), k=64, m=2048, n_boot=100)
    large = bootstrap_wasserstein(sampled_null_mcs(2000, 2048, 64, seed=1), k=64, m=2048, n_boot=100)
    assert small.low <= small.estimate <= small.high
    assert large.high - large.low < small.high - small.low
    two = bootstrap_wasserstein([0.1, 0.2, 0.3], [0.6, 0.7, 0.8], n_boot=50, seed=4)
    assert two.estimate == pytest.approx(0.5) and two.low <= 0.5 <= two.high
    with pytest.raises(ValueError, match="analytic null"):
        bootstrap_wasserstein([0.1])


def test_split_and_null_cutoff():
    cut = null_cutoff(128, 8192, q=0.99)
    assert cut == pytest.approx(nulls.mcs_null_quantile(0.99, 128, 8192))
    assert 0.35 < cut < 0.5
    s = split_high_low([0.2, 0.5, 0.9, 0.3], 0.5)
    assert (s.n_high, s.n_low, s.frac_high) == (2, 2, 0.5)
    random_mcs = sampled_null_mcs(2000, 8192, 128, seed=5)
    assert split_high_low(random_mcs, cut).frac_high == pytest.approx(0.01, abs=0.006)


def test_cross_correlation():
    rng = np.random.default_rng(6)
    b = rng.uniform(0, 1, 1000)
    c = b + rng.normal(0, 0.05, 1000)
    res = cross_dictionary_correlation(b, c)
    assert res.pearson > 0.95 and res.spearman > 0.95
    assert res.frac_low_low + res.frac_high_high == pytest.approx(np.mean((b < 0.5) == (c < 0.5)))
    indep = cross_dictionary_correlation(b, rng.uniform(0, 1, 1000))
    assert abs(indep.pearson) < 0.1
    with pytest.raises(ValueError, match="one value per feature"):
        cross_dictionary_correlation(b, b[:10])


def test_histogram_modes():
    rng = np.random.default_rng(7)
    values = np.concatenate([rng.normal(0.3, 0.02, 500), rng.normal(0.95, 0.01, 300)])
    low, high = histogram_modes(np.clip(values, 0, 1))
    assert low == pytest.approx(0.3, abs=0.02) and high == pytest.approx(0.95, abs=0.02)
    assert np.isnan(histogram_modes([0.1, 0.2])[1])


def test_bimodality_needs_two_real_modes():
    rng = np.random.default_rng(8)
    two = np.clip(np.concatenate([rng.normal(0.3, 0.03, 400), rng.normal(0.95, 0.02, 600)]), 0, 1)
    assert bimodality(two).bimodal and bimodality(two).low_mass == pytest.approx(0.4, abs=0.01)
    one = np.clip(rng.normal(0.6, 0.15, 1000), 0, 1)
    assert not bimodality(one).bimodal  # no valley between the sides of 0.5
    stray = np.clip(np.concatenate([rng.normal(0.3, 0.03, 10), rng.normal(0.95, 0.02, 990)]), 0, 1)
    assert not bimodality(stray).bimodal  # 1% below 0.5 is not a mode


# ------------------------------------------------------------------ calibrated low-mode test
def test_null_mode_matches_a_dense_grid_and_the_issue_figure():
    for k, m in ((512, 4096), (128, 8192), (32, 256)):
        x = np.linspace(0, 1, 200_001)[1:-1]
        grid_mode = x[np.argmax(nulls.mcs_null_logpdf(x, k, m))]
        assert abs(nulls.mcs_null_mode(k, m) - grid_mode) < 1e-4
    assert abs(nulls.mcs_null_mode(512, 4096) - 0.155) < 0.002
    # at K = 32 half of the null lies above 0.5: a typed 0.5 cutoff would call chance "high"
    assert nulls.mcs_null_quantile(0.5, 32, 8192) > 0.5


def test_truncated_quantile_is_the_conditional_null():
    k, m, cut = 128, 8192, 0.38
    draws = sampled_null_mcs(4000, m, k, seed=3).numpy()
    below = np.sort(draws[draws < cut])
    q = (np.arange(below.size) + 0.5) / below.size
    assert np.abs(below - nulls.truncated_quantile(q, k, m, cut)).max() < 0.02
    assert nulls.truncated_quantile(1.0, k, m, cut) == pytest.approx(cut, abs=1e-9)
    with pytest.raises(ValueError, match="no mass below"):
        nulls.truncated_quantile(0.5, k, m, -0.99)


@pytest.mark.parametrize("n", [50, 200, 1000])
def test_truncated_null_test_is_calibrated(n):
    """Samples drawn from the truncated null itself (exact inverse CDF, not the test's own
    table) are called consistent with chance in about 95% of 300 trials."""
    k, m = 128, 8192
    cut = null_cutoff(k, m, 0.99)
    rng = np.random.default_rng(n)
    trials = 300
    samples = [nulls.truncated_quantile(rng.uniform(size=n), k, m, cut) for _ in range(trials)]
    results = truncated_null_tests(samples, k, m, cut, n_mc=1000, seed=7)
    rate = np.mean([not r.consistent(0.05) for r in results])
    assert 0.01 <= rate <= 0.10, rate  # 5% +- 3.3 standard errors of a binomial(300, 0.05)
    # p-values of null samples are uniform on the grid {1, ..., n_mc + 1}/(n_mc + 1)
    p = np.array([r.p_value for r in results])
    assert sps.kstest(p, "uniform").pvalue > 1e-3


def test_truncated_null_tests_together_equal_each_alone():
    """One shared null distribution: the batched call gives each sample the p-value, W1 and
    chance level of the single-sample test with the same seed; another seed gives another
    (Monte Carlo) p-value; the null distribution is the public one."""
    k, m = 128, 8192
    cut = null_cutoff(k, m, 0.99)
    rng = np.random.default_rng(2)
    samples = [nulls.truncated_quantile(rng.uniform(size=150), k, m, cut) + shift for shift in (0.0, 0.004, 0.02)]
    together = truncated_null_tests(samples, k, m, cut, n_mc=400, seed=3)
    for s, t in zip(samples, together, strict=True):
        assert truncated_null_test(s, k, m, cut, n_mc=400, seed=3) == t
    assert truncated_null_test(samples[0], k, m, cut, n_mc=400, seed=3) == truncated_null_test(
        samples[0], k, m, cut, n_mc=400, seed=3)
    mc = truncated_null_distribution(150, k, m, cut, n_mc=400, seed=3)
    assert together[0].expected == pytest.approx(mc.mean()) and together[0].spread == pytest.approx(mc.std())
    assert together[1].p_value == pytest.approx((1 + np.sum(mc >= together[1].w1)) / 401)
    assert together[2].at_floor and together[2].p_text == "p ≤ 0.003"  # 1/401 = 0.00249
    with pytest.raises(ValueError, match="one size"):
        truncated_null_tests([samples[0], samples[1][:10]], k, m, cut)


def test_truncated_null_test_statistic_is_w1_to_the_truncated_null():
    """The observed statistic, by brute force: scipy's W1 between the sample and a dense
    sample of the truncated null's quantiles."""
    k, m, cut = 64, 2048, 0.45
    x = np.random.default_rng(4).uniform(0.2, 0.44, size=300)
    dense = nulls.truncated_quantile((np.arange(100_000) + 0.5) / 100_000, k, m, cut)
    assert truncated_null_test(x, k, m, cut, n_mc=50).w1 == pytest.approx(wasserstein_distance(x, dense), abs=2e-4)


def test_truncated_null_test_rejects_a_small_shift():
    k, m = 128, 8192
    cut = null_cutoff(k, m, 0.99)
    rng = np.random.default_rng(11)
    samples = [nulls.truncated_quantile(rng.uniform(size=1000), k, m, cut) + 0.02 for _ in range(100)]
    results = truncated_null_tests(samples, k, m, cut, n_mc=1000, seed=7)
    assert np.mean([not r.consistent(0.05) for r in results]) >= 0.9
    assert all(r.w1 > r.expected + 3 * r.spread for r in results)


def test_old_bootstrap_rule_was_miscalibrated_and_the_new_test_is_not():
    """The rule this test replaces: "distinguishable from chance" when the bootstrap interval's
    low end of W1(low part, null) lies above W1(random set, null) for each of four random
    dictionaries of the full size (4096 features). At equal n that comparison is unfair to a
    small low part, so exact-null samples of n = 200 are called distinguishable far more often
    than 5%; the Monte Carlo test at the sample's own n is not."""
    k, m, n, full = 128, 8192, 200, 4096
    cut = 0.5  # the old rule's cutoff; at K = 128, M = 8192 the null has all its mass below it
    rng = np.random.default_rng(5)
    trials, old_calls, new_calls = 20, 0, 0
    for t in range(trials):
        sample = nulls.truncated_quantile(rng.uniform(size=n), k, m, cut)
        randoms = [nulls.truncated_quantile(rng.uniform(size=full), k, m, cut) for _ in range(4)]
        boot = bootstrap_wasserstein(sample, k=k, m=m, n_boot=60, seed=t)
        old_calls += boot.low > max(wasserstein1_to_null(r, k, m, n_grid=20_000) for r in randoms)
        new_calls += not truncated_null_test(sample, k, m, cut, seed=t).consistent()
    assert old_calls / trials > 0.5
    assert new_calls / trials < 0.2
