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
# # Conclusions
#
# {cite:t}`mcs_post_2023` made four claims in the June 2023 post
# [“Sparse Autoencoder features are bimodal”](https://www.lesswrong.com/posts/8BEJKhgFekvoNEtHv/research-update-sparse-autoencoder-features-are-bimodal). Each is tested below on this build's
# data. Each verdict is computed in the chapter named beside it, from the numbers next to it;
# none is written by hand.

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
null_quantile = 0.99  # low means below this quantile of the null for K (d_in) and M (the reference)
n_heldout = 32768  # held-out activations on which "never fire" is decided (the same sample as chapter 3)
true_cos_threshold = 0.9  # a learned feature "is" a true feature above this cosine (as chapter 3)
ground_truth = {}  # a source with true features beside a language model, e.g. {"source": "synthetic"}

# %%
from sae_core.report import analysis, pipeline, sentences
from sae_core.sources.lm_source import gpt_report

# %% tags=["nbval-ignore-output"]
family = pipeline.ensure_family(pipeline.family_params(globals()))
truth_family = pipeline.companion_family(family, ground_truth)

# %%
small, large = analysis.compared_pair(family, small_size, large_size)
truth = analysis.companion_truth(truth_family, small_size, large_size, null_quantile, true_cos_threshold, n_heldout)
sentences.glue_all({
    "pair": f"{small} vs {large}", "large": large,
    "truth_sentence": sentences.truth_sentence(truth),
    "differs": sentences.differs_sentence(family.params, gpt_report(family.params["lm"]) if "lm" in family.params
                                          and family.params["source"] == "lm" else None),
})

# %% [markdown]
# The post's pair of sizes was 1024 against 8192; this build compared {glue:text}`pair`,
# with the {glue:text}`large`-feature dictionary as the reference.
#
# 1. **The MCS distribution is bimodal** ([chapter 3](03_bimodality.ipynb)).
#    {glue:text}`03_bimodality.ipynb::bimodal_verdict:s`
# 2. **The low mode is what random dictionaries give** ([chapter 4](04_random_nulls.ipynb)).
#    {glue:text}`04_random_nulls.ipynb::chance_verdict:s`
# 3. **A feature's MCS against one larger dictionary predicts its MCS against another**
#    ([chapter 6](06_cross_dictionary.ipynb)). It did so
#    {glue:text}`06_cross_dictionary.ipynb::cross_verdict:s`
# 4. **Feature splitting: more high-MCS features, a smaller share of them**
#    ([chapter 7](07_feature_splitting.ipynb)).
#    {glue:text}`07_feature_splitting.ipynb::splitting_verdict:s`
#
# {glue:text}`truth_sentence`
#
# ## What the low mode is
#
# The post left open what the low mode is: dead latents, noise, or features the larger
# dictionary did not find. Chapter 5 measured the answer on held-out activations:
# {glue:text}`05_low_mode.ipynb::verdict_low:s`
#
# [Chapter 5](05_low_mode.ipynb) gives the answer for each setting, the ablations this build
# trained, the sweep of sparsity pressure and activation scale (the `sweep` profile), and the
# fit across every family this build trained.
#
# ## What differs from the post
#
# {glue:text}`differs`
