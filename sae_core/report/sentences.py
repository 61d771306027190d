"""The sentences chapters 1, 3, 4, 6, 8 and 9 glue, each a function of an analysis result.

Every function takes plain numbers or a result object and returns the text a chapter glues, so
the edge cases (no low mode, every latent dead, one feature, a verdict exactly on its boundary)
are unit-tested (``tests/report/test_sentences.py``) instead of being f-strings inside a
notebook's conditionals. Rules for the prose: short sentences, one claim each with its number,
past tense for what was measured, and never "nan": a value that cannot be measured says why.
Where the post's cutoff 0.5 and the null cutoff both appear, each number names its cutoff.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from sae_core.stats import POST_CUTOFF

POST_SPLIT_SIZE = 4096  # the post: fewer than 25% of the 4096-feature dictionary's features have MCS >= 0.5 ...
POST_SPLIT_REFERENCE = 8192  # ... against the 8192-feature one
POST_SPLIT_SHARE = 0.25


def finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def pct(x: float | None, missing: str = "–") -> str:
    return f"{x:.1%}" if finite(x) else missing


def sizes_text(sizes: Sequence[int]) -> str:
    """``256``, ``256 and 512``, ``256, 512 and 1024``."""
    names = [str(s) for s in sizes]
    if not names:
        return "none"
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def mode_text(x: float) -> str:
    """A histogram mode, or "none" when no bin on that side of 0.5 holds a feature (NaN)."""
    return f"{x:.2f}" if finite(x) else "none"


def glue_all(values: Mapping[str, Any]) -> None:
    """``glue(name, value, display=False)`` for each item: a chapter's numbers in one call."""
    from myst_nb import glue

    for name, value in values.items():
        glue(name, value, display=False)


# ------------------------------------------------------------------ chapter 1: the setting
def source_description(params: Mapping[str, Any], companion: Mapping[str, Any] | None = None) -> str:
    """What the dictionaries were trained on (a noun phrase), and the ground-truth companion if any."""
    source = params["source"]
    if source == "synthetic":
        s = params["synthetic"]
        text = (f"synthetic activations with {s['n_features']} true features in {s['d_in']} dimensions, "
                f"{s['mean_active']:g} active per sample on average")
    elif source == "lm":
        text = f"{params['lm']['site']} of {params['lm']['model']} on {params['lm']['corpus']}"
    else:
        n = len(params["dictionaries"])
        text = f"{n} dictionar{'y' if n == 1 else 'ies'} read from disk"
        text += (f", with activations from {params['lm']['site']} of {params['lm']['model']}" if "lm" in params
                 else ", without activations")
    if companion is not None and source == "lm":
        text += (f". Beside it, a synthetic source with {companion['n_features']} true features in "
                 f"{companion['d_in']} dimensions was trained with the same sizes and settings. It answers the "
                 "questions only known features can answer")
    return text


def training_sentence(sizes: Sequence[int], d_in: int, n_steps: int | None, batch_size: int | None,
                      l1_coeff: float | None, silent_share: float | None = None,
                      window: int | None = None) -> str:
    """How the family was trained. ``n_steps`` None: the dictionaries were trained elsewhere."""
    if n_steps is None:
        return (f"The dictionaries (widths {sizes_text(sizes)}, activation width {d_in}) were trained elsewhere. "
                "There is no training record.")
    text = (f"SAEs of widths {sizes_text(sizes)} were trained together on the same {n_steps * batch_size:,} "
            f"activations of width {d_in}. Training took {n_steps:,} steps of Adam with L1 coefficient {l1_coeff:g}.")
    if finite(silent_share) and window:
        text += (f" At the end, {silent_share:.1%} of the largest dictionary's latents were silent in the last "
                 f"{min(window, n_steps)} training steps. This is a training diagnostic: the book's classes of "
                 "latents are measured on held-out data (chapter 5).")
    return text


