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
null_quantile = 0.99
n_heldout = 327680  # held-out activations on which a latent's firing class is read (chapter 5)
ablation_sizes = [256, 1024, 2048]  # sizes with a second seed (chapter 5's, reused by the seed baseline)
second_seed = 1  # seed of the second family: the seed baseline
tree_tokens = 8192  # held-out activations on which the feature trees (and their baselines) are built
tree_threshold = 0.6  # an edge needs a directed masked cosine of at least this (the follow-up post's 0.6)
tree_thresholds = [0.4, 0.5, 0.6, 0.7, 0.8]  # the sweep: Bricken et al.'s 0.4 to 0.8
tree_min_cofire = 5  # and this many tokens on which both latents fire (not in the post; see the text)
tree_permutations = 3  # seeded shuffles of the larger dictionary's codes: the permutation baseline
ground_truth = {}  # a source with true features beside a language model, e.g. {"source": "synthetic"}

# %%
from IPython.display import display
from myst_nb import glue

from sae_core.report import analysis, pipeline, plots, splitting
from sae_core.report import splitting_plots as split_plots

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
#
# These counts include latents that never fire or fire at ultralow density (chapter 5's
# classes), whose decoder rows can sit anywhere. Counted over **active** latents only, each
# against the reference's active latents (the null cutoff then for that many):
# {glue:text}`active_count_sentence`

# %% tags=["nbval-ignore-output"]
active = splitting.active_latents(family, n_heldout) if family.has_activations else None

# %%
active_rows = splitting.active_high_low(family, large, active, null_quantile) if active is not None else []
glue("active_count_sentence", splitting.active_count_sentence(active_rows) if active is not None else
     "these dictionaries have no activations to classify their latents by, so there is no such count.",
     display=False)
plots.table(
    ["size", "active latents", "high (0.5)", "high share (0.5)", "high (null)", "high share (null)"],
    [[r["size"], f"{r['n_active']} of {r['n_latents']}", r["high_post"], splitting.pct(r["frac_high_post"]),
      r["high_null"], splitting.pct(r["frac_high_null"])] for r in active_rows],
)

# %% [markdown]
# ## Feature trees across widths
#
# Counting high- and low-MCS features does not show *which* feature splits into which. The
# follow-up to the post builds directed trees across widths from the latents' activations.
# For a latent a of the smaller dictionary and b of the next larger one, with activations
# $a_t, b_t \ge 0$ over held-out tokens t and $S_b = \{t : b_t > 0\}$,
#
# $$D(a \to b) = \frac{\sum_{t \in S_b} a_t b_t}{\sqrt{\sum_{t \in S_b} a_t^2 \sum_{t \in S_b} b_t^2}}
#   \cdot \frac{\max_t b_t}{\max_t a_t},$$
#
# the masked cosine of Towards Monosemanticity restricted to the tokens where the larger
# latent fires, scaled by the ratio of the two latents' largest activations. An edge a → b
# needs $D \ge$ {glue:text}`tree_threshold` and, a safeguard not in the post, at least
# {glue:text}`tree_min_cofire` tokens on which both fire: two independent sparse latents can
# reach 0.6 on a single shared token. The edges form a DAG (a large latent may have several
# parents: a merge); for drawing, each large latent is kept under its best-scoring parent.
# Bricken et al. left ultralow latents out of their split analysis; here only active
# latents take part. {glue:text}`excluded_sentence`
#
# A count of edges means little without the count the same rule draws where nothing splits.
# Every statistic below is computed the same way twice more:
#
# - **shuffled codes** (permutation baseline): the larger dictionary's codes shuffled across
#   the tokens, which keeps each latent's firing rate and magnitudes and breaks its co-firing
#   with the smaller one; {glue:text}`tree_permutations` seeded permutations, shown as their
#   mean and range;
# - **another seed** (seed baseline): the rule between the dictionary of the rung's *smaller*
#   size and a dictionary of the same size trained with seed {glue:text}`second_seed`, where
#   nothing can split (sizes {glue:text}`seed_sizes`; chapter 5 trains the second seed). Its
#   latents count as active when they fire on the trees' tokens at least as often as the
#   family's density threshold between ultralow and active latents.
#
# The trees' values and the seed baseline's carry 95% bootstrap intervals over latents.

# %% tags=["nbval-ignore-output"]
# trees are built from activations; the baselines reuse their tokens and codes
tree = splitting.feature_trees(family, n_tokens=tree_tokens, threshold=tree_threshold, min_cofire=tree_min_cofire,
                               active=active) if family.has_activations else None
