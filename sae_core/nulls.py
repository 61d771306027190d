"""The analytic null: MCS of one feature against M random directions in K dimensions.

For u uniform on the sphere S^{K-1} and any fixed unit v, the cosine X = <u, v> has
density (e.g. Muirhead 1982, Thm 1.5.7; it is the marginal of a uniform point)::

    f_K(x) = c_K (1 - x^2)^((K-3)/2),  x in [-1, 1],   c_K = Γ(K/2) / (√π Γ((K-1)/2))

Equivalently (1 + X)/2 ~ Beta((K-1)/2, (K-1)/2), so the CDF is the regularised
incomplete beta function F_K(x) = I_{(1+x)/2}(a, a) with a = (K-1)/2.

The MCS against M independent random features is the maximum of M such cosines::

    G(x) = F_K(x)^M,   g(x) = M f_K(x) F_K(x)^(M-1)

For K up to 4096 and M up to 10^6, F_K is within 1e-6 of 1 where G moves, so every
quantity is computed from the upper tail S_K(x) = 1 - F_K(x) = I_{(1-x)/2}(a, a)
and log F_K = log1p(-S_K), never as a power of a number rounded to 1.
"""

from __future__ import annotations

import numpy as np
from scipy import integrate, special


def _check(k: int, m: int) -> None:
    if not isinstance(k, (int, np.integer)) or k < 2:
        raise ValueError(f"the dimension K must be an integer >= 2, got {k!r}")
    if not isinstance(m, (int, np.integer)) or m < 1:
        raise ValueError(f"the number of random features M must be an integer >= 1, got {m!r}")


def cosine_logpdf(x: np.ndarray, k: int) -> np.ndarray:
    """log f_K(x) for one cosine between random directions in K dimensions."""
    _check(k, 1)
    x = np.asarray(x, dtype=np.float64)
    log_c = special.gammaln(k / 2) - 0.5 * np.log(np.pi) - special.gammaln((k - 1) / 2)
    with np.errstate(divide="ignore"):
        out = log_c + (k - 3) / 2 * np.log1p(-(x**2))
    return np.where(np.abs(x) <= 1, out, -np.inf)


def cosine_sf(x: np.ndarray, k: int) -> np.ndarray:
    """S_K(x) = P(X > x) = I_{(1-x)/2}((K-1)/2, (K-1)/2)."""
    a = (k - 1) / 2
    t = np.clip((1 - np.asarray(x, dtype=np.float64)) / 2, 0, 1)
    return special.betainc(a, a, t)


def cosine_cdf(x: np.ndarray, k: int) -> np.ndarray:
    """F_K(x) = P(X <= x)."""
    a = (k - 1) / 2
    t = np.clip((1 + np.asarray(x, dtype=np.float64)) / 2, 0, 1)
    return special.betainc(a, a, t)


def _log_cosine_cdf(x: np.ndarray, k: int) -> np.ndarray:
    """log F_K(x), accurate both where F_K is tiny and where it is within 1e-16 of 1."""
    x = np.asarray(x, dtype=np.float64)
    sf = cosine_sf(x, k)
    cdf = cosine_cdf(x, k)
    with np.errstate(divide="ignore"):
        return np.where(sf < 0.5, np.log1p(-sf), np.log(cdf))


def mcs_null_cdf(x: np.ndarray, k: int, m: int) -> np.ndarray:
    """G(x) = F_K(x)^M: P(MCS <= x) for one feature against M random features in K dims."""
    _check(k, m)
    return np.exp(m * _log_cosine_cdf(x, k))


def mcs_null_logpdf(x: np.ndarray, k: int, m: int) -> np.ndarray:
    """log g(x) = log M + log f_K(x) + (M-1) log F_K(x)."""
    _check(k, m)
    return np.log(m) + cosine_logpdf(x, k) + (m - 1) * _log_cosine_cdf(x, k)


def mcs_null_pdf(x: np.ndarray, k: int, m: int) -> np.ndarray:
    """g(x) = M f_K(x) F_K(x)^(M-1), the density of the null MCS."""
    return np.exp(mcs_null_logpdf(x, k, m))


def mcs_null_quantile(q: np.ndarray, k: int, m: int) -> np.ndarray:
    """G^{-1}(q): solve F_K(x) = q^(1/M) through the tail, S_K(x) = -expm1(log(q)/M)."""
    _check(k, m)
    q = np.asarray(q, dtype=np.float64)
    if np.any((q < 0) | (q > 1)):
        raise ValueError("quantile levels must lie in [0, 1]")
    a = (k - 1) / 2
    with np.errstate(divide="ignore"):
        tail = -np.expm1(np.log(q) / m)  # S_K(x) at the quantile, in (0, 1]
    return 1 - 2 * special.betaincinv(a, a, tail)


def mcs_null_mean(k: int, m: int) -> float:
    """E[MCS] = ∫_0^1 G^{-1}(u) du, integrated over the quantile function (smooth and bounded)."""
    _check(k, m)
    val, _ = integrate.quad(lambda u: float(mcs_null_quantile(u, k, m)), 0, 1, limit=200, epsabs=1e-10)
    return float(val)


def sample_mcs_null(n: int, k: int, m: int, seed: int = 0) -> np.ndarray:
    """n draws from the analytic null by inverse-CDF sampling (no random dictionaries built)."""
    _check(k, m)
    u = np.random.default_rng(seed).uniform(size=n)
    return mcs_null_quantile(u, k, m)


def mcs_null_mode(k: int, m: int) -> float:
    """The mode of the null density g = G': where the MCS of a random feature is most likely.

    Found by bounded scalar minimisation of -log g between the 0.1% and 99.9% quantiles,
    where g is unimodal (a product of a power of F_K and a unimodal f_K).
    """
    _check(k, m)
    from scipy import optimize

    lo, hi = mcs_null_quantile(np.array([1e-3, 1 - 1e-3]), k, m)
    res = optimize.minimize_scalar(lambda x: -float(mcs_null_logpdf(np.array([x]), k, m)[0]),
                                   bounds=(float(lo), float(hi)), method="bounded", options={"xatol": 1e-7})
    return float(res.x)


def truncated_quantile(q: np.ndarray, k: int, m: int, cutoff: float) -> np.ndarray:
    """Quantiles of the null conditioned on MCS < ``cutoff``: G^{-1}(q · G(cutoff))."""
    mass = float(mcs_null_cdf(np.array([cutoff]), k, m)[0])
    if mass <= 0:
        raise ValueError(f"the MCS null for K={k}, M={m} has no mass below {cutoff}")
    return mcs_null_quantile(np.asarray(q, dtype=np.float64) * mass, k, m)
