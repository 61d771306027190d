"""What the low-MCS features are: dead latents, noise, or features the larger dictionary missed.

The post listed three explanations for the low mode and had evidence for none. Each is a
measurable property of a latent:

- **dead**: it fires on none of ``n`` held-out activations. With zero firings in n samples its
  firing rate is below 3/n at 95% confidence (the "rule of three", Hanley & Lippman-Hand 1983),
  the detection limit quoted with every dead share. A latent that never fires gets no
  gradient, so its decoder row stays near its random initialisation and its MCS against any
  dictionary is the random null by construction; the training record (steps fired in, last
  step fired, cosine with the initial decoder row) shows when it stopped.
- **noise**: the low mode grows when isotropic noise is added to the activations (an ablation).
- **unfound**: an alive low-MCS feature that recurs in a second seed of the larger size, or that
  reconstructs its inputs better than the larger dictionary does.

Every comparison of a low part with chance uses the Monte Carlo test at its own sample size
(``stats.truncated_null_test``) against the null truncated at the same cutoff.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sae_core import nulls, stats
from sae_core.report import analysis
from sae_core.report.pipeline import Family, ensure_family, merge_overrides
from sae_core.similarity import max_cosine_similarity
from sae_core.train import TrainConfig

NEVER_MOVED_COS = 0.99  # cosine with the initial decoder row above which a latent "never moved"
MIN_PART = 10  # fewer features than this in a part: no distribution to compare with chance


def split_cutoff(family: Family, against: int, null_q: float = 0.99) -> float:
    """The high/low split for K = d_in and M = ``against``: the null's ``null_q`` quantile."""
    return stats.null_cutoff(family.d_in, against, null_q)


mcs = analysis.mcs_values
heldout_fires = analysis.heldout_fires
detection_limit = analysis.detection_limit


@dataclass
class Anatomy:
    """The low part of one dictionary's MCS against a larger one, taken apart."""

    size: int
    against: int
    cutoff: float
    n: int  # features of the dictionary
    n_low: int
    n_dead: int  # of the whole dictionary: fire on none of n_heldout samples
    n_low_dead: int
    n_low_never_moved: int  # low and cosine with the initial decoder row >= NEVER_MOVED_COS
    n_low_alive: int
    n_heldout: int
    low_dead_share: float | None  # None when there is no low part
    last_fired_dead: float | None  # median step at which the low dead latents last fired in training
    n_steps: int | None
    alive_low_test: stats.TruncatedNullTest | None  # None: fewer than MIN_PART alive low features
    dead_low_test: stats.TruncatedNullTest | None
    values: np.ndarray  # MCS of every feature
    dead: np.ndarray  # bool per feature (all False when dead_known is False)
    never_moved: np.ndarray  # bool per feature (all False when the family has no training record)
    dead_known: bool = True  # False for dictionaries read without activations: firing is unknown

    @property
    def alive_low_share_of_dictionary(self) -> float:
        return self.n_low_alive / self.n


def anatomy(family: Family, size: int, against: int, cutoff: float, n_heldout: int = 32768,
            n_mc: int = 1000, seed: int = 0) -> Anatomy:
    """Dead, never-moved and alive parts of the low-MCS features of ``size`` against ``against``."""
    v = mcs(family, size, against)
    dead_known = family.has_activations
    dead = heldout_fires(family, size, n_heldout) == 0 if dead_known else np.zeros(size, bool)
    record = (family.latent_stats or {}).get(size)
    never_moved = (record["init_cosine"].numpy() >= NEVER_MOVED_COS) if record else np.zeros(size, bool)
    low = v < cutoff
    k = family.d_in

    def test(mask: np.ndarray) -> stats.TruncatedNullTest | None:
        return stats.truncated_null_test(v[mask], k, against, cutoff, n_mc=n_mc, seed=seed) \
            if mask.sum() >= MIN_PART else None

    last_fired = None
    if record is not None and (low & dead).any():
        last_fired = float(np.median(record["last_fired"].numpy()[low & dead]))
    n_low = int(low.sum())
    return Anatomy(
        size, against, cutoff, size, n_low, int(dead.sum()), int((low & dead).sum()), int((low & never_moved).sum()),
        int((low & ~dead).sum()), n_heldout, float((low & dead).sum() / n_low) if n_low and dead_known else None,
        last_fired, int(record["n_steps"]) if record else None, test(low & ~dead), test(low & dead), v, dead,
        never_moved, dead_known,
    )


