"""Loss recovered by splicing an SAE into a language model, offline on tiny random models."""

import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sae_core.sae import SAEConfig, SparseAutoencoder
from sae_core.sources import evaluation
from sae_core.sources import nnsight_sites as lm_sites
from sae_core.sources.evaluation import (
    LossRecovered,
    ce_loss_recovered,
    ce_loss_recovered_many,
    next_token_ce,
    next_token_ce_from_hidden,
)
from sae_core.sources.gpt import GPTConfig, build_model, train_tokenizer
from sae_core.sources.lm_source import token_batches

WORDS = "the a cat dog sat ran on under mat tree big small red blue quickly slowly and then".split()
SITES = ["blocks.0.mlp.hook_post", "blocks.1.hook_resid_post", "blocks.0.hook_attn_out", "blocks.1.hook_mlp_out"]


def generated_text(n_docs: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 30))) for _ in range(n_docs)]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(generated_text(200), vocab_size=120)


def tiny_gpt2(vocab: int):
    return build_model(GPTConfig(n_layer=2, n_embd=32, n_head=4, n_inner=64, context=64), vocab, seed=0).eval()


def tiny_neox(vocab: int):
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(0)
    cfg = GPTNeoXConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=48, max_position_embeddings=64)
    return GPTNeoXForCausalLM(cfg).eval()


