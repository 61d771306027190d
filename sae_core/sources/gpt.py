"""The replication's small GPT, trained in-project on a text corpus.

Architecture of the original experiment (a nanoGPT): 6 layers, residual width 32,
4 heads of size 8, MLP width 128, GELU. It is built as a Hugging Face
``GPT2LMHeadModel`` (the same architecture as nanoGPT) so nnsight can wrap it and the
layer-2 MLP hidden state is ``blocks.2.mlp.hook_post`` (input of ``mlp.c_proj``).
The tokenizer is a byte-level BPE trained on the same corpus with ``tokenizers``.

Training: AdamW on random windows of the token stream; window positions of step ``s``
come from a generator seeded by ``(seed, s)``, so a resumed run repeats the batches
it would have seen. Checkpoints and the final model are safetensors + JSON.

Speed (``GPTTrainConfig.fused``, on by default; ``python -m benchmarks gpt`` measures it).
The reference path (``fused=False``) is the Hugging Face forward's ``.loss`` with the
for-loop AdamW. With a 4096-token vocabulary and a residual of 32, about two thirds of its
step went to the ``[tokens, vocab]`` logits of the LM head: their log-softmax, its backward
and the zero-filled gradient of ``nll_loss``, passes over 8192 × 4096 floats (128 MiB) each.
The fused path computes the same loss and gradients

- in row chunks whose logits stay in cache (:class:`LinearCrossEntropy`),
- on groups of the batch's rows side by side, one per CPU thread, each with single-threaded
  operations (:func:`fused_loss_and_grads`): every operation here is short, and splitting
  each over two OpenMP threads made the step wait at a barrier per operation,
- with torch's fused AdamW kernel.

Same model, batches and formulas; float32 sums are taken in another order, so losses agree
with the reference to rounding (``tests/sources/test_gpt.py`` states the tolerance). Tried
and left out: ``torch.compile`` of the transformer body (no faster on the 2-core CPU: the
time is in matmuls and the flash-attention kernel, which it does not change) and HF's eager
attention (slower than ``sdpa``, transformers 5's default, which is used).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm  # text bars: papermill streams them from the kernel to the terminal (make book)

from sae_core.device import resolve_device
from sae_core.io import atomic_dir, load_optimizer_tensors, optimizer_tensors, write_json_atomic

SPECIAL_TOKENS = ["<|endoftext|>", "<|pad|>"]


@dataclass(frozen=True)
class GPTConfig:
    n_layer: int = 6  # replication: 6 layers
    n_embd: int = 32  # residual width 32
    n_head: int = 4  # 4 heads of size 8
    n_inner: int = 128  # MLP width 128: the SAEs' d_in at blocks.2.mlp.hook_post
    context: int = 128  # positions
    vocab_size: int = 4096  # BPE vocabulary trained on the corpus


@dataclass(frozen=True)
class GPTTrainConfig:
    steps: int = 3000
    batch_size: int = 64  # windows of `context` tokens per step
    lr: float = 3e-3
    weight_decay: float = 0.1
    warmup: int = 100  # linear warm-up steps, then cosine decay to lr/10
    val_fraction: float = 0.05  # tail of the token stream held out for validation
    eval_every: int = 250
    eval_batches: int = 20
    checkpoint_every: int = 500
    seed: int = 0
    device: str = "auto"
    progress: bool = True
    fused: bool = True  # chunked head cross-entropy, row groups per thread, fused AdamW; False: HF .loss


def train_tokenizer(texts: Iterable[str], vocab_size: int):
    """Byte-level BPE trained on ``texts``, wrapped as a ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=SPECIAL_TOKENS[0], bos_token=SPECIAL_TOKENS[0],
                                   pad_token=SPECIAL_TOKENS[1])


def build_model(cfg: GPTConfig, vocab_size: int, seed: int = 0):
    from transformers import GPT2Config, GPT2LMHeadModel

    # sdpa (transformers 5's default, stated so it stays): torch's fused causal attention, on CPU its
    # flash kernel; HF's "eager" attention writes the [B, H, T, T] scores and is several times slower
    hf_cfg = GPT2Config(vocab_size=vocab_size, n_positions=cfg.context, n_embd=cfg.n_embd, n_layer=cfg.n_layer,
                        n_head=cfg.n_head, n_inner=cfg.n_inner, activation_function="gelu",
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, attn_implementation="sdpa")
    torch.manual_seed(seed)
    return GPT2LMHeadModel(hf_cfg)


