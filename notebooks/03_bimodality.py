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
# {cite:t}`mcs_post_2023`, in the June 2023 post
# [“Sparse Autoencoder features are bimodal”](https://www.lesswrong.com/posts/8BEJKhgFekvoNEtHv/research-update-sparse-autoencoder-features-are-bimodal), compared a small dictionary's
# features with a much larger one (its Figure 3: 1024 against 8192). The maximum cosine
# similarity (MCS) of each feature to the larger dictionary had two modes, one near 1 and one
# near 0.3. Here every smaller dictionary of the family is compared with the largest one. The
# analytic null for the same dimension and reference size is drawn over each histogram.

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
from sae_core import nulls, stats
from sae_core.report import analysis, pipeline, plots, sentences

# %% tags=["nbval-ignore-output"]
family = pipeline.ensure_family(pipeline.family_params(globals()))

# %%
small, large = analysis.compared_pair(family, small_size, large_size)
values = analysis.smaller_mcs(family, large)
null_cut = stats.null_cutoff(family.d_in, large, null_quantile)
rows = analysis.bimodality_table(family, large, null_quantile, values=values, n_heldout=n_heldout)
post_row = next(r for r in rows if r.size == small)
plots.glue_figure("fig_hist", plots.mcs_histograms(values, large, family.d_in, cutoff=null_cut))
sentences.glue_all({
    "large": large, "small": small, "pair": f"{small} vs {large}", "d": family.d_in, "null_cut": null_cut,
    "null_q": null_quantile, "null_mode": nulls.mcs_null_mode(family.d_in, large), "n_small": post_row.n,
    "frac_high": post_row.frac_high_post, "frac_high_null": post_row.frac_high_null, "true_thr": true_cos_threshold,
    "pair_sentence": sentences.pair_sentence(post_row, [r.size for r in rows if r.bimodal]),
    "bimodal_verdict": sentences.bimodal_verdict(stats.bimodality(values[small]), small, large,
                                                 [r.size for r in rows if r.bimodal]),
    "modes_text": sentences.modes_text(post_row), "truth_note": sentences.truth_note(family.true_features is not None),
})
plots.table(*sentences.bimodality_table(rows))

# %% [markdown]
# ```{glue:figure} fig_hist
# :name: fig-bimodality
#
# MCS of each feature of every smaller dictionary against the {glue:text}`large`-feature
# dictionary. One panel per size; panel titles give the number of features. Bars are
# densities. The red curve is the analytic null for K = {glue:text}`d` and M =
# {glue:text}`large`, truncated at the null cutoff {glue:text}`null_cut:.3f` (dotted) and
# scaled to the share of features below it, so its area is the share it describes.
# ```
#
# {glue:text}`pair_sentence`
#
# {glue:text}`frac_high_null:.1%` of the pair's features lay at or above the null cutoff
# {glue:text}`null_cut:.3f`. That cutoff is the {glue:text}`null_q` quantile of the MCS of
# random directions for K = {glue:text}`d`, M = {glue:text}`large`; the null's mode is
# {glue:text}`null_mode:.3f`. With the post's cutoff 0.5, {glue:text}`frac_high:.1%` were high.
#
# The table gives the same numbers for every size. A distribution counts as bimodal when at
# least 5% of features lie on each side of 0.5 and the valley between the modes is below half
# the smaller peak. The table also gives the share of low-MCS features (null cutoff) that
# fired on none of the held-out activations. On a synthetic source it gives how many high- and
# low-MCS features lie within cosine {glue:text}`true_thr` of a true feature.{glue:text}`truth_note`
#
# ## Across layers
#
# With a language-model source and a list of `layers`, the same pair of sizes is trained
# at the same site of every listed layer (e.g. the MLP output of each of Pythia-70m's six
# layers). Otherwise this section shows the family above.

# %% tags=["nbval-ignore-output"]
by_layer = analysis.per_layer_mcs(family, layers, small, large)

# %%
plots.glue_figure("fig_layers", plots.mcs_histograms(by_layer, large, family.d_in))
sentences.glue_all({"layer_names": ", ".join(by_layer)})
plots.table(*sentences.layers_table(by_layer))

# %% [markdown]
# ```{glue:figure} fig_layers
# :name: fig-layers
#
# MCS of the {glue:text}`small`-feature dictionary against the {glue:text}`large`-feature one,
# trained on the same site at each of: {glue:text}`layer_names`. Analytic null in red.
# ```
#
# ## Max MCS against one-to-one MCS
#
# If several small features share one nearest large feature, plain MCS counts that feature
# for each of them. One-to-one matching allows it once.

# %%
greedy, matched = values[small], analysis.one_to_one_values(family, small, large)
plots.glue_figure("fig_one_to_one", plots.scatter_pair(greedy, matched, "max MCS", "one-to-one MCS",
                                                       f"{small} vs {large}"))
sentences.glue_all({"mean_greedy": float(greedy.mean()), "mean_matched": float(matched.mean()),
                    "frac_high_matched": stats.split_high_low(matched).frac_high,
                    "n_shared_targets": analysis.shared_targets(family, small, large)})

# %% [markdown]
# ```{glue:figure} fig_one_to_one
# :name: fig-one-to-one
#
# For each of the {glue:text}`n_small` features of the {glue:text}`small`-feature dictionary:
# its max MCS against the {glue:text}`large`-feature dictionary (x) and its cosine with the
# feature assigned to it by one-to-one (Hungarian) matching (y).
# ```
#
# Mean MCS fell from {glue:text}`mean_greedy:.3f` to {glue:text}`mean_matched:.3f` under
# one-to-one matching. The share of features at or above 0.5 became
# {glue:text}`frac_high_matched:.1%`. {glue:text}`n_shared_targets` features shared their
# nearest large feature with at least one other small feature.
#
# ## What the true features show
#
# A synthetic source knows its true features, so each learned feature can be checked. Does it
# lie within cosine {glue:text}`true_thr` of a true feature? Does it ever fire on held-out
# data? {glue:text}`truth_where`

# %% tags=["nbval-ignore-output"]
truth_family = pipeline.companion_family(family, ground_truth)

# %%
truth = analysis.companion_truth(truth_family, small_size, large_size, null_quantile, true_cos_threshold, n_heldout)
sentences.glue_all({"truth_where": sentences.truth_where(truth_family, family),
                    "truth_verdict": sentences.truth_verdict(truth)})
plots.glue_figure("fig_truth", plots.scatter_pair(greedy, greedy, "MCS", "MCS", "no ground truth") if truth is None
                  else plots.scatter_pair(truth.mcs_to_largest, truth.mcs_to_true, f"MCS against {truth.against}",
                                          "MCS against the true features",
                                          f"{truth.size}-feature dictionary (ground truth)"))

# %% [markdown]
# ```{glue:figure} fig_truth
# :name: fig-truth
#
# Each feature of the smaller dictionary of the compared pair on the source with true features:
# MCS against the larger dictionary (x) and against the source's true features (y).
# ```
#
# {glue:text}`truth_verdict`
