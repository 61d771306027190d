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
# # Introduction
#
# Sparse autoencoders (SAEs) of growing width can be trained on the same activations. Each
# feature of a small dictionary then has a *max cosine similarity* (MCS) with the nearest
# feature of a larger dictionary. {cite:t}`mcs_post_2023`, in the June 2023 post
# [“Sparse Autoencoder features are bimodal”](https://www.lesswrong.com/posts/8BEJKhgFekvoNEtHv/research-update-sparse-autoencoder-features-are-bimodal), found this MCS distribution
# **bimodal**. One peak sat near 1: features that recur across widths. The other sat near
# 0.3, where the MCS between *random* Gaussian dictionaries sits. The post's setting follows
# {cite:t}`sharkey2022taking`. Related work includes
# {cite:t}`cunningham2023sparse`, {cite:t}`bricken2023monosemanticity` and
# {cite:t}`paulo2025sparse`. This book reproduces each part of that finding and tests it
# against exact null distributions.

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
n_heldout = 32768  # held-out activations for L0, variance explained and "never fire"
n_eval_batches = 8  # language models: token batches for the cross-entropy loss recovered
ground_truth = {}  # a source with true features beside a language model, e.g. {"source": "synthetic"}

# %%
from sae_core.report import analysis, pipeline, plots, sentences

# %% tags=["nbval-ignore-output"]
# Trains the family on a cache miss (progress bar), else loads it from disk.
family = pipeline.ensure_family(pipeline.family_params(globals()))

# %%
params = family.params
final = [h for h in family.history if h["step"] == max(h["step"] for h in family.history)] if family.history else []
companion = pipeline.companion_params(params, ground_truth)["synthetic"] if ground_truth and source == "lm" else None
sentences.glue_all({
    "profile": profile, "cache_key": family.key, "source_desc": sentences.source_description(params, companion),
    "training_text": sentences.training_sentence(
        family.sizes, family.d_in, n_steps if family.history else None, batch_size, l1_coeff,
        next((r["dead_frac"] for r in final if r["d_sae"] == family.sizes[-1]), None),
        pipeline.train_config(params).dead_window if family.history else None),
})
plots.glue_figure("fig_training", plots.training_curves(family.history or []))

# %% tags=["nbval-ignore-output"]
# held-out evaluation: L0, variance explained, never fires; the loss recovered for a language model
recon = analysis.reconstruction_table(family, n_samples=n_heldout) if family.has_activations else []
ce = None
if recon and "lm" in params:
    from sae_core.sources.evaluation import evaluate_saes

    ce = evaluate_saes(params["lm"], family.saes, n_batches=n_eval_batches, scale=family.activation_scale)

# %%
n_fire = family.heldout_n(n_heldout) if recon else None
held = family.heldout_available if recon and "lm" in params else None  # a language model's held-out documents
eval_text = sentences.evaluation_sentences(
    recon, n_fire, analysis.detection_limit(n_fire) if n_fire else None,
    None if held is None else params["lm"]["heldout_share"], held, None if held is None else len(family.source))
if ce is not None:
    first = ce[family.sizes[0]]
    eval_text += " " + sentences.loss_sentence(n_eval_batches, first.n_tokens, first.clean, first.zero)
elif recon:
    eval_text += " The cross-entropy loss recovered applies to language-model sources only."
sentences.glue_all({"eval_text": eval_text})
plots.table(*sentences.evaluation_table(recon, ce)) if recon else None

# %% [markdown]
# ## Setting
#
# This build used the profile **{glue:text}`profile`**. Its source was {glue:text}`source_desc`.
# {glue:text}`training_text` The set-up follows the replication of
# {cite:t}`sharkey2022taking`: untied ReLU encoder, unit-norm decoder rows, no decoder bias.
#
# {glue:text}`eval_text`
#
# The dictionaries are cached under the key {glue:text}`cache_key`.
#
# ```{glue:figure} fig_training
# :name: fig-training
#
# Training of every dictionary of the family on the same batches, per width (colours): the
# reconstruction error, L0, and the fraction of latents silent in the last training steps (a
# training diagnostic), against the training step.
# ```
#
# ## What each chapter found
#
# | Chapter | Measurement | This build |
# |---|---|---|
# | [Bimodality](03_bimodality.ipynb) | low and high MCS modes, {glue:text}`03_bimodality.ipynb::pair:s` | {glue:text}`03_bimodality.ipynb::modes_text:s` |
# | [Bimodality](03_bimodality.ipynb) | share of features at or above the null cutoff {glue:text}`03_bimodality.ipynb::null_cut:.3f` (at or above 0.5) | {glue:text}`03_bimodality.ipynb::frac_high_null:.1%` ({glue:text}`03_bimodality.ipynb::frac_high:.1%`) |
# | [Random nulls](04_random_nulls.ipynb) | the low part against the truncated null, at its own sample size | {glue:text}`04_random_nulls.ipynb::verdict:s` |
# | [What the low mode is](05_low_mode.ipynb) | dead latents, noise or unfound features | {glue:text}`05_low_mode.ipynb::verdict_low:s` |
# | [Cross-dictionary](06_cross_dictionary.ipynb) | Pearson / Spearman of MCS against two larger dictionaries | {glue:text}`06_cross_dictionary.ipynb::pearson:.2f` / {glue:text}`06_cross_dictionary.ipynb::spearman:.2f` |
# | [Feature splitting](07_feature_splitting.ipynb) | high-MCS share, smallest → largest compared size, null cutoff | {glue:text}`07_feature_splitting.ipynb::split_share_null:s` |
# | [Feature splitting](07_feature_splitting.ipynb) | the same with the post's cutoff 0.5 | {glue:text}`07_feature_splitting.ipynb::split_share_post:s` |
#
# ## How to rerun
#
# Every chapter is a [Jupytext](https://jupytext.readthedocs.io) notebook in `notebooks/`
# whose first code cell holds its parameters. `make book PROFILE=name` runs all chapters with
# a profile from `notebooks/profiles/`. One chapter with other values runs as
#
# ```bash
# jupytext --to ipynb -o /tmp/ch.ipynb notebooks/03_bimodality.py
# papermill /tmp/ch.ipynb out.ipynb -p n_steps 20000 -y "sizes: [512, 2048, 8192]"
# ```
#
# Dictionaries are cached by a hash of every parameter that shapes them. Chapters with the
# same settings share one training run, and changed settings never reuse old ones.