def evaluation_sentences(rows: Sequence[Mapping[str, float]], n_firing: int | None,
                         limit: float | None = None, heldout_share: float | None = None,
                         n_heldout_rows: int | None = None, n_training_rows: int | None = None) -> str:
    """The held-out evaluation behind the introduction's table: ``rows`` are
    :func:`analysis.reconstruction_table`'s, first the smallest size, last the largest. The L0
    quoted is the table's, so prose and table carry one number."""
    if not rows or n_firing is None:
        return ("Without activations (no model and site were given), L0, variance explained and firing could "
                "not be measured.")
    first, last = rows[0], rows[-1]
    where = "held-out activations"
    if heldout_share is not None and n_heldout_rows is not None:
        where = (f"held-out activations: rows of the {heldout_share:.0%} of the corpus's documents the SAEs never "
                 f"trained on ({n_heldout_rows:,} held-out rows against {n_training_rows:,} training rows)")
    text = (f"The table was measured on {where}. L0 and variance explained used the first {first['n_fve']:,} "
            f"of them.")
    if len(rows) == 1:
        text += f" The one dictionary had L0 {first['l0']:.1f} and explained {first['fve']:.1%} of the variance."
    else:
        text += (f" The smallest dictionary ({first['size']}) had L0 {first['l0']:.1f} and explained "
                 f"{first['fve']:.1%} of the variance. The largest ({last['size']}) had L0 {last['l0']:.1f} and "
                 f"explained {last['fve']:.1%}.")
    text += f" \"Never fires\" was decided on all {n_firing:,} held-out activations."
    if limit is not None:
        text += f" A latent that never fired there fires on fewer than {limit:.1e} of activations (95% confidence)."
    return text


def loss_sentence(n_batches: int, n_tokens: int, clean: float, zero: float) -> str:
    """The cross-entropy evaluation of a language-model source."""
    return (f"Each dictionary's reconstruction was spliced into the model at the site (through nnsight) on "
            f"{n_batches} batches of held-out documents ({n_tokens:,} predicted tokens). The next-token loss was "
            f"{clean:.3f} nats clean and {zero:.3f} with the site zeroed. The table gives the loss with each "
            "reconstruction and the share of the zero-ablation gap it recovered.")


# ------------------------------------------------------------------ chapter 3: bimodality
def pair_sentence(row, bimodal_sizes: Sequence[int]) -> str:
    """The post's pair (``row``: an :class:`analysis.BimodalityRow`): bimodal or not, with its modes."""
    head = f"For the post's pair, {row.size} vs {row.against} ({row.n} features),"
    if row.bimodal:
        return (f"{head} the distribution was bimodal. The tallest bin below 0.5 sat at {row.low_mode:.2f}. The "
                f"tallest bin at or above 0.5 sat at {row.high_mode:.2f}.")
    text = f"{head} the distribution was not bimodal. {1 - row.frac_high_post:.1%} of the features lay below 0.5."
    if bimodal_sizes:
        return text + f" Against {row.against}, the bimodal sizes were {sizes_text(bimodal_sizes)}."
    return text + f" No smaller size was bimodal against {row.against}."


def modes_text(row) -> str:
    """The two modes of the post's pair for the introduction's summary table."""
    if not finite(row.low_mode):
        return f"no low mode ({pct(1 - row.frac_high_post)} below 0.5); high mode {mode_text(row.high_mode)}"
    return f"{mode_text(row.low_mode)} and {mode_text(row.high_mode)}"


def truth_note(has_truth: bool) -> str:
    return "" if has_truth else " The true-feature columns are empty: a language model has no known features."


def truth_where(truth_family, family) -> str:
    """Where the ground-truth check runs: on the family itself, on a companion beside it, or nowhere
    (``truth_family``: :func:`pipeline.companion_family`'s result, a family with ``params`` or None)."""
    if truth_family is None:
        return ("This build's source has no known features, and no ground-truth source was set beside it "
                "(parameter `ground_truth`). The check does not apply.")
    if truth_family is family:
        return ""
    s = truth_family.params["synthetic"]
    return (f"A language model has no known features. So the check ran beside it on the ground-truth source: "
            f"{s['n_features']} true features in {s['d_in']} dimensions, with dictionaries of the same sizes "
            "trained with the same settings.")


