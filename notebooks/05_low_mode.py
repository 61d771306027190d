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
# The post offered three explanations for the features whose MCS sits at the random null, and
# had evidence for none of them: they are **dead** latents that never fire, so their decoder
# rows never leave their random initialisation; they model **noise** in the activations; or
# they are **real features the larger dictionary did not find**. Each explanation is
# measurable. This chapter splits every low-MCS feature into dead and alive on held-out
# activations, checks the training record, varies the training (initialisation, resampling of
# dead latents, noise in the activations) and trains a second seed to tell "new at this size"
# from "depends on the seed".

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
n_heldout = 32768  # held-out activations on which "dead" (fires on none) is decided
n_mc = 1000  # Monte Carlo draws for the test of a low part against the truncated null
ablation_sizes = [256, 1024, 2048]  # sizes trained for each ablation and the second seed
ablations = [{"init": "post"}, {"resample_every": 250}]  # each a family: these overrides over the settings above
second_seed = 1  # seed of the second family (the seed ceiling)
sweep = []  # settings of the L1 and scale sweep, on every source, e.g. [{"l1_coeff": 3e-4}, {"normalize_activations": True}]
sweep_sizes = [256, 1024, 4096]  # sizes each sweep setting trains (with the reference); 256 and 4096: the post's numbers
ground_truth = {}  # a source with true features beside a language model, e.g. {"source": "synthetic"}
dead_window = 400  # dead at the end of training: no firing in this many last steps (the training record)

# %%
import numpy as np
from IPython.display import display
from myst_nb import glue

from sae_core import stats
from sae_core.report import analysis, low_mode, pipeline, plots

# %% tags=["nbval-ignore-output"]
family = pipeline.ensure_family(pipeline.family_params(globals()))

# %% [markdown]
# ## Dead or alive, per size
#
# A latent is **dead** here when it fires on none of the held-out activations; a latent with
# no firing in n samples fires on fewer than 3 in n with 95% confidence, the detection limit
# quoted below. "Never moved" means its decoder row still has cosine at least 0.99 with the
# row it was initialised with. Low MCS means below the null cutoff: the 99% quantile of the
# MCS of random directions for the same dimension and reference size.

# %%
small, large = analysis.compared_pair(family, small_size, large_size)
cut = low_mode.split_cutoff(family, large, null_quantile)
parts = low_mode.anatomy_by_size(family, large, cut, n_heldout=n_heldout, n_mc=n_mc, seed=seed)
plots.glue_figure("fig_dead_alive", plots.dead_alive_histograms(parts, family.d_in))
glue("large", large, display=False)
glue("d", family.d_in, display=False)
glue("cutoff", cut, display=False)
glue("n_heldout", n_heldout, display=False)
glue("detect", low_mode.detection_limit(n_heldout), display=False)
glue("null_q", null_quantile, display=False)
glue("null_mode", low_mode.null_mode(family, large), display=False)


def pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.1%}"


def test_cell(t: stats.TruncatedNullTest | None) -> str:
    return "fewer than 10" if t is None else f"{t.w1:.4f} (chance {t.expected:.4f}; p = {t.p_value:.3f})"


plots.table(
    ["size", "low (MCS < cutoff)", "dead share of low", "never moved", "alive low",
     "alive low: W1 to null (p)", "dead low: W1 to null (p)", "dead, whole dictionary"],
    [[a.size, a.n_low, pct(a.low_dead_share), a.n_low_never_moved, a.n_low_alive, test_cell(a.alive_low_test),
      test_cell(a.dead_low_test), pct(a.n_dead / a.n)] for a in parts],
)

# %% [markdown]
# ```{glue:figure} fig_dead_alive
# :name: fig-dead-alive
#
# MCS of each smaller dictionary against the {glue:text}`large`-feature one, stacked by what
# the latent does: alive (blue), dead on {glue:text}`n_heldout` held-out activations but moved
# from its initial decoder row (orange), dead and never moved (grey). Bars are densities of
# the whole dictionary, so the stacks' areas are the shares of features. The red curve is the
# analytic null truncated at the cutoff {glue:text}`cutoff:.3f` (dotted line) and scaled to
# the share of features below it.
# ```

