"""The post's open question answered by class: what the low-MCS latents are, per setting.

Every low-MCS latent (MCS below the null cutoff against the larger dictionary) is placed in
the classes of :mod:`sae_core.report.latents` (never fires / ultralow / active on held-out
activations; unmoved / moved from its initial decoder row). The answer for one setting
(source × initialisation) is then a count per class, and a sentence built here from it; the
chapters glue the sentences and never write their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sae_core import stats
from sae_core.report import latents
from sae_core.report.analysis import mcs_values
from sae_core.report.pipeline import Family

MIN_LOW = 10  # fewer low-MCS features than this: no low mode to take apart
MIN_SCORED = 20  # fewer scored features than this: the reconstruction test says it has little power
UNTRAINED = "decoders at their initialisation"  # the verdict when >= MOSTLY of the low part is unmoved
PARTLY = "partly trained features"  # the verdict when the low part holds many active, moved features
STRICT_COS = 0.99  # a stricter "unmoved", to show the verdict does not hang on latents.UNMOVED_COS
MOSTLY = 0.9  # a class holds "the low mode" when it has at least this share of it


TRUE_COS = 0.9  # a learned feature "is" a true feature within this cosine (chapter 3's rule)


@dataclass
class TrueMatch:
    """Ground truth only: how many of the low part's trained features (active and moved) lie within
    ``TRUE_COS`` of a true feature, against the high-MCS features (Fisher's exact test, two-sided)."""

    low_true: int
    low: int  # active, moved low features
    high_true: int
    high: int
    p: float | None  # None when either group is empty

    @property
    def low_share(self) -> float | None:
        return self.low_true / self.low if self.low else None

    @property
    def high_share(self) -> float | None:
        return self.high_true / self.high if self.high else None


def true_match(family: Family, size: int, low: np.ndarray, trained_low: np.ndarray) -> TrueMatch | None:
    """:class:`TrueMatch` for a family whose source knows its true features (None otherwise)."""
    if family.true_features is None:
        return None
    from scipy.stats import fisher_exact

    from sae_core.similarity import max_cosine_similarity

    near = max_cosine_similarity(family.features(size), family.true_features).values.numpy() >= TRUE_COS
    a, n_a, b, n_b = int(near[trained_low].sum()), int(trained_low.sum()), int(near[~low].sum()), int((~low).sum())
    p = float(fisher_exact([[a, n_a - a], [b, n_b - b]]).pvalue) if n_a and n_b else None
    return TrueMatch(a, n_a, b, n_b, p)


def true_match_sentence(t: TrueMatch | None) -> str:
    """Are the low part's trained features real features the larger dictionary missed? Ground truth says
    (an empty string without ground truth or without active, moved low features)."""
    if t is None or not t.low:
        return ""
    text = (f" Of these {t.low} active, moved low features, {t.low_true} ({t.low_share:.1%}) lie within cosine "
            f"{TRUE_COS} of a true feature")
    if t.p is None:  # no high-MCS feature to compare with
        return text + "."
    text += (f", against {t.high_true} of the {t.high:,} high-MCS features ({t.high_share:.1%}; Fisher's exact "
             f"test {stats.format_p(t.p)}).")
    if t.p >= 0.05:
        return text + " They are true features about as often as the features both dictionaries share."
    if t.low_share < t.high_share:
        return text + " They are less often true features than the features both dictionaries share."
    return text + " They are more often true features: real features the larger dictionary missed."


@dataclass
class Movement:
    """How far the low and the high features moved in training (medians), and how often the low ones fired."""

    decoder_low: float
    decoder_high: float | None
    encoder_low: float | None
    encoder_high: float | None
    fire_steps_low: float | None  # median training steps in which a low latent fired
    n_steps: int


def movement(family: Family, size: int, low: np.ndarray, init_cos: np.ndarray) -> Movement:
    def med(x: np.ndarray | None, mask: np.ndarray) -> float | None:
        return float(np.median(x[mask])) if x is not None and mask.any() else None

    enc = latents.encoder_init_cosine(family, size)
    record = (family.latent_stats or {}).get(size, {})
    fires = record["fire_steps"].numpy() if "fire_steps" in record else None
    return Movement(med(init_cos, low), med(init_cos, ~low), med(enc, low), med(enc, ~low), med(fires, low),
                    int(family.params.get("n_steps", 0)))


def movement_sentence(m: Movement | None) -> str:
    """How far the low features' decoder rows and encoder columns moved, beside the high ones."""
    if m is None:
        return ""
    text = f" The low features' decoder rows kept a median cosine of {m.decoder_low:.2f} with their initial rows"
    text += f" (high-MCS features: {m.decoder_high:.2f})" if m.decoder_high is not None else ""
    if m.encoder_low is not None:
        text += f", their encoder columns {m.encoder_low:.2f}"
        text += f" (high: {m.encoder_high:.2f})" if m.encoder_high is not None else ""
    text += "."
    if m.fire_steps_low is not None and m.n_steps:
        text += f" They fired in a median {m.fire_steps_low:,.0f} of the {m.n_steps:,} training steps."
    return text


@dataclass
class LowByClass:
    """The low-MCS features of one dictionary, by class."""

    setting: str  # e.g. "language model, this report's initialisation"
    size: int
    against: int
    cutoff: float
    n: int  # features of the dictionary
    n_low: int
    n_heldout: int
    threshold: float
    never: int  # low features that never fire on the n_heldout held-out activations
    ultralow: int
    active: int
    unmoved: int | None  # low features within UNMOVED_COS of their initial decoder row (None: no record)
    active_moved: int | None  # low features that are active and moved
    unmoved_share_high: float | None  # share of the high-MCS features that are unmoved
    median_density_low: float | None  # over the low features (zero for those that never fire)
    median_density_high: float | None
    values: np.ndarray  # MCS of every feature
    classes: latents.LatentClasses
    truth: TrueMatch | None = None  # ground-truth sources only
    unmoved_strict: int | None = None  # low features within STRICT_COS of their initial decoder row
    # medians over the low (high) features: cosine of the decoder row / encoder column with its initial one,
    # and the training steps in which the latent fired (None without a training record)
    movement: Movement | None = None

    @property
    def low_share(self) -> float:
        return self.n_low / self.n

    @property
    def inactive(self) -> int:
        """Low features that never fire or fire at ultralow density."""
        return self.never + self.ultralow

    def share(self, count: int | None) -> float | None:
        """``count`` as a share of the low part (None without a low part or a count)."""
        return None if count is None or not self.n_low else count / self.n_low


def low_by_class(family: Family, size: int, against: int, cutoff: float, n_heldout: int, threshold: float,
                 setting: str) -> LowByClass:
    """Count the low-MCS features of ``size`` against ``against`` in each class."""
    values = mcs_values(family, size, against)
    c = latents.classify(family, size, n_heldout, threshold)
    low = values < cutoff
    unmoved = c.unmoved
    density = c.density

    def median(mask: np.ndarray) -> float | None:
        return float(np.median(density[mask])) if mask.any() else None

    return LowByClass(
        setting, size, against, cutoff, size, int(low.sum()), c.n_samples, threshold,
        int((low & c.never_fires).sum()), int((low & c.ultralow).sum()), int((low & c.active).sum()),
        None if unmoved is None else int((low & unmoved).sum()),
        None if unmoved is None else int((low & c.active & ~unmoved).sum()),
        None if unmoved is None or not (~low).any() else float(unmoved[~low].mean()),
        median(low), median(~low), values, c,
        true_match(family, size, low, low & c.active & ~unmoved) if unmoved is not None else None,
        None if c.init_cosine is None else int((low & (c.init_cosine >= STRICT_COS)).sum()),
        None if c.init_cosine is None or not low.any() else movement(family, size, low, c.init_cosine),
    )


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.1%}"