def truth_verdict(truth) -> str:
    """High- against low-MCS features on a source with true features (``truth``: an
    :class:`analysis.GroundTruth`, None without one)."""
    if truth is None:
        return "Chapter 5 classifies the low-MCS features by firing density and movement for every source."
    size, large = truth.size, truth.against
    high_t, low_t = truth.high_matching_true, truth.low_matching_true
    if high_t is None or low_t is None:
        side = "above" if low_t is None else "below"
        text = (f"Every feature of the {size}-feature dictionary lay {side} the null cutoff {truth.cutoff:.3f}. "
                "High- and low-MCS features could not be compared.")
    else:
        more = "more" if high_t > low_t else "not more"
        text = (f"For the {size}-feature dictionary against {large}, high-MCS features were {more} often true "
                f"features than low-MCS ones. {high_t:.1%} of {truth.n_high} high-MCS features lay within cosine "
                f"{truth.true_cos_threshold:g} of a true feature, against {low_t:.1%} of {truth.n_low} low-MCS ones.")
    parts = [f"{never:.1%} of the {n} {side}-MCS features" for never, n, side in
             ((truth.high_never, truth.n_high, "high"), (truth.low_never, truth.n_low, "low")) if never is not None]
    if parts:
        text += f" On held-out data, {' and '.join(parts)} never fired."
    return text


# ------------------------------------------------------------------ chapter 4: random nulls
def lead_sentence(requested: int, small: int, large: int, requested_low: int, n_low: int,
                  minimum: int = 10) -> str:
    """Which pair the random-null chapter compares, and why."""
    if small != requested:
        return (f"The post's pair, {requested} vs {large}, had {requested_low} features below the null cutoff. "
                f"That is too few for a distribution. So this chapter leads with {small} vs {large}, the smaller "
                "size with the largest low part.")
    if n_low < minimum:
        return (f"No dictionary smaller than {large} had {minimum} or more features below the null cutoff "
                f"({requested} vs {large}: {n_low}). There is no low mode to compare with chance.")
    return f"The compared pair is the post's, {small} vs {large}."


def comparison_row(cmp, n_random: int) -> dict[str, float]:
    """The by-size table's row for the pair a :class:`analysis.NullComparison` compared, from that
    comparison's own distances and test, so the chapter's text and its table give one number."""
    import numpy as np

    n_low = int(cmp.learned_low.size)
    row: dict[str, float] = {"size": cmp.size, "n_low": n_low}
    if cmp.test is None:
        return row
    d = cmp.distances
    random_pairs = [d[i, j] for i in range(1, 1 + n_random) for j in range(i + 1, 1 + n_random)]
    row.update({"learned_vs_random": float(np.mean(d[0, 1:1 + n_random])),
                "random_vs_random": float(np.mean(random_pairs)) if random_pairs else float("nan"),
                "random_vs_alt": float(np.mean(d[1:1 + n_random, -1])),
                "expected_between": cmp.expected_between, "learned_vs_null": cmp.test.w1,
                "expected_to_null": cmp.test.expected, "p_value": cmp.test.p_value, "p_text": cmp.test.p_text})
    return row


def distances_sentence(row: Mapping[str, float], verdict: str = "") -> str:
    """Earthmover distances of the learned low part, at its own sample size (``row``: :func:`comparison_row`)."""
    if "learned_vs_random" not in row:
        return f"There is no low part to place among the random sets: {verdict}." if verdict else (
            "There is no low part to place among the random sets.")
    text = (f"At n = {row['n_low']} per set, the learned low part was on average {row['learned_vs_random']:.4f} "
            "(W1) from a random set.")
    if finite(row.get("random_vs_random")):
        text += f" Random sets were {row['random_vs_random']:.4f} from each other."
    text += f" Sampling alone gives {row['expected_between']:.4f} at this n."
    if finite(row.get("random_vs_alt")):
        text += f" Random sets were {row['random_vs_alt']:.4f} from the alt-params set."
    return text


def random_tests_sentence(cmp) -> str:
    """The truncated-null test applied to each random set: what chance looks like through it."""
    if cmp.test is None or not cmp.random_tests:
        return ""
    return (f"The same test on each random set's low part, subsampled to n = {int(cmp.learned_low.size)}, gave "
            f"{', '.join(t.p_text for t in cmp.random_tests)}. That is what chance looks like through this test.")


