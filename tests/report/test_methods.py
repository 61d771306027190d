"""The methods chapter's results (sae_core.report.methods)."""

import numpy as np
import pytest
from scipy import stats as sps

from sae_core import nulls
from sae_core.report import methods

GPT = {"config": {"n_layer": 6, "n_embd": 32, "n_head": 4, "n_inner": 128, "vocab_size": 4096, "context": 128},
       "train_config": {"steps": 600, "batch_size": 64}, "parameters": 345_000, "corpus_tokens": 2_000_000,
       "val_tokens": 100_000, "train_tokens": 4_915_200, "val_loss": 4.321, "evals": []}


def test_the_null_check_samples_the_compared_sizes_and_matches_an_independent_emd(family):
    check = methods.null_check(family, 16, 64, seed=0)
    assert (check.k, check.n, check.m) == (family.d_in, 16, 64) and check.sampled.shape == (16,)
    # W1 against the analytic null, by scipy on a fine sample of the null's quantile function
    u = (np.arange(200_000) + 0.5) / 200_000
    q = nulls.mcs_null_quantile(u, check.k, check.m)
    assert check.emd == pytest.approx(sps.wasserstein_distance(check.sampled, q), abs=2e-4)
    glues = check.glues()
    assert glues["N"] == 16 and glues["null_q99"] > glues["null_mean"] and "p" in glues["emd_p"]


def test_a_source_without_a_gpt_says_where_its_activations_come_from(family):
    text, evals = methods.lm_intro(family)
    assert "do not come from the replication GPT" in text and "PROFILE=replication" in text and evals == []


def test_the_gpt_sentence_states_its_shape_and_training_beside_the_post():
    text = methods.gpt_sentence(GPT, {"corpus": "data/x.txt.gz", "site": "blocks.2.mlp.hook_post"}, 128)
    assert "6 layers, residual width 32, 4 heads of 8 and MLP width 128" in text
    assert "345,000 parameters" in text and "4,915,200 training tokens (600 steps of 64 rows of 128 tokens)" in text
    assert "4.321 nats per token" in text and "(blocks.2.mlp.hook_post, width 128)" in text


def test_the_ladder_is_skipped_below_a_cap_of_two(family):
    assert methods.ladders(family, None, 0, 16, 32, 64, 2048) == {}
    assert "skips the check" in methods.ladder_intro(1200, 0, False)
    assert methods.ladder_intro(1200, 2, True) == "Each family of this build trains for 1,200 steps; the cap is 2,400."
