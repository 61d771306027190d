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
source = "synthetic"  # "synthetic" (offline, known true features) or "lm" (a language model via nnsight)
synthetic = {}  # overrides of sae_core.sources.SyntheticConfig, e.g. {"n_features": 4096}
lm = {}  # overrides of sae_core.sources.LMSourceConfig, for the language-model source
sizes = [256, 512, 1024, 2048]  # dictionary widths trained together; the largest is the reference
n_steps = 1000  # optimizer steps (each feeds one batch to every dictionary)
batch_size = 256
lr = 1e-3
l1_coeff = 1e-3  # the replication's L1 coefficient
seed = 0
small_size = 1024  # the post's pair: 1024 against 8192 (falls back to the largest size)
large_size = 8192
null_quantile = 0.99  # the null cutoff is this quantile of the analytic MCS null
true_cos_threshold = 0.9  # a learned feature "is" a true feature above this cosine (synthetic source)
layers = []  # language-model source: also compare small vs large at these layers (the same site kind)

# %%
import numpy as np
from myst_nb import glue

from sae_core import stats
from sae_core.report import analysis, pipeline, plots

# %% tags=["nbval-ignore-output"]
family = pipeline.ensure_family(pipeline.family_params(globals()))

# %%
small, large = analysis.compared_pair(family, small_size, large_size)
values = analysis.smaller_mcs(family, large)
rows = analysis.bimodality_table(family, large, null_quantile, values=values)
fig = plots.mcs_histograms(values, large, family.d_in)
plots.glue_figure("fig_hist", fig)
glue("large", large, display=False)
glue("small", small, display=False)
glue("pair", f"{small} vs {large}", display=False)
glue("d", family.d_in, display=False)
glue("null_cut", stats.null_cutoff(family.d_in, large, null_quantile), display=False)
post_row = next(r for r in rows if r.size == small)
glue("low_mode", post_row.low_mode, display=False)
glue("high_mode", post_row.high_mode, display=False)
glue("frac_high", post_row.frac_high_post, display=False)
glue("frac_high_null", post_row.frac_high_null, display=False)
glue("n_small", post_row.n, display=False)
glue("true_thr", true_cos_threshold, display=False)
plots.table(
    ["size", "features", "low mode", "high mode", "MCS ≥ 0.5", "above null cutoff", "mean MCS", "bimodal",
     "high: near a true feature", "low: near a true feature", "low: never fire"],
    [[r.size, r.n, f"{r.low_mode:.2f}", f"{r.high_mode:.2f}", f"{r.frac_high_post:.1%}", f"{r.frac_high_null:.1%}",
      f"{r.mean:.3f}", "yes" if r.bimodal else "no", f"{r.high_true:.1%}", f"{r.low_true:.1%}",
      f"{r.low_dead:.1%}"] for r in rows],
)

# %% [markdown]
# ```{glue:figure} fig_hist
# :name: fig-bimodality
#
# MCS of each feature of every smaller dictionary against the {glue:text}`large`-feature
# dictionary (one panel per size; panel titles give the number of features), normalised as
# densities, with the analytic null for K = {glue:text}`d` and M = {glue:text}`large` in red.
# ```
#
# For the post's pair, {glue:text}`pair` ({glue:text}`n_small` features), the tallest bin
# below 0.5 sits at {glue:text}`low_mode:.2f` and the tallest bin at or above 0.5 at
# {glue:text}`high_mode:.2f`; {glue:text}`frac_high:.1%` of the features have MCS ≥ 0.5,
# and {glue:text}`frac_high_null:.1%` lie above the null cutoff {glue:text}`null_cut:.3f`.
# The table above gives the same numbers for every size, whether the distribution is bimodal
# (at least 5% of features on each side of 0.5 and a valley below half the smaller peak), and,
# on a synthetic source, how many high- and low-MCS features lie within cosine
# {glue:text}`true_thr` of a true feature and how many low-MCS features never fire on held-out
# data (nan for a language model, which has no known features).
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
              *(f"{m:.2f}" for m in stats.histogram_modes(v))] for name, v in by_layer.items()])

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
glue("n_shared_targets", int(len(greedy) - len(np.unique(analysis.max_cosine_similarity(
    family.features(small), family.features(large)).indices))), display=False)

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
# {glue:text}`frac_high_matched:.1%`; {glue:text}`n_shared_targets` features had a nearest
# large feature that another small feature also chose.
#
# ## What the true features show
#
# The synthetic source knows its true features, so each learned feature can be checked:
# does it lie within cosine {glue:text}`true_thr` of a true feature, and does it ever fire on
# held-out data?

# %%
truth = analysis.ground_truth(family, small, large, true_cos_threshold=true_cos_threshold, values=greedy)
if truth is None:
    verdict = "This source has no ground truth (a language model), so this check does not apply."
    for key in ("high_true", "low_true", "low_dead", "high_dead"):
        glue(key, float("nan"), display=False)
    plots.glue_figure("fig_truth", plots.scatter_pair(greedy, greedy, "MCS", "MCS", "no ground truth"))
else:
    glue("high_true", truth.high_matching_true, display=False)
    glue("low_true", truth.low_matching_true, display=False)
    glue("low_dead", truth.low_dead, display=False)
    glue("high_dead", truth.high_dead, display=False)
    plots.glue_figure("fig_truth", plots.scatter_pair(truth.mcs_to_largest, truth.mcs_to_true, f"MCS against {large}",
                                         "MCS against the true features", f"{small}-feature dictionary"))
    agrees = truth.high_matching_true > truth.low_matching_true
    verdict = (
        f"High-MCS features are {'more' if agrees else 'not more'} often true features than low-MCS ones "
        f"({truth.high_matching_true:.1%} against {truth.low_matching_true:.1%})."
    )
glue("truth_verdict", verdict, display=False)

# %% [markdown]
# ```{glue:figure} fig_truth
# :name: fig-truth
#
# Each feature of the {glue:text}`small`-feature dictionary: MCS against the
# {glue:text}`large`-feature dictionary (x) and against the source's true features (y).
# ```
#
# {glue:text}`truth_verdict` Among high-MCS features {glue:text}`high_dead:.1%` never fire on
# held-out data; among low-MCS features {glue:text}`low_dead:.1%` never fire.