def by_size_sentence(rows: Sequence[Mapping[str, float]], minimum: int = 10) -> str:
    if any("learned_vs_null" in r for r in rows):
        return f"Sizes with fewer than {minimum} low features are listed without distances."
    return f"None of these sizes had {minimum} or more features below the null cutoff, so no distance is drawn."


def truth_nulls_sentence(cmp, requested: int) -> str:
    """The random-null test on the ground-truth companion (``cmp`` None: there is none)."""
    if cmp is None:
        return ""
    fewer = f" {requested} had too few low features to compare." if cmp.size != requested else ""
    return (f"On the ground-truth source trained with the same settings, {int(cmp.learned_low.size)} features of "
            f"the {cmp.size}-feature dictionary lay below the null cutoff {cmp.cutoff:.3f} against {cmp.against}."
            f"{fewer} Their low part was {cmp.verdict}.")


# ------------------------------------------------------------------ chapter 6: cross-dictionary correlation
def cross_verdict(corr, triple: Sequence[int]) -> str:
    """How strongly a feature's MCS against one larger dictionary predicts its MCS against another,
    from the 95% interval of Pearson's r (Fisher's z): strongly when its lower end, as printed (two
    decimals), is at least 0.5, moderately from 0.2. Follows "predicts its MCS against another" in the chapters."""
    base, b, c = triple
    what = f"{base} against {b} and {c}"
    if not finite(corr.pearson):
        return f"not measurably ({what}): the MCS values were constant against one of them."
    if corr.n < 4:
        return (f"not measurably ({what}): {corr.n} feature{'s' if corr.n != 1 else ''} cannot give an interval "
                f"for Pearson's r ({corr.pearson:.2f}).")
    z, half = math.atanh(max(min(corr.pearson, 1 - 1e-12), -1 + 1e-12)), 1.96 / math.sqrt(corr.n - 3)
    # the verdict reads the ends as printed (+ 0.0: never "-0.00")
    low_r, high_r = round(math.tanh(z - half), 2) + 0.0, round(math.tanh(z + half), 2) + 0.0
    strength = "strongly" if low_r >= 0.5 else "moderately" if low_r >= 0.2 else "weakly or not"
    spearman = f"Spearman {corr.spearman:.2f}" if finite(corr.spearman) else "Spearman undefined"
    return (f"{strength} ({what}: Pearson {corr.pearson:.2f}, 95% interval {low_r:.2f}–{high_r:.2f}; {spearman}; "
            f"{corr.n} features).")


def correlation_text(corr, triple: Sequence[int]) -> str:
    """One triple's correlations for the companion's sentence."""
    what = f"{triple[0]} against {triple[1]} and {triple[2]}"
    if not finite(corr.pearson):
        return f"{what}: constant MCS, no correlation"
    return f"{what}: Pearson {corr.pearson:.2f}, Spearman {corr.spearman:.2f}"


def truth_cross_sentence(triples: Sequence[Sequence[int]], results: Sequence) -> str:
    if not triples:
        return ""
    return ("On the ground-truth source trained with the same settings (table above): "
            + "; ".join(correlation_text(r, t) for t, r in zip(triples, results, strict=True)) + ".")


# ------------------------------------------------------------------ chapter 8: the post's claims
def bimodal_verdict(shape, small: int, large: int, bimodal_sizes: Sequence[int]) -> str:
    """The post's first claim (``shape``: :func:`stats.bimodality` of the post's pair)."""
    if shape.bimodal:
        dip = shape.valley / min(shape.low_peak, shape.high_peak)
        valley = ("No histogram bin between the modes held a feature." if round(dip, 2) == 0 else
                  f"The emptiest bin between them had {dip:.2f} of the smaller peak's density.")
        text = (f"Reproduced for {small} vs {large}. The modes sat at {shape.low_mode:.2f} and "
                f"{shape.high_mode:.2f}. {shape.low_mass:.1%} of the features lay below 0.5. {valley}")
    elif shape.low_mass == 0:
        text = f"Not reproduced for {small} vs {large}: no feature lay below 0.5, so there is no low mode."
    else:
        text = (f"Not reproduced for {small} vs {large}. {shape.low_mass:.1%} of the features lay below 0.5, "
                "too few or without a valley to make a second mode.")
    if bimodal_sizes:
        return text + f" Against {large}, the bimodal sizes were {sizes_text(bimodal_sizes)}."
    return text + f" No smaller size was bimodal against {large}."


