"""Benchmarks: `python -m benchmarks` (what `make bench` runs)."""
