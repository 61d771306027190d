"""Train a family of SAEs of different widths in one pass over the same activations.

Every batch goes to every dictionary, so the family differs only in ``d_sae`` and its
initialisation seed. Defaults follow the MCS replication: Adam, lr 1e-3, batch 256,
``loss = MSE + 1e-3 * L1``, decoder rows renormalised after each step.

``activation="topk"`` trains TopK dictionaries with the AuxK loss instead (Gao et al. 2024,
"Scaling and evaluating sparse autoencoders", arXiv:2406.04093, section 2.4 and appendix A.2)::

    f     = TopK_k(ReLU(z)),  x̂ = f W_dec,  e = x - x̂ (no gradient through e)
    h     = TopK_{k_aux}(ReLU(z) restricted to the dead latents),  ê = h W_dec
    loss  = mean((x̂ - x)^2) + aux_coeff * sum_b ||e_b - ê_b||^2 / sum_b ||e_b - ē||^2

with ē the batch mean of e (their ``normalized_mse``), "dead" meaning not fired in the last
``dead_window`` steps, this one included, and no L1 term.

Two more architectures train on the plain per-SAE step (the ``sweep`` profile's chapter):

* ``activation="batchtopk"`` (Bussmann, Leask & Nanda 2024, "BatchTopK Sparse Autoencoders",
  arXiv:2412.06410): the top ``B·k`` entries of ReLU(z) over the whole batch are kept, with the
  same AuxK term; a threshold θ, an exponential moving average (``threshold_beta``) of the smallest
  kept positive activation of each batch, replaces the batch at inference: the saved dictionary is
  a JumpReLU one, ``f = ReLU(z) · H(z - θ)`` with θ for every latent.
* ``activation="jumprelu"`` (Rajamanoharan et al. 2024, "Jumping Ahead", arXiv:2407.14435):
  ``f = ReLU(z) · H(z - θ)`` with a trained threshold θ per latent, loss = MSE + ``l0_coeff`` ·
  mean_b ||f_b||_0, the Heaviside step given straight-through pseudo-derivatives with a rectangle
  kernel of bandwidth ε (their eqs. 11-12): ∂f/∂θ = -(θ/ε) K((z-θ)/ε), ∂||f||_0/∂θ = -(1/ε) K((z-θ)/ε),
  K(u) = 1[|u| < 1/2]. θ starts at ``jump_init`` and is kept ≥ 0 after each step.

Checkpoints (``checkpoint/`` under ``out_dir``: safetensors + JSON, no pickles) hold
the weights, the Adam moments, the dead-latent counters and the history. Batches are
addressed by step number (``source.batch(step, batch_size)``), so a resumed run sees
exactly the batches it would have seen and ends with the same weights.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm import tqdm  # text bars: papermill streams them from the kernel to the terminal (make book)

from sae_core import __version__
from sae_core.device import resolve_device
from sae_core.io import atomic_dir, write_json_atomic
from sae_core.sae import IN_FORWARD_EPS, SAEConfig, SparseAutoencoder

CHECKPOINT_DIR = "checkpoint"
FAMILY_FILE = "family.json"  # written last: its presence marks a finished family


class ActivationSource(Protocol):
    """What the training loop needs from a source of activations."""

    d_in: int

    def batch(self, index: int, batch_size: int) -> torch.Tensor:  # [batch_size, d_in]
        ...

    def describe(self) -> dict[str, Any]: ...


# Share of active (sample, latent) entries of the codes below which products with them run over the
# active entries alone: on the 2-core CPU at d=128, S=16128, B=256 the sparse and dense fused steps
# cost the same at about 0.10 (benchmarks/train.py).
SPARSE_BELOW = 0.08

ARCHITECTURES = ("relu", "topk", "batchtopk", "jumprelu")  # TrainConfig.activation (module docstring)


@dataclass(frozen=True)
class TrainConfig:
    sizes: tuple[int, ...] = (256, 512, 1024, 2048, 4096, 8192)  # dictionary widths d_sae
    n_steps: int = 4000  # optimizer steps; every step feeds one batch to every SAE
    batch_size: int = 256  # replication: 256
    lr: float = 1e-3  # Adam learning rate (replication: 1e-3)
    # Learning-rate schedule (off in the replication): linear warm-up from 0 over lr_warmup steps, and
    # linear decay to 0 over the last lr_decay share of n_steps (Anthropic's April 2024 update and
    # Gao et al. 2024 decay over the last 20%). With decay, the first n steps of a longer run are no
    # longer a shorter run, so such a family never continues another's checkpoint.
    lr_warmup: int = 0
    lr_decay: float = 0.0
    l1_coeff: float = 1e-3  # alpha in MSE + alpha * L1 (replication: 1e-3)
    use_b_dec: bool = False  # learned decoder bias (off in the replication)
    dead_window: int = 400  # a latent is dead if it has not fired in this many steps
    resample_every: int = 0  # >0: resample dead latents every this many steps, not in the last half-interval
    # Dead latents are resampled from a pool of this many activations (Bricken et al. 2023: 819,200),
    # a fresh one at each resampling, drawn away from the training stream; capped at the source's length
    resample_pool: int = 131072
    log_every: int = 50  # history row every this many steps
    checkpoint_every: int = 500  # write a resumable checkpoint every this many steps (0: never)
    seed: int = 0  # SAE initialisation seeds are derived from this and d_sae
    init: str = "transposed"  # SAE initialisation: "transposed" (ours) or "post" (the 2023 code), see SAEConfig
    # Architecture: "relu" (MSE + L1, the replication) or "topk" (TopK with AuxK, Gao et al. 2024,
    # arXiv:2406.04093; l1_coeff is then unused and the encoder starts as the decoder's exact transpose)
    activation: str = "relu"
    k: int | dict[int, int] | None = None  # TopK: active latents per input, one k or {d_sae: k} per size
    # AuxK (Gao et al. 2024, section 2.4 and appendix A.2): the top aux_k dead latents reconstruct the
    # residual e = x - x̂; loss += aux_coeff * ||e - ê||² / ||e - ē||². Their defaults: k_aux = d_model / 2
    # (None here means d_in // 2) and aux_coeff = 1/32. Their dead window is 10M tokens; ours is
    # dead_window steps (400 × 256 = 102,400 tokens by default), since our runs see 300k tokens in all.
    aux_k: int | None = None
    aux_coeff: float = 1 / 32
    # BatchTopK (Bussmann et al. 2024): k (above) is the mean number of active latents per input; the inference
    # threshold is an EMA of each batch's smallest kept activation (dictionary_learning uses 0.999 over ~10^5
    # steps; our runs are ~10^3 steps, so 0.99)
    threshold_beta: float = 0.99
    # JumpReLU (Rajamanoharan et al. 2024): L0 coefficient lambda, bandwidth epsilon and initial threshold (theirs:
    # epsilon = 0.001 and theta_0 = 0.001, for activations normalised to mean squared norm 1 per dimension)
    l0_coeff: float = 1e-3
    jump_bandwidth: float = 1e-3
    jump_init: float = 1e-3
    fused: bool = True  # one hand-written step for the whole family where it applies (same mathematics)
    # The fused step runs sparse (over the active entries of the codes only) while fewer than this
    # share of the batch's (sample, latent) entries are active; 0 keeps it dense. Same mathematics up
    # to float rounding, so not part of a family's cache key. CPU only (see SPARSE_BELOW).
    sparse_below: float = SPARSE_BELOW
    # Rescale activations by one constant so that their mean squared norm is d_in (the convention of
    # SAELens and dictionary_learning); the constant is estimated on the first 64 batches.
    normalize_activations: bool = False
    device: str = "auto"  # "auto" picks CUDA when present, else CPU
    progress: bool = True  # tqdm bar (TQDM_DISABLE=1 also silences it)

    def __post_init__(self) -> None:
        if not self.sizes:
            raise ValueError("TrainConfig.sizes is empty: give at least one dictionary size")
        for size in self.sizes:
            if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
                raise ValueError(f"dictionary sizes must be positive integers, got {size!r}")
        if len(set(self.sizes)) != len(self.sizes):
            raise ValueError(f"dictionary sizes must be distinct, got {self.sizes}")
        for name in ("n_steps", "batch_size", "dead_window", "log_every", "resample_pool"):
            if getattr(self, name) <= 0:
                raise ValueError(f"TrainConfig.{name} must be positive, got {getattr(self, name)}")
        if self.lr <= 0 or self.l1_coeff < 0:
            raise ValueError("need lr > 0 and l1_coeff >= 0")
        if self.lr_warmup < 0 or not 0 <= self.lr_decay < 1:
            raise ValueError(f"need lr_warmup >= 0 and 0 <= lr_decay < 1, got {self.lr_warmup} and {self.lr_decay}")
        if self.activation not in ARCHITECTURES:
            raise ValueError(f"TrainConfig.activation must be one of {list(ARCHITECTURES)}, got {self.activation!r}")
        if not (0 <= self.threshold_beta < 1 and self.jump_bandwidth > 0 and self.jump_init >= 0
                and self.l0_coeff >= 0):
            raise ValueError("need 0 <= threshold_beta < 1, jump_bandwidth > 0, jump_init >= 0 and l0_coeff >= 0")
        if self.activation in ("topk", "batchtopk"):
            if self.k is None:
                raise ValueError(f"TrainConfig(activation={self.activation!r}) needs k (an int, or {{size: k}} for "
                                 "every size)")
            if isinstance(self.k, dict) and set(self.k) != set(self.sizes):
                raise ValueError(f"TrainConfig.k gives sizes {sorted(self.k)}, but the family has {sorted(self.sizes)}")
            for size in self.sizes:
                k = self.k_for(size)
                if not isinstance(k, int) or isinstance(k, bool) or not 0 < k <= size:
                    raise ValueError(f"TrainConfig.k for size {size} must be an integer in 1..{size}, got {k!r}")
            if self.aux_k is not None and self.aux_k <= 0:
                raise ValueError(f"TrainConfig.aux_k must be positive (or None for d_in // 2), got {self.aux_k}")
            if self.aux_coeff < 0:
                raise ValueError(f"TrainConfig.aux_coeff must be >= 0, got {self.aux_coeff}")
            if self.resample_every:
                raise ValueError("TopK dictionaries revive dead latents with AuxK, not resampling: "
                                 f"set resample_every=0 with activation={self.activation!r}")
        elif self.k is not None:
            raise ValueError(f"TrainConfig.k is only used by activation='topk' or 'batchtopk', not {self.activation!r}")
        if self.activation == "jumprelu" and self.resample_every:
            raise ValueError("resampling is implemented for ReLU dictionaries only; set resample_every=0")

    def k_for(self, size: int) -> int | None:
        """The (Batch)TopK k of dictionary ``size`` (None for ReLU and JumpReLU)."""
        return self.k.get(size) if isinstance(self.k, dict) else self.k

    def aux_k_for(self, d_in: int, size: int) -> int:
        """k_aux for a dictionary of ``size`` latents reading ``d_in``-wide activations (at most ``size``)."""
        return min(size, self.aux_k if self.aux_k is not None else max(1, d_in // 2))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def lr_at(cfg: TrainConfig, step: int) -> float:
    """The learning rate of 0-based ``step``: ``cfg.lr`` times a linear warm-up over the first
    ``lr_warmup`` steps and a linear decay to 0 over the last ``lr_decay`` share of ``n_steps``."""
    scale = 1.0
    if cfg.lr_warmup:
        scale = min(scale, (step + 1) / cfg.lr_warmup)
    decay_steps = round(cfg.lr_decay * cfg.n_steps)
    if decay_steps:
        scale = min(scale, (cfg.n_steps - step) / decay_steps)
    return cfg.lr * scale


def sae_seed(seed: int, d_sae: int) -> int:
    return seed * 1_000_003 + d_sae


def check_batch(x: torch.Tensor, d_in: int, step: int) -> None:
    """Reject batches the loop cannot train on, with the reason, before torch fails obscurely."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"source returned {type(x).__name__} at step {step}, expected a torch.Tensor")
    if x.ndim != 2:
        raise ValueError(f"source returned a batch of shape {tuple(x.shape)} at step {step}; expected [batch, d_in]")
    if x.shape[0] == 0:
        raise ValueError(f"source returned an empty batch at step {step}: the activation source is empty")
    if x.shape[1] != d_in:
        raise ValueError(
            f"activations have width {x.shape[1]} at step {step}, but the SAEs expect d_in={d_in}"
        )
    if not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).any(dim=1).sum())
        raise ValueError(f"activations contain NaN or inf at step {step} ({bad} of {x.shape[0]} rows)")


