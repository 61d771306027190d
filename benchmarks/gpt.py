"""Replication-GPT training throughput: the reference and the fused step, back to back in one run.

FLOP per training token (forward + backward, PaLM's count: Chowdhery et al. 2022,
arXiv:2204.02311, Appendix B):

    6·(N + V·d) + 12·L·T·d

N = non-embedding parameters (attention, MLP, layer norms: 76 288 at the default shapes),
V·d = the LM-head matmul (tied to the token embedding, so not in N, but a real [tokens, d] @
[d, V] product: 131 072), and 12·L·T·d the attention scores and their weighting of the values
(L layers, context T, width d; the causal mask's skipped half is counted, as PaLM does).
At the defaults (L = 6, d = 32, V = 4096, T = 128) that is 6·207 360 + 294 912 =
1 539 072 FLOP per token; element-wise work (softmax, GELU, layer norm, AdamW) is not counted.

Reference: ``train_step(fused=False)``, the Hugging Face forward's ``.loss`` and the for-loop
AdamW, as the replication GPT trained before; fused: ``train_step(fused=True)``, the default
(sae_core/sources/gpt.py says what it changes). Tokens are uniform random ids: the time of a
step does not depend on the text.
"""

from __future__ import annotations

import os
import time

import torch

from benchmarks.common import _sync, matmul_flops
from sae_core.sources.gpt import GPTConfig, GPTTrainConfig, build_model, make_optimizer, train_step


def flop_per_token(model, cfg: GPTConfig) -> int:
    """6·(non-embedding parameters + LM head) + 12·layers·context·width (see the module docstring)."""
    non_embedding = sum(p.numel() for name, p in model.named_parameters()
                        if not name.startswith(("transformer.wte.", "transformer.wpe.")))
    head = model.lm_head.weight.numel()
    return 6 * (non_embedding + head) + 12 * cfg.n_layer * cfg.context * cfg.n_embd


def bench_gpt(device: torch.device, steps: int = 100, batch_size: int = 64, rounds: int = 5) -> dict[str, float]:
    """Train two identical replication GPTs, one per path, for ``steps`` steps each.

    The paths alternate in ``rounds`` blocks of ``steps / rounds`` steps, so load from other
    processes falls on both alike; each path's time is the sum of its blocks, after two
    warm-up steps each. Prints and returns tokens/s of each path, the speed-up, and the
    achieved FLOP/s of each as a fraction of the float32 matmul peak measured in the same run
    (the better of a measurement before and one after the training steps).
    """
    cfg = GPTConfig()
    per_block = max(1, steps // rounds)
    steps = per_block * rounds
    gen = torch.Generator().manual_seed(0)
    windows = [torch.randint(0, cfg.vocab_size, (batch_size, cfg.context + 1), generator=gen).to(device)
               for _ in range(steps + 2)]
    paths = {}
    for name, fused in (("reference", False), ("fused", True)):
        model = build_model(cfg, cfg.vocab_size, seed=0).to(device).train()
        paths[name] = (model, make_optimizer(model, GPTTrainConfig(fused=fused)), fused)
    load_before = os.getloadavg()[0]  # the CPU may be shared: say how busy it was
    peak = matmul_flops([(2048, 2048, 2048)] * 2, device)
    seconds = dict.fromkeys(paths, 0.0)
    for model, opt, fused in paths.values():  # warm-up: allocator, thread pool, first-call paths
        for w in windows[:2]:
            train_step(model, opt, w, 1e-3, fused)
    for r in range(rounds):
        block = windows[2 + r * per_block : 2 + (r + 1) * per_block]
        for name, (model, opt, fused) in paths.items():
            _sync(device)
            start = time.perf_counter()
            for w in block:
                train_step(model, opt, w, 1e-3, fused)
            _sync(device)
            seconds[name] += time.perf_counter() - start
    peak = max(peak, matmul_flops([(2048, 2048, 2048)] * 2, device))  # again after: the best of the two
    tokens = steps * batch_size * cfg.context
    flop = flop_per_token(paths["fused"][0], cfg)
    rate = {name: tokens / s for name, s in seconds.items()}
    result = {"reference_tokens_per_s": rate["reference"], "fused_tokens_per_s": rate["fused"],
              "speedup": rate["fused"] / rate["reference"], "peak_flops": peak, "flop_per_token": flop,
              "reference_seconds": seconds["reference"], "fused_seconds": seconds["fused"]}
    print(f"[gpt] device={device} threads={torch.get_num_threads()} layers={cfg.n_layer} d={cfg.n_embd} "
          f"vocab={cfg.vocab_size} context={cfg.context} batch={batch_size}; {flop:,} FLOP/token")
    for name in paths:
        print(f"[gpt] {name:9s}: {steps} steps in {seconds[name]:6.2f} s, {rate[name]:9,.0f} tokens/s, "
              f"{rate[name] * flop / 1e9:5.1f} GFLOP/s = {rate[name] * flop / peak:.3f} of the matmul peak")
    print(f"[gpt] speed-up fused / reference: {result['speedup']:.2f}x; "
          f"float32 matmul peak (2048^3) {peak / 1e9:,.1f} GFLOP/s; "
          f"1-minute load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after (this run included)")
    return result
