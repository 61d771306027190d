"""Reporting p-values, a count against a null rate, correlations with intervals and the
bootstrap over dependent groups (sae_core.stats)."""

import numpy as np
import pytest
from scipy import stats as sps

from sae_core.stats import (
    TruncatedNullTest,
    count_vs_null,
    format_p,
    grouped_linear_fit,
    pearson_ci,
)


# ------------------------------------------------------------------ format_p
@pytest.mark.parametrize(
    "n_mc,p,text",
    [
        (1000, 1 / 1001, "p ≤ 0.001"),  # the floor 0.000999 rounded up
        (999, 1 / 1000, "p ≤ 0.001"),
        (200, 1 / 201, "p ≤ 0.005"),  # 0.004975
        (400, 1 / 401, "p ≤ 0.003"),  # 0.002494
        (9999, 1 / 10_000, "p ≤ 1e-4"),
        (10**6, 1 / (10**6 + 1), "p ≤ 1e-6"),
        (1, 0.5, "p ≤ 0.5"),
        (1000, 2 / 1001, "p = 0.002"),  # one step above the floor is a value, not a bound
        (1000, 23 / 1001, "p = 0.023"),
        (1000, 1.0, "p = 1.000"),
        (10**6, 5 / (10**6 + 1), "p < 1e-5"),  # above the floor but below 0.001
    ],
)
def test_format_p_monte_carlo(n_mc, p, text):
    assert format_p(p, n_mc) == text


@pytest.mark.parametrize(
    "p,text",
    [
        (0.5, "p = 0.500"),
        (0.023, "p = 0.023"),
        (0.001, "p = 0.001"),
        (0.000999, "p < 0.001"),
        (3.2e-7, "p < 1e-6"),
        (1e-6, "p < 1e-5"),  # a bound, so never "p < 1e-6" for p = 1e-6 itself
        (3.15e-10, "p < 1e-9"),
        (0.0, "p < 1e-300"),
        (1.0, "p = 1.000"),
    ],
)
def test_format_p_analytic(p, text):
    assert format_p(p) == text


def test_format_p_rejects_bad_input():
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="lies in"):
            format_p(bad)
    for bad in (0, -5, 2.5):
        with pytest.raises(ValueError, match="n_mc"):
            format_p(0.5, bad)


def test_truncated_null_test_exposes_its_floor():
    at = TruncatedNullTest(n=100, cutoff=0.4, w1=0.05, expected=0.01, spread=0.002, p_value=1 / 1001, n_mc=1000)
    assert at.p_floor == pytest.approx(1 / 1001) and at.at_floor and at.p_text == "p ≤ 0.001"
    above = TruncatedNullTest(n=100, cutoff=0.4, w1=0.01, expected=0.01, spread=0.002, p_value=412 / 1001, n_mc=1000)
    assert not above.at_floor and above.p_text == "p = 0.412"
    np.testing.assert_equal(above.consistent(), True)


