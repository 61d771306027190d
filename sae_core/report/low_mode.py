"""What the low-MCS features are: families for the ablations, the seed ceiling and the sweep.

The latents themselves are classified in :mod:`sae_core.report.latents` (never fires / ultralow /
active on held-out activations; unmoved / moved from initialisation) and the answer per setting
is assembled in :mod:`sae_core.report.answer`. This module trains and compares the variants:
other initialisations, resampling, noise, a second seed, and the L1 / scale sweep.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sae_core import nulls, stats
from sae_core.report import analysis, latents
from sae_core.report.pipeline import Family, ensure_family, merge_overrides
from sae_core.similarity import max_cosine_similarity
from sae_core.train import TrainConfig


def split_cutoff(family: Family, against: int, null_q: float = 0.99) -> float:
    """The high/low split for K = d_in and M = ``against``: the null's ``null_q`` quantile."""
    return stats.null_cutoff(family.d_in, against, null_q)


mcs = analysis.mcs_values


def ablation_name(overrides: Mapping[str, Any]) -> str:
    if not overrides:
        return "baseline"
    parts = []
    for key, value in overrides.items():
        if isinstance(value, Mapping):
            parts += [f"{k}={v}" for k, v in value.items()]
        else:
            parts.append(f"{key}={value}")
    return ", ".join(parts)


def applies_to(overrides: Mapping[str, Any], source: str) -> bool:
    """Whether a setting means anything for a source: a block of one source's settings
    (``{"synthetic": {"noise_std": 0.05}}``) only for that source; training settings for all."""
    blocks = {k for k in overrides if k in ("synthetic", "lm")}
    return not blocks or source in blocks


def source_label(family: Family) -> str:
    return {"lm": "language model", "synthetic": "synthetic"}.get(family.params["source"], family.params["source"])


def ablation_family(base: Family, overrides: Mapping[str, Any], sizes: Sequence[int], progress: bool = True) -> Family:
    """The family with ``base``'s settings, ``sizes`` and ``overrides`` (trained or loaded from the cache)."""
    from sae_core.report.pipeline import family_params

    if not overrides and set(sizes) <= set(base.sizes):
        # every dictionary of a family trains on its own (same batches, seed from its size),
        # so the baseline at a subset of sizes is that subset of the family
        return base.subset(sizes)
    params = family_params(merge_overrides({**base.params, "sizes": list(sizes)}, overrides))
    return base if params == base.params else ensure_family(params, progress=progress)


# ------------------------------------------------------------------ the seed ceiling
@dataclass
class SeedCeiling:
    seeds: tuple[int, int]
    cutoff: float  # null cutoff for K = d_in and M = the large size
    same_size: dict[int, float]  # share of features of seed A's size J with MCS >= cutoff(J) against seed B's J
    across_sizes: dict[int, float]  # share of seed A's J with MCS >= cutoff(large) against seed A's large
    cutoffs: dict[int, float]


def seed_ceiling(family: Family, other: Family, mid: int, large: int, null_q: float = 0.99) -> SeedCeiling:
    """Same-size MCS between two seeds against MCS across sizes (Paulo & Belrose 2025 measure the former)."""
    sizes = [s for s in family.sizes if s in other.saes]
    cutoffs = {s: stats.null_cutoff(family.d_in, s, null_q) for s in sizes}
    same = {}
    for s in sizes:
        v = max_cosine_similarity(family.features(s), other.features(s)).values.numpy()
        same[s] = float((v >= cutoffs[s]).mean())
    across = {s: float((mcs(family, s, large) >= cutoffs[large]).mean()) for s in sizes if s < large}
    return SeedCeiling((family.params["seed"], other.params["seed"]), cutoffs[large], same, across, cutoffs)


def _reconstruction_edge(family: Family, small: int, large: int, chosen: np.ndarray, n_samples: int,
                         min_fires: int) -> tuple[int, int]:
    """For each latent of ``small``: on the held-out samples where it fires, does the small
    dictionary reconstruct better, relative to the large one, than it does on all samples?
    With squared errors e_s, e_l per sample, the latent counts when
    mean(e_s | fires) / mean(e_l | fires) < mean(e_s) / mean(e_l): the larger dictionary lacks
    something those samples carry, beyond any overall difference between the two.
    Returns (# that count, # scored: latents firing on at least ``min_fires`` samples)."""
    if chosen.size == 0:
        return 0, 0
    x = family.sample(n_samples)
    sae_s, sae_l = family.saes[small], family.saes[large]
    pick = torch.from_numpy(chosen)
    parts = []
    with torch.no_grad():  # in chunks: the [n, large] codes at once would be gigabytes
        for xc in x.split(8192):
            codes = sae_s.encode(xc)
            parts.append(((sae_s.decode(codes) - xc).pow(2).sum(1), (sae_l(xc) - xc).pow(2).sum(1),
                          codes[:, pick] > 0))
    err_s, err_l, fires = (torch.cat(p) for p in zip(*parts, strict=True))  # fires [n, len(chosen)]
    overall = float(err_s.mean() / err_l.mean().clamp_min(1e-30))
    better = scored = 0
    for j in range(chosen.size):
        mask = fires[:, j]
        if int(mask.sum()) >= min_fires:
            scored += 1
            better += bool(float(err_s[mask].mean() / err_l[mask].mean().clamp_min(1e-30)) < overall)
    return better, scored


