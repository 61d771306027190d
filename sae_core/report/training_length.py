"""How long the dictionaries train: a doubling ladder and a stopping rule.

A family is trained for ``n`` steps, then continued to ``2n``, ``4n``, … up to a cap (each
longer run starts from the shorter one's final checkpoint: with a constant learning rate and
the same batches, steps 1..n of a longer run are the shorter run exactly). At every rung the
quantities the chapters quote are measured again on held-out activations:

- the low share of the small dictionary against the largest (MCS below the null cutoff);
- the share of the mid size at or above the null cutoff, and at or above the post's 0.5;
- per size (small, mid, largest): the share that never fires, the ultralow share (the density
  threshold of the first rung, held fixed so the classes mean the same at every rung) and the
  share unmoved from initialisation;
- the fraction of variance explained (FVE) by the small and the largest dictionary.

**The stopping rule.** Training has *settled* at ``n`` steps when every quantity moves by less
than ``tolerance`` (1 point by default) between ``n`` and ``2n``. The ladder stops at the first
rung that settles, or at the cap; a ladder that reaches the cap without settling names the
quantities that still moved over its last doubling and by how much.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from sae_core import stats
from sae_core.report import latents
from sae_core.report.analysis import compared_pair, longer_run, mcs_values, reconstruction_table
from sae_core.report.pipeline import Family

TOLERANCE = 0.01  # a quantity has settled when it moves by less than this (1 point) over a doubling


@dataclass
class Rung:
    """The chapters' quantities for one family at one training length (all shares in [0, 1])."""

    steps: int
    values: dict[str, float]  # quantity name -> value, in a fixed order
    bimodal: bool  # the small dictionary's MCS histogram against the largest is bimodal
    epochs: float | None  # passes over the training activations (None: an endless source)


@dataclass
class Settling:
    """Where a ladder of rungs stopped, and why."""

    rungs: list[Rung]
    tolerance: float
    settled_at: int | None  # steps n at which every quantity moved < tolerance up to 2n; None: never
    last_changes: dict[str, float] = field(default_factory=dict)  # |value(2n) - value(n)| on the last doubling

    @property
    def unsettled(self) -> list[str]:
        """Quantities that moved by ``tolerance`` or more over the last doubling, largest first."""
        moved = [(c, q) for q, c in self.last_changes.items() if c >= self.tolerance]
        return [q for _, q in sorted(moved, key=lambda t: -t[0])]

    @property
    def final_steps(self) -> int:
        return self.rungs[-1].steps


def settle(rungs: Sequence[Rung], tolerance: float = TOLERANCE) -> Settling:
    """Apply the stopping rule to rungs at doubling step counts: the first ``n`` whose every
    quantity moves by less than ``tolerance`` up to the next rung."""
    rungs = sorted(rungs, key=lambda r: r.steps)
    if not rungs:
        raise ValueError("the stopping rule needs at least one rung")
    if not 0 < tolerance < 1:
        raise ValueError(f"the tolerance is a share in (0, 1), got {tolerance}")
    for a, b in itertools.pairwise(rungs):
        if b.steps != 2 * a.steps:
            raise ValueError(f"rungs must double: {a.steps} is followed by {b.steps}")
        if set(a.values) != set(b.values):
            raise ValueError("rungs measure different quantities")
    changes: dict[str, float] = {}
    for a, b in itertools.pairwise(rungs):
        changes = {q: abs(b.values[q] - a.values[q]) for q in a.values}
        if all(c < tolerance for c in changes.values()) and a.bimodal == b.bimodal:
            return Settling(list(rungs), tolerance, a.steps, changes)
    return Settling(list(rungs), tolerance, None, changes)


def measure(family: Family, small: int, mid: int, large: int, n_heldout: int, threshold: float,
            null_q: float = 0.99) -> Rung:
    """The chapters' quantities for ``family`` (see the module docstring)."""
    cut = stats.null_cutoff(family.d_in, large, null_q)
    v_small, v_mid = mcs_values(family, small, large), mcs_values(family, mid, large)
    values = {
        f"low share of {small}": float((v_small < cut).mean()),
        f"share of {mid} at or above the null cutoff": float((v_mid >= cut).mean()),
        f"share of {mid} at or above 0.5": float((v_mid >= stats.POST_CUTOFF).mean()),
    }
    for size in dict.fromkeys((small, mid, large)):
        classes = latents.classify(family, size, n_heldout, threshold)
        values[f"never-fires share at {size}"] = float(classes.never_fires.mean())
        values[f"ultralow share at {size}"] = float(classes.ultralow.mean())
        if classes.unmoved is not None:
            values[f"unmoved share at {size}"] = float(classes.unmoved.mean())
    pair = list(dict.fromkeys((small, large)))
    fve = {row["size"]: row["fve"] for row in reconstruction_table(family, n_heldout, sizes=pair)}
    for size in pair:
        values[f"FVE at {size}"] = float(fve[size])
    train_rows = (family.source.describe() or {}).get("train_rows") if family.source is not None else None
    steps = int(family.params["n_steps"])
    epochs = steps * int(family.params["batch_size"]) / train_rows if train_rows else None
    return Rung(steps, values, stats.bimodality(v_small).bimodal, epochs)


