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
# # Appendix: geometry
#
# Two views of where the features lie. First, the decoder rows of every dictionary size in
# one principal-component plane, coloured by size and by whether the feature recurs in the
# largest dictionary. Second, the discussion around the June 2023 post by
# {cite:t}`mcs_post_2023` ([“Sparse Autoencoder features are bimodal”](https://www.lesswrong.com/posts/8BEJKhgFekvoNEtHv/research-update-sparse-autoencoder-features-are-bimodal)) found that
# random directions, read through a language model's token embedding, land on a few "hub"
# tokens. If learned features are more than random directions, they should point at many more
# distinct tokens.

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
null_quantile = 0.99  # high: MCS against the largest dictionary at or above this quantile of the null
n_directions = 1024  # random directions and learned features read through the token embedding

# %%
from sae_core import stats
from sae_core.report import geometry, pipeline, plots, sentences

# %% tags=["nbval-ignore-output"]
family = pipeline.ensure_family(pipeline.family_params(globals()))

# %%
large = family.sizes[-1]
cut = stats.null_cutoff(family.d_in, large, null_quantile)
pca = geometry.decoder_pca(family, cut)
plots.glue_figure("fig_pca", plots.decoder_pca(pca))
sentences.glue_all({"pca_sentence": sentences.pca_sentence(pca, family.sizes, large, cut)})

# %% [markdown]
# ```{glue:figure} fig_pca
# :name: fig-pca
#
# Every decoder row of every size projected on the first two principal components of all of
# them together. Left: coloured by dictionary size. Right: coloured by high or low MCS
# against the largest dictionary (null cutoff); the largest dictionary's own rows are grey,
# the reference.
# ```
#
# {glue:text}`pca_sentence`
#
# ## Hub tokens

# %% tags=["nbval-ignore-output"]
hubs = geometry.token_hubs(family, n=n_directions, seed=seed)

# %%
sentences.glue_all({"hub_sentence": sentences.hub_sentence(hubs, large)})
plots.table(*geometry.hub_table(hubs)) if hubs is not None else None

# %% [markdown]
# {glue:text}`hub_sentence`
