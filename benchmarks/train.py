"""Family training throughput against the FLOP floor at the float32 matmul peak measured in the
same run: the plain per-SAE loop, the fused family step while the codes are dense, and, once
they are sparse, the fused step's sparse form against its dense form at the same weights, with
the Adam update alone for scale.

FLOP floor of one dense step of a family with total width S = sum of d_sae, batch B, width d:
forward 4·B·d·S (encode, decode), backward 6·B·d·S (weight gradients of both matrices and the
gradient into the codes; none is needed with respect to the input): 10·B·d·S. The ratio
"time / floor" is the step time over 10·B·d·S / peak; 1 would be every matmul at the peak and
nothing else. The sparse step does only the encoder's 2·B·d·S at full width (the other four
products cost 2·N·d each over the N active entries of the codes), so it can go under the floor;
what it cannot go under is the encoder matmul plus Adam's pass over the ~2·d·S parameters (read
parameter, gradient and two moments, write three) plus the decoder renormalisation.

The sparse step is timed after ``warm_steps`` steps on the synthetic source, when its codes are
sparse; the synthetic source's L0 differs from a language model's, so the line says at which
active share and L0 it was timed.
"""

from __future__ import annotations

import copy
import os
import time

import torch

from benchmarks.common import _sync, matmul_flops, spread
from sae_core.sources.synthetic import SyntheticSource
from sae_core.train import (
    UPDATE_THREADS,
    TrainConfig,
    _FusedFamily,
    _make_family,
    _resolve_threads,
    _threads,
    train_family,
)


def _time_family(src, cfg: TrainConfig, device: torch.device) -> float:
    train_family(src, TrainConfig(**{**cfg.to_dict(), "n_steps": 3}))  # warm-up (allocator, kernels)
    _sync(device)
    start = time.perf_counter()
    train_family(src, cfg)
    _sync(device)
    return time.perf_counter() - start


def _time_steps(fam: _FusedFamily, batches: list[torch.Tensor], device: torch.device, chunks: int
                ) -> tuple[list[float], list[bool]]:
    """Seconds per step of each of ``chunks`` equal runs of steps over ``batches``, and which ran sparse."""
    per = len(batches) // chunks
    times, modes = [], []
    for c in range(chunks):
        _sync(device)
        start = time.perf_counter()
        for x in batches[c * per : (c + 1) * per]:
            fam.step(x, want_parts=False)
            modes.append(fam.sparse)
        _sync(device)
        times.append((time.perf_counter() - start) / per)
    return times, modes


