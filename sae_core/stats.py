"""Distances between MCS distributions, tests against the null, and the statistics the
chapters quote with their uncertainty.

Earthmover (Wasserstein-1) distance between distributions P and Q on the line::

    W1(P, Q) = ∫ |F_P(x) - F_Q(x)| dx = ∫_0^1 |F_P^{-1}(u) - F_Q^{-1}(u)| du

(Vallender 1974). Between two samples it is ``scipy.stats.wasserstein_distance``; against
the analytic null of :mod:`sae_core.nulls` the quantile form, by the midpoint rule. The
bootstrap is ``scipy.stats.bootstrap``, the test of a low part against the truncated null
``scipy.stats.monte_carlo_test``, the count test ``scipy.stats.binomtest``.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from sae_core import nulls

POST_CUTOFF = 0.5  # the MCS value the original post used to split high from low


def _sample(x, name: str = "sample") -> np.ndarray:
    arr = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float64).ravel()
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def wasserstein1(u, v) -> float:
    """W1 between the empirical distributions of samples ``u`` and ``v`` (equal weights).

    ``scipy.stats.wasserstein_distance``: ∫ |F_u(x) - F_v(x)| dx, exact for step CDFs (summed
    over the merged sorted values)."""
    return float(sps.wasserstein_distance(_sample(u, "first sample"), _sample(v, "second sample")))


@functools.lru_cache(maxsize=32)
def _null_quantiles(k: int, m: int, cutoff: float | None, n_grid: int) -> np.ndarray:
    """G^{-1} (or the truncated null's quantile, :func:`nulls.truncated_quantile`) at the
    midpoints (l + 1/2)/L, l = 0 … L-1. Cached and read-only: a chapter asks for the same grid often."""
    levels = (np.arange(n_grid) + 0.5) / n_grid
    q = nulls.mcs_null_quantile(levels, k, m) if cutoff is None else nulls.truncated_quantile(levels, k, m, cutoff)
    q.setflags(write=False)
    return q


def _w1_to_quantiles(sorted_samples: np.ndarray, q_null: np.ndarray) -> np.ndarray:
    """W1 = ∫_0^1 |Q_emp(u) - Q_null(u)| du by the midpoint rule at u_l = (l + 1/2)/L, the levels
    of ``q_null`` [L], for each row of ``sorted_samples`` [..., n] (rows sorted ascending);
    Q_emp(u) = x_(floor(u n)). Error O(1/L) against the exact integral."""
    n = sorted_samples.shape[-1]
    levels = (np.arange(q_null.size) + 0.5) / q_null.size
    idx = np.minimum((levels * n).astype(np.int64), n - 1)
    return np.abs(np.take(sorted_samples, idx, axis=-1) - q_null).mean(-1)


def wasserstein1_to_null(sample, k: int, m: int, n_grid: int = 200_000) -> float:
    """W1 between a sample and the analytic MCS null G = F_K^M (no scipy equivalent: the null
    is a law, not a sample).

    ∫_0^1 |Q_emp(u) - G^{-1}(u)| du with the empirical quantile Q_emp piecewise
    constant; evaluated at ``n_grid`` midpoints (error O(1/n_grid)). Checked against
    ``scipy.stats.wasserstein_distance`` to a dense quantile sample in the tests.
    """
    return float(_w1_to_quantiles(np.sort(_sample(sample)), _null_quantiles(int(k), int(m), None, int(n_grid))))


def restrict_below(sample, cutoff: float | None) -> np.ndarray:
    """Values of ``sample`` strictly below ``cutoff`` (all values when ``cutoff`` is None)."""
    arr = _sample(sample)
    if cutoff is None:
        return arr
    kept = arr[arr < cutoff]
    if kept.size == 0:
        raise ValueError(f"no values below the cutoff {cutoff}")
    return kept


def distance_matrix(samples: Mapping[str, object], cutoff: float | None = None) -> tuple[list[str], np.ndarray]:
    """Pairwise W1 among named samples, optionally each restricted to values < ``cutoff``.

    The post compared "learned", several random sets and an "alt params" set with MCS < 0.5.
    """
    names = list(samples)
    if len(names) < 2:
        raise ValueError("a distance matrix needs at least two named samples")
    data = {n: restrict_below(samples[n], cutoff) for n in names}
    out = np.zeros((len(names), len(names)))
    for i, a in enumerate(names):
        for j in range(i + 1, len(names)):
            out[i, j] = out[j, i] = wasserstein1(data[a], data[names[j]])
    return names, out


@dataclass
class BootstrapCI:
    estimate: float
    low: float
    high: float
    level: float
    n_boot: int


_BOOT_GRID = 20_000  # quantile levels for W1 to the analytic null inside the bootstrap


def bootstrap_wasserstein(u, v=None, *, k: int | None = None, m: int | None = None,
                          n_boot: int = 200, level: float = 0.95, seed: int = 0) -> BootstrapCI:
    """Percentile bootstrap interval for W1(u, v), or for W1(u, null(K, M)) when ``v`` is None.

    ``scipy.stats.bootstrap`` with ``method="percentile"`` (Efron & Tibshirani 1993, ch. 13):
    each replicate resamples every sample with replacement (the analytic null is fixed), and the
    interval is the (1 ± level)/2 quantiles of the replicates. Seeded by ``seed``. Each sample
    needs at least two values.
    """
    u = _sample(u)
    if v is None and (k is None or m is None):
        raise ValueError("give a second sample v, or k and m for the analytic null")
    rng = np.random.default_rng(seed)
    options = dict(n_resamples=n_boot, confidence_level=level, method="percentile", rng=rng)
    if v is None:
        q = _null_quantiles(int(k), int(m), None, _BOOT_GRID)

        def to_null(a: np.ndarray, axis: int = -1) -> np.ndarray:
            return _w1_to_quantiles(np.sort(a, axis=axis), q)

        estimate = float(to_null(u))
        res = sps.bootstrap((u,), to_null, vectorized=True, batch=max(1, 4_000_000 // _BOOT_GRID), **options)
    else:
        v = _sample(v, "second sample")
        estimate = wasserstein1(u, v)
        res = sps.bootstrap((u, v), sps.wasserstein_distance, vectorized=False, **options)
    ci = res.confidence_interval
    return BootstrapCI(estimate, float(ci.low), float(ci.high), level, n_boot)


def format_p(p: float, n_mc: int | None = None) -> str:
    """A p-value as printed in the report.

    With ``n_mc`` (a Monte Carlo p-value (1 + #{T_mc >= T_obs}) / (1 + n_mc), Davison & Hinkley
    1997 eq. 4.11) the smallest value it can take is the floor 1/(n_mc + 1); a p-value at the
    floor is written "p ≤ 0.001" with the floor rounded up to one significant digit, since the
    test cannot say how far below it the truth lies. Otherwise "p = 0.023" (three decimals) from
    0.001 up, and below 0.001 (an analytic p-value, or a Monte Carlo one with a very large
    n_mc) the next power of ten above it: "p < 1e-6".
    """
    p = float(p)
    if not 0.0 <= p <= 1.0:  # also NaN
        raise ValueError(f"a p-value lies in [0, 1], got {p}")
    if n_mc is not None:
        if not isinstance(n_mc, (int, np.integer)) or n_mc < 1:
            raise ValueError(f"n_mc must be a positive integer, got {n_mc!r}")
        floor = 1.0 / (n_mc + 1)
        if p <= floor * (1 + 1e-9):
            return f"p ≤ {_tidy(_round_up(floor))}"
    if p >= 0.001:
        return f"p = {p:.3f}"
    if p == 0.0:
        return "p < 1e-300"
    return f"p < {_tidy(10.0 ** (np.floor(np.log10(p)) + 1))}"


def _round_up(x: float) -> float:
    """``x`` > 0 rounded up to one significant digit (0.000999 -> 0.001, 0.004975 -> 0.005)."""
    exp = np.floor(np.log10(x))
    return float(np.ceil(round(x / 10.0**exp, 9)) * 10.0**exp)


def _tidy(x: float) -> str:
    """0.005, 0.001, then 1e-4, 1e-6, 3e-7: short, and never rounded down."""
    if x >= 1e-3:
        return np.format_float_positional(x, trim="-")
    mantissa, exp = f"{x:.0e}".split("e")
    return f"{mantissa}e{int(exp)}"


@dataclass
class TruncatedNullTest:
    """Monte Carlo test of "this low part is the random null, restricted below the cutoff".

    statistic: W1 of the sample to the truncated null; ``expected`` and ``spread`` are the mean
    and standard deviation of that W1 over ``n_mc`` samples of the same size drawn from the
    truncated null itself (what chance alone gives at this n); ``p_value`` =
    (1 + #{W1_mc >= W1_obs}) / (1 + n_mc), at least ``p_floor`` = 1/(n_mc + 1)."""

    n: int
    cutoff: float
    w1: float
    expected: float
    spread: float
    p_value: float
    n_mc: int

    def consistent(self, level: float = 0.05) -> bool:
        return self.p_value > level

    @property
    def p_floor(self) -> float:
        """The smallest p-value ``n_mc`` draws can give: 1/(n_mc + 1)."""
        return 1.0 / (self.n_mc + 1)

    @property
    def at_floor(self) -> bool:
        """No null draw reached the observed W1: the p-value is the floor, an upper bound."""
        return self.p_value <= self.p_floor * (1 + 1e-9)

    @property
    def p_text(self) -> str:
        """The p-value as the report prints it (:func:`format_p`): "p ≤ 0.001" at the floor."""
        return format_p(self.p_value, self.n_mc)


_GRID = 4096  # quantile levels at which W1 to the truncated null is evaluated
_TABLE = 65_536  # intervals of the quantile table that null samples are drawn through


@functools.lru_cache(maxsize=32)
def _truncated_table(k: int, m: int, cutoff: float) -> np.ndarray:
    """The truncated null's quantile at l/_TABLE, l = 0 … _TABLE (read-only)."""
    table = nulls.truncated_quantile(np.linspace(0, 1, _TABLE + 1), k, m, cutoff)
    table.setflags(write=False)
    return table


def _truncated_mc(samples: np.ndarray, k: int, m: int, cutoff: float, n_mc: int, seed: int):
    """``scipy.stats.monte_carlo_test`` of each row of ``samples`` [S, n] against the null
    truncated below ``cutoff``: rvs draws n values by inverse-CDF sampling (a uniform through
    linear interpolation of the quantile table), the statistic is W1 to the truncated null's
    quantiles (the same for the observed rows and the draws), alternative "greater". All rows
    share one null distribution, drawn from ``numpy.random.default_rng(seed)`` in batches of at
    most ~2M values, so the same inputs give the same p-values, alone or together."""
    k, m, cutoff, n_mc = int(k), int(m), float(cutoff), int(n_mc)
    n = samples.shape[-1]
    table = _truncated_table(k, m, cutoff)
    q_null = _null_quantiles(k, m, cutoff, _GRID)
    rng = np.random.default_rng(seed)

    def rvs(size: tuple[int, ...]) -> np.ndarray:
        pos = rng.uniform(size=size) * _TABLE
        i = np.minimum(pos.astype(np.int64), _TABLE - 1)
        w = pos - i
        return table[i] * (1 - w) + table[i + 1] * w

    def w1(x: np.ndarray, axis: int = -1) -> np.ndarray:
        return _w1_to_quantiles(np.sort(x, axis=axis), q_null)

    return sps.monte_carlo_test(samples, rvs, w1, vectorized=True, n_resamples=n_mc,
                                batch=max(1, 2_000_000 // n), alternative="greater", axis=-1)


def truncated_null_distribution(n: int, k: int, m: int, cutoff: float, n_mc: int = 1000,
                                seed: int = 0) -> np.ndarray:
    """W1 to the truncated null of ``n_mc`` samples of size ``n`` drawn from it: the null
    distribution :func:`truncated_null_test` compares with, for the same ``seed``."""
    if n <= 0:
        raise ValueError("the sample to test is empty")
    placeholder = np.zeros((1, int(n)))  # the null distribution does not depend on the data
    return np.asarray(_truncated_mc(placeholder, k, m, cutoff, n_mc, seed).null_distribution).ravel()


def truncated_null_tests(samples, k: int, m: int, cutoff: float, n_mc: int = 1000,
                         seed: int = 0) -> list[TruncatedNullTest]:
    """:func:`truncated_null_test` of several samples of the same size at once, against one
    shared null distribution (each result equals the single-sample test with the same seed);
    ``samples`` is a sequence of equal-length samples or a 2-D array, one sample per row."""
    rows = [_sample(s, "low part") for s in samples]
    if not rows:
        raise ValueError("no samples to test")
    if len({r.size for r in rows}) != 1:
        raise ValueError(f"samples of one size only, got sizes {sorted({r.size for r in rows})}")
    res = _truncated_mc(np.stack(rows), k, m, cutoff, n_mc, seed)
    mc = np.asarray(res.null_distribution).ravel()
    return [TruncatedNullTest(rows[0].size, float(cutoff), float(w), float(mc.mean()), float(mc.std()), float(p),
                              int(n_mc))
            for w, p in zip(np.atleast_1d(res.statistic), np.atleast_1d(res.pvalue), strict=True)]


def truncated_null_test(sample, k: int, m: int, cutoff: float, n_mc: int = 1000,
                        seed: int = 0) -> TruncatedNullTest:
    """Is a learned low-MCS part (values below ``cutoff``) consistent with the random null of
    K dimensions and M reference features, judged at its own sample size n?

    The null restricted to the same region is G(x)/G(cutoff) on x < cutoff. The observed W1 is
    compared with the W1 of ``n_mc`` samples of the same n drawn from that truncated null
    (``scipy.stats.monte_carlo_test``, p = (1 + #{W1_mc >= W1_obs}) / (1 + n_mc)), so the test's
    size is calibrated at every n (tests/core/test_nulls_stats.py checks about 5% rejections of
    null samples at n = 50, 200, 1000)."""
    return truncated_null_tests([sample], k, m, cutoff, n_mc, seed)[0]


def expected_w1_between_samples(n: int, k: int, m: int, cutoff: float | None, n_mc: int = 200,
                                seed: int = 0) -> float:
    """Mean W1 between two independent samples of size n from the (truncated) null: the
    random-vs-random distance that sample size alone gives."""
    rng = np.random.default_rng(seed)
    cut = cutoff if cutoff is not None else 1.0
    levels = np.linspace(0, 1, 65_537)
    table = nulls.truncated_quantile(levels, k, m, cut)
    vals = [wasserstein1(np.interp(rng.uniform(size=n), levels, table), np.interp(rng.uniform(size=n), levels, table))
            for _ in range(n_mc)]
    return float(np.mean(vals))


def null_cutoff(k: int, m: int, q: float = 0.99) -> float:
    """MCS above which a feature beats chance: the q-quantile of the analytic null for K, M."""
    return float(nulls.mcs_null_quantile(q, k, m))


@dataclass
class CountVsNull:
    """k of n against a null rate p0: see :func:`count_vs_null`."""

    k: int
    n: int
    p0: float
    expected: float  # n * p0
    ratio: float  # k / (n * p0)
    rate: float  # k / n
    rate_low: float  # two-sided Wilson interval of the rate
    rate_high: float
    p_value: float  # exact binomial test, ``alternative``
    alternative: str
    level: float

    @property
    def ratio_low(self) -> float:
        """The rate interval in units of the null rate: rate_low / p0."""
        return self.rate_low / self.p0

    @property
    def ratio_high(self) -> float:
        return self.rate_high / self.p0

    @property
    def p_text(self) -> str:
        return format_p(self.p_value)


def count_vs_null(k: int, n: int, p0: float, *, alternative: str = "greater", level: float = 0.95) -> CountVsNull:
    """Is a count of k events in n trials more than a null rate p0 predicts?

    E.g. 11 of 76 alive low features recur in a second seed, where chance (the 99% cutoff)
    predicts n·p0 = 0.76. Under the null K ~ Binomial(n, p0); ``scipy.stats.binomtest`` gives
    the exact p-value (for "greater", P(K >= k) = Σ_{j>=k} C(n, j) p0^j (1-p0)^(n-j)), and its
    ``proportion_ci(method="wilson")`` the two-sided Wilson (1927) score interval of the rate
    at ``level``: the rates p with |k/n - p| <= z sqrt(p(1-p)/n), whatever ``alternative`` is.
    ``ratio`` is the observed count over the expected one.
    """
    if isinstance(k, bool) or isinstance(n, bool) or not isinstance(k, (int, np.integer)) \
            or not isinstance(n, (int, np.integer)):
        raise ValueError(f"k and n must be integers, got {k!r} and {n!r}")
    if n < 1:
        raise ValueError(f"no trials (n = {n}): a rate needs n >= 1")
    if not 0 <= k <= n:
        raise ValueError(f"the count k must lie in [0, n] = [0, {n}], got {k}")
    if not 0.0 < p0 < 1.0:
        raise ValueError(f"the null rate p0 must lie in (0, 1), got {p0}")
    if alternative not in ("greater", "less", "two-sided"):
        raise ValueError(f"alternative must be 'greater', 'less' or 'two-sided', got {alternative!r}")
    k, n, p0 = int(k), int(n), float(p0)
    ci = sps.binomtest(k, n, p0, alternative="two-sided").proportion_ci(confidence_level=level, method="wilson")
    p = sps.binomtest(k, n, p0, alternative=alternative).pvalue
    return CountVsNull(k, n, p0, n * p0, k / (n * p0), k / n, float(ci.low), float(ci.high), float(p), alternative,
                       level)


@dataclass
class Correlation:
    """Pearson's r with its interval and p-value: see :func:`pearson_ci`."""

    r: float
    low: float
    high: float
    p_value: float
    n: int
    level: float

    @property
    def p_text(self) -> str:
        return format_p(self.p_value)


def _pair(x, y) -> tuple[np.ndarray, np.ndarray]:
    x, y = _sample(x, "x"), _sample(y, "y")
    if x.size != y.size:
        raise ValueError(f"x and y need one value per point, got {x.size} and {y.size}")
    if x.size < 3:
        raise ValueError(f"need at least 3 points, got {x.size}")
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        raise ValueError("x or y is constant: the correlation is undefined")
    return x, y


def pearson_ci(x, y, level: float = 0.95) -> Correlation:
    """Pearson's r of paired values, its interval and its p-value (``scipy.stats.pearsonr``).

    The interval is Fisher's (1915, 1921): tanh(atanh(r) ± z_{(1+level)/2} / sqrt(n - 3)), for
    independent points from a bivariate normal; the p-value tests r = 0 (two-sided, exact under
    that model). Points that come in dependent groups need :func:`grouped_linear_fit` instead.
    """
    x, y = _pair(x, y)
    res = sps.pearsonr(x, y)
    ci = res.confidence_interval(confidence_level=level)
    return Correlation(float(res.statistic), float(ci.low), float(ci.high), float(res.pvalue), int(x.size), level)


@dataclass
class GroupedFit:
    """Least-squares line y = intercept + slope·x with percentile intervals from a bootstrap
    over groups: see :func:`grouped_linear_fit`."""

    slope: float
    slope_low: float
    slope_high: float
    intercept: float
    intercept_low: float
    intercept_high: float
    r: float
    r_low: float
    r_high: float
    n_points: int
    n_groups: int
    n_boot: int
    level: float


def _weighted_line(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(slope, intercept, r) of the weighted least-squares line, for each row of weights
    ``w`` [..., N]: slope = Sxy/Sxx, intercept = ȳ - slope·x̄, r = Sxy/sqrt(Sxx Syy), with
    weighted means and sums of centred products. NaN where x or y has no spread."""
    total = w.sum(-1, keepdims=True)
    dx = x - (w * x).sum(-1, keepdims=True) / total
    dy = y - (w * y).sum(-1, keepdims=True) / total
    sxx, syy, sxy = (w * dx * dx).sum(-1), (w * dy * dy).sum(-1), (w * dx * dy).sum(-1)
    tiny = 1e-12 * max(float(np.ptp(x)), 1e-300) ** 2 * total[..., 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.where(sxx > tiny, sxy / sxx, np.nan)
        intercept = (w * y).sum(-1) / total[..., 0] - slope * (w * x).sum(-1) / total[..., 0]
        r = np.where((sxx > tiny) & (syy > 0), sxy / np.sqrt(sxx * syy), np.nan)
    return np.stack([slope, intercept, r])


def grouped_linear_fit(x, y, groups, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> GroupedFit:
    """Least-squares fit of y on x, with intervals that respect dependent groups of points.

    Points of one group (e.g. the nested sizes of one trained family) are not independent, so
    the bootstrap resamples whole groups with replacement (the cluster or "case" bootstrap,
    Davison & Hinkley 1997 §3.8; Field & Welsh 2007): a replicate that draws group g c_g times
    is the fit with every point of g weighted c_g. ``scipy.stats.bootstrap`` draws the group
    indices (seeded by ``seed``) and takes percentile intervals at ``level`` for slope, intercept
    and Pearson r together. With one point per group it is the ordinary pairs bootstrap. Needs at
    least 3 groups; raises if a replicate leaves x without spread (too few groups, or groups
    each at a single x).
    """
    x, y = _pair(x, y)
    labels = np.asarray(groups).ravel()
    if labels.size != x.size:
        raise ValueError(f"need one group label per point, got {labels.size} for {x.size} points")
    _, group_of = np.unique(labels, return_inverse=True)
    n_groups = int(group_of.max()) + 1
    if n_groups < 3:
        raise ValueError(f"a bootstrap over groups needs at least 3 groups, got {n_groups}")

    def line(idx: np.ndarray, axis: int = -1) -> np.ndarray:
        idx = np.moveaxis(np.asarray(idx), axis, -1)
        flat = idx.reshape(-1, n_groups)
        offsets = np.arange(flat.shape[0])[:, None] * n_groups
        counts = np.bincount((flat + offsets).ravel(), minlength=flat.size).reshape(flat.shape)
        out = _weighted_line(x, y, counts[:, group_of].astype(np.float64))
        return out.reshape((3, *idx.shape[:-1]))

    estimate = _weighted_line(x, y, np.ones_like(x))
    with warnings.catch_warnings():  # a degenerate replicate is reported below, as an error
        warnings.simplefilter("ignore", sps.DegenerateDataWarning)
        res = sps.bootstrap((np.arange(n_groups),), line, n_resamples=n_boot, vectorized=True,
                            batch=max(1, 2_000_000 // x.size), confidence_level=level, method="percentile",
                            rng=np.random.default_rng(seed))
    if np.isnan(res.bootstrap_distribution).any():
        raise ValueError("some bootstrap replicates have no spread in x (or y): too few groups for this bootstrap")
    low, high = res.confidence_interval
    return GroupedFit(float(estimate[0]), float(low[0]), float(high[0]), float(estimate[1]), float(low[1]),
                      float(high[1]), float(estimate[2]), float(low[2]), float(high[2]), int(x.size), n_groups,
                      n_boot, level)


@dataclass
class Split:
    cutoff: float
    n_high: int
    n_low: int

    @property
    def frac_high(self) -> float:
        return self.n_high / (self.n_high + self.n_low)


def split_high_low(values, cutoff: float = POST_CUTOFF) -> Split:
    """Count features with MCS >= ``cutoff`` (high) and below it (low)."""
    arr = _sample(values)
    n_high = int((arr >= cutoff).sum())
    return Split(cutoff, n_high, arr.size - n_high)


@dataclass
class CrossCorrelation:
    pearson: float
    spearman: float
    frac_low_low: float  # share of features low against both larger dictionaries
    frac_high_high: float  # share high against both
    n: int


def cross_dictionary_correlation(mcs_b, mcs_c, cutoff: float = POST_CUTOFF) -> CrossCorrelation:
    """Correlation of each feature's MCS against two larger dictionaries B and C."""
    b, c = _sample(mcs_b, "MCS against B"), _sample(mcs_c, "MCS against C")
    if b.size != c.size:
        raise ValueError(f"need one value per feature in both, got {b.size} and {c.size}")
    if b.size < 3:
        raise ValueError("need at least 3 features for a correlation")
    return CrossCorrelation(
        pearson=float(sps.pearsonr(b, c).statistic),
        spearman=float(sps.spearmanr(b, c).statistic),
        frac_low_low=float(np.mean((b < cutoff) & (c < cutoff))),
        frac_high_high=float(np.mean((b >= cutoff) & (c >= cutoff))),
        n=int(b.size),
    )


def histogram_modes(values, bins: int = 50, range_: tuple[float, float] = (0.0, 1.0),
                    split: float = POST_CUTOFF) -> tuple[float, float]:
    """Locations of the tallest histogram bin below and at/above ``split`` (the two modes).

    Returns NaN for a side that holds no values.
    """
    arr = _sample(values)
    counts, edges = np.histogram(arr, bins=bins, range=range_)
    centers = (edges[:-1] + edges[1:]) / 2
    low, high = centers < split, centers >= split
    low_mode = float(centers[low][np.argmax(counts[low])]) if counts[low].sum() else float("nan")
    high_mode = float(centers[high][np.argmax(counts[high])]) if counts[high].sum() else float("nan")
    return low_mode, high_mode


@dataclass
class Bimodality:
    low_mode: float
    high_mode: float
    low_peak: float  # histogram density at each mode
    high_peak: float
    valley: float  # lowest density between the modes
    low_mass: float  # share of values below ``split``
    bimodal: bool


def bimodality(values, bins: int = 50, split: float = POST_CUTOFF, dip: float = 0.5,
               min_mass: float = 0.05) -> Bimodality:
    """Bimodal: at least ``min_mass`` of the values on each side of ``split``, and between the
    two modes a valley below ``dip`` times the smaller peak."""
    arr = _sample(values)
    low_mass = float(np.mean(arr < split))
    density, edges = np.histogram(arr, bins=bins, range=(0.0, 1.0), density=True)
    centers = (edges[:-1] + edges[1:]) / 2
    low_mode, high_mode = histogram_modes(arr, bins=bins, split=split)
    if np.isnan(low_mode) or np.isnan(high_mode):
        return Bimodality(low_mode, high_mode, float("nan"), float("nan"), float("nan"), low_mass, False)
    i, j = int(np.argmin(np.abs(centers - low_mode))), int(np.argmin(np.abs(centers - high_mode)))
    valley = float(density[i : j + 1].min())
    low_peak, high_peak = float(density[i]), float(density[j])
    bimodal = min(low_mass, 1 - low_mass) >= min_mass and valley < dip * min(low_peak, high_peak)
    return Bimodality(low_mode, high_mode, low_peak, high_peak, valley, low_mass, bimodal)
