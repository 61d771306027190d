"""Figures of the report. Each function returns a matplotlib Figure and draws nothing else."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from sae_core import nulls
from sae_core.report.analysis import null_density_curve

sns.set_theme(style="whitegrid", context="notebook")
BINS = np.linspace(0, 1, 51)


def training_curves(history: list[dict[str, float]]) -> plt.Figure:
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    if not history:
        for ax in axes:
            ax.text(0.5, 0.5, "no training record", ha="center", va="center", transform=ax.transAxes)
    sizes = sorted({int(r["d_sae"]) for r in history})
    palette = sns.color_palette("viridis", len(sizes))
    for color, size in zip(palette, sizes, strict=True):
        rows = [r for r in history if r["d_sae"] == size]
        steps = [r["step"] for r in rows]
        for ax, key in zip(axes, ("mse", "l0", "dead_frac"), strict=True):
            ax.plot(steps, [r[key] for r in rows], color=color, label=str(size))
    if history:
        axes[0].set_yscale("log")
    for ax, title in zip(axes, ("reconstruction MSE", "L0 (active latents per sample)", "fraction dead"), strict=True):
        ax.set_title(title)
        ax.set_xlabel("step")
    if history:
        axes[2].legend(title="d_sae", fontsize=8)
    fig.tight_layout()
    return fig


def _scaled_null(ax, d: int, against: int, values: np.ndarray, cutoff: float | None, label: str) -> None:
    """The null density over a density histogram of ``values``, scaled to the share it describes:
    with a cutoff, the null truncated below it times the share of features below it."""
    x, pdf = null_density_curve(d, against)
    if cutoff is not None:
        share = float((values < cutoff).mean())
        mass = float(nulls.mcs_null_cdf(np.array([cutoff]), d, against)[0])
        keep = x < cutoff
        x, pdf = x[keep], pdf[keep] / mass * share
    ax.plot(x, pdf, color="C3", lw=1.5, label=label)


def _panels(n: int) -> tuple[plt.Figure, np.ndarray]:
    """A grid of ``n`` panels, three to a row."""
    cols = min(n, 3)
    rows = int(np.ceil(n / cols))
    return plt.subplots(rows, cols, figsize=(4.4 * cols, 3.2 * rows), squeeze=False)


def _finish_panels(fig: plt.Figure, axes: np.ndarray, n: int, legend_size: int) -> plt.Figure:
    """Blank the unused panels, put the legend on the first, tighten."""
    for ax in axes.flat[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=legend_size)
    fig.tight_layout()
    return fig


def mcs_histograms(values: Mapping[int | str, np.ndarray], against: int, d: int,
                   cutoff: float | None = None) -> plt.Figure:
    """One panel per entry (a smaller size, or a layer): its MCS against ``against``, with the analytic
    null; with ``cutoff``, the null truncated below it and scaled to the share of features there."""
    n = len(values)
    fig, axes = _panels(n)
    for ax, (size, v) in zip(axes.flat, values.items(), strict=False):
        ax.hist(v, bins=BINS, density=True, color="C0", alpha=0.8, label="learned")
        _scaled_null(ax, d, against, v, cutoff, f"null K={d}, M={against}")
        if cutoff is not None:
            ax.axvline(cutoff, color="grey", lw=0.8, ls=":")
        ax.set_title(f"{size} vs {against} ({len(v)} features)" if isinstance(size, int)
                     else f"{size} ({len(v)} features vs {against})")
        ax.set_xlabel("max cosine similarity")
    return _finish_panels(fig, axes, n, legend_size=8)


def dead_alive_histograms(parts: Sequence, d: int) -> plt.Figure:
    """Per size (``low_mode.Anatomy``): MCS histogram stacked by alive / dead but moved / dead and
    never moved from its initial decoder row, counts scaled to densities of the whole dictionary,
    with the truncated null scaled to the share of features below the cutoff."""
    n = len(parts)
    fig, axes = _panels(n)
    width = BINS[1] - BINS[0]
    for ax, a in zip(axes.flat, parts, strict=False):
        groups = [(~a.dead, "alive", "C0"), (a.dead & ~a.never_moved, "dead, moved", "C1"),
                  (a.dead & a.never_moved, "dead, never moved", "C7")] if a.dead_known else \
            [(np.ones(a.n, bool), "firing unknown (no activations)", "C0")]
        ax.hist([a.values[m] for m, _, _ in groups], bins=BINS, stacked=True,
                weights=[np.full(int(m.sum()), 1 / (a.n * width)) for m, _, _ in groups],
                color=[c for _, _, c in groups], label=[lab for _, lab, _ in groups])
        _scaled_null(ax, d, a.against, a.values, a.cutoff, "null below cutoff")
        ax.axvline(a.cutoff, color="grey", lw=0.8, ls=":")
        ax.set_title(f"{a.size} vs {a.against}: {a.n_low} low" + (f", {a.n_low_dead} dead" if a.dead_known else ""))
        ax.set_xlabel("max cosine similarity")
    return _finish_panels(fig, axes, n, legend_size=7)


def overlaid_histograms(samples: Mapping[str, np.ndarray], title: str, cutoff: float | None = None,
                        null: tuple[int, int] | None = None, bins: np.ndarray = BINS) -> plt.Figure:
    """Step histograms of several MCS samples (each cut below ``cutoff``), and the null for (K, M)."""
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for name, v in samples.items():
        v = v if cutoff is None else v[v < cutoff]
        ax.hist(v, bins=bins, density=True, histtype="step", lw=1.6, label=f"{name} (n={len(v)})")
    if null is not None:
        ax.plot(*null_density_curve(*null), color="C3", lw=1.2, label=f"analytic null K={null[0]}, M={null[1]}")
    ax.set_xlabel("max cosine similarity")
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def distance_heatmap(names: Sequence[str], distances: np.ndarray, title: str) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(6.8, 5.4))
    sns.heatmap(distances, xticklabels=names, yticklabels=names, annot=True, fmt=".3f", cmap="mako_r", ax=ax,
                cbar_kws={"label": "earthmover distance"})
    ax.grid(False)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def emd_by_size(rows: list[dict[str, float]]) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    sizes = [r["size"] for r in rows]
    for key, label, ls in (("learned_vs_random", "learned vs random", "-"),
                           ("random_vs_random", "random vs random", "-"),
                           ("expected_between", "sampling alone (two null samples)", ":"),
                           ("learned_vs_null", "learned vs truncated null", "-"),
                           ("expected_to_null", "chance vs truncated null", ":")):
        ax.plot(sizes, [r[key] for r in rows], marker="o", ls=ls, label=label)
    if not rows:
        ax.text(0.5, 0.5, "no size has a low part", ha="center", va="center", transform=ax.transAxes)
    else:
        ax.set_xscale("log", base=2)
    ax.set_xlabel("smaller dictionary size")
    ax.set_ylabel("earthmover distance (MCS < cutoff)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def scatter_pair(x: np.ndarray, y: np.ndarray, xlabel: str, ylabel: str, title: str) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    ax.scatter(x, y, s=5, alpha=0.4, color="C0", linewidths=0)
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set(xlim=(0, 1.02), ylim=(0, 1.02), xlabel=xlabel, ylabel=ylabel, title=title)
    fig.tight_layout()
    return fig


def splitting_counts(rows: list[dict[str, float]]) -> plt.Figure:
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    sizes = [r["size"] for r in rows]
    for suffix, ls, label in (("post", "-", "cutoff 0.5"), ("null", "--", "null 99% cutoff")):
        axes[0].plot(sizes, [r[f"high_{suffix}"] for r in rows], ls=ls, marker="o", color="C2", label=f"high, {label}")
        axes[0].plot(sizes, [r[f"low_{suffix}"] for r in rows], ls=ls, marker="o", color="C1", label=f"low, {label}")
        axes[1].plot(sizes, [r[f"frac_high_{suffix}"] for r in rows], ls=ls, marker="o", color="C2",
                     label=f"high share, {label}")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xlabel("dictionary size")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("features")
    axes[1].set_ylabel("share of features")
    axes[1].set_ylim(0, 1)
    fig.tight_layout()
    return fig


def dead_vs_low(points: Sequence, fit=None) -> plt.Figure:
    """``answer.ClassPoint``s: the unmoved share of the latents (x; the share that never fires or fires at
    ultralow density for dictionaries without a training record) against the low-MCS share (y), one colour
    per setting and one marker per source; with a fit, its line."""
    from sae_core.report.answer import x_label

    fig, ax = plt.subplots(figsize=(7.8, 4.8))
    names = list(dict.fromkeys(p.family for p in points))
    markers = dict(zip(dict.fromkeys(p.source for p in points), "o^sDv", strict=False))
    palette = sns.color_palette("tab20" if len(names) > 10 else "tab10", max(len(names), 1))[:len(names)]
    for color, name in zip(palette, names, strict=True):
        mine = [p for p in points if p.family == name]
        ax.scatter([p.x for p in mine], [p.low_share for p in mine], color=color, s=28, label=name,
                   marker=markers.get(mine[0].source, "o"))
        for p in mine:
            ax.annotate(str(p.size), (p.x, p.low_share), fontsize=6, xytext=(3, 2),
                        textcoords="offset points")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--", label="low share = x")
    if fit is not None:
        xs = np.linspace(0, 1, 50)
        ax.plot(xs, fit.intercept + fit.slope * xs, color="black", lw=1, label="least-squares fit")
    ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), xlabel=x_label(points),
           ylabel="share with MCS below the null cutoff")
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return fig


def tree_levels(summaries: list[dict[str, float | int]]) -> plt.Figure:
    """Shares per rung of the ladder: small latents with 0, 1, several children; large with several parents."""
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    labels = [f"{r['small']}→{r['large']}" for r in summaries]
    for key, label in (("share_children_0", "no child"), ("share_children_1", "one child"),
                       ("share_children_many", "several children"), ("share_merges", "merges (large side)")):
        ax.plot(labels, [r[key] for r in summaries], marker="o", label=label)
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of alive latents")
    ax.set_xlabel("rung of the size ladder")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def gpt_curve(evals: list[dict[str, float]]) -> plt.Figure:
    """The replication GPT's training and validation loss per evaluation step."""
    fig, ax = plt.subplots(figsize=(6.2, 3.6))
    if evals:
        steps = [e["step"] for e in evals]
        ax.plot(steps, [e["train_loss"] for e in evals], marker="o", label="training batch")
        ax.plot(steps, [e["val_loss"] for e in evals], marker="o", label="validation")
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no language model trained in this build", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats per token)")
    fig.tight_layout()
    return fig


