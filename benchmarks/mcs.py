"""MCS throughput against matmuls of the same tile shapes, and its peak memory against its bound."""

from __future__ import annotations

import time

import torch

from benchmarks.common import RSSSampler, _sync, matmul_flops
from sae_core.similarity import _tile_sizes, gaussian_dictionary, max_cosine_similarity


def _bench_shape(device: torch.device, n: int, m: int, d: int, budget: int) -> None:
    a, b = gaussian_dictionary(n, d, seed=0), gaussian_dictionary(m, d, seed=1)
    row, col = _tile_sizes(n, m, 4, budget)
    tiles = [(min(row, n - i), d, col) for i in range(0, n, row)]
    reference = matmul_flops(tiles, device, repeats=2)
    strict = matmul_flops(tiles, device, repeats=2, reuse_output=True)
    max_cosine_similarity(a[:row], b, memory_budget_bytes=budget, device=device)  # warm-up
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    seconds = float("inf")
    with RSSSampler() as rss:
        for _ in range(2):  # best of two, as the matmul references are (the CPU may be shared)
            _sync(device)
            start = time.perf_counter()
            max_cosine_similarity(a, b, memory_budget_bytes=budget, device=device)
            _sync(device)
            seconds = min(seconds, time.perf_counter() - start)
    if device.type == "cuda":
        extra = torch.cuda.max_memory_allocated() - base
        where = "GPU peak allocated above inputs"
    else:
        extra = rss.peak_growth
        where = "peak process RSS above the start of the call, sampled every 2 ms"
    flops = 2 * n * m * d
    print(f"[mcs] N={n} M={m} d={d} device={device} tile={row}x{col} budget={budget / 2**20:.0f} MiB")
    print(f"[mcs] {seconds:.2f} s (best of 2), {flops / seconds / 1e9:,.1f} GFLOP/s; float32 matmul at the same tile "
          f"shapes {reference / 1e9:,.1f} GFLOP/s; ratio {flops / seconds / reference:.3f} (into a reused "
          f"output buffer {strict / 1e9:,.1f} GFLOP/s; ratio {flops / seconds / strict:.3f})")
    copies = (n + m) * d * 4
    print(f"[mcs] memory: {extra / 2**20:,.0f} MiB ({where}); bound = tile budget {budget / 2**20:.0f} MiB + "
          f"normalised inputs {copies / 2**20:.0f} MiB = {(budget + copies) / 2**20:.0f} MiB, ratio "
          f"{extra / (budget + copies):.2f}; the full N x M matrix would be {n * m * 4 / 2**20:,.0f} MiB")


def bench_mcs(device: torch.device, n: int, m: int, d: int, budget: int, *, also_d: tuple[int, ...] = (128,)) -> None:
    """MCS of N against M features at width ``d``, then at each width in ``also_d`` (same N, M, budget)."""
    for width in (d, *(w for w in also_d if w != d)):
        _bench_shape(device, n, m, width, budget)