# %%
with_low = [a for a in parts if a.n_low >= low_mode.MIN_PART]
lead = next((a for a in with_low if a.size == small), max(with_low, key=lambda a: a.n_low) if with_low else None)
post_pair = next(a for a in parts if a.size == small)
if post_pair.n_low < low_mode.MIN_PART:
    pair_sentence = (
        f"The post's pair has no low mode here: only {post_pair.n_low} of the {post_pair.n} features of the "
        f"{small}-feature dictionary lie below the cutoff against {large}."
    )
else:
    pair_sentence = (
        f"For the post's pair, {post_pair.n_low} of the {post_pair.n} features of the {small}-feature dictionary "
        f"lie below the cutoff against {large}."
    )
if lead is None:
    lead_sentence = "No dictionary of this family has ten or more features below the cutoff, so there is no low mode to take apart."
    verdict_dead = "There is no low mode on this source at these settings."
else:
    alive_t = lead.alive_low_test
    alive_part = (
        f"The {lead.n_low_alive} alive low features are "
        + ("consistent with the random null at their own sample size" if alive_t.consistent() else
           "not distributed like the random null")
        + f" (W1 {alive_t.w1:.4f} against {alive_t.expected:.4f} expected from chance alone at n = {alive_t.n}; "
          f"p = {alive_t.p_value:.3f})."
        if alive_t is not None else
        f"Only {lead.n_low_alive} low features are alive, too few to compare with chance."
    )
    stopped = (
        "" if lead.last_fired_dead is None else
        " In training, most of these dead latents never fired at all." if lead.last_fired_dead < 1 else
        f" In training, these dead latents last fired at step {lead.last_fired_dead:.0f} of {lead.n_steps} (median)."
    )
    lead_sentence = (
        f"The largest low mode to take apart is that of the {lead.size}-feature dictionary: {lead.n_low} features, "
        f"of which {lead.n_low_dead} ({pct(lead.low_dead_share)}) are dead and {lead.n_low_never_moved} never moved "
        f"from their initial decoder row.{stopped} {alive_part}"
        if lead.size != small else
        f"Of these {lead.n_low} low features, {lead.n_low_dead} ({pct(lead.low_dead_share)}) are dead and "
        f"{lead.n_low_never_moved} never moved from their initial decoder row.{stopped} {alive_part}"
    )
    share = lead.low_dead_share or 0.0
    if not lead.dead_known:
        lead_sentence = (f"The largest low part is that of the {lead.size}-feature dictionary, {lead.n_low} features; "
                         "whether they fire cannot be told: these dictionaries were read without a model and site to "
                         "take activations from.")
    if not lead.dead_known:
        verdict_dead = "not decided for these dictionaries: without activations their firing is unknown"
    elif share >= 0.5:
        verdict_dead = (f"mostly dead latents: {share:.1%} of the low features of the {lead.size}-feature dictionary "
                        f"fire on none of {n_heldout} held-out activations")
    else:
        verdict_dead = (f"mostly alive latents: only {share:.1%} of the low features of the {lead.size}-feature "
                        "dictionary are dead")
glue("pair_sentence", pair_sentence, display=False)
glue("lead_sentence", lead_sentence, display=False)
glue("verdict_dead", verdict_dead, display=False)
glue("lead_size", lead.size if lead else 0, display=False)
glue("lead_alive_low", lead.n_low_alive if lead else 0, display=False)

# %% [markdown]
# {glue:text}`pair_sentence` {glue:text}`lead_sentence` The dead low features are the random
# null by construction (a latent that does not fire gets no gradient); the table's p-value for
# them says whether their rows also *look* random (they can drift before dying). The null's
# own mode for K = {glue:text}`d` and M = {glue:text}`large` is {glue:text}`null_mode:.3f`.

# %% tags=["nbval-ignore-output"]
truth_family = pipeline.companion_family(family, ground_truth)

# %%
if truth_family is None or truth_family is family:
    glue("companion_sentence", "", display=False)
