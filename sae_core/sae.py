"""The sparse autoencoder of the replication, its variants, and its on-disk format.

Model (Sharkey, Braun & Millidge 2022, "Taking features out of superposition with
sparse autoencoders"; the MCS replication uses the same form)::

    z     = (x - b_dec) @ W_enc + b_enc            # [B, d_sae], pre-activations
    f     = ReLU(z)                                 # [B, d_sae], the codes
    x_hat = f @ W_dec + b_dec                      # [B, d_in]
    loss  = mean((x_hat - x)^2) + l1_coeff * mean_B(||f||_1)

with ``W_enc [d_in, d_sae]``, ``W_dec [d_sae, d_in]`` whose rows (the features) have
unit norm, and ``b_dec`` fixed at zero unless ``use_b_dec`` is set.

Variants, all off by default (``SAEConfig`` documents each field):

* ``activation="topk"`` (Gao et al. 2024, "Scaling and evaluating sparse autoencoders",
  arXiv:2406.04093): ``f = TopK_k(ReLU(z))``, the ``k`` largest entries of ``ReLU(z)`` kept
  and the rest set to zero.
* ``activation="jumprelu"`` (Rajamanoharan et al. 2024, "Jumping Ahead: Improving
  reconstruction fidelity with JumpReLU sparse autoencoders", arXiv:2407.14435):
  ``f_i = ReLU(z_i) * H(z_i - theta_i)`` with a per-latent ``threshold`` theta [d_sae] and
  H the Heaviside step (H(0) = 0). With theta = 0 it is the ReLU.
* ``init="post"``: the initialisation of the code that trained the original post's
  dictionaries (HoagyC/sparse_coding at 69c5ae0, ``autoencoders/sae_ensemble.py``, ``FunctionalSAE``;
  the code of Cunningham et al. 2023, arXiv:2309.08600), see ``SparseAutoencoder``.
* ``decoder_norm="in_forward"``: the same code's decoder, whose rows are divided by their
  norms inside the forward pass, ``x_hat = f @ (W_dec / ||W_dec||_row) + b_dec``, so the
  gradient flows through the normalisation; the default ``"after_step"`` uses ``W_dec`` as
  stored and relies on the trainer calling :meth:`SparseAutoencoder.normalize_decoder`
  (the projection back onto unit rows) after every optimiser step.

Artifacts are a folder with ``cfg.json`` (the config plus provenance) and
``sae_weights.safetensors``; no pickles. A default ReLU dictionary writes exactly the files
it wrote before the variants existed (the variant keys are left out of ``cfg.json`` at their
defaults, and ``threshold`` is saved only by JumpReLU dictionaries), and old ``cfg.json``
files without the variant keys load as the defaults. Other libraries' folders are read and
written by :mod:`sae_core.formats`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable
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

ACTIVATIONS = ("relu", "topk", "jumprelu")
INITS = ("transposed", "post")
DECODER_NORMS = ("after_step", "in_forward")
# The variant keys and their defaults: left out of cfg.json at these values, so a default
# dictionary's files are byte-identical to those written before the variants existed.
VARIANT_DEFAULTS: dict[str, Any] = {
    "activation": "relu", "k": None, "init": "transposed", "decoder_norm": "after_step",
}
IN_FORWARD_EPS = 1e-8  # clamp on the row norms in "in_forward" mode, as in FunctionalSAE.loss
# Writers of other libraries' layouts, by format name: :mod:`sae_core.formats` registers its own when
# imported (``import sae_core`` does), so this module never imports it (formats imports this one).
EXPORTERS: dict[str, Callable[[SparseAutoencoder, str | os.PathLike], Path]] = {}


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
    # Variants (module docstring). Appended after the original fields so that positional
    # construction keeps its meaning.
    activation: str = "relu"  # "relu" | "topk" (keeps the k largest of ReLU(z)) | "jumprelu"
    k: int | None = None  # active latents per input; required by, and only by, "topk"
    init: str = "transposed"  # "transposed" (the replication's) | "post" (FunctionalSAE's)
    decoder_norm: str = "after_step"  # "after_step" (W_dec as stored) | "in_forward"

    def __post_init__(self) -> None:
        for name in ("d_in", "d_sae"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"SAEConfig.{name} must be a positive integer, got {value!r}")
        if not (self.l1_coeff >= 0 and math.isfinite(self.l1_coeff)):
            raise ValueError(f"SAEConfig.l1_coeff must be finite and >= 0, got {self.l1_coeff!r}")
        if self.dtype != "float32":
            raise ValueError(f"only float32 SAEs are supported, got dtype={self.dtype!r}")
        for name, allowed in (("activation", ACTIVATIONS), ("init", INITS), ("decoder_norm", DECODER_NORMS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"unknown SAEConfig.{name} {getattr(self, name)!r}; expected one of {list(allowed)}")
        if self.activation == "topk":
            k = self.k
            if k is None:
                raise ValueError("SAEConfig(activation='topk') needs k, the number of active latents per input")
            if not isinstance(k, int) or isinstance(k, bool) or k <= 0:
                raise ValueError(f"SAEConfig.k must be a positive integer, got {k!r}")
            if k > self.d_sae:
                raise ValueError(f"SAEConfig.k={k} exceeds d_sae={self.d_sae}: TopK keeps at most d_sae latents")
        elif self.k is not None:
            raise ValueError(f"SAEConfig.k={self.k!r} is only used by activation='topk', not {self.activation!r}")

    def to_dict(self) -> dict[str, Any]:
        """All fields, except the variant keys that hold their defaults (``VARIANT_DEFAULTS``)."""
        data = dataclasses.asdict(self)
        for name, default in VARIANT_DEFAULTS.items():
            if data[name] == default:
                del data[name]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SAEConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown SAEConfig keys {unknown}; known keys are {sorted(known)}")
        return cls(**data)


def _check_count_rows(x: torch.Tensor) -> None:
    if x.shape[0] >= 2**24:
        raise ValueError(f"count at most 2^24 - 1 rows at a time, got {x.shape[0]}")


def _indicator_counts(indicator: torch.Tensor) -> torch.Tensor:
    """Column sums of a 0/1 matrix [B, d_sae] in a float dtype, as int64: one matrix-vector product
    (exact in float32 for B < 2^24)."""
    ones = torch.ones(1, indicator.shape[0], dtype=indicator.dtype, device=indicator.device)
    return (ones @ indicator).squeeze(0).round().long()


class SparseAutoencoder(nn.Module):
    """One-layer SAE (ReLU by default) with unit-norm decoder rows; see the module docstring.

    Initialisation, from ``torch.Generator().manual_seed(cfg.seed)`` (same seed, same weights):

    * ``init="transposed"`` (default, the replication's): decoder rows drawn from a standard
      normal and scaled to unit norm, ``W_enc = W_dec^T * min(1, d_in / d_sae)`` (TopK:
      ``W_enc = W_dec^T``, Gao et al. 2024), ``b_enc = 0``.
    * ``init="post"`` (HoagyC/sparse_coding ``FunctionalSAE.init``, 2023): encoder and decoder
      drawn independently, each Xavier-uniform (Glorot & Bengio 2010),
      ``U(-a, a)`` with ``a = sqrt(6 / (d_in + d_sae))``, the encoder first, both in that
      code's ``[d_sae, d_in]`` layout (so ``W_enc`` is the transpose of the first draw);
      ``b_enc = 0``. The decoder rows are *not* normalised at initialisation: that code
      normalises them in the forward pass (``decoder_norm="in_forward"``).

    In both, ``b_dec = 0`` (trained only with ``use_b_dec``; ``FunctionalSAE`` has none) and a
    JumpReLU ``threshold`` starts at 0, where JumpReLU equals ReLU. Nothing here trains the
    threshold: the Heaviside step gives it no gradient, and learning it needs the
    straight-through estimator of Rajamanoharan et al. (2024), which ``train.py`` does not have.
    """

    threshold: nn.Parameter  # [d_sae], present only when cfg.activation == "jumprelu"

    def __init__(self, cfg: SAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        gen = torch.Generator().manual_seed(cfg.seed)
        if cfg.init == "post":
            w_enc = nn.init.xavier_uniform_(torch.empty(cfg.d_sae, cfg.d_in), generator=gen)
            w_dec = nn.init.xavier_uniform_(torch.empty(cfg.d_sae, cfg.d_in), generator=gen)
            self.W_dec = nn.Parameter(w_dec)  # [d_sae, d_in]
            self.W_enc = nn.Parameter(w_enc.t().contiguous())  # [d_in, d_sae]
        else:
            w_dec = torch.randn(cfg.d_sae, cfg.d_in, generator=gen)
            w_dec /= w_dec.norm(dim=1, keepdim=True)
            self.W_dec = nn.Parameter(w_dec)  # [d_sae, d_in]
            # The encoder starts as the decoder's transpose (each latent fires on the direction
            # it writes), scaled by d_in/d_sae: for random unit rows sum_j ReLU(<w_j, x>) w_j is
            # about (d_sae / 2 d_in) x, so wide dictionaries would otherwise start by
            # reconstructing x many times over. A TopK code has only k active latents, so TopK
            # starts from the exact transpose, as Gao et al. (2024, appendix A.1) do. The two are
            # trained independently afterwards.
            scale = 1.0 if cfg.activation == "topk" else min(1.0, cfg.d_in / cfg.d_sae)
            self.W_enc = nn.Parameter(w_dec.t() * scale)  # [d_in, d_sae]
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae))  # [d_sae]
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in), requires_grad=cfg.use_b_dec)  # [d_in]
        if cfg.activation == "jumprelu":
            self.threshold = nn.Parameter(torch.zeros(cfg.d_sae))  # [d_sae]

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        """z = (x - b_dec) @ W_enc + b_enc: [B, d_in] -> [B, d_sae]."""
        return torch.addmm(self.b_enc, x - self.b_dec, self.W_enc)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The codes f [B, d_sae]: ReLU(z), TopK_k(ReLU(z)) or ReLU(z) * H(z - threshold)."""
        z = self.pre_activations(x)
        if self.cfg.activation == "relu":  # in place where no graph needs z: one pass over [B, d_sae] fewer
            return torch.relu(z) if torch.is_grad_enabled() and z.requires_grad else z.relu_()
        a = torch.relu(z)
        if self.cfg.activation == "topk":
            top = a.topk(self.cfg.k, dim=-1)
            return torch.zeros_like(a).scatter(-1, top.indices, top.values)
        return a * (z > self.threshold)  # jumprelu

    @torch.no_grad()
    def firing_counts(self, x: torch.Tensor) -> torch.Tensor:
        """How many rows of x [B, d_in] each latent fires on (f > 0): [d_sae], int64.

        For ReLU, f > 0 exactly where z > 0, so the codes are never formed; the count is one
        matrix-vector product with the 0/1 indicator, about twice as fast on CPU as summing a
        boolean [B, d_sae] tensor (exact in float32 for B < 2^24)."""
        _check_count_rows(x)
        if self.cfg.activation == "topk":
            return self._entry_counts(*self._topk_entries(x))
        z = self.pre_activations(x) if self.cfg.activation == "relu" else self.encode(x)
        return _indicator_counts(z.gt_(0))

    @torch.no_grad()
    def firing_counts_and_error(self, x: torch.Tensor) -> tuple[torch.Tensor, float]:
        """:meth:`firing_counts` of x [B, d_in] and sum over its rows of ||x - x_hat||^2, from one
        encoding. TopK decodes its k selected entries per row as a bag of decoder rows, never
        forming the dense codes."""
        _check_count_rows(x)
        if self.cfg.activation == "topk":
            values, indices = self._topk_entries(x)
            x_hat = torch.nn.functional.embedding_bag(indices, self.decoder_rows, mode="sum",
                                                      per_sample_weights=values) + self.b_dec
            return self._entry_counts(values, indices), float((x - x_hat).pow(2).sum())
        f = self.encode(x)  # [B, d_sae]
        err = float((x - self.decode(f)).pow(2).sum())
        return _indicator_counts(f.gt_(0)), err  # f is not needed after the decode

    def _topk_entries(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """TopK's selected entries of each row: values ReLU(z) at the k largest pre-activations, and their
        indices, [B, k] each (the k largest of ReLU(z) but for ties at 0, which carry no value)."""
        values, indices = self.pre_activations(x).topk(self.cfg.k, dim=-1)
        return values.relu_(), indices

    def _entry_counts(self, values: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """Per latent, how many of the selected entries ``indices`` [B, k] hold a positive value: [d_sae]."""
        return torch.bincount(indices[values > 0], minlength=self.cfg.d_sae)

    @property
    def decoder_rows(self) -> torch.Tensor:
        """The decoder as ``decode`` uses it, [d_sae, d_in], differentiable.

        ``W_dec`` as stored (``decoder_norm="after_step"``), or
        ``W_dec / max(||W_dec||_row, 1e-8)`` (``"in_forward"``, ``FunctionalSAE.loss``).
        """
        if self.cfg.decoder_norm == "in_forward":
            return self.W_dec / self.W_dec.norm(dim=1, keepdim=True).clamp_min(IN_FORWARD_EPS)
        return self.W_dec

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        """x_hat = f @ decoder_rows + b_dec: [B, d_sae] -> [B, d_in]."""
        return f @ self.decoder_rows + self.b_dec

    def forward(
        self, x: torch.Tensor, output_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """x [B, d_in] -> x_hat [B, d_in] (and f [B, d_sae] when ``output_features``)."""
        f = self.encode(x)
        x_hat = self.decode(f)
        return (x_hat, f) if output_features else x_hat

    def loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """loss = mean over elements of (x_hat - x)^2 + l1_coeff * mean over batch of ||f||_1.

        The same for every variant (set ``l1_coeff=0`` for a TopK dictionary trained on the
        reconstruction alone); ``x_hat`` goes through :meth:`decode`, so in ``"in_forward"``
        mode the gradient flows through the row normalisation, as in ``FunctionalSAE.loss``.
        """
        x_hat, f = self(x, output_features=True)
        mse = (x_hat - x).pow(2).mean()
        l1 = f.abs().sum(dim=-1).mean()
        loss = mse + self.cfg.l1_coeff * l1
        return loss, {"loss": loss.detach(), "mse": mse.detach(), "l1": l1.detach(), "f": f.detach()}

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """The after-step projection W_dec <- W_dec / ||W_dec||_row (in every mode)."""
        self.W_dec /= self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)

    @property
    def features(self) -> torch.Tensor:
        """Decoder rows as ``decode`` uses them, the dictionary features: [d_sae, d_in]."""
        return self.decoder_rows.detach()

    # ----------------------------------------------------------------- I/O
    def save(self, path: str | os.PathLike, format: str = "ours") -> Path:
        """Write ``cfg.json`` + ``sae_weights.safetensors`` into ``path`` atomically.

        Files go to a temporary sibling folder that is renamed into place, so a killed
        process leaves either the old dictionary or the new one, never half of one.
        ``format`` other than ``"ours"`` ("saelens", "dictionary_learning", "sparsify")
        writes that library's folder instead, through the writer :mod:`sae_core.formats` registers in
        ``EXPORTERS`` (its :func:`~sae_core.formats.save_dictionary`).
        """
        if format != "ours":
            if format not in EXPORTERS:
                raise ValueError(f"unknown format {format!r}; expected 'ours' or one of {sorted(EXPORTERS)} "
                                 "(registered by sae_core.formats)")
            return EXPORTERS[format](self, path)
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
        if cfg.activation == "jumprelu":
            expected["threshold"] = (cfg.d_sae,)
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