def ladder(family: Family, cap_factor: int, small_size: int, mid_size: int, large_size: int, n_heldout: int,
           tolerance: float = TOLERANCE, null_q: float = 0.99, progress: bool = True) -> Settling:
    """Train ``family`` on from its ``n`` steps to 2n, 4n, … ≤ ``cap_factor``·n, stopping at the
    first rung that settles (:func:`settle`); each rung continues the cached shorter run."""
    if cap_factor < 2 or cap_factor & (cap_factor - 1):
        raise ValueError(f"the cap is a power of two of at least 2 times n_steps, got {cap_factor}")
    small, large = compared_pair(family, small_size, large_size)
    below = [s for s in family.sizes if s < large]
    mid = mid_size if mid_size in below else below[-1]
    threshold = latents.density_threshold(family, family.heldout_n(n_heldout)).value
    rungs = [measure(family, small, mid, large, n_heldout, threshold, null_q)]
    factor = 2
    while factor <= cap_factor:
        rungs.append(measure(longer_run(family, factor, progress), small, mid, large, n_heldout, threshold, null_q))
        result = settle(rungs, tolerance)
        if result.settled_at is not None:
            return result
        factor *= 2
    return settle(rungs, tolerance)


def _points(share: float) -> str:
    return f"{100 * share:.1f} points"


def settling_sentence(label: str, result: Settling, chapters_steps: int) -> str:
    """What the stopping rule found for one source, and what it means for the chapters (which
    report ``chapters_steps`` steps)."""
    tol = f"{100 * result.tolerance:g} point" + ("" if result.tolerance == 0.01 else "s")
    first, last = result.rungs[0], result.rungs[-1]
    epochs = f" ({last.epochs:.2f} epochs of its training activations)" if last.epochs is not None else ""
    if len(result.rungs) == 1:
        return f"On the {label}, the ladder has one rung ({first.steps:,} steps), so nothing can be said of settling."
    biggest = max(result.last_changes, key=result.last_changes.get)
    if result.settled_at is not None:
        when = result.settled_at
        verdict = (f"On the {label}, training had settled at {when:,} steps: from {when:,} to {2 * when:,} "
                   f"steps{epochs} every quantity moved by less than {tol}, the most {biggest} "
                   f"({_points(result.last_changes[biggest])}).")
        use = ("The chapters report that length." if chapters_steps >= when else
               f"The chapters report {chapters_steps:,} steps, short of it.")
        return f"{verdict} {use}"
    moved = result.unsettled
    named = "; ".join(f"{q} by {_points(result.last_changes[q])}" for q in moved[:4])
    more = f", and {len(moved) - 4} other quantit{'y' if len(moved) == 5 else 'ies'} too" if len(moved) > 4 else ""
    flip = "" if result.rungs[-2].bimodal == last.bimodal else (
        f" The bimodality verdict of the small dictionary flipped ({'yes' if result.rungs[-2].bimodal else 'no'} "
        f"at {result.rungs[-2].steps:,}, {'yes' if last.bimodal else 'no'} at {last.steps:,}).")
    if not moved:  # only the verdict flipped
        named, more = "no share moved by that much", ""
    return (f"On the {label}, training had not settled by the cap of {last.steps:,} steps{epochs}: over the last "
            f"doubling {named}{more}.{flip} The chapters report {chapters_steps:,} steps; read the quantities "
            "named here as still moving with training.")


def settling_summary(results: dict[str, Settling]) -> str:
    """The abstract's one sentence over every source: where training settled, or the largest move of the last
    doubling where it did not (the methods chapter gives the full account)."""
    if not results:
        return "This build did not check the training length."
    parts = []
    for label, r in results.items():
        if len(r.rungs) < 2:
            parts.append(f"on the {label} it was not checked")
        elif r.settled_at is not None:
            parts.append(f"on the {label} it had settled at {r.settled_at:,} steps")
        else:
            worst = max(r.last_changes, key=r.last_changes.get)
            parts.append(f"on the {label} it had not settled by {r.final_steps:,} steps ({worst} still moved by "
                         f"{_points(r.last_changes[worst])})")
    return "Training length (chapter 2): " + "; ".join(parts) + "."


def ladder_table(result: Settling, label: str = "quantity") -> tuple[list[str], list[list[str]]]:
    """Header and rows: one row per quantity, one column per rung, values in percent."""
    header = [label] + [f"{r.steps:,} steps" for r in result.rungs] + ["last change"]
    rows = [[q] + [f"{100 * r.values[q]:.1f}%" for r in result.rungs]
            + ([_points(result.last_changes[q])] if result.last_changes else ["–"])
            for q in result.rungs[0].values]
    rows.append(["bimodal (small)"] + ["yes" if r.bimodal else "no" for r in result.rungs] + [""])
    return header, rows


PANELS = ("MCS shares", "latent classes", "FVE")


def panel(quantity: str) -> str:
    """Which of :data:`PANELS` a quantity of :func:`measure` is drawn in."""
    if quantity.startswith("FVE"):
        return "FVE"
    if quantity.startswith(("never-fires", "ultralow", "unmoved")):
        return "latent classes"
    return "MCS shares"


def plot_ladders(results: dict[str, Settling]):
    """One row per source; panels: MCS shares, latent classes, FVE, each against training steps."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 3, figsize=(13, 3.6 * len(results)), squeeze=False)
    for row, (label, result) in zip(axes, results.items(), strict=True):
        steps = np.array([r.steps for r in result.rungs])
        for ax, title in zip(row, PANELS, strict=True):
            for q in result.rungs[0].values:
                if panel(q) == title:
                    ax.plot(steps, [100 * r.values[q] for r in result.rungs], marker="o", label=q)
            if result.settled_at is not None:
                ax.axvline(result.settled_at, color="0.5", ls=":", lw=1)
            ax.set_xscale("log", base=2)
            ax.set_xticks(steps, [f"{s:,}" for s in steps])
            ax.set_xlabel("training steps")
            ax.set_ylabel("percent")
            ax.set_title(f"{label}: {title}", fontsize=10)
            ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, frameon=False)
    fig.tight_layout()
    return fig
