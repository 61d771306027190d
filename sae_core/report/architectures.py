"""The decisive test (the "Architectures" chapter): SAEs built to keep every latent alive.

If the low-MCS mode is latents that never trained, an architecture in which (almost) every latent
trains should have no low mode. Each architecture is a family of its own on each source, at the
chapter's sizes, compared with the ReLU baseline of the same sizes at matched sparsity:

* **TopK + AuxK** (Gao et al. 2024, arXiv:2406.04093; ``sae_core.train``) and **BatchTopK + AuxK**
  (Bussmann et al. 2024, arXiv:2412.06410): ``k`` per size is ``round(L0)`` of the ReLU baseline of
  that size on held-out activations (:func:`matched_k`), so the two differ in how sparsity is
  enforced, not in how much.
* **JumpReLU** with a trained threshold (Rajamanoharan et al. 2024, arXiv:2407.14435): its L0
  coefficient is a setting of the profile, not fitted to the baseline; the chapter reports how far
  its held-out L0 lands from ReLU's.

Per architecture and source the chapter reports held-out L0 and FVE, the latent classes of
:mod:`sae_core.report.latents`, the low share and the bimodality verdict of the small size against
the largest, the shares above the cutoffs at the mid size, and seed-to-seed sharing at the small
size: the share of one-to-one (Hungarian) matched pairs above the null cutoff (Paulo & Belrose
2025) and the mean matched cosine (PW-MCC, Song et al. 2025). Every sentence is a function here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from sae_core import nulls, stats
from sae_core.report import answer, latents, low_mode
from sae_core.report.analysis import mcs_values, null_density_curve, reconstruction_table
from sae_core.report.pipeline import Family
from sae_core.similarity import one_to_one_mcs
from sae_core.train import TrainConfig

MATCH_TOLERANCE = 0.10  # matched sparsity: held-out L0 within 10% of the ReLU baseline of the same size
RELU = "ReLU + L1"
ARCH_NAMES = {"relu": RELU, "topk": "TopK + AuxK", "batchtopk": "BatchTopK + AuxK", "jumprelu": "JumpReLU"}
MATCHED_BY_K = ("topk", "batchtopk")  # architectures whose sparsity is set by k (JumpReLU's by its L0 coefficient)


def architecture_name(overrides: Mapping[str, Any]) -> str:
    """The architecture a setting trains, in words (``{"activation": "topk"}`` -> "TopK + AuxK")."""
    return ARCH_NAMES.get(str(overrides.get("activation", "relu")), str(overrides.get("activation")))


def matched_k(l0: Mapping[int, float]) -> dict[int, int]:
    """k per size from the ReLU baseline's held-out L0: round(L0), at least 1 and at most the size."""
    return {int(s): int(min(s, max(1, round(v)))) for s, v in sorted(l0.items())}


def architecture_overrides(setting: Mapping[str, Any], k: Mapping[int, int]) -> dict[str, Any]:
    """A chapter setting (``{"activation": "topk", "dead_window": 100}``) with its matched k filled in."""
    out = dict(setting)
    if out.get("activation", "relu") in MATCHED_BY_K:
        out["k"] = dict(k)
    return out


# ------------------------------------------------------------------ one architecture on one source
@dataclass
class SeedSharing:
    size: int
    seeds: tuple[int, int]
    cutoff: float  # null cutoff for K = d_in, M = size
    share_above: float  # share of Hungarian-matched pairs with cosine >= cutoff
    pw_mcc: float  # mean matched cosine


def seed_sharing(a: Family, b: Family, size: int, null_q: float = 0.99) -> SeedSharing:
    """Two seeds' dictionaries of one size matched one-to-one (maximum total cosine)."""
    match = one_to_one_mcs(a.features(size), b.features(size)).values.numpy()
    cutoff = stats.null_cutoff(a.d_in, size, null_q)
    return SeedSharing(size, (int(a.params.get("seed", 0)), int(b.params.get("seed", 0))), cutoff,
                       float((match >= cutoff).mean()), float(match.mean()))