else:
    t_large = large if large in truth_family.saes else truth_family.sizes[-1]
    t_cut = low_mode.split_cutoff(truth_family, t_large, null_quantile)
    t_parts = low_mode.anatomy_by_size(truth_family, t_large, t_cut, n_heldout=n_heldout, n_mc=n_mc, seed=seed)
    display(plots.table(
        ["size (ground truth)", "low (MCS < cutoff)", "dead share of low", "never moved", "alive low",
         "alive low: W1 to null (p)", "dead, whole dictionary"],
        [[a.size, a.n_low, pct(a.low_dead_share), a.n_low_never_moved, a.n_low_alive, test_cell(a.alive_low_test),
          pct(a.n_dead / a.n)] for a in t_parts],
    ))
    t_lead = max(t_parts, key=lambda a: a.n_low)
    glue("companion_sentence", (
        f"Beside it, on the ground-truth source trained with the same settings (table above), the largest low part is "
        f"that of the {t_lead.size}-feature dictionary: {t_lead.n_low} features below the cutoff, "
        f"{pct(t_lead.low_dead_share)} of them dead."
        if t_lead.n_low else "Beside it, the ground-truth source has no feature below the cutoff at any size."
    ), display=False)

# %% [markdown]
# {glue:text}`companion_sentence`
#
# ## What changes the low mode
#
# Each row below is a family trained at the sizes listed in the parameters, with one setting
# changed: the initialisation of the code that trained the post's dictionaries (encoder and
# decoder drawn independently with Xavier-uniform, decoder rows normalised inside the forward
# pass; `init="post"`) against this report's transposed initialisation, resampling of dead
# latents, and, on a synthetic source, isotropic noise added to the activations (the post's
# "noise" explanation). A setting of one source's activations (noise) is trained on that
# source only.

# %% tags=["nbval-ignore-output"]
ab_sizes = sorted(set(ablation_sizes) | {large})
ab_small = small if small in ab_sizes else ab_sizes[0]
ab_mid = mid_size if mid_size in ab_sizes else ab_sizes[-2]
retrainable = family.params["source"] != "dictionaries"  # dictionaries read from disk cannot be retrained
sources = [family] + ([truth_family] if truth_family is not None and truth_family is not family else [])
two_sources = len(sources) > 1


def label(fam, name: str) -> str:
    return f"{low_mode.source_label(fam)}: {name}" if two_sources else name


ablated = []  # (source family, its rows)
for i, fam in enumerate(sources if retrainable else []):
    mine = [a for a in ablations if low_mode.applies_to(a, fam.params["source"])
            and (i == 0 or not low_mode.applies_to(a, family.params["source"]))]  # the companion: its own only
    if i == 0 or mine:
        f_large = large if large in fam.saes else fam.sizes[-1]
        ablated.append((fam, low_mode.ablation_table(fam, mine, sorted(set(ablation_sizes) | {f_large}), ab_small,
                                                     ab_mid, f_large, null_q=null_quantile, n_heldout=n_heldout,
                                                     n_mc=n_mc, seed=seed)))
rows = [r for _, fam_rows in ablated for r in fam_rows]
row_label = {id(r): label(fam, r.name) for fam, fam_rows in ablated for r in fam_rows}

# %%
plots.table(
    ["setting", f"{ab_small}: low share (null cutoff)", f"{ab_small}: below 0.5", f"{ab_small}: bimodal",
     f"{ab_mid}: MCS ≥ 0.5", f"{ab_mid}: dead share of low", f"{ab_mid}: alive low", f"dead share of {large}"],
    [[row_label[id(r)], f"{r.low_share_small:.1%}", f"{r.low_share_small_post:.1%}", "yes" if r.bimodal_small else "no",
      f"{r.high_share_mid_post:.1%}", pct(r.low_dead_share_mid), r.alive_low_mid, f"{r.dead_share[r.large]:.1%}"]
     for r in rows],
)

# %%
not_retrained = ("The ablations retrain the family with other settings, which dictionaries read from disk cannot do, "
                 "so this section does not apply to them.")