def verdict(r: LowByClass) -> str:
    """What the low part is, in a few words: the part of the answer the summary tables repeat. The low
    part is "decoders at their initialisation" when at least ``MOSTLY`` of its decoder rows never left
    their random start (unmoved), whatever the latents fire on: an unmoved row is close to a random
    direction, and a random direction stays below the null cutoff."""
    if r.n_low < MIN_LOW:
        return "no low mode"
    inactive, unmoved = r.share(r.inactive), r.share(r.unmoved)
    if unmoved is not None and unmoved >= MOSTLY:
        return UNTRAINED
    if unmoved is None and inactive >= MOSTLY:
        return "latents that (almost) never fire"
    if inactive >= MOSTLY:
        return "inactive latents, some moved"
    return PARTLY


def answer_sentence(r: LowByClass) -> str:
    """The answer for one setting, with its numbers."""
    head = f"{r.setting[:1].upper()}{r.setting[1:]}"
    if r.n_low < MIN_LOW:
        return (f"{head}: no low mode. Only {r.n_low} of the {r.n:,} features of the {r.size}-feature dictionary lie "
                f"below the cutoff {r.cutoff:.3f} against {r.against}.")
    parts = (f"{head}: {r.n_low} of the {r.n:,} features of the {r.size}-feature dictionary ({r.low_share:.1%}) lie "
             f"below the cutoff {r.cutoff:.3f} against {r.against}. Of these, {r.never} ({_pct(r.share(r.never))}) "
             f"never fire on {r.n_heldout:,} held-out activations, {r.ultralow} ({_pct(r.share(r.ultralow))}) fire at "
             f"ultralow density (below {r.threshold:.1e}) and {r.active} ({_pct(r.share(r.active))}) are active.")
    if r.unmoved is not None:
        parts += (f" {r.unmoved} ({_pct(r.share(r.unmoved))}) still have cosine ≥ {latents.UNMOVED_COS} with their "
                  "initial decoder row")
        if r.unmoved_strict is not None:
            parts += f", {r.unmoved_strict} ({_pct(r.share(r.unmoved_strict))}) even ≥ {STRICT_COS}"
        high = r.unmoved_share_high
        parts += f"; of the high-MCS features, {_pct(high)} are unmoved." if high is not None else "."
        parts += movement_sentence(r.movement)
    v = verdict(r)
    if v == UNTRAINED:
        parts += (" The low mode here is latents whose decoder rows stayed close to their random start, and a "
                  "random direction stays below the cutoff 99 times in 100")
        parts += (f". {r.active} of them fire above the ultralow threshold all the same: they respond to some "
                  "inputs while their decoder rows stayed put." if r.active else ".")
    elif v == "latents that (almost) never fire":
        parts += " The low mode here is latents that (almost) never fire."
    elif v == "inactive latents, some moved":
        parts += (f" The low mode here is latents that (almost) never fire, though "
                  f"{r.n_low - r.unmoved} of them moved from their initial row before they stopped.")
    else:
        moved = (f" {r.active_moved} of the {r.active} active ones moved from their initial row."
                 if r.active_moved is not None else "")
        parts += f" The low mode here is not only latents with untrained decoders: {r.active} are active.{moved}"
        parts += true_match_sentence(r.truth)
    return parts