def chance_verdict(cmp) -> str:
    """The post's second claim (``cmp``: the :class:`analysis.NullComparison` of the lead pair)."""
    if cmp.test is None:
        return f"Not testable: {cmp.verdict}."
    return (f"{'Reproduced' if cmp.consistent else 'Not reproduced'} for {cmp.size} vs {cmp.against}, below the "
            f"null cutoff {cmp.cutoff:.3f}. The low part was {cmp.verdict}.")


def splitting_verdict(rows: Sequence[Mapping[str, float]], post_size: int = POST_SPLIT_SIZE,
                      post_share: float = POST_SPLIT_SHARE) -> str:
    """The post's feature-splitting claim: from the smallest to the largest compared size, more
    high-MCS features but a smaller share of them (null cutoff), and at ``post_size`` fewer than
    ``post_share`` of the features at or above the post's 0.5. Reproduced when all three hold;
    partly when the trend holds but the post's number does not; each number names its cutoff."""
    if len(rows) < 2:
        only = f" ({rows[0]['size']} only)" if rows else ""
        return f"Not testable: a trend needs two dictionaries smaller than the reference{only}."
    first, last = rows[0], rows[-1]
    rises = last["high_null"] > first["high_null"]
    falls = last["frac_high_null"] < first["frac_high_null"]
    at = next((r for r in rows if r["size"] == post_size), None)
    below = at is not None and round(at["frac_high_post"], 3) < post_share  # as printed (one decimal of a percent)
    if rises and falls and below:
        verdict = "Reproduced"
    elif rises and falls:
        verdict = "Partly reproduced (the trend, not the post's number)"
    else:
        verdict = "Not reproduced"
    text = (f"{verdict}. From {first['size']} to {last['size']} features, the number of high-MCS features (null "
            f"cutoff {first['null_cutoff']:.3f}) went from {first['high_null']} to {last['high_null']}: it "
            f"{'rose' if rises else 'did not rise'}. Their share went from {first['frac_high_null']:.1%} to "
            f"{last['frac_high_null']:.1%}: it {'fell' if falls else 'did not fall'}.")
    if at is None:
        return text + (f" The post's number (under {post_share:.0%} at or above 0.5 at {post_size}) could not be "
                       f"checked: this build has no {post_size}-feature dictionary below the reference.")
    return text + (f" With the post's cutoff 0.5, {at['frac_high_post']:.1%} of the {post_size}-feature dictionary "
                   f"was high, {'below' if below else 'not below'} the post's {post_share:.0%}.")


def truth_sentence(truth) -> str:
    """High-MCS features against the true features, for the conclusions."""
    if truth is None:
        return "A language-model source has no true features to check high-MCS features against."
    if truth.high_matching_true is None or truth.low_matching_true is None:
        return (f"On the synthetic source, every feature of the {truth.size}-feature dictionary lay on one side of "
                f"the null cutoff {truth.cutoff:.3f}.")
    return (f"On the synthetic source, {truth.high_matching_true:.1%} of the {truth.n_high} high-MCS features of the "
            f"{truth.size}-feature dictionary (against {truth.against}) lay within cosine "
            f"{truth.true_cos_threshold:g} of a true feature. Of the {truth.n_low} low-MCS ones, "
            f"{truth.low_matching_true:.1%} did.")


