"""The methods chapter's results: the check of the analytic null against sampling, the
language model's description, and the training-length ladders of each source."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from sae_core import nulls, stats
from sae_core.report import plots, training_length
from sae_core.report.analysis import compared_pair
from sae_core.report.pipeline import Family, companion_family
from sae_core.similarity import sampled_null_mcs

N_MC_NULL = 200  # samples of N values drawn from the formula, for the EMD expected from sampling alone


@dataclass
class NullCheck:
    """N random Gaussian features against M others in K dimensions, set against the formula."""

    k: int
    n: int
    m: int
    sampled: np.ndarray  # [N] sampled MCS values
    emd: float  # W1 between the sample and the analytic null
    chance: stats.TruncatedNullTest  # the EMD that sampling alone gives at this size

    def glues(self) -> dict[str, Any]:
        return {"K": self.k, "M": self.m, "N": self.n, "null_mean": nulls.mcs_null_mean(self.k, self.m),
                "null_q99": stats.null_cutoff(self.k, self.m, 0.99), "sampled_mean": float(self.sampled.mean()),
                "null_emd": self.emd, "emd_expected": self.chance.expected, "emd_spread": self.chance.spread,
                "emd_p": self.chance.p_text, "null_mode": nulls.mcs_null_mode(self.k, self.m)}

    def figure(self):
        return plots.overlaid_histograms({f"random {self.n} vs {self.m}": self.sampled},
                                         f"Random dictionaries, K = {self.k}", null=(self.k, self.m))


def null_check(family: Family, small_size: int, large_size: int, seed: int) -> NullCheck:
    """Sample the MCS of random dictionaries at the family's dimension and compared sizes."""
    k = family.d_in
    n, m = compared_pair(family, small_size, large_size)
    sampled = sampled_null_mcs(n, m, k, seed=seed).numpy()
    chance = stats.truncated_null_test(sampled, k, m, 1.0, n_mc=N_MC_NULL, seed=seed)  # cutoff 1: the whole null
    return NullCheck(k, n, m, sampled, stats.wasserstein1_to_null(sampled, k, m), chance)


def lm_intro(family: Family) -> tuple[str, list]:
    """The paragraph that describes the replication GPT, and its evaluation curve (empty when the
    activations do not come from a GPT trained here)."""
    if "lm" not in family.params:
        return ("This build's activations do not come from the replication GPT trained here; the post's own "
                "setting runs with `make book PROFILE=replication` (see the README).", [])
    from sae_core.sources.lm_source import gpt_report

    gpt = gpt_report(family.params["lm"])
    if gpt is None:
        return ("This build's activations do not come from the replication GPT trained here (they come from a hub "
                "or local model, described in the introduction).", [])
    return gpt_sentence(gpt, family.params["lm"], family.d_in), gpt["evals"]


def gpt_sentence(gpt: Mapping[str, Any], lm: Mapping[str, Any], d_in: int) -> str:
    """The replication GPT in a paragraph, beside the post's model."""
    c, t = gpt["config"], gpt["train_config"]
    return (
        f"The activations come from the replication model trained here on {lm['corpus']}. It has "
        f"{c['n_layer']} layers, residual width {c['n_embd']}, {c['n_head']} heads of {c['n_embd'] // c['n_head']} "
        f"and MLP width {c['n_inner']} (nanoGPT's block): {gpt['parameters']:,} parameters. Its byte-level BPE "
        f"tokenizer has {c['vocab_size']:,} tokens and was trained on the same corpus ({gpt['corpus_tokens']:,} "
        f"tokens, {gpt['val_tokens']:,} of them kept for the model's validation loss). The model saw "
        f"{gpt['train_tokens']:,} training tokens "
        f"({t['steps']} steps of {t['batch_size']} rows of {c['context']} tokens). It reached a validation loss of "
        f"{gpt['val_loss']:.3f} nats per token. The post's model had the same shape. It was trained for about 9 "
        "hours on 4 RTX 3090s on OpenWebText with the GPT-2 tokenizer (50,257 tokens), to a loss of 5.13. Losses "
        "under different tokenizers are not comparable token for token, and the post does not state how many "
        f"tokens its model saw. The SAEs read the hidden layer of the MLP in block 2 ({lm['site']}, width {d_in}), "
        "as the post did."
    )


def ladders(family: Family, ground_truth: Mapping[str, Any] | None, cap_factor: int, small_size: int, mid_size: int,
            large_size: int, n_heldout: int, null_q: float = 0.99) -> dict[str, training_length.Settling]:
    """The stopping rule's ladder for each source of the build ({} when the check is off, or the
    dictionaries were read from disk and cannot be trained further)."""
    if cap_factor < 2 or family.params["source"] == "dictionaries":
        return {}
    labelled = [("language model" if family.params["source"] == "lm" else family.params["source"], family)]
    truth = companion_family(family, ground_truth)
    if truth is not None and truth is not family:
        labelled.append(("ground truth (synthetic)", truth))
    return {label: training_length.ladder(fam, cap_factor, small_size, mid_size, large_size, n_heldout,
                                          null_q=null_q) for label, fam in labelled}


def ladder_intro(n_steps: int, cap_factor: int, checked: bool) -> str:
    if not checked:
        return ("This build skips the check (`convergence_factor` is 0, or the dictionaries were read from disk and "
                "cannot be trained further).")
    return f"Each family of this build trains for {n_steps:,} steps; the cap is {n_steps * cap_factor:,}."