@dataclass
class ArchRow:
    """One architecture on one source at the chapter's sizes."""

    source: str  # "language model", "synthetic"
    arch: str  # "ReLU + L1", "TopK + AuxK"
    family: Family
    k: dict[int, int] | None
    l0: dict[int, float]
    fve: dict[int, float]
    shares: dict[int, dict[str, float | None]]  # per size: never fires / ultralow / active / unmoved
    low: answer.LowByClass  # small against large
    bimodal: bool
    mid: int
    above_mid: dict[str, float]  # share of mid's features above each cutoff against large
    seed: SeedSharing | None
    threshold: float

    @property
    def label(self) -> str:
        return f"{self.source}, {self.arch}"


def reconstruction(family: Family, n_heldout: int) -> dict[int, dict[str, float]]:
    """``analysis.reconstruction_table`` by size, memoised on the family (k is read off it before training)."""
    key = ("reconstruction", n_heldout)
    if key not in family.memo:
        family.memo[key] = {int(r["size"]): r for r in reconstruction_table(family, n_heldout)}
    return family.memo[key]


def class_shares(classes: latents.LatentClasses) -> dict[str, float | None]:
    """Shares of the latents in each firing class, and unmoved (None without a training record)."""
    return {"never fires": float(classes.never_fires.mean()), "ultralow": float(classes.ultralow.mean()),
            "active": float(classes.active.mean()),
            "unmoved": None if classes.unmoved is None else float(classes.unmoved.mean())}


def arch_row(source: str, arch: str, family: Family, small: int, mid: int, large: int, n_heldout: int,
             threshold: float, null_q: float = 0.99, other_seed: Family | None = None) -> ArchRow:
    recon = reconstruction(family, n_heldout)
    cutoff = stats.null_cutoff(family.d_in, large, null_q)
    low = answer.low_by_class(family, small, large, cutoff, n_heldout, threshold, f"{source}, {arch}")
    v_mid = mcs_values(family, mid, large)
    k = family.params.get("k")
    k = {int(s): int(v) for s, v in k.items()} if isinstance(k, Mapping) else None
    return ArchRow(
        source, arch, family, k, {s: r["l0"] for s, r in recon.items()}, {s: r["fve"] for s, r in recon.items()},
        {s: class_shares(latents.classify(family, s, n_heldout, threshold)) for s in family.sizes}, low,
        stats.bimodality(low.values).bimodal, mid,
        {f"null cutoff {cutoff:.3f}": float((v_mid >= cutoff).mean()),
         f"MCS ≥ {stats.POST_CUTOFF}": float((v_mid >= stats.POST_CUTOFF).mean())},
        None if other_seed is None else seed_sharing(family, other_seed, small, null_q), threshold)


# ------------------------------------------------------------------ sentences
def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.1%}"


def density_text(x: float | None) -> str:
    """A firing density as text: percentages down to 0.1%, scientific notation below, "–" for none."""
    if x is None:
        return "–"
    if x == 0:
        return "0"
    return f"{x:.1%}" if x >= 1e-3 else f"{x:.1e}"


def l0_coeff_text(family: Family | None) -> str:
    """A JumpReLU family's L0 coefficient (the training default where its parameters leave it out)."""
    if family is None:
        return "–"
    return f"{float(family.params.get('l0_coeff', TrainConfig().l0_coeff)):g}"


def l0_gaps(row: ArchRow, baseline: ArchRow) -> dict[int, float]:
    """|L0 - L0_ReLU| / L0_ReLU per size both have (infinite where the baseline's L0 is 0 and row's is not)."""
    out = {}
    for s in sorted(set(row.l0) & set(baseline.l0)):
        ref = baseline.l0[s]
        out[s] = abs(row.l0[s] - ref) / ref if ref > 0 else (0.0 if row.l0[s] == 0 else float("inf"))
    return out


