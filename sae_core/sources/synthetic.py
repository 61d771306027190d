"""Synthetic activations with known ground-truth features.

Each sample is a sparse non-negative combination of fixed unit directions::

    x = sum_i a_i * s_i * g_i + noise,   s_i ~ Bernoulli(p_i),  a_i ~ U(lo, hi)

``g_i`` [n_features, d_in] are the true features. Independent features fire with a
power-law frequency ``p_i ∝ rank_i^-freq_exponent`` scaled so that on average
``mean_active`` features fire per sample (the toy model of Sharkey et al. 2022 uses
the same recipe). Optionally some features are parents with children: a child can
fire only when its parent fires (with probability ``child_prob`` then), and its
direction has cosine ``child_cos`` with the parent, so a wide dictionary can split a
parent into parent+child combinations.

Batch ``k`` is drawn from a generator (numpy's PCG64) seeded by ``(seed, k)``: streams are
reproducible, any batch can be regenerated (so training resumes exactly), and
memory never grows with the number of samples drawn.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class SyntheticConfig:
    d_in: int = 128  # activation width (replication: 128)
    n_features: int = 2048  # true features: above 256..1024, below 4096..8192
    mean_active: float = 8.0  # expected number of features firing per sample
    freq_exponent: float = 1.0  # power-law exponent of feature frequencies
    max_freq: float = 0.5  # cap on any one feature's firing probability
    # Activation magnitudes a_i ~ U(low, high). Their scale sets the effective sparsity
    # penalty (MSE grows as scale^2, L1 as scale): with l1_coeff 1e-3 this range gives
    # learned L0 of the order of the true one.
    magnitude_low: float = 0.15
    magnitude_high: float = 0.45
    n_parents: int = 64  # features that have children (0 disables the hierarchy)
    children_per_parent: int = 4  # children per parent (counted inside n_features)
    child_prob: float = 0.3  # P(child fires | parent fires)
    child_cos: float = 0.5  # cosine between a child's direction and its parent's
    noise_std: float = 0.0  # isotropic Gaussian noise added to every sample
    seed: int = 0  # seeds the true features and the sample stream

    def __post_init__(self) -> None:
        positive_ints = ("d_in", "n_features")
        for name in positive_ints:
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"SyntheticConfig.{name} must be a positive integer, got {value!r}")
        n_children = self.n_parents * self.children_per_parent
        if self.n_parents < 0 or self.children_per_parent < 0:
            raise ValueError("n_parents and children_per_parent must be >= 0")
        if self.n_parents + n_children > self.n_features:
            raise ValueError(
                f"n_parents + n_parents*children_per_parent = {self.n_parents + n_children} "
                f"exceeds n_features = {self.n_features}"
            )
        if not 0 < self.mean_active < self.n_features * self.max_freq:
            raise ValueError("mean_active must be in (0, n_features * max_freq)")
        if not 0 < self.max_freq <= 1 or not 0 <= self.child_prob <= 1:
            raise ValueError("max_freq must be in (0, 1] and child_prob in [0, 1]")
        if not -1 <= self.child_cos <= 1:
            raise ValueError("child_cos must be in [-1, 1]")
        if not 0 <= self.magnitude_low <= self.magnitude_high:
            raise ValueError("need 0 <= magnitude_low <= magnitude_high")
        if self.noise_std < 0:
            raise ValueError("noise_std must be >= 0")


class SyntheticSource:
    """Activation source with ground truth; see the module docstring.

    Attributes:
        true_features: [n_features, d_in] unit rows.
        freqs: [n_features] marginal firing probability of each feature.
        parent_of: [n_features] index of the parent, -1 for independent features.
    """

    def __init__(self, cfg: SyntheticConfig | None = None) -> None:
        self.cfg = cfg = cfg or SyntheticConfig()
        self.d_in = cfg.d_in
        gen = torch.Generator().manual_seed(cfg.seed)
        n_children = cfg.n_parents * cfg.children_per_parent
        n_indep = cfg.n_features - n_children  # parents are among the independent features
        feats = torch.randn(cfg.n_features, cfg.d_in, generator=gen)
        feats /= feats.norm(dim=1, keepdim=True)
        # Parents are drawn among the independent features at random ranks.
        parents = torch.randperm(n_indep, generator=gen)[: cfg.n_parents]
        parent_of = torch.full((cfg.n_features,), -1, dtype=torch.long)
        child_ids = torch.arange(n_indep, cfg.n_features)
        parent_of[child_ids] = parents.repeat_interleave(cfg.children_per_parent)
        if n_children:
            p_dir = feats[parent_of[child_ids]]
            orth = feats[child_ids] - (feats[child_ids] * p_dir).sum(1, keepdim=True) * p_dir
            orth /= orth.norm(dim=1, keepdim=True)
            sin = (1 - cfg.child_cos**2) ** 0.5
            feats[child_ids] = cfg.child_cos * p_dir + sin * orth
        self.true_features = feats  # [n_features, d_in]
        self.parent_of = parent_of
        self.n_indep = n_indep
        self.child_ids = child_ids
        self.indep_p = self._solve_frequencies()  # [n_indep]
        freqs = torch.empty(cfg.n_features, dtype=torch.float64)
        freqs[:n_indep] = self.indep_p
        if n_children:
            freqs[child_ids] = self.indep_p[parent_of[child_ids]] * cfg.child_prob
        self.freqs = freqs
        self._indep_p32 = self.indep_p.numpy().astype(np.float32)  # [n_indep], compared with float32 uniforms
        self._child_parents = self.parent_of[self.child_ids].numpy()  # [n_children]

    def _solve_frequencies(self) -> torch.Tensor:
        """p_i = min(max_freq, c * (i+1)^-a), with c found by bisection so E[#active] = mean_active."""
        cfg = self.cfg
        ranks = torch.arange(1, self.n_indep + 1, dtype=torch.float64)
        base = ranks.pow(-cfg.freq_exponent)
        parent_mask = torch.zeros(self.n_indep, dtype=torch.float64)
        parent_mask[self.parent_of[self.child_ids].unique()] = 1.0
        weight = 1 + parent_mask * cfg.children_per_parent * cfg.child_prob

        def expected(c: float) -> float:
            return float(((c * base).clamp(max=cfg.max_freq) * weight).sum())

        lo, hi = 0.0, 1.0
        while expected(hi) < cfg.mean_active:
            hi *= 2
            if hi > 1e12:
                raise ValueError("mean_active is unreachable with these frequencies")
        for _ in range(200):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if expected(mid) < cfg.mean_active else (lo, mid)
        return (hi * base).clamp(max=cfg.max_freq)

    def batch(self, index: int, batch_size: int, return_codes: bool = False):
        """Batch ``index`` of the stream: x [batch_size, d_in] (and the codes a [batch_size, n_features]).

        Drawn with numpy's PCG64 seeded by (seed, index): a float32 uniform per row and feature
        decides which fire, and magnitudes are drawn for the firing entries only (about
        ``mean_active`` per row), so a batch of 256 costs a few milliseconds."""
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if index < 0:
            raise ValueError(f"batch index must be >= 0, got {index}")
        cfg = self.cfg
        rng = np.random.default_rng([cfg.seed & (2**64 - 1), index])
        fire = np.empty((batch_size, cfg.n_features), dtype=bool)
        fire[:, : self.n_indep] = rng.random((batch_size, self.n_indep), dtype=np.float32) < self._indep_p32
        if len(self.child_ids):
            child_fire = rng.random((batch_size, len(self.child_ids)), dtype=np.float32) < np.float32(cfg.child_prob)
            fire[:, self.n_indep :] = child_fire & fire[:, self._child_parents]
        rows, cols = np.nonzero(fire)
        mags = rng.random(len(rows), dtype=np.float32)
        codes = torch.zeros(batch_size, cfg.n_features)
        codes[torch.from_numpy(rows), torch.from_numpy(cols)] = torch.from_numpy(
            np.float32(cfg.magnitude_low) + np.float32(cfg.magnitude_high - cfg.magnitude_low) * mags)
        x = codes @ self.true_features  # [B, d_in]
        if cfg.noise_std:
            x += cfg.noise_std * torch.from_numpy(rng.standard_normal(x.shape, dtype=np.float32))
        return (x, codes) if return_codes else x

    def describe(self) -> dict[str, Any]:
        return {"source": "synthetic", **dataclasses.asdict(self.cfg)}
