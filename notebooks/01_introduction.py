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
# When sparse autoencoders (SAEs) of growing width are trained on the same activations,
# each feature of a small dictionary can be scored by its *max cosine similarity* (MCS)
# with the nearest feature of a larger dictionary. A recent report found that this MCS
# distribution is **bimodal**: a peak near 1 (features that recur across widths) and a
# peak near 0.3 that looks like the MCS between *random* Gaussian dictionaries
# (the post; its setting follows {cite}`sharkey2022taking`,
# and related work is {cite}`cunningham2023sparse,bricken2023monosemanticity,paulo2025sparse`). This book reproduces each part of that
# finding and tests it against exact null distributions.

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
from IPython.display import display
from myst_nb import glue

from sae_core.report import analysis, pipeline, plots

# %% tags=["nbval-ignore-output"]
# Trains the family on a cache miss (progress bar), else loads it from disk.
family = pipeline.ensure_family(pipeline.family_params(globals()))

# %%
params = family.params
if source == "synthetic":
    source_desc = (f"synthetic activations: {params['synthetic']['n_features']} true features in "
                   f"{params['synthetic']['d_in']} dimensions, {params['synthetic']['mean_active']:g} active per "
                   "sample on average")
elif source == "lm":
    source_desc = f"{params['lm']['site']} of {params['lm']['model']} on {params['lm']['corpus']}"
else:
    source_desc = (f"{len(params['dictionaries'])} dictionaries read from disk"
                   + (f", with activations from {params['lm']['site']} of {params['lm']['model']}" if "lm" in params
                      else ", without activations"))
if ground_truth and source == "lm":
    truth = pipeline.companion_params(params, ground_truth)["synthetic"]
    source_desc += (
        "; beside it, for the questions only known features answer (are high-MCS features true features, does "
        f"splitting follow the true hierarchy), a synthetic source with {truth['n_features']} true features in "
        f"{truth['d_in']} dimensions, trained with the same sizes and settings"
    )
glue("profile", profile, display=False)
glue("source_desc", source_desc, display=False)
glue("cache_key", family.key, display=False)
if family.history:
    last = {r["d_sae"]: r for r in family.history if r["step"] == max(h["step"] for h in family.history)}
    window = pipeline.train_config(family.params).dead_window
    training_text = (
        f"SAEs of widths {', '.join(map(str, family.sizes))} are trained together on the same "
        f"{n_steps * batch_size} activations of width {family.d_in} ({n_steps} steps of Adam), with L1 coefficient "
        f"{l1_coeff}, as in the replication of Sharkey et al. (2022): untied ReLU encoder, unit-norm decoder rows, no "
        f"decoder bias. At the end of training the smallest dictionary has L0 = {last[family.sizes[0]]['l0']:.1f} "
        f"active latents per sample and the largest L0 = {last[family.sizes[-1]]['l0']:.1f}, with "
        f"{last[family.sizes[-1]]['dead_frac']:.1%} of its latents silent in the last {window} training steps (a "
        "training diagnostic; the report's classes of latents are measured on held-out data, chapter 5)."
    )
    plots.glue_figure("fig_training", plots.training_curves(family.history))
else:
    training_text = (f"The dictionaries (widths {', '.join(map(str, family.sizes))}, activation width {family.d_in}) "
                     "were trained elsewhere and read from disk, so there is no training record.")
    plots.glue_figure("fig_training", plots.training_curves([]))
glue("training_text", training_text, display=False)
if family.has_activations:
    recon = analysis.reconstruction_table(family, n_samples=n_heldout)
    heldout_where = ("" if family.heldout_available is None else
                     f" (rows of the {family.params['lm']['heldout_share']:.0%} of the corpus's documents the SAEs never "
                     f"trained on: {family.heldout_available:,} held-out against {len(family.source):,} training rows)")
    by_size = {r["size"]: r for r in recon}
    eval_text = (
        f"The table above is measured on held-out activations{heldout_where}: L0 and variance explained on the first "
        f"{by_size[family.sizes[0]]['n_fve']:,}, where the smallest dictionary explains "
        f"{by_size[family.sizes[0]]['fve']:.1%} of their variance and the largest {by_size[family.sizes[-1]]['fve']:.1%}; "
        f"\"never fires\" on all {family.heldout_n(n_heldout):,}, so a latent that never fires there fires on fewer "
        f"than {analysis.detection_limit(family.heldout_n(n_heldout)):.1e} of activations with 95% confidence."
    )
