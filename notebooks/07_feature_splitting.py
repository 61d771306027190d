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
# # Feature splitting
#
# As a dictionary grows, do more of its features recur in the largest dictionary, or
# fewer? The post counted high- and low-MCS features per size (its Figures 11-12). Here the
# counts use both the post's fixed cutoff 0.5 and the null cutoff: the 99% quantile of the
# analytic MCS of a random feature against the reference dictionary, so that "high" means
# "better than chance".

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
null_quantile = 0.99

# %%
from myst_nb import glue

from sae_core.report import analysis, pipeline, plots

# %% tags=["nbval-ignore-output"]
family = pipeline.ensure_family(pipeline.family_params(globals()))

# %%
large = analysis.reference_size(family, large_size)
rows = analysis.splitting_table(family, large, null_quantile)
plots.glue_figure("fig_split", plots.splitting_counts(rows))
glue("large", large, display=False)
glue("null_cut", rows[0]["null_cutoff"], display=False)
glue("first_size", rows[0]["size"], display=False)
glue("last_size", rows[-1]["size"], display=False)
glue("frac_high_first", rows[0]["frac_high_post"], display=False)
glue("frac_high_last", rows[-1]["frac_high_post"], display=False)
glue("high_first", rows[0]["high_post"], display=False)
glue("high_last", rows[-1]["high_post"], display=False)
glue("low_first", rows[0]["low_post"], display=False)
glue("low_last", rows[-1]["low_post"], display=False)
glue("frac_null_first", rows[0]["frac_high_null"], display=False)
glue("frac_null_last", rows[-1]["frac_high_null"], display=False)
plots.table(
    ["size", "high (0.5)", "low (0.5)", "high share (0.5)", "high (null)", "low (null)", "high share (null)"],
    [[r["size"], r["high_post"], r["low_post"], f"{r['frac_high_post']:.1%}", r["high_null"], r["low_null"],
      f"{r['frac_high_null']:.1%}"] for r in rows],
)

# %% [markdown]
# ```{glue:figure} fig_split
# :name: fig-splitting
#
# For each dictionary smaller than the reference ({glue:text}`large` features): the number of
# features with high and low MCS against the reference (left) and the high share (right),
# with the fixed cutoff 0.5 (solid) and the null cutoff {glue:text}`null_cut:.3f` (dashed).
# ```
#
# From {glue:text}`first_size` to {glue:text}`last_size` features, the number of high-MCS
# features goes from {glue:text}`high_first` to {glue:text}`high_last` and the number of
# low-MCS features from {glue:text}`low_first` to {glue:text}`low_last`; the high share
# moves from {glue:text}`frac_high_first:.1%` to {glue:text}`frac_high_last:.1%`
# (null cutoff: {glue:text}`frac_null_first:.1%` to {glue:text}`frac_null_last:.1%`).