@dataclass
class _Member:
    """One dictionary of the family with its optimizer (plain path) and its firing record."""

    sae: SparseAutoencoder
    opt: torch.optim.Adam | None  # the plain path's own Adam; None on the fused path
    steps_since_fired: torch.Tensor  # [d_sae] long: steps since the latent last fired
    fire_steps: torch.Tensor  # [d_sae] long: steps (batches) in which it fired at least once
    last_fired: torch.Tensor  # [d_sae] long: last step (1-based) in which it fired; 0 = never


PARAM_NAMES = ("W_enc", "b_enc", "W_dec")  # trained tensors (b_dec too when use_b_dec)
LATENT_DIM = {"W_enc": 1, "b_enc": 0, "W_dec": 0, "b_dec": None, "threshold": 0}  # which axis indexes latents
LATENT_STATS_FILE = "latent_stats.safetensors"  # per-latent firing record, written with the family


def _sae_config(cfg: TrainConfig, d_in: int, size: int, provenance: dict[str, Any]) -> SAEConfig:
    relu = cfg.activation == "relu"
    return SAEConfig(
        d_in=d_in, d_sae=size, l1_coeff=cfg.l1_coeff if relu else 0.0, use_b_dec=cfg.use_b_dec,
        seed=sae_seed(cfg.seed, size), provenance=provenance, init=cfg.init,
        # the 2023 code normalised decoder rows inside the forward pass; ours after each step
        decoder_norm="in_forward" if cfg.init == "post" else "after_step",
        # BatchTopK infers with one threshold: a JumpReLU dictionary
        activation="jumprelu" if cfg.activation == "batchtopk" else cfg.activation,
        k=cfg.k_for(size) if cfg.activation == "topk" else None,
    )


def initial_sae(cfg: TrainConfig, d_in: int, size: int, provenance: dict[str, Any] | None = None
                ) -> SparseAutoencoder:
    """The dictionary of ``size`` as training starts: regenerated from the seed, so the report can measure
    how far each encoder column and decoder row moved."""
    sae = SparseAutoencoder(_sae_config(cfg, d_in, size, provenance or {}))
    with torch.no_grad():
        if cfg.activation == "batchtopk":  # the threshold is estimated, not trained; encoder = decoder^T
            sae.threshold.requires_grad_(False)
            sae.W_enc.copy_(sae.W_dec.t())
        elif cfg.activation == "jumprelu":
            sae.threshold.fill_(cfg.jump_init)
    return sae


def _make_family(cfg: TrainConfig, d_in: int, provenance: dict[str, Any], device: torch.device,
                 fused: bool) -> dict[int, _Member]:
    members = {}
    for size in cfg.sizes:
        sae = initial_sae(cfg, d_in, size, provenance).to(device)
        params = [p for p in sae.parameters() if p.requires_grad]
        opt = None if fused else torch.optim.Adam(params, lr=cfg.lr)
        counters = [torch.zeros(size, dtype=torch.long, device=device) for _ in range(3)]
        members[size] = _Member(sae, opt, *counters)
    return members


def uses_fused_step(cfg: TrainConfig, members: dict[int, _Member]) -> bool:
    """The fused step covers ReLU SAEs without decoder bias whose decoder rows are normalised after
    the step (ours) or inside the forward pass (``init="post"``), the same way for the whole family,
    and TopK (+AuxK) SAEs without decoder bias normalised after the step. Anything else trains on the
    plain per-SAE autograd step."""
    if not cfg.fused:
        return False
    norms = {m.sae.cfg.decoder_norm for m in members.values()}
    acts = {m.sae.cfg.activation for m in members.values()}
    if len(norms) != 1 or len(acts) != 1 or any(m.sae.cfg.use_b_dec for m in members.values()):
        return False
    return acts == {"relu"} or (acts == {"topk"} and norms == {"after_step"})