else:
    recon = None
    eval_text = ("Without activations (no model and site were given), L0, variance explained and firing cannot "
                 "be measured.")
if recon is not None and "lm" in family.params:
    from sae_core.sources.evaluation import evaluate_saes

    ce = evaluate_saes(family.params["lm"], family.saes, n_batches=n_eval_batches, scale=family.activation_scale)
    eval_text += (f" With each dictionary's reconstruction spliced into the model at the site (through nnsight) on "
                  f"{n_eval_batches} batches of held-out documents ({ce[family.sizes[0]].n_tokens} predicted tokens), the "
                  f"next-token loss is {ce[family.sizes[0]].clean:.3f} nats clean and {ce[family.sizes[0]].zero:.3f} "
                  "with the site zeroed; the table gives the loss with each reconstruction and the share of the "
                  "zero-ablation gap it recovers.")
    display(plots.table(["size", "L0", "variance explained", "never fires", "CE with SAE", "CE recovered"],
                        [[r["size"], f"{r['l0']:.1f}", f"{r['fve']:.1%}", f"{r['never_fires']:.1%}",
                          f"{ce[r['size']].sae:.3f}", f"{ce[r['size']].recovered:.1%}"] for r in recon]))
elif recon is not None:
    eval_text += " The cross-entropy loss recovered applies to language-model sources only."
    display(plots.table(["size", "L0", "variance explained", "never fires"],
                        [[r["size"], f"{r['l0']:.1f}", f"{r['fve']:.1%}", f"{r['never_fires']:.1%}"] for r in recon]))
glue("eval_text", eval_text, display=False)

# %% [markdown]
# ## Setting
#
# This build uses the profile **{glue:text}`profile`**: {glue:text}`source_desc`.
# {glue:text}`training_text` {glue:text}`eval_text` The dictionaries are cached under the key
# {glue:text}`cache_key`.
#
# ```{glue:figure} fig_training
# :name: fig-training
#
# Training of every dictionary of the family on the same batches: reconstruction error,
# L0 and the fraction of latents silent in the last training steps (a training diagnostic), per width.
# ```
#
# ## What each chapter found
#
# | Chapter | Measurement | This build |
# |---|---|---|
# | [Bimodality](03_bimodality.ipynb) | low and high MCS modes, {glue:text}`03_bimodality.ipynb::pair:s` | {glue:text}`03_bimodality.ipynb::modes_text:s` |
# | [Bimodality](03_bimodality.ipynb) | share of features at or above the null cutoff (and ≥ 0.5) | {glue:text}`03_bimodality.ipynb::frac_high_null:.1%` ({glue:text}`03_bimodality.ipynb::frac_high:.1%`) |
# | [Random nulls](04_random_nulls.ipynb) | the low part against the truncated null, at its own sample size | {glue:text}`04_random_nulls.ipynb::verdict:s` |
# | [What the low mode is](05_low_mode.ipynb) | dead latents, noise or unfound features | {glue:text}`05_low_mode.ipynb::verdict_low:s` |
# | [Cross-dictionary](06_cross_dictionary.ipynb) | Pearson / Spearman of MCS against two larger dictionaries | {glue:text}`06_cross_dictionary.ipynb::pearson:.2f` / {glue:text}`06_cross_dictionary.ipynb::spearman:.2f` |
# | [Feature splitting](07_feature_splitting.ipynb) | high-MCS share, smallest → largest compared size | {glue:text}`07_feature_splitting.ipynb::frac_high_first:.1%` → {glue:text}`07_feature_splitting.ipynb::frac_high_last:.1%` |
#
# ## How to rerun
#
# Every chapter is a [Jupytext](https://jupytext.readthedocs.io) notebook in `notebooks/`
# whose first code cell holds its parameters. `make book PROFILE=name` runs all chapters with
# a profile from `notebooks/profiles/`; one chapter with other values runs as
#
# ```bash
# jupytext --to ipynb -o /tmp/ch.ipynb notebooks/03_bimodality.py
# papermill /tmp/ch.ipynb out.ipynb -p n_steps 20000 -y "sizes: [512, 2048, 8192]"
# ```
#
# Dictionaries are cached by a hash of every parameter that shapes them, so chapters with
# the same settings share one training run and changed settings never reuse old ones.