def matching_sentence(rows: Sequence[ArchRow], baselines: Mapping[str, ArchRow],
                      tolerance: float = MATCH_TOLERANCE) -> str:
    """How k was chosen and whether each architecture's held-out L0 is within ``tolerance`` of ReLU's."""
    others = [r for r in rows if r.arch != RELU and r.source in baselines]
    if not others:
        return "This build trains no architecture with a sparsity to match."
    parts = []
    for r in others:
        gaps = l0_gaps(r, baselines[r.source])
        worst = max(gaps, key=gaps.get)
        within = all(g <= tolerance for g in gaps.values())
        setting = ("k = " + ", ".join(f"{k} at {s}" for s, k in r.k.items()) if r.k is not None else
                   f"L0 coefficient {l0_coeff_text(r.family)}")
        parts.append(f"on the {r.source}, {r.arch} with {setting}"
                     + f" has held-out L0 {'within' if within else 'not within'} {tolerance:.0%} of ReLU's at every "
                     f"size (largest gap {gaps[worst]:.1%}, at {worst}: {r.l0[worst]:.1f} against "
                     f"{baselines[r.source].l0[worst]:.1f})")
    text = "; ".join(parts)
    return ("Sparsity is matched by one rule, fixed before training: k for each size is the ReLU baseline's held-out "
            "L0 at that size, rounded (JumpReLU's L0 coefficient is set by the profile). "
            f"{text[:1].upper()}{text[1:]}.")


def architecture_sentence(row: ArchRow, baseline: ArchRow | None) -> str:
    """The answer for one architecture on one source: is there a low mode when (almost) no latent is dead,
    and if there is one, what it is (class shares, firing density, movement)."""
    r = row.low
    sh = row.shares[r.size]
    inactive = (sh["never fires"] or 0.0) + (sh["ultralow"] or 0.0)
    head = (f"{row.label[:1].upper()}{row.label[1:]}: at {r.size}, {_pct(sh['never fires'])} of the latents never fire "
            f"on {r.n_heldout:,} held-out activations and {_pct(inactive)} never fire or fire at ultralow density")
    base = ""
    if baseline is not None and baseline is not row:
        base = (f" (ReLU: {_pct(baseline.shares[r.size]['never fires'])} and "
                f"{_pct(baseline.shares[r.size]['never fires'] + baseline.shares[r.size]['ultralow'])}; "
                f"low share {_pct(baseline.low.low_share)})")
    verdict = answer.verdict(r)
    shape = "bimodal" if row.bimodal else "not bimodal"
    if verdict == "no low mode":
        return (head + f"; {r.n_low} of its {r.n:,} features ({_pct(r.low_share)}) lie below the null cutoff "
                f"{r.cutoff:.3f} against {r.against}{base}, so there is no low mode; the histogram is {shape}.")
    text = (head + f"; {r.n_low} of its {r.n:,} features ({_pct(r.low_share)}) lie below the null cutoff "
            f"{r.cutoff:.3f} against {r.against}{base}, and the histogram is {shape}. The low part is {verdict}: "
            f"{_pct(r.share(r.inactive))} of it never fires or fires at ultralow density, {_pct(r.share(r.active))} "
            f"is active (median firing density {density_text(r.median_density_low)} against "
            f"{density_text(r.median_density_high)} for the high features)")
    if r.unmoved is not None:
        text += f", and {_pct(r.share(r.unmoved))} keeps its initial decoder row"
    return text + "."


def seed_sentence(rows: Sequence[ArchRow]) -> str:
    """Seed-to-seed sharing at the small size, per source and architecture."""
    with_seed = [r for r in rows if r.seed is not None]
    if not with_seed:
        return "No second seed was trained, so seed-to-seed sharing is not measured."
    s = with_seed[0].seed
    return (f"Matched one-to-one against the dictionary of the same size trained with seed {s.seeds[1]} (Hungarian "
            "matching of decoder rows, maximum total cosine): " + "; ".join(
                f"{r.label}, {r.seed.size} features: {_pct(r.seed.share_above)} of the matched pairs above the null "
                f"cutoff {r.seed.cutoff:.3f}, mean matched cosine (PW-MCC) {r.seed.pw_mcc:.3f}" for r in with_seed)
            + ".")