post_like = [r for r in rows if r.bimodal_small and r.high_share_mid_post < 0.25]
glue("ab_small", ab_small, display=False)
glue("ab_mid", ab_mid, display=False)
glue("reproduces", (
    "Settings that reproduce both the post's bimodality at "
    f"{ab_small} vs {large} and its fewer than 25% high-MCS features at {ab_mid}: "
    + ", ".join(row_label[id(r)] for r in post_like) + "."
    if post_like else
    f"No setting here reproduces both the post's bimodality at {ab_small} vs {large} and its fewer than 25% "
    f"high-MCS features at {ab_mid}; the closest is {row_label[id(min(rows, key=lambda r: r.high_share_mid_post))]} "
    f"with {min(r.high_share_mid_post for r in rows):.1%} high at {ab_mid}."
) if rows else not_retrained, display=False)
no_dead = [r for r in rows if r.dead_share[ab_mid] < 0.01]
if not rows:
    survives = ""
elif not no_dead:
    survives = (f"In every setting at least 1% of the {ab_mid}-feature dictionary's latents are dead, so whether the "
                "low mode survives without dead latents is not tested here.")
else:
    listed = "; ".join(f"{row_label[id(r)]}: {r.dead_share[ab_mid]:.1%} dead, {r.alive_low_mid} alive low features"
                       for r in no_dead)
    survives = (f"Settings in which fewer than 1% of the {ab_mid} latents are dead ({listed}) "
                + ("still have a low part, so the low mode does not need dead latents."
                   if any(r.alive_low_mid >= low_mode.MIN_PART for r in no_dead) else
                   "have no low part left: without dead latents the low mode disappears."))
glue("survives", survives, display=False)
noise_sentences = []
for fam, fam_rows in ablated:
    base_row = fam_rows[0]
    noise_sentences += [
        f"With {r.name} on the {low_mode.source_label(fam)} source, the low share at {ab_small} vs {r.large} is "
        f"{r.low_share_small:.1%} against {base_row.low_share_small:.1%} without noise, and {r.alive_low_mid} low "
        f"features of {ab_mid} are alive (against {base_row.alive_low_mid})."
        for r in fam_rows if "noise_std" in r.name]
glue("noise_sentence", "" if not rows else " ".join(noise_sentences) or "Noise was not varied in this build.",
     display=False)

# %%
# the settings whose mid size keeps at least MIN_PART alive low features: what do those latents do?
alive_rows = [(fam, r) for fam, fam_rows in ablated for r in fam_rows if r.alive_low_mid >= low_mode.MIN_PART]
alive_parts = []


def rate(x: float | None) -> str:
    return "–" if x is None else f"{x:.2%}" if x >= 1e-3 else f"{x:.1e}"  # rare latents: 1 in 32768 is 3.1e-05


for fam, r in alive_rows:
    f_ab_sizes = sorted(set(ablation_sizes) | {r.large})
    ab_fam = low_mode.ablation_family(fam, r.overrides, f_ab_sizes)
    alive_parts.append((row_label[id(r)], low_mode.alive_low(ab_fam, r.mid, r.large,
                                                             low_mode.split_cutoff(ab_fam, r.large, null_quantile),
                                                             n_heldout=n_heldout)))
if alive_parts:
    display(plots.table(
        ["setting", "alive low", f"{ab_mid}: median firing rate, alive low", "median firing rate, high",
         "reconstruct what the larger one lacks"],
        [[name, a.n_alive_low, rate(a.rate_alive_low), rate(a.rate_high),
          f"{a.better} of {a.scored}" if a.scored else "none fire on 20 samples"] for name, a in alive_parts],
    ))


def alive_text(name: str, a: low_mode.AliveLow) -> str:
    rare = a.rate_alive_low is not None and a.rate_high is not None and a.rate_alive_low < a.rate_high / 2
    edge = a.scored > 0 and a.better > a.scored / 2
    few = a.scored < a.n_alive_low / 2  # most fire too rarely for the reconstruction test
    return (
        f"With {name}, the {a.n_alive_low} alive low features of {a.size} fire on a median {rate(a.rate_alive_low)} of "
        f"held-out activations, against {rate(a.rate_high)} for its {a.n_high} high-MCS features"
        + (" (rarer)" if rare else "") + "; "
        + (f"{a.better} of the {a.scored} that fire on at least 20 samples reconstruct those samples better, relative "
           f"to the {a.against}-feature dictionary, than the dictionary does overall"
           + (": among those, structure the larger dictionary lacks" if edge else
              ": mostly not structure the larger one lacks")
           + (f"; the other {a.n_alive_low - a.scored} fire too rarely to tell." if few else ".")
           if a.scored else "none fires often enough to score its reconstruction.")
    )


