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
# # What the low mode is
#
# {cite:t}`mcs_post_2023`, in the June 2023 post, offered three explanations for the features whose MCS sits at
# the random null, and had evidence for none: they are **dead** latents whose decoder rows
# never left their random initialisation; they model **noise** in the activations; or they
# are **real features the larger dictionary did not find**. Bricken et al.
# {cite}`bricken2023monosemanticity` found a cluster of "ultralow density" latents in their
# SAEs, apart from the rest in a histogram of log firing density, called it an artefact of
# training and suggested that it may explain this post's bimodality. This chapter tests that
# suggestion with one classification of every latent, built from two measured quantities:
#
# - its **firing density** on held-out activations (for the language model, rows of documents
#   the SAEs never trained on): **never fires**, **ultralow** (below a threshold read off the
#   valley of the log-density histogram) or **active**;
# - its **movement**: the cosine of its decoder row with the row it was initialised with,
#   **unmoved** at 0.9 or more, **moved** below.
#
# The same names and numbers are used on every page. "Low" means MCS below the null cutoff
# for rows at their random initialisation (the 99% quantile of the MCS of a random direction
# in d dimensions against the reference dictionary; chapter 4).

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
mid_size = 4096  # the post: fewer than 25% of its features have MCS of 0.5 or more against 8192
null_quantile = 0.99  # the high/low split is this quantile of the null for K (d_in) and M (the reference)
n_heldout = 327680  # held-out activations on which firing density is counted (all there are, if fewer)
n_recon = 65536  # held-out activations for the reconstruction test of active low features
n_mc = 1000  # Monte Carlo draws for the test of a low part against the truncated null
ablation_sizes = [256, 1024, 2048]  # sizes trained for each ablation and the second seed
ablations = [{"init": "post"}, {"resample_every": 250}]  # each a family: these overrides over the settings above
second_seed = 1  # seed of the second family (the seed ceiling)
sweep = []  # settings of the L1 and scale sweep, on every source, e.g. [{"l1_coeff": 3e-4}, {"normalize_activations": True}]
sweep_sizes = [256, 1024, 4096]  # sizes each sweep setting trains (with the reference); 256 and 4096: the post's numbers
ground_truth = {}  # a source with true features beside a language model, e.g. {"source": "synthetic"}

# %%
from IPython.display import display
from myst_nb import glue

from sae_core.report import analysis, answer, low_mode, low_mode_chapter, pipeline, plots

# %% tags=["nbval-ignore-output"]
family = pipeline.ensure_family(pipeline.family_params(globals()))
truth_family = pipeline.companion_family(family, ground_truth)
retrainable = family.params["source"] != "dictionaries"  # dictionaries read from disk cannot be retrained
sources = [family] + ([truth_family] if truth_family is not None and truth_family is not family else [])

# %%
small, large = analysis.compared_pair(family, small_size, large_size)
chapter = low_mode_chapter.LowModeChapter(sources, small, mid_size, large, ablation_sizes, null_quantile, n_heldout)
glue("n_heldout", chapter.n_heldout_text, display=False)
glue("threshold_sentence", chapter.threshold_sentence(), display=False)
glue("chance_cutoffs", chapter.chance_sentence(seed=seed), display=False)
plots.glue_figure("fig_density", plots.density_histograms(chapter.density_panels()))

# %% [markdown]
# ## Latent classes
#
# {glue:text}`n_heldout` {glue:text}`threshold_sentence`
#
# ```{glue:figure} fig_density
# :name: fig-density
#
# Histogram of log10 firing density on held-out activations, per source and size (Bricken et
# al.'s plot): latents that never fire in the grey bar at the left, ultralow latents in orange,
# active ones in blue. The dotted line is the detection limit 3/n, the dashed line the
# ultralow threshold.
# ```

# %%
display(plots.table(*chapter.class_table()))