def anatomy_by_size(family: Family, against: int, cutoff: float, n_heldout: int = 32768, n_mc: int = 1000,
                    seed: int = 0) -> list[Anatomy]:
    return [anatomy(family, s, against, cutoff, n_heldout, n_mc, seed) for s in family.sizes if s < against]


# ------------------------------------------------------------------ ablations
@dataclass
class AblationRow:
    name: str
    overrides: dict[str, Any]
    family_key: str
    small: int
    mid: int
    large: int
    low_share_small: float  # share of `small` below the null cutoff against `large`
    low_share_small_post: float  # the same with the post's 0.5
    bimodal_small: bool
    high_share_mid_post: float  # share of `mid` at or above 0.5 (the post: < 25% at 4096)
    dead_share: dict[int, float]  # per size, held-out
    low_dead_share_mid: float | None
    alive_low_mid: int
    alive_low_test_mid: stats.TruncatedNullTest | None


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


def ablation_row(family: Family, name: str, overrides: Mapping[str, Any], small: int, mid: int, large: int,
                 null_q: float, n_heldout: int, n_mc: int, seed: int) -> AblationRow:
    cut = split_cutoff(family, large, null_q)
    v_small, v_mid = mcs(family, small, large), mcs(family, mid, large)
    mid_anatomy = anatomy(family, mid, large, cut, n_heldout, n_mc, seed)
    return AblationRow(
        name, dict(overrides), family.key, small, mid, large,
        float((v_small < cut).mean()), float((v_small < stats.POST_CUTOFF).mean()), stats.bimodality(v_small).bimodal,
        float((v_mid >= stats.POST_CUTOFF).mean()),
        {s: float((heldout_fires(family, s, n_heldout) == 0).mean()) for s in family.sizes},
        mid_anatomy.low_dead_share, mid_anatomy.n_low_alive, mid_anatomy.alive_low_test,
    )


def ablation_table(base: Family, ablations: Sequence[Mapping[str, Any]], sizes: Sequence[int], small: int,
                   mid: int, large: int, null_q: float = 0.99, n_heldout: int = 32768, n_mc: int = 1000,
                   seed: int = 0, progress: bool = True) -> list[AblationRow]:
    """One row per setting: the baseline (``base``'s settings at ``sizes``) and each override."""
    rows = []
    for overrides in [{}, *ablations]:
        fam = ablation_family(base, overrides, sizes, progress)
        rows.append(ablation_row(fam, ablation_name(overrides), overrides, small, mid, large, null_q, n_heldout,
                                 n_mc, seed))
    return rows


# ------------------------------------------------------------------ the seed ceiling
@dataclass
class SeedCeiling:
    seeds: tuple[int, int]
    cutoff: float  # null cutoff for K = d_in, M = each size (per size below)
    same_size: dict[int, float]  # share of features of seed A's size J with MCS >= cutoff(J) against seed B's J
    across_sizes: dict[int, float]  # share of seed A's J with MCS >= cutoff(large) against seed A's large
    cutoffs: dict[int, float]
    alive_low: int  # alive low-MCS features of `mid` (seed A) against seed A's large
    alive_low_recur: int  # of those, with MCS >= cutoff against seed B's large dictionary
    alive_low_better: int  # of those, where `mid` beats `large` on their firing samples more than overall
    alive_low_scored: int  # alive low features with enough firing samples to score reconstruction


