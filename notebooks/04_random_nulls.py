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
# # Random nulls
#
# The post's second observation: the low-MCS part of the learned distribution (MCS < 0.5)
# looks like the MCS between random Gaussian dictionaries of the same shapes (its Figures
# 4-5), and earthmover distances put the learned distribution among several random ones and
# an "alt params" random set with a twice larger reference (Figures 6-8). Here the same
# comparisons are made, and the low part is also set against the exact null of the
# [Methods](02_methods.ipynb) chapter.

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
emd_sizes = [256, 512, 1024]  # smaller sizes compared with the largest (the post: 512..4096)
n_random_sets = 4  # independent random dictionary pairs of the learned shapes
alt_factor = 2  # the "alt params" set uses a reference this many times larger
emd_cutoff = 0.5  # distributions are compared below this MCS (the post: 0.5)
n_boot = 200  # bootstrap replicates for the interval on the distance to the null

# %%
import numpy as np
from myst_nb import glue

from sae_core.report import analysis, pipeline, plots

# %% tags=["nbval-ignore-output"]
family = pipeline.ensure_family(pipeline.family_params(globals()))

# %%
small, large = analysis.compared_pair(family, small_size, large_size)
cmp = analysis.null_comparison(family, small, large, n_random=n_random_sets, alt_factor=alt_factor,
                               cutoff=emd_cutoff, n_boot=n_boot, seed=seed)
shown = {k: v for k, v in cmp.samples.items() if k in ("learned", "random 1")}
plots.glue_figure("fig_low", plots.overlaid_histograms(shown, f"MCS < {emd_cutoff}: {small} vs {large}", cutoff=emd_cutoff,
                                          bins=np.linspace(0, emd_cutoff, 41)))
plots.glue_figure("fig_emd_matrix", plots.distance_heatmap(cmp.names, cmp.distances, f"{small} vs {large}, MCS < {emd_cutoff}"))
glue("small", small, display=False)
glue("large", large, display=False)
glue("alt_large", alt_factor * large, display=False)
glue("cutoff", emd_cutoff, display=False)
glue("n_low", int(cmp.learned_low.size), display=False)
glue("n_random", n_random_sets, display=False)
random_pairs = [cmp.distances[i, j] for i in range(1, 1 + n_random_sets) for j in range(i + 1, 1 + n_random_sets)]
glue("learned_random_mean", float(np.mean(cmp.distances[0, 1 : 1 + n_random_sets])), display=False)  # NaN: no low part
glue("random_random_mean", float(np.mean(random_pairs)), display=False)
glue("random_alt_mean", float(np.mean(cmp.distances[1 : 1 + n_random_sets, -1])), display=False)
nan = float("nan")
glue("emd_null", cmp.emd_to_null.estimate if cmp.emd_to_null else nan, display=False)
glue("emd_null_low", cmp.emd_to_null.low if cmp.emd_to_null else nan, display=False)
glue("emd_null_high", cmp.emd_to_null.high if cmp.emd_to_null else nan, display=False)
glue("emd_random_max", max(cmp.random_to_null), display=False)
glue("n_boot", n_boot, display=False)
glue("verdict", cmp.verdict, display=False)

# %% [markdown]
# ```{glue:figure} fig_low
# :name: fig-low-part
#
# The {glue:text}`n_low` features of the {glue:text}`small`-feature dictionary with MCS below
# {glue:text}`cutoff` against the {glue:text}`large`-feature dictionary, next to the same part
# of the MCS between random Gaussian dictionaries of shapes {glue:text}`small` and
# {glue:text}`large` (the post's Figures 4-5).
# ```
#
# ```{glue:figure} fig_emd_matrix
# :name: fig-emd-matrix
#
# Earthmover distances among the learned MCS distribution ({glue:text}`small` vs
# {glue:text}`large`), {glue:text}`n_random` random pairs of the same shapes and the "alt
# params" random pair ({glue:text}`small` vs {glue:text}`alt_large`), each restricted to
# MCS < {glue:text}`cutoff` (the post's Figures 6-7). A blank row means fewer than ten
# features of that set lie below the cutoff.
# ```
#
# On average the learned low part ({glue:text}`n_low` features) is {glue:text}`learned_random_mean:.4f` from a random set
# (nan when fewer than ten features lie below the cutoff),
# while random sets are {glue:text}`random_random_mean:.4f` from each other and
# {glue:text}`random_alt_mean:.4f` from the alt-params set.
#
# ## Against the analytic null
#
# The earthmover distance from the learned low part to the analytic null is
# {glue:text}`emd_null:.4f` (95% bootstrap interval {glue:text}`emd_null_low:.4f`–{glue:text}`emd_null_high:.4f`,
# {glue:text}`n_boot` replicates); random dictionaries of the same shapes lie at most
# {glue:text}`emd_random_max:.4f` from it. **Verdict:** the low mode is {glue:text}`verdict`.
#
# ## Across sizes
#
# The post's Figure 8 repeats the comparison for several sizes against the same reference.

# %%
by_size = analysis.emd_by_size(family, emd_sizes, large, n_random=n_random_sets, cutoff=emd_cutoff, seed=seed)
plots.glue_figure("fig_by_size", plots.emd_by_size(by_size))
glue("sizes_compared", ", ".join(str(r["size"]) for r in by_size), display=False)
plots.table(
    ["size", "features with MCS < cutoff", "learned vs random", "random vs random", "learned vs null"],
    [[r["size"], r["n_low"], f"{r['learned_vs_random']:.4f}", f"{r['random_vs_random']:.4f}",
      f"{r['learned_vs_null']:.4f}"] for r in by_size],
)

# %% [markdown]
# ```{glue:figure} fig_by_size
# :name: fig-emd-by-size
#
# For each smaller dictionary ({glue:text}`sizes_compared` features) against the
# {glue:text}`large`-feature dictionary: mean earthmover distance of the learned low part to
# {glue:text}`n_random` random sets of the same shapes, among those random sets, and to the
# analytic null (the post's Figure 8).
# ```