def short_answer(r: LowByClass) -> str:
    """The abstract's version of :func:`answer_sentence`: the low share, how many of the low features
    stayed at their initialisation and how far they moved, and how many are inactive."""
    head = f"{r.setting[:1].upper()}{r.setting[1:]}"
    if r.n_low < MIN_LOW:
        return (f"{head}: no low mode ({r.n_low} of the {r.n:,} features of the {r.size}-feature dictionary lie below "
                f"the null cutoff against {r.against}; firing counted on {r.n_heldout:,} held-out activations).")
    text = (f"{head}: {r.n_low} of the {r.n:,} features of the {r.size}-feature dictionary ({r.low_share:.1%}) lie "
            f"below the null cutoff {r.cutoff:.3f} against {r.against}.")
    if r.unmoved is not None:
        text += (f" {_pct(r.share(r.unmoved))} of them keep cosine ≥ {latents.UNMOVED_COS} with their initial "
                 "decoder row")
        m = r.movement
        if m is not None and m.decoder_high is not None:
            text += f" (median {m.decoder_low:.2f}; high-MCS features {m.decoder_high:.2f})"
        text += "."
    text += (f" {_pct(r.share(r.inactive))} never fire or fire at ultralow density on {r.n_heldout:,} held-out "
             "activations.")
    return text