def seed_ceiling(family: Family, other: Family, mid: int, large: int, null_q: float = 0.99,
                 n_heldout: int = 32768, min_fires: int = 20) -> SeedCeiling:
    """Same-size MCS between two seeds against MCS across sizes (Paulo & Belrose 2025 measure the
    former), and two tests of the "unfound feature" explanation for alive low features."""
    sizes = [s for s in family.sizes if s in other.saes]
    cutoffs = {s: stats.null_cutoff(family.d_in, s, null_q) for s in sizes}
    same = {}
    for s in sizes:
        v = max_cosine_similarity(family.features(s), other.features(s)).values.numpy()
        same[s] = float((v >= cutoffs[s]).mean())
    across = {s: float((mcs(family, s, large) >= cutoffs[large]).mean()) for s in sizes if s < large}
    cut = cutoffs[large]
    v = mcs(family, mid, large)
    alive = heldout_fires(family, mid, n_heldout) > 0
    alive_low = np.flatnonzero((v < cut) & alive)
    recur = max_cosine_similarity(family.features(mid)[alive_low], other.features(large)).values.numpy() \
        if alive_low.size else np.zeros(0)
    better, scored = _reconstruction_edge(family, mid, large, alive_low, n_heldout, min_fires)
    return SeedCeiling((family.params["seed"], other.params["seed"]), cut, same, across, cutoffs, int(alive_low.size),
                       int((recur >= cut).sum()), better, scored)


def _reconstruction_edge(family: Family, small: int, large: int, latents: np.ndarray, n_samples: int,
                         min_fires: int) -> tuple[int, int]:
    """For each latent of ``small``: on the held-out samples where it fires, does the small
    dictionary reconstruct better, relative to the large one, than it does on all samples?
    With squared errors e_s, e_l per sample, the latent counts when
    mean(e_s | fires) / mean(e_l | fires) < mean(e_s) / mean(e_l): the larger dictionary lacks
    something those samples carry, beyond any overall difference between the two.
    Returns (# that count, # scored: latents firing on at least ``min_fires`` samples)."""
    if latents.size == 0:
        return 0, 0
    x = family.sample(n_samples)
    with torch.no_grad():
        sae_s, sae_l = family.saes[small], family.saes[large]
        err_s = (sae_s(x) - x).pow(2).sum(1)
        err_l = (sae_l(x) - x).pow(2).sum(1)
        fires = sae_s.encode(x)[:, torch.from_numpy(latents)] > 0  # [n, len(latents)]
    overall = float(err_s.mean() / err_l.mean().clamp_min(1e-30))
    better = scored = 0
    for j in range(latents.size):
        mask = fires[:, j]
        if int(mask.sum()) >= min_fires:
            scored += 1
            better += bool(float(err_s[mask].mean() / err_l[mask].mean().clamp_min(1e-30)) < overall)
    return better, scored


@dataclass
class AliveLow:
    """What the alive low-MCS latents of one dictionary do, next to its high-MCS latents."""

    size: int
    against: int
    n_alive_low: int
    n_high: int
    rate_alive_low: float | None  # median share of held-out activations each fires on (None: none)
    rate_high: float | None
    better: int  # alive low latents whose firing samples `size` reconstructs relatively better (_reconstruction_edge)
    scored: int  # alive low latents firing on at least `min_fires` held-out samples


def alive_low(family: Family, size: int, against: int, cutoff: float, n_heldout: int = 32768,
              min_fires: int = 20) -> AliveLow:
    """Firing rates of the alive low-MCS latents against the high ones, and whether the larger
    dictionary lacks what they reconstruct: the "noise" and "unfound" explanations without a
    second seed."""
    v = mcs(family, size, against)
    fires = heldout_fires(family, size, n_heldout)
    low_alive = np.flatnonzero((v < cutoff) & (fires > 0))
    high = v >= cutoff
    better, scored = _reconstruction_edge(family, size, against, low_alive, n_heldout, min_fires)
    rate = fires / n_heldout
    return AliveLow(size, against, int(low_alive.size), int(high.sum()),
                    float(np.median(rate[low_alive])) if low_alive.size else None,
                    float(np.median(rate[high])) if high.any() else None, better, scored)