glue("alive_sentence", " ".join(alive_text(n, a) for n, a in alive_parts) if alive_parts else
     f"No setting leaves {low_mode.MIN_PART} or more alive low features at {ab_mid}.", display=False)

# %% [markdown]
# {glue:text}`reproduces` {glue:text}`survives` {glue:text}`noise_sentence`
#
# The alive low features of each setting (table above), without a second seed: how often they
# fire, and whether, where they fire, the smaller dictionary reconstructs better relative to
# the larger one than it does overall. {glue:text}`alive_sentence`
#
# ## The seed ceiling
#
# Two dictionaries of the same size trained with different seeds do not share all their
# features (Paulo & Belrose 2025 report 30–53% of latents shared across seeds; Leask et al.
# 2025 find about 65% of a larger dictionary's latents reconstruct smaller-dictionary ones and
# 35% are novel). A feature absent from a larger dictionary is only "new at this size" if it
# is more than the seed-to-seed difference.

# %% tags=["nbval-ignore-output"]
other = low_mode.ablation_family(family, {"seed": second_seed}, ab_sizes) if retrainable else None
base_ab = low_mode.ablation_family(family, {}, ab_sizes) if retrainable else None

# %%
ceiling = low_mode.seed_ceiling(base_ab, other, ab_mid, large, null_q=null_quantile, n_heldout=n_heldout) \
    if retrainable else None
if ceiling is not None:
    display(plots.table(
        ["size", "shared with the other seed (same size)", f"high against {large} (same seed)", "null cutoff"],
        [[s, f"{ceiling.same_size[s]:.1%}", pct(ceiling.across_sizes.get(s)), f"{ceiling.cutoffs[s]:.3f}"]
         for s in sorted(ceiling.same_size)],
    ))

# %%
glue("seed_b", second_seed, display=False)
glue("ceiling_sentence", "A second seed needs retraining, which dictionaries read from disk cannot do." if ceiling is None
     else (
    f"Against a second seed of the same size, {ceiling.same_size[ab_mid]:.1%} of the {ab_mid}-feature dictionary's "
    f"features are shared (MCS above the null cutoff for that size), and {ceiling.same_size[large]:.1%} of the "
    f"{large}-feature one's; across sizes, {ceiling.across_sizes[ab_mid]:.1%} of the {ab_mid} features have a "
    f"match in the {large}-feature dictionary of the same seed."
), display=False)
if ceiling is None:
    unfound = ("Whether alive low features recur in another seed is not tested for dictionaries read from disk."
               if lead is not None and lead.dead_known else "")
elif ceiling.alive_low == 0:
    unfound = f"The {ab_mid}-feature dictionary has no alive low feature, so the third explanation has nothing to explain."
else:
    recur = ceiling.alive_low_recur > ceiling.alive_low / 2
    edge = ceiling.alive_low_scored > 0 and ceiling.alive_low_better > ceiling.alive_low_scored / 2
    unfound = (
        f"Of the {ceiling.alive_low} alive low features of the {ab_mid}-feature dictionary, {ceiling.alive_low_recur} "
        f"have a match (above the cutoff) in the {large}-feature dictionary of seed {second_seed}, and on the held-out "
        f"samples where they fire the {ab_mid}-feature dictionary reconstructs better relative to the {large}-feature "
        f"one than it does overall for {ceiling.alive_low_better} of the {ceiling.alive_low_scored} that fire on at "
        "least 20 samples. "
        + ("They recur in another seed and carry reconstruction the larger dictionary lacks: real features this seed's "
           "larger dictionary did not find." if recur and edge else
           "Most do not recur in another seed, but they carry reconstruction the larger dictionary lacks: structure "
           "the larger dictionary did not find, learned differently from seed to seed." if edge else
           "Most recur in another seed's larger dictionary, so their absence from this seed's is a matter of seed."
           if recur else
           "They neither recur in another seed nor carry reconstruction the larger dictionary lacks.")
    )
