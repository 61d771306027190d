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
# # Max cosine similarity between SAE dictionaries: what the low mode is
#
# **Question.** In June 2023, a post {cite}`mcs_post_2023` trained sparse autoencoders (SAEs)
# of growing width on the same language-model activations. It found that each small
# dictionary's features fall into two groups by their maximum cosine similarity (MCS) to the
# nearest feature of a larger one: a peak near 1 (features that recur) and a peak near 0.3,
# where random directions would sit. It left open what the low-MCS features are: latents that
# never trained, noise, or real features the larger dictionary missed.
#
# **Answer.** {glue:text}`05_low_mode.ipynb::verdict_low:s`
#
# {glue:text}`05_low_mode.ipynb::answer_lead:s`
#
# **The post's claims, tested on this build** (chapter 8 gives the numbers):
#
# - Bimodality: {glue:text}`08_conclusions.ipynb::bimodal:s`
# - The low mode is what random dictionaries give: {glue:text}`08_conclusions.ipynb::chance:s`
# - MCS against two larger dictionaries is correlated: {glue:text}`06_cross_dictionary.ipynb::cross_verdict:s`
# - Feature splitting: {glue:text}`08_conclusions.ipynb::splitting:s`
#
# **Caveats.** {glue:text}`08_conclusions.ipynb::differs:s`
# {glue:text}`02_methods.ipynb::convergence_sentence:s`
#
# ```{glue} fig_dead_vs_low
# :doc: 05_low_mode.ipynb
# ```
#
# *The answer in one figure (chapter 5).* Each point is one dictionary size of one trained
# setting: the share of its latents that never fire or fire at ultralow density on held-out
# activations (x) against the share of its features with MCS below the random null's cutoff
# (y); the dashed line is where every low feature would be such a latent.

# %%
# %% tags=["parameters"]
profile = "notebook defaults"  # name of the profile that set these values
