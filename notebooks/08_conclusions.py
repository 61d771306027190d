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
# # Conclusions
#
# Each claim of the post, tested on this build's data. The verdicts below are computed from
# the numbers next to them; none is written by hand.

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
null_quantile = 0.99  # low means below this quantile of the null for K (d_in) and M (the reference)
n_random_sets = 4
n_mc = 1000  # Monte Carlo draws for the test against the truncated null
ground_truth = {}  # a source with true features beside a language model, e.g. {"source": "synthetic"}

# %%
from myst_nb import glue

from sae_core import stats
from sae_core.report import analysis, pipeline
from sae_core.sources.lm_source import gpt_report

# %% tags=["nbval-ignore-output"]
family = pipeline.ensure_family(pipeline.family_params(globals()))

# %%
small, large = analysis.compared_pair(family, small_size, large_size)
values = analysis.smaller_mcs(family, large)
cut = stats.null_cutoff(family.d_in, large, null_quantile)
shape = stats.bimodality(values[small])
table = analysis.bimodality_table(family, large, null_quantile, values=values)
bimodal_sizes = [r.size for r in table if r.bimodal]
glue("pair", f"{small} vs {large}", display=False)
glue("large", large, display=False)
if shape.bimodal:
    bimodal = (f"Reproduced for {small} vs {large}: modes at {shape.low_mode:.2f} and {shape.high_mode:.2f}, "
               f"{shape.low_mass:.1%} of the features below 0.5, the valley at "
               f"{shape.valley / min(shape.low_peak, shape.high_peak):.2f} of the smaller peak.")
else:
    bimodal = (f"Not reproduced for {small} vs {large}: {shape.low_mass:.1%} of the features lie below 0.5, "
               "too few or without a valley to make a second mode.")
bimodal += (f" Against {large}, the bimodal sizes are {', '.join(map(str, bimodal_sizes))}." if bimodal_sizes
            else f" No smaller size is bimodal against {large}.")
glue("bimodal", bimodal, display=False)
lead = analysis.low_mode_size(family, small, large, cut)
cmp = analysis.null_comparison(family, lead, large, cut, n_random=n_random_sets, n_mc=n_mc, seed=seed)
if cmp.test is None:
    chance = f"Not testable: {cmp.verdict}."
else:
    chance = (f"{'Reproduced' if cmp.consistent else 'Not reproduced'} for {lead} vs {large} (below the null "
              f"cutoff {cut:.3f}): the low part is {cmp.verdict}.")
glue("chance", chance, display=False)
split_rows = analysis.splitting_table(family, large, null_quantile, values=values)
first, last = split_rows[0], split_rows[-1]
count_rises = last["high_null"] > first["high_null"]
share_falls = last["frac_high_null"] < first["frac_high_null"]
splitting = (
    f"{'Reproduced' if count_rises and share_falls else 'Not reproduced'}: from {first['size']} to "
    f"{last['size']} features the number of high-MCS features (null cutoff) goes from {first['high_null']} to "
    f"{last['high_null']} ({'rises' if count_rises else 'does not rise'}) while their share goes from "
    f"{first['frac_high_null']:.1%} to {last['frac_high_null']:.1%} ({'falls' if share_falls else 'does not fall'}); "
    f"with the post's 0.5, {first['frac_high_post']:.1%} to {last['frac_high_post']:.1%}."
)
glue("splitting", splitting, display=False)
truth_family = pipeline.companion_family(family, ground_truth)
truth = None
if truth_family is not None:
    t_small, t_large = analysis.compared_pair(truth_family, small_size, large_size)
    t_cut = stats.null_cutoff(truth_family.d_in, t_large, null_quantile)
    t_small = analysis.low_mode_size(truth_family, t_small, t_large, t_cut)  # a size with a low part, if any
    truth = analysis.ground_truth(truth_family, t_small, t_large, t_cut,
                                  values=analysis.mcs_values(truth_family, t_small, t_large))
if truth is not None and truth.high_matching_true is not None and truth.low_matching_true is not None:
    truth_sentence = (
        f"On the synthetic source, {truth.high_matching_true:.1%} of the high-MCS features of the {t_small}-feature "
        f"dictionary (against {t_large}) lie within cosine {truth.true_cos_threshold} of a true feature, against "
        f"{truth.low_matching_true:.1%} of the {truth.n_low} low-MCS ones."
    )
elif truth is not None:
    truth_sentence = f"On the synthetic source, every feature of the {t_small}-feature dictionary is on one side of the cutoff."
else:
    truth_sentence = "A language-model source has no true features to check high-MCS features against."
glue("truth_sentence", truth_sentence, display=False)
samples = f"{family.params.get('n_steps', 0) * family.params.get('batch_size', 0):,}"
if family.params["source"] == "lm" and gpt_report(family.params["lm"]) is not None:
    gpt = gpt_report(family.params["lm"])
    differs = (
        f"The post's model was a 6-layer nanoGPT trained for about 9 hours on 4 RTX 3090s on OpenWebText with the GPT-2 "
        f"tokenizer, to a loss of 5.13. This build's has the same shape but is trained here on "
        f"{family.params['lm']['corpus']} ({gpt['corpus_tokens']:,} tokens under its own {gpt['config']['vocab_size']:,}"
        f"-token tokenizer) for {gpt['train_config']['steps']:,} steps, to a validation loss of {gpt['val_loss']:.2f} "
        f"(not comparable across tokenizers). Its dictionaries saw {samples} activations each "
        f"({family.params['n_steps']:,} steps of {family.params['batch_size']}); the methods chapter checks the "
        "findings against twice that. The `replication` profile trains on web text (it needs the network), and the "
        "`pythia` profile reads Pythia-70m-deduped through nnsight (see the README for their cost)."
    )
else:
    differs = (
        "The post trained on activations of a 6-layer nanoGPT trained on web text; this build's source is stated in "
        "the [introduction](01_introduction.ipynb)"
        + (f", and its dictionaries saw {samples} activations each" if family.params["source"] != "dictionaries" else "")
        + ". The default profile trains the post's model shape on real text, and the `pythia` profile reads "
        "Pythia-70m-deduped through nnsight (see the README for their cost)."
    )
glue("differs", differs, display=False)

# %% [markdown]
# 1. **The MCS distribution is bimodal** — {glue:text}`bimodal`
# 2. **The low mode is what random dictionaries give** — {glue:text}`chance`
# 3. **Whether a feature's MCS against one larger dictionary predicts its MCS against
#    another** — {glue:text}`06_cross_dictionary.ipynb::cross_verdict:s`
# 4. **Feature splitting: more high-MCS features, a smaller share of them** —
#    {glue:text}`splitting`
#
# {glue:text}`truth_sentence`
#
# ## What the low mode is
#
# The post's open question — dead latents, noise, or features the larger dictionary did not
# find — has a measured answer (chapter 5): {glue:text}`05_low_mode.ipynb::verdict_low:s`
#
# {glue:text}`05_low_mode.ipynb::answer_sentences:s`
#
# {glue:text}`05_low_mode.ipynb::unfound_sentence:s`
# {glue:text}`05_low_mode.ipynb::ablation_sentence:s`
#
# Across every family this build trains: {glue:text}`05_low_mode.ipynb::fit_sentence:s`
#
# ## Sparsity pressure and the activations' scale
#
# {glue:text}`05_low_mode.ipynb::alpha_sentence:s`
#
# ## What differs from the post
#
# {glue:text}`differs`