def differs_sentence(params: Mapping[str, Any], gpt: Mapping[str, Any] | None) -> str:
    """What differs between this build and the post's setting."""
    samples = params.get("n_steps", 0) * params.get("batch_size", 0)
    if params["source"] == "lm" and gpt is not None:
        return (
            "The post's model was a 6-layer nanoGPT. It was trained for about 9 hours on 4 RTX 3090s on OpenWebText "
            "with the GPT-2 tokenizer, to a loss of 5.13. This build's model had the same shape. It was trained here "
            f"on {params['lm']['corpus']} ({gpt['corpus_tokens']:,} tokens under its own "
            f"{gpt['config']['vocab_size']:,}-token tokenizer) for {gpt['train_config']['steps']:,} steps. Its "
            f"validation loss was {gpt['val_loss']:.2f}, not comparable across tokenizers. Its dictionaries saw "
            f"{samples:,} activations each ({params['n_steps']:,} steps of {params['batch_size']}). The methods "
            "chapter checks the findings against twice that. The `replication` profile trains on web text (it "
            "needs the network). The `pythia` profile reads Pythia-70m-deduped through nnsight. The README gives "
            "their cost."
        )
    text = ("The post trained on activations of a 6-layer nanoGPT trained on web text. This build's source is "
            "stated in the introduction.")
    if params["source"] != "dictionaries":
        text += f" Its dictionaries saw {samples:,} activations each."
    return text + (" The default profile trains the post's model shape on real text. The `pythia` profile reads "
                   "Pythia-70m-deduped through nnsight. The README gives their cost.")


def splitting_share_text(rows: Sequence[Mapping[str, float]], cutoff: str = "post") -> str:
    """The high share from the smallest to the largest compared size, naming its cutoff, for the
    introduction's summary table (``cutoff``: "post" for 0.5, "null" for the null cutoff)."""
    if not rows:
        return "no dictionary below the reference"
    first, last = rows[0], rows[-1]
    name = "0.5" if cutoff == "post" else f"null cutoff {first['null_cutoff']:.3f}"
    return f"{first[f'frac_high_{cutoff}']:.1%} → {last[f'frac_high_{cutoff}']:.1%} ({name})"


# ------------------------------------------------------------------ chapter 9: geometry
def pca_sentence(pca, sizes: Sequence[int], large: int, cutoff: float) -> str:
    """The PCA of every decoder row (``pca``: :class:`geometry.DecoderPCA`). The reference's own rows
    are neither high nor low: their MCS against themselves is 1."""
    import numpy as np

    reference = pca.size == large
    compared = ~reference
    n_low = int((~pca.high & compared).sum())
    return (f"The two components held {pca.explained[0]:.1%} and {pca.explained[1]:.1%} of the variance of the "
            f"{len(pca.size):,} unit decoder rows of sizes {sizes_text(sizes)}. A row of a smaller size is high when "
            f"its MCS against the {large}-feature dictionary is at or above the null cutoff {cutoff:.3f}. "
            f"{n_low:,} of the {int(compared.sum()):,} smaller rows were low. The {int(np.sum(reference)):,} rows of "
            f"the {large}-feature dictionary itself are the reference, neither high nor low.")


def hub_sentence(hubs, large: int) -> str:
    """Random directions and learned features read through the token embedding (``hubs``:
    :class:`geometry.TokenHubs`, None without the replication GPT)."""
    if hubs is None:
        return ("This build's activations do not come from the replication GPT trained here. There is no token "
                "embedding to read directions through.")
    if hubs.distinct_learned > hubs.distinct_random:
        verdict = "Learned features spread over more tokens than random directions."
    elif hubs.distinct_learned == hubs.distinct_random:
        verdict = "Learned features spread over exactly as many tokens as random directions."
    else:
        verdict = "Learned features spread over fewer tokens than random directions."
    return (f"Directions were read through the model's output projection and token embedding ({hubs.vocab:,} "
            f"tokens). {hubs.n} random directions pointed at {hubs.distinct_random} distinct nearest tokens. {hubs.n} "
            f"learned features of the {large}-feature dictionary pointed at {hubs.distinct_learned}. {verdict}")


# ------------------------------------------------------------------ tables
def bimodality_table(rows: Sequence) -> tuple[list[str], list[list[object]]]:
    """Chapter 3's per-size table (``rows``: :func:`analysis.bimodality_table`); each share names its cutoff."""
    return (["size", "features", "low mode", "high mode", "share ≥ null cutoff", "share ≥ 0.5", "mean MCS",
             "bimodal", "high: near a true feature", "low: near a true feature", "low: never fires"],
            [[r.size, r.n, mode_text(r.low_mode), mode_text(r.high_mode), pct(r.frac_high_null),
              pct(r.frac_high_post), f"{r.mean:.3f}", "yes" if r.bimodal else "no", pct(r.high_true),
              pct(r.low_true), pct(r.low_never)] for r in rows])