# ------------------------------------------------------------------ count_vs_null
def _wilson(k, n, level):
    """Wilson (1927) score interval written out: the roots in p of (k/n - p)^2 = z^2 p(1-p)/n."""
    z = sps.norm.ppf((1 + level) / 2)
    phat = k / n
    centre = (phat + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * np.sqrt(phat * (1 - phat) / n + z**2 / (4 * n**2))
    return centre - half, centre + half


def test_count_vs_null_the_recurrence_example():
    """11 of 76 alive low features recur, against 0.76 expected at the 99% cutoff."""
    res = count_vs_null(11, 76, 0.01)
    assert res.expected == pytest.approx(0.76) and res.ratio == pytest.approx(11 / 0.76)
    assert res.rate == pytest.approx(11 / 76)
    exact = sum(sps.binom.pmf(j, 76, 0.01) for j in range(11, 77))  # P(K >= 11) summed term by term
    assert res.p_value == pytest.approx(exact, rel=1e-9)
    assert res.p_value < 1e-9 and res.p_text == "p < 1e-9"
    low, high = _wilson(11, 76, 0.95)
    assert (res.rate_low, res.rate_high) == (pytest.approx(low), pytest.approx(high))
    assert res.ratio_low == pytest.approx(low / 0.01) and res.ratio_low > 1  # well above chance


def test_count_vs_null_edges():
    zero = count_vs_null(0, 76, 0.01)
    assert zero.p_value == pytest.approx(1.0) and zero.rate_low == pytest.approx(0.0, abs=1e-15)
    assert zero.rate_high == pytest.approx(_wilson(0, 76, 0.95)[1]) and zero.ratio == 0.0
    full = count_vs_null(20, 20, 0.5)
    assert full.p_value == pytest.approx(0.5**20) and full.rate_high == pytest.approx(1.0)
    assert full.rate_low == pytest.approx(_wilson(20, 20, 0.95)[0])
    # at the expected count the two-sided test finds nothing and the interval covers p0
    even = count_vs_null(10, 100, 0.1, alternative="two-sided")
    assert even.p_value == pytest.approx(1.0) and even.rate_low < 0.1 < even.rate_high
    less = count_vs_null(0, 300, 0.01, alternative="less")
    assert less.p_value == pytest.approx(0.99**300)
    with pytest.raises(ValueError, match="no trials"):
        count_vs_null(0, 0, 0.01)
    with pytest.raises(ValueError, match=r"lie in \[0, n\]"):
        count_vs_null(5, 4, 0.01)
    with pytest.raises(ValueError, match="p0"):
        count_vs_null(1, 4, 0.0)
    with pytest.raises(ValueError, match="integers"):
        count_vs_null(1.5, 4, 0.1)
    with pytest.raises(ValueError, match="alternative"):
        count_vs_null(1, 4, 0.1, alternative="bigger")


# ------------------------------------------------------------------ pearson_ci
def test_pearson_ci_is_fishers_interval():
    rng = np.random.default_rng(0)
    x = rng.normal(size=50)
    y = 0.5 * x + rng.normal(size=50)
    res = pearson_ci(x, y)
    r = np.corrcoef(x, y)[0, 1]
    z = sps.norm.ppf(0.975)
    assert res.r == pytest.approx(r)
    assert res.low == pytest.approx(np.tanh(np.arctanh(r) - z / np.sqrt(47)))
    assert res.high == pytest.approx(np.tanh(np.arctanh(r) + z / np.sqrt(47)))
    # the p-value of r = 0 from the t statistic r sqrt(n-2)/sqrt(1-r^2) on n-2 degrees of freedom
    t = r * np.sqrt(48 / (1 - r**2))
    assert res.p_value == pytest.approx(2 * sps.t.sf(abs(t), 48))
    assert res.n == 50 and pearson_ci(x, y, level=0.5).high < res.high


def test_pearson_ci_rejects_what_has_no_correlation():
    with pytest.raises(ValueError, match="constant"):
        pearson_ci([1.0, 2.0, 3.0], [2.0, 2.0, 2.0])
    with pytest.raises(ValueError, match="at least 3"):
        pearson_ci([1.0, 2.0], [2.0, 1.0])
    with pytest.raises(ValueError, match="one value per point"):
        pearson_ci([1.0, 2.0, 3.0], [2.0, 1.0])


# ------------------------------------------------------------------ grouped_linear_fit
def test_grouped_fit_point_estimates_are_least_squares():
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 10, 60)
    y = 2.0 - 0.3 * x + rng.normal(0, 1, 60)
    fit = grouped_linear_fit(x, y, np.repeat(np.arange(12), 5), n_boot=200)
    ref = sps.linregress(x, y)
    assert (fit.slope, fit.intercept, fit.r) == (pytest.approx(ref.slope), pytest.approx(ref.intercept),
                                                 pytest.approx(ref.rvalue))
    assert fit.slope_low < fit.slope < fit.slope_high and fit.r_low < fit.r < fit.r_high
    assert (fit.n_points, fit.n_groups, fit.n_boot) == (60, 12, 200)