def overall_answer(results: Sequence[LowByClass]) -> str:
    """One sentence over every setting: in how many the low mode is decoders at their initialisation, and
    which dictionaries are the exceptions."""
    with_low = [r for r in results if r.n_low >= MIN_LOW]
    if not results:
        return "No setting was measured."
    if not with_low:
        return f"None of the {len(results)} settings has a low mode of {MIN_LOW} or more features."
    untrained = [r for r in with_low if verdict(r) == UNTRAINED]
    text = (f"In {len(untrained)} of the {len(with_low)} dictionaries with a low mode (each setting at each size "
            f"measured, with at least {MIN_LOW} features below the cutoff), at least {MOSTLY:.0%} of the low features "
            "keep their initial decoder row")
    others = [r for r in with_low if r not in untrained]
    if others:
        listed = "; ".join(f"{r.setting} at {r.size} ({verdict(r)}, {r.active} active low)" for r in others[:4])
        more = f"; and {len(others) - 4} more" if len(others) > 4 else ""
        text += ". In the others, too many low features moved: " + listed + more
    return text + "."


# ------------------------------------------------------------------ the 2024 mechanism, as a sentence
def _signed(x: float, digits: int = 3) -> str:
    """``x`` to ``digits`` decimals, without the "-0.000" of a tiny negative number."""
    text = f"{x:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def encoder_sentence(setting: str, t: latents.EncoderDirectionTest) -> str:
    """Do the ultralow latents share one encoder direction (Anthropic's 2024 circuits update)?"""
    if t.ultralow_encoder is None:
        return (f"{setting[:1].upper()}{setting[1:]}: the {t.size}-feature dictionary has fewer than two ultralow "
                "latents, so there is no shared encoder direction to test.")
    u, dec, act, rnd = t.ultralow_encoder, t.ultralow_decoder, t.active_encoder, t.random
    shared = u.top_share > t.random_q99[1] and u.mean_cosine > t.random_q99[0]
    below_active = act is not None and (u.top_share <= act.top_share or u.mean_cosine <= act.mean_cosine)
    text = (f"{setting[:1].upper()}{setting[1:]}, {t.size} features: the {u.n} ultralow latents' encoder directions "
            f"have mean pairwise cosine {u.mean_cosine:.3f} and put {u.top_share:.1%} of their squared singular values "
            f"in the top direction; their decoder rows {dec.mean_cosine:.3f} and {dec.top_share:.1%}")
    if act is not None:
        text += f"; as many active latents' encoders {act.mean_cosine:.3f} and {act.top_share:.1%}"
    text += (f"; random directions {_signed(rnd.mean_cosine)} and {rnd.top_share:.1%} (99% quantiles "
             f"{t.random_q99[0]:.3f} and {t.random_q99[1]:.1%}). ")
    if shared and below_active:
        return text + ("The ultralow encoders are more aligned than random directions, but no more than as many "
                       "active latents' encoders: nothing singles them out.")
    text += ("The ultralow encoders share one direction while their decoder rows do not, as the 2024 update reports."
             if shared and dec.top_share <= t.random_q99[1] else
             "The ultralow encoders share one direction. Their decoder rows share one less strongly, but above "
             "chance." if shared else
             "The ultralow encoders do not share one direction beyond chance here.")
    return text


# ------------------------------------------------------------------ recurrence and reconstruction
@dataclass
class Unfound:
    """Tests of "real features the larger dictionary missed" for the active low features of one size."""

    size: int
    against: int
    n_active_low: int
    recur: stats.CountVsNull | None  # active low features with a match above the cutoff in another seed's `against`
    recon_low: tuple[int, int]  # (better, scored) for the active low features
    recon_high: tuple[int, int]  # the same for a seeded random sample of as many high-MCS features
    recon_p: float | None  # Fisher's exact test of the two rates (two-sided)
    null_q: float