def chunk_rows(vocab: int, device: torch.device) -> int:
    """Rows per chunk of :class:`LinearCrossEntropy`. On the CPU 2**19 logits (2 MiB of float32,
    128 rows at vocabulary 4096), so a chunk's logits stay in one core's L2 cache across the
    passes over them (whole training steps on the 2-core CPU: 128 rows fastest, 256 about 3 %
    slower, 64 and 1024 about 10 %). Elsewhere 2**24, to keep the number of kernel launches
    small."""
    return max(1, (2**19 if device.type == "cpu" else 2**24) // vocab)


class LinearCrossEntropy(torch.autograd.Function):
    r"""Mean cross-entropy of a bias-free linear head, with its gradients, in row chunks.

    For hidden rows :math:`h_i \in \mathbb{R}^d` (:math:`i < N`), head :math:`W \in
    \mathbb{R}^{V \times d}` and targets :math:`y_i`, with logits :math:`z_i = W h_i` and
    :math:`p_i = \operatorname{softmax}(z_i)`:

    .. math::
        L = \frac1N \sum_i -\log p_{i y_i}, \qquad
        \frac{\partial L}{\partial h_i} = \frac1N W^\top (p_i - e_{y_i}), \qquad
        \frac{\partial L}{\partial W} = \frac1N \sum_i (p_i - e_{y_i})\, h_i^\top.

    This is ``F.cross_entropy(h @ W.T, y)`` and its backward, but the logits of only ``chunk``
    rows exist at a time and the gradients are accumulated in the forward pass, so the
    ``[N, V]`` logits, their softmax and their gradient are never written to memory: the
    fused linear cross-entropy of Liger Kernel (Hsu et al. 2024, arXiv:2410.10989) and
    "Cut Your Losses" (Wijmans et al. 2024, arXiv:2411.09009), here in plain PyTorch ops.

    One softmax per chunk serves both the loss and the gradient. ``softmax`` subtracts the
    row maximum, so nothing overflows, and :math:`-\log p_{iy}` is as accurate as
    :math:`\operatorname{logsumexp}(z_i) - z_{iy}` while :math:`p_{iy}` is a normal float;
    a target below the smallest normal (a loss above 87 nats in float32) has its loss
    recomputed as ``logsumexp - z``, so no precision is lost there either.
    """

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int) -> torch.Tensor:
        n = hidden.shape[0]
        need_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        grad_h = torch.empty_like(hidden) if need_grad else None
        grad_w = torch.zeros_like(weight) if need_grad else None
        targets = targets[:, None]
        p_y = hidden.new_empty((n, 1))  # the targets' probabilities; the loss is taken from them after the loop
        minus_one = hidden.new_full((min(chunk, n), 1), -1.0)
        for i in range(0, n, chunk):
            h, y = hidden[i : i + chunk], targets[i : i + chunk]
            p = torch.softmax(h @ weight.t(), dim=1)  # [chunk, V]; the logits are freed here
            torch.gather(p, 1, y, out=p_y[i : i + chunk])
            if need_grad:
                grad_z = p.scatter_add_(1, y, minus_one[: len(y)])  # p - one-hot: N times dL/dz
                torch.mm(grad_z, weight, out=grad_h[i : i + chunk])
                grad_w.addmm_(grad_z.t(), h)
        nll = -p_y.log()
        low = (p_y < torch.finfo(p_y.dtype).tiny).squeeze(1)
        if low.any():  # -log of a subnormal probability would lose digits: logsumexp(z) - z_y instead
            z = hidden[low] @ weight.t()
            nll[low] = torch.logsumexp(z, 1, keepdim=True) - z.gather(1, targets[low])
        if need_grad:
            ctx.save_for_backward(grad_h, grad_w)
            ctx.n = n
        return nll.sum(dtype=torch.promote_types(nll.dtype, torch.float32)) / n  # at least float32 for the sum

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        grad_h, grad_w = ctx.saved_tensors
        scale = grad_out / ctx.n  # the 1/N of the mean, applied once to the [N, d] and [V, d] sums
        return grad_h * scale, grad_w * scale, None, None


