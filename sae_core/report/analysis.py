"""Chapter-level computations: each returns plain numbers and arrays that a chapter plots and glues."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sae_core import nulls, stats
from sae_core.report.pipeline import Family
from sae_core.similarity import gaussian_dictionary, max_cosine_similarity, one_to_one_mcs


def reference_size(family: Family, requested: int) -> int:
    """``requested`` if the family has it, else its largest dictionary."""
    return requested if requested in family.saes else family.sizes[-1]


def compared_pair(family: Family, small_size: int, large_size: int) -> tuple[int, int]:
    """The (small, large) pair a chapter compares: the requested sizes where the family has them;
    else the largest dictionary as reference and the largest size below it as the small one."""
    if len(family.sizes) < 2:
        raise ValueError(f"comparing dictionaries needs at least two sizes, the family has {family.sizes}")
    large = reference_size(family, large_size)
    smaller = [s for s in family.sizes if s < large]
    if not smaller:
        raise ValueError(f"no dictionary of the family {family.sizes} is smaller than the reference {large}")
    small = small_size if small_size in smaller else smaller[-1]
    return small, large


def mcs_values(family: Family, size: int, against: int) -> np.ndarray:
    return max_cosine_similarity(family.features(size), family.features(against)).values.numpy()


@dataclass
class BimodalityRow:
    size: int
    against: int
    n: int
    low_mode: float
    high_mode: float
    frac_high_post: float  # share with MCS >= 0.5
    frac_high_null: float  # share above the null's 99% quantile
    mean: float
    bimodal: bool  # see stats.bimodality
    high_true: float  # synthetic source: share of high-MCS features near a true feature (NaN otherwise)
    low_true: float  # the same among low-MCS features
    low_dead: float  # share of low-MCS features that never fire on held-out data


def smaller_mcs(family: Family, against: int) -> dict[int, np.ndarray]:
    """MCS against ``against`` of every dictionary of the family smaller than it."""
    return {size: mcs_values(family, size, against) for size in family.sizes if size < against}


def bimodality_table(family: Family, against: int, null_q: float = 0.99,
                     values: dict[int, np.ndarray] | None = None) -> list[BimodalityRow]:
    """Per smaller size: modes, high shares, bimodality and (synthetic) ground truth.

    ``values`` is :func:`smaller_mcs`'s result when the caller already has it."""
    cut = stats.null_cutoff(family.d_in, family.saes[against].cfg.d_sae, null_q)
    rows = []
    for size, v in (values if values is not None else smaller_mcs(family, against)).items():
        low, high = stats.histogram_modes(v)
        truth = ground_truth(family, size, against, values=v)
        nan = float("nan")
        rows.append(BimodalityRow(size, against, v.size, low, high, stats.split_high_low(v).frac_high,
                                  stats.split_high_low(v, cut).frac_high, float(v.mean()),
                                  stats.bimodality(v).bimodal,
                                  truth.high_matching_true if truth else nan,
                                  truth.low_matching_true if truth else nan,
                                  truth.low_dead if truth else nan))
    return rows


def one_to_one_values(family: Family, size: int, against: int) -> np.ndarray:
    return one_to_one_mcs(family.features(size), family.features(against)).values.numpy()


def firing_rates(family: Family, size: int, n_samples: int = 8192) -> np.ndarray:
    """Fraction of held-out samples on which each latent of dictionary ``size`` fires."""
    x = family.sample(n_samples)
    with torch.no_grad():
        f = family.saes[size].encode(x)
    return (f > 0).float().mean(0).numpy()


@dataclass
class GroundTruth:
    """How the high/low split lines up with the true features of a synthetic source."""

    size: int
    against: int
    cutoff: float
    true_cos_threshold: float
    n_high: int
    n_low: int
    high_matching_true: float  # share of high-MCS features within threshold of a true feature
    low_matching_true: float
    low_dead: float  # share of low-MCS features that never fire on held-out data
    high_dead: float
    mcs_to_largest: np.ndarray
    mcs_to_true: np.ndarray


