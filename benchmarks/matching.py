"""One-to-one matching times."""

from __future__ import annotations

import time

from sae_core.similarity import gaussian_dictionary, one_to_one_mcs


def bench_match(sizes: list[tuple[int, int]], d: int) -> None:
    for n, m in sizes:
        a, b = gaussian_dictionary(n, d, seed=2), gaussian_dictionary(m, d, seed=3)
        start = time.perf_counter()
        one_to_one_mcs(a, b)
        print(f"[match] one-to-one {n} x {m} (d={d}): {time.perf_counter() - start:.2f} s")
