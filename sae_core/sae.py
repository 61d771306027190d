"""The sparse autoencoder of the replication, and its on-disk format.

Model (Sharkey, Braun & Millidge 2022, "Taking features out of superposition with
sparse autoencoders"; the MCS replication uses the same form)::

    f     = ReLU((x - b_dec) @ W_enc + b_enc)      # [B, d_sae]
    x_hat = f @ W_dec + b_dec                      # [B, d_in]
    loss  = mean((x_hat - x)^2) + l1_coeff * mean_B(||f||_1)

with ``W_enc [d_in, d_sae]``, ``W_dec [d_sae, d_in]`` whose rows (the features) have
unit norm, and ``b_dec`` fixed at zero unless ``use_b_dec`` is set.

Artifacts are a folder with ``cfg.json`` (the config plus provenance) and
``sae_weights.safetensors``; no pickles.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from sae_core.io import atomic_dir

CFG_NAME = "cfg.json"
WEIGHTS_NAME = "sae_weights.safetensors"


@dataclass
class SAEConfig:
    d_in: int = 128  # width of the activations (replication: layer-2 MLP hidden, 128)
    d_sae: int = 1024  # number of dictionary features
    l1_coeff: float = 1e-3  # alpha in loss = MSE + alpha * L1 (replication: 1e-3)
    use_b_dec: bool = False  # learned decoder bias, subtracted before encoding (off in the replication)
    seed: int = 0  # initialisation seed
    dtype: str = "float32"
    # Where the activations came from; filled by whoever trains the SAE.
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("d_in", "d_sae"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"SAEConfig.{name} must be a positive integer, got {value!r}")
        if not (self.l1_coeff >= 0 and math.isfinite(self.l1_coeff)):
            raise ValueError(f"SAEConfig.l1_coeff must be finite and >= 0, got {self.l1_coeff!r}")
        if self.dtype != "float32":
            raise ValueError(f"only float32 SAEs are supported, got dtype={self.dtype!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SAEConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown SAEConfig keys {unknown}; known keys are {sorted(known)}")
        return cls(**data)


class SparseAutoencoder(nn.Module):
    """One-layer ReLU SAE with unit-norm decoder rows; see the module docstring."""

    def __init__(self, cfg: SAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        gen = torch.Generator().manual_seed(cfg.seed)
        w_dec = torch.randn(cfg.d_sae, cfg.d_in, generator=gen)
        w_dec /= w_dec.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(w_dec)  # [d_sae, d_in]
        # The encoder starts as the decoder's transpose (each latent fires on the direction
        # it writes), scaled by d_in/d_sae: for random unit rows sum_j ReLU(<w_j, x>) w_j is
        # about (d_sae / 2 d_in) x, so wide dictionaries would otherwise start by
        # reconstructing x many times over. The two are trained independently afterwards.
        self.W_enc = nn.Parameter(w_dec.t() * min(1.0, cfg.d_in / cfg.d_sae))  # [d_in, d_sae]
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae))  # [d_sae]
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in), requires_grad=cfg.use_b_dec)  # [d_in]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu((x - self.b_dec) @ self.W_enc + self.b_enc)

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        return f @ self.W_dec + self.b_dec

    def forward(
        self, x: torch.Tensor, output_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """x [B, d_in] -> x_hat [B, d_in] (and f [B, d_sae] when ``output_features``)."""
        f = self.encode(x)
        x_hat = self.decode(f)
        return (x_hat, f) if output_features else x_hat

    def loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """loss = mean over elements of (x_hat - x)^2 + l1_coeff * mean over batch of ||f||_1."""
        x_hat, f = self(x, output_features=True)
        mse = (x_hat - x).pow(2).mean()
        l1 = f.abs().sum(dim=-1).mean()
        loss = mse + self.cfg.l1_coeff * l1
        return loss, {"loss": loss.detach(), "mse": mse.detach(), "l1": l1.detach(), "f": f.detach()}

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        self.W_dec /= self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)

    @property
    def features(self) -> torch.Tensor:
        """Decoder rows, the dictionary features: [d_sae, d_in]."""
        return self.W_dec.detach()

    # ----------------------------------------------------------------- I/O
    def save(self, path: str | os.PathLike) -> Path:
        """Write ``cfg.json`` + ``sae_weights.safetensors`` into ``path`` atomically.

        Files go to a temporary sibling folder that is renamed into place, so a killed
        process leaves either the old dictionary or the new one, never half of one.
        """
        path = Path(path)
        with atomic_dir(path) as tmp:
            tensors = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
            save_file(tensors, tmp / WEIGHTS_NAME)
            (tmp / CFG_NAME).write_text(json.dumps(self.cfg.to_dict(), indent=2, sort_keys=True))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> SparseAutoencoder:
        """Load a folder written by :meth:`save`, checking names, shapes, dtype and values."""
        path = Path(path)
        cfg_path, weights_path = path / CFG_NAME, path / WEIGHTS_NAME
        for p in (cfg_path, weights_path):
            if not p.is_file():
                raise FileNotFoundError(f"{path} is not a saved SAE: {p.name} is missing")
        try:
            cfg = SAEConfig.from_dict(json.loads(cfg_path.read_text()))
        except (json.JSONDecodeError, TypeError, ValueError) as err:
            raise ValueError(f"{cfg_path} is not a valid SAE config: {err}") from err
        try:
            tensors = load_file(weights_path)
        except (SafetensorError, OSError) as err:
            raise ValueError(f"{weights_path} is not a readable safetensors file: {err}") from err
        expected = {
            "W_enc": (cfg.d_in, cfg.d_sae),
            "W_dec": (cfg.d_sae, cfg.d_in),
            "b_enc": (cfg.d_sae,),
            "b_dec": (cfg.d_in,),
        }
        if set(tensors) != set(expected):
            raise ValueError(
                f"{weights_path} holds tensors {sorted(tensors)}, expected {sorted(expected)}"
            )
        for name, shape in expected.items():
            t = tensors[name]
            if tuple(t.shape) != shape:
                raise ValueError(
                    f"{weights_path}: {name} has shape {tuple(t.shape)}, but cfg.json "
                    f"(d_in={cfg.d_in}, d_sae={cfg.d_sae}) implies {shape}"
                )
            if t.dtype != torch.float32:
                raise ValueError(f"{weights_path}: {name} has dtype {t.dtype}, expected torch.float32")
            if not torch.isfinite(t).all():
                raise ValueError(f"{weights_path}: {name} contains NaN or inf")
        sae = cls(cfg)
        sae.load_state_dict(tensors)
        return sae.to(device)


def load_family(root: str | os.PathLike, device: str | torch.device = "cpu") -> dict[int, SparseAutoencoder]:
    """Load every ``sae_<size>`` folder under ``root`` into ``{d_sae: SAE}``, sorted by size."""
    root = Path(root)
    folders = sorted(p for p in root.glob("sae_*") if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise FileNotFoundError(f"no saved SAEs (sae_<size>/) under {root}")
    saes = [SparseAutoencoder.load(p, device) for p in folders]
    return {s.cfg.d_sae: s for s in sorted(saes, key=lambda s: s.cfg.d_sae)}