# Intra-op threads for the sparse step's gathers, sorts and scatters, and for the Adam update and
# renormalisation that follow it (None: torch's setting). They are many memory-bound operations. On a
# quiet 2-core machine two threads are faster (sparse step 44 ms against 66 ms on one); on a busy one
# each operation waits for its second thread to be scheduled, which made the sparse step as slow as the
# dense one (at load 4-5: 237 ms on two threads, 185 ms with the update on one, dense 520 ms). "auto"
# reads the load average: one thread once it exceeds 1.5 runnable threads per core. The results do
# not depend on the choice (every output element is summed by one thread in a fixed order; tested).
# The encoder matmul keeps torch's setting in both steps.
SPARSE_THREADS: int | str | None = "auto"
UPDATE_THREADS: int | str | None = "auto"


def _resolve_threads(n: int | str | None) -> int | None:
    if n != "auto":
        return n
    try:
        # the run's own threads count in the load: busy means others compete for the cores too
        busy = os.getloadavg()[0] > 1.5 * (os.cpu_count() or 1)
    except OSError:  # no load average on this platform
        busy = False
    return 1 if busy else None


@contextmanager
def _threads(n: int | None) -> Iterator[None]:
    """Run the block on ``n`` intra-op threads (results do not depend on it: every output element
    of the operations used under it is summed by one thread in a fixed order)."""
    old = torch.get_num_threads()
    n = _resolve_threads(n)
    if n is None or n == old:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


