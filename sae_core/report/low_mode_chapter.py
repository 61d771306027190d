"""Chapter 5 ("What the low mode is") as one object: the settings it trains, its tables and sentences.

The notebook calls one method per result; every table is (headers, rows) for ``plots.table``
and every sentence comes from :mod:`sae_core.report.answer` or from here, with tests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from sae_core import stats
from sae_core.report import answer, latents, low_mode
from sae_core.report.pipeline import Family

MAIN_SETTINGS = ({}, {"init": "post"})  # the answer is stated for both initialisations on every source
TRANSPOSED = "this report's initialisation"
POST_INIT = "the post's initialisation"


@dataclass
class Setting:
    label: str  # "language model, the post's initialisation"
    source: Family  # the source's baseline family
    family: Family
    overrides: dict[str, Any]
    threshold: float  # the source's density threshold
    row: answer.SettingRow
    near_duplicates_mid: float  # share of mid's rows with another of its rows at cosine > 0.99
    # resampling only: share of DATA_DUPLICATE_ROWS random held-out activations with a near-duplicate among
    # them (resampling starts latents at activations, so repetitive data gives near-duplicate rows)
    data_near_duplicates: float | None = None

    @property
    def main(self) -> bool:
        """One of the two initialisations without other changes (the settings the answer is stated for)."""
        return self.overrides in MAIN_SETTINGS


DATA_DUPLICATE_ROWS = 2000  # random held-out activations whose near-duplicates are counted beside resampling


def data_near_duplicate_share(family: Family, n_rows: int = DATA_DUPLICATE_ROWS, seed: int = 0) -> float | None:
    """:func:`near_duplicate_share` of ``n_rows`` held-out activations drawn at random (None without activations)."""
    if not family.has_activations:
        return None
    x = family.sample(family.heldout_n(max(n_rows, 65536)))
    rows = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n_rows]
    return near_duplicate_share(x[rows])


@dataclass
class ChanceLines:
    """One source's three chance models for the MCS against its largest dictionary (see chance_lines)."""

    source: str
    d: int
    large: int
    small: int
    null_q: float
    d_cutoff: float  # the d-dimensional null's quantile: "low" on every page
    span_dim: int  # principal components holding 99% of the activations' variance
    span_median: float
    span_cutoff: float
    gauss_median: float
    gauss_cutoff: float
    above: tuple[float, float, float] | None  # share of the small dictionary above each cutoff (None: not trained)
    # features of the small dictionary between the d-dimensional cutoff and the span's: above chance in d
    # dimensions, not inside the data's span; and how many of them are active with a moved decoder row
    between: int | None = None
    between_trained: int | None = None


def chance_sentence(c: ChanceLines) -> str:
    """What the span does to chance, for one source, in two short sentences."""
    q = f"{c.null_q:.0%}"
    text = (f"On the {c.source}, the activations span {c.span_dim} of {c.d} dimensions. Random directions in that "
            f"span reach an MCS of {c.span_cutoff:.3f} against {c.large} ({q} quantile); in all {c.d} dimensions "
            f"they reach {c.d_cutoff:.3f}.")
    if c.above is not None:
        text += (f" Of the {c.small} features, {c.above[0]:.1%} lie above the {c.d}-dimensional cutoff and "
                 f"{c.above[1]:.1%} above the span's.")
    if c.between:
        text += (f" The {c.between} between the two cutoffs are where the post's \"noise\" reading would put features "
                 "that trained but match nothing in the larger dictionary beyond chance in the data's span")
        text += (f"; {c.between_trained} of them are active with moved decoder rows." if c.between_trained is not None
                 else ".")
    return text


def near_duplicate_share(features: torch.Tensor, threshold: float = 0.99) -> float:
    """Share of rows that have another row of the same matrix at cosine above ``threshold``."""
    f = torch.nn.functional.normalize(features.float(), dim=1)
    gram = f @ f.t()
    gram.fill_diagonal_(-1.0)
    return float((gram.max(dim=1).values > threshold).float().mean())


def setting_label(source_name: str, overrides: Mapping[str, Any], two_sources: bool) -> str:
    if not overrides:
        name = TRANSPOSED
    elif dict(overrides) == {"init": "post"}:
        name = POST_INIT
    else:
        name = low_mode.ablation_name(overrides)
    return f"{source_name}, {name}" if two_sources or overrides in MAIN_SETTINGS else name


