# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Bimodality
#
# The post's first observation: the MCS of a small dictionary's features against a much
# larger dictionary (its Figure 3: 1024 against 8192) has two modes, one near 1 and one
# near 0.3. Here every smaller dictionary of the family is compared with the largest one,
# and the analytic null for the same dimension and reference size is drawn over each
# histogram.

# %%
# %% tags=["parameters"]
profile = "notebook defaults"  # name of the profile that set these values
source = "synthetic"  # "synthetic" (known true features), "lm" (a language model via nnsight) or "dictionaries"
synthetic = {}  # overrides of sae_core.sources.SyntheticConfig, e.g. {"n_features": 4096}
lm = {}  # overrides of sae_core.sources.LMSourceConfig, for the language-model source
dictionaries = []  # source "dictionaries": folders of trained dictionaries in any supported layout
sizes = [256, 512, 1024, 2048]  # dictionary widths trained together; the largest is the reference
n_steps = 1000  # optimizer steps (each feeds one batch to every dictionary)
batch_size = 256
lr = 1e-3
l1_coeff = 1e-3  # the replication's L1 coefficient
seed = 0
small_size = 1024  # the post's pair: 1024 against 8192 (falls back to the largest size)
large_size = 8192
null_quantile = 0.99  # the null cutoff is this quantile of the analytic MCS null
n_heldout = 32768  # held-out activations on which "never fire" is decided
true_cos_threshold = 0.9  # a learned feature "is" a true feature above this cosine (synthetic source)
ground_truth = {}  # a source with true features to answer the ground-truth questions beside a language model, e.g. {"source": "synthetic"}
layers = []  # language-model source: also compare small vs large at these layers (the same site kind)

# %%
import numpy as np
from IPython.display import display
from myst_nb import glue

from sae_core import nulls, stats
from sae_core.report import analysis, pipeline, plots

# %% tags=["nbval-ignore-output"]
family = pipeline.ensure_family(pipeline.family_params(globals()))

# %%
small, large = analysis.compared_pair(family, small_size, large_size)
values = analysis.smaller_mcs(family, large)
null_cut = stats.null_cutoff(family.d_in, large, null_quantile)
rows = analysis.bimodality_table(family, large, null_quantile, values=values, n_heldout=n_heldout)
fig = plots.mcs_histograms(values, large, family.d_in, cutoff=null_cut)
plots.glue_figure("fig_hist", fig)
glue("large", large, display=False)
glue("small", small, display=False)
glue("pair", f"{small} vs {large}", display=False)
glue("d", family.d_in, display=False)
glue("null_cut", null_cut, display=False)
glue("null_q", null_quantile, display=False)
glue("null_mode", nulls.mcs_null_mode(family.d_in, large), display=False)
post_row = next(r for r in rows if r.size == small)
glue("low_mode", post_row.low_mode, display=False)
glue("high_mode", post_row.high_mode, display=False)
glue("frac_high", post_row.frac_high_post, display=False)
glue("frac_high_null", post_row.frac_high_null, display=False)
glue("n_small", post_row.n, display=False)
glue("true_thr", true_cos_threshold, display=False)


def pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.1%}"


def mode(x: float) -> str:
    return "none" if x != x else f"{x:.2f}"  # NaN: no bin on that side of 0.5 holds a feature


display(plots.table(
    ["size", "features", "low mode", "high mode", "above null cutoff", "MCS ≥ 0.5", "mean MCS", "bimodal",
     "high: near a true feature", "low: near a true feature", "low: never fires"],
    [[r.size, r.n, mode(r.low_mode), mode(r.high_mode), f"{r.frac_high_null:.1%}", f"{r.frac_high_post:.1%}",
      f"{r.mean:.3f}", "yes" if r.bimodal else "no", pct(r.high_true), pct(r.low_true), pct(r.low_never)]
     for r in rows],
))
bimodal_sizes = [r.size for r in rows if r.bimodal]
if post_row.bimodal:
    pair_sentence = (
        f"For the post's pair, {small} vs {large} ({post_row.n} features), the distribution is bimodal: the tallest "
        f"bin below 0.5 sits at {post_row.low_mode:.2f} and the tallest bin at or above 0.5 at "
        f"{post_row.high_mode:.2f}."
    )
