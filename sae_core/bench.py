"""Benchmarks that report ratios measured in one run, never bare timings.

    python -m sae_core.bench train   # family training: samples/s, FLOP/s / matmul peak
    python -m sae_core.bench mcs     # MCS FLOP/s / matmul at the same sizes, peak memory
    python -m sae_core.bench match   # one-to-one matching times
    python -m sae_core.bench         # all three

FLOP counts: an SAE step on B samples costs 2·B·d·m (encode) + 2·B·m·d (decode)
forward and twice that backward, 12·B·d·m in all (elementwise work ignored); MCS of
N against M features in d dims costs 2·N·M·d.
"""

from __future__ import annotations

import argparse
import os
import threading
import time

import torch

from sae_core.device import resolve_device
from sae_core.similarity import DEFAULT_MEMORY_BUDGET, _tile_sizes, gaussian_dictionary, max_cosine_similarity
from sae_core.synthetic import SyntheticSource
from sae_core.train import TrainConfig, train_family


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_flops(shapes: list[tuple[int, int, int]], device: torch.device, repeats: int = 3) -> float:
    """Best FLOP/s over ``repeats`` of the float32 products [n,k]@[k,m] in ``shapes``."""
    operands = [(torch.randn(n, k, device=device), torch.randn(k, m, device=device)) for n, k, m in shapes]
    flops = sum(2 * n * k * m for n, k, m in shapes)
    best = float("inf")
    for _ in range(repeats + 1):  # the first pass warms up
        _sync(device)
        start = time.perf_counter()
        for a, b in operands:
            a @ b
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return flops / best


class RSSSampler:
    """Samples this process's resident memory in a thread; ``peak_growth`` is max RSS minus RSS at entry."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval, self.peak_growth = interval, 0
        self._stop = threading.Event()

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_growth = max(self.peak_growth, self._rss() - self._start)
            time.sleep(self.interval)

    def __enter__(self) -> RSSSampler:
        self._start = self._rss()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


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


def bench_mcs(device: torch.device, n: int, m: int, d: int, budget: int) -> None:
    a, b = gaussian_dictionary(n, d, seed=0), gaussian_dictionary(m, d, seed=1)
    row, col = _tile_sizes(n, m, 4, budget)
    tiles = [(min(row, n - i), d, col) for i in range(0, n, row)]
    reference = matmul_flops(tiles, device, repeats=2)
    max_cosine_similarity(a[:row], b, memory_budget_bytes=budget, device=device)  # warm-up
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    _sync(device)
    with RSSSampler() as rss:
        start = time.perf_counter()
        max_cosine_similarity(a, b, memory_budget_bytes=budget, device=device)
        _sync(device)
        seconds = time.perf_counter() - start
    if device.type == "cuda":
        extra = torch.cuda.max_memory_allocated() - base
        where = "GPU peak allocated above inputs"
    else:
        extra = rss.peak_growth
        where = "peak process RSS above the start of the call, sampled every 2 ms"
    flops = 2 * n * m * d
    print(f"[mcs] N={n} M={m} d={d} device={device} tile={row}x{col} budget={budget / 2**20:.0f} MiB")
    print(f"[mcs] {seconds:.2f} s, {flops / seconds / 1e9:,.1f} GFLOP/s; float32 matmul at the same tile "
          f"shapes {reference / 1e9:,.1f} GFLOP/s; ratio {flops / seconds / reference:.3f}")
    copies = (n + m) * d * 4
    print(f"[mcs] memory: {extra / 2**20:,.0f} MiB ({where}); bound = tile budget {budget / 2**20:.0f} MiB + "
          f"normalised inputs {copies / 2**20:.0f} MiB = {(budget + copies) / 2**20:.0f} MiB, ratio "
          f"{extra / (budget + copies):.2f}; the full N x M matrix would be {n * m * 4 / 2**20:,.0f} MiB")


def bench_match(sizes: list[tuple[int, int]], d: int) -> None:
    from sae_core.similarity import one_to_one_mcs

    for n, m in sizes:
        a, b = gaussian_dictionary(n, d, seed=2), gaussian_dictionary(m, d, seed=3)
        start = time.perf_counter()
        one_to_one_mcs(a, b)
        print(f"[match] one-to-one {n} x {m} (d={d}): {time.perf_counter() - start:.2f} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", nargs="*", help="any of: train mcs match (default: all)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--train-steps", type=int, default=100)
    parser.add_argument("--mcs-shape", type=int, nargs=3, default=[8192, 65536, 512], metavar=("N", "M", "D"))
    parser.add_argument("--budget-mib", type=int, default=DEFAULT_MEMORY_BUDGET // 2**20)
    args = parser.parse_args(argv)
    args.which = args.which or ["train", "mcs", "match"]
    unknown = set(args.which) - {"train", "mcs", "match"}
    if unknown:
        parser.error(f"unknown benchmark(s) {sorted(unknown)}; choose from train, mcs, match")
    device = resolve_device(args.device)
    if "train" in args.which:
        bench_train(device, args.train_steps)
    if "mcs" in args.which:
        bench_mcs(device, *args.mcs_shape, budget=args.budget_mib * 2**20)
    if "match" in args.which:
        bench_match([(1024, 8192), (4096, 8192), (8192, 8192)], d=128)


if __name__ == "__main__":
    main()