def overall_sentence(rows: Sequence[ArchRow]) -> str:
    """The extended answer in one sentence: which architectures keep (almost) every latent alive, and whether
    those have a low mode."""
    if not rows:
        return ("This chapter trains new dictionaries on the build's activations, which dictionaries read from disk "
                "do not come with, so it has nothing to show for them.")
    others = [r for r in rows if r.arch != RELU]
    if not others:
        return "This build trains no architecture beside ReLU; the chapter's settings list them."
    parts = []
    for r in others:
        never = r.shares[r.low.size]["never fires"]
        verdict = answer.verdict(r.low)
        # "low part", not "low mode": with most features below the cutoff there may be no second mode at all
        parts.append(f"{r.label}: {_pct(never)} never fire at {r.low.size}, low share {_pct(r.low.low_share)}, "
                     + ("no low mode" if verdict == "no low mode" else
                        f"{'bimodal' if r.bimodal else 'not bimodal'}, its low part is {verdict}"))
    alive = [r for r in others if (r.shares[r.low.size]["never fires"] or 0.0) < 0.01]
    no_low = [r for r in alive if answer.verdict(r.low) == "no low mode"]
    n, a, b = len(others), len(alive), len(no_low)
    noun = "dictionary" if n == 1 else "dictionaries"
    lead = f"Among the {n} {noun} of an architecture built to keep latents alive, "
    if a == 0:
        lead += "none has fewer than 1% of latents that never fire"
    elif a == 1:
        lead += ("one has fewer than 1% of latents that never fire, and it has "
                 + ("no low mode" if b else "features below the null cutoff all the same"))
    else:
        kept = a - b
        lead += (f"{a} have fewer than 1% of latents that never fire; "
                 + ("all of them still have features below the null cutoff" if b == 0 else
                    "none of them has a low mode" if kept == 0 else
                    f"{kept} of these {a} still {'has' if kept == 1 else 'have'} features below the null cutoff"))
    return lead + " (" + "; ".join(parts) + ")."


# ------------------------------------------------------------------ table and figure
def table(rows: Sequence[ArchRow]) -> tuple[list[str], list[list[object]]]:
    if not rows:
        return ["source"], []
    small, mid = rows[0].low.size, rows[0].mid
    headers = ["source", "architecture", "k by size (JumpReLU: λ)", "held-out L0 by size", "FVE by size",
               f"{small}: never / ultralow / active", f"{small}: unmoved", f"{small}: low share", "bimodal",
               "low part", f"{mid}: above null cutoff / 0.5", "seed sharing (matched above cutoff, PW-MCC)"]
    out = []
    for r in rows:
        sh = r.shares[small]
        setting = ", ".join(str(v) for v in r.k.values()) if r.k is not None else (
            f"λ = {l0_coeff_text(r.family)}" if r.arch == ARCH_NAMES["jumprelu"] else "–")
        out.append([r.source, r.arch, setting,
                    ", ".join(f"{s}: {v:.1f}" for s, v in r.l0.items()),
                    ", ".join(f"{v:.3f}" for v in r.fve.values()),
                    " / ".join(_pct(sh[n]) for n in latents.FIRING), _pct(sh["unmoved"]), _pct(r.low.low_share),
                    "yes" if r.bimodal else "no", answer.verdict(r.low),
                    " / ".join(_pct(v) for v in r.above_mid.values()),
                    "–" if r.seed is None else f"{_pct(r.seed.share_above)}, {r.seed.pw_mcc:.3f}"])
    return headers, out


