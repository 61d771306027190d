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
# # Cross-dictionary correlation
#
# If a feature's MCS against a larger dictionary measured something about the feature
# itself, a feature high against one larger dictionary should be high against another.
# {cite:t}`mcs_post_2023`, in the June 2023 post
# [“Sparse Autoencoder features are bimodal”](https://www.lesswrong.com/posts/8BEJKhgFekvoNEtHv/research-update-sparse-autoencoder-features-are-bimodal), plotted a feature's MCS against two
# larger dictionaries (its Figures 9-10). Here each triple (base, B, C) gives a scatter plot,
# Pearson and Spearman correlations, and the shares of features low against both or high
# against both. Low and high here use the post's cutoff 0.5.

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
cross_triples = [[512, 1024, 2048], [256, 512, 1024]]  # [base, B, C]: base features' MCS against B and C
ground_truth = {}  # a source with true features beside a language model, e.g. {"source": "synthetic"}

# %%
from sae_core.report import analysis, pipeline, plots, sentences

# %% tags=["nbval-ignore-output"]
family = pipeline.ensure_family(pipeline.family_params(globals()))

# %%
triples = [t for t in cross_triples if all(s in family.saes for s in t)]
if not triples:
    raise ValueError(f"none of the triples {cross_triples} is in the family {family.sizes}")
measured = [analysis.cross_correlation(family, *t) for t in triples]
results = [m[0] for m in measured]
for i, j in enumerate((0, -1)):  # the first and the last triple are drawn (one triple: the same one twice)
    (base, b, c), (corr, vb, vc) = triples[j], measured[j]
    plots.glue_figure(f"fig_scatter_{i}", plots.scatter_pair(vb, vc, f"MCS against {b}", f"MCS against {c}",
                                                             f"{base}-feature dictionary ({corr.n} features)"))
first, second = results[0], results[-1]
sentences.glue_all({
    "triple": f"{triples[0][0]} against {triples[0][1]} and {triples[0][2]}", "n_base": first.n,
    "pearson": first.pearson, "spearman": first.spearman, "low_low": first.frac_low_low,
    "high_high": first.frac_high_high, "off_diagonal": 1 - first.frac_low_low - first.frac_high_high,
    "cross_verdict": sentences.cross_verdict(first, triples[0]),
    "triple_2": f"{triples[-1][0]} against {triples[-1][1]} and {triples[-1][2]}",
    "pearson_2": second.pearson, "spearman_2": second.spearman,
})
plots.table(*sentences.cross_table(triples, results))

# %% [markdown]
# ```{glue:figure} fig_scatter_0
# :name: fig-cross-0
#
# Each feature of the base dictionary ({glue:text}`triple`): MCS against the first larger
# dictionary (x) and the second (y), {glue:text}`n_base` features (the post's Figure 9).
# ```
#
# For {glue:text}`triple`, Pearson's r was {glue:text}`pearson:.3f`. Spearman's rho was
# {glue:text}`spearman:.3f`. {glue:text}`low_low:.1%` of the features were low (below 0.5)
# against both. {glue:text}`high_high:.1%` were high against both. {glue:text}`off_diagonal:.1%`
# changed side.
#
# ```{glue:figure} fig_scatter_1
# :name: fig-cross-1
#
# The same for {glue:text}`triple_2` (the post's Figure 10).
# ```
#
# For {glue:text}`triple_2`, Pearson's r was {glue:text}`pearson_2:.3f` and Spearman's rho
# {glue:text}`spearman_2:.3f`.
#
# A feature's MCS against one larger dictionary predicted its MCS against another
# {glue:text}`cross_verdict`

# %% tags=["nbval-ignore-output"]
truth_family = pipeline.companion_family(family, ground_truth)

# %%
t_triples = [] if truth_family is None or truth_family is family else \
    [t for t in cross_triples if all(s in truth_family.saes for s in t)]
t_results = [analysis.cross_correlation(truth_family, *t)[0] for t in t_triples]
sentences.glue_all({"truth_cross": sentences.truth_cross_sentence(t_triples, t_results)})
plots.table(*sentences.cross_table(t_triples, t_results, base="base (ground truth)")) if t_triples else None

# %% [markdown]
# {glue:text}`truth_cross`