def null_mode(family: Family, against: int) -> float:
    return nulls.mcs_null_mode(family.d_in, against)


# ------------------------------------------------------------------ sparsity pressure and scale
@dataclass
class SweepRow:
    """One setting of the sweep over the L1 coefficient and activation normalisation, on one source."""

    source: str
    name: str
    l1_coeff: float
    normalized: bool
    activation_scale: float  # the constant the activations were multiplied by (1 without normalisation)
    init: str  # "transposed" (this report's) or "post" (the 2023 code's)
    against: int
    high_post: dict[int, float]  # per smaller size: share with MCS >= 0.5 against `against` (the post's split)
    low_share: dict[int, float]  # per smaller size: share below the null cutoff
    never_share: dict[int, float]  # per size: share that never fires on the held-out activations
    post_numbers: bool | None  # > 90% high at 256 and < 25% at 4096; None when the sizes lack 256 or 4096


POST_FIRST, POST_MID = 256, 4096  # the post: more than 90% of 256's features high, fewer than 25% of 4096's


def sweep_row(family: Family, name: str, null_q: float = 0.99, n_heldout: int = 327680) -> SweepRow:
    large = family.sizes[-1]
    cut = split_cutoff(family, large, null_q)
    values = {s: mcs(family, s, large) for s in family.sizes if s < large}
    high = {s: float((v >= stats.POST_CUTOFF).mean()) for s, v in values.items()}
    post = (high[POST_FIRST] > 0.9 and high[POST_MID] < 0.25) if {POST_FIRST, POST_MID} <= set(high) else None
    defaults = TrainConfig()
    return SweepRow(
        source_label(family), name, float(family.params.get("l1_coeff", defaults.l1_coeff)),
        bool(family.params.get("normalize_activations", False)), family.activation_scale,
        str(family.params.get("init", defaults.init)), large, high,
        {s: float((v < cut).mean()) for s, v in values.items()},
        {s: float((latents.heldout_fires(family, s, n_heldout) == 0).mean()) for s in family.sizes}, post,
    )


def raw_activation_norm(family: Family, n_batches: int = 64) -> float:
    """Mean squared norm of the source's raw activations over the first ``n_batches`` training
    batches: the scale the L1 coefficient acts against, and what normalisation divides out."""
    from sae_core.train import activation_scale

    return family.d_in / activation_scale(family.source, int(family.params["batch_size"]), family.d_in,
                                          n_batches) ** 2


def alpha_sentence(rows: Sequence[SweepRow], small: int) -> str:
    """Per source, normalisation and initialisation: the L1 coefficients at which the post's numbers
    appear; then whether normalisation brings the sources together (mean gap in low share at
    ``small`` over the α both sources share, with the report's initialisation)."""
    if not rows:
        return ""
    if all(r.post_numbers is None for r in rows):
        return (f"The sweep's dictionaries lack size {POST_FIRST} or {POST_MID}, so the post's numbers (more than "
                f"90% high at {POST_FIRST}, fewer than 25% at {POST_MID}) are not checked.")
    default_init = TrainConfig().init
    parts = []
    for source in dict.fromkeys(r.source for r in rows):
        for init in dict.fromkeys(r.init for r in rows):
            for normalized in (False, True):
                mine = [r for r in rows if r.source == source and r.normalized == normalized and r.init == init]
                if not mine:
                    continue
                hits = sorted(r.l1_coeff for r in mine if r.post_numbers)
                tried = ", ".join(f"{a:g}" for a in sorted({r.l1_coeff for r in mine}))
                parts.append(
                    f"on the {source} {'with' if normalized else 'without'} normalisation"
                    + ("" if init == default_init else f" and the {init} initialisation") + ", "
                    + (f"at α = {', '.join(f'{a:g}' for a in hits)}" if hits else "at none of the α tried")
                    + f" (tried: {tried})"
                )
    text = (f"The post's numbers (more than 90% of the {POST_FIRST} features with MCS ≥ 0.5 against the largest "
            f"dictionary, fewer than 25% of the {POST_MID}) appear " + "; ".join(parts) + ".")
    sources = list(dict.fromkeys(r.source for r in rows))
    if len(sources) == 2:
        gaps = {}
        for normalized in (False, True):
            by = {(r.source, r.l1_coeff): r.low_share.get(small) for r in rows
                  if r.normalized == normalized and r.init == default_init}
            pairs = [(by[(sources[0], a)], by[(sources[1], a)]) for (src, a) in by
                     if src == sources[0] and (sources[1], a) in by and by[(sources[0], a)] is not None
                     and by[(sources[1], a)] is not None]
            if pairs:
                gaps[normalized] = (float(np.mean([abs(x - y) for x, y in pairs])), len(pairs))
        if len(gaps) == 2:
            (raw, n_raw), (norm, n_norm) = gaps[False], gaps[True]
            text += (f" Between the two sources, the low share at {small} differs by {raw:.1%} on average over "
                     f"{n_raw} values of α without normalisation and by {norm:.1%} over {n_norm} with it: "
                     + ("normalisation brings the sources together." if norm < raw / 2 else
                        "normalisation does not remove the dependence on the source." if norm >= raw else
                        "normalisation narrows the gap but does not remove it."))
    return text
