"""One-to-one matching: the dense Hungarian solver against the sparse certified one, measured in one run.

For each (N, M) both methods of ``one_to_one_mcs`` run on the same Gaussian dictionaries and
the line reports both times, their ratio, and that the totals agree; then the sparse solver
alone at ``large`` x ``large``, where the dense float64 matrix would not fit, with its rounds,
rows re-scanned and peak resident memory against what the dense matrix would need.
"""

from __future__ import annotations

import time

from benchmarks.common import RSSSampler
from sae_core.similarity import gaussian_dictionary, one_to_one_mcs


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _rounds(cert) -> str:
    scanned = "+".join(str(h.rows_scanned) for h in cert.history)
    return f"{cert.rounds} rounds, rows scanned {scanned}, {cert.candidates:,} candidate pairs"


def bench_match(sizes: list[tuple[int, int]], d: int, *, large: int | None = 65536) -> None:
    for n, m in sizes:
        a, b = gaussian_dictionary(n, d, seed=2), gaussian_dictionary(m, d, seed=3)
        dense, t_dense = _timed(lambda a=a, b=b: one_to_one_mcs(a, b, method="dense"))
        sparse, t_sparse = _timed(lambda a=a, b=b: one_to_one_mcs(a, b, method="sparse"))
        gap = sparse.values.sum().item() - dense.values.sum().item()
        print(f"[match] one-to-one {n} x {m} (d={d}): dense Hungarian {t_dense:.2f} s, sparse certified "
              f"{t_sparse:.2f} s, ratio {t_dense / t_sparse:.1f}x; totals {dense.values.sum().item():.9f} vs "
              f"{sparse.values.sum().item():.9f} (difference {gap:.1e}); {_rounds(sparse.certificate)}")
    if large:
        a, b = gaussian_dictionary(large, d, seed=2), gaussian_dictionary(large, d, seed=3)
        with RSSSampler(interval=0.02) as rss:
            res, seconds = _timed(lambda: one_to_one_mcs(a, b))
        cert = res.certificate
        dense_gib = large * large * 8 / 2**30
        print(f"[match] one-to-one {large} x {large} (d={d}), sparse only: {seconds:.1f} s, certified "
              f"{cert.certified} (max violation {cert.max_violation:.1e}, gap bound {cert.gap_bound:.1e}), "
              f"{_rounds(cert)}; peak RSS growth {rss.peak_growth / 2**20:,.0f} MiB "
              f"(the dense float64 matrix alone would be {dense_gib:,.0f} GiB)")
