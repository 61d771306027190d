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
# largest dictionary. Second, a thread around the post found that random directions, read
# through a language model's token embedding, land on a few "hub" tokens; if learned features
# are more than random directions, they should point at many more distinct tokens.

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
from IPython.display import display
from myst_nb import glue

from sae_core import stats
from sae_core.report import geometry, pipeline, plots

# %% tags=["nbval-ignore-output"]
family = pipeline.ensure_family(pipeline.family_params(globals()))

# %%
large = family.sizes[-1]
cut = stats.null_cutoff(family.d_in, large, null_quantile)
pca = geometry.decoder_pca(family, cut)
plots.glue_figure("fig_pca", plots.decoder_pca(pca))
glue("pca_sentence", (
    f"The two components hold {pca.explained[0]:.1%} and {pca.explained[1]:.1%} of the variance of the "
    f"{len(pca.size):,} unit decoder rows of sizes {', '.join(map(str, family.sizes))}; high means MCS against the "
    f"{large}-feature dictionary at or above {cut:.3f}, and {int((~pca.high).sum()):,} rows are low."
), display=False)

# %% [markdown]
# ```{glue:figure} fig_pca
# :name: fig-pca
#
# Every decoder row of every size projected on the first two principal components of all of
# them together: coloured by dictionary size (left) and by high or low MCS against the largest
# dictionary (right).
# ```
#
# {glue:text}`pca_sentence`
#
# ## Hub tokens

# %% tags=["nbval-ignore-output"]
hubs = geometry.token_hubs(family, n=n_directions, seed=seed)

# %%
if hubs is None:
    glue("hub_sentence", "This build's activations do not come from the replication GPT trained here, so there is "
         "no token embedding to read directions through.", display=False)
else:
    display(plots.table(["directions", "distinct nearest tokens", "most frequent nearest tokens (count)"],
                        [["random", hubs.distinct_random, ", ".join(f"{t} ({c})" for t, c in hubs.top_random)],
                         ["learned", hubs.distinct_learned, ", ".join(f"{t} ({c})" for t, c in hubs.top_learned)]]))
    glue("hub_sentence", (
        f"Read through the model's output projection and token embedding ({hubs.vocab:,} tokens), {hubs.n} random "
        f"directions point at {hubs.distinct_random} distinct nearest tokens, and {hubs.n} learned features of the "
        f"{large}-feature dictionary at {hubs.distinct_learned}: learned features "
        + ("spread over more tokens than random directions." if hubs.distinct_learned > hubs.distinct_random else
           "do not spread over more tokens than random directions.")
    ), display=False)

# %% [markdown]
# {glue:text}`hub_sentence`