else:
    others = (f" The sizes whose distribution is bimodal against {large} are {', '.join(map(str, bimodal_sizes))}."
              if bimodal_sizes else f" No smaller size has a bimodal distribution against {large} here.")
    pair_sentence = (
        f"For the post's pair, {small} vs {large} ({post_row.n} features), the distribution is not bimodal here: "
        f"{1 - post_row.frac_high_post:.1%} of the features lie below 0.5.{others}"
    )
glue("pair_sentence", pair_sentence, display=False)
glue("modes_text", f"{mode(post_row.low_mode)} and {mode(post_row.high_mode)}" if post_row.low_mode == post_row.low_mode
     else f"no low mode ({1 - post_row.frac_high_post:.1%} below 0.5); high mode {mode(post_row.high_mode)}",
     display=False)
glue("truth_note", "" if family.true_features is not None else
     " The true-feature columns are empty: a language model has no known features.", display=False)

# %% [markdown]
# ```{glue:figure} fig_hist
# :name: fig-bimodality
#
# MCS of each feature of every smaller dictionary against the {glue:text}`large`-feature
# dictionary (one panel per size; panel titles give the number of features), normalised as
# densities. The red curve is the analytic null for K = {glue:text}`d` and M =
# {glue:text}`large`, truncated at the null cutoff {glue:text}`null_cut:.3f` (dotted) and
# scaled to the share of features below it, so its area is the share it describes.
# ```
#
# {glue:text}`pair_sentence` {glue:text}`frac_high_null:.1%` of its features lie at or above
# the null cutoff {glue:text}`null_cut:.3f` (the {glue:text}`null_q` quantile of the MCS of
# random directions for K = {glue:text}`d`, M = {glue:text}`large`, whose mode is
# {glue:text}`null_mode:.3f`), and {glue:text}`frac_high:.1%` at or above the post's 0.5. The
# table gives the same numbers for every size, whether the distribution is bimodal (at least
# 5% of features on each side of 0.5 and a valley below half the smaller peak), and the share
# of low-MCS features that fire on none of the held-out activations; on a synthetic source
# also how many high- and low-MCS features lie within cosine {glue:text}`true_thr` of a true
# feature.{glue:text}`truth_note`
#
# ## Across layers
#
# With a language-model source and a list of `layers`, the same pair of sizes is trained
# at the same site of every listed layer (e.g. the MLP output of each of Pythia-70m's six
# layers); otherwise this shows the family above.

# %% tags=["nbval-ignore-output"]
by_layer = analysis.per_layer_mcs(family, layers, small, large)

# %%
plots.glue_figure("fig_layers", plots.mcs_histograms(by_layer, large, family.d_in))
glue("layer_names", ", ".join(by_layer), display=False)
plots.table(["layer", "features", "MCS ≥ 0.5", "low mode", "high mode"],
            [[name, len(v), f"{stats.split_high_low(v).frac_high:.1%}",
              *(mode(m) for m in stats.histogram_modes(v))] for name, v in by_layer.items()])

# %% [markdown]
# ```{glue:figure} fig_layers
# :name: fig-layers
#
# MCS of the {glue:text}`small`-feature dictionary against the {glue:text}`large`-feature one,
# trained on the same site at each of: {glue:text}`layer_names`; analytic null in red.
# ```
#
# ## Max MCS against one-to-one MCS
#
# If several small features share one nearest large feature, plain MCS counts it for each;
# one-to-one matching allows it once.

# %%
greedy = values[small]
matched = analysis.one_to_one_values(family, small, large)
plots.glue_figure("fig_one_to_one", plots.scatter_pair(greedy, matched, "max MCS", "one-to-one MCS",
                                          f"{small} vs {large}"))
glue("mean_greedy", float(greedy.mean()), display=False)
glue("mean_matched", float(matched.mean()), display=False)
glue("frac_high_matched", stats.split_high_low(matched).frac_high, display=False)
nearest = analysis.max_cosine_similarity(family.features(small), family.features(large)).indices.numpy()
_, inverse, counts = np.unique(nearest, return_inverse=True, return_counts=True)
glue("n_shared_targets", int((counts[inverse] > 1).sum()), display=False)  # every feature whose target is shared

