"""The replication's small GPT, trained in-project on a text corpus.

Architecture of the original experiment (a nanoGPT): 6 layers, residual width 32,
4 heads of size 8, MLP width 128, GELU. It is built as a Hugging Face
``GPT2LMHeadModel`` (the same architecture as nanoGPT) so nnsight can wrap it and the
layer-2 MLP hidden state is ``blocks.2.mlp.hook_post`` (input of ``mlp.c_proj``).
The tokenizer is a byte-level BPE trained on the same corpus with ``tokenizers``.

Training: AdamW on random windows of the token stream; window positions of step ``s``
come from a generator seeded by ``(seed, s)``, so a resumed run repeats the batches
it would have seen. Checkpoints and the final model are safetensors + JSON.

Speed (``GPTTrainConfig.fused``, on by default): with a 4096-token vocabulary and a
residual of 32, two thirds of an eager step went to the ``[tokens, vocab]`` logits of
the LM head: their log-softmax, its backward and the zero-filled gradient of
``nll_loss``, each a pass over 8192 × 4096 floats (128 MiB) per step. The fused path
computes the same loss and gradients in row chunks that stay in cache
(:class:`LinearCrossEntropy`) and steps a fused AdamW. ``fused=False`` is the
reference: the Hugging Face forward's ``.loss`` and the for-loop AdamW.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

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
    fused: bool = True  # chunked LM-head cross-entropy + fused AdamW; False: HF ``.loss`` (the reference path)


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

    hf_cfg = GPT2Config(vocab_size=vocab_size, n_positions=cfg.context, n_embd=cfg.n_embd, n_layer=cfg.n_layer,
                        n_head=cfg.n_head, n_inner=cfg.n_inner, activation_function="gelu",
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    torch.manual_seed(seed)
    return GPT2LMHeadModel(hf_cfg)


def _chunk_rows(vocab: int) -> int:
    """Rows per chunk of :class:`LinearCrossEntropy`: 2 MiB of float32 logits, so a chunk's
    logits stay in the L2 cache across the passes over them (measured best of 64-1024 rows at
    vocabulary 4096 on the 2-core CPU)."""
    return max(1, 2**19 // vocab)


class LinearCrossEntropy(torch.autograd.Function):
    r"""Mean cross-entropy of a bias-free linear head, with its gradients, in row chunks.

    For hidden rows :math:`h_i \in \mathbb{R}^d` (:math:`i < N`), head :math:`W \in
    \mathbb{R}^{V \times d}` and targets :math:`y_i`, with logits :math:`z_i = W h_i`:

    .. math::
        L = \frac1N \sum_i \Big(\log \sum_v e^{z_{iv}} - z_{i y_i}\Big), \qquad
        G_i = \frac{\partial L}{\partial z_i} = \frac{\operatorname{softmax}(z_i) - e_{y_i}}{N},

    :math:`\partial L / \partial h_i = W^\top G_i` and :math:`\partial L / \partial W = \sum_i G_i h_i^\top`.
    This is ``F.cross_entropy(h @ W.T, y)`` and its backward, but the logits of only ``chunk``
    rows exist at a time and the gradients are accumulated in the forward pass, so the
    ``[N, V]`` logits, their softmax and their gradient are never written to memory: the
    fused linear cross-entropy of Liger Kernel (Hsu et al. 2024, arXiv:2410.10989) and
    "Cut Your Losses" (Wijmans et al. 2024, arXiv:2411.09009), here in plain PyTorch ops.
    ``log_softmax`` subtracts the row maximum first, so no exponential overflows.
    """

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int) -> torch.Tensor:
        n = hidden.shape[0]
        need_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        grad_h = torch.empty_like(hidden) if need_grad else None
        grad_w = torch.zeros_like(weight) if need_grad else None
        acc = torch.promote_types(hidden.dtype, torch.float32)  # at least float32 for the sum over rows
        total = hidden.new_zeros((), dtype=acc)
        for i in range(0, n, chunk):
            h, y = hidden[i : i + chunk], targets[i : i + chunk, None]
            logp = torch.log_softmax(h @ weight.t(), dim=1)  # [chunk, V]
            total -= logp.gather(1, y).sum(dtype=acc)
            if need_grad:
                grad_z = logp.exp_().scatter_add_(1, y, logp.new_full(y.shape, -1.0))  # softmax - one-hot
                torch.mm(grad_z, weight, out=grad_h[i : i + chunk])
                grad_w.addmm_(grad_z.t(), h)
        if need_grad:
            ctx.save_for_backward(grad_h.div_(n), grad_w.div_(n))
        return total / n

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        grad_h, grad_w = ctx.saved_tensors
        return grad_h * grad_out, grad_w * grad_out, None, None


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
    hidden = model.transformer(ids).last_hidden_state[:, :-1]
    hidden = hidden.reshape(-1, hidden.shape[-1])
    weight = model.lm_head.weight
    return LinearCrossEntropy.apply(hidden, weight, ids[:, 1:].reshape(-1), _chunk_rows(weight.shape[0]))


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
        losses.append(float(next_token_loss(model, w[:, :-1], tcfg.fused)))
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
    norm 1, AdamW. Returns the loss before the step, detached."""
    for group in opt.param_groups:
        group["lr"] = lr
    loss = next_token_loss(model, window[:, :-1], fused)
    opt.zero_grad(set_to_none=True)
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

    folder = Path(out_dir) / "model"
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"no trained GPT under {folder}")
    return GPT2LMHeadModel.from_pretrained(folder).eval(), PreTrainedTokenizerFast.from_pretrained(folder)
