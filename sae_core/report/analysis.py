"""Chapter-level computations: each returns plain numbers and arrays that a chapter plots and glues."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sae_core import nulls, stats
from sae_core.report import latents
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
    """MCS of dictionary ``size`` against ``against`` (memoised on the family)."""
    key = ("mcs", size, against)
    if key not in family.memo:
        family.memo[key] = max_cosine_similarity(family.features(size), family.features(against)).values.numpy()
    return family.memo[key]


heldout_fires = latents.heldout_fires  # the one count of held-out firings (report/latents.py)
detection_limit = latents.detection_limit


@dataclass
class BimodalityRow:
    size: int
    against: int
    n: int
    low_mode: float
    high_mode: float
    frac_high_post: float  # share with MCS >= 0.5
    frac_high_null: float  # share at or above the null cutoff (the null's quantile for K = d_in, M = against)
    mean: float
    bimodal: bool  # see stats.bimodality
    high_true: float | None  # synthetic source: share of high-MCS features near a true feature (None otherwise)
    low_true: float | None  # the same among low-MCS features (None also when there is none)
    low_never: float | None  # share of low-MCS features (null cutoff) that never fire on held-out data


def smaller_mcs(family: Family, against: int) -> dict[int, np.ndarray]:
    """MCS against ``against`` of every dictionary of the family smaller than it."""
    return {size: mcs_values(family, size, against) for size in family.sizes if size < against}


def bimodality_table(family: Family, against: int, null_q: float = 0.99,
                     values: dict[int, np.ndarray] | None = None, n_heldout: int = 327680) -> list[BimodalityRow]:
    """Per smaller size: modes, high shares, bimodality, never-fires share of the low part (every source)
    and, on a synthetic source, ground truth. Low means below the null cutoff for (d_in, against).

    ``values`` is :func:`smaller_mcs`'s result when the caller already has it."""
    cut = stats.null_cutoff(family.d_in, against, null_q)
    rows = []
    for size, v in (values if values is not None else smaller_mcs(family, against)).items():
        low_mode, high_mode = stats.histogram_modes(v)
        truth = ground_truth(family, size, against, cutoff=cut, values=v, n_heldout=n_heldout)
        never = heldout_fires(family, size, n_heldout) == 0 if family.has_activations else None
        low = v < cut
        rows.append(BimodalityRow(size, against, v.size, low_mode, high_mode, stats.split_high_low(v).frac_high,
                                  stats.split_high_low(v, cut).frac_high, float(v.mean()),
                                  stats.bimodality(v).bimodal,
                                  truth.high_matching_true if truth else None,
                                  truth.low_matching_true if truth else None,
                                  float(never[low].mean()) if low.any() and never is not None else None))
    return rows


def one_to_one_values(family: Family, size: int, against: int) -> np.ndarray:
    return one_to_one_mcs(family.features(size), family.features(against)).values.numpy()


@dataclass
class GroundTruth:
    """How the high/low split lines up with the true features of a synthetic source."""

    size: int
    against: int
    cutoff: float
    true_cos_threshold: float
    n_high: int
    n_low: int
    high_matching_true: float | None  # share of high-MCS features within threshold of a true feature
    low_matching_true: float | None  # (None: no feature on that side of the cutoff)
    low_never: float | None  # share of low-MCS features that never fire on held-out data
    high_never: float | None
    mcs_to_largest: np.ndarray
    mcs_to_true: np.ndarray


def ground_truth(family: Family, size: int, against: int, cutoff: float,
                 true_cos_threshold: float = 0.9, values: np.ndarray | None = None,
                 n_heldout: int = 327680) -> GroundTruth | None:
    """``values``: MCS of ``size`` against ``against`` when the caller already has it."""
    if family.true_features is None:
        return None
    v = values if values is not None else mcs_values(family, size, against)
    t = max_cosine_similarity(family.features(size), family.true_features).values.numpy()
    never = heldout_fires(family, size, n_heldout) == 0
    high = v >= cutoff

    def share(mask: np.ndarray, of: np.ndarray) -> float | None:
        return float(mask[of].mean()) if of.any() else None

    matching = t >= true_cos_threshold
    return GroundTruth(size, against, cutoff, true_cos_threshold, int(high.sum()), int((~high).sum()),
                       share(matching, high), share(matching, ~high), share(never, ~high), share(never, high),
                       v, t)


RANDOM_SEED_BASE = 2**40  # random dictionaries' seeds start here: never an SAE's initialisation seed


def random_sets(n: int, m: int, d: int, n_sets: int, seed: int = 0) -> dict[str, np.ndarray]:
    """MCS of ``n`` against ``m`` Gaussian features in ``d`` dims, ``n_sets`` independent draws.

    Seeds are offset by ``RANDOM_SEED_BASE`` so a random dictionary is never the initial
    decoder of an SAE (whose seed is ``seed * 1_000_003 + d_sae``)."""
    out = {}
    for r in range(n_sets):
        a = gaussian_dictionary(n, d, seed=RANDOM_SEED_BASE + 4 * (seed * 1024 + r))
        b = gaussian_dictionary(m, d, seed=RANDOM_SEED_BASE + 4 * (seed * 1024 + r) + 1)
        out[f"random {r + 1}"] = max_cosine_similarity(a, b).values.numpy()
    return out


