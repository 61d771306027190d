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
# **Question.** {cite:t}`mcs_post_2023`, in the June 2023 post
# [“Sparse Autoencoder features are bimodal”](https://www.lesswrong.com/posts/8BEJKhgFekvoNEtHv/research-update-sparse-autoencoder-features-are-bimodal), trained sparse autoencoders (SAEs) of
# growing width on the same language-model activations. Each feature of a small dictionary has
# a maximum cosine similarity (MCS) to the nearest feature of a larger one. The MCS had two
# peaks: one near 1 (features that recur) and one near 0.3, where random directions sit. The
# author left open what the low-MCS features are: latents that never trained, noise, or real
# features the larger dictionary missed.
#
# **Answer.** {glue:text}`05_low_mode.ipynb::verdict_low:s`
# {glue:text}`05_low_mode.ipynb::answer_lead:s`
#
# ```{glue} fig_dead_vs_low
# :doc: 05_low_mode.ipynb
# ```
#
# *The answer in one figure (chapter 5).* Each point is one dictionary size of one trained
# setting: the share of its latents whose decoder row is still within cosine 0.9 of its
# initialisation (x) against the share of its features with MCS below the random null's
# cutoff (y). On the dashed line every low feature would be such a latent.
#
# **What the active low features fire on.** {glue:text}`05_low_mode.ipynb::fire_proxy_sentence:s`
#
# **SAEs that keep their latents alive.** {glue:text}`05b_architectures.ipynb::arch_overall:s`
#
# **The post's claims, tested on this build** ([chapter 8](08_conclusions.ipynb) collects them):
#
# - Bimodality: {glue:text}`03_bimodality.ipynb::bimodal_verdict:s`
# - The low mode is what random dictionaries give: {glue:text}`04_random_nulls.ipynb::chance_verdict:s`
# - MCS against two larger dictionaries is correlated: {glue:text}`06_cross_dictionary.ipynb::cross_verdict:s`
# - Feature splitting: {glue:text}`07_feature_splitting.ipynb::splitting_verdict:s`
#
# **Caveats.** {glue:text}`08_conclusions.ipynb::differs:s`
# {glue:text}`02_methods.ipynb::convergence_short:s`


# %%
# %% tags=["parameters"]
profile = "notebook defaults"  # name of the profile that set these values