perm = splitting.permutation_baseline(tree, tree_permutations, seed) if tree is not None else None
retrainable = family.params["source"] != "dictionaries"  # dictionaries read from disk cannot be retrained
seed_sizes = splitting.seed_family_sizes(family, ablation_sizes, large, companion=False)
other = pipeline.ensure_family(pipeline.family_params(pipeline.merge_overrides(
    {**family.params, "sizes": seed_sizes}, {"seed": second_seed}))) if retrainable and tree is not None else None
seed_base = splitting.seed_baseline(tree, family, other, second_seed, splitting.activity_threshold(family, n_heldout)) \
    if other is not None else None

# %%
glue("tree_threshold", tree_threshold, display=False)
glue("tree_min_cofire", tree_min_cofire, display=False)
glue("tree_tokens", tree.n_tokens if tree is not None else tree_tokens, display=False)
glue("tree_permutations", tree_permutations, display=False)
glue("second_seed", second_seed, display=False)
glue("seed_sizes", splitting.seed_sizes_text(seed_base), display=False)
glue("excluded_sentence", splitting.excluded_sentence(tree, n_heldout) if tree is not None else
     "These dictionaries were read without activations, so no tree is built.", display=False)
stat_rows = splitting.rung_statistics(tree, perm, seed_base) if tree is not None else []
depth = splitting.depth_statistics(tree, perm) if tree is not None else None
glue("baseline_sentence", splitting.baseline_sentence(stat_rows, depth) if tree is not None else "", display=False)
plots.table(*splitting.statistics_table(stat_rows, depth))

# %%
plots.glue_figure("fig_trees", plots.tree_levels(tree.summaries if tree is not None else []))
if tree is None:
    glue("tree_sentence", "These dictionaries were read without a model and site to take activations from, so no "
         "tree can be built.", display=False)
    glue("twins_sentence", "", display=False)
else:
    glue("tree_sentence", splitting.tree_sentence(tree), display=False)
    glue("twins_sentence", splitting.twins_sentence(tree), display=False)
    display(plots.table(*splitting.twins_table(tree)))

# %% [markdown]
# {glue:text}`baseline_sentence`
#
# ```{glue:figure} fig_trees
# :name: fig-trees
#
# Per rung of the size ladder, on {glue:text}`tree_tokens` held-out activations: the shares of
# active small latents with no, one or several children, and the share of active large latents
# with several parents (merges).
# ```
#
# {glue:text}`tree_sentence` {glue:text}`twins_sentence`
#
# ### Example subtrees
#
# The three latents of the smallest dictionary with the most descendants in the drawn tree
# (each large latent under its best parent), followed for three rungs; a line reads
# `size:latent`, with the true feature it matches on a synthetic source.

# %%
print("No tree: these dictionaries have no activations." if tree is None else
      "\n\n".join("\n".join(splitting.describe_subtree(tree, r, depth=3)) for r in splitting.largest_trees(tree)))

# %% [markdown]
# ## Against the true hierarchy
#
# On a synthetic source each latent can be named by the true feature its decoder row lies
# within cosine 0.9 of, and the source's hierarchy (parents whose children fire only with
# them, each child at a set cosine to its parent) says which edges are true splits.
# {glue:text}`truth_tree_where`

# %% tags=["nbval-ignore-output"]
truth_family = pipeline.companion_family(family, ground_truth)
truth_tree, truth_perm, truth_seed = None, None, None
if truth_family is family:
    truth_tree, truth_perm, truth_seed = tree, perm, seed_base
elif truth_family is not None and truth_family.has_activations:
    truth_active = splitting.active_latents(truth_family, n_heldout)
    truth_tree = splitting.feature_trees(truth_family, n_tokens=tree_tokens, threshold=tree_threshold,
                                         min_cofire=tree_min_cofire, active=truth_active)
    truth_perm = splitting.permutation_baseline(truth_tree, tree_permutations, seed)
    truth_seed_sizes = splitting.seed_family_sizes(truth_family, ablation_sizes, large, companion=True)
    if truth_seed_sizes:
        truth_other = pipeline.ensure_family(pipeline.family_params(pipeline.merge_overrides(
            {**truth_family.params, "sizes": truth_seed_sizes}, {"seed": second_seed})))
        truth_seed = splitting.seed_baseline(truth_tree, truth_family, truth_other, second_seed,
                                             splitting.activity_threshold(truth_family, n_heldout))