# %% [markdown]
# ```{glue:figure} fig_one_to_one
# :name: fig-one-to-one
#
# For each of the {glue:text}`n_small` features of the {glue:text}`small`-feature dictionary:
# its max MCS against the {glue:text}`large`-feature dictionary (x) and its cosine with the
# feature assigned to it by one-to-one (Hungarian) matching (y).
# ```
#
# Mean MCS falls from {glue:text}`mean_greedy:.3f` to {glue:text}`mean_matched:.3f` under
# one-to-one matching, and the share of features at or above 0.5 becomes
# {glue:text}`frac_high_matched:.1%`; {glue:text}`n_shared_targets` features share their nearest
# large feature with at least one other small feature.
#
# ## What the true features show
#
# A synthetic source knows its true features, so each learned feature can be checked: does it
# lie within cosine {glue:text}`true_thr` of a true feature, and does it ever fire on
# held-out data? {glue:text}`truth_where`

# %% tags=["nbval-ignore-output"]
truth_family = pipeline.companion_family(family, ground_truth)

# %%
if truth_family is None:
    truth = None
    glue("truth_where", "This build's source is a language model and no ground-truth source is set beside it "
         "(parameter `ground_truth`), so the check does not apply.", display=False)
else:
    t_small, t_large = analysis.compared_pair(truth_family, small_size, large_size)
    t_cut = stats.null_cutoff(truth_family.d_in, t_large, null_quantile)
    t_small = analysis.low_mode_size(truth_family, t_small, t_large, t_cut)  # a size with a low part, if any
    t_values = analysis.mcs_values(truth_family, t_small, t_large)
    truth = analysis.ground_truth(truth_family, t_small, t_large, t_cut, true_cos_threshold=true_cos_threshold,
                                  values=t_values, n_heldout=n_heldout)
    glue("truth_where", "" if truth_family is family else
         f"This build's language model has no known features, so the check runs beside it on the ground-truth "
         f"source: {truth_family.params['synthetic']['n_features']} true features in "
         f"{truth_family.d_in} dimensions, dictionaries of the same sizes trained with the same settings.",
         display=False)


def share_text(x: float | None, side: str) -> str:
    return f"no {side}-MCS feature" if x is None else f"{x:.1%}"


if truth is None:
    verdict = "Chapter 5 classifies the low-MCS features by firing density and movement for every source."
    plots.glue_figure("fig_truth", plots.scatter_pair(greedy, greedy, "MCS", "MCS", "no ground truth"))
else:
    plots.glue_figure("fig_truth", plots.scatter_pair(truth.mcs_to_largest, truth.mcs_to_true,
                                                      f"MCS against {t_large}", "MCS against the true features",
                                                      f"{t_small}-feature dictionary (ground truth)"))
    high_t, low_t = truth.high_matching_true, truth.low_matching_true
    if high_t is None or low_t is None:
        verdict = (f"Every feature of the {t_small}-feature dictionary lies on one side of the null cutoff, so high- "
                   "and low-MCS features cannot be compared here. ")
    else:
        verdict = (f"For the {t_small}-feature dictionary against {t_large}, high-MCS features are "
                   f"{'more' if high_t > low_t else 'not more'} often true features than low-MCS ones ({high_t:.1%} "
                   f"of {truth.n_high} against {low_t:.1%} of {truth.n_low}). ")
    verdict += (f"Among high-MCS features {share_text(truth.high_never, 'high')} never fire on held-out data; "
                f"among low-MCS features {share_text(truth.low_never, 'low')}.")
glue("truth_verdict", verdict, display=False)

# %% [markdown]
# ```{glue:figure} fig_truth
# :name: fig-truth
#
# Each feature of the smaller dictionary of the compared pair on the source with true features:
# MCS against the larger dictionary (x) and against the source's true features (y).
# ```
#
# {glue:text}`truth_verdict`