def unfound_sentence(u: Unfound | None, seed_b: int) -> str:
    """The recurrence and reconstruction tests as a sentence, with their nulls (None: not run)."""
    if u is None:
        return ("Whether active low features recur in another seed needs retraining, which dictionaries read from "
                "disk cannot do.")
    if u.n_active_low == 0:
        return (f"The {u.size}-feature dictionary has no active low feature, so the third explanation (real features "
                f"the {u.against}-feature dictionary missed) has nothing to explain.")
    text = f"Of the {u.n_active_low} active low features of the {u.size}-feature dictionary, "
    if u.recur is not None:
        r = u.recur
        text += (f"{r.k} have a match above the cutoff in the {u.against}-feature dictionary of seed {seed_b}, against "
                 f"{r.expected:.2f} expected by chance (rate {1 - u.null_q:.0%} at the cutoff; {r.ratio:.1f}× chance, "
                 f"binomial {r.p_text}). ")
    (bl, sl), (bh, sh) = u.recon_low, u.recon_high
    if sl == 0:
        text += "None fires often enough to score its reconstruction."
        return text
    text += (f"Where they fire, the {u.size}-feature dictionary reconstructs better relative to the "
             f"{u.against}-feature one than it does overall for {bl} of the {sl} scored ({bl / sl:.0%})")
    if sh:
        text += (f", against {bh} of {sh} ({bh / sh:.0%}) for randomly chosen high-MCS features"
                 + (f" (Fisher's exact test {stats.format_p(u.recon_p)})" if u.recon_p is not None else ""))
    text += "."
    if sl < MIN_SCORED:
        text += f" With {sl} scored, the test cannot tell the two rates apart unless they differ greatly."
    return text


def unfound(family: Family, other: Family | None, size: int, against: int, cutoff: float, n_heldout: int,
            threshold: float, null_q: float, n_recon: int = 65536, min_fires: int = 20, seed: int = 0) -> Unfound:
    """The active low features of ``size``: do they recur in ``other`` (another seed's ``against``),
    against the null rate 1 - ``null_q`` of a random direction passing the cutoff (binomial test); and
    do they carry reconstruction the larger dictionary lacks (``low_mode._reconstruction_edge`` on
    ``n_recon`` held-out activations), against as many randomly chosen high-MCS features (Fisher's
    exact test of the two rates)?"""
    from scipy.stats import fisher_exact

    from sae_core.report.low_mode import _reconstruction_edge
    from sae_core.similarity import max_cosine_similarity

    values = mcs_values(family, size, against)
    c = latents.classify(family, size, n_heldout, threshold)
    act_low = np.flatnonzero((values < cutoff) & c.active)
    recur = None
    if other is not None and act_low.size:
        m = max_cosine_similarity(family.features(size)[act_low], other.features(against)).values.numpy()
        recur = stats.count_vs_null(int((m >= cutoff).sum()), int(act_low.size), 1.0 - null_q)
    high = np.flatnonzero(values >= cutoff)
    pick = np.sort(np.random.default_rng(seed).choice(high, size=min(high.size, act_low.size), replace=False)) \
        if act_low.size and high.size else np.zeros(0, int)
    recon_low = _reconstruction_edge(family, size, against, act_low, n_recon, min_fires)
    recon_high = _reconstruction_edge(family, size, against, pick, n_recon, min_fires)
    p = None
    if recon_low[1] and recon_high[1]:
        table = [[recon_low[0], recon_low[1] - recon_low[0]], [recon_high[0], recon_high[1] - recon_high[0]]]
        p = float(fisher_exact(table).pvalue)
    return Unfound(size, against, int(act_low.size), recur, recon_low, recon_high, p, null_q)


# ------------------------------------------------------------------ settings side by side
@dataclass
class SettingRow:
    """One trained setting (a family) at the chapter's small and mid sizes against its largest."""

    label: str
    small: LowByClass
    mid: LowByClass
    bimodal_small: bool
    high_post_mid: float  # share of `mid` with MCS >= 0.5 (the post's split: fewer than 25% at 4096)
    never_share_large: float  # share of the largest dictionary that never fires on held-out data


def setting_row(label: str, family: Family, small: int, mid: int, large: int, cutoff: float, n_heldout: int,
                threshold: float) -> SettingRow:
    a = low_by_class(family, small, large, cutoff, n_heldout, threshold, label)
    b = low_by_class(family, mid, large, cutoff, n_heldout, threshold, label)
    never_large = float((latents.heldout_fires(family, large, n_heldout) == 0).mean())
    return SettingRow(label, a, b, stats.bimodality(a.values).bimodal,
                      float((b.values >= stats.POST_CUTOFF).mean()), never_large)


@dataclass
class ClassPoint:
    """One (family, size) of the summary figure."""

    family: str  # the setting's label
    key: str  # the family's cache key: points of one family are one group in the fit
    source: str
    size: int
    against: int
    inactive_share: float  # share of the size's latents that never fire or fire at ultralow density
    low_share: float  # share with MCS below the null cutoff against `against`
    active_low_share: float  # share that is low and active
    unmoved_share: float | None = None  # share whose decoder row is unmoved (None: no training record)

    @property
    def x(self) -> float:
        """The summary figure's x: the unmoved share (what the verdict rests on), else the inactive share."""
        return self.inactive_share if self.unmoved_share is None else self.unmoved_share


