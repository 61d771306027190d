"""Benchmarks that report ratios measured in one run, never bare timings.

    python -m benchmarks train   # family training: dense and sparse fused steps, Adam, against the FLOP floor
    python -m benchmarks mcs     # MCS FLOP/s / matmul at the same sizes, peak memory
    python -m benchmarks match   # one-to-one matching times
    python -m benchmarks gpt     # replication-GPT training: tokens/s reference vs fused, FLOP/s / matmul peak
    python -m benchmarks         # all four

FLOP counts: an SAE step on B samples costs 2·B·d·m (encode) + 2·B·m·d (decode)
forward and twice that backward, 12·B·d·m in all (elementwise work ignored); MCS of
N against M features in d dims costs 2·N·M·d; a GPT training token costs 6·(N + V·d) +
12·L·T·d (benchmarks/gpt.py).
"""

from __future__ import annotations

import argparse

from benchmarks.gpt import bench_gpt
from benchmarks.matching import bench_match
from benchmarks.mcs import bench_mcs
from benchmarks.train import bench_train
from sae_core.device import resolve_device
from sae_core.similarity import DEFAULT_MEMORY_BUDGET


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", nargs="*", help="any of: train mcs match gpt (default: all)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--train-steps", type=int, default=100, help="timed steps per path")
    parser.add_argument("--train-warm", type=int, default=300,
                        help="steps trained before the sparse and dense fused steps are timed at the same weights")
    parser.add_argument("--mcs-shape", type=int, nargs=3, default=[8192, 65536, 512], metavar=("N", "M", "D"))
    parser.add_argument("--budget-mib", type=int, default=DEFAULT_MEMORY_BUDGET // 2**20)
    parser.add_argument("--gpt-steps", type=int, default=100, help="training steps per path")
    args = parser.parse_args(argv)
    args.which = args.which or ["train", "mcs", "match", "gpt"]
    unknown = set(args.which) - {"train", "mcs", "match", "gpt"}
    if unknown:
        parser.error(f"unknown benchmark(s) {sorted(unknown)}; choose from train, mcs, match, gpt")
    device = resolve_device(args.device)
    if "train" in args.which:
        bench_train(device, args.train_steps, args.train_warm)
    if "mcs" in args.which:
        bench_mcs(device, *args.mcs_shape, budget=args.budget_mib * 2**20)
    if "match" in args.which:
        bench_match([(1024, 8192), (4096, 8192), (8192, 8192)], d=128)
    if "gpt" in args.which:
        bench_gpt(device, args.gpt_steps)


if __name__ == "__main__":
    main()
