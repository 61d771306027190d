"""One classification of latents, used on every page of the report.

Each latent of a dictionary gets two measured properties:

- **firing density**: the share of ``n`` held-out activations it fires on (documents the SAEs
  never trained on, :meth:`Family.sample`). A latent seen firing 0 times in n samples has a rate
  below 3/n with 95% confidence (the rule of three, Hanley & Lippman-Hand 1983): the detection
  limit stated with every count.
- **movement**: the cosine of its final decoder row with its initial one (the training record,
  ``train.latent_stats``).

The classes, named once here:

- ``never fires``: 0 firings in the n held-out activations;
- ``ultralow``: fires, at a density below the threshold;
- ``active``: fires at or above the threshold;
- ``unmoved``: decoder row still within cosine ``UNMOVED_COS`` of its initialisation;
  ``moved`` otherwise.

The density threshold is taken from the data: the deepest valley of the histogram of
log10 density of the family's firing latents (pooled over its sizes, from the detection limit
3/n up: one or two firings are a count, not a density), between two modes at least a decade
apart (Bricken et al. 2023, *Towards Monosemanticity*, plot the same histogram and find an
"ultralow density" cluster apart from the rest). Without such a valley the
threshold is ``FALLBACK_THRESHOLD`` and the result says so.

A latent silent in the last training steps (``dead_window``) is a *training diagnostic* only,
named "silent at the end of training" wherever it appears; it is not a class.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sae_core.io import save_npy_atomic, write_json_atomic
from sae_core.report.pipeline import Family, train_config

UNMOVED_COS = 0.9  # cosine with the initial decoder row at or above which a latent is "unmoved"
FALLBACK_THRESHOLD = 1e-4  # density threshold when the log-density histogram has no valley
VALLEY_BIN = 0.25  # width of the log10-density histogram's bins, in decades
ROBUSTNESS_NS = (32768, 131072)  # smaller held-out samples the robustness table reports beside all
FIRING = ("never fires", "ultralow", "active")
FIRES_VERSION = "v2"  # held-out rows of held-out documents (part of the cache file's name)
FVE_SAMPLES = 65536  # held-out activations L0 and FVE are measured on (the first of the firing sample)


def detection_limit(n_samples: int) -> float:
    """Upper 95% bound on the firing rate of a latent seen firing 0 times in n samples: 3/n
    (the rule of three, Hanley & Lippman-Hand 1983)."""
    if n_samples <= 0:
        raise ValueError(f"need a positive number of samples, got {n_samples}")
    return 3.0 / n_samples


def recon_path(family: Family, size: int, n_fve: int) -> Path:
    """Where L0 and FVE of ``size`` on the first ``n_fve`` held-out activations are stored (JSON)."""
    return family.path / "heldout" / f"recon_{FIRES_VERSION}_{size}_{n_fve}.json"


def fve_n(family: Family, n_samples: int) -> int:
    """The held-out activations L0 and FVE are measured on beside a firing sample of ``n_samples``."""
    return family.heldout_n(min(n_samples, FVE_SAMPLES))


def heldout_fires(family: Family, size: int, n_samples: int, chunk: int = 4096) -> np.ndarray:
    """How many of the first ``n_samples`` held-out activations (all there are, if fewer) each
    latent of ``size`` fires on. Counted in chunks, so the [n, d_sae] codes never exist at once;
    memoised on the family and stored in its folder, so every chapter reads the same counts.
    Smaller samples are prefixes of larger ones, so the pass also stores the counts at each
    smaller n of ``ROBUSTNESS_NS`` (the robustness table's) on its way.

    The same pass stores L0 and FVE (:func:`reconstruction_stats`) on the first :func:`fve_n`
    rows where they are missing: the codes of those rows are formed anyway, so only the decoder
    is added, instead of a second pass through the encoder."""
    n = family.heldout_n(n_samples)
    if ("fires", size, n) not in family.memo:
        folder = family.path / "heldout"

        def path(s: int, m: int) -> Path:
            return folder / f"fires_{FIRES_VERSION}_{s}_{m}.npy"

        if not path(size, n).is_file():
            # one pass over the sample for every size still missing: the sample is drawn once
            missing = [s for s in family.sizes if not path(s, n).is_file()]
            prefixes = sorted({family.heldout_n(m) for m in ROBUSTNESS_NS if family.heldout_n(m) < n})
            n_fve = fve_n(family, n)
            recon = {s: [0, 0.0] for s in missing if not recon_path(family, s, n_fve).is_file()}  # active, err
            x = family.sample(n)
            totals = {s: torch.zeros(s, dtype=torch.long) for s in missing}
            stops = sorted({*range(chunk, n, chunk), *prefixes, n_fve, n})
            start, at_prefix = 0, {}
            with torch.no_grad():
                for stop in stops:
                    xb = x[start:stop]
                    for s in missing:
                        if s in recon and start < n_fve:
                            counts, err = family.saes[s].firing_counts_and_error(xb)
                            recon[s][0] += int(counts.sum())
                            recon[s][1] += err
                        else:
                            counts = family.saes[s].firing_counts(xb)
                        totals[s] += counts
                    if stop in prefixes:
                        at_prefix[stop] = {s: t.clone() for s, t in totals.items()}
                    start = stop
            if recon:
                total = _total_variance(x[:n_fve])
                for s, (active, err) in recon.items():
                    _store_recon(family, s, n_fve, active, err, total)
            for m, counts in [*at_prefix.items(), (n, totals)]:
                for s, t in counts.items():
                    if not path(s, m).is_file():
                        save_npy_atomic(path(s, m), t.numpy())
        family.memo[("fires", size, n)] = np.load(path(size, n))
    return family.memo[("fires", size, n)]


def reconstruction_stats(family: Family, size: int, n_samples: int, chunk: int = 4096) -> tuple[float, float, int]:
    """(L0, FVE, n_fve) of ``size`` on the first ``n_fve = fve_n(n_samples)`` held-out activations:
    L0 the mean number of latents with f > 0 per row, FVE = 1 - sum ||x - x_hat||^2 / sum ||x - mean(x)||^2.
    Stored beside the firing counts (the firing pass computes them on its way); computed here, in
    chunks, only when that pass did not."""
    n_fve = fve_n(family, n_samples)
    path = recon_path(family, size, n_fve)
    if not path.is_file():
        x = family.sample(n_fve)
        active, err = 0, 0.0
        with torch.no_grad():
            for start in range(0, n_fve, chunk):
                counts, e = family.saes[size].firing_counts_and_error(x[start:start + chunk])
                active, err = active + int(counts.sum()), err + e
        _store_recon(family, size, n_fve, active, err, _total_variance(x))
    stored = json.loads(path.read_text())
    return stored["l0"], stored["fve"], n_fve


def _total_variance(x: torch.Tensor) -> float:
    """sum ||x - mean(x)||^2 over the rows of x: FVE's denominator."""
    return float((x - x.mean(0)).pow(2).sum())


def _store_recon(family: Family, size: int, n_fve: int, active: int, err: float, total: float) -> None:
    """L0 = active entries per row and FVE = 1 - err / total on the first ``n_fve`` held-out activations."""
    write_json_atomic(recon_path(family, size, n_fve), {"l0": active / n_fve, "fve": 1 - err / total})


@dataclass
class DensityThreshold:
    value: float  # density below which a firing latent is "ultralow"
    from_valley: bool  # False: no valley, FALLBACK_THRESHOLD used
    n_samples: int  # held-out activations the densities were counted on
    modes: tuple[float, float] | None  # log10 densities of the two modes the valley lies between

    def describe(self, lead: bool = True) -> str:
        """How the threshold was chosen, as a sentence (``lead=False``: to follow "On the <source>, ")."""
        if self.from_valley:
            text = (f"the ultralow threshold is {self.value:.1e}: the valley of the log-density histogram between its "
                    f"modes at {10 ** self.modes[0]:.1e} and {10 ** self.modes[1]:.1e}.")
        else:
            text = (f"the log-density histogram has no valley between two modes a decade apart, so the ultralow "
                    f"threshold is the stated fallback {self.value:.0e}.")
        return text[:1].upper() + text[1:] if lead else text


def density_valley(log_density: np.ndarray, low: float, bin_width: float = VALLEY_BIN
                   ) -> tuple[float, tuple[float, float]] | None:
    """The deepest valley of the histogram of ``log_density`` (log10 values >= ``low``) between two
    local maxima at least one decade apart: (log10 of the valley's centre, (mode a, mode b)), or
    None. The histogram is smoothed by a 3-bin moving average; the valley is the bin of lowest
    count between the two modes that leave the deepest dip (min of the two peaks minus the floor)."""
    values = np.asarray(log_density, dtype=float)
    values = values[np.isfinite(values)]
    if values.size < 10:
        return None
    edges = np.arange(low, max(values.max(), low) + 2 * bin_width, bin_width)
    counts, edges = np.histogram(values, bins=edges)
    smooth = np.convolve(np.pad(counts.astype(float), 1, mode="edge"), np.ones(3) / 3, mode="valid")
    centres = (edges[:-1] + edges[1:]) / 2
    peaks = [i for i in range(len(smooth)) if smooth[i] > 0
             and (i == 0 or smooth[i] >= smooth[i - 1]) and (i == len(smooth) - 1 or smooth[i] > smooth[i + 1])]
    best: tuple[float, int, int, int] | None = None
    for a in peaks:
        for b in peaks:
            if centres[b] - centres[a] < 1.0:
                continue
            floor = a + int(np.argmin(smooth[a:b + 1]))
            depth = min(smooth[a], smooth[b]) - smooth[floor]
            if depth > 0 and (best is None or depth > best[0]):
                best = (depth, a, b, floor)
    if best is None:
        return None
    _, a, b, floor = best
    return float(centres[floor]), (float(centres[a]), float(centres[b]))


def density_threshold(family: Family, n_samples: int, sizes: Sequence[int] | None = None) -> DensityThreshold:
    """The family's density threshold from the valley of its pooled log-density histogram (see the
    module docstring); memoised, so every use on a page is the same number."""
    n = family.heldout_n(n_samples)
    sizes = tuple(sizes or family.sizes)
    key = ("density_threshold", sizes, n)
    if key not in family.memo:
        counts = np.concatenate([heldout_fires(family, s, n) for s in sizes])
        fired = counts[counts > 0]
        # the histogram starts at the detection limit 3/n: below it a density is one or two firings, a counting
        # artefact (one firing is 1/n), not a mode
        found = density_valley(np.log10(fired / n), low=np.log10(detection_limit(n))) if fired.size else None
        family.memo[key] = DensityThreshold(10 ** found[0], True, n, found[1]) if found else \
            DensityThreshold(FALLBACK_THRESHOLD, False, n, None)
    return family.memo[key]


@dataclass
class LatentClasses:
    """The classes of every latent of one dictionary."""

    size: int
    n_samples: int  # held-out activations counted
    threshold: float
    counts: np.ndarray  # [size] firings in the n held-out activations
    init_cosine: np.ndarray | None  # [size] cosine with the initial decoder row (None: no training record)

    @property
    def density(self) -> np.ndarray:
        return self.counts / self.n_samples

    @property
    def never_fires(self) -> np.ndarray:
        return self.counts == 0

    @property
    def ultralow(self) -> np.ndarray:
        return (self.counts > 0) & (self.density < self.threshold)

    @property
    def active(self) -> np.ndarray:
        return self.density >= self.threshold

    @property
    def unmoved(self) -> np.ndarray | None:
        return None if self.init_cosine is None else self.init_cosine >= UNMOVED_COS

    def firing(self, name: str) -> np.ndarray:
        """The mask of one firing class by its name in ``FIRING``."""
        return {"never fires": self.never_fires, "ultralow": self.ultralow, "active": self.active}[name]

    @property
    def detection_limit(self) -> float:
        return detection_limit(self.n_samples)


def encoder_init_cosine(family: Family, size: int) -> np.ndarray | None:
    """[size] cosine of each latent's final encoder column with its initial one (the initialisation is
    regenerated from the family's training settings and seed); None for dictionaries read from disk."""
    if family.params.get("source") == "dictionaries":
        return None
    key = ("encoder_init_cosine", size)
    if key not in family.memo:
        from sae_core.train import initial_sae

        init = initial_sae(train_config(family.params, progress=False), family.d_in, size).W_enc.detach()
        final = family.saes[size].W_enc.detach().float()
        cos = torch.nn.functional.cosine_similarity(init.float(), final, dim=0)
        family.memo[key] = cos.numpy()
    return family.memo[key]


def classify(family: Family, size: int, n_samples: int, threshold: float | None = None) -> LatentClasses:
    """Classes of the latents of ``size`` on ``n_samples`` held-out activations; the threshold is the
    family's own (:func:`density_threshold`) unless given."""
    n = family.heldout_n(n_samples)
    if threshold is None:
        threshold = density_threshold(family, n).value
    record = (family.latent_stats or {}).get(size)
    init_cos = record["init_cosine"].numpy() if record is not None else None
    return LatentClasses(size, n, threshold, heldout_fires(family, size, n), init_cos)


# ------------------------------------------------------------------ low-MCS features by class
@dataclass
class ClassCount:
    name: str  # e.g. "never fires", "ultralow · unmoved"
    n_class: int  # latents of the dictionary in the class
    n_low: int  # of which low-MCS
    n_low_total: int  # low-MCS latents of the dictionary

    @property
    def share_of_low(self) -> float | None:
        """Share of the low-MCS features that are in this class."""
        return self.n_low / self.n_low_total if self.n_low_total else None

    @property
    def low_share_of_class(self) -> float | None:
        """Share of this class that is low-MCS."""
        return self.n_low / self.n_class if self.n_class else None


def class_counts(classes: LatentClasses, low: np.ndarray) -> list[ClassCount]:
    """For each firing class and (with a training record) each firing × movement cell: how many
    latents, how many of them low-MCS, out of how many low-MCS in all."""
    low = np.asarray(low, bool)
    n_low = int(low.sum())
    rows = []
    for name in FIRING:
        mask = classes.firing(name)
        rows.append(ClassCount(name, int(mask.sum()), int((mask & low).sum()), n_low))
    if classes.unmoved is not None:
        for name in FIRING:
            for moved_name, moved in (("unmoved", classes.unmoved), ("moved", ~classes.unmoved)):
                mask = classes.firing(name) & moved
                rows.append(ClassCount(f"{name} · {moved_name}", int(mask.sum()), int((mask & low).sum()), n_low))
    return rows


@dataclass
class Robustness:
    """The low part's class shares at growing held-out samples: how much "never fires" depends on n."""

    size: int
    ns: list[int]
    never_fires: list[int]  # low-MCS latents with no firing at each n
    ultralow: list[int]
    active: list[int]
    n_low: int


def robustness(family: Family, size: int, low: np.ndarray, n_all: int, threshold: float,
               ns: Sequence[int] = ROBUSTNESS_NS) -> Robustness:
    """Class counts of the low-MCS latents of ``size`` at each n in ``ns`` and at all ``n_all``
    held-out activations (the same threshold throughout; smaller n are prefixes of the largest)."""
    n_all = family.heldout_n(n_all)
    steps = sorted({family.heldout_n(n) for n in ns if n < n_all} | {n_all})
    out = Robustness(size, steps, [], [], [], int(np.asarray(low).sum()))
    for n in steps:
        c = classify(family, size, n, threshold)
        out.never_fires.append(int((c.never_fires & low).sum()))
        out.ultralow.append(int((c.ultralow & low).sum()))
        out.active.append(int((c.active & low).sum()))
    return out


# ------------------------------------------------------------------ the 2024 mechanism
@dataclass
class DirectionShare:
    """How much a set of unit vectors shares one direction."""

    n: int
    mean_cosine: float  # mean pairwise cosine (off-diagonal)
    top_share: float  # share of the squared singular values in the top one: 1 = one direction

    @staticmethod
    def of(vectors: np.ndarray) -> DirectionShare | None:
        v = np.asarray(vectors, dtype=np.float64)
        if v.shape[0] < 2:
            return None
        v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        n = v.shape[0]
        # sum of all pairwise cosines = |sum v|^2 and the squared singular values = eigenvalues of
        # v^T v [d, d]: O(n d^2) instead of the n x n Gram matrix and SVD (n reaches thousands)
        total = v.sum(axis=0)
        trace = float((v * v).sum())
        mean_cos = float((total @ total - trace) / (n * (n - 1)))
        eig = np.linalg.eigvalsh(v.T @ v)
        return DirectionShare(n, mean_cos, float(max(eig[-1], 0.0) / trace))


@dataclass
class EncoderDirectionTest:
    """Anthropic's 2024 circuits update: ultralow latents share one encoder direction while their
    decoder rows stay random. Measured on one dictionary, against active latents and random directions."""

    size: int
    ultralow_encoder: DirectionShare | None
    ultralow_decoder: DirectionShare | None
    active_encoder: DirectionShare | None  # a seeded sample of active latents of the same count
    random: DirectionShare  # isotropic random directions of the same count and dimension (mean of draws)
    random_q99: tuple[float, float]  # 99% quantiles of (mean cosine, top share) over the random draws


def encoder_direction_test(family: Family, classes: LatentClasses, n_random: int = 200, seed: int = 0
                           ) -> EncoderDirectionTest:
    """Mean pairwise cosine and top-singular-value share of the ultralow latents' encoder columns
    (W_enc[:, j]) and decoder rows, of as many active latents' encoder columns, and of as many
    random directions (``n_random`` draws)."""
    sae = family.saes[classes.size]
    enc = sae.W_enc.detach().t().numpy()  # [d_sae, d]: one row per latent's encoder direction
    dec = sae.features.numpy()
    ultra = np.flatnonzero(classes.ultralow)
    active = np.flatnonzero(classes.active)
    rng = np.random.default_rng(seed)
    k = max(len(ultra), 2)
    pick = rng.choice(active, size=min(k, len(active)), replace=False) if len(active) else np.zeros(0, int)
    draws = [DirectionShare.of(rng.standard_normal((k, enc.shape[1]))) for _ in range(n_random)]
    cosines, shares = [d.mean_cosine for d in draws], [d.top_share for d in draws]
    mean = DirectionShare(k, float(np.mean(cosines)), float(np.mean(shares)))
    q99 = (float(np.quantile(cosines, 0.99)), float(np.quantile(shares, 0.99)))
    return EncoderDirectionTest(classes.size, DirectionShare.of(enc[ultra]), DirectionShare.of(dec[ultra]),
                                DirectionShare.of(enc[pick]), mean, q99)