def loud(model):
    """Redraw the weights large (matrices N(0, 0.5^2), biases N(0, 0.1^2), norms' gains 1 + N(0, 0.1^2)):
    at the default init (std 0.02) a tiny random model predicts nearly uniformly and ablating a
    site barely moves the loss, so the fractions would be ratios of rounding errors."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
            elif "ln" in name or "norm" in name:
                p.copy_(1 + torch.randn(p.shape, generator=gen) * 0.1 if name.endswith("weight")
                        else torch.randn(p.shape, generator=gen) * 0.1)
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    return model


MODELS = {"gpt2": tiny_gpt2, "gpt_neox": tiny_neox}


@pytest.fixture(scope="module", params=sorted(MODELS))
def setup(request, tokenizer):
    """(HF model, nnsight wrapper, right-padded batches [(ids [B, T], mask [B, T])])."""
    model = loud(MODELS[request.param](len(tokenizer)))
    batches = list(token_batches(tokenizer, iter(generated_text(10, seed=1)), context=12, batch_size=4))
    assert any((mask == 0).any() for _, mask in batches), "the batches must contain padding"
    return model, lm_sites.wrap(model, tokenizer), batches


class Identity(nn.Module):
    """An "SAE" whose reconstruction is perfect: forward(x) = x."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Zeros(nn.Module):
    """An "SAE" that reconstructs nothing: forward(x) = 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


def site_width(model, lm, site, batches) -> int:
    return lm_sites.read_site(lm, site, *batches[0]).shape[-1]


def hand_loss(model, site: lm_sites.Site, replace, batches) -> float:
    """Token-weighted mean next-token CE with the site replaced by ``replace(x)`` through plain
    PyTorch hooks (no nnsight), padding masked by hand: the independent reference."""
    module = model.get_submodule(site.module_path)

    def pre_hook(mod, args):
        return (replace(args[0]), *args[1:])

    def hook(mod, args, output):
        if isinstance(output, tuple):
            return (replace(output[0]), *output[1:])
        return replace(output)

    handle = module.register_forward_pre_hook(pre_hook) if site.read == "input" else module.register_forward_hook(hook)
    total, count = 0.0, 0
    try:
        with torch.no_grad():
            for ids, mask in batches:
                logits = model(input_ids=ids, attention_mask=mask).logits  # [B, T, V]
                for b in range(ids.shape[0]):
                    n = int(mask[b].sum())  # right padding: the first n positions are real
                    ce = F.cross_entropy(logits[b, : n - 1], ids[b, 1:n], reduction="sum")
                    total, count = total + float(ce), count + n - 1
    finally:
        handle.remove()
    return total / count


@pytest.mark.parametrize("site_name", SITES)
def test_identity_recovers_everything_and_zeros_nothing(setup, site_name):
    model, lm, batches = setup
    site = lm_sites.resolve_site(model, site_name)
    ident = ce_loss_recovered(lm, site, Identity(), iter(batches))
    assert isinstance(ident, LossRecovered)
    # a random model may even do better zero-ablated; what matters is a denominator far from 0
    assert abs(ident.zero - ident.clean) > 1e-2
    assert ident.sae == pytest.approx(ident.clean, abs=1e-6)
    assert ident.recovered == pytest.approx(1.0, abs=1e-5)
    zeros = ce_loss_recovered(lm, site, Zeros(), iter(batches))
    assert zeros.sae == zeros.zero and zeros.recovered == 0.0
    assert (zeros.clean, zeros.zero, zeros.n_tokens) == (ident.clean, ident.zero, ident.n_tokens)
    # scale: sae(c x) / c of the identity is still x
    assert ce_loss_recovered(lm, site, Identity(), iter(batches), scale=37.0).recovered == pytest.approx(1.0, abs=1e-5)


def test_many_saes_share_the_clean_and_zero_runs_and_equal_one_at_a_time(setup):
    model, lm, batches = setup
    site = lm_sites.resolve_site(model, "blocks.1.hook_resid_post")
    saes = {"identity": Identity(), "zeros": Zeros()}
    many = ce_loss_recovered_many(lm, site, saes, iter(batches), scale=3.0)
    for key, sae in saes.items():
        alone = ce_loss_recovered(lm, site, sae, iter(batches), scale=3.0)
        assert many[key] == alone
    assert many["identity"].recovered != many["zeros"].recovered


def test_clean_loss_equals_a_plain_forward_per_unpadded_row(setup):
    """L_clean against each row run alone, without padding or mask, and CE computed by hand."""
    model, lm, batches = setup
    site = lm_sites.resolve_site(model, "blocks.1.hook_resid_post")
    got = ce_loss_recovered(lm, site, Identity(), iter(batches))
    total, count = 0.0, 0
    with torch.no_grad():
        for ids, mask in batches:
            for row, m in zip(ids, mask, strict=True):
                real = row[: int(m.sum())]  # [n]
                logp = torch.log_softmax(model(input_ids=real[None]).logits[0], dim=-1)  # [n, V]
                total -= float(logp[torch.arange(len(real) - 1), real[1:]].sum())
                count += len(real) - 1
    assert got.n_tokens == count == sum(int(m.sum()) - m.shape[0] for _, m in batches)
    assert got.clean == pytest.approx(total / count, abs=1e-5)


def test_padding_content_does_not_count(setup):
    model, lm, batches = setup
    site = lm_sites.resolve_site(model, "blocks.0.mlp.hook_post")
    sae = SparseAutoencoder(SAEConfig(d_in=site_width(model, lm, site, batches), d_sae=96, seed=2))
    gen = torch.Generator().manual_seed(0)
    scrambled = [(torch.where(m.bool(), ids, torch.randint(0, 100, ids.shape, generator=gen)), m)
                 for ids, m in batches]
    assert any(not torch.equal(a[0], b[0]) for a, b in zip(batches, scrambled, strict=True))
    a = ce_loss_recovered(lm, site, sae, iter(batches))
    b = ce_loss_recovered(lm, site, sae, iter(scrambled))
    assert a.n_tokens == b.n_tokens
    for field in ("clean", "sae", "zero", "recovered"):
        assert getattr(a, field) == pytest.approx(getattr(b, field), abs=1e-6), field


@pytest.mark.parametrize("site_name", ["blocks.0.mlp.hook_post", "blocks.1.hook_resid_post", "blocks.0.hook_attn_out"])
@pytest.mark.parametrize("scale", [1.0, 6.5])
def test_splice_matches_a_plain_pytorch_hook(setup, site_name, scale):
    """A real SAE spliced through nnsight equals the same splice through a PyTorch hook, sae(c x)/c included."""
    model, lm, batches = setup
    site = lm_sites.resolve_site(model, site_name)
    width = site_width(model, lm, site, batches)
    sae = SparseAutoencoder(SAEConfig(d_in=width, d_sae=4 * width, seed=1, activation="topk", k=8))
    with torch.no_grad():
        sae.b_enc.fill_(0.05)  # not homogeneous in x, so the scale matters
    got = ce_loss_recovered(lm, site, sae, iter(batches), scale=scale)

    def splice(x):  # [B, T, d] -> [B, T, d]
        return (sae(scale * x.reshape(-1, width)) / scale).view(x.shape)

    assert got.sae == pytest.approx(hand_loss(model, site, splice, batches), abs=1e-5)
    assert got.zero == pytest.approx(hand_loss(model, site, torch.zeros_like, batches), abs=1e-5)
    assert got.clean == pytest.approx(hand_loss(model, site, lambda x: x, batches), abs=1e-5)
    assert got.recovered == pytest.approx((got.zero - got.sae) / (got.zero - got.clean), abs=1e-12)
    assert got.sae != pytest.approx(got.clean, abs=1e-4)  # the random SAE does change the loss
    if scale != 1.0:
        unscaled = ce_loss_recovered(lm, site, sae, iter(batches))
        assert unscaled.sae != pytest.approx(got.sae, abs=1e-6)


def test_batches_are_pooled_token_weighted(setup):
    model, lm, batches = setup
    site = lm_sites.resolve_site(model, "blocks.0.mlp.hook_post")
    sae = SparseAutoencoder(SAEConfig(d_in=site_width(model, lm, site, batches), d_sae=64, seed=3))
    parts = [ce_loss_recovered(lm, site, sae, iter([b])) for b in batches[:2]]
    both = ce_loss_recovered(lm, site, sae, iter(batches), max_batches=2)
    assert both.n_tokens == sum(p.n_tokens for p in parts)
    for field in ("clean", "sae", "zero"):
        pooled = sum(getattr(p, field) * p.n_tokens for p in parts) / both.n_tokens
        assert getattr(both, field) == pytest.approx(pooled, abs=1e-6), field


def test_width_mismatch_and_bad_arguments_fail_clearly(setup):
    model, lm, batches = setup
    site = lm_sites.resolve_site(model, "blocks.0.mlp.hook_post")
    width = site_width(model, lm, site, batches)
    wrong = SparseAutoencoder(SAEConfig(d_in=width + 3, d_sae=16))
    with pytest.raises(ValueError, match=rf"d_in={width + 3}.*blocks\.0\.mlp\.hook_post.*width {width}"):
        ce_loss_recovered(lm, site, wrong, iter(batches))

    def truncating(x):  # no declared width, returns the wrong shape
        return x[:, :-1]

    with pytest.raises(ValueError, match="must have the input's shape"):
        ce_loss_recovered(lm, site, truncating, iter(batches))
    for scale in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="scale"):
            ce_loss_recovered(lm, site, Identity(), iter(batches), scale=scale)
    with pytest.raises(ValueError, match="no predicted positions"):
        ce_loss_recovered(lm, site, Identity(), iter([]))
    model.train()
    try:
        with pytest.raises(ValueError, match="training mode"):
            ce_loss_recovered(lm, site, Identity(), iter(batches))
    finally:
        model.eval()


def test_next_token_ce_masks_left_and_right_padding():
    """Positions count only when the position and its target are both real tokens."""
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 7, generator=gen)  # [B, T, V]
    ids = torch.randint(0, 7, (2, 5), generator=gen)  # [B, T]
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 1, 1, 1]])  # right, left padding
    total, n = next_token_ce(logits, ids, mask)
    logp = torch.log_softmax(logits, dim=-1)
    pairs = [(0, 0), (0, 1), (1, 2), (1, 3)]  # (b, t) scored against ids[b, t + 1]
    assert n == len(pairs)
    assert total == pytest.approx(-sum(float(logp[b, t, ids[b, t + 1]]) for b, t in pairs), abs=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_next_token_ce_equals_torch_cross_entropy(dtype):
    """logsumexp - z_target over a view of the logits is F.cross_entropy on the float32 copy, large logits included."""
    gen = torch.Generator().manual_seed(1)
    logits = (40 * torch.randn(3, 9, 50, generator=gen)).to(dtype)  # [B, T, V]
    ids = torch.randint(0, 50, (3, 9), generator=gen)
    total, n = next_token_ce(logits, ids, torch.ones(3, 9, dtype=torch.long))
    reference = torch.nn.functional.cross_entropy(logits[:, :-1].float().reshape(-1, 50), ids[:, 1:].reshape(-1),
                                                  reduction="sum")
    assert n == 3 * 8
    assert total == pytest.approx(float(reference), rel=1e-6)


def test_loss_from_hidden_states_equals_the_loss_from_logits_with_padding_and_bias(monkeypatch):
    """Scoring a linear head's rows in chunks is next_token_ce of the formed logits: left and right padding,
    a bias, chunks of one row, of a number that does not divide the rows, and of more than all of them."""
    from sae_core.sources import gpt

    gen = torch.Generator().manual_seed(2)
    head = nn.Linear(6, 300)
    with torch.no_grad():
        head.weight.mul_(8)  # logits of scale ~20: logsumexp must not overflow or lose the target
    hidden = torch.randn(3, 11, 6, generator=gen)  # [B, T, d]
    ids = torch.randint(0, 300, (3, 11), generator=gen)
    mask = torch.ones(3, 11, dtype=torch.long)
    mask[0, 8:] = 0  # right padding
    mask[2, :3] = 0  # left padding
    want = next_token_ce(head(hidden).detach(), ids, mask)
    for rows in (1, 7, 4096):
        monkeypatch.setattr(gpt, "chunk_rows", lambda vocab, device, rows=rows: rows)
        total, n = next_token_ce_from_hidden(hidden, head, ids, mask)
        assert n == want[1] == 7 + 10 + 7  # pairs of consecutive real tokens per row
        assert total == pytest.approx(want[0], rel=1e-6)


def test_fused_scoring_is_taken_and_equals_the_full_logits(setup, monkeypatch):
    """Both tiny models (GPT-2, GPT-NeoX) have a linear head: every run scores the final hidden states, and
    the result equals the full-logits reference."""
    model, lm, batches = setup
    site = lm_sites.resolve_site(model, "blocks.0.mlp.hook_post")
    sae = SparseAutoencoder(SAEConfig(d_in=site_width(model, lm, site, batches), d_sae=64, seed=3))
    calls = []
    real = evaluation.next_token_ce_from_hidden
    monkeypatch.setattr(evaluation, "next_token_ce_from_hidden", lambda *a: calls.append(1) or real(*a))
    fused = ce_loss_recovered(lm, site, sae, iter(batches))
    assert len(calls) == 3 * len(batches)  # clean, zero, SAE per batch
    full = ce_loss_recovered_many(lm, site, {0: sae}, iter(batches), fused=False)[0]
    assert len(calls) == 3 * len(batches)
    for field in ("clean", "sae", "zero", "recovered"):
        assert getattr(fused, field) == pytest.approx(getattr(full, field), abs=1e-5), field


def test_logits_changed_after_the_head_fall_back_to_the_full_logits(setup):
    """A model that scales its logits after the linear head (a hook here; logit soft-capping in some models)
    must not be scored from the hidden states: the last-position check sees it and every run uses the logits."""
    model, lm, batches = setup
    site = lm_sites.resolve_site(model, "blocks.1.hook_resid_post")
    handle = model.get_output_embeddings().register_forward_hook(lambda mod, args, out: 2.0 * out)
    try:
        got = ce_loss_recovered(lm, site, Identity(), iter(batches))
        assert got.clean == pytest.approx(hand_loss(model, site, lambda x: x, batches), abs=1e-5)
    finally:
        handle.remove()
    plain = ce_loss_recovered(lm, site, Identity(), iter(batches))
    assert abs(plain.clean - got.clean) > 1e-3  # the hook did change the loss


def test_evaluate_saes_on_the_replication_gpt(tmp_path, monkeypatch):
    """The report's entry point: the cached replication GPT, its site, and the corpus batches."""
    from sae_core.sources.evaluation import evaluate_saes
    from sae_core.sources.lm_source import LMSourceConfig, replication_gpt

    monkeypatch.setenv("SAE_REPORT_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    words = ["the", "cat", "sat", "on", "a", "mat", "dog", "ran", "to", "park", "and", "saw", "bird"]
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(" ".join(rng.choice(words, 12)) for _ in range(200)))
    lm_params = {"corpus": str(corpus), "context": 16, "gpt_steps": 10, "gpt_batch_size": 4, "vocab_size": 120,
                 "batch_size": 4}
    replication_gpt(LMSourceConfig(**lm_params), tmp_path / "cache", progress=False)

    class Identity(torch.nn.Module):
        def forward(self, x):
            return x

    class Zeros(torch.nn.Module):
        def forward(self, x):
            return torch.zeros_like(x)

    result = evaluate_saes(lm_params, {1: Identity(), 2: Zeros()}, n_batches=2)
    assert abs(result[1].recovered - 1) < 1e-5 and abs(result[1].sae - result[1].clean) < 1e-6
    assert abs(result[2].recovered) < 1e-5
    assert result[1].n_tokens == result[2].n_tokens > 0  # the same padded rows, each counted once