def next_token_loss(model, ids: torch.Tensor, fused: bool = True) -> torch.Tensor:
    """Mean cross-entropy (nats/token) of predicting ``ids[:, t + 1]`` from ``ids[:, : t + 1]``
    for ``t < T - 1``: exactly what ``GPT2LMHeadModel(ids, labels=ids).loss`` defines.

    ``fused=False`` returns that Hugging Face loss itself (the reference); ``fused=True``
    runs the transformer body and :class:`LinearCrossEntropy` on its last hidden states.
    """
    if not fused:
        return model(ids, labels=ids.clone()).loss
    if getattr(model.lm_head, "bias", None) is not None:
        raise ValueError("the fused loss assumes a bias-free LM head, as GPT-2's")
    # use_cache=False: HF otherwise builds a key/value cache it never reads again (a copy of K and V per layer)
    hidden = model.transformer(ids, use_cache=False).last_hidden_state[:, :-1]
    hidden = hidden.reshape(-1, hidden.shape[-1])
    weight = model.lm_head.weight
    return LinearCrossEntropy.apply(hidden, weight, ids[:, 1:].reshape(-1), chunk_rows(weight.shape[0], ids.device))


# Each group also runs Python (HF forward, chunk loop: a few ms), one thread at a time under the GIL;
# with many cores, many small groups would queue there. 4 is a cap for such machines, not measured.
_MAX_GROUPS = 4
_pools: dict[int, ThreadPoolExecutor] = {}  # by worker count; threads live as long as the process


def _thread_pool(workers: int) -> ThreadPoolExecutor:
    if workers not in _pools:
        _pools[workers] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gpt-group")
    return _pools[workers]