def _subsample(values: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` of ``values`` without replacement (all of them when there are no more)."""
    if values.size <= n:
        return values
    return np.random.default_rng(seed).choice(values, n, replace=False)


@dataclass
class NullComparison:
    size: int
    against: int
    cutoff: float
    names: list[str]
    distances: np.ndarray  # W1 among named sets below the cutoff, each subsampled to n_low (NaN: no low part)
    samples: dict[str, np.ndarray]
    learned_low: np.ndarray
    test: stats.TruncatedNullTest | None  # learned low part vs the truncated null at its own n (None: no low part)
    random_tests: list[stats.TruncatedNullTest]  # each random set's low part, subsampled to n_low, the same way
    expected_between: float  # mean W1 between two samples of n_low from the truncated null
    consistent: bool
    verdict: str


MIN_LOW_FEATURES = 10  # fewer learned features below the cutoff than this: no low mode to compare


def _below(values: np.ndarray, cutoff: float) -> np.ndarray:
    return values[values < cutoff]


def low_mode_size(family: Family, requested: int, against: int, cutoff: float) -> int:
    """The size a low-mode comparison leads with: ``requested`` (the post's 1024) when it has a
    low part of at least ``MIN_LOW_FEATURES`` features against ``against``, else the smaller
    size with the most features below the cutoff."""
    counts = {s: int((mcs_values(family, s, against) < cutoff).sum()) for s in family.sizes if s < against}
    if counts.get(requested, 0) >= MIN_LOW_FEATURES:
        return requested
    best = max(counts, key=lambda s: (counts[s], s))
    return best if counts[best] >= MIN_LOW_FEATURES else requested


def null_comparison(family: Family, size: int, against: int, cutoff: float, n_random: int = 4,
                    alt_factor: int = 2, n_mc: int = 1000, seed: int = 0) -> NullComparison:
    """The post's Figures 4-7, at equal sample size: the learned low part (MCS < ``cutoff``) against
    random dictionaries of the same shapes, each random low part subsampled to the learned n_low,
    and the Monte Carlo test against the null truncated at ``cutoff`` (``stats.truncated_null_test``).

    With fewer than ``MIN_LOW_FEATURES`` learned features below ``cutoff`` there is no low mode:
    its distances are NaN, its test None, and the verdict says so.
    """
    d = family.d_in
    learned = mcs_values(family, size, against)
    samples = {"learned": learned, **random_sets(size, against, d, n_random, seed=seed)}
    alt = random_sets(size, alt_factor * against, d, 1, seed=seed + 1)["random 1"]
    samples[f"alt params ({size} vs {alt_factor * against})"] = alt
    names = list(samples)
    learned_low = _below(learned, cutoff)
    n_low = learned_low.size
    if n_low < MIN_LOW_FEATURES:
        return NullComparison(size, against, cutoff, names, np.full((len(names), len(names)), np.nan), samples,
                              learned_low, None, [], float("nan"), False,
                              f"absent: only {n_low} of {learned.size} features have MCS below {cutoff:.3f}, "
                              "so there is no low mode to compare with chance")
    low = {name: (learned_low if name == "learned" else _subsample(_below(v, cutoff), n_low, seed + i))
           for i, (name, v) in enumerate(samples.items())}
    dist = np.zeros((len(names), len(names)))
    for i, a in enumerate(names):
        for j in range(i + 1, len(names)):
            dist[i, j] = dist[j, i] = stats.wasserstein1(low[a], low[names[j]])
    test = stats.truncated_null_test(learned_low, d, against, cutoff, n_mc=n_mc, seed=seed)
    random_tests = stats.truncated_null_tests([low[f"random {r + 1}"] for r in range(n_random)], d, against, cutoff,
                                              n_mc=n_mc, seed=seed)
    expected = stats.expected_w1_between_samples(n_low, d, against, cutoff, seed=seed)
    if test.consistent():
        verdict = (f"consistent with the random null at its own sample size (n = {n_low}; W1 {test.w1:.4f} against "
                   f"{test.expected:.4f} expected from chance; {test.p_text})")
    else:
        verdict = (f"distinguishable from the random null at its own sample size (n = {n_low}; W1 {test.w1:.4f} "
                   f"against {test.expected:.4f} ± {test.spread:.4f} expected from chance; {test.p_text})")
    return NullComparison(size, against, cutoff, names, dist, samples, learned_low, test, random_tests, expected,
                          test.consistent(), verdict)


def emd_by_size(family: Family, sizes: list[int], against: int, cutoff: float, n_random: int = 4,
                n_mc: int = 1000, seed: int = 0) -> list[dict[str, float]]:
    """The post's Figure 8 at equal sample size: per size, W1(learned low part, random low part
    subsampled to the same n), W1 between random low parts of that n, the W1 that sampling alone
    gives at that n, and the test against the truncated null. Sizes with fewer than
    ``MIN_LOW_FEATURES`` low features are listed with ``n_low`` only."""
    rows = []
    for size in sizes:
        if size not in family.saes or size >= against:
            continue
        learned = _below(mcs_values(family, size, against), cutoff)
        n = learned.size
        row: dict[str, float] = {"size": size, "n_low": int(n)}
        if n >= MIN_LOW_FEATURES:
            rand = [_subsample(_below(v, cutoff), n, seed + r)
                    for r, v in enumerate(random_sets(size, against, family.d_in, n_random, seed=seed + size).values())]
            test = stats.truncated_null_test(learned, family.d_in, against, cutoff, n_mc=n_mc, seed=seed)
            row.update({
                "learned_vs_random": float(np.mean([stats.wasserstein1(learned, r) for r in rand])),
                "random_vs_random": float(np.mean([stats.wasserstein1(rand[i], rand[j])
                                                   for i in range(n_random) for j in range(i + 1, n_random)])),
                "expected_between": stats.expected_w1_between_samples(n, family.d_in, against, cutoff, seed=seed),
                "learned_vs_null": test.w1, "expected_to_null": test.expected, "p_value": test.p_value,
                "p_text": test.p_text,
            })
        rows.append(row)
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


FVE_SAMPLES = latents.FVE_SAMPLES  # held-out activations L0 and FVE are measured on (the first of the firing sample)


def reconstruction_table(family: Family, n_samples: int = 327680, sizes: Sequence[int] | None = None
                         ) -> list[dict[str, float]]:
    """Per size (``sizes``, or every size of the family): L0 and fraction of variance explained on the
    first ``FVE_SAMPLES`` held-out activations, and the share of latents that never fire on
    ``n_samples`` of them (the firing sample of :mod:`sae_core.report.latents`).

    FVE = 1 - sum ||x - x_hat||^2 / sum ||x - mean(x)||^2 (computed in chunks). L0 and FVE are
    stored in the family's folder beside the firing counts, and the firing pass computes them on
    its way (:func:`latents.heldout_fires`), so every chapter reads the same values and the encoder
    runs over the sample once per dictionary.
    """
    rows = []
    for size in sizes or list(family.saes):
        never = float((heldout_fires(family, size, n_samples) == 0).mean())  # first: it stores L0 and FVE too
        l0, fve, n_fve = latents.reconstruction_stats(family, size, n_samples)
        rows.append({"size": size, "l0": l0, "fve": fve, "n_fve": n_fve, "never_fires": never})
    return rows


# ------------------------------------------------------------------ training length
def longer_run(family: Family, factor: int, progress: bool = True) -> Family:
    """The same family trained ``factor`` times as many steps (continuing the cached run where it can)."""
    from sae_core.report.pipeline import ensure_family, family_params, merge_overrides

    if factor < 2:
        raise ValueError(f"the convergence check needs a factor of at least 2, got {factor}")
    return ensure_family(family_params(merge_overrides(family.params, {"n_steps": family.params["n_steps"] * factor})),
                         progress=progress)


def shared_targets(family: Family, size: int, against: int) -> int:
    """How many features of ``size`` share their nearest feature of ``against`` with at least one other."""
    nearest = max_cosine_similarity(family.features(size), family.features(against)).indices.numpy()
    _, inverse, counts = np.unique(nearest, return_inverse=True, return_counts=True)
    return int((counts[inverse] > 1).sum())


def companion_truth(truth_family: Family | None, small_size: int, large_size: int, null_q: float = 0.99,
                    true_cos_threshold: float = 0.9, n_heldout: int = 327680) -> GroundTruth | None:
    """The ground-truth check of a family with true features (a chapter's own, or the companion beside a
    language model): the compared pair, its small side moved to a size with a low part if the requested
    one has none (:func:`low_mode_size`), against the null cutoff. None without such a family."""
    if truth_family is None:
        return None
    small, large = compared_pair(truth_family, small_size, large_size)
    cut = stats.null_cutoff(truth_family.d_in, large, null_q)
    small = low_mode_size(truth_family, small, large, cut)
    return ground_truth(truth_family, small, large, cut, true_cos_threshold=true_cos_threshold,
                        values=mcs_values(truth_family, small, large), n_heldout=n_heldout)


def lead_comparison(family: Family, small_size: int, large_size: int, null_q: float = 0.99, n_random: int = 4,
                    alt_factor: int = 2, n_mc: int = 1000, seed: int = 0) -> tuple[int, NullComparison]:
    """The random-null comparison a chapter leads with: the requested pair, its small side moved to the
    size with the largest low part when the requested one has too few (:func:`low_mode_size`). Returns the
    requested small size and the comparison (whose ``size`` is the one compared)."""
    requested, large = compared_pair(family, small_size, large_size)
    cut = stats.null_cutoff(family.d_in, large, null_q)
    small = low_mode_size(family, requested, large, cut)
    return requested, null_comparison(family, small, large, cut, n_random=n_random, alt_factor=alt_factor,
                                      n_mc=n_mc, seed=seed)