def decoder_pca(pca) -> plt.Figure:
    """``geometry.DecoderPCA``: rows coloured by dictionary size (left) and by high or low MCS against the
    largest dictionary (right), whose own rows are drawn grey as the reference."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), sharex=True, sharey=True)
    sizes = sorted(set(pca.size.tolist()))
    palette = sns.color_palette("viridis", len(sizes))
    for color, size in zip(palette, sizes, strict=True):
        keep = pca.size == size
        axes[0].scatter(*pca.coords[keep].T, s=2, alpha=0.5, color=color, label=str(size), linewidths=0)
    reference = pca.size == sizes[-1]  # the largest dictionary: its MCS against itself is 1, neither high nor low
    for keep, color, label, alpha in ((reference, "0.6", f"reference ({sizes[-1]})", 0.2),
                                      (pca.high & ~reference, "C0", "high MCS (null cutoff)", 0.5),
                                      (~pca.high & ~reference, "C3", "low MCS (null cutoff)", 0.5)):
        axes[1].scatter(*pca.coords[keep].T, s=2, alpha=alpha, color=color, label=label, linewidths=0)
    for ax in axes:
        ax.set_xlabel(f"PC 1 ({pca.explained[0]:.1%})")
        ax.legend(fontsize=7, markerscale=4)
    axes[0].set_ylabel(f"PC 2 ({pca.explained[1]:.1%})")
    fig.tight_layout()
    return fig


def glue_figure(name: str, fig: plt.Figure) -> None:
    """Glue ``fig`` under ``name`` for the book, then close it so the cell does not show it twice."""
    from myst_nb import glue

    glue(name, fig, display=False)
    plt.close(fig)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]):
    """A Markdown table, rendered by Jupyter and by the book."""
    from IPython.display import Markdown

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return Markdown("\n".join(lines))


# ------------------------------------------------------------------ latent classes (chapter 5)
def _log_density(classes) -> tuple[np.ndarray, float]:
    """log10 firing density per latent; latents that never fire sit half a decade below the
    detection limit (returned as the second value), where the axis labels them."""
    floor = np.log10(classes.detection_limit) - 0.5
    with np.errstate(divide="ignore"):
        x = np.where(classes.counts > 0, np.log10(np.maximum(classes.density, 1e-300)), floor)
    return x, floor


def _no_activations() -> plt.Figure:
    """One empty panel that says why: dictionaries read without a model have no held-out firing."""
    fig, ax = plt.subplots(figsize=(6.2, 2.4))
    ax.text(0.5, 0.5, "no held-out activations: firing cannot be measured", ha="center", va="center",
            transform=ax.transAxes)
    ax.axis("off")
    return fig


def density_histograms(entries: Sequence[tuple[str, object]]) -> plt.Figure:
    """One panel per (title, ``latents.LatentClasses``): the histogram of log10 firing density on held-out
    activations (Bricken et al. 2023's plot), latents that never fire in a separate bar at the left, the
    detection limit 3/n (dotted) and the ultralow threshold (dashed)."""
    if not entries:
        return _no_activations()
    n = len(entries)
    fig, axes = _panels(n)
    for ax, (title, c) in zip(axes.flat, entries, strict=False):
        x, floor = _log_density(c)
        bins = np.arange(np.floor(floor * 4) / 4, 0.25, 0.25)
        fired = c.counts > 0
        ax.hist(x[fired & (c.density < c.threshold)], bins=bins, color="C1", label="ultralow")
        ax.hist(x[fired & (c.density >= c.threshold)], bins=bins, color="C0", label="active")
        ax.bar([floor], [int((~fired).sum())], width=0.25, color="C7", label="never fires")
        ax.axvline(np.log10(c.detection_limit), color="black", lw=0.8, ls=":", label="detection limit 3/n")
        ax.axvline(np.log10(c.threshold), color="C3", lw=1.0, ls="--", label="ultralow threshold")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("log10 firing density (held-out)")
        ax.set_ylabel("latents")
    return _finish_panels(fig, axes, n, legend_size=7)


def mcs_vs_density(entries: Sequence[tuple[str, object]]) -> plt.Figure:
    """One panel per (title, ``answer.LowByClass``): each latent's MCS against the larger dictionary (y) and
    its log10 firing density (x; never-firing latents at the left edge), coloured unmoved / moved from its
    initial decoder row; the null cutoff (dotted) and the ultralow threshold (dashed)."""
    if not entries:
        return _no_activations()
    n = len(entries)
    fig, axes = _panels(n)
    for ax, (title, r) in zip(axes.flat, entries, strict=False):
        x, floor = _log_density(r.classes)
        jitter = np.random.default_rng(0).uniform(-0.15, 0.15, x.size) * (r.classes.counts == 0)
        unmoved = r.classes.unmoved
        groups = [(np.ones(x.size, bool), "C0", "latent")] if unmoved is None else \
            [(~unmoved, "C0", "moved"), (unmoved, "C7", "unmoved")]
        for mask, color, label in groups:
            ax.scatter(x[mask] + jitter[mask], r.values[mask], s=3, alpha=0.5, color=color, label=label, linewidths=0)
        ax.axhline(r.cutoff, color="black", lw=0.8, ls=":", label="null cutoff")
        ax.axvline(np.log10(r.threshold), color="C3", lw=1.0, ls="--", label="ultralow threshold")
        decades = list(range(int(np.ceil(floor + 0.5)), 1))
        ax.set_xticks([floor, *decades], ["never", *(str(t) for t in decades)], fontsize=7)
        ax.set_xlim(floor - 0.4, 0.1)
        ax.set(ylim=(0, 1.02), title=title, xlabel="log10 firing density", ylabel="MCS")
        ax.title.set_fontsize(9)
    return _finish_panels(fig, axes, n, legend_size=7)


def mcs_vs_init_cosine(entries: Sequence[tuple[str, object]]) -> plt.Figure:
    """One panel per (title, ``answer.LowByClass``): MCS (y) against the cosine of the latent's decoder row
    with its initial one (x), coloured by firing class."""
    if not entries:
        return _no_activations()
    n = len(entries)
    fig, axes = _panels(n)
    for ax, (title, r) in zip(axes.flat, entries, strict=False):
        c = r.classes
        if c.init_cosine is None:
            ax.text(0.5, 0.5, "no training record", ha="center", va="center", transform=ax.transAxes)
        else:
            for name, color in (("active", "C0"), ("ultralow", "C1"), ("never fires", "C7")):
                mask = c.firing(name)
                ax.scatter(c.init_cosine[mask], r.values[mask], s=3, alpha=0.5, color=color, label=name,
                           linewidths=0)
        ax.axhline(r.cutoff, color="black", lw=0.8, ls=":", label="null cutoff")
        ax.set(xlim=(-0.05, 1.02), ylim=(0, 1.02), title=title, xlabel="cosine with the initial decoder row",
               ylabel="MCS")
        ax.title.set_fontsize(9)
    return _finish_panels(fig, axes, n, legend_size=7)