ABLATION_KINDS = {  # what chapter 5's ablation settings change, as the page names them
    "init": "the initialisation of the code that trained the post's dictionaries (init=\"post\": encoder and "
            "decoder drawn independently, decoder rows normalised inside the forward pass)",
    "resample": "resampling of dead latents from a pool of held-back activations (Bricken et al.'s procedure)",
    "schedule": "a learning-rate schedule (linear warm-up over lr_warmup steps, then linear decay to 0 over "
                "the last lr_decay share of the steps)",
    "noise": "isotropic noise added to the synthetic activations (the post's \"noise\" explanation)",
}


def _setting_kind(overrides: Mapping[str, Any]) -> str | None:
    """Which of :data:`ABLATION_KINDS` a setting is (None: another change)."""
    if overrides.get("init") == "post" and len(overrides) == 1:
        return "init"
    if overrides.get("resample_every") and len(overrides) == 1:
        return "resample"
    if set(overrides) <= {"lr_warmup", "lr_decay"} and overrides:
        return "schedule"
    if set(overrides) == {"synthetic"} and set(overrides["synthetic"]) == {"noise_std"}:
        return "noise"
    return None


def _join(items: Sequence[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else "; ".join(items[:-1]) + "; and " + items[-1]


class LowModeChapter:
    def __init__(self, sources: Sequence[Family], small: int, mid: int, large: int, ablation_sizes: Sequence[int],
                 null_q: float, n_heldout: int) -> None:
        self.sources = list(sources)
        self.small, self.large, self.null_q, self.n_heldout = small, large, null_q, n_heldout
        self.ab_sizes = sorted(set(ablation_sizes) | {large})
        self.mid = mid if mid in self.ab_sizes else self.ab_sizes[-2]
        self.ab_small = small if small in self.ab_sizes else self.ab_sizes[0]
        self._memo: dict[Any, Any] = {}
        self.thresholds = {f.key: latents.density_threshold(f, n_heldout) for f in self.sources
                           if f.has_activations}

    # ------------------------------------------------------------ classes
    def _large(self, fam: Family) -> int:
        return self.large if self.large in fam.saes else fam.sizes[-1]

    def _cutoff(self, fam: Family) -> float:
        return stats.null_cutoff(fam.d_in, self._large(fam), self.null_q)

    @property
    def n_heldout_text(self) -> str:
        parts = []
        for fam in self.sources:
            if not fam.has_activations:
                continue
            n = fam.heldout_n(self.n_heldout)
            where = ("rows of documents the SAEs never trained on" if fam.heldout_available is not None else
                     "fresh samples the training never drew")
            parts.append(f"on the {low_mode.source_label(fam)}, {n:,} held-out activations ({where}; a latent that "
                         f"never fires there fires on fewer than {latents.detection_limit(n):.1e} of activations with "
                         "95% confidence)")
        if not parts:
            return "These dictionaries were read without a model and site, so their firing cannot be measured."
        return "Firing density is counted " + "; ".join(parts) + "."

    def threshold_sentence(self) -> str:
        return " ".join(f"On the {low_mode.source_label(f)}, {self.thresholds[f.key].describe(lead=False)}"
                        for f in self.sources if f.key in self.thresholds)

    def chance_lines(self, n_samples: int = 65536, seed: int = 0) -> list[ChanceLines]:
        """The chance models of each source with activations: the d-dimensional null (right for rows still at
        their random initialisation; it defines "low") and two nulls for trained features that live where the
        data do (random directions in the span of the top principal components holding 99% of the variance, and
        Gaussian draws with the activations' mean and covariance), with the share of the small dictionary above
        each cutoff. Memoised: the table and the sentence read the same draws."""
        from sae_core import nulls

        key = ("chance", n_samples, seed)
        if key in self._memo:
            return self._memo[key]
        out = []
        for fam in self.sources:
            if not fam.has_activations:
                continue
            large = self._large(fam)
            x = fam.sample(n_samples)
            ref = fam.features(large)
            span = nulls.span_null_mcs(ref, activations=x, q=self.null_q, seed=seed)
            gauss = nulls.gaussian_null_mcs(ref, activations=x, q=self.null_q, seed=seed)
            v = low_mode.mcs(fam, self.small, large) if self.small in fam.saes else None
            cuts = (self._cutoff(fam), span.cutoff, gauss.cutoff)
            above = None if v is None else tuple(float((v >= c).mean()) for c in cuts)
            between = trained = None
            if v is not None:
                band = (v >= cuts[0]) & (v < span.cutoff)
                between = int(band.sum())
                if fam.key in self.thresholds:
                    c = self._classes(fam, self.small)
                    trained = None if c.unmoved is None else int((band & c.active & ~c.unmoved).sum())
            out.append(ChanceLines(low_mode.source_label(fam), fam.d_in, large, self.small, self.null_q, cuts[0],
                                   span.dim, span.median, span.cutoff, gauss.median, gauss.cutoff, above,
                                   between, trained))
        self._memo[key] = out
        return out

    def chance_table(self, n_samples: int = 65536, seed: int = 0) -> tuple[list[str], list[list[object]]]:
        q = f"{self.null_q:.0%}"
        return (["source", f"d-dimensional null: {q} quantile", "span (99% of variance)", f"span null: median / {q}",
                 f"Gaussian null: median / {q}", f"{self.small} above each (d / span / Gaussian)",
                 f"{self.small} between d and span cutoffs (active, moved)"],
                [[c.source, f"{c.d_cutoff:.3f} (d = {c.d})", f"{c.span_dim} dimensions",
                  f"{c.span_median:.3f} / {c.span_cutoff:.3f}", f"{c.gauss_median:.3f} / {c.gauss_cutoff:.3f}",
                  "–" if c.above is None else " / ".join(f"{a:.1%}" for a in c.above),
                  "–" if c.between is None else
                  f"{c.between} ({'–' if c.between_trained is None else c.between_trained})"]
                 for c in self.chance_lines(n_samples, seed)])

    def chance_sentence(self, n_samples: int = 65536, seed: int = 0) -> str:
        lines = self.chance_lines(n_samples, seed)
        if not lines:
            return "Dictionaries read without activations have no span to draw a null in."
        return " ".join(chance_sentence(c) for c in lines)

    def _classes(self, fam: Family, size: int) -> latents.LatentClasses:
        return latents.classify(fam, size, self.n_heldout, self.thresholds[fam.key].value)

    def density_panels(self) -> list[tuple[str, latents.LatentClasses]]:
        return [(f"{low_mode.source_label(f)}: {s}", self._classes(f, s)) for f in self.sources
                if f.key in self.thresholds for s in (self.small, self.mid, self._large(f)) if s in f.saes]

    def class_table(self) -> tuple[list[str], list[list[object]]]:
        rows = []
        for f in self.sources:
            if f.key not in self.thresholds:
                continue
            for s in f.sizes:
                c = self._classes(f, s)
                rows.append([low_mode.source_label(f), s, f"{c.never_fires.mean():.1%}", f"{c.ultralow.mean():.1%}",
                             f"{c.active.mean():.1%}",
                             "–" if c.unmoved is None else f"{c.unmoved.mean():.1%}"])
        return ["source", "size", "never fires", "ultralow", "active", "unmoved"], rows

    # ------------------------------------------------------------ settings
    def settings(self, ablations: Sequence[Mapping[str, Any]], progress: bool = True) -> list[Setting]:
        """Both initialisations on every source, then each ablation on the sources it applies to."""
        out = []
        two = len(self.sources) > 1
        for fam in self.sources:
            if fam.key not in self.thresholds:
                continue
            extra = [a for a in ablations if a not in MAIN_SETTINGS and low_mode.applies_to(a, fam.params["source"])
                     and (fam is self.sources[0] or not low_mode.applies_to(a, self.sources[0].params["source"]))]
            retrain = fam.params["source"] != "dictionaries"
            for overrides in ([*MAIN_SETTINGS, *extra] if retrain else [{}]):
                sizes = sorted(set(self.ab_sizes) | {self._large(fam)})
                fam_set = low_mode.ablation_family(fam, overrides, sizes, progress)
                label = setting_label(low_mode.source_label(fam), overrides, two)
                threshold = self.thresholds[fam.key].value
                row = answer.setting_row(label, fam_set, self.ab_small, self.mid, self._large(fam), self._cutoff(fam),
                                         self.n_heldout, threshold)
                out.append(Setting(label, fam, fam_set, dict(overrides), threshold, row,
                                   near_duplicate_share(fam_set.features(self.mid)),
                                   data_near_duplicate_share(fam) if overrides.get("resample_every") else None))
        return out

    def scatter_panels(self, settings: Sequence[Setting]) -> list[tuple[str, answer.LowByClass]]:
        return [(f"{s.label}: {r.size} vs {r.against}", r) for s in settings if s.main
                for r in (s.row.small, s.row.mid)]

    def low_class_table(self, settings: Sequence[Setting]) -> tuple[list[str], list[list[object]]]:
        def pct(x: float | None) -> str:
            return "–" if x is None else f"{x:.0%}"

        rows = []
        for s in settings:
            for r in (s.row.small, s.row.mid):
                counts = {c.name: c for c in latents.class_counts(r.classes, r.values < r.cutoff)}
                rows.append([s.label, r.size, f"{r.n_low} ({r.low_share:.1%})",
                             " / ".join(pct(counts[n].share_of_low) for n in latents.FIRING),
                             pct(r.share(r.unmoved)),
                             " / ".join(pct(counts[n].low_share_of_class) for n in latents.FIRING)])
        return (["setting", "size", "low (share)", "low: never / ultralow / active", "low: unmoved",
                 "low share of never / ultralow / active"], rows)

    def robustness_table(self, settings: Sequence[Setting]) -> tuple[list[str], list[list[object]]]:
        rows = []
        for s in settings:
            if not s.main:
                continue
            for r in (s.row.small, s.row.mid):
                rob = latents.robustness(s.family, r.size, r.values < r.cutoff, self.n_heldout, s.threshold)
                for n, a, b, c in zip(rob.ns, rob.never_fires, rob.ultralow, rob.active, strict=True):
                    rows.append([s.label, r.size, f"{n:,}", f"{latents.detection_limit(n):.1e}", a, b, c])
        return ["setting", "size", "held-out n", "limit 3/n", "low: never fires", "ultralow", "active"], rows

    def answer_sentences(self, settings: Sequence[Setting]) -> list[str]:
        return [answer.answer_sentence(s.row.small) for s in settings if s.main]

    def lead(self, settings: Sequence[Setting]) -> str:
        """The abstract's answer for the first setting (the lead source, this report's initialisation)."""
        main = [s for s in settings if s.main]
        return answer.short_answer(main[0].row.small) if main else self.n_heldout_text

    def overall(self, settings: Sequence[Setting]) -> str:
        return answer.overall_answer([r for s in settings if s.main for r in (s.row.small, s.row.mid)])

    def encoder_tests(self, settings: Sequence[Setting]) -> list[str]:
        out = []
        for s in settings:
            if s.main:
                t = latents.encoder_direction_test(s.family, s.row.mid.classes)
                out.append(answer.encoder_sentence(s.label, t))
        return out

    # ------------------------------------------------------------ seeds
    def seed_tests(self, other: Family | None, n_recon: int, seed: int
                   ) -> tuple[low_mode.SeedCeiling | None, answer.Unfound | None]:
        if other is None:
            return None, None
        base = self.sources[0]
        base_ab = low_mode.ablation_family(base, {}, self.ab_sizes, progress=False)
        ceiling = low_mode.seed_ceiling(base_ab, other, self.mid, self.large, self.null_q)
        unfound = answer.unfound(base_ab, other, self.mid, self.large, self._cutoff(base), self.n_heldout,
                                 self.thresholds[base.key].value, self.null_q, n_recon=n_recon, seed=seed)
        return ceiling, unfound

    def ceiling_table(self, ceiling: low_mode.SeedCeiling) -> tuple[list[str], list[list[object]]]:
        return (["size", "shared with the other seed (same size)", f"high against {self.large} (same seed)",
                 "null cutoff"],
                [[s, f"{ceiling.same_size[s]:.1%}", "–" if s not in ceiling.across_sizes else
                  f"{ceiling.across_sizes[s]:.1%}", f"{ceiling.cutoffs[s]:.3f}"] for s in sorted(ceiling.same_size)])

    def ceiling_sentence(self, ceiling: low_mode.SeedCeiling | None) -> str:
        if ceiling is None:
            return "A second seed needs retraining, which dictionaries read from disk cannot do."
        return (f"Against a second seed of the same size, {ceiling.same_size[self.mid]:.1%} of the {self.mid}-feature "
                f"dictionary's features have a match above the null cutoff for that size, and "
                f"{ceiling.same_size[self.large]:.1%} of the {self.large}-feature one's; across sizes, "
                f"{ceiling.across_sizes[self.mid]:.1%} of the {self.mid} features have a match in the "
                f"{self.large}-feature dictionary of the same seed (table).")

    # ------------------------------------------------------------ ablations
    def ablation_table(self, settings: Sequence[Setting]) -> tuple[list[str], list[list[object]]]:
        rows = [[s.label, f"{s.row.small.low_share:.1%}", "yes" if s.row.bimodal_small else "no",
                 f"{s.row.high_post_mid:.1%}", answer.verdict(s.row.mid), s.row.mid.active,
                 f"{s.near_duplicates_mid:.1%}", f"{s.row.never_share_large:.1%}"] for s in settings]
        return (["setting", f"{self.ab_small}: low share", f"{self.ab_small}: bimodal", f"{self.mid}: MCS ≥ 0.5",
                 f"{self.mid}: low part", f"{self.mid}: active low", f"{self.mid}: near-duplicate rows",
                 f"{self.large}: never fires"], rows)

    def ablation_intro(self, overrides: Sequence[Mapping[str, Any]]) -> str:
        """What each trained setting changes, from ``overrides`` (the chapter's ``ablations``), and which of the
        settings the report knows this build did not train (the ``sweep`` profile trains them all)."""
        if not overrides:
            return "This build trains no ablation family (its ablations list is empty)."
        kinds = {kind: any(_setting_kind(o) == kind for o in overrides) for kind in ABLATION_KINDS}
        said = [ABLATION_KINDS[k] for k, present in kinds.items() if present]
        others = [o for o in overrides if _setting_kind(o) is None]
        said += [low_mode.ablation_name(o) for o in others]  # glued text: no markdown
        text = ("Each row is a family trained at the chapter's sizes with one setting changed from the "
                "report's own: " + _join(said) + ".")
        missing = [ABLATION_KINDS[k] for k, present in kinds.items() if not present]
        if missing:
            text += (" This build leaves out " + _join(missing) + "; the sweep profile (make book PROFILE=sweep) "
                     "trains them.")
        return text

    def ablation_sentence(self, settings: Sequence[Setting]) -> str:
        if not settings:
            return "Dictionaries read from disk cannot be retrained, so this section does not apply to them."
        post_like = [s.label for s in settings if s.row.bimodal_small and s.row.high_post_mid < 0.25]
        text = (("Settings that reproduce both the post's bimodality at "
                 f"{self.ab_small} vs {self.large} and its fewer than 25% of features with MCS ≥ 0.5 at {self.mid}: "
                 + "; ".join(post_like) + ".") if post_like else
                (f"No setting reproduces both the post's bimodality at {self.ab_small} vs {self.large} and its fewer "
                 f"than 25% of features with MCS ≥ 0.5 at {self.mid}; the lowest share at {self.mid} is "
                 f"{min(s.row.high_post_mid for s in settings):.1%}."))
        extra = [s for s in settings if not s.main]
        if extra:
            text += " " + " ".join(
                f"With {s.label}, the {self.mid}-feature dictionary's low part is {answer.verdict(s.row.mid)} "
                f"({s.row.mid.n_low} low features, {s.row.mid.active} of them active), and "
                f"{s.near_duplicates_mid:.1%} of its rows have a near-duplicate (cosine > 0.99) in the same dictionary."
                + ("" if s.data_near_duplicates is None else
                   " Resampling starts latents at activations, and the activations repeat: "
                   f"{s.data_near_duplicates:.1%} of {DATA_DUPLICATE_ROWS:,} held-out activations drawn at random "
                   "have a near-duplicate among them.")
                for s in extra)
        return text

    # ------------------------------------------------------------ sweep and summary
    def sweep_families(self, sweep: Sequence[Mapping[str, Any]], sweep_sizes: Sequence[int]
                       ) -> list[tuple[str, Family, str]]:
        out = []
        two = len(self.sources) > 1
        for fam in self.sources if sweep else []:
            if fam.params["source"] == "dictionaries":
                continue
            f_large = self._large(fam)
            sizes = sorted({s for s in sweep_sizes if s < f_large} | {f_large})
            for overrides in [{}, *sweep]:
                if low_mode.applies_to(overrides, fam.params["source"]):
                    name = low_mode.ablation_name(overrides)
                    label = f"{low_mode.source_label(fam)}: {name}" if two else name
                    out.append((label, low_mode.ablation_family(fam, overrides, sizes), name))
        return out

    def sweep_rows(self, swept: Sequence[tuple[str, Family, str]]) -> list[low_mode.SweepRow]:
        return [low_mode.sweep_row(f, name, null_q=self.null_q, n_heldout=self.n_heldout) for _, f, name in swept]

    def alpha_sentence(self, rows: Sequence[low_mode.SweepRow]) -> str:
        if not rows:
            return ""  # the sweep's introduction already says this build does not sweep
        return low_mode.alpha_sentence(rows, self.sweep_small(rows, self.small))

    @staticmethod
    def sweep_small(rows: Sequence[low_mode.SweepRow], small: int | None = None) -> int:
        sizes = rows[0].low_share
        return small if small in sizes else min(sizes)

    def sweep_table(self, rows: Sequence[low_mode.SweepRow]) -> tuple[list[str], list[list[object]]]:
        small = self.sweep_small(rows, self.small)
        return (["source", "α", "normalised (scale)", "init", "MCS ≥ 0.5 by size", f"{small}: low share",
                 "never fires by size", "post's numbers"],
                [[r.source, f"{r.l1_coeff:g}", f"yes ({r.activation_scale:.3g})" if r.normalized else "no", r.init,
                  ", ".join(f"{s}: {v:.0%}" for s, v in r.high_post.items()), f"{r.low_share[small]:.1%}",
                  ", ".join(f"{s}: {v:.0%}" for s, v in r.never_share.items()),
                  "–" if r.post_numbers is None else "yes" if r.post_numbers else "no"] for r in rows])

    def sweep_intro(self, rows: Sequence[low_mode.SweepRow], n_settings: int) -> str:
        if not rows:
            return ("This build does not sweep α or the activations' scale (the `sweep` parameter is empty); the "
                    "`sweep` profile does (`make book PROFILE=sweep`, timed in the README).")
        norms = ", ".join(f"{low_mode.source_label(f)} {low_mode.raw_activation_norm(f):.3g}" for f in self.sources
                          if f.has_activations)
        return (f"The sweep has {len(rows)} rows: {n_settings + 1} settings (the first is the baseline) on "
                f"{len(self.sources)} source{'s' if len(self.sources) > 1 else ''}, at the sizes in `sweep_sizes` and "
                f"the reference. The raw activations' mean squared norm is {norms}; normalisation scales it to "
                f"{self.sources[0].d_in}. \"Post's numbers\" means more than 90% of the {low_mode.POST_FIRST} features "
                f"and fewer than 25% of the {low_mode.POST_MID} have MCS ≥ 0.5 against the reference, as in the post.")

    def named_families(self, settings: Sequence[Setting], other: Family | None,
                       swept: Sequence[tuple[str, Family, str]]) -> list[tuple[str, Family, float]]:
        """Every family of the chapter with its source's density threshold, for the summary figure."""
        by_source = {f.params["source"]: self.thresholds[f.key].value for f in self.sources if f.key in self.thresholds}
        named = [(f"{low_mode.source_label(f)}: baseline", f, by_source[f.params["source"]]) for f in self.sources
                 if f.key in self.thresholds]
        named += [(s.label, s.family, s.threshold) for s in settings]
        if other is not None and other.params["source"] in by_source:
            named.append((f"{low_mode.source_label(other)}: seed={other.params['seed']}", other,
                          by_source[other.params["source"]]))
        named += [(label, f, by_source[f.params["source"]]) for label, f, _ in swept if f.params["source"] in by_source]
        return named