def x_label(points: Sequence[ClassPoint]) -> str:
    """What the summary figure's x measures for these points."""
    if points and all(p.unmoved_share is not None for p in points):
        return f"unmoved from initialisation (decoder cosine ≥ {latents.UNMOVED_COS})"
    if points and all(p.unmoved_share is None for p in points):
        return "never fires or ultralow (held-out)"
    return "unmoved share, or never fires or ultralow where no training record exists"


def points_table(points: Sequence[ClassPoint]) -> tuple[list[str], list[list[object]]]:
    """The summary figure's points as a table."""
    return (["setting", "size", "unmoved", "never fires or ultralow", "low share", "active and low"],
            [[p.family, p.size, "–" if p.unmoved_share is None else f"{p.unmoved_share:.1%}", f"{p.inactive_share:.1%}",
              f"{p.low_share:.1%}", f"{p.active_low_share:.1%}"] for p in points])


def class_points(named: Sequence[tuple[str, Family, float]], null_q: float, n_heldout: int) -> list[ClassPoint]:
    """One point per (family, size below its largest), from (label, family, density threshold) triples; a
    family listed twice (the same dictionaries under two names) gives each point once, under its first name."""
    from sae_core.report.low_mode import source_label

    points, seen = [], set()
    for name, fam, threshold in named:
        large = fam.sizes[-1]
        cut = stats.null_cutoff(fam.d_in, large, null_q)
        for size in fam.sizes[:-1]:
            if (fam.key, size, large) in seen:
                continue
            seen.add((fam.key, size, large))
            c = latents.classify(fam, size, n_heldout, threshold)
            low = mcs_values(fam, size, large) < cut
            points.append(ClassPoint(name, fam.key, source_label(fam), size, large,
                                     float((~c.active).mean()), float(low.mean()), float((low & c.active).mean()),
                                     None if c.unmoved is None else float(c.unmoved.mean())))
    return points


def fit_class_points(points: Sequence[ClassPoint], seed: int = 0) -> stats.GroupedFit | None:
    """low share = a + b · x (the unmoved share, :attr:`ClassPoint.x`), with intervals from a bootstrap over
    families (the nested sizes of one family are not independent points). None with fewer than three
    families or no spread."""
    if len({p.key for p in points}) < 3:
        return None
    try:
        return stats.grouped_linear_fit([p.x for p in points], [p.low_share for p in points],
                                        [p.key for p in points], seed=seed)
    except ValueError:
        return None


def fit_sentence(points: Sequence[ClassPoint], fit: stats.GroupedFit | None) -> str:
    """What the summary figure shows, with the fit's intervals."""
    if not points:
        return "There are no held-out activations for dictionaries read without a model, so this figure is empty."
    n_fam = len({p.key for p in points})
    if fit is None:
        return (f"The {len(points)} points come from {n_fam} families, too few (or too alike) to fit a line with "
                "intervals over families.")
    on_diagonal = fit.slope_low <= 1 <= fit.slope_high and fit.intercept_low <= 0 <= fit.intercept_high
    worst = max(points, key=lambda p: p.active_low_share)
    text = (f"Across {fit.n_points} points from {fit.n_groups} families, low share = {fit.intercept:.3f} (95% interval "
            f"{fit.intercept_low:.3f} to {fit.intercept_high:.3f}) + {fit.slope:.2f} ({fit.slope_low:.2f} to "
            f"{fit.slope_high:.2f}) × {'unmoved' if all(p.unmoved_share is not None for p in points) else 'inactive'} "
            f"share, r = {fit.r:.2f} ({fit.r_low:.2f} to {fit.r_high:.2f}). The intervals come from a bootstrap over "
            f"the {fit.n_groups} families; with so few, read them as rough. ")
    text += ("The points are consistent with the diagonal." if on_diagonal else
             "The points are not on the diagonal: slope 1 and intercept 0 are not both inside the intervals.")
    text += (f" The largest share of active low features is {worst.active_low_share:.1%} ({worst.family}, size "
             f"{worst.size}).")
    return text
