"""Shared measuring tools: the float32 matmul peak measured in the same run, a resident-memory sampler."""

from __future__ import annotations

import os
import threading
import time

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_flops(shapes: list[tuple[int, int, int]], device: torch.device, repeats: int = 3,
                 reuse_output: bool = False) -> float:
    """Best FLOP/s over ``repeats`` of the float32 products [n,k]@[k,m] in ``shapes``.

    ``reuse_output`` writes every product into one preallocated buffer: a fresh CPU output of
    hundreds of MiB is page-faulted in on every call, so this is the stricter reference."""
    operands = [(torch.randn(n, k, device=device), torch.randn(k, m, device=device)) for n, k, m in shapes]
    out = torch.empty(max(n * m for n, _, m in shapes), device=device) if reuse_output else None
    flops = sum(2 * n * k * m for n, k, m in shapes)
    best = float("inf")
    for _ in range(repeats + 1):  # the first pass warms up
        _sync(device)
        start = time.perf_counter()
        for a, b in operands:
            if out is None:
                a @ b
            else:
                torch.matmul(a, b, out=out[: a.shape[0] * b.shape[1]].view(a.shape[0], b.shape[1]))
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


def spread(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    """``median [min-max]`` of repeated timings, each multiplied by ``scale`` (e.g. 1e3 for ms)."""
    v = sorted(x * scale for x in values)
    return f"{v[len(v) // 2]:.{digits}f} [{v[0]:.{digits}f}-{v[-1]:.{digits}f}]"