def layers_table(by_layer: Mapping[str, Any]) -> tuple[list[str], list[list[object]]]:
    """MCS of the compared pair at each layer: share at or above 0.5 and the two modes."""
    import numpy as np

    from sae_core.stats import histogram_modes

    out = []
    for name, v in by_layer.items():
        v = np.asarray(v)
        low, high = histogram_modes(v)
        out.append([name, v.size, pct(float((v >= POST_CUTOFF).mean())), mode_text(low), mode_text(high)])
    return ["layer", "features", "share ≥ 0.5", "low mode", "high mode"], out


def emd_table(rows: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[object]]]:
    """Chapter 4's per-size table of earthmover distances (below the null cutoff)."""
    def cell(row: Mapping[str, Any], key: str) -> str:
        return f"{row[key]:.4f}" if finite(row.get(key)) else "–"

    return (["size", "features below null cutoff", "learned vs random", "random vs random", "sampling alone",
             "learned vs null", "chance vs null", "p"],
            [[r["size"], r["n_low"], cell(r, "learned_vs_random"), cell(r, "random_vs_random"),
              cell(r, "expected_between"), cell(r, "learned_vs_null"), cell(r, "expected_to_null"),
              r.get("p_text", "–")] for r in rows])


def cross_table(triples: Sequence[Sequence[int]], results: Sequence, base: str = "base"
                ) -> tuple[list[str], list[list[object]]]:
    """Chapter 6's table: one row per triple (cutoff 0.5 for low and high)."""
    def num(x: float) -> str:
        return f"{x:.3f}" if finite(x) else "–"

    return ([base, "B", "C", "features", "Pearson", "Spearman", "low against both (< 0.5)",
             "high against both (≥ 0.5)"],
            [[*t, r.n, num(r.pearson), num(r.spearman), pct(r.frac_low_low), pct(r.frac_high_high)]
             for t, r in zip(triples, results, strict=True)])


def splitting_counts_table(rows: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[object]]]:
    """Chapter 7's counts per size with both cutoffs."""
    return (["size", "high (0.5)", "low (0.5)", "high share (0.5)", "high (null cutoff)", "low (null cutoff)",
             "high share (null cutoff)"],
            [[r["size"], r["high_post"], r["low_post"], pct(r["frac_high_post"]), r["high_null"], r["low_null"],
              pct(r["frac_high_null"])] for r in rows])


def splitting_values(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Chapter 7's glued numbers: first and last compared size, counts and shares under both cutoffs."""
    first, last = rows[0], rows[-1]
    return {"null_cut": first["null_cutoff"], "first_size": first["size"], "last_size": last["size"],
            "frac_high_first": first["frac_high_post"], "frac_high_last": last["frac_high_post"],
            "high_first": first["high_post"], "high_last": last["high_post"], "low_first": first["low_post"],
            "low_last": last["low_post"], "frac_null_first": first["frac_high_null"],
            "frac_null_last": last["frac_high_null"], "high_null_first": first["high_null"],
            "high_null_last": last["high_null"]}


def evaluation_table(rows: Sequence[Mapping[str, float]], ce: Mapping[int, Any] | None = None
                     ) -> tuple[list[str], list[list[object]]]:
    """The introduction's held-out table: L0, variance explained, never fires, and for a language model
    the loss with each reconstruction and the share of the zero-ablation gap it recovered."""
    headers = ["size", "L0", "variance explained", "never fires"]
    out = [[r["size"], f"{r['l0']:.1f}", pct(r["fve"]), pct(r["never_fires"])] for r in rows]
    if ce is None:
        return headers, out
    return ([*headers, "CE with SAE", "CE recovered"],
            [[*row, f"{ce[r['size']].sae:.3f}", pct(ce[r["size"]].recovered, "– (zeroing the site costs nothing)")]
             for row, r in zip(out, rows, strict=True)])
