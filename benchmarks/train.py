"""Family training throughput as a ratio to the matmul peak measured in the same run."""

from __future__ import annotations

import time

import torch

from benchmarks.common import _sync, matmul_flops
from sae_core.sources.synthetic import SyntheticSource
from sae_core.train import TrainConfig, train_family


def bench_train(device: torch.device, n_steps: int) -> None:
    cfg = TrainConfig(n_steps=n_steps, progress=False, device=str(device))
    src = SyntheticSource()
    peak = matmul_flops([(2048, 2048, 2048)] * 2, device)
    train_family(src, TrainConfig(sizes=cfg.sizes, n_steps=3, progress=False, device=str(device)))  # warm-up
    _sync(device)
    start = time.perf_counter()
    train_family(src, cfg)
    _sync(device)
    seconds = time.perf_counter() - start
    samples = n_steps * cfg.batch_size
    flops = 12 * samples * src.d_in * sum(cfg.sizes)
    print(f"[train] device={device} threads={torch.get_num_threads()} sizes={list(cfg.sizes)} d_in={src.d_in}")
    print(f"[train] {samples} samples in {seconds:.2f} s: {samples / seconds:,.0f} samples/s for the whole family")
    print(f"[train] achieved {flops / seconds / 1e9:,.1f} GFLOP/s; float32 matmul peak (2048^3) "
          f"{peak / 1e9:,.1f} GFLOP/s; ratio {flops / seconds / peak:.3f}")
