"""Figures of chapter 7's feature trees: edge counts beside their baselines, the precision-recall curve
of true splits over the threshold sweep, and drawn example subtrees."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np

from sae_core.report.splitting import CurvePoint, Example, RungStatistics, TreeReport


def _err(est) -> tuple[float, list[list[float]]]:
    """A point and its (lower, upper) error bar lengths for matplotlib; zero-length where undefined."""
    v = est.value if np.isfinite(est.value) else np.nan
    lo = est.lo if np.isfinite(est.lo) else v
    hi = est.hi if np.isfinite(est.hi) else v
    return v, [[max(v - lo, 0.0) if np.isfinite(v) else 0.0], [max(hi - v, 0.0) if np.isfinite(v) else 0.0]]


def edges_against_baselines(groups: Sequence[tuple[str, Sequence[RungStatistics]]],
                            statistic: str = "edges_per_latent") -> plt.Figure:
    """Per rung, one panel per source: the statistic (edges per latent by default) of the trees, of the
    shuffled codes (mean and range over permutations) and of the seed baseline (bootstrap interval)."""
    groups = [(name, rows) for name, rows in groups if rows]
    fig, axes = plt.subplots(1, max(len(groups), 1), figsize=(5.6 * max(len(groups), 1), 3.8), squeeze=False)
    for ax, (name, rows) in zip(axes[0], groups, strict=False):
        x = np.arange(len(rows))
        for offset, label, marker, get in (
            (-0.15, "trees", "o", lambda r: r.real[statistic]),
            (0.0, "shuffled codes (permutations)", "s", lambda r: r.permuted[statistic]),
            (0.15, "another seed, same size", "^", lambda r: r.seed[statistic] if r.seed else None),
        ):
            pts = [(i, get(r)) for i, r in enumerate(rows) if get(r) is not None and np.isfinite(get(r).value)]
            if not pts:
                continue
            vals = [_err(e) for _, e in pts]
            ax.errorbar([i + offset for i, _ in pts], [v for v, _ in vals],
                        yerr=np.hstack([np.array(e) for _, e in vals]), fmt=marker, capsize=3, label=label)
        ax.set_xticks(x, [f"{r.small}→{r.large}" for r in rows], fontsize=8)
        ax.set_xlabel("rung of the size ladder")
        ax.set_ylabel("edges per active small latent" if statistic == "edges_per_latent" else statistic)
        ax.set_title(name, fontsize=10)
        ax.set_yscale("symlog", linthresh=0.1)
        ax.legend(fontsize=7)
    if not groups:
        axes[0][0].text(0.5, 0.5, "no trees in this build", ha="center", va="center", transform=axes[0][0].transAxes)
    fig.tight_layout()
    return fig


def precision_recall(curve: Sequence[CurvePoint] | None) -> plt.Figure:
    """Precision against recall of true parent -> child edges at each threshold (labelled), for the trees,
    the shuffled codes and the seed baseline; undefined points (no edge, no true pair) are left out."""
    fig, ax = plt.subplots(figsize=(5.6, 4.2))
    drawn = False
    if curve:
        series = [("trees", "o-", [(p.real.recall, p.real.precision) for p in curve]),
                  ("shuffled codes (mean of permutations)", "s--",
                   [(p.permuted_recall.value, p.permuted_precision.value) for p in curve]),
                  ("another seed, same size", "^:",
                   [(p.seed.recall, p.seed.precision) if p.seed is not None else (np.nan, np.nan) for p in curve])]
        for label, style, pts in series:
            ok = [(t.threshold, r, pr) for t, (r, pr) in zip(curve, pts, strict=True)
                  if np.isfinite(r) and np.isfinite(pr)]
            if not ok:
                continue
            drawn = True
            ax.plot([r for _, r, _ in ok], [pr for _, _, pr in ok], style, label=label)
            if label == "trees":
                for t, r, pr in ok:
                    ax.annotate(f"{t:g}", (r, pr), textcoords="offset points", xytext=(4, 4), fontsize=8)
    if not drawn:
        ax.text(0.5, 0.5, "no threshold has a defined precision and recall:\nno true parent-child pair is learned",
                ha="center", va="center", transform=ax.transAxes, fontsize=9)
    else:
        ax.legend(fontsize=7)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("recall of true parent → child pairs")
    ax.set_ylabel("precision (share of links that are true splits)")
    fig.tight_layout()
    return fig


def _node(report: TreeReport, level: int, latent: int) -> str:
    size = report.sizes[level]
    text = f"{size}:{latent}"
    if report.identities is not None:
        feat = int(report.identities[size][latent])
        if feat < 0:
            return text + "\nno true feature"
        role = ("parent" if report.parent_of is not None and (report.parent_of == feat).any() else
                "child" if report.parent_of is not None and report.parent_of[feat] >= 0 else "feature")
        text += f"\n{role} {feat}"
    return text


def subtrees(report: TreeReport, examples: Sequence[Example], max_children: int = 6) -> plt.Figure:
    """One panel per example: the small latent (left) and its edges to the larger dictionary's latents
    (right), each labelled with the score and, on a synthetic source, the edge's kind."""
    n = max(len(examples), 1)
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 3.6), squeeze=False)
    for ax, ex in zip(axes[0], examples, strict=False):
        ax.set_axis_off()
        ax.set_title(f"{ex.label}\n({ex.rule})", fontsize=8)
        if ex.rung is None:
            ax.text(0.5, 0.5, f"no {ex.label} edge in these trees", ha="center", va="center", fontsize=9)
            continue
        kids = ex.children[:max_children]
        ys = np.linspace(0.9, 0.1, len(kids)) if len(kids) > 1 else [0.5]
        box = {"boxstyle": "round", "fc": "white", "ec": "0.4"}
        ax.text(0.12, 0.5, _node(report, ex.rung, ex.root), ha="center", va="center", fontsize=8, bbox=box)
        for (j, score, kind), y in zip(kids, ys, strict=True):
            ax.annotate("", xy=(0.7, y), xytext=(0.25, 0.5), arrowprops={"arrowstyle": "->", "color": "0.3"})
            ax.text(0.47, (0.5 + y) / 2 + 0.03, f"{score:.2f}" + (f" {kind}" if kind else ""), fontsize=7,
                    ha="center")
            ax.text(0.83, y, _node(report, ex.rung + 1, j), ha="center", va="center", fontsize=8, bbox=box)
        if np.isfinite(ex.chance):
            ax.text(0.5, 0.0, f"median score of shuffled codes' edges at this rung: {ex.chance:.2f}", ha="center",
                    fontsize=7, transform=ax.transAxes)
        if len(ex.children) > max_children:
            ax.text(0.83, 0.0, f"+{len(ex.children) - max_children} more", ha="center", fontsize=7)
    if not examples:
        axes[0][0].set_axis_off()
        axes[0][0].text(0.5, 0.5, "no trees in this build", ha="center", va="center")
    fig.tight_layout()
    return fig
