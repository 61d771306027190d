"""Distances between MCS distributions, the high/low split and cross-dictionary correlation.

Earthmover (Wasserstein-1) distance between distributions P and Q on the line::

    W1(P, Q) = ∫ |F_P(x) - F_Q(x)| dx = ∫_0^1 |F_P^{-1}(u) - F_Q^{-1}(u)| du

(Vallender 1974). Between two samples it is computed exactly from the merged sorted
values; against the analytic null of :mod:`sae_core.nulls` through the quantile form.
"""

from __future__ import annotations

import functools
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
    """W1 between the empirical distributions of samples ``u`` and ``v`` (equal weights)."""
    u, v = np.sort(_sample(u, "first sample")), np.sort(_sample(v, "second sample"))
    grid = np.concatenate([u, v])
    grid.sort(kind="mergesort")
    widths = np.diff(grid)
    cdf_u = np.searchsorted(u, grid[:-1], side="right") / u.size
    cdf_v = np.searchsorted(v, grid[:-1], side="right") / v.size
    return float(np.sum(np.abs(cdf_u - cdf_v) * widths))


def wasserstein1_to_null(sample, k: int, m: int, n_grid: int = 200_000) -> float:
    """W1 between a sample and the analytic MCS null G = F_K^M.

    ∫_0^1 |Q_emp(u) - G^{-1}(u)| du with the empirical quantile Q_emp piecewise
    constant; evaluated at ``n_grid`` midpoints (error O(1/n_grid)).
    """
    x = np.sort(_sample(sample))
    u = (np.arange(n_grid) + 0.5) / n_grid
    q_emp = x[np.minimum((u * x.size).astype(np.int64), x.size - 1)]
    return float(np.mean(np.abs(q_emp - nulls.mcs_null_quantile(u, k, m))))


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


def bootstrap_wasserstein(u, v=None, *, k: int | None = None, m: int | None = None,
                          n_boot: int = 200, level: float = 0.95, seed: int = 0) -> BootstrapCI:
    """Percentile bootstrap interval for W1(u, v), or for W1(u, null(K, M)) when ``v`` is None.

    Each replicate resamples every sample with replacement (the analytic null is fixed).
    """
    u = _sample(u)
    if v is None and (k is None or m is None):
        raise ValueError("give a second sample v, or k and m for the analytic null")
    rng = np.random.default_rng(seed)

    def dist(a: np.ndarray, b: np.ndarray | None) -> float:
        return wasserstein1(a, b) if b is not None else wasserstein1_to_null(a, k, m, n_grid=20_000)

    v_arr = None if v is None else _sample(v)
    reps = np.empty(n_boot)
    for r in range(n_boot):
        ub = rng.choice(u, u.size)
        vb = None if v_arr is None else rng.choice(v_arr, v_arr.size)
        reps[r] = dist(ub, vb)
    alpha = (1 - level) / 2
    return BootstrapCI(dist(u, v_arr), float(np.quantile(reps, alpha)), float(np.quantile(reps, 1 - alpha)),
                       level, n_boot)


@dataclass
class TruncatedNullTest:
    """Monte Carlo test of "this low part is the random null, restricted below the cutoff".

    statistic: W1 of the sample to the truncated null; ``expected`` and ``spread`` are the mean
    and standard deviation of that W1 over ``n_mc`` samples of the same size drawn from the
    truncated null itself (what chance alone gives at this n); ``p_value`` =
    (1 + #{W1_mc >= W1_obs}) / (1 + n_mc)."""

    n: int
    cutoff: float
    w1: float
    expected: float
    spread: float
    p_value: float
    n_mc: int

    def consistent(self, level: float = 0.05) -> bool:
        return self.p_value > level


_GRID = 4096  # quantile levels at which W1 to the truncated null is evaluated


def _w1_to_quantiles(sorted_samples: np.ndarray, q_null: np.ndarray) -> np.ndarray:
    """W1 = ∫_0^1 |Q_emp(u) - Q_null(u)| du at the midpoints u_l = (l + 1/2)/L of ``q_null``'s grid,
    for each row of ``sorted_samples`` [R, n] (rows sorted ascending)."""
    n = sorted_samples.shape[-1]
    levels = (np.arange(q_null.size) + 0.5) / q_null.size
    idx = np.minimum((levels * n).astype(np.int64), n - 1)
    return np.abs(sorted_samples[..., idx] - q_null).mean(-1)


def truncated_null_distribution(n: int, k: int, m: int, cutoff: float, n_mc: int = 1000,
                                seed: int = 0) -> np.ndarray:
    """W1 to the truncated null of ``n_mc`` samples of size ``n`` drawn from it (inverse-CDF
    sampling through a 65,536-point quantile table; the same statistic as the observed one).
    Cached per arguments: a chapter tests many sets of the same size."""
    return _truncated_null_distribution(int(n), int(k), int(m), float(cutoff), int(n_mc), int(seed)).copy()


@functools.lru_cache(maxsize=64)
def _truncated_null_distribution(n: int, k: int, m: int, cutoff: float, n_mc: int, seed: int) -> np.ndarray:
    if n <= 0:
        raise ValueError("the sample to test is empty")
    table_levels = np.linspace(0, 1, 65_537)
    table = nulls.truncated_quantile(table_levels, k, m, cutoff)
    q_null = nulls.truncated_quantile((np.arange(_GRID) + 0.5) / _GRID, k, m, cutoff)
    rng = np.random.default_rng(seed)
    out = np.empty(n_mc)
    chunk = max(1, 2_000_000 // n)  # bounded memory: at most ~2M draws at once
    for start in range(0, n_mc, chunk):
        r = min(chunk, n_mc - start)
        draws = np.sort(np.interp(rng.uniform(size=(r, n)), table_levels, table), axis=1)
        out[start:start + r] = _w1_to_quantiles(draws, q_null)
    return out


def truncated_null_test(sample, k: int, m: int, cutoff: float, n_mc: int = 1000,
                        seed: int = 0) -> TruncatedNullTest:
    """Is a learned low-MCS part (values below ``cutoff``) consistent with the random null of
    K dimensions and M reference features, judged at its own sample size n?

    The null restricted to the same region is G(x)/G(cutoff) on x < cutoff. The observed W1 is
    compared with the W1 of ``n_mc`` samples of the same n drawn from that truncated null, so
    the test's size is calibrated at every n (tests/core/test_nulls_stats.py checks about 5%
    rejections of null samples at n = 50, 200, 1000)."""
    x = np.sort(_sample(sample, "low part"))
    q_null = nulls.truncated_quantile((np.arange(_GRID) + 0.5) / _GRID, k, m, cutoff)
    observed = float(_w1_to_quantiles(x[None, :], q_null)[0])
    mc = truncated_null_distribution(x.size, k, m, cutoff, n_mc, seed)
    p = (1 + int((mc >= observed).sum())) / (1 + n_mc)
    return TruncatedNullTest(int(x.size), float(cutoff), observed, float(mc.mean()), float(mc.std()), p, n_mc)


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
