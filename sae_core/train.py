"""Train a family of SAEs of different widths in one pass over the same activations.

Every batch goes to every dictionary, so the family differs only in ``d_sae`` and its
initialisation seed. Defaults follow the MCS replication: Adam, lr 1e-3, batch 256,
``loss = MSE + 1e-3 * L1``, decoder rows renormalised after each step.

Checkpoints (``checkpoint/`` under ``out_dir``: safetensors + JSON, no pickles) hold
the weights, the Adam moments, the dead-latent counters and the history. Batches are
addressed by step number (``source.batch(step, batch_size)``), so a resumed run sees
exactly the batches it would have seen and ends with the same weights.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from sae_core import __version__
from sae_core.device import resolve_device
from sae_core.io import atomic_dir, load_optimizer_tensors, optimizer_tensors, write_json_atomic
from sae_core.sae import SAEConfig, SparseAutoencoder

CHECKPOINT_DIR = "checkpoint"
FAMILY_FILE = "family.json"  # written last: its presence marks a finished family


class ActivationSource(Protocol):
    """What the training loop needs from a source of activations."""

    d_in: int

    def batch(self, index: int, batch_size: int) -> torch.Tensor:  # [batch_size, d_in]
        ...

    def describe(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class TrainConfig:
    sizes: tuple[int, ...] = (256, 512, 1024, 2048, 4096, 8192)  # dictionary widths d_sae
    n_steps: int = 4000  # optimizer steps; every step feeds one batch to every SAE
    batch_size: int = 256  # replication: 256
    lr: float = 1e-3  # Adam learning rate (replication: 1e-3)
    l1_coeff: float = 1e-3  # alpha in MSE + alpha * L1 (replication: 1e-3)
    use_b_dec: bool = False  # learned decoder bias (off in the replication)
    dead_window: int = 400  # a latent is dead if it has not fired in this many steps
    resample_every: int = 0  # >0: resample dead latents every this many steps (off: replication)
    log_every: int = 50  # history row every this many steps
    checkpoint_every: int = 500  # write a resumable checkpoint every this many steps (0: never)
    seed: int = 0  # SAE initialisation seeds are derived from this and d_sae
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
        for name in ("n_steps", "batch_size", "dead_window", "log_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"TrainConfig.{name} must be positive, got {getattr(self, name)}")
        if self.lr <= 0 or self.l1_coeff < 0:
            raise ValueError("need lr > 0 and l1_coeff >= 0")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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
    """One dictionary of the family with its optimizer and dead-latent counter."""

    sae: SparseAutoencoder
    opt: torch.optim.Adam
    steps_since_fired: torch.Tensor  # [d_sae] long


def _make_family(cfg: TrainConfig, d_in: int, provenance: dict[str, Any], device: torch.device) -> dict[int, _Member]:
    members = {}
    for size in cfg.sizes:
        sae_cfg = SAEConfig(
            d_in=d_in, d_sae=size, l1_coeff=cfg.l1_coeff, use_b_dec=cfg.use_b_dec,
            seed=sae_seed(cfg.seed, size), provenance=provenance,
        )
        sae = SparseAutoencoder(sae_cfg).to(device)
        params = [p for p in sae.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=cfg.lr)
        members[size] = _Member(sae, opt, torch.zeros(size, dtype=torch.long, device=device))
    return members


# ------------------------------------------------------------------ checkpoints
def _save_checkpoint(path: Path, members: dict[int, _Member], step: int, history: list[dict]) -> None:
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, Any] = {"step": step, "history": history, "param_groups": {}}
    for size, m in members.items():
        for name, t in m.sae.state_dict().items():
            tensors[f"{size}.model.{name}"] = t.detach().cpu().contiguous()
        tensors[f"{size}.steps_since_fired"] = m.steps_since_fired.cpu()
        opt_tensors, meta["param_groups"][str(size)] = optimizer_tensors(m.opt, f"{size}.opt")
        tensors.update(opt_tensors)
    with atomic_dir(path) as tmp:
        save_file(tensors, tmp / "state.safetensors")
        (tmp / "meta.json").write_text(json.dumps(meta))


def _load_checkpoint(path: Path, members: dict[int, _Member], device: torch.device) -> tuple[int, list[dict]]:
    tensors = load_file(path / "state.safetensors")
    meta = json.loads((path / "meta.json").read_text())
    sizes_in_ckpt = sorted(int(k) for k in meta["param_groups"])
    if sizes_in_ckpt != sorted(members):
        raise ValueError(f"checkpoint {path} is for sizes {sizes_in_ckpt}, not {sorted(members)}")
    for size, m in members.items():
        prefix = f"{size}.model."
        m.sae.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
        m.steps_since_fired = tensors[f"{size}.steps_since_fired"].to(device)
        load_optimizer_tensors(m.opt, tensors, meta["param_groups"][str(size)], f"{size}.opt", device)
    return meta["step"], meta["history"]


# ------------------------------------------------------------------ resampling
@torch.no_grad()
def _resample_dead(m: _Member, x: torch.Tensor, dead_window: int) -> int:
    """Re-initialise dead latents towards inputs the SAE reconstructs worst (Bricken et al. 2023)."""
    dead = (m.steps_since_fired >= dead_window).nonzero().squeeze(1)
    if len(dead) == 0:
        return 0
    sae = m.sae
    err = (sae(x) - x).pow(2).sum(1)
    gen = torch.Generator(device="cpu").manual_seed(int(m.steps_since_fired.sum()))
    pick = torch.multinomial(err.cpu() + 1e-12, len(dead), replacement=True, generator=gen).to(x.device)
    directions = x[pick] - sae.b_dec
    directions /= directions.norm(dim=1, keepdim=True).clamp_min(1e-12)
    alive = m.steps_since_fired < dead_window
    enc_norm = sae.W_enc[:, alive].norm(dim=0).mean() if alive.any() else torch.tensor(1.0)
    sae.W_dec[dead] = directions
    sae.W_enc[:, dead] = directions.t() * 0.2 * enc_norm
    sae.b_enc[dead] = 0.0
    for p in (sae.W_dec, sae.W_enc, sae.b_enc):
        state = m.opt.state.get(p, {})
        for slot in ("exp_avg", "exp_avg_sq"):
            if slot in state:
                if p is sae.W_enc:
                    state[slot][:, dead] = 0.0
                else:
                    state[slot][dead] = 0.0
    m.steps_since_fired[dead] = 0
    return len(dead)


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
    ``history.json`` and, last, ``family.json``. ``on_step(step)`` is called after each
    step (tests use it to interrupt a run).
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
    members = _make_family(cfg, d_in, provenance, device)
    history: list[dict[str, float]] = []
    start = 0
    out = Path(out_dir) if out_dir is not None else None
    if out is not None and (out / CHECKPOINT_DIR / "meta.json").is_file():
        start, history = _load_checkpoint(out / CHECKPOINT_DIR, members, device)

    bar = tqdm(total=cfg.n_steps, initial=start, disable=not cfg.progress, desc=f"SAEs {list(cfg.sizes)}")
    for step in range(start, cfg.n_steps):
        x = source.batch(step, cfg.batch_size)
        check_batch(x, d_in, step)
        x = x.to(device, torch.float32, non_blocking=True)
        log = (step + 1) % cfg.log_every == 0 or step + 1 == cfg.n_steps
        for size, m in members.items():
            loss, parts = m.sae.loss(x)
            m.opt.zero_grad(set_to_none=True)
            loss.backward()
            m.opt.step()
            m.sae.normalize_decoder()
            fired = (parts["f"] > 0).any(dim=0)
            m.steps_since_fired = torch.where(fired, 0, m.steps_since_fired + 1)
            if cfg.resample_every and (step + 1) % cfg.resample_every == 0:
                _resample_dead(m, x, cfg.dead_window)
            if log:
                history.append({
                    "step": step + 1,
                    "d_sae": size,
                    "loss": float(parts["loss"]),
                    "mse": float(parts["mse"]),
                    "l1": float(parts["l1"]),
                    "l0": float((parts["f"] > 0).sum(1).float().mean()),
                    # counted only once a full window has passed, so early steps are not all "dead"
                    "dead_frac": float((m.steps_since_fired >= cfg.dead_window).float().mean()),
                })
        bar.update(1)
        if log:
            bar.set_postfix(mse=f"{history[-1]['mse']:.2e}", l0=f"{history[-1]['l0']:.1f}")
        if out is not None and cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0:
            _save_checkpoint(out / CHECKPOINT_DIR, members, step + 1, history)
        if on_step is not None:
            on_step(step + 1)
    bar.close()

    saes = {size: m.sae.eval().cpu() for size, m in members.items()}
    if out is not None:
        for size, sae in saes.items():
            sae.save(out / f"sae_{size}")
        write_json_atomic(out / "history.json", history)
        write_json_atomic(out / FAMILY_FILE, {"sizes": list(cfg.sizes), "provenance": provenance})
    return saes, history


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
