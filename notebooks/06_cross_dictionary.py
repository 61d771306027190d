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
# itself, a feature high against one larger dictionary should be high against another. The
# post's Figures 9-10 plot a feature's MCS against two larger dictionaries; here each triple
# (base, B, C) gives a scatter plot, Pearson and Spearman correlations, and the shares of
# features low against both or high against both (cutoff 0.5).

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
import numpy as np
from IPython.display import display
from myst_nb import glue

from sae_core.report import analysis, pipeline, plots

# %% tags=["nbval-ignore-output"]
family = pipeline.ensure_family(pipeline.family_params(globals()))

# %%
triples = [t for t in cross_triples if all(s in family.saes for s in t)]
if not triples:
    raise ValueError(f"none of the triples {cross_triples} is in the family {family.sizes}")
results = [analysis.cross_correlation(family, *t) for t in triples]
# the first and the last triple are drawn (the same one twice if only one fits the family)
for i, ((base, b, c), (corr, vb, vc)) in enumerate(zip([triples[0], triples[-1]], [results[0], results[-1]],
                                                       strict=True)):
    plots.glue_figure(f"fig_scatter_{i}", plots.scatter_pair(vb, vc, f"MCS against {b}", f"MCS against {c}",
                                                             f"{base}-feature dictionary ({corr.n} features)"))
results = [r[0] for r in results]
first = results[0]
glue("triple", f"{triples[0][0]} against {triples[0][1]} and {triples[0][2]}", display=False)
glue("pearson", first.pearson, display=False)
glue("spearman", first.spearman, display=False)
glue("low_low", first.frac_low_low, display=False)
glue("high_high", first.frac_high_high, display=False)
glue("off_diagonal", 1 - first.frac_low_low - first.frac_high_high, display=False)
glue("n_base", first.n, display=False)
if not np.isfinite(first.pearson):
    cross_verdict = (f"not measurable for {triples[0][0]} against {triples[0][1]} and {triples[0][2]}: the MCS values "
                     "are constant against one of them.")
else:
    # 95% interval for Pearson's r through Fisher's z (assumes roughly bivariate-normal pairs)
    z, half = np.arctanh(first.pearson), 1.96 / np.sqrt(max(first.n - 3, 1))
    low_r, high_r = np.tanh(z - half), np.tanh(z + half)
    strength = "strongly" if low_r >= 0.5 else "moderately" if low_r >= 0.2 else "weakly or not"
    cross_verdict = (f"{strength} ({triples[0][0]} against {triples[0][1]} and {triples[0][2]}: Pearson "
                     f"{first.pearson:.2f}, 95% interval {low_r:.2f}–{high_r:.2f}; Spearman {first.spearman:.2f}; "
                     f"{first.n} features).")
glue("cross_verdict", cross_verdict, display=False)
second = results[-1]
glue("triple_2", f"{triples[-1][0]} against {triples[-1][1]} and {triples[-1][2]}", display=False)
glue("pearson_2", second.pearson, display=False)
glue("spearman_2", second.spearman, display=False)
plots.table(
    ["base", "B", "C", "features", "Pearson", "Spearman", "low against both", "high against both"],
    [[*t, r.n, f"{r.pearson:.3f}", f"{r.spearman:.3f}", f"{r.frac_low_low:.1%}", f"{r.frac_high_high:.1%}"]
     for t, r in zip(triples, results, strict=True)],
)

# %% [markdown]
# ```{glue:figure} fig_scatter_0
# :name: fig-cross-0
#
# Each feature of the base dictionary ({glue:text}`triple`): MCS against the first larger
# dictionary (x) and the second (y), {glue:text}`n_base` features (the post's Figure 9).
# ```
#
# For {glue:text}`triple`, Pearson's r is {glue:text}`pearson:.3f` and Spearman's rho
# {glue:text}`spearman:.3f`; {glue:text}`low_low:.1%` of the features are low against both,
# {glue:text}`high_high:.1%` high against both, and {glue:text}`off_diagonal:.1%` change side.
#
# ```{glue:figure} fig_scatter_1
# :name: fig-cross-1
#
# The same for {glue:text}`triple_2` (the post's Figure 10).
# ```
#
# For {glue:text}`triple_2`: Pearson {glue:text}`pearson_2:.3f`, Spearman
# {glue:text}`spearman_2:.3f`.
#
# A feature's MCS against one larger dictionary predicts its MCS against another
# {glue:text}`cross_verdict`

# %% tags=["nbval-ignore-output"]
truth_family = pipeline.companion_family(family, ground_truth)

# %%
if truth_family is None or truth_family is family:
    glue("truth_cross", "", display=False)
else:
    t_triples = [t for t in cross_triples if all(s in truth_family.saes for s in t)]
    t_results = [analysis.cross_correlation(truth_family, *t)[0] for t in t_triples]
    display(plots.table(
        ["base (ground truth)", "B", "C", "features", "Pearson", "Spearman", "low against both", "high against both"],
        [[*t, r.n, f"{r.pearson:.3f}", f"{r.spearman:.3f}", f"{r.frac_low_low:.1%}", f"{r.frac_high_high:.1%}"]
         for t, r in zip(t_triples, t_results, strict=True)],
    ))
    glue("truth_cross", (
        "On the ground-truth source trained with the same settings (table above), "
        + "; ".join(f"{t[0]} against {t[1]} and {t[2]}: Pearson {r.pearson:.2f}, Spearman {r.spearman:.2f}"
                    if np.isfinite(r.pearson) else f"{t[0]} against {t[1]} and {t[2]}: constant MCS, no correlation"
                    for t, r in zip(t_triples, t_results, strict=True)) + "."
    ) if t_triples else "", display=False)

# %% [markdown]
# {glue:text}`truth_cross`