# %%
glue("truth_tree_where", "" if truth_family is family else
     "This build's language model has no known hierarchy and no ground-truth source is set beside it (parameter "
     "`ground_truth`)." if truth_family is None else
     "The language model has no known hierarchy, so the trees and their baselines are built the same way on the "
     "ground-truth source beside it (same sizes and training settings).", display=False)
truth_ok = truth_tree is not None and truth_tree.validation is not None
truth_rows = splitting.rung_statistics(truth_tree, truth_perm, truth_seed) if truth_ok else []
truth_depth = splitting.depth_statistics(truth_tree, truth_perm) if truth_ok else None
curve = splitting.threshold_curve(truth_tree, truth_perm, truth_seed, tree_thresholds) if truth_ok else None
glue("recovery_sentence", splitting.recovery_sentence(truth_tree) if truth_ok else
     "There is no true hierarchy to check the trees against in this build.", display=False)
glue("truth_tree_sentence", splitting.truth_sentence(truth_tree) if truth_ok else "", display=False)
glue("truth_baseline_sentence", (splitting.excluded_sentence(truth_tree, n_heldout) + " "
                                 + splitting.baseline_sentence(truth_rows, truth_depth))
     if truth_ok and truth_tree is not tree else "", display=False)
glue("split_threshold_sentence", splitting.threshold_sentence(curve), display=False)
plots.glue_figure("fig_pr", split_plots.precision_recall(curve))
plots.glue_figure("fig_baselines", split_plots.edges_against_baselines(
    [(name, r) for name, r in (("trees of this build's source", stat_rows),
                                ("ground-truth source", truth_rows if truth_tree is not tree else []))]))
examples = splitting.example_subtrees(truth_tree, truth_perm) if truth_ok else \
    splitting.example_subtrees(tree, perm) if tree is not None else []
plots.glue_figure("fig_subtrees", split_plots.subtrees(truth_tree if truth_ok else tree, examples))
glue("examples_sentence", splitting.examples_sentence(examples), display=False)
plots.table(*splitting.recovery_table(truth_tree if truth_ok else None))

# %% [markdown]
# {glue:text}`recovery_sentence` Whether a hierarchy is learned depends on how often its
# children fire: the `splitting` profile (`make book PROFILE=splitting`) builds this chapter on
# a synthetic source that the same training learns much more of (512 features; 32 parents with
# two children each, each child firing with a quarter of its parent's activations).
#
# {glue:text}`truth_baseline_sentence`

# %%
plots.table(*splitting.statistics_table(truth_rows if truth_tree is not tree else [],
                                        truth_depth if truth_tree is not tree else None,
                                        empty="the ground truth's trees are this build's own, above"))

# %%
plots.table(*splitting.validation_table(truth_tree if truth_ok else None))

# %% [markdown]
# {glue:text}`truth_tree_sentence`
#
# ### Which threshold recovers the hierarchy
#
# No threshold is chosen by hand: the directed score's threshold is swept, and at each value
# the edges of every rung are checked against the true hierarchy. **Precision** is the share
# of the edges linking two different true features that link a parent to its own child;
# **recall** is the share of the true parent → child pairs present in a rung's two
# dictionaries that some edge links. The same is computed on shuffled codes and across seeds:
# the precision and recall of chance. A threshold *recovers the hierarchy* when precision and
# recall both reach 50% and precision exceeds that of every permutation.

# %%
plots.table(*splitting.curve_table(curve))

# %% [markdown]
# {glue:text}`split_threshold_sentence`
#
# ```{glue:figure} fig_pr
# :name: fig-pr
#
# Precision against recall of the true parent → child pairs at each threshold of the sweep
# (labels), for the trees, for shuffled codes and for another seed. A point is left out where
# it is undefined (no edge links two true features, or no true pair is present).
# ```
#
# ```{glue:figure} fig_baselines
# :name: fig-baselines
#
# Edges per active small latent at each rung at the threshold {glue:text}`tree_threshold`:
# the trees (bootstrap interval over latents), shuffled codes (range over permutations) and
# another seed at the rung's smaller size (bootstrap interval). Symmetric-log scale.
# ```
#
# ```{glue:figure} fig_subtrees
# :name: fig-subtrees
#
# One subtree per class of outcome, each chosen by the rule in its title; each edge carries
# its score and, on the ground truth, its kind.
# ```
#
# {glue:text}`examples_sentence`