def mcs_figure(rows: Sequence[ArchRow]) -> plt.Figure:
    """One panel per source and architecture: MCS of the small size against the largest, with the analytic
    null truncated at the cutoff and scaled to the share of features below it."""
    n = max(len(rows), 1)
    cols = min(n, 2)
    fig, axes = plt.subplots(int(np.ceil(n / cols)), cols, figsize=(4.6 * cols, 3.2 * int(np.ceil(n / cols))),
                             squeeze=False)
    for ax, r in zip(axes.flat, rows, strict=False):
        v, low = r.low.values, r.low
        ax.hist(v, bins=50, range=(0, 1), density=True, color="C0", alpha=0.8, label="learned")
        x, pdf = null_density_curve(r.family.d_in, low.against)
        mass = float(nulls.mcs_null_cdf(np.array([low.cutoff]), r.family.d_in, low.against)[0])
        keep = x < low.cutoff
        ax.plot(x[keep], pdf[keep] / mass * low.low_share, color="C3", lw=1.5,
                label=f"null K={r.family.d_in}, M={low.against}")
        ax.axvline(low.cutoff, color="grey", lw=0.8, ls=":")
        ax.set_title(f"{r.label}: {low.size} vs {low.against}", fontsize=9)
        ax.set_xlabel("max cosine similarity")
    for ax in axes.flat[len(rows):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def named_families(rows: Sequence[ArchRow]) -> list[tuple[str, Family, float]]:
    """(label, family, density threshold) for ``answer.class_points``: the summary figure's points."""
    return [(r.label, r.family, r.threshold) for r in rows]


# ------------------------------------------------------------------ the chapter's families
def chapter_sizes(arch_sizes: Sequence[int], family_sizes: Sequence[int], small: int, mid: int, large: int
                  ) -> tuple[list[int], int]:
    """The sizes each architecture trains and the mid size: ``arch_sizes`` when they hold the chapter's small,
    mid and large sizes; else those three (mid falling back to the family's largest size below large, or small)."""
    if {small, mid, large} <= set(arch_sizes) and small <= mid < large:
        return sorted(set(arch_sizes)), mid
    if not small <= mid < large:
        below = [s for s in family_sizes if small <= s < large]
        mid = max(below) if below else small
    return sorted({small, mid, large}), mid


def rows_for_source(fam: Family, settings: Sequence[Mapping[str, Any]], sizes: Sequence[int], small: int, mid: int,
                    n_heldout: int, null_q: float = 0.99, second_seed: int | None = None,
                    progress: bool = True) -> list[ArchRow]:
    """The ReLU baseline of ``fam``'s source at ``sizes`` (a subset of ``fam`` where it can be), then each
    architecture of ``settings`` at matched sparsity; with ``second_seed``, each also at ``small`` with that
    seed. The source's density threshold is the one chapter 5 uses (``latents.density_threshold`` of ``fam``)."""
    sizes = sorted(set(sizes))
    large = sizes[-1]
    if not {small, mid} <= set(sizes):
        raise ValueError(f"the architecture sizes {sizes} must include the small ({small}) and mid ({mid}) sizes")
    source = low_mode.source_label(fam)
    threshold = latents.density_threshold(fam, n_heldout).value
    relu = low_mode.ablation_family(fam, {}, sizes, progress)
    k = matched_k({s: r["l0"] for s, r in reconstruction(relu, n_heldout).items()})
    rows = []
    for setting in [{}, *settings]:
        overrides = architecture_overrides(setting, k)
        family = relu if not overrides else low_mode.ablation_family(fam, overrides, sizes, progress)
        other = None
        if second_seed is not None:
            seed_overrides = {**overrides, "seed": second_seed}
            if "k" in seed_overrides:
                seed_overrides["k"] = {small: k[small]}
            other = low_mode.ablation_family(fam, seed_overrides, [small], progress)
        rows.append(arch_row(source, architecture_name(setting), family, small, mid, large, n_heldout, threshold,
                             null_q, other))
    return rows


def baselines(rows: Sequence[ArchRow]) -> dict[str, ArchRow]:
    """The ReLU row of each source."""
    return {r.source: r for r in rows if r.arch == RELU}