glue("unfound_sentence", unfound, display=False)

# %% [markdown]
# {glue:text}`ceiling_sentence` {glue:text}`unfound_sentence`
#
# ## Answer for this source
#
# The low mode is {glue:text}`verdict_dead`. {glue:text}`unfound_sentence`

# %% [markdown]
# ## Sparsity pressure and the activations' scale
#
# The L1 term $\alpha \lVert f\rVert_1$ acts against the activations' own scale: the same
# $\alpha$ is a stronger pressure on activations of small norm. The sweep below trains each
# source at several $\alpha$, with and without rescaling the activations by one constant so
# that their mean squared norm is $d$ (the convention of SAELens and dictionary_learning), at
# the sizes in `sweep_sizes` and the reference. {glue:text}`sweep_intro`

# %% tags=["nbval-ignore-output"]
swept = []  # (label, family, setting name)
for fam in (sources if retrainable and sweep else []):
    f_large = large if large in fam.saes else fam.sizes[-1]
    sw_sizes = sorted({s for s in sweep_sizes if s < f_large} | {f_large})
    for overrides in [{}, *sweep]:
        if low_mode.applies_to(overrides, fam.params["source"]):
            name = low_mode.ablation_name(overrides)
            swept.append((label(fam, name), low_mode.ablation_family(fam, overrides, sw_sizes), name))

# %%
sweep_rows = [low_mode.sweep_row(f, name, null_q=null_quantile, window=dead_window) for _, f, name in swept]
if sweep_rows:
    sw_small = small if small in sweep_rows[0].low_share else min(sweep_rows[0].low_share)
    display(plots.table(
        ["source", "α", "normalised (scale)", "init", "MCS ≥ 0.5 by size", f"{sw_small}: low share",
         "dead share by size", "post's numbers"],
        [[r.source, f"{r.l1_coeff:g}", f"yes ({r.activation_scale:.3g})" if r.normalized else "no", r.init,
          ", ".join(f"{s}: {v:.0%}" for s, v in r.high_post.items()), f"{r.low_share[sw_small]:.1%}",
          ", ".join(f"{s}: {v:.0%}" for s, v in r.dead_share.items()),
          "–" if r.post_numbers is None else "yes" if r.post_numbers else "no"] for r in sweep_rows],
    ))
    norms = ", ".join(f"{low_mode.source_label(f)} {low_mode.raw_activation_norm(f):.3g}" for f in sources)
    glue("sweep_intro", (
        f"The sweep has {len(sweep_rows)} rows: {len(sweep) + 1} settings (the first is the baseline) on "
        f"{len(sources)} source{'s' if len(sources) > 1 else ''}. The raw activations' mean squared norm is {norms}; "
        f"normalisation scales it to {family.d_in}. \"Post's numbers\" means more than 90% of the "
        f"{low_mode.POST_FIRST} features and fewer than 25% of the {low_mode.POST_MID} have MCS ≥ 0.5 against the "
        "reference, as in the post."
    ), display=False)
    glue("alpha_sentence", low_mode.alpha_sentence(sweep_rows, sw_small), display=False)
else:
    glue("sweep_intro", (
        "This build does not sweep α or the activations' scale (the `sweep` parameter is empty"
        + ("; dictionaries read from disk cannot be retrained" if not retrainable else "")
        + "); the `sweep` profile does (`make book PROFILE=sweep`, timed in the README)."
    ), display=False)
    glue("alpha_sentence", "This build does not sweep the L1 coefficient; the `sweep` profile does.", display=False)

# %% [markdown]
# {glue:text}`alpha_sentence`

# %% [markdown]
# ## One figure for the answer
#
# If the low mode is made of dead latents, then across every setting this book trains, the
# share of features below the null cutoff should equal the share of latents that are dead,
# point for point, and the low features that are alive should be few. Each point below is one
# dictionary size of one family (every source, ablation, seed and sweep setting of this
# build), against that family's largest dictionary; "dead" is read from the training record:
# no firing in the last {glue:text}`dead_window` steps.

