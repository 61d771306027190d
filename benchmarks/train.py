"""Family training throughput: the fused family step against the plain per-SAE loop, and both
against the FLOP floor at the float32 matmul peak measured in the same run.

FLOP floor of one step of a family with total width S = sum of d_sae, batch B, width d:
forward 4·B·d·S (encode, decode), backward 6·B·d·S (weight gradients of both matrices and the
gradient into the codes; none is needed with respect to the input): 10·B·d·S. The ratio
"time / floor" is the step time over 10·B·d·S / peak; 1 would be every matmul at the peak and
nothing else.
"""

from __future__ import annotations

import time

import torch

from benchmarks.common import _sync, matmul_flops
from sae_core.sources.synthetic import SyntheticSource
from sae_core.train import TrainConfig, train_family


def _time_family(src, cfg: TrainConfig, device: torch.device) -> float:
    train_family(src, TrainConfig(**{**cfg.to_dict(), "n_steps": 3}))  # warm-up (allocator, kernels)
    _sync(device)
    start = time.perf_counter()
    train_family(src, cfg)
    _sync(device)
    return time.perf_counter() - start


def bench_train(device: torch.device, n_steps: int) -> None:
    src = SyntheticSource()
    base = TrainConfig(n_steps=n_steps, progress=False, device=str(device))
    # the batches are generated outside the timed loop: training is measured, not the source
    cached = [src.batch(i, base.batch_size) for i in range(n_steps)]

    class Cached:
        d_in = src.d_in

        def batch(self, index: int, batch_size: int) -> torch.Tensor:
            return cached[index % len(cached)]

        def describe(self) -> dict:
            return src.describe()

    peak = matmul_flops([(2048, 2048, 2048)] * 2, device)
    plain = _time_family(Cached(), TrainConfig(**{**base.to_dict(), "fused": False}), device)
    fused = _time_family(Cached(), base, device)
    samples = n_steps * base.batch_size
    floor_seconds = 10 * samples * src.d_in * sum(base.sizes) / peak
    print(f"[train] device={device} threads={torch.get_num_threads()} sizes={list(base.sizes)} d_in={src.d_in} "
          f"batch={base.batch_size} steps={n_steps}")
    print(f"[train] float32 matmul peak (2048^3) {peak / 1e9:,.1f} GFLOP/s; floor 10·B·d·S = "
          f"{floor_seconds / n_steps * 1e3:.1f} ms/step at that peak")
    for name, seconds in (("plain per-SAE loop", plain), ("fused family step", fused)):
        print(f"[train] {name}: {seconds / n_steps * 1e3:.1f} ms/step, {samples / seconds:,.0f} samples/s, "
              f"{seconds / floor_seconds:.2f}x the floor")
    print(f"[train] speed-up of the fused step over the plain loop: {plain / fused:.2f}x")