# %% [markdown]
# *Table.* Each source's latents by class and size, on held-out activations. "Unmoved": the
# decoder row is still within cosine 0.9 of its initialisation.
#
# Two chance lines answer two questions. A decoder row that never moved from its random
# initialisation is a random direction in all d dimensions. The d-dimensional null is its
# chance model, and it defines "low" on every page. A *trained* feature lives where the data
# do, and the activations span far fewer dimensions than d. Chance for a trained feature is
# a null drawn in that span. {glue:text}`chance_cutoffs` Claims that a trained feature recurs
# (high shares, splitting, seed sharing) use the d-dimensional cutoff. Inside the span they
# are upper bounds on what exceeds chance.

# %%
display(plots.table(*chapter.chance_table(seed=seed)))

# %% [markdown]
# *Table.* The chance lines against each source's largest dictionary: the d-dimensional null,
# random directions in the span of the principal components that hold 99% of the
# activations' variance, and Gaussian draws with the activations' mean and covariance. The
# last column gives the share of the small dictionary above each cutoff.

# %% tags=["nbval-ignore-output"]
settings = chapter.settings(ablations if retrainable else [], progress=True)

# %%
plots.glue_figure("fig_mcs_density", plots.mcs_vs_density(chapter.scatter_panels(settings)))
plots.glue_figure("fig_mcs_init", plots.mcs_vs_init_cosine(chapter.scatter_panels(settings)))
answers = chapter.answer_sentences(settings)
glue("answer_sentences", " ".join(answers), display=False)
glue("answer_lead", chapter.lead(settings), display=False)  # the abstract's sentence
glue("verdict_low", chapter.overall(settings), display=False)

# %% [markdown]
# ## The low mode by class
#
# ```{glue:figure} fig_mcs_density
# :name: fig-mcs-density
#
# Each latent's MCS against the largest dictionary (y) and its log10 firing density on
# held-out activations (x; latents that never fire at the left edge, spread a little),
# grey when its decoder row is unmoved from its initialisation, blue when it moved. The
# dotted line is the null cutoff, the dashed line the ultralow threshold.
# ```
#
# ```{glue:figure} fig_mcs_init
# :name: fig-mcs-init
#
# The same latents: MCS (y) against the cosine of the decoder row with its initial row (x),
# coloured by firing class (active blue, ultralow orange, never fires grey).
# ```
#
# {glue:text}`answer_sentences`

# %%
display(plots.table(*chapter.low_class_table(settings)))

# %% [markdown]
# *Table.* The low features of each setting by class: the share of the low features in each
# class, and the share of each class that is low.

# %%
display(plots.table(*chapter.robustness_table(settings)))

# %% [markdown]
# *Table.* The low features' classes counted on growing held-out samples. "Never fires"
# depends on n; movement does not.
#
#
# ## Answer
#
# {glue:text}`verdict_low`

# %%
encoder_tests = chapter.encoder_tests(settings)
glue("encoder_sentence", " ".join(encoder_tests), display=False)

# %% [markdown]
# ## Do ultralow latents share one encoder direction?
#
# Anthropic's 2024 circuits update {cite}`anthropic2024circuits` reports that ultralow latents
# share one encoder direction while their decoder rows stay random. For each setting's
# mid-size dictionary: the mean pairwise cosine of the ultralow latents' encoder columns and
# the share of their squared singular values in the top one, against as many active latents
# and as many random directions (200 draws).
#
# {glue:text}`encoder_sentence`

# %% tags=["nbval-ignore-output"]
other = low_mode.ablation_family(family, {"seed": second_seed}, chapter.ab_sizes) if retrainable else None

# %%
ceiling, unfound = chapter.seed_tests(other, n_recon=n_recon, seed=seed)
if ceiling is not None:
    display(plots.table(*chapter.ceiling_table(ceiling)))
glue("seed_b", second_seed, display=False)
glue("ceiling_sentence", chapter.ceiling_sentence(ceiling), display=False)
glue("unfound_sentence", answer.unfound_sentence(unfound, second_seed), display=False)

# %% [markdown]
# ## Real features the larger dictionary missed?
#
# Two dictionaries of the same size trained with different seeds do not share all their
# features (Paulo & Belrose {cite}`paulo2025sparse` report 30–53% of latents shared across
# seeds; Leask et al. {cite}`leask2025canonical` find that about 65% of a larger dictionary's
# latents reconstruct smaller-dictionary ones). {glue:text}`ceiling_sentence`
#
# {glue:text}`unfound_sentence`