def _time_op(fn, device: torch.device, repeats: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        out.append(time.perf_counter() - start)
    return out


def bench_train(device: torch.device, n_steps: int, warm_steps: int = 300, chunks: int = 4) -> None:
    src = SyntheticSource()
    base = TrainConfig(n_steps=n_steps, progress=False, device=str(device))
    b, d, s_total = base.batch_size, src.d_in, sum(base.sizes)
    # the batches are generated outside the timed loops: training is measured, not the source
    cached = [src.batch(i, b).to(device) for i in range(warm_steps + n_steps + 1)]

    class Cached:
        d_in = src.d_in

        def batch(self, index: int, batch_size: int) -> torch.Tensor:
            return cached[index % len(cached)]

        def describe(self) -> dict:
            return src.describe()

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    peak = matmul_flops([(2048, 2048, 2048)] * 2, device)
    floor = 10 * b * d * s_total / peak  # seconds per step
    print(f"[train] device={device} threads={torch.get_num_threads()} sizes={list(base.sizes)} d_in={d} "
          f"batch={b} S={s_total} steps={n_steps}; 1-min load average {load:.1f} at the start")
    print(f"[train] float32 matmul peak (2048^3) {peak / 1e9:,.1f} GFLOP/s; dense floor 10·B·d·S = "
          f"{floor * 1e3:.1f} ms/step at that peak")

    # from initialisation, codes dense: the plain loop and the fused step (kept dense throughout)
    dense_cfg = TrainConfig(**{**base.to_dict(), "sparse_below": 0.0})
    plain = _time_family(Cached(), TrainConfig(**{**dense_cfg.to_dict(), "fused": False}), device) / n_steps
    fused = _time_family(Cached(), dense_cfg, device) / n_steps
    for name, sec in (("plain per-SAE loop, from init", plain), ("fused family step, from init", fused)):
        print(f"[train] {name}: {sec * 1e3:.1f} ms/step, {b / sec:,.0f} samples/s, {sec / floor:.2f}x the floor")
    print(f"[train] speed-up of the fused step over the plain loop: {plain / fused:.2f}x")

    # train until the codes are sparse, then time both forms of the fused step on the same weights
    members = _make_family(base, d, {}, device, fused=False)
    fam = _FusedFamily(members, base.lr, base.l1_coeff, base.sparse_below)
    start = time.perf_counter()
    for x in cached[:warm_steps]:
        fam.step(x, want_parts=False)
    warm = time.perf_counter() - start
    dense_fam = copy.deepcopy(fam)
    dense_fam.sparse_below = 0.0
    window = cached[warm_steps : warm_steps + n_steps]
    dense_t, _ = _time_steps(dense_fam, window, device, chunks)
    sparse_t, modes = _time_steps(fam, window, device, chunks)
    _, parts = copy.deepcopy(fam).step(cached[-1], want_parts=True)
    l0 = ", ".join(f"{size}: {p['l0']:.0f}" for size, p in parts.items())
    print(f"[train] {warm_steps} warm-up steps took {warm:.0f} s; steps {warm_steps}-{warm_steps + n_steps}: "
          f"{sum(modes)} of {len(modes)} ran sparse; active share of f {fam.density:.4f} "
          f"(L0 per size {l0})")

    # what the sparse step cannot go under, on the same tensors
    x = window[-1]
    encoder = _time_op(lambda: torch.addmm(fam.b_enc, x, fam.W_encT.t()).relu_(), device, 10)
    w = fam.W_dec.data.clone()
    with _threads(UPDATE_THREADS):  # as the sparse step runs them
        adam = _time_op(fam.opt.step, device, 10)  # the last step's gradients: the same memory traffic
        renorm = _time_op(lambda: w.div_(w.norm(dim=1, keepdim=True).clamp_min(1e-12)), device, 10)
    n_params = sum(p.numel() for p in fam.params.values())
    ms = 1e3
    dense_ms, sparse_ms = spread(dense_t, ms), spread(sparse_t, ms)
    print(f"[train] dense fused step at those weights: {dense_ms} ms/step (median [min-max] of {chunks} runs "
          f"of {n_steps // chunks}), {sorted(dense_t)[chunks // 2] / floor:.2f}x the floor")
    print(f"[train] sparse fused step at those weights: {sparse_ms} ms/step, "
          f"{sorted(sparse_t)[chunks // 2] / floor:.2f}x the floor")
    adam_bytes = 7 * 4 * n_params  # float32: read parameter, gradient, two moments; write three
    update_threads = _resolve_threads(UPDATE_THREADS) or "all"
    print(f"[train] Adam update alone over the {n_params / 1e6:.2f}M parameters ({update_threads} "
          f"thread(s), as in the sparse step): {spread(adam, ms)} ms, "
          f"{adam_bytes / sorted(adam)[len(adam) // 2] / 1e9:.1f} GB/s of its {adam_bytes / 1e6:.0f} MB; "
          f"encoder matmul + ReLU alone: {spread(encoder, ms)} ms; decoder renormalisation: {spread(renorm, ms)} ms")
    med = {k: sorted(v)[len(v) // 2] for k, v in
           (("dense", dense_t), ("sparse", sparse_t), ("adam", adam), ("enc", encoder), ("renorm", renorm))}
    print(f"[train] ratios (medians): sparse vs dense fused {med['dense'] / med['sparse']:.2f}x faster; "
          f"sparse / floor {med['sparse'] / floor:.2f}; Adam / floor {med['adam'] / floor:.2f}; "
          f"(encoder + Adam + renormalisation) / sparse step "
          f"{(med['enc'] + med['adam'] + med['renorm']) / med['sparse']:.2f}")
    end_load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"[train] 1-min load average {end_load:.1f} at the end (the machine has {os.cpu_count()} CPUs)")
