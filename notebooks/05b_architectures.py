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
# # Architectures
#
# The previous chapter tested whether the low-MCS mode is latents that never trained; its answer
# differs by source and size. If that is what the mode is, then SAEs built so that every latent
# trains should have no low mode. This chapter is
# that test. It trains, on each source and at the sizes of Figure 3 of the post
# {cite}`mcs_post_2023` (1024 against 8192), the SAEs the field uses today beside this report's
# ReLU + L1 baseline:
#
# - **TopK + AuxK** {cite}`gao2024scaling`: each input keeps its k largest pre-activations
#   (after a ReLU); latents that have not fired for a window of steps ("dead") are trained by an
#   auxiliary loss in which the top $k_\mathrm{aux}$ dead latents reconstruct the residual error
#   $e = x - \hat x$: $\mathcal{L} = \lVert x - \hat x\rVert^2 / (Bd) + \alpha_\mathrm{aux}
#   \lVert e - \hat e\rVert^2 / \lVert e - \bar e\rVert^2$, with Gao et al.'s $\alpha_\mathrm{aux}
#   = 1/32$ and $k_\mathrm{aux} = d/2$; the encoder starts as the decoder's transpose.
# - **BatchTopK + AuxK** {cite}`bussmann2024batchtopk` (the `sweep` profile): the top $B \cdot k$
#   activations of the whole batch are kept, with the same auxiliary loss; at inference one
#   threshold, a running average of the smallest kept activation, replaces the batch.
# - **JumpReLU** {cite}`rajamanoharan2024jumping` (the `sweep` profile): $f = \mathrm{ReLU}(z)\,
#   H(z - \theta)$ with a threshold per latent trained through straight-through pseudo-derivatives,
#   and an L0 penalty $\lambda \lVert f\rVert_0$ in place of the L1.
#
# Each architecture is compared with the ReLU baseline of the same size **at matched sparsity**:
# k for each size is the ReLU baseline's L0 on held-out activations, rounded, so that a
# difference in the low mode is not a difference in sparsity (JumpReLU's λ is set by the profile,
# and the chapter states how far its L0 lands). The latent classes are those of
# the previous chapter (never fires / ultralow / active on held-out activations, with each
# source's density threshold; unmoved when the decoder row keeps cosine ≥ 0.9 with its initial
# row).

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
small_size = 1024  # the post's pair: 1024 against 8192
large_size = 8192
mid_size = 4096  # the size whose shares above the cutoffs are reported
null_quantile = 0.99  # the null cutoff is this quantile of the analytic MCS null
n_heldout = 327680  # held-out activations on which firing density is counted (all there are, if fewer)
second_seed = 1  # seed of the second dictionary at the small size (seed sharing)
ground_truth = {}  # a source with true features beside a language model, e.g. {"source": "synthetic"}
# Architectures, each trained at arch_sizes on every source at the ReLU baseline's held-out L0 (TopK's k).
# dead_window: steps without firing after which AuxK trains a latent (Gao et al.: 10M tokens; our runs see
# 300k in all, so the window is a share of the run: 100 of 1200 steps).
architectures = [{"activation": "topk", "dead_window": 100}]
arch_sizes = [1024, 4096, 8192]  # the sizes every architecture trains (small, mid and large among them)

# %%
from IPython.display import display
from myst_nb import glue

from sae_core.report import analysis, answer, pipeline, plots
from sae_core.report import architectures as arch

# %% tags=["nbval-ignore-output"]
family = pipeline.ensure_family(pipeline.family_params(globals()))
truth_family = pipeline.companion_family(family, ground_truth)
sources = [f for f in (family, truth_family) if f is not None and f.has_activations
           and f.params["source"] != "dictionaries"]
sources = list({f.key: f for f in sources}.values())
small, large = analysis.compared_pair(family, small_size, large_size)
trained_sizes, mid = arch.chapter_sizes(arch_sizes, family.sizes, small, mid_size, large)
rows = [r for f in sources for r in arch.rows_for_source(f, architectures, trained_sizes, small, mid, n_heldout,
                                                          null_quantile, second_seed)]

# %%
display(plots.table(*arch.table(rows)))
plots.glue_figure("fig_arch_mcs", arch.mcs_figure(rows))
base = arch.baselines(rows)
glue("arch_matching", arch.matching_sentence(rows, base), display=False)
glue("arch_answers", " ".join(arch.architecture_sentence(r, base.get(r.source)) for r in rows)
     or arch.overall_sentence(rows), display=False)
glue("arch_seed", arch.seed_sentence(rows), display=False)
glue("arch_overall", arch.overall_sentence(rows), display=False)

# %% [markdown]
# ## Matched sparsity
#
# {glue:text}`arch_matching`
#
# The table gives, per source and architecture, k and held-out L0 and the fraction of variance
# explained (FVE) at each size; the latent classes at the small size; the share of its features
# below the null cutoff against the largest dictionary of the same architecture, whether that
# histogram is bimodal and what its low part is; the share of the mid size's features above the
# null cutoff and above 0.5; and seed-to-seed sharing at the small size: the share of pairs
# matched one-to-one (Hungarian matching) above the null cutoff, as Paulo and Belrose
# {cite}`paulo2025sparse` count shared latents, and the mean matched cosine (the PW-MCC of Song
# et al. 2025).
#
# ## The histograms
#
# ```{glue:figure} fig_arch_mcs
# :name: fig-arch-mcs
#
# MCS of the small dictionary's features against the largest dictionary of the same architecture
# and source, with the analytic null for random directions truncated at the null cutoff (dotted)
# and scaled to the share of features below it.
# ```
#
# {glue:text}`arch_answers`
#
# ## Seed sharing
#
# {glue:text}`arch_seed`

# %%
points = answer.class_points(arch.named_families(rows), null_quantile, n_heldout)
plots.glue_figure("fig_arch_points", plots.dead_vs_low(points))

# %% [markdown]
# ## The answer, extended
#
# {glue:text}`arch_overall`
#
# ```{glue:figure} fig_arch_points
# :name: fig-arch-points
#
# Each point is one dictionary size (labelled) of one architecture on one source, against the
# largest size of the same family: the share of its latents that never fire or fire at ultralow
# density on held-out activations (x) and the share of its features below the null cutoff (y).
# On the dashed diagonal every low feature would be inactive and every inactive latent low.
# ```