def ground_truth(family: Family, size: int, against: int, cutoff: float = stats.POST_CUTOFF,
                 true_cos_threshold: float = 0.9, values: np.ndarray | None = None) -> GroundTruth | None:
    """``values``: MCS of ``size`` against ``against`` when the caller already has it."""
    if family.true_features is None:
        return None
    v = values if values is not None else mcs_values(family, size, against)
    t = max_cosine_similarity(family.features(size), family.true_features).values.numpy()
    dead = firing_rates(family, size) == 0
    high = v >= cutoff

    def share(mask: np.ndarray, of: np.ndarray) -> float:
        return float(mask[of].mean()) if of.any() else float("nan")

    matching = t >= true_cos_threshold
    return GroundTruth(size, against, cutoff, true_cos_threshold, int(high.sum()), int((~high).sum()),
                       share(matching, high), share(matching, ~high), share(dead, ~high), share(dead, high),
                       v, t)


def random_sets(n: int, m: int, d: int, n_sets: int, seed: int = 0) -> dict[str, np.ndarray]:
    """MCS of ``n`` against ``m`` Gaussian features in ``d`` dims, ``n_sets`` independent draws."""
    out = {}
    for r in range(n_sets):
        a = gaussian_dictionary(n, d, seed=seed + 2 * r)
        b = gaussian_dictionary(m, d, seed=seed + 2 * r + 1)
        out[f"random {r + 1}"] = max_cosine_similarity(a, b).values.numpy()
    return out


@dataclass
class NullComparison:
    names: list[str]
    distances: np.ndarray  # W1 among named sets, each restricted to MCS < cutoff (NaN: nothing below it)
    samples: dict[str, np.ndarray]
    learned_low: np.ndarray
    emd_to_null: stats.BootstrapCI | None  # learned low part vs the analytic null (None: no low part)
    random_to_null: list[float]  # each random set vs the analytic null (chance's own spread)
    indistinguishable: bool
    verdict: str


MIN_LOW_FEATURES = 10  # fewer learned features below the cutoff than this: no low mode to compare


def _below(values: np.ndarray, cutoff: float) -> np.ndarray:
    return values[values < cutoff]


def null_comparison(family: Family, size: int, against: int, n_random: int = 4, alt_factor: int = 2,
                    cutoff: float = stats.POST_CUTOFF, n_boot: int = 200, seed: int = 0) -> NullComparison:
    """The post's Figures 4-7: the learned low-MCS part against random dictionaries of the same shape.

    With fewer than ``MIN_LOW_FEATURES`` learned features below ``cutoff`` there is no low
    mode: its distances are NaN and the verdict says so.
    """
    d = family.d_in
    learned = mcs_values(family, size, against)
    samples = {"learned": learned, **random_sets(size, against, d, n_random, seed=seed + 1000)}
    alt = random_sets(size, alt_factor * against, d, 1, seed=seed + 5000)["random 1"]
    samples[f"alt params ({size} vs {alt_factor * against})"] = alt
    names = list(samples)
    low = {n: _below(v, cutoff) for n, v in samples.items()}
    dist = np.full((len(names), len(names)), np.nan)
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            if len(low[a]) >= MIN_LOW_FEATURES and len(low[b]) >= MIN_LOW_FEATURES:
                dist[i, j] = 0.0 if i == j else stats.wasserstein1(low[a], low[b])
    learned_low = low["learned"]
    random_to_null = [stats.wasserstein1_to_null(low[f"random {r + 1}"], d, against) for r in range(n_random)]
    if len(learned_low) < MIN_LOW_FEATURES:
        return NullComparison(names, dist, samples, learned_low, None, random_to_null, False,
                              f"absent: only {len(learned_low)} of {len(learned)} features have MCS below "
                              f"{cutoff}, so there is no low mode to compare with chance")
    boot = stats.bootstrap_wasserstein(learned_low, k=d, m=against, n_boot=n_boot, seed=seed)
    # Indistinguishable from chance: the learned distance's interval reaches down to the
    # distances that random dictionaries of the same shape have from the same null.
    indistinguishable = boot.low <= max(random_to_null)
    verdict = ("indistinguishable from chance at this sample size: its interval reaches the distances of random "
               "dictionaries" if indistinguishable else
               "distinguishable from chance: even the lower end of its interval is above the distance of every "
               "random dictionary of the same shape")
    return NullComparison(names, dist, samples, learned_low, boot, random_to_null, indistinguishable, verdict)