# %%
display(plots.table(*chapter.ablation_table(settings)))
glue("ablation_sentence", chapter.ablation_sentence(settings), display=False)
glue("ablation_intro", chapter.ablation_intro(ablations if retrainable else []), display=False)

# %% [markdown]
# ## What changes the low mode
#
# {glue:text}`ablation_intro`
#
# {glue:text}`ablation_sentence`

# %% tags=["nbval-ignore-output"]
swept = chapter.sweep_families(sweep if retrainable else [], sweep_sizes)

# %%
sweep_rows = chapter.sweep_rows(swept)
if sweep_rows:
    display(plots.table(*chapter.sweep_table(sweep_rows)))
glue("sweep_intro", chapter.sweep_intro(sweep_rows, len(sweep)), display=False)
glue("alpha_sentence", chapter.alpha_sentence(sweep_rows), display=False)

# %% [markdown]
# ## Sparsity pressure and the activations' scale
#
# The L1 term $\alpha \lVert f\rVert_1$ acts against the activations' own scale: the same
# $\alpha$ is a stronger pressure on activations of small norm. {glue:text}`sweep_intro`
#
# {glue:text}`alpha_sentence`

# %%
points = answer.class_points(chapter.named_families(settings, other, swept), null_quantile, n_heldout)
fit = answer.fit_class_points(points, seed=seed)
plots.glue_figure("fig_dead_vs_low", plots.dead_vs_low(points, fit))
display(plots.table(*answer.points_table(points)))
glue("n_points", len(points), display=False)
glue("n_families", len({p.key for p in points}), display=False)
glue("fit_sentence", answer.fit_sentence(points, fit), display=False)

# %% [markdown]
# ## One figure for the answer
#
# If the low mode is made of latents whose decoder rows never left their initialisation,
# then across every setting this book trains, the share of features below the null cutoff
# should track the share of latents whose decoder rows are unmoved.
#
# ```{glue:figure} fig_dead_vs_low
# :name: fig-dead-vs-low
#
# Each of the {glue:text}`n_points` points is one dictionary size (labelled) of one of
# {glue:text}`n_families` families, against that family's largest size. x: the share of its
# latents whose decoder row is still within cosine 0.9 of its initialisation. y: the share of
# its features with MCS below the null cutoff. Colours are settings, markers sources. On the
# dashed diagonal every low feature would be unmoved and every unmoved latent low.
# ```
#
# {glue:text}`fit_sentence`

# %% tags=["nbval-ignore-output"]
# What the features fire on (issue 21): cards, the token-level proxy by class and the feature browser,
# all from the report layer (sae_core/report/feature_section.py); self-contained below this line.
from IPython.display import HTML

from sae_core.report import analysis as fire_analysis
from sae_core.report import feature_section

fire_small, fire_large = fire_analysis.compared_pair(sources[0], small_size, large_size)
features = feature_section.feature_section(sources, fire_small, fire_large, null_quantile, n_heldout, seed=seed)
glue("fire_card_source", features.card_source or "source", display=False)
glue("fire_proxy_sentence", features.proxy_sentence(), display=False)
glue("fire_browser_sentence", features.browser_sentence(), display=False)

# %% [markdown]
# ## What the features fire on
#
# The post's third explanation, real features the larger dictionary missed, can be judged by
# looking at the features. Every latent's firing is counted on held-out documents, so each can be
# shown in the text it fires on, as feature dashboards do (Bricken et al.
# {cite}`bricken2023monosemanticity`; sae_vis, SAEDashboard and Neuronpedia show the same panels):
# its density with the detection limit, the histogram of its activations, its top activations
# in context, a seeded sample from lower activation intervals, the tokens whose logits it raises,
# and its MCS and nearest feature in the larger dictionary. The cards are of the
# {glue:text}`fire_card_source`.
#
# {glue:text}`fire_proxy_sentence`
#
# {glue:text}`fire_browser_sentence`

# %% tags=["nbval-ignore-output"]
display(HTML(features.links_html()))

# %% tags=["nbval-ignore-output"]
display(HTML(features.cards_html()))
