"""Analytic null against Monte Carlo and quadrature; EMD against scipy; split and correlation."""

import numpy as np
import pytest
import torch
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


# ------------------------------------------------------------------ chance inside the data's span
def _subspace_data(d, k, n, seed, offset=0.0):
    """n activations isotropic inside a random k-dim subspace of R^d (plus a constant offset
    along it), and that subspace's orthonormal basis [d, k]."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((d, k)))[0]
    return rng.standard_normal((n, k)) @ basis.T + offset * basis[:, 0], basis


def test_activation_moments_in_chunks_match_numpy():
    x = np.random.default_rng(0).normal(2.0, 3.0, size=(1001, 7))
    mean, cov = nulls.activation_moments(x, chunk=64)
    np.testing.assert_allclose(mean, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(cov, np.cov(x, rowvar=False), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(nulls.activation_moments(torch.from_numpy(x))[1], cov, rtol=1e-12)
    with pytest.raises(ValueError, match="n >= 2"):
        nulls.activation_moments(x[:1])


def test_effective_dimension_finds_the_span():
    x, _ = _subspace_data(64, 12, 5000, seed=1, offset=5.0)  # the offset is a mean, not variance
    assert nulls.effective_dimension(x) == 12
    assert nulls.effective_dimension(x, share=1.0) == 12
    # shares 0.5, 0.8, 0.95, 0.99, 0.999, 1 of a known spectrum, in a rotated basis
    q = np.linalg.qr(np.random.default_rng(2).standard_normal((6, 6)))[0]
    cov = q @ np.diag([50.0, 30.0, 15.0, 4.0, 0.9, 0.1]) @ q.T
    assert [nulls.effective_dimension(cov=cov, share=s) for s in (0.5, 0.9, 0.99, 0.995, 1.0)] == [1, 3, 4, 5, 6]
    with pytest.raises(ValueError, match="share"):
        nulls.effective_dimension(cov=cov, share=0.0)
    with pytest.raises(ValueError, match="either activations"):
        nulls.effective_dimension()
    with pytest.raises(ValueError, match="no variance"):
        nulls.effective_dimension(cov=np.zeros((3, 3)))


def test_span_null_is_the_analytic_null_of_the_span_dimension():
    """Activations filling exactly k = 12 of 64 dimensions, reference rows random inside that
    subspace: the span null's MCS follow G = F_k^M (KS test), its median and 99% quantile are
    the analytic ones, and the null of K = 64 (or K = 16) is rejected."""
    d, k, m = 64, 12, 2048
    x, basis = _subspace_data(d, k, 5000, seed=3, offset=2.0)
    reference = np.random.default_rng(4).standard_normal((m, k)) @ basis.T
    res = nulls.span_null_mcs(reference, activations=x, n_draws=4096, seed=5)
    assert (res.kind, res.dim, res.m, res.values.shape) == ("span", k, m, (4096,))
    assert sps.kstest(res.values, lambda v: nulls.mcs_null_cdf(v, k, m)).pvalue > 1e-3
    assert res.median == pytest.approx(float(nulls.mcs_null_quantile(0.5, k, m)), abs=0.01)
    assert res.cutoff == pytest.approx(float(nulls.mcs_null_quantile(0.99, k, m)), abs=0.01)
    assert res.quantile(0.5) == pytest.approx(res.median)
    for wrong in (16, d):
        assert sps.kstest(res.values, lambda v, kk=wrong: nulls.mcs_null_cdf(v, kk, m)).pvalue < 1e-6
    again = nulls.span_null_mcs(reference, activations=x, n_draws=4096, seed=5)
    np.testing.assert_array_equal(again.values, res.values)  # seeded
    assert not np.array_equal(nulls.span_null_mcs(reference, activations=x, n_draws=4096, seed=6).values,
                              res.values)


def test_full_rank_isotropic_data_reproduce_the_whole_sphere_null():
    """N(0, I_d) activations: the span is all d dimensions and both chance models are the
    analytic null with K = d."""
    d, m = 32, 1024
    rng = np.random.default_rng(7)
    x = rng.standard_normal((20_000, d))
    reference = rng.standard_normal((m, d))
    span = nulls.span_null_mcs(reference, activations=x, seed=8)
    gauss = nulls.gaussian_null_mcs(reference, activations=x, seed=9)
    assert span.dim == d and gauss.dim == d and gauss.kind == "gaussian"
    for res in (span, gauss):
        assert sps.kstest(res.values, lambda v: nulls.mcs_null_cdf(v, d, m)).pvalue > 1e-3
        assert res.cutoff == pytest.approx(float(nulls.mcs_null_quantile(0.99, d, m)), abs=0.015)


def test_gaussian_null_from_moments_keeps_the_mean_the_span_null_drops():
    """Given only a covariance of rank k (mean 0), Gaussian draws are uniform in the span too;
    a large mean along one reference row pulls the Gaussian draws onto it, while the span null
    (principal components of the centred data) does not see it."""
    d, k, m = 48, 10, 1024
    _, basis = _subspace_data(d, k, 10, seed=10)
    reference = np.random.default_rng(11).standard_normal((m, k)) @ basis.T
    cov = basis @ basis.T
    gauss = nulls.gaussian_null_mcs(reference, cov=cov, seed=12)
    assert gauss.dim == k
    assert sps.kstest(gauss.values, lambda v: nulls.mcs_null_cdf(v, k, m)).pvalue > 1e-3
    mean = 20 * reference[0] / np.linalg.norm(reference[0])
    pulled = nulls.gaussian_null_mcs(reference, mean=mean, cov=cov, seed=12)
    assert pulled.median > 0.97  # about 20 / sqrt(20^2 + k)
    centred = nulls.span_null_mcs(reference, cov=cov, seed=12)
    assert centred.median == pytest.approx(float(nulls.mcs_null_quantile(0.5, k, m)), abs=0.02)
    with pytest.raises(ValueError, match="only with cov"):
        nulls.gaussian_null_mcs(reference, activations=np.ones((5, d)), mean=mean)
    with pytest.raises(ValueError, match="rows are features"):
        nulls.span_null_mcs(reference.T, cov=cov)


def test_low_rank_data_raise_chance_far_above_the_whole_sphere_null():
    """The motivating case: activations with 99% of their variance in 8 of 128 directions and
    a reference dictionary confined near that span. Chance there (span null) sits far above
    the K = 128 analytic cutoff the report used to apply."""
    d, k, m = 128, 8, 4096
    rng = np.random.default_rng(13)
    basis = np.linalg.qr(rng.standard_normal((d, d)))[0]
    scales = np.r_[np.full(k, 10.0), np.full(d - k, 0.02)]
    x = (rng.standard_normal((20_000, d)) * scales) @ basis.T
    reference = (rng.standard_normal((m, d)) * scales) @ basis.T  # rows mostly inside the span
    res = nulls.span_null_mcs(reference, activations=x, seed=14)
    assert res.dim == k
    assert res.cutoff > 2 * float(nulls.mcs_null_quantile(0.99, d, m))
    assert res.median > float(nulls.mcs_null_quantile(0.99, d, m))