# %% tags=["nbval-ignore-output"]
named = [(label(fam, "baseline"), fam) for fam in (sources if retrainable else [])]
for fam, fam_rows in ablated:
    f_ab_sizes = sorted(set(ablation_sizes) | {fam_rows[0].large})
    named += [(label(fam, r.name), low_mode.ablation_family(fam, r.overrides, f_ab_sizes)) for r in fam_rows[1:]]
if other is not None:
    named.append((label(family, f"seed={second_seed}"), other))
named += [(lbl, f) for lbl, f, _ in swept]

# %%
points = low_mode.summary_points(named, null_q=null_quantile, window=dead_window)  # empty for dictionaries
fit = low_mode.fit_points(points)
plots.glue_figure("fig_dead_vs_low", plots.dead_vs_low(points, fit))
display(plots.table(["setting", "size", "dead share", "low share", "alive and low"],
                    [[p.family, p.size, f"{p.dead_share:.1%}", f"{p.low_share:.1%}", f"{p.alive_low_share:.1%}"]
                     for p in points]))
glue("dead_window", dead_window, display=False)
glue("n_points", len(points), display=False)
glue("n_families", len({p.family for p in points}), display=False)
max_alive_low = max(points, key=lambda p: p.alive_low_share) if points else None
if not points:
    fit_sentence = "There is no training record for dictionaries read from disk, so this figure is empty."
elif fit is None:
    fit_sentence = (f"The {len(points)} points do not vary enough in dead share to fit a line: every setting has "
                    f"{points[0].dead_share:.1%} dead latents or thereabouts.")
else:
    on_diagonal = fit.slope_ci[0] <= 1 <= fit.slope_ci[1] and fit.intercept_ci[0] <= 0 <= fit.intercept_ci[1]
    fit_sentence = (
        f"Across {fit.n} points, low share = {fit.intercept:.3f} (95% interval {fit.intercept_ci[0]:.3f} to "
        f"{fit.intercept_ci[1]:.3f}) + {fit.slope:.2f} (95% interval {fit.slope_ci[0]:.2f} to {fit.slope_ci[1]:.2f}) "
        f"× dead share, Pearson r = {fit.pearson:.2f} ({fit.pearson_ci[0]:.2f} to {fit.pearson_ci[1]:.2f}). "
        + (("The points are consistent with the diagonal (slope 1 and intercept 0 inside the intervals)"
            + (f", but the intervals are wide: {fit.n} points do not pin the line down"
               if fit.slope_ci[1] - fit.slope_ci[0] > 0.5 else ""))
           if on_diagonal else
           "The points are not on the diagonal: slope 1 and intercept 0 are not both inside the intervals")
        + "."
    )
explained = max_alive_low is not None and max_alive_low.alive_low_share < 0.05
if max_alive_low is not None:
    by_source = {}
    for p in points:
        by_source.setdefault(p.source, []).append(p)
    per_source = "; ".join(
        f"{src}: low share {np.mean([p.low_share for p in ps]):.1%} and dead share "
        f"{np.mean([p.dead_share for p in ps]):.1%} on average over {len(ps)} points, at most "
        f"{max(p.alive_low_share for p in ps):.1%} alive and low"
        for src, ps in by_source.items())
    fit_sentence += (
        f" The largest share of alive low features is {max_alive_low.alive_low_share:.1%} ({max_alive_low.family}, "
        f"size {max_alive_low.size})"
        + (": dead latents account for the low mode in every setting here." if explained else
           f": the low mode is not only dead latents; what is left over is alive low features, up to "
           f"{max_alive_low.alive_low_share:.1%} of a dictionary.")
        + (f" Per source ({per_source})." if len(by_source) > 1 else "")
    )
glue("fit_sentence", fit_sentence, display=False)

# %% [markdown]
# ```{glue:figure} fig_dead_vs_low
# :name: fig-dead-vs-low
#
# Each of the {glue:text}`n_points` points is one dictionary size (labelled) of one of
# {glue:text}`n_families` families, against the largest size of that family: the share of its
# latents dead at the end of training (x) and the share of its features with MCS below the
# null cutoff (y). Colours are settings, markers sources. On the dashed diagonal, every low
# feature would be a dead latent and every dead latent low.
# ```
#
# {glue:text}`fit_sentence`