class _FusedFamily:
    """Every dictionary of the family in three concatenated tensors, trained by one hand-written
    step with the same mathematics as ``SparseAutoencoder.loss`` + Adam + renormalisation.

    With S = sum of the sizes, latents of size J occupying indices [o_J, o_J + J)::

        f      = ReLU(x W_enc + b_enc)                      [B, S]   one matmul for the family
        x̂_J    = f_J W_dec_J                                [B, d]   one matmul per size
        L_J    = mean((x̂_J - x)^2) + α mean_b sum_j f_bj
        g_J    = 2 (x̂_J - x) / (B d)                        dL_J / dx̂_J
        dW_dec_J = f_J^T g_J,   dpre_J = (g_J W_dec_J^T + α/B) * 1[f_J > 0]
        dW_enc = x^T dpre,      db_enc = sum_b dpre         one matmul for the family

    With ``decoder_norm="in_forward"`` the decoder used is Ŵ = W / ||W||_row and the gradient
    passes through the normalisation: dW = (dŴ - ŵ (ŵ · dŴ)) / ||W|| per row, and no
    renormalisation follows the step (HoagyC/sparse_coding's FunctionalSAE).

    Dense, forward 4·B·d·S FLOP and backward 6·B·d·S (no gradient with respect to x is needed):
    the 10·B·d·S floor. Only the encoder's x W_enc needs every latent: the other four products
    involve f or dpre, which are zero wherever a latent does not fire. Once fewer than
    ``sparse_below`` of the B·S entries of f are active, :meth:`_sparse_grads` computes them
    over the N active entries alone (2·N·d FLOP each); the gradients are the dense ones, exact
    zeros included, up to float rounding. Adam and the renormalisation stay over the full
    tensors: Adam moves a parameter with nonzero moments even when its gradient is zero.

    W_enc is stored latent-major, W_encᵀ [S, d], like W_dec: the sparse backward gathers and
    scatters whole latents as contiguous rows. The L_J share no parameters, so summing them and
    taking one Adam step over the concatenated tensors is the per-SAE update (Adam is
    elementwise and every SAE has taken the same number of steps).
    """

    def __init__(self, members: dict[int, _Member], lr: float, l1_coeff: float, sparse_below: float = 0.0,
                 aux_k: dict[int, int] | None = None, aux_coeff: float = 1 / 32, dead_window: int = 400) -> None:
        self.sizes = list(members)
        self.in_forward = next(iter(members.values())).sae.cfg.decoder_norm == "in_forward"
        # TopK: {size: k}, and AuxK's {size: k_aux}, coefficient and dead window (see _topk_grads)
        self.topk = ({s: m.sae.cfg.k for s, m in members.items()}
                     if next(iter(members.values())).sae.cfg.activation == "topk" else None)
        self.aux_k = aux_k or {s: 0 for s in self.sizes}
        self.aux_coeff, self.dead_window = aux_coeff, dead_window
        self.offsets = dict(zip(self.sizes, itertools.accumulate([0, *self.sizes[:-1]]), strict=True))
        saes = [m.sae for m in members.values()]
        self.W_encT = torch.nn.Parameter(torch.cat([s.W_enc.detach().t() for s in saes]).contiguous())  # [S, d]
        self.b_enc = torch.nn.Parameter(torch.cat([s.b_enc.detach() for s in saes]))  # [S]
        self.W_dec = torch.nn.Parameter(torch.cat([s.W_dec.detach() for s in saes], dim=0))  # [S, d]
        self.params = {"W_enc": self.W_encT, "b_enc": self.b_enc, "W_dec": self.W_dec}
        self.l1_coeff = l1_coeff
        device = self.W_dec.device
        # which dictionary each latent belongs to (its index in self.sizes)
        self.owner = torch.repeat_interleave(torch.arange(len(self.sizes), device=device),
                                             torch.tensor(self.sizes, device=device))  # [S]
        # the sparse kernels were measured on CPU only; elsewhere the dense step runs
        self.sparse_below = sparse_below if device.type == "cpu" else 0.0
        self.density = 1.0  # share of the B·S entries of f active in the last step
        self.sparse = False  # whether the last step ran sparse
        try:  # one kernel per tensor; the for-loop Adam where a build lacks it
            self.opt = torch.optim.Adam(self.params.values(), lr=lr, fused=True)
        except (RuntimeError, ValueError):
            self.opt = torch.optim.Adam(self.params.values(), lr=lr, foreach=True)

    def block(self, size: int) -> slice:
        return slice(self.offsets[size], self.offsets[size] + size)

    def latents(self, name: str, t: torch.Tensor, size: int) -> torch.Tensor:
        """Dictionary ``size``'s part of a latent-major family tensor (or of its Adam moment),
        in the dictionary's own layout (W_enc [d, size], b_enc [size], W_dec [size, d])."""
        t = t[self.block(size)]
        return t.t() if name == "W_enc" else t

    def view(self, name: str, size: int) -> torch.Tensor:
        """The slice of a concatenated parameter that belongs to dictionary ``size``."""
        return self.latents(name, self.params[name].data, size)

    def moment(self, name: str, slot: str, size: int) -> torch.Tensor | None:
        state = self.opt.state.get(self.params[name])
        if not state or slot not in state:
            return None
        return self.latents(name, state[slot], size)

    @torch.no_grad()
    def step(self, x: torch.Tensor, want_parts: bool, since: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, dict[int, dict[str, float]]]:
        """One optimizer step on batch x [B, d]; returns which latents fired on any sample [S]
        and, if asked, per-size losses. ``since`` [S]: steps since each latent last fired, before
        this step (TopK's AuxK needs it to know the dead latents; None: none is dead)."""
        if self.in_forward:
            norms = self.W_dec.norm(dim=1, keepdim=True).clamp_min(IN_FORWARD_EPS)  # [S, 1]
            w_dec = self.W_dec / norms  # Ŵ [S, d]
        else:
            w_dec = self.W_dec.detach()  # a Parameter would send embedding_bag down its autograd path
        if self.topk is not None:
            z = torch.addmm(self.b_enc, x, self.W_encT.t())  # [B, S]
            picks = self._topk_select(z, since)  # selection parallelises over rows: torch's threads
            with _threads(SPARSE_THREADS):
                fired, grad_dec, parts = self._topk_grads(x, w_dec, picks, want_parts)
            self.sparse, self.density = True, sum(self.topk.values()) / z.shape[1]
            self.W_dec.grad = grad_dec
            with _threads(UPDATE_THREADS):
                self.opt.step()
                self.W_dec.data /= self.W_dec.data.norm(dim=1, keepdim=True).clamp_min(1e-12)
            return fired, parts
        f = torch.addmm(self.b_enc, x, self.W_encT.t()).relu_()  # [B, S]
        active = f > 0
        flat = None
        if self.sparse_below > 0:  # the active entries, row-major: needed to decide and to run sparse
            with _threads(SPARSE_THREADS):
                # numpy's scan takes half of torch's nonzero on one CPU thread (4.5 ms against 9.5 ms)
                flat = (torch.from_numpy(np.flatnonzero(active.numpy())) if active.device.type == "cpu"
                        else active.view(-1).nonzero().squeeze(1))
            self.density = len(flat) / active.numel()
        self.sparse = flat is not None and self.density < self.sparse_below
        if self.sparse:
            with _threads(SPARSE_THREADS):
                fired, grad_dec, parts = self._sparse_grads(x, f, flat, w_dec, want_parts)
        else:
            fired, grad_dec, parts = self._dense_grads(x, f, active, w_dec, want_parts)
        if self.in_forward:  # through Ŵ = W / ||W||: remove the radial part, divide by the norm
            grad_dec = (grad_dec - w_dec * (w_dec * grad_dec).sum(1, keepdim=True)) / norms
        self.W_dec.grad = grad_dec
        with _threads(UPDATE_THREADS if self.sparse else None):
            self.opt.step()
            if not self.in_forward:
                self.W_dec.data /= self.W_dec.data.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return fired, parts

    def _parts(self, mse: list[float], l1: list[float], l0: list[float]) -> dict[int, dict[str, float]]:
        return {size: {"loss": mse[i] + self.l1_coeff * l1[i], "mse": mse[i], "l1": l1[i], "l0": l0[i]}
                for i, size in enumerate(self.sizes)}

    def _dense_grads(self, x: torch.Tensor, f: torch.Tensor, active: torch.Tensor, w_dec: torch.Tensor,
                     want_parts: bool) -> tuple[torch.Tensor, torch.Tensor, dict[int, dict[str, float]]]:
        """Every product over all S latents; sets the encoder's gradients, returns dŴ."""
        b, d = x.shape
        dpre = torch.empty_like(f)  # [B, S]
        grad_dec = torch.empty_like(self.W_dec)  # [S, d]
        mse, l1, l0 = [], [], []
        for size in self.sizes:
            blk = self.block(size)
            f_j, w_j = f[:, blk], w_dec[blk]
            err = f_j @ w_j - x  # [B, d]
            if want_parts:
                mse.append(float(err.pow(2).mean()))
                l1.append(float(f_j.sum(1).mean()))
                l0.append(float(active[:, blk].sum(1).float().mean()))
            g = err.mul_(2.0 / (b * d))  # dL_J / dx̂_J
            torch.mm(f_j.t(), g, out=grad_dec[blk])
            torch.addmm(torch.full((), self.l1_coeff / b, dtype=x.dtype, device=x.device), g, w_j.t(),
                        out=dpre[:, blk])
        dpre.mul_(active)
        self.W_encT.grad = dpre.t() @ x
        self.b_enc.grad = dpre.sum(0)
        return active.any(dim=0), grad_dec, self._parts(mse, l1, l0) if want_parts else {}

    def _sparse_grads(self, x: torch.Tensor, f: torch.Tensor, flat: torch.Tensor, w_dec: torch.Tensor,
                      want_parts: bool) -> tuple[torch.Tensor, torch.Tensor, dict[int, dict[str, float]]]:
        """The four products that involve f or dpre over the N active entries of f alone.

        ``flat`` [N] are the active entries' row-major indices into f [B, S]. Forward: one bag
        per (sample, size) of the latents active in it, x̂_J[b] = sum_j f_bj ŵ_j
        (``embedding_bag``). Backward, latent-major: dŴ_j = sum_b f_bj g_J[b] and
        dW_encᵀ_j = sum_b dpre_bj x_b are bags per latent (``embedding_bag``), and
        dpre_bj = g_J[b] · ŵ_j + α/B is computed at the active entries only (``sampled_addmm``)."""
        b, d = x.shape
        n_latents, n_sizes = f.shape[1], len(self.sizes)
        rows = flat // n_latents
        cols = flat - rows * n_latents
        vals = f.view(-1).index_select(0, flat)
        owner = self.owner.index_select(0, cols)
        bag_ends = torch.bincount(rows * n_sizes + owner, minlength=b * n_sizes).cumsum(0)
        x_hat = F.embedding_bag(cols, w_dec, torch.cat([bag_ends.new_zeros(1), bag_ends]), mode="sum",
                                per_sample_weights=vals, include_last_offset=True)  # [B * n_sizes, d]
        err = x_hat.view(b, n_sizes, d).sub_(x.unsqueeze(1))
        parts = {}
        if want_parts:
            l1 = torch.bincount(owner, weights=vals, minlength=n_sizes).to(x.dtype) / b
            l0 = torch.bincount(owner, minlength=n_sizes) / b
            parts = self._parts(err.pow(2).mean(dim=(0, 2)).tolist(), l1.tolist(), l0.tolist())
        g = err.mul_(2.0 / (b * d)).view(b * n_sizes, d)  # row b * n_sizes + J: dL_J / dx̂_J[b]
        # latent-major order (stable: samples ascending within a latent)
        latent, order = torch.sort(cols.int(), stable=True)
        latent = latent.long()
        sample = rows.index_select(0, order)
        counts = torch.bincount(cols, minlength=n_latents)
        offsets = torch.cat([counts.new_zeros(1), counts.cumsum(0)])  # [S + 1]
        g_row = sample * n_sizes + self.owner.index_select(0, latent)
        grad_dec = F.embedding_bag(g_row, g, offsets, mode="sum", per_sample_weights=vals.index_select(0, order),
                                   include_last_offset=True)  # [S, d]
        with warnings.catch_warnings():  # torch warns once that sparse CSR support is in beta
            warnings.simplefilter("ignore", UserWarning)
            pattern = torch.sparse_csr_tensor(offsets, g_row, torch.full_like(vals, self.l1_coeff / b),
                                              size=(n_latents, b * n_sizes), check_invariants=False)
            dpre = torch.sparse.sampled_addmm(pattern, w_dec, g.t()).values()  # [N], latent-major
        self.W_encT.grad = F.embedding_bag(sample, x, offsets, mode="sum", per_sample_weights=dpre,
                                           include_last_offset=True)  # [S, d]
        # .to: bincount gives int64 when nothing fired at all
        self.b_enc.grad = torch.bincount(latent, weights=dpre, minlength=n_latents).to(x.dtype)
        return counts > 0, grad_dec, parts

    def _topk_select(self, z: torch.Tensor, since: torch.Tensor | None
                     ) -> dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]]:
        """Per size J, from the pre-activations z_J [B, J]: the top k entries of each row (values
        ReLU(z), indices) and, for AuxK, the top k_aux among the dead latents (not fired in
        ``dead_window`` steps, this one included), or None when there is none. The dead latents'
        columns are gathered first, so the second selection runs over them alone."""
        picks = {}
        for size in self.sizes:
            z_j = z[:, self.block(size)]
            vals, idx = z_j.topk(self.topk[size], dim=1)  # [B, k]
            vals = vals.relu_()
            aux = (None, None)
            if since is not None and self.aux_k[size] and self.aux_coeff:
                fired_j = torch.zeros(size, dtype=torch.bool, device=z.device)
                fired_j[idx[vals > 0]] = True
                dead = ((since[self.block(size)] + 1 >= self.dead_window) & ~fired_j).nonzero().squeeze(1)
                if len(dead):
                    h, at = z_j.index_select(1, dead).topk(min(self.aux_k[size], len(dead)), dim=1)
                    aux = (h.relu_(), dead[at])
            picks[size] = (vals, idx, *aux)
        return picks

    def _topk_grads(self, x: torch.Tensor, w_dec: torch.Tensor,
                    picks: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]],
                    want_parts: bool) -> tuple[torch.Tensor, torch.Tensor, dict[int, dict[str, float]]]:
        """TopK + AuxK gradients over the selected entries alone (every code is at most k-sparse).

        Per size J with the entries :meth:`_topk_select` picked, values a = ReLU(z) there:
        x̂ = sum a_bj ŵ_j; g = 2 (x̂ - x) / (B d). Then at each selected (b, j):
        dz_bj = (g_b · ŵ_j) 1[a_bj > 0], dŴ_j += a_bj g_b, dW_encᵀ_j += dz_bj x_b, db_enc_j += dz_bj.
        AuxK, at the dead latents' top k_aux entries of each row, values h = ReLU(z):
        ê = sum h_bj ŵ_j; with e = x - x̂ and D = sum_b ||e_b - ē||², g_aux = aux_coeff · 2 (ê - e) / D
        enters the same sums at those entries. A dead latent did not fire this step, so the two
        sets of entries are disjoint. (With fewer than k_aux dead latents, all of them are used.)"""
        b, d = x.shape
        grad_enc, grad_b, grad_dec = (torch.zeros_like(t) for t in (self.W_encT, self.b_enc, self.W_dec))
        fired = torch.zeros(grad_b.shape[0], dtype=torch.bool, device=x.device)
        parts = {}
        for size in self.sizes:
            blk = self.block(size)
            vals, idx, h, hidx = picks[size]
            w_j = w_dec[blk]
            fired[blk][idx[vals > 0]] = True
            x_hat = _bag_decode(idx, vals, w_j)
            err = x_hat - x
            g = err * (2.0 / (b * d))
            enc_j, b_j, dec_j = grad_enc[blk], grad_b[blk], grad_dec[blk]
            _scatter_grads(idx, vals, g, x, w_j, enc_j, b_j, dec_j)
            aux = 0.0
            if h is not None:
                e = -err  # x - x̂, a constant target
                denom = (e - e.mean(0)).pow(2).sum()
                if float(denom) > 0:
                    diff = _bag_decode(hidx, h, w_j) - e
                    aux = float(diff.pow(2).sum() / denom) if want_parts else 0.0
                    _scatter_grads(hidx, h, diff * (2.0 * self.aux_coeff / denom), x, w_j, enc_j, b_j, dec_j)
            if want_parts:
                mse = float(err.pow(2).mean())
                parts[size] = {"loss": mse + self.aux_coeff * aux, "mse": mse, "l1": float(vals.sum(1).mean()),
                               "l0": float((vals > 0).sum(1).float().mean()), "aux": aux}
        self.W_encT.grad, self.b_enc.grad = grad_enc, grad_b
        return fired, grad_dec, parts

    def write_back(self, members: dict[int, _Member]) -> None:
        """Copy the trained slices into each dictionary's own module."""
        for size, m in members.items():
            for name in PARAM_NAMES:
                getattr(m.sae, name).data.copy_(self.view(name, size))