def null_mode(family: Family, against: int) -> float:
    return nulls.mcs_null_mode(family.d_in, against)


# ------------------------------------------------------------------ one figure for the answer
@dataclass
class SummaryPoint:
    family: str  # the setting's name
    source: str  # source_label of the family's source
    size: int
    against: int
    dead_share: float  # share of the size's latents dead at the end of training (training record)
    low_share: float  # share of its features with MCS below the null cutoff against `against`
    alive_low_share: float  # share that are low and not dead


@dataclass
class SummaryFit:
    slope: float
    slope_ci: tuple[float, float]
    intercept: float
    intercept_ci: tuple[float, float]
    pearson: float
    pearson_ci: tuple[float, float]
    n: int


def trained_dead(family: Family, size: int, window: int) -> np.ndarray:
    """Latents that did not fire in the last ``window`` steps of training (or never fired), from
    the training record; all False when the family has none."""
    record = (family.latent_stats or {}).get(size)
    if record is None:
        return np.zeros(size, bool)
    last = record["last_fired"].numpy()
    return (last == 0) | (int(record["n_steps"]) - last >= window)


def summary_points(named: Sequence[tuple[str, Family]], null_q: float = 0.99, window: int = 400
                   ) -> list[SummaryPoint]:
    """One point per (family, size) below the family's largest size. A family listed twice (the
    same dictionaries under two names, e.g. a baseline and a subset of it) gives each point once,
    under its first name."""
    points, seen = [], set()
    for name, fam in named:
        large = fam.sizes[-1]
        cut = split_cutoff(fam, large, null_q)
        for size in fam.sizes[:-1]:
            if (fam.key, size, large) in seen:
                continue
            seen.add((fam.key, size, large))
            dead = trained_dead(fam, size, window)
            low = mcs(fam, size, large) < cut
            points.append(SummaryPoint(name, source_label(fam), size, large, float(dead.mean()), float(low.mean()),
                                       float((low & ~dead).mean())))
    return points


def fit_points(points: Sequence[SummaryPoint]) -> SummaryFit | None:
    """Least-squares line low_share = a + b · dead_share with 95% t intervals, and Pearson's r with
    a Fisher-z interval. None with fewer than three points or no spread in x."""
    from scipy import stats as sps

    x = np.array([p.dead_share for p in points])
    y = np.array([p.low_share for p in points])
    if len(points) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    res = sps.linregress(x, y)
    t = sps.t.ppf(0.975, len(points) - 2)
    z, half = np.arctanh(np.clip(res.rvalue, -0.999999, 0.999999)), 1.96 / np.sqrt(max(len(points) - 3, 1))
    return SummaryFit(float(res.slope), (res.slope - t * res.stderr, res.slope + t * res.stderr),
                      float(res.intercept), (res.intercept - t * res.intercept_stderr,
                                             res.intercept + t * res.intercept_stderr),
                      float(res.rvalue), (float(np.tanh(z - half)), float(np.tanh(z + half))), len(points))


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
    dead_share: dict[int, float]  # per size: dead at the end of training (training record)
    post_numbers: bool | None  # > 90% high at 256 and < 25% at 4096; None when the sizes lack 256 or 4096


POST_FIRST, POST_MID = 256, 4096  # the post: more than 90% of 256's features high, fewer than 25% of 4096's


def sweep_row(family: Family, name: str, null_q: float = 0.99, window: int = 400) -> SweepRow:
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
        {s: float(trained_dead(family, s, window).mean()) for s in family.sizes}, post,
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
