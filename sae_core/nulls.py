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

That null is right for directions uniform on the whole sphere: decoder rows still at their
random initialisation. Trained features live where the activations do, and activations keep
most of their variance in far fewer than d principal components, so chance reaches a much
higher MCS there. :func:`span_null_mcs` and :func:`gaussian_null_mcs` sample that chance
level for a given reference dictionary: directions uniform in the span of the top principal
components of the activations, or drawn from a Gaussian with the activations' mean and
covariance. When the activations fill exactly k dimensions isotropically and the reference
rows are random inside them, the first is the analytic null with K = k.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import integrate, special

from sae_core.similarity import max_cosine_similarity


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


# ------------------------------------------------------------------ chance inside the data's span
def activation_moments(activations, chunk: int = 65_536) -> tuple[np.ndarray, np.ndarray]:
    """Mean [d] and covariance [d, d] (divisor n - 1) of activations [n, d] (NumPy or torch,
    n >= 2), accumulated in float64 over chunks of rows so no float64 copy of the whole array
    is made: cov = (Σ x xᵀ - n x̄ x̄ᵀ) / (n - 1)."""
    x = activations if isinstance(activations, (np.ndarray, torch.Tensor)) else np.asarray(activations)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 1:
        raise ValueError(f"activations must be [n >= 2, d >= 1], got shape {tuple(x.shape)}")
    n, d = x.shape
    total, second = np.zeros(d), np.zeros((d, d))
    for start in range(0, n, chunk):
        part = x[start:start + chunk]
        part = np.asarray(part.detach().cpu() if isinstance(part, torch.Tensor) else part, dtype=np.float64)
        if not np.isfinite(part).all():
            raise ValueError("activations contain NaN or inf")
        total += part.sum(0)
        second += part.T @ part
    mean = total / n
    cov = (second - n * np.outer(mean, mean)) / (n - 1)
    return mean, (cov + cov.T) / 2


def _moments(activations, mean, cov) -> tuple[np.ndarray, np.ndarray]:
    if (activations is None) == (cov is None):
        raise ValueError("give either activations [n, d] or their covariance cov [d, d] (and mean)")
    if activations is not None:
        if mean is not None:
            raise ValueError("mean is computed from the activations; give it only with cov")
        return activation_moments(activations)
    cov = np.asarray(cov, dtype=np.float64)
    if cov.ndim != 2 or cov.shape[0] != cov.shape[1] or not np.allclose(cov, cov.T, atol=1e-10 * np.abs(cov).max()):
        raise ValueError(f"cov must be a symmetric [d, d] matrix, got shape {cov.shape}")
    mean = np.zeros(cov.shape[0]) if mean is None else np.asarray(mean, dtype=np.float64).ravel()
    if mean.shape != (cov.shape[0],):
        raise ValueError(f"mean must have {cov.shape[0]} entries, got {mean.size}")
    return mean, cov


