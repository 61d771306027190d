"""The fused training path of the replication GPT computes the reference's mathematics.

The reference is the Hugging Face forward's ``.loss`` with the for-loop AdamW
(``GPTTrainConfig(fused=False)``); the fused path (the default) reorders float32 sums: the
loss mean and the gradients over groups of rows (one per CPU thread) and over chunks of
rows, the head's gradient as a sum of chunk products, and the AdamW update in one kernel.
So the two agree to rounding, not bit for bit; the tolerances below say how close, and why.
"""


import pytest
import torch
import torch.nn.functional as F
from generated_corpus import generated_text

from sae_core.sources.gpt import (
    GPTConfig,
    GPTTrainConfig,
    LinearCrossEntropy,
    build_model,
    load_gpt,
    next_token_loss,
    train_gpt,
)


@pytest.mark.parametrize("scale", [1.0, 40.0], ids=["ordinary", "huge-logits"])
def test_linear_cross_entropy_matches_autograd(scale):
    """Loss and both gradients equal F.cross_entropy(h @ W.T, y)'s, with a ragged last chunk.

    float64, so that the only differences are rounding at 1e-16: a wrong formula, target or
    normalization would be off by far more than the 1e-10 allowed. ``scale`` 40 gives logits
    of several hundred, which overflow a naive exp in float32 and float64 alike."""
    gen = torch.Generator().manual_seed(0)
    h = (scale * torch.randn(1000, 16, generator=gen, dtype=torch.float64)).requires_grad_()
    w = torch.randn(300, 16, generator=gen, dtype=torch.float64).requires_grad_()
    y = torch.randint(0, 300, (1000,), generator=gen)
    want = F.cross_entropy(h @ w.t(), y)
    want_h, want_w = torch.autograd.grad(want, (h, w))
    got = LinearCrossEntropy.apply(h, w, y, 96)  # 10 chunks of 96 rows and one of 40
    got_h, got_w = torch.autograd.grad(3.0 * got, (h, w))  # an upstream gradient other than 1
    assert torch.isfinite(got)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=0)
    torch.testing.assert_close(got_h, 3.0 * want_h, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(got_w, 3.0 * want_w, rtol=1e-10, atol=1e-14)
    with torch.no_grad():  # the evaluation path: the same loss, no gradient work
        torch.testing.assert_close(LinearCrossEntropy.apply(h, w, y, 96), want, rtol=1e-10, atol=0)


def test_linear_cross_entropy_keeps_precision_for_improbable_targets():
    """float32 rows whose target has probability below the smallest normal float (loss > 87
    nats): their loss comes from logsumexp - z, not -log of a subnormal. Checked against
    float64 to 1e-6 relative, a few float32 steps of a loss this size."""
    gen = torch.Generator().manual_seed(1)
    h = 12.0 * torch.randn(500, 16, generator=gen)
    w = torch.randn(200, 16, generator=gen)
    y = torch.randint(0, 200, (500,), generator=gen)
    per_row = F.cross_entropy(h.double() @ w.double().t(), y, reduction="none")
    assert (per_row > 90).sum() > 50 and (per_row < 80).sum() > 50  # both branches run, in the same chunks
    got = LinearCrossEntropy.apply(h, w, y, 64)
    torch.testing.assert_close(got.double(), per_row.mean(), rtol=1e-6, atol=0)


def test_fused_loss_and_gradients_equal_the_hugging_face_loss():
    """One batch at the replication's shapes: the fused loss is HF's ``labels=ids`` loss.

    float32 at vocabulary 4096 and 64 × 127 predicted tokens: the reference sums each
    softmax normalizer and the loss mean in another order, so the losses may differ by a few
    float32 steps (2^-21 ≈ 4.8e-7 near a loss of 8.3) and each gradient by ~1e-6 of its
    largest entry; 1e-5 relative bounds both with a margin."""
    model = build_model(GPTConfig(), 4096, seed=0)
    ids = torch.randint(0, 4096, (64, 128), generator=torch.Generator().manual_seed(1))
    losses, grads = [], []
    for fused in (False, True):
        model.zero_grad(set_to_none=True)
        loss = next_token_loss(model, ids, fused)
        loss.backward()
        losses.append(loss.detach())
        grads.append({name: p.grad.clone() for name, p in model.named_parameters()})
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-6, atol=0)
    for name, want in grads[0].items():
        torch.testing.assert_close(grads[1][name], want, rtol=0, atol=1e-5 * float(want.abs().max()), msg=name)


def test_fused_path_keeps_the_loss_curve(tmp_path):
    """40 steps of the 6-layer GPT, same seed and batches, reference vs fused: every train
    and validation loss agrees to 1e-5 nats, and every weight to 1e-4.

    Why 1e-5: float32 spacing near these losses (2.8 to 5.6 nats) is 2.4e-7 to 4.8e-7, and
    the two paths round differently (see the module docstring); those differences are fed
    back through 40 AdamW steps. Measured on the development machine (2 threads, so the
    fused path splits each batch in two groups): losses at most 7.2e-7 apart (one or two
    float32 steps), weights 4.8e-6. 1e-5 (about 20 steps) leaves room for other CPUs, thread
    counts and BLAS builds and is still 10^5 times smaller than the more than 1.5 nats the
    loss falls, so a path that trained a different model, even by one target shifted, would
    fail."""
    docs = generated_text(400, seed=7)
    cfg = GPTConfig(context=32, vocab_size=150)
    reports = {}
    for fused in (False, True):
        tcfg = GPTTrainConfig(steps=40, batch_size=16, eval_every=5, eval_batches=4, warmup=5, progress=False,
                              fused=fused)
        reports[fused] = train_gpt(docs, tmp_path / str(fused), cfg, tcfg)
    ref, new = reports[False]["evals"], reports[True]["evals"]
    assert [e["step"] for e in new] == [e["step"] for e in ref] == list(range(5, 41, 5))
    assert ref[0]["val_loss"] - ref[-1]["val_loss"] > 1.5  # the curve being compared does fall
    for a, b in zip(ref, new, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=0, abs=1e-5), a["step"]
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=0, abs=1e-5), a["step"]
    model_ref, _ = load_gpt(tmp_path / "False")
    model_new, _ = load_gpt(tmp_path / "True")
    for name, want in model_ref.state_dict().items():
        torch.testing.assert_close(model_new.state_dict()[name], want, rtol=0, atol=1e-4, msg=name)