def fused_loss_and_grads(model, ids: torch.Tensor, params: list[torch.Tensor] | None = None
                         ) -> tuple[torch.Tensor, list[torch.Tensor | None] | None]:
    r"""Fused next-token loss of the batch ``ids`` and, if ``params`` is given, its gradients
    with respect to them, the rows of the batch split into groups computed side by side on
    the CPU threads.

    With groups :math:`g` of :math:`N_g` predicted tokens each (:math:`N = \sum_g N_g`) and
    :math:`L_g` the mean loss of group :math:`g` (:func:`next_token_loss`, fused):

    .. math::
        L = \sum_g \frac{N_g}{N} L_g, \qquad
        \nabla_\theta L = \sum_g \nabla_\theta \Big(\frac{N_g}{N} L_g\Big),

    the batch mean and its gradient, summed in group order, so the result does not depend on
    which thread finishes first. Why groups: at this model's size (residual 32, 8192 tokens
    per step) every operation is short, so splitting each one over two OpenMP threads costs a
    barrier per operation, and on a shared CPU a barrier waits for whichever thread the
    kernel has preempted (measured: the fused step slower than the reference under load). One
    group per thread, each running single-threaded operations (``torch.set_num_threads``,
    restored afterwards), meets only once per step. On CUDA, or with one thread, one group.
    """
    threads = torch.get_num_threads()
    n_groups = 1 if ids.device.type != "cpu" else max(1, min(threads, ids.shape[0], _MAX_GROUPS))
    n_total = ids.shape[0] * (ids.shape[1] - 1)
    want_grads = params is not None

    def run(group: torch.Tensor, group_threads: int | None):
        if group_threads is not None:
            torch.set_num_threads(group_threads)  # this thread's OpenMP and MKL team size
        with torch.set_grad_enabled(want_grads):  # grad mode is per thread: set it in the worker too
            loss = next_token_loss(model, group, fused=True) * (group.shape[0] * (group.shape[1] - 1) / n_total)
            grads = torch.autograd.grad(loss, params, allow_unused=True) if want_grads else None
        return loss.detach(), grads

    if n_groups == 1:
        results = [run(ids, None)]
    else:
        groups = ids.tensor_split(n_groups)
        per_group = max(1, threads // n_groups)
        futures = [_thread_pool(n_groups - 1).submit(run, g, per_group) for g in groups[1:]]
        try:
            results = [run(groups[0], per_group), *(f.result() for f in futures)]
        finally:
            wait(futures)
            torch.set_num_threads(threads)
    loss = results[0][0]
    for other, _ in results[1:]:
        loss = loss + other
    if not want_grads:
        return loss, None
    grads = list(results[0][1])
    for _, more in results[1:]:
        grads = [a if b is None else b if a is None else a + b for a, b in zip(grads, more, strict=True)]
    return loss, grads


def encode_corpus(tokenizer, texts: Iterable[str]) -> np.ndarray:
    """All documents as one token stream, separated by the end-of-text token."""
    eos = tokenizer.eos_token_id
    ids: list[int] = []
    for text in texts:
        ids.extend(tokenizer(text)["input_ids"])
        ids.append(eos)
    return np.asarray(ids, dtype=np.int32)


def _windows(stream: np.ndarray, n: int, context: int, gen: torch.Generator) -> torch.Tensor:
    starts = torch.randint(0, len(stream) - context - 1, (n,), generator=gen).numpy()
    return torch.from_numpy(np.stack([stream[s : s + context + 1] for s in starts]).astype(np.int64))


@torch.no_grad()
def evaluate(model, stream: np.ndarray, cfg: GPTConfig, tcfg: GPTTrainConfig, device) -> float:
    """Mean cross-entropy (nats/token) on seeded windows of the validation stream."""
    model.eval()
    gen = torch.Generator().manual_seed(tcfg.seed + 12345)
    losses = []
    for _ in range(tcfg.eval_batches):
        w = _windows(stream, tcfg.batch_size, cfg.context, gen).to(device)
        ids = w[:, :-1]
        loss = fused_loss_and_grads(model, ids)[0] if tcfg.fused else next_token_loss(model, ids, fused=False)
        losses.append(float(loss))
    model.train()
    return float(np.mean(losses))


def _lr(step: int, tcfg: GPTTrainConfig) -> float:
    if step < tcfg.warmup:
        return tcfg.lr * (step + 1) / tcfg.warmup
    progress = (step - tcfg.warmup) / max(1, tcfg.steps - tcfg.warmup)
    return tcfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def make_optimizer(model, tcfg: GPTTrainConfig) -> torch.optim.AdamW:
    """AdamW, betas (0.9, 0.95); ``tcfg.fused`` picks torch's fused kernel (one pass over each
    parameter) over the default per-parameter for-loop: the same update rule."""
    return torch.optim.AdamW(model.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay, betas=(0.9, 0.95),
                             fused=tcfg.fused or None)


def train_step(model, opt: torch.optim.Optimizer, window: torch.Tensor, lr: float, fused: bool = True) -> torch.Tensor:
    """One optimizer step at learning rate ``lr`` on ``window`` ``[B, context + 1]`` (its first
    ``context`` tokens are the input, as always here): next-token loss, gradient clipped to
    norm 1, AdamW. ``fused``: :func:`fused_loss_and_grads`; else the HF loss and
    ``backward``. Returns the loss before the step, detached."""
    for group in opt.param_groups:
        group["lr"] = lr
    opt.zero_grad(set_to_none=True)
    ids = window[:, :-1]
    if fused:
        params = [p for group in opt.param_groups for p in group["params"]]
        loss, grads = fused_loss_and_grads(model, ids, params)
        for param, grad in zip(params, grads, strict=True):
            param.grad = grad
    else:
        loss = next_token_loss(model, ids, fused=False)
        loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return loss.detach()


def train_gpt(texts: Iterable[str] | Iterator[str], out_dir: str | os.PathLike, cfg: GPTConfig | None = None,
              tcfg: GPTTrainConfig | None = None) -> dict[str, Any]:
    """Train tokenizer and model on ``texts``; write ``out_dir/model`` (HF folder) and ``report.json``.

    Resumes from ``out_dir/checkpoint`` when present. Returns the report: validation
    loss at each evaluation, training tokens, parameter count.
    """
    from transformers import PreTrainedTokenizerFast

    cfg, tcfg = cfg or GPTConfig(), tcfg or GPTTrainConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(tcfg.device)
    tok_dir = out / "tokenizer"
    texts = list(texts)
    if not texts:
        raise ValueError("the corpus is empty: no documents to train the GPT on")
    if not (tok_dir / "tokenizer.json").is_file():
        tokenizer = train_tokenizer(texts, cfg.vocab_size)
        with atomic_dir(tok_dir) as tmp:
            tokenizer.save_pretrained(tmp)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(tok_dir)
    stream = encode_corpus(tokenizer, texts)
    n_val = max(int(len(stream) * tcfg.val_fraction), cfg.context + 2)
    if len(stream) - n_val < cfg.context + 2:
        raise ValueError(f"the corpus has only {len(stream)} tokens; need more than {2 * (cfg.context + 2)}")
    train_stream, val_stream = stream[:-n_val], stream[-n_val:]

    model = build_model(cfg, len(tokenizer), tcfg.seed).to(device)
    opt = make_optimizer(model, tcfg)
    start, evals = 0, []
    ckpt = out / "checkpoint"
    if (ckpt / "meta.json").is_file():
        meta = json.loads((ckpt / "meta.json").read_text())
        tensors = load_file(ckpt / "state.safetensors")
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, strict=False)
        model.tie_weights()
        load_optimizer_tensors(opt, tensors, meta["param_groups"], "opt", device)
        start, evals = meta["step"], meta["evals"]

    model.train()
    bar = tqdm(total=tcfg.steps, initial=start, disable=not tcfg.progress, desc="replication GPT")
    for step in range(start, tcfg.steps):
        gen = torch.Generator().manual_seed(tcfg.seed * 1_000_003 + step)
        w = _windows(train_stream, tcfg.batch_size, cfg.context, gen).to(device)
        loss = train_step(model, opt, w, _lr(step, tcfg), tcfg.fused)
        bar.update(1)
        if (step + 1) % tcfg.eval_every == 0 or step + 1 == tcfg.steps:
            evals.append({"step": step + 1, "train_loss": float(loss),
                          "val_loss": evaluate(model, val_stream, cfg, tcfg, device)})
            bar.set_postfix(val_loss=f"{evals[-1]['val_loss']:.3f}")
        if tcfg.checkpoint_every and (step + 1) % tcfg.checkpoint_every == 0 and step + 1 < tcfg.steps:
            tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()
                       if k != "lm_head.weight"}  # tied to the embedding; safetensors refuses shared storage
            opt_tensors, groups = optimizer_tensors(opt, "opt")
            with atomic_dir(ckpt) as tmp:
                save_file({**tensors, **opt_tensors}, tmp / "state.safetensors")
                (tmp / "meta.json").write_text(json.dumps({"step": step + 1, "evals": evals, "param_groups": groups}))
    bar.close()
    report = {
        "config": dataclasses.asdict(cfg),
        "train_config": dataclasses.asdict(tcfg),
        "evals": evals,
        "val_loss": evals[-1]["val_loss"] if evals else float("nan"),
        "train_tokens": tcfg.steps * tcfg.batch_size * cfg.context,
        "corpus_tokens": len(stream),
        "val_tokens": int(n_val),
        "parameters": int(sum(p.numel() for p in model.parameters())),
    }
    with atomic_dir(out / "model") as tmp:
        model.cpu().save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    write_json_atomic(out / "report.json", report)
    return report


def load_gpt(out_dir: str | os.PathLike):
    """The trained model (eval mode) and tokenizer from :func:`train_gpt`'s folder."""
    from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast
    from transformers.utils import logging as hf_logging

    folder = Path(out_dir) / "model"
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"no trained GPT under {folder}")
    # a 76-tensor local load needs no progress bar, and its timing would make a chapter's output vary
    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return GPT2LMHeadModel.from_pretrained(folder).eval(), PreTrainedTokenizerFast.from_pretrained(folder)
    finally:
        if shown:
            hf_logging.enable_progress_bar()