def _principal(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (descending, negatives from rounding set to 0) and eigenvectors (columns)."""
    values, vectors = np.linalg.eigh(cov)
    order = np.argsort(values)[::-1]
    return np.clip(values[order], 0, None), vectors[:, order]


def _dimension(eigenvalues: np.ndarray, share: float) -> int:
    if not 0 < share <= 1:
        raise ValueError(f"the variance share must lie in (0, 1], got {share}")
    total = eigenvalues.sum()
    if total <= 0:
        raise ValueError("the activations have no variance")
    held = np.cumsum(eigenvalues) / total
    return int(np.searchsorted(held, share * (1 - 1e-10)) + 1)  # the tolerance: share = 1 despite rounding


def effective_dimension(activations=None, *, cov=None, share: float = 0.99) -> int:
    """The number k of principal components that hold ``share`` of the variance: the smallest
    k with λ_1 + … + λ_k >= share · Σ_i λ_i, for the eigenvalues λ_1 >= λ_2 >= … of the
    covariance of ``activations`` [n, d] (or of ``cov`` [d, d]); Jolliffe 2002, §6.1.1."""
    _, cov = _moments(activations, None, cov)
    return _dimension(_principal(cov)[0], share)


@dataclass
class SampledNull:
    """MCS against a reference dictionary of directions drawn by a chance model (see
    :func:`span_null_mcs`, :func:`gaussian_null_mcs`)."""

    kind: str  # "span": uniform in the top-PC span; "gaussian": N(mean, cov), normalised
    values: np.ndarray  # [n_draws] MCS of each drawn direction against the reference rows
    q: float
    cutoff: float  # the q-quantile of ``values``: the trained-feature cutoff
    median: float
    dim: int  # principal components holding ``share`` of the variance (the span's dimension)
    share: float
    m: int  # reference rows
    seed: int

    def quantile(self, q: float) -> float:
        return float(np.quantile(self.values, q))


def _mcs_against(directions: np.ndarray, reference, device) -> np.ndarray:
    return max_cosine_similarity(torch.from_numpy(directions), reference, device=device).values.double().numpy()


def _reference_rows(reference, d: int) -> int:
    shape = tuple(np.shape(reference))
    if len(shape) != 2 or shape[1] != d:
        raise ValueError(f"the reference dictionary must be [M, {d}] (rows are features), got {shape}")
    return int(shape[0])


def span_null_mcs(reference, *, activations=None, cov=None, share: float = 0.99, n_draws: int = 4096,
                  q: float = 0.99, seed: int = 0, device: str | None = None) -> SampledNull:
    """Chance MCS against ``reference`` [M, d] for directions that live where the data does.

    The top k principal components of the activations' covariance (``activations`` [n, d], or
    ``cov``), k = :func:`effective_dimension` at ``share``, span a subspace with orthonormal
    basis U_k [d, k]. Each draw is u = U_k z / ||z||, z ~ N(0, I_k): uniform on the unit sphere
    of that span (Muller 1959). Its MCS against the reference rows is
    ``similarity.max_cosine_similarity``. For reference rows random inside the same k
    dimensions this is the analytic null :func:`mcs_null_cdf` with K = k and M rows; against a
    trained dictionary, the level chance reaches for a feature confined to the data's span.
    Returns the ``n_draws`` values (``numpy.random.default_rng(seed)``), their median and
    q-quantile.
    """
    _, cov = _moments(activations, None, cov)
    m = _reference_rows(reference, cov.shape[0])
    eigenvalues, vectors = _principal(cov)
    k = _dimension(eigenvalues, share)
    z = np.random.default_rng(seed).standard_normal((n_draws, k))
    directions = z @ vectors[:, :k].T
    values = _mcs_against(directions / np.linalg.norm(directions, axis=1, keepdims=True), reference, device)
    return SampledNull("span", values, q, float(np.quantile(values, q)), float(np.median(values)), k, share, m, seed)


def gaussian_null_mcs(reference, *, activations=None, mean=None, cov=None, share: float = 0.99,
                      n_draws: int = 4096, q: float = 0.99, seed: int = 0, device: str | None = None) -> SampledNull:
    """Chance MCS against ``reference`` [M, d] for directions of Gaussian stand-ins for the data.

    Each draw is x / ||x|| with x ~ N(μ, Σ), the mean and covariance of ``activations`` [n, d]
    (or ``mean`` and ``cov``; mean 0 when only cov is given), drawn as x = μ + V Λ^{1/2} z,
    z ~ N(0, I_d), from the eigendecomposition Σ = V Λ Vᵀ. Unlike :func:`span_null_mcs` it keeps
    the mean and the unequal variances, so draws crowd where activations do. ``dim`` reports the
    effective dimension at ``share`` for reference. Returns the ``n_draws`` values
    (``numpy.random.default_rng(seed)``), their median and q-quantile.
    """
    mean, cov = _moments(activations, mean, cov)
    m = _reference_rows(reference, cov.shape[0])
    eigenvalues, vectors = _principal(cov)
    z = np.random.default_rng(seed).standard_normal((n_draws, cov.shape[0]))
    x = mean + (z * np.sqrt(eigenvalues)) @ vectors.T
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError("a draw is the zero vector: the mean and covariance are both zero")
    values = _mcs_against(x / norms, reference, device)
    return SampledNull("gaussian", values, q, float(np.quantile(values, q)), float(np.median(values)),
                       _dimension(eigenvalues, share), share, m, seed)