def _bag_decode(idx: torch.Tensor, vals: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """x̂_b = sum_i vals[b, i] w[idx[b, i]]: idx, vals [B, k], w [J, d] -> [B, d]."""
    return F.embedding_bag(idx, w, mode="sum", per_sample_weights=vals)


def _scatter_grads(idx: torch.Tensor, vals: torch.Tensor, g: torch.Tensor, x: torch.Tensor, w: torch.Tensor,
                   grad_enc: torch.Tensor, grad_b: torch.Tensor, grad_dec: torch.Tensor) -> None:
    """Add the gradients of sum_b g_b · x̂_b, x̂_b = sum_i vals[b, i] w[idx[b, i]], vals = ReLU(z) at
    idx, into the latent-major gradients (in place): dw_j += vals_bi g_b, dz_bi = (g_b · w_j) 1[vals > 0],
    dW_encᵀ_j += dz_bi x_b, db_enc_j += dz_bi, for j = idx[b, i].

    Latent-major, as in :meth:`_FusedFamily._sparse_grads`: the B·k entries sorted by latent (stable),
    dw_j and dW_encᵀ_j as one bag per latent (``embedding_bag``), and g_b · w_j at the selected
    entries alone (``sampled_addmm``): about 5x faster on one thread than gathering w[idx] [B, k, d]
    and scattering [B·k, d] products with ``index_add_``."""
    b, k = idx.shape
    n_latents = w.shape[0]
    flat = idx.reshape(-1)
    latent, order = torch.sort(flat.int(), stable=True)
    sample = order // k
    counts = torch.bincount(flat, minlength=n_latents)
    offsets = torch.cat([counts.new_zeros(1), counts.cumsum(0)])  # [J + 1]
    v = vals.reshape(-1).index_select(0, order)
    grad_dec += F.embedding_bag(sample, g, offsets, mode="sum", per_sample_weights=v, include_last_offset=True)
    with warnings.catch_warnings():  # torch warns once that sparse CSR support is in beta
        warnings.simplefilter("ignore", UserWarning)
        pattern = torch.sparse_csr_tensor(offsets, sample, torch.zeros_like(v), size=(n_latents, b),
                                          check_invariants=False)
        dz = torch.sparse.sampled_addmm(pattern, w, g.t()).values().mul_(v > 0)  # [B·k], latent-major
    grad_enc += F.embedding_bag(sample, x, offsets, mode="sum", per_sample_weights=dz, include_last_offset=True)
    grad_b += torch.bincount(latent.long(), weights=dz, minlength=n_latents).to(grad_b.dtype)


# ------------------------------------------------------------------ optimizer state by size
def _moments(members: dict[int, _Member], fused: _FusedFamily | None, size: int
             ) -> dict[str, dict[str, torch.Tensor | None]]:
    """Adam's exp_avg / exp_avg_sq of each trained tensor of dictionary ``size`` (views)."""
    m = members[size]
    names = [n for n, p in m.sae.named_parameters() if p.requires_grad]
    if fused is not None:
        return {n: {s: fused.moment(n, s, size) for s in ("exp_avg", "exp_avg_sq")} for n in names}
    params = dict(m.sae.named_parameters())
    out = {}
    for n in names:
        state = m.opt.state.get(params[n], {})
        out[n] = {s: state.get(s) for s in ("exp_avg", "exp_avg_sq")}
    return out


def _adam_steps(members: dict[int, _Member], fused: _FusedFamily | None) -> int:
    opts = [fused.opt] if fused is not None else [m.opt for m in members.values()]
    for opt in opts:
        for state in opt.state.values():
            return int(state["step"])
    return 0


def _set_moments(members: dict[int, _Member], fused: _FusedFamily | None, size: int,
                 moments: dict[str, dict[str, torch.Tensor]], step: int) -> None:
    m = members[size]
    if fused is not None:
        for name, slots in moments.items():
            p = fused.params[name]
            state = fused.opt.state.setdefault(p, {})
            for slot, value in slots.items():
                if slot not in state:
                    state[slot] = torch.zeros_like(p.data)
                fused.latents(name, state[slot], size).copy_(value)
            state["step"] = torch.tensor(float(step))
        return
    params = dict(m.sae.named_parameters())
    for name, slots in moments.items():
        state = m.opt.state.setdefault(params[name], {})
        for slot, value in slots.items():
            state[slot] = value.clone()
        state["step"] = torch.tensor(float(step))


# ------------------------------------------------------------------ checkpoints
def _save_checkpoint(path: Path, members: dict[int, _Member], fused: _FusedFamily | None,
                     step: int, history: list[dict]) -> None:
    """Per-size weights, Adam moments and firing record: the same files whichever step trained them."""
    if fused is not None:
        fused.write_back(members)
    tensors: dict[str, torch.Tensor] = {}
    for size, m in members.items():
        for name, t in m.sae.state_dict().items():
            tensors[f"{size}.model.{name}"] = t.detach().cpu().contiguous()
        for field_name in ("steps_since_fired", "fire_steps", "last_fired"):
            tensors[f"{size}.{field_name}"] = getattr(m, field_name).cpu()
        for name, slots in _moments(members, fused, size).items():
            for slot, value in slots.items():
                if value is not None:
                    tensors[f"{size}.adam.{name}.{slot}"] = value.detach().cpu().contiguous()
    meta = {"step": step, "adam_step": _adam_steps(members, fused), "sizes": sorted(members),
            "history": history}
    with atomic_dir(path) as tmp:
        save_file(tensors, tmp / "state.safetensors")
        (tmp / "meta.json").write_text(json.dumps(meta))


def _load_checkpoint(path: Path, members: dict[int, _Member], fused: _FusedFamily | None,
                     device: torch.device) -> tuple[int, list[dict]]:
    tensors = load_file(path / "state.safetensors")
    meta = json.loads((path / "meta.json").read_text())
    if meta.get("sizes") != sorted(members):
        raise ValueError(f"checkpoint {path} is for sizes {meta.get('sizes')}, not {sorted(members)}")
    for size, m in members.items():
        prefix = f"{size}.model."
        m.sae.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
        for field_name in ("steps_since_fired", "fire_steps", "last_fired"):
            setattr(m, field_name, tensors[f"{size}.{field_name}"].to(device))
        if fused is not None:
            for name in PARAM_NAMES:
                fused.view(name, size).copy_(getattr(m.sae, name).data)
        moments: dict[str, dict[str, torch.Tensor]] = {}
        prefix = f"{size}.adam."
        for key, value in tensors.items():
            if key.startswith(prefix):
                name, slot = key[len(prefix):].split(".")
                moments.setdefault(name, {})[slot] = value.to(device)
        if moments:
            _set_moments(members, fused, size, moments, meta["adam_step"])
    return meta["step"], meta["history"]


# ------------------------------------------------------------------ resampling
RESAMPLE_POOL_OFFSET = 1 << 32  # batch index of the resampling pool: far beyond any training stream
RESAMPLE_POOL_BATCH = 4096  # rows per source.batch call for the pool (few calls; a pool whatever the training batch)


def _resample_pool(source: ActivationSource, cfg: TrainConfig, step: int, device: torch.device,
                   scale: float) -> torch.Tensor:
    """The activations dead latents are resampled from at ``step``: ``cfg.resample_pool`` rows (a source
    with fewer rows gives each of them once) from batches ``RESAMPLE_POOL_OFFSET + k`` of
    ``RESAMPLE_POOL_BATCH`` rows, a new pool at every resampling: billions of training steps away from
    the training stream, and from the report's held-out batches (index 10^6 on). Addressed by batch
    index like training, so a resumed run draws the same pool."""
    rows = cfg.resample_pool
    small = hasattr(source, "__len__") and len(source) <= rows
    if small:  # two epochs' length hold one whole epoch, wherever they start: every row, then each once
        rows = 2 * len(source)
    n_batches = -(-rows // RESAMPLE_POOL_BATCH)
    first = RESAMPLE_POOL_OFFSET + (step // cfg.resample_every) * n_batches
    pool = torch.cat([source.batch(first + k, RESAMPLE_POOL_BATCH) for k in range(n_batches)])[:rows]
    if small:
        pool = torch.unique(pool, dim=0)
    pool = pool.to(device, torch.float32)
    return pool * scale if scale != 1.0 else pool


@torch.no_grad()
def _reconstruction_errors(m: _Member, weights: dict[str, torch.Tensor], pool: torch.Tensor) -> torch.Tensor:
    """||x̂ - x||² of every pool row [P], by the dictionary's own forward pass, in chunks of rows."""
    w_enc, b_enc, w_dec, b_dec = (weights[n] for n in ("W_enc", "b_enc", "W_dec", "b_dec"))
    if m.sae.cfg.decoder_norm == "in_forward":
        w_dec = w_dec / w_dec.norm(dim=1, keepdim=True).clamp_min(IN_FORWARD_EPS)
    chunk = max(1, (1 << 22) // w_enc.shape[1])  # f of a chunk: 16 MiB
    out = []
    for x in pool.split(chunk):
        f = torch.addmm(b_enc, x - b_dec, w_enc).relu_()
        out.append((_decode(f, w_dec) + b_dec - x).pow_(2).sum(1))
    return torch.cat(out)


def _decode(f: torch.Tensor, w_dec: torch.Tensor) -> torch.Tensor:
    """f [N, m] @ w_dec [m, d], over the active entries of f alone when few are (on CPU)."""
    flat = f.view(-1).nonzero().squeeze(1) if f.device.type == "cpu" else None
    if flat is None or len(flat) >= SPARSE_BELOW * f.numel():
        return f @ w_dec
    rows = flat // f.shape[1]
    ends = torch.bincount(rows, minlength=f.shape[0]).cumsum(0)
    return F.embedding_bag(flat - rows * f.shape[1], w_dec, torch.cat([ends.new_zeros(1), ends]), mode="sum",
                           per_sample_weights=f.view(-1).index_select(0, flat), include_last_offset=True)


@torch.no_grad()
def _resample_dead(m: _Member, weights: dict[str, torch.Tensor], moments: dict[str, dict[str, torch.Tensor | None]],
                   pool: torch.Tensor, taken: torch.Tensor, dead_window: int, step: int) -> int:
    """Neuron resampling of Bricken et al. 2023 ("Towards Monosemanticity"): each dead latent (not fired
    in ``dead_window`` steps) is re-initialised towards an input the dictionary reconstructs badly.

    Inputs are drawn from ``pool`` (:func:`_resample_pool`, one per resampling, shared by the family)
    without replacement, with probability ∝ L(x)² where L(x) = ||x̂ - x||² is THIS dictionary's
    reconstruction loss, by a generator seeded from the dictionary's seed and the step (independent
    across dictionaries, and the same after a resume). ``taken`` [P] marks the pool rows drawn by the
    family's earlier dictionaries at this resampling; they are not drawn again (it is updated here), so
    no two resampled latents of the family, in one dictionary or across two, start from the same input
    (identical rows in one dictionary get identical gradients and never separate; across dictionaries
    they would pass for recurring features). A drawn x gives the direction u = (x - b_dec) / ||x - b_dec||,
    and then, as in Bricken et al.: decoder row u; encoder column 0.2 · (mean encoder norm of the alive
    latents) · u; b_enc 0; the latent's Adam moments zeroed. ``weights`` are the dictionary's W_enc,
    b_enc, W_dec, b_dec (views written in place); ``moments`` its Adam moments."""
    dead = (m.steps_since_fired >= dead_window).nonzero().squeeze(1)
    if len(dead) == 0:
        return 0
    w_enc, b_enc, w_dec, b_dec = (weights[n] for n in ("W_enc", "b_enc", "W_dec", "b_dec"))
    prob = _reconstruction_errors(m, weights, pool).double().cpu().pow(2)
    prob += prob.max() * 1e-12 + 1e-300  # every row drawable, however well reconstructed
    gen = torch.Generator(device="cpu").manual_seed((m.sae.cfg.seed * 1_000_003 + step) % 2**63)
    picks: list[torch.Tensor] = []
    while (need := len(dead) - sum(len(p) for p in picks)) > 0:
        if taken.all():  # a pool smaller than the family's dead latents: start over on it
            taken.zero_()
        pick = torch.multinomial(prob.masked_fill(taken, 0.0), min(need, int((~taken).sum())),
                                 replacement=False, generator=gen)
        taken[pick] = True
        picks.append(pick)
    directions = pool[torch.cat(picks).to(pool.device)] - b_dec
    directions /= directions.norm(dim=1, keepdim=True).clamp_min(1e-12)
    alive = m.steps_since_fired < dead_window
    enc_norm = w_enc[:, alive].norm(dim=0).mean() if alive.any() else torch.tensor(1.0)
    w_dec[dead] = directions
    w_enc[:, dead] = directions.t() * 0.2 * enc_norm
    b_enc[dead] = 0.0
    for name, slots in moments.items():
        if LATENT_DIM[name] is None:
            continue
        for value in slots.values():
            if value is not None:
                if LATENT_DIM[name] == 1:
                    value[:, dead] = 0.0
                else:
                    value[dead] = 0.0
    m.steps_since_fired[dead] = 0
    return len(dead)


def _weights(m: _Member, fused: _FusedFamily | None, size: int) -> dict[str, torch.Tensor]:
    if fused is None:
        return {n: getattr(m.sae, n).data for n in (*PARAM_NAMES, "b_dec")}
    return {**{n: fused.view(n, size) for n in PARAM_NAMES}, "b_dec": m.sae.b_dec.data}


def _record_firing(m: _Member, fired: torch.Tensor, step: int) -> None:
    """fired [d_sae] bool: did each latent fire on any sample of this step's batch."""
    m.steps_since_fired = torch.where(fired, 0, m.steps_since_fired + 1)
    m.fire_steps += fired
    m.last_fired = torch.where(fired, step, m.last_fired)


def topk_aux_loss(sae: SparseAutoencoder, x: torch.Tensor, dead: torch.Tensor, aux_k: int, aux_coeff: float
                  ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """TopK + AuxK loss by autograd (the module docstring's formula): the MSE of ``sae``'s TopK
    reconstruction plus ``aux_coeff`` times the normalised error of the top ``aux_k`` latents among
    ``dead`` [d_sae] reconstructing e = x - x̂ (detached; Gao et al.'s ``normalized_mse``, 0 when e
    does not vary over the batch)."""
    z = sae.pre_activations(x)
    f = sae.encode(x)
    x_hat = sae.decode(f)
    mse = (x_hat - x).pow(2).mean()
    aux = _aux_term(sae, z, x, x_hat, dead, aux_k) if aux_coeff else torch.zeros((), device=x.device)
    loss = mse + aux_coeff * aux
    return loss, {"loss": loss.detach(), "mse": mse.detach(), "l1": f.sum(-1).mean().detach(), "f": f.detach(),
                  "aux": aux.detach()}


class _JumpReLU(torch.autograd.Function):
    """f = ReLU(z) · H(z - θ) [B, S] from z [B, S] and θ [S]; backward: ∂f/∂z = H(z - θ) (for θ ≥ 0), and the
    pseudo-derivative ∂f/∂θ = -(θ/ε) K((z - θ)/ε), K(u) = 1[|u| < 1/2] (Rajamanoharan et al. 2024, eq. 11)."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, theta: torch.Tensor, eps: float) -> torch.Tensor:
        ctx.save_for_backward(z, theta)
        ctx.eps = eps
        return z.relu() * (z > theta)

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        z, theta = ctx.saved_tensors
        near = ((z - theta).abs() < ctx.eps / 2).to(z.dtype)
        return g * ((z > theta) & (z > 0)), -(g * near).sum(0) * theta.relu() / ctx.eps, None


class _JumpStep(torch.autograd.Function):
    """H(z - θ) [B, S]; backward: no gradient to z, ∂H/∂θ = -(1/ε) K((z - θ)/ε) (their eq. 12)."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, theta: torch.Tensor, eps: float) -> torch.Tensor:
        ctx.save_for_backward(z, theta)
        ctx.eps = eps
        return (z > theta).to(z.dtype)

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> tuple[None, torch.Tensor, None]:
        z, theta = ctx.saved_tensors
        near = ((z - theta).abs() < ctx.eps / 2).to(z.dtype)
        return None, -(g * near).sum(0) / ctx.eps, None


def jumprelu_loss(sae: SparseAutoencoder, x: torch.Tensor, l0_coeff: float, eps: float
                  ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """JumpReLU with a trained threshold: MSE + l0_coeff · mean_b ||f_b||_0, straight-through (module docstring)."""
    z = sae.pre_activations(x)
    f = _JumpReLU.apply(z, sae.threshold, eps)
    mse = (sae.decode(f) - x).pow(2).mean()
    l0 = _JumpStep.apply(z, sae.threshold, eps).sum(-1).mean()
    loss = mse + l0_coeff * l0
    return loss, {"loss": loss.detach(), "mse": mse.detach(), "l1": f.sum(-1).mean().detach(), "f": f.detach()}


def batchtopk_aux_loss(sae: SparseAutoencoder, x: torch.Tensor, k: int, dead: torch.Tensor, aux_k: int,
                       aux_coeff: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """BatchTopK: the top B·k entries of ReLU(z) over the batch, MSE plus the AuxK term of
    :func:`topk_aux_loss`. ``parts["min_kept"]`` is the smallest kept positive activation (None if none),
    from which the inference threshold is estimated."""
    z = sae.pre_activations(x)
    a = z.relu()
    top = a.reshape(-1).topk(min(x.shape[0] * k, a.numel()))
    f = torch.zeros_like(a).reshape(-1).scatter(0, top.indices, top.values).view_as(a)
    x_hat = sae.decode(f)
    mse = (x_hat - x).pow(2).mean()
    aux = _aux_term(sae, z, x, x_hat, dead, aux_k)
    loss = mse + aux_coeff * aux
    kept = top.values[top.values > 0]
    return loss, {"loss": loss.detach(), "mse": mse.detach(), "l1": f.sum(-1).mean().detach(), "f": f.detach(),
                  "aux": aux.detach(), "min_kept": kept.min().detach() if len(kept) else None}


def _aux_term(sae: SparseAutoencoder, z: torch.Tensor, x: torch.Tensor, x_hat: torch.Tensor, dead: torch.Tensor,
              aux_k: int) -> torch.Tensor:
    """AuxK's ||e - ê||² / ||e - ē||² (0 without dead latents or when e does not vary over the batch)."""
    if not (bool(dead.any()) and aux_k):
        return torch.zeros((), device=x.device)
    top = z.masked_fill(~dead, 0.0).topk(min(aux_k, z.shape[1]), dim=1)
    h = torch.zeros_like(z).scatter(1, top.indices, top.values.relu())
    e = (x - x_hat).detach()
    denom = (e - e.mean(0)).pow(2).sum()
    if float(denom) <= 0:
        return torch.zeros((), device=x.device)
    return (h @ sae.decoder_rows - e).pow(2).sum() / denom


def _plain_step(m: _Member, x: torch.Tensor, cfg: TrainConfig | None = None, step: int = 0
                ) -> tuple[torch.Tensor, dict[str, float]]:
    """Today's per-SAE step: autograd through ``SparseAutoencoder.loss`` (TopK: :func:`topk_aux_loss`; BatchTopK:
    :func:`batchtopk_aux_loss`; JumpReLU: :func:`jumprelu_loss`), Adam, renormalise. ``step`` (0-based) starts
    BatchTopK's threshold estimate."""
    act = cfg.activation if cfg is not None else m.sae.cfg.activation
    size = m.sae.cfg.d_sae
    if act in ("topk", "batchtopk") and cfg is not None:
        if act == "topk":
            with torch.no_grad():
                fired = (m.sae.encode(x) > 0).any(dim=0)
            dead = (m.steps_since_fired + 1 >= cfg.dead_window) & ~fired
            loss, parts = topk_aux_loss(m.sae, x, dead, cfg.aux_k_for(m.sae.cfg.d_in, size), cfg.aux_coeff)
        else:
            with torch.no_grad():
                a = m.sae.pre_activations(x).relu()
                fired = torch.zeros(a.numel(), dtype=torch.bool, device=a.device)
                top = a.reshape(-1).topk(min(x.shape[0] * cfg.k_for(size), a.numel()))
                fired[top.indices[top.values > 0]] = True
                fired = fired.view_as(a).any(dim=0)
            dead = (m.steps_since_fired + 1 >= cfg.dead_window) & ~fired
            loss, parts = batchtopk_aux_loss(m.sae, x, cfg.k_for(size), dead, cfg.aux_k_for(m.sae.cfg.d_in, size),
                                             cfg.aux_coeff)
    elif act == "jumprelu" and cfg is not None:
        loss, parts = jumprelu_loss(m.sae, x, cfg.l0_coeff, cfg.jump_bandwidth)
    else:
        loss, parts = m.sae.loss(x)
    m.opt.zero_grad(set_to_none=True)
    loss.backward()
    m.opt.step()
    if getattr(m.sae.cfg, "decoder_norm", "after_step") == "after_step":
        m.sae.normalize_decoder()
    with torch.no_grad():
        if act == "jumprelu" and cfg is not None:
            m.sae.threshold.clamp_(min=0.0)
        elif act == "batchtopk" and parts.get("min_kept") is not None:  # the inference threshold's estimate
            beta = 0.0 if step == 0 else cfg.threshold_beta
            m.sae.threshold.mul_(beta).add_((1 - beta) * parts["min_kept"])
    f = parts["f"]
    out = {"loss": float(parts["loss"]), "mse": float(parts["mse"]), "l1": float(parts["l1"]),
           "l0": float((f > 0).sum(1).float().mean())}
    if "aux" in parts:
        out["aux"] = float(parts["aux"])
    return f, out


def latent_stats(members: dict[int, _Member], n_steps: int, cfg: TrainConfig, d_in: int
                 ) -> dict[str, torch.Tensor]:
    """Per latent of each size: steps fired in, last step fired, and the cosine of its final
    decoder row with its initial one (the initialisation is regenerated from the seed)."""
    out: dict[str, torch.Tensor] = {}
    for size, m in members.items():
        init = SparseAutoencoder(_sae_config(cfg, d_in, size, {})).features
        final = m.sae.features.cpu()
        cos = (init * final).sum(1) / (init.norm(dim=1) * final.norm(dim=1)).clamp_min(1e-12)
        out[f"{size}.fire_steps"] = m.fire_steps.cpu()
        out[f"{size}.last_fired"] = m.last_fired.cpu()
        out[f"{size}.init_cosine"] = cos.float().contiguous()
    out["n_steps"] = torch.tensor([n_steps])
    return out


def load_latent_stats(family_dir: str | os.PathLike) -> dict[int, dict[str, torch.Tensor]] | None:
    """``{size: {fire_steps, last_fired, init_cosine}}`` from a trained family folder (None if absent)."""
    path = Path(family_dir) / LATENT_STATS_FILE
    if not path.is_file():
        return None
    tensors = load_file(path)
    n_steps = int(tensors.pop("n_steps")[0])
    out: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        size, name = key.split(".", 1)
        out.setdefault(int(size), {"n_steps": torch.tensor(n_steps)})[name] = value
    return out


# ------------------------------------------------------------------ the loop
def train_family(
    source: ActivationSource,
    cfg: TrainConfig | None = None,
    out_dir: str | os.PathLike | None = None,
    on_step: Callable[[int], None] | None = None,
) -> tuple[dict[int, SparseAutoencoder], list[dict[str, float]]]:
    """Train one SAE per size in ``cfg.sizes`` on the same batches; return them and the history.

    With ``out_dir`` the run checkpoints there every ``cfg.checkpoint_every`` steps,
    resumes from an existing checkpoint, and finally writes ``sae_<size>/`` folders,
    ``latent_stats.safetensors`` (per latent: steps fired in, last step fired, cosine with
    its initial decoder row), ``history.json`` and, last, ``family.json``. ``on_step(step)``
    is called after each step (tests use it to interrupt a run).

    The replication SAE (ReLU, no decoder bias) trains on the fused step of
    :class:`_FusedFamily`; other settings, or ``cfg.fused=False``, on the plain per-SAE step.
    """
    cfg = cfg or TrainConfig()
    d_in = getattr(source, "d_in", None)
    if not isinstance(d_in, int) or d_in <= 0:
        raise ValueError(f"the activation source must have a positive integer d_in, got {d_in!r}")
    device = resolve_device(cfg.device)
    provenance = {
        **source.describe(),
        "seed": cfg.seed,
        "training_samples": cfg.n_steps * cfg.batch_size,
        "train_config": cfg.to_dict(),
        "sae_core_version": __version__,
    }
    scale = activation_scale(source, cfg.batch_size, d_in) if cfg.normalize_activations else 1.0
    provenance["activation_scale"] = scale
    members = _make_family(cfg, d_in, provenance, device, fused=False)
    fused = None
    if uses_fused_step(cfg, members):
        for m in members.values():
            m.opt = None
        aux_k = {s: cfg.aux_k_for(d_in, s) for s in cfg.sizes} if cfg.activation == "topk" else None
        fused = _FusedFamily(members, cfg.lr, cfg.l1_coeff, cfg.sparse_below, aux_k, cfg.aux_coeff, cfg.dead_window)
    history: list[dict[str, float]] = []
    start = 0
    out = Path(out_dir) if out_dir is not None else None
    if out is not None and (out / CHECKPOINT_DIR / "meta.json").is_file():
        start, history = _load_checkpoint(out / CHECKPOINT_DIR, members, fused, device)

    bar = tqdm(total=cfg.n_steps, initial=start, disable=not cfg.progress, desc=f"SAEs {list(cfg.sizes)}",
               mininterval=2.0)  # a line every 2 s at most when make book streams it
    for step in range(start, cfg.n_steps):
        x = source.batch(step, cfg.batch_size)
        check_batch(x, d_in, step)
        x = x.to(device, torch.float32, non_blocking=True)
        if scale != 1.0:
            x = x * scale
        if cfg.lr_warmup or cfg.lr_decay:
            for opt in [fused.opt] if fused is not None else [m.opt for m in members.values()]:
                for group in opt.param_groups:
                    group["lr"] = lr_at(cfg, step)
        log = (step + 1) % cfg.log_every == 0 or step + 1 == cfg.n_steps
        if fused is not None:
            if fused.topk is not None:  # AuxK needs the steps since each latent fired
                since = torch.cat([m.steps_since_fired for m in members.values()])
                fired_all, fused_parts = fused.step(x, want_parts=log, since=since)
            else:
                fired_all, fused_parts = fused.step(x, want_parts=log)
        # no resampling in the last half-interval: a resampled latent needs steps to learn
        resample = (cfg.resample_every and (step + 1) % cfg.resample_every == 0
                    and cfg.n_steps - (step + 1) >= cfg.resample_every // 2)
        pool = taken = None
        for size, m in members.items():
            if fused is not None:
                fired, parts = fired_all[fused.block(size)], fused_parts.get(size)
            else:
                f, parts = _plain_step(m, x, cfg, step)
                fired = (f > 0).any(dim=0)
            _record_firing(m, fired, step + 1)
            if resample and bool((m.steps_since_fired >= cfg.dead_window).any()):
                if pool is None:  # one pool for the family, drawn only when some latent is dead
                    pool = _resample_pool(source, cfg, step + 1, device, scale)
                    taken = torch.zeros(len(pool), dtype=torch.bool)
                _resample_dead(m, _weights(m, fused, size), _moments(members, fused, size), pool, taken,
                               cfg.dead_window, step + 1)
            if log:
                history.append({
                    "step": step + 1, "d_sae": size, **parts,
                    # counted only once a full window has passed, so early steps are not all "dead"
                    "dead_frac": float((m.steps_since_fired >= cfg.dead_window).float().mean()),
                })
        bar.update(1)
        if log:
            bar.set_postfix(mse=f"{history[-1]['mse']:.2e}", l0=f"{history[-1]['l0']:.1f}")
        # the last step is always checkpointed: a longer run of the same settings starts from it
        if out is not None and cfg.checkpoint_every and ((step + 1) % cfg.checkpoint_every == 0
                                                         or step + 1 == cfg.n_steps):
            _save_checkpoint(out / CHECKPOINT_DIR, members, fused, step + 1, history)
        if on_step is not None:
            on_step(step + 1)
    bar.close()

    if fused is not None:
        fused.write_back(members)
    saes = {size: m.sae.eval().cpu() for size, m in members.items()}
    if out is not None:
        for size, sae in saes.items():
            sae.save(out / f"sae_{size}")
        save_file(latent_stats(members, cfg.n_steps, cfg, d_in), out / LATENT_STATS_FILE)
        write_json_atomic(out / "history.json", history)
        write_json_atomic(out / FAMILY_FILE, {"sizes": list(cfg.sizes), "provenance": provenance,
                                              "activation_scale": scale})
    return saes, history


def activation_scale(source: ActivationSource, batch_size: int, d_in: int, n_batches: int = 64) -> float:
    """c = sqrt(d_in / mean ||x||^2) over the first ``n_batches`` training batches, so that c·x has
    mean squared norm d_in (SAELens' and dictionary_learning's normalisation). The SAEs of a family
    trained with it expect c·x: :class:`sae_core.report.pipeline.Family` applies c to held-out samples."""
    total, count = 0.0, 0
    for i in range(n_batches):
        x = source.batch(i, batch_size).double()
        total += float(x.pow(2).sum())
        count += x.shape[0]
    if total <= 0:
        raise ValueError("the activations are all zero: they cannot be normalised")
    return float((d_in / (total / count)) ** 0.5)


def family_is_complete(out_dir: str | os.PathLike) -> bool:
    return (Path(out_dir) / FAMILY_FILE).is_file()


class TensorSource:
    """Activations held in a tensor [N, d_in], served in seeded shuffled epochs.

    Batch ``k`` is taken from epoch ``k*B // N`` whose permutation is seeded by
    ``(seed, epoch)``; any batch can be regenerated, so resumed training is exact.
    """

    def __init__(self, activations: torch.Tensor, seed: int = 0, name: str = "tensor") -> None:
        if activations.ndim != 2:
            raise ValueError(f"activations must be [N, d_in], got shape {tuple(activations.shape)}")
        if activations.shape[0] == 0:
            raise ValueError("the activation tensor is empty (0 rows)")
        self.x = activations
        self.d_in = int(activations.shape[1])
        self.seed = seed
        self.name = name

    def __len__(self) -> int:
        return self.x.shape[0]

    def batch(self, index: int, batch_size: int) -> torch.Tensor:
        n = len(self)
        positions = torch.arange(index * batch_size, (index + 1) * batch_size)
        epochs, offsets = positions // n, positions % n
        rows = torch.empty(batch_size, dtype=torch.long)
        for epoch in epochs.unique().tolist():
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 7919 + epoch))
            sel = epochs == epoch
            rows[sel] = perm[offsets[sel]]
        return self.x[rows]

    def describe(self) -> dict[str, Any]:
        return {"source": self.name, "n_samples": len(self), "d_in": self.d_in}