def test_grouped_fit_on_copied_groups_is_wider_than_the_naive_fit():
    """Ten identical copies of each of 8 points: resampling the 80 points as if independent
    gives intervals about sqrt(10) too narrow; resampling the 8 groups gives those of the 8
    points themselves."""
    rng = np.random.default_rng(2)
    x0 = rng.uniform(0, 1, 8)
    y0 = x0 + rng.normal(0, 0.3, 8)
    x, y, g = np.repeat(x0, 10), np.repeat(y0, 10), np.repeat(np.arange(8), 10)
    grouped = grouped_linear_fit(x, y, g, n_boot=2000, seed=3)
    naive = grouped_linear_fit(x, y, np.arange(80), n_boot=2000, seed=3)
    alone = grouped_linear_fit(x0, y0, np.arange(8), n_boot=2000, seed=3)
    assert grouped.slope == pytest.approx(naive.slope) and grouped.n_groups == 8 and naive.n_groups == 80

    def width(f):
        return f.slope_high - f.slope_low

    assert width(grouped) > 2 * width(naive)
    assert (grouped.r_high - grouped.r_low) > 2 * (naive.r_high - naive.r_low)
    assert width(grouped) == pytest.approx(width(alone), rel=1e-9)  # the same group draws, the same fits


def test_grouped_fit_with_one_point_per_group_is_the_ordinary_bootstrap():
    """Against an independent pairs bootstrap (scipy.stats.bootstrap, paired, on linregress):
    the percentile endpoints agree within Monte Carlo error."""
    rng = np.random.default_rng(4)
    x = rng.uniform(0, 1, 40)
    y = 1 + 2 * x + rng.standard_t(3, 40) * 0.3
    fit = grouped_linear_fit(x, y, np.arange(40), n_boot=4000, seed=5)

    def slope(a, b, axis=-1):  # Sxy / Sxx, vectorised over resamples
        da = a - a.mean(axis, keepdims=True)
        return (da * (b - b.mean(axis, keepdims=True))).sum(axis) / (da * da).sum(axis)

    ref = sps.bootstrap((x, y), slope, paired=True, vectorized=True, n_resamples=4000, method="percentile",
                        rng=np.random.default_rng(6)).confidence_interval
    width = ref.high - ref.low
    assert fit.slope_low == pytest.approx(ref.low, abs=0.1 * width)
    assert fit.slope_high == pytest.approx(ref.high, abs=0.1 * width)


def test_grouped_fit_covers_the_truth_when_groups_share_a_slope():
    """Groups at the same twelve x (families of nested sizes), each with its own random slope:
    over 200 data sets the grouped 90% interval covers the mean slope about 90% of the time;
    the naive point-wise one, blind to the shared slopes, far less often."""
    rng = np.random.default_rng(7)
    x = np.tile(np.arange(12.0), 10)  # 10 groups of 12 "sizes"
    g = np.repeat(np.arange(10), 12)
    covered = naive_covered = 0
    trials = 200
    for t in range(trials):
        slopes = 1.0 + rng.normal(0, 0.3, 10)
        y = slopes[g] * x + rng.normal(0, 0.1, 120)
        fit = grouped_linear_fit(x, y, g, n_boot=400, level=0.9, seed=t)
        naive = grouped_linear_fit(x, y, np.arange(120), n_boot=400, level=0.9, seed=t)
        covered += fit.slope_low <= 1.0 <= fit.slope_high
        naive_covered += naive.slope_low <= 1.0 <= naive.slope_high
    assert 0.78 <= covered / trials <= 0.97, covered  # percentile intervals run a little narrow at 10 groups
    assert naive_covered / trials < min(0.8, covered / trials - 0.1)  # 69% against 86% here


def test_grouped_fit_rejects_too_few_groups():
    x, y = np.arange(6.0), np.arange(6.0) ** 2
    with pytest.raises(ValueError, match="at least 3 groups"):
        grouped_linear_fit(x, y, [0, 0, 0, 1, 1, 1])
    with pytest.raises(ValueError, match="one group label per point"):
        grouped_linear_fit(x, y, [0, 1, 2])
    with pytest.raises(ValueError, match="no spread in x"):  # each group sits at one x
        grouped_linear_fit(np.repeat([0.0, 1.0, 2.0], 2), y, np.repeat([0, 1, 2], 2), n_boot=200)