def emd_by_size(family: Family, sizes: list[int], against: int, n_random: int = 4,
                cutoff: float = stats.POST_CUTOFF, seed: int = 0) -> list[dict[str, float]]:
    """The post's Figure 8: per size, W1(learned low part, random) and W1(random, random)."""
    rows = []
    for size in sizes:
        if size not in family.saes or size >= against:
            continue
        learned = _below(mcs_values(family, size, against), cutoff)
        rand = [_below(v, cutoff) for v in random_sets(size, against, family.d_in, n_random, seed=seed + size).values()]
        has_low = len(learned) >= MIN_LOW_FEATURES  # else NaN: no low part to measure
        random_vs_random = [stats.wasserstein1(rand[i], rand[j])
                            for i in range(n_random) for j in range(i + 1, n_random)]
        rows.append({
            "size": size,
            "n_low": int(learned.size),
            "learned_vs_random": float(np.mean([stats.wasserstein1(learned, r) for r in rand])) if has_low
            else float("nan"),
            "random_vs_random": float(np.mean(random_vs_random)) if random_vs_random else float("nan"),
            "learned_vs_null": stats.wasserstein1_to_null(learned, family.d_in, against) if has_low
            else float("nan"),
        })
    return rows


def cross_correlation(family: Family, base: int, b: int, c: int,
                      cutoff: float = stats.POST_CUTOFF) -> tuple[stats.CrossCorrelation, np.ndarray, np.ndarray]:
    vb, vc = mcs_values(family, base, b), mcs_values(family, base, c)
    return stats.cross_dictionary_correlation(vb, vc, cutoff), vb, vc


def splitting_table(family: Family, against: int, null_q: float = 0.99,
                    values: dict[int, np.ndarray] | None = None) -> list[dict[str, float]]:
    """The post's Figures 11-12: high/low counts per size, with the 0.5 and the null cutoffs."""
    null_cut = stats.null_cutoff(family.d_in, against, null_q)
    rows = []
    for size, v in (values if values is not None else smaller_mcs(family, against)).items():
        post, null = stats.split_high_low(v), stats.split_high_low(v, null_cut)
        rows.append({"size": size, "high_post": post.n_high, "low_post": post.n_low, "frac_high_post": post.frac_high,
                     "high_null": null.n_high, "low_null": null.n_low, "frac_high_null": null.frac_high,
                     "null_cutoff": null_cut})
    return rows


def null_density_curve(k: int, m: int, n_points: int = 400) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = nulls.mcs_null_quantile([1e-6, 1 - 1e-9], k, m)
    x = np.linspace(lo, hi, n_points)
    return x, nulls.mcs_null_pdf(x, k, m)


def per_layer_mcs(family: Family, layers: list[int], small: int, large: int,
                  progress: bool = True) -> dict[str, np.ndarray]:
    """MCS of ``small`` against ``large`` for the same settings at each layer in ``layers``.

    Only a language-model source has layers: its site's block index is replaced by each
    layer and that family is trained (or loaded from the cache). Other sources, or an
    empty ``layers``, give this family's own comparison.
    """
    from sae_core.report.pipeline import ensure_family
    from sae_core.sources.nnsight_sites import _SITE_RE

    site = family.params.get("lm", {}).get("site", "")
    match = _SITE_RE.match(site) if family.params["source"] == "lm" else None
    if not layers or match is None:
        label = f"layer {match.group(1)}" if match else family.params["source"]
        return {label: mcs_values(family, small, large)}
    out = {}
    for layer in layers:
        params = {**family.params, "lm": {**family.params["lm"], "site": f"blocks.{layer}.{match.group(2)}"}}
        other = family if params == family.params else ensure_family(params, progress=progress)
        out[f"layer {layer}"] = mcs_values(other, small, large)
    return out


def reconstruction_table(family: Family, n_samples: int = 8192) -> list[dict[str, float]]:
    """Per size on ``n_samples`` activations: L0, fraction of variance explained, dead share.

    FVE = 1 - sum ||x - x_hat||^2 / sum ||x - mean(x)||^2; a latent is dead here if it fires
    on none of the samples.
    """
    x = family.sample(n_samples)
    total = (x - x.mean(0)).pow(2).sum()
    rows = []
    with torch.no_grad():
        for size, sae in family.saes.items():
            x_hat, f = sae(x, output_features=True)
            rows.append({"size": size, "l0": float((f > 0).sum(1).float().mean()),
                         "fve": float(1 - (x - x_hat).pow(2).sum() / total),
                         "dead": float(((f > 0).sum(0) == 0).float().mean())})
    return rows
