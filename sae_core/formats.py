"""Other libraries' dictionaries in and out: SAELens, dictionary_learning and sparsify.

:func:`load_dictionary` reads a downloaded folder, offline, into a
:class:`~sae_core.sae.SparseAutoencoder`; :func:`save_dictionary` writes one in a library's
own layout, for that library's own loader. The layout is told by the files present:

=====================  ====================================================  ==================
layout                 files                                                 written by
=====================  ====================================================  ==================
``ours``               ``cfg.json`` (our keys only) + ``sae_weights.safetensors``  ``SparseAutoencoder.save``
``saelens``            ``cfg.json`` + ``sae_weights.safetensors``            SAELens ``SAE.save_model``
``dictionary_learning``  ``ae.pt`` (a state dict) + ``config.json``          ``dictionary_learning.training``
``sparsify``           ``<hookpoint>/cfg.json`` + ``sae.safetensors``        ``SparseCoder.save_to_disk``
=====================  ====================================================  ==================

A folder holding none of these but exactly one sub-folder that does (a sparsify checkpoint
with one hookpoint, a dictionary_learning ``<site>/`` with one ``10_32768/`` run) is read
through that sub-folder.

Every library computes the same model up to where the decoder bias enters the encoder,
which each maps onto ours (``f = act((x - b_dec) @ W_enc + b_enc)``,
``x_hat = f @ W_dec + b_dec``) exactly:

* SAELens (``sae_lens/saes/{standard,topk,jumprelu}_sae.py``, 6.x): ``W_enc [d_in, d_sae]``,
  ``W_dec [d_sae, d_in]`` as ours. With ``apply_b_dec_to_input = false`` its encoder reads
  ``x @ W_enc + b_enc``, which is ours with ``b_enc' = b_enc + b_dec @ W_enc``. TopK with
  ``rescale_acts_by_decoder_norm`` computes ``TopK(ReLU(z * n))`` and decodes
  ``(f / n) @ W_dec`` with ``n = ||W_dec||_row``: ours with ``W_enc' = W_enc * n``,
  ``b_enc' = b_enc * n``, ``W_dec' = W_dec / n`` (SAELens ``fold_W_dec_norm``). A constant
  input normalisation is folded as SAELens folds it: ``expected_average_only_in`` with
  factor s, ``W_enc' = s W_enc``, ``W_dec' = W_dec / s``, ``b_dec' = b_dec / s``
  (``fold_activation_norm_scaling_factor``); ``covariance_whitening`` with
  ``z = (x - mu) M``, ``W_enc' = M W_enc``, ``W_dec' = W_dec M^-1``,
  ``b_dec' = b_dec M^-1 + mu`` (``fold_activation_whitening``). Pre-6 flat configs are read
  as SAELens's ``handle_pre_6_0_config`` reads them, and a ``finetuning_scaling_factor`` s
  (decode ``(f * s) @ W_dec``) is folded into ``W_dec' = diag(s) W_dec``.
* dictionary_learning (``dictionary_learning/dictionary.py`` and ``trainers/top_k.py``,
  ``trainers/batch_top_k.py``, 0.1.0): ``AutoEncoder`` and ``AutoEncoderTopK`` hold
  ``nn.Linear`` layers, so ``W_enc = encoder.weight^T``, ``W_dec = decoder.weight^T``, and
  subtract ``bias`` / ``b_dec`` before encoding as we do. ``JumpReluAutoEncoder`` stores ours
  but does not subtract ``b_dec`` (``apply_b_dec_to_input = False``, not saved), and
  ``AutoEncoderNew`` keeps the decoder bias in ``decoder.bias``; both are folded as above.
  ``BatchTopKSAE`` at inference keeps ``ReLU(z) > theta`` for one scalar theta, which is a
  JumpReLU with every threshold theta.
* sparsify (``sparsify/sparse_coder.py``, 1.3): ``encoder`` is an ``nn.Linear``, so
  ``W_enc = encoder.weight^T``; ``W_dec [d_sae, d_in]`` as ours; ``b_dec`` subtracted before
  encoding; TopK of ``ReLU(z)``. bf16 weights are cast to float32.

Decoder rows that are not unit-norm are used as stored (codes and reconstructions are the
library's own without its optional renormalisation, e.g. dictionary_learning's
``from_pretrained(normalize_decoder=True)``, which rescales codes). What the SAE cannot
represent is an :class:`UnsupportedDictionaryError` naming it and what would be needed.

Exports write the inference form: ``W_dec`` as :meth:`decode` uses it (normalised rows for
``decoder_norm="in_forward"``), and our full config in the library's metadata, from which
:func:`load_dictionary` restores it (training fields such as ``l1_coeff`` otherwise keep
our defaults). ``provenance["imported_from"]`` records the source folder and its config.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pickle
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from sae_core.io import atomic_dir
from sae_core.sae import CFG_NAME, EXPORTERS, WEIGHTS_NAME, SAEConfig, SparseAutoencoder

FORMATS = ("ours", "saelens", "dictionary_learning", "sparsify")

SAELENS_ARCHITECTURES = {"relu": "standard", "topk": "topk", "jumprelu": "jumprelu"}
SAELENS_SCALER = "activation_scaler.json"  # sae_lens.constants.ACTIVATION_SCALER_CFG_FILENAME
SAELENS_WHITENING = "activation_whitening.safetensors"  # ACTIVATION_WHITENING_FILENAME
SAELENS_FORMAT_VERSION = "6.0.0"  # SAELens reads configs without a version >= 6 as pre-6 flat ones
DL_WEIGHTS, DL_CONFIG = "ae.pt", "config.json"
SPARSIFY_WEIGHTS = "sae.safetensors"
METADATA_KEY = "sae_core"  # where exports keep our version and config
SPARSIFY_SIDECAR = "sae_core.json"  # sparsify logs extra cfg.json keys it drops, so ours goes beside it

_OUR_KEYS = frozenset(f.name for f in dataclasses.fields(SAEConfig))


class UnsupportedDictionaryError(ValueError):
    """The folder holds a dictionary that :class:`SparseAutoencoder` cannot represent exactly."""


# ------------------------------------------------------------------ detection
def detect_format(path: str | os.PathLike) -> str:
    """The layout of the folder ``path`` itself: one of :data:`FORMATS`.

    Raises ``FileNotFoundError`` for a missing folder and ``ValueError`` listing the files
    found when no layout matches.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is not a folder")
    layout = _layout_of(path)
    if layout is None:
        raise ValueError(_unrecognised(path))
    return layout


def _layout_of(path: Path) -> str | None:
    files = {p.name for p in path.iterdir() if p.is_file()}
    if DL_WEIGHTS in files:
        return "dictionary_learning"
    if CFG_NAME in files and SPARSIFY_WEIGHTS in files:
        return "sparsify"
    if CFG_NAME in files and WEIGHTS_NAME in files:
        cfg = _read_json(path / CFG_NAME)
        return "ours" if set(cfg) <= _OUR_KEYS else "saelens"
    return None


def _unrecognised(path: Path, candidates: list[Path] | None = None) -> str:
    found = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
    msg = (
        f"{path} holds no dictionary in a layout we read; found {found or 'nothing'}. Expected "
        f"ours or SAELens ({CFG_NAME} + {WEIGHTS_NAME}), dictionary_learning ({DL_WEIGHTS} + "
        f"{DL_CONFIG}) or sparsify ({CFG_NAME} + {SPARSIFY_WEIGHTS}), in the folder or in its "
        "only sub-folder"
    )
    if candidates:
        msg += f"; several sub-folders hold one, pass one of them: {[c.name for c in candidates]}"
    return msg


def _resolve(path: Path) -> tuple[Path, str]:
    """The folder to read and its layout: ``path`` itself, or its one recognisable sub-folder."""
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is not a folder")
    layout = _layout_of(path)
    if layout is not None:
        return path, layout
    candidates = [p for p in sorted(path.iterdir()) if p.is_dir() and _layout_of(p) is not None]
    if len(candidates) == 1:
        return candidates[0], _layout_of(candidates[0])  # type: ignore[return-value]
    raise ValueError(_unrecognised(path, candidates))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not readable JSON: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds a JSON {type(data).__name__}, expected an object")
    return data


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(path)
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{path} is not a readable safetensors file: {err}") from err


# ------------------------------------------------------------------ loading
def load_dictionary(
    path: str | os.PathLike,
    device: str | torch.device = "cpu",
    *,
    norm_scaling_factor: float | None = None,
) -> SparseAutoencoder:
    """Read a dictionary folder in any layout of :data:`FORMATS` (module docstring), offline.

    ``norm_scaling_factor`` is the constant s of a SAELens dictionary trained with
    ``normalize_activations="expected_average_only_in"`` whose folder lacks
    ``activation_scaler.json`` (SAELens lists it as ``norm_scaling_factor`` in its
    ``pretrained_saes.yaml``); it is folded into the weights. The codes and reconstructions
    match the library's own to float32 rounding (``tests/core/test_formats.py``).
    """
    folder, layout = _resolve(Path(path))
    if layout != "saelens" and norm_scaling_factor is not None:
        raise ValueError(f"norm_scaling_factor applies to SAELens folders only; {folder} is {layout}")
    if layout == "ours":
        sae = SparseAutoencoder.load(folder)
    elif layout == "saelens":
        sae = _load_saelens(folder, norm_scaling_factor)
    elif layout == "dictionary_learning":
        sae = _load_dictionary_learning(folder)
    else:
        sae = _load_sparsify(folder)
    return sae.to(device)


def _build(
    folder: Path,
    fmt: str,
    library_config: dict[str, Any],
    tensors: dict[str, torch.Tensor],
    activation: str,
    k: int | None = None,
) -> SparseAutoencoder:
    """A SparseAutoencoder from our tensors (W_enc, W_dec, b_enc, b_dec[, threshold]).

    Shapes are checked against ``W_enc [d_in, d_sae]``; values must be finite. Our config
    is restored from the library metadata when the folder was written by
    :func:`save_dictionary`; otherwise the architecture's fields are set and the training
    fields keep their defaults.
    """
    w = {name: t.detach().to(torch.float32).contiguous() for name, t in tensors.items()}
    if w["W_enc"].ndim != 2:
        raise ValueError(f"{folder}: the encoder weight has shape {tuple(w['W_enc'].shape)}, expected 2-D")
    d_in, d_sae = w["W_enc"].shape
    expected = {"W_enc": (d_in, d_sae), "W_dec": (d_sae, d_in), "b_enc": (d_sae,), "b_dec": (d_in,)}
    if activation == "jumprelu":
        expected["threshold"] = (d_sae,)
    for name, shape in expected.items():
        if tuple(w[name].shape) != shape:
            raise ValueError(
                f"{folder}: {name} (as ours) has shape {tuple(w[name].shape)}, but the encoder "
                f"(d_in={d_in}, d_sae={d_sae}) implies {shape}"
            )
        if not torch.isfinite(w[name]).all():
            raise ValueError(f"{folder}: {name} contains NaN or inf")
    for name, value in (("d_in", d_in), ("d_sae", d_sae)):
        declared = library_config.get(name)
        if isinstance(declared, int) and declared != value:
            raise ValueError(f"{folder}: the config says {name}={declared}, the weights have {value}")

    ours = _our_config(library_config)
    imported = {"format": fmt, "path": str(folder), "library_config": _without_ours(library_config)}
    if ours is not None and (ours.d_in, ours.d_sae, ours.activation, ours.k) == (d_in, d_sae, activation, k):
        cfg = dataclasses.replace(ours, provenance={**ours.provenance, "imported_from": imported})
    else:
        cfg = SAEConfig(d_in=d_in, d_sae=d_sae, use_b_dec=True, activation=activation, k=k,
                        provenance={"imported_from": imported})
    sae = SparseAutoencoder(cfg)
    sae.load_state_dict({name: w[name] for name in expected})
    return sae


def _our_config(library_config: dict[str, Any]) -> SAEConfig | None:
    """Our config as :func:`save_dictionary` stored it in the library's metadata, if there."""
    for holder in (library_config, library_config.get("metadata") or {}):
        block = holder.get(METADATA_KEY) if isinstance(holder, dict) else None
        if isinstance(block, dict) and isinstance(block.get("config"), dict):
            try:
                return SAEConfig.from_dict(block["config"])
            except (TypeError, ValueError):
                return None
    return None


def _without_ours(library_config: dict[str, Any]) -> dict[str, Any]:
    """The library config less our own block, which the restored config already holds."""
    out = {k: v for k, v in library_config.items() if k != METADATA_KEY}
    if isinstance(out.get("metadata"), dict):
        out["metadata"] = {k: v for k, v in out["metadata"].items() if k != METADATA_KEY}
    return out


# ------------------------------------------------------------------ SAELens
def _saelens_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """A SAELens cfg.json in the 6.x form, as SAELens's ``handle_config_defaulting`` makes it.

    Pre-6 flat configs (no ``sae_lens_version`` >= 6 at the top or in ``metadata``) get
    ``activation_fn_str`` read as ``activation_fn``, ``apply_b_dec_to_input`` defaulting to
    true, ``architecture`` to ``"standard"`` (``"topk"`` with ``k`` from
    ``activation_fn_kwargs`` for a TopK activation), and a boolean ``normalize_activations``
    read as ``"expected_average_only_in"`` / ``"none"``.
    """
    version = cfg.get("sae_lens_version") or (cfg.get("metadata") or {}).get("sae_lens_version")
    major = _major(version)
    if major is not None and major >= 6:
        return dict(cfg)
    new = {{"hook_point": "hook_name", "activation_fn_str": "activation_fn"}.get(k, k): v for k, v in cfg.items()}
    new.setdefault("apply_b_dec_to_input", True)
    new.setdefault("finetuning_scaling_factor", False)
    new.setdefault("architecture", "standard")
    kwargs = new.get("activation_fn_kwargs") or {}
    if new.get("activation_fn") == "topk" and kwargs.get("k") is not None:
        new["architecture"], new["k"] = "topk", kwargs["k"]
    norm = new.get("normalize_activations")
    if isinstance(norm, bool) or norm is None:
        new["normalize_activations"] = "expected_average_only_in" if norm else "none"
    return new


def _major(version: Any) -> int | None:
    if not isinstance(version, str):
        return None
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else None


def _load_saelens(folder: Path, norm_scaling_factor: float | None) -> SparseAutoencoder:
    raw = _read_json(folder / CFG_NAME)
    cfg = _saelens_config(raw)
    arch = cfg.get("architecture")
    if arch == "gated":
        raise UnsupportedDictionaryError(
            f"{folder}: SAELens architecture 'gated' (a gate path 1[z + b_gate > 0] times a "
            "magnitude path ReLU(exp(r_mag) z + b_mag)) needs a gated encoder, which "
            "SparseAutoencoder does not have"
        )
    if isinstance(arch, str) and "transcoder" in arch:
        raise UnsupportedDictionaryError(
            f"{folder}: SAELens architecture {arch!r} is a transcoder (it reads "
            f"{cfg.get('metadata', {}).get('hook_name') or cfg.get('hook_name')!r} and writes another site"
            + (", with a linear skip connection W_skip" if "skip" in arch else "")
            + "); representing it needs separate input and output sites"
            + (" and a skip term x @ W_skip" if "skip" in arch else "")
        )
    if arch not in ("standard", "topk", "jumprelu"):
        raise UnsupportedDictionaryError(
            f"{folder}: SAELens architecture {arch!r} is not one we represent; supported: "
            "'standard', 'topk', 'jumprelu'"
        )
    activation_fn = cfg.get("activation_fn")
    if arch == "standard" and activation_fn not in (None, "relu"):
        raise UnsupportedDictionaryError(
            f"{folder}: SAELens activation_fn {activation_fn!r} is not one we represent "
            "(ReLU, TopK or JumpReLU); it would need that activation in SparseAutoencoder"
        )
    weights = _read_safetensors(folder / WEIGHTS_NAME)
    if "W_skip" in weights:
        raise UnsupportedDictionaryError(
            f"{folder}: the weights hold a skip connection W_skip (x_hat += x @ W_skip), which "
            "SparseAutoencoder does not have"
        )
    if "log_threshold" in weights and arch == "jumprelu":  # SAELens process_state_dict_for_loading
        weights["threshold"] = weights.pop("log_threshold").exp()
    t = {name: v.to(torch.float32) for name, v in weights.items()}
    scaling = t.pop("scaling_factor", None)
    if scaling is None:
        scaling = t.pop("finetuning_scaling_factor", None)
    needed = {"W_enc", "W_dec", "b_enc", "b_dec"} | ({"threshold"} if arch == "jumprelu" else set())
    missing, extra = sorted(needed - set(t)), sorted(set(t) - needed)
    if missing or extra:
        raise UnsupportedDictionaryError(
            f"{folder}: a SAELens {arch!r} SAE holds {sorted(needed)}; these weights lack {missing} "
            f"and have {extra} besides, which SparseAutoencoder cannot represent"
        )
    if scaling is not None and not torch.allclose(scaling, torch.ones_like(scaling)):
        # SAELens < 6 decoded (f * s) @ W_dec + b_dec; folding s into the rows keeps the codes.
        t["W_dec"] = t["W_dec"] * scaling[:, None]

    k = None
    if arch == "topk":
        k = cfg.get("k")
        if not isinstance(k, int):
            raise ValueError(f"{folder}: a SAELens topk config needs an integer k, got {k!r}")
        if cfg.get("rescale_acts_by_decoder_norm"):
            n = t["W_dec"].norm(dim=-1)
            t["W_enc"], t["b_enc"], t["W_dec"] = t["W_enc"] * n, t["b_enc"] * n, t["W_dec"] / n[:, None]

    norm = cfg.get("normalize_activations", "none")
    if norm == "expected_average_only_in":
        s = norm_scaling_factor if norm_scaling_factor is not None else _saelens_scaling_factor(folder)
        t["W_enc"], t["W_dec"], t["b_dec"] = t["W_enc"] * s, t["W_dec"] / s, t["b_dec"] / s
    elif norm == "covariance_whitening":
        mean, m, m_inv = _saelens_whitening(folder)  # float64, folded in float64 as SAELens does
        t["W_enc"] = (m @ t["W_enc"].double()).float()
        if not cfg.get("apply_b_dec_to_input", True):
            t["b_enc"] = t["b_enc"] - (mean @ t["W_enc"].double()).float()
        t["W_dec"] = (t["W_dec"].double() @ m_inv).float()
        t["b_dec"] = (t["b_dec"].double() @ m_inv + mean).float()
    elif norm == "constant_norm_rescale":
        raise UnsupportedDictionaryError(
            f"{folder}: normalize_activations='constant_norm_rescale' rescales each input to norm "
            "sqrt(d_in) (x * sqrt(d_in) / ||x||) and undoes it on the output; representing it "
            "needs a per-input normalisation around encode and decode"
        )
    elif norm == "layer_norm":
        raise UnsupportedDictionaryError(
            f"{folder}: normalize_activations='layer_norm' applies layer-norm input "
            "normalisation ((x - mean(x)) / std(x)), undone on the output; representing it needs "
            "a per-input layer norm around encode and decode"
        )
    elif norm != "none":
        raise UnsupportedDictionaryError(f"{folder}: unknown normalize_activations {norm!r}")

    if not cfg.get("apply_b_dec_to_input", True):
        t["b_enc"] = t["b_enc"] + t["b_dec"] @ t["W_enc"]
    return _build(folder, "saelens", raw, t, {"standard": "relu"}.get(arch, arch), k)


def _saelens_scaling_factor(folder: Path) -> float:
    scaler = folder / SAELENS_SCALER
    value = _read_json(scaler).get("scaling_factor") if scaler.is_file() else None
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise UnsupportedDictionaryError(
            f"{folder}: normalize_activations='expected_average_only_in' scales inputs by a "
            f"constant that is not in the folder ({SAELENS_SCALER} with a positive "
            "'scaling_factor'); pass it as load_dictionary(..., norm_scaling_factor=s) (SAELens "
            "lists it as norm_scaling_factor in pretrained_saes.yaml)"
        )
    return float(value)


def _saelens_whitening(folder: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    path = folder / SAELENS_WHITENING
    if not path.is_file():
        raise UnsupportedDictionaryError(
            f"{folder}: normalize_activations='covariance_whitening' needs the whitening "
            f"statistics ({SAELENS_WHITENING}: mean, matrix, inverse_matrix) to fold them in; "
            "the folder has none"
        )
    w = _read_safetensors(path)
    try:
        return w["mean"].double(), w["matrix"].double(), w["inverse_matrix"].double()
    except KeyError as err:
        raise ValueError(f"{path} lacks {err}; expected mean, matrix, inverse_matrix") from err


# ------------------------------------------------------------------ dictionary_learning
_DL_KEYS = {
    "AutoEncoder": {"bias", "encoder.weight", "encoder.bias", "decoder.weight"},
    "AutoEncoderNew": {"encoder.weight", "encoder.bias", "decoder.weight", "decoder.bias"},
    "AutoEncoderTopK": {"encoder.weight", "encoder.bias", "decoder.weight", "b_dec", "k", "threshold"},
    "BatchTopKSAE": {"encoder.weight", "encoder.bias", "decoder.weight", "b_dec", "k", "threshold"},
    "JumpReluAutoEncoder": {"W_enc", "b_enc", "W_dec", "b_dec", "threshold"},
}
_DL_GATED = {"decoder_bias", "r_mag", "gate_bias", "mag_bias"}


def _load_dictionary_learning(folder: Path) -> SparseAutoencoder:
    weights_path = folder / DL_WEIGHTS
    try:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as err:
        raise ValueError(
            f"{weights_path} is not a state dict of tensors that torch.load(weights_only=True) "
            f"reads: {err}"
        ) from err
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{weights_path} holds a {type(state).__name__}, expected a state dict of tensors")
    config = _read_json(folder / DL_CONFIG) if (folder / DL_CONFIG).is_file() else {}
    trainer = config.get("trainer") if isinstance(config.get("trainer"), dict) else {}
    declared = trainer.get("dict_class")
    keys = set(state)

    if _DL_GATED & keys or declared == "GatedAutoEncoder":
        raise UnsupportedDictionaryError(
            f"{folder}: dictionary_learning GatedAutoEncoder (a gate path 1[z + gate_bias > 0] "
            "times a magnitude path ReLU(exp(r_mag) z + mag_bias)) needs a gated encoder, which "
            "SparseAutoencoder does not have"
        )
    matches = [name for name, need in _DL_KEYS.items() if need <= keys]
    if declared is not None:
        if declared not in _DL_KEYS:
            raise UnsupportedDictionaryError(
                f"{folder}: dictionary_learning dict_class {declared!r} is not one we represent; "
                f"supported: {sorted(_DL_KEYS)}"
            )
        if declared not in matches:
            raise ValueError(
                f"{folder}: config.json says dict_class={declared!r}, which holds "
                f"{sorted(_DL_KEYS[declared])}, but {DL_WEIGHTS} holds {sorted(keys)}"
            )
        cls = declared
    elif len(matches) == 1:
        cls = matches[0]
    elif matches == ["AutoEncoderTopK", "BatchTopKSAE"]:
        raise ValueError(
            f"{folder}: {DL_WEIGHTS} fits both AutoEncoderTopK and BatchTopKSAE, which encode "
            f"differently; {DL_CONFIG} with trainer.dict_class is needed to tell them apart"
        )
    else:
        raise UnsupportedDictionaryError(
            f"{folder}: {DL_WEIGHTS} holds {sorted(keys)}, which fits no dictionary_learning class "
            f"we represent ({sorted(_DL_KEYS)})"
        )
    extra = sorted(keys - _DL_KEYS[cls])
    if extra:
        raise UnsupportedDictionaryError(
            f"{folder}: a dictionary_learning {cls} holds {sorted(_DL_KEYS[cls])}; {DL_WEIGHTS} "
            f"also has {extra}, which SparseAutoencoder cannot represent"
        )
    s = {name: v.to(torch.float32) if v.is_floating_point() else v for name, v in state.items()}
    k, activation = None, "relu"
    if cls == "JumpReluAutoEncoder":
        t = {name: s[name] for name in ("W_enc", "W_dec", "b_enc", "b_dec", "threshold")}
        t["b_enc"] = t["b_enc"] + t["b_dec"] @ t["W_enc"]  # it encodes x @ W_enc + b_enc
        activation = "jumprelu"
    else:
        t = {"W_enc": s["encoder.weight"].T, "W_dec": s["decoder.weight"].T, "b_enc": s["encoder.bias"]}
        if cls == "AutoEncoder":
            t["b_dec"] = s["bias"]
        elif cls == "AutoEncoderNew":  # relu(x @ W_enc + b_enc), decoder.bias added on decode
            t["b_dec"] = s["decoder.bias"]
            t["b_enc"] = t["b_enc"] + t["b_dec"] @ t["W_enc"]
        else:
            t["b_dec"] = s["b_dec"]
        if cls == "AutoEncoderTopK":
            k, activation = int(s["k"]), "topk"
            declared_k = trainer.get("k")
            if isinstance(declared_k, int) and declared_k != k:
                raise ValueError(f"{folder}: config.json says k={declared_k}, {DL_WEIGHTS} holds k={k}")
        elif cls == "BatchTopKSAE":
            # encode: ReLU(z) * (ReLU(z) > theta), one scalar theta; a JumpReLU with all thresholds theta.
            activation = "jumprelu"
            t["threshold"] = s["threshold"].reshape(()).expand(t["b_enc"].shape[0]).clone()
    return _build(folder, "dictionary_learning", config, t, activation, k)


# ------------------------------------------------------------------ sparsify
def _load_sparsify(folder: Path) -> SparseAutoencoder:
    cfg = _read_json(folder / CFG_NAME)
    weights = _read_safetensors(folder / SPARSIFY_WEIGHTS)
    if cfg.get("transcode"):
        raise UnsupportedDictionaryError(
            f"{folder}: a sparsify transcoder (transcode=true) predicts a module's output from its "
            "input; representing it needs separate input and output sites"
        )
    if cfg.get("skip_connection") or "W_skip" in weights:
        raise UnsupportedDictionaryError(
            f"{folder}: a sparsify coder with skip_connection (x_hat += x @ W_skip^T) needs a "
            "linear skip term, which SparseAutoencoder does not have"
        )
    activation = cfg.get("activation", "topk")
    if activation == "groupmax":
        raise UnsupportedDictionaryError(
            f"{folder}: sparsify activation 'groupmax' (the largest ReLU(z) within each of k "
            "groups of latents) needs a grouped activation, which SparseAutoencoder does not have"
        )
    if activation != "topk":
        raise UnsupportedDictionaryError(f"{folder}: unknown sparsify activation {activation!r}")
    needed = {"encoder.weight", "encoder.bias", "W_dec", "b_dec"}
    if set(weights) != needed:
        raise ValueError(f"{folder / SPARSIFY_WEIGHTS} holds {sorted(weights)}, expected {sorted(needed)}")
    k = cfg.get("k")
    if not isinstance(k, int):
        raise ValueError(f"{folder / CFG_NAME}: k must be an integer, got {k!r}")
    sidecar = folder / SPARSIFY_SIDECAR
    library_config = {**cfg, METADATA_KEY: _read_json(sidecar)} if sidecar.is_file() else cfg
    t = {
        "W_enc": weights["encoder.weight"].to(torch.float32).T,
        "W_dec": weights["W_dec"].to(torch.float32),
        "b_enc": weights["encoder.bias"].to(torch.float32),
        "b_dec": weights["b_dec"].to(torch.float32),
    }
    return _build(folder, "sparsify", library_config, t, "topk", k)


# ------------------------------------------------------------------ export
def save_dictionary(sae: SparseAutoencoder, path: str | os.PathLike, format: str = "ours") -> Path:
    """Write ``sae`` into the folder ``path`` (atomically) in a layout of :data:`FORMATS`.

    Each is read by the library's own loader: SAELens ``SAE.load_from_disk(path)`` (a 6.x
    ``cfg.json`` with ``architecture``, ``apply_b_dec_to_input`` and the rest in
    ``metadata``), dictionary_learning ``AutoEncoder`` / ``AutoEncoderTopK`` /
    ``JumpReluAutoEncoder.from_pretrained(path / "ae.pt")`` or ``utils.load_dictionary``,
    sparsify ``SparseCoder.load_from_disk(path)`` (``path`` is the hookpoint folder). sparsify
    holds TopK coders only. Our config travels in the metadata, so :func:`load_dictionary`
    gives back the same SAE.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; expected one of {list(FORMATS)}")
    if format == "ours":
        return sae.save(path)
    cfg = sae.cfg
    w = {
        "W_enc": sae.W_enc.detach(), "W_dec": sae.features, "b_enc": sae.b_enc.detach(),
        "b_dec": sae.b_dec.detach(),
    }
    w = {name: t.to("cpu", torch.float32).contiguous() for name, t in w.items()}
    if cfg.activation == "jumprelu":
        w["threshold"] = sae.threshold.detach().to("cpu", torch.float32).contiguous()
    from sae_core import __version__

    ours = {"version": __version__, "config": cfg.to_dict()}
    prov = cfg.provenance
    path = Path(path)
    with atomic_dir(path) as tmp:
        if format == "saelens":
            _write_saelens(tmp, cfg, w, ours, prov)
        elif format == "dictionary_learning":
            _write_dictionary_learning(tmp, cfg, w, ours, prov)
        else:
            _write_sparsify(tmp, cfg, w, ours)
    return path


def _write_saelens(tmp: Path, cfg: SAEConfig, w: dict[str, torch.Tensor], ours: dict, prov: dict) -> None:
    metadata: dict[str, Any] = {"sae_lens_version": SAELENS_FORMAT_VERSION, METADATA_KEY: ours}
    if prov.get("model") is not None:
        metadata["model_name"] = prov["model"]
    if prov.get("hook_name") is not None:
        metadata["hook_name"] = prov["hook_name"]
    out: dict[str, Any] = {
        "architecture": SAELENS_ARCHITECTURES[cfg.activation],
        "d_in": cfg.d_in, "d_sae": cfg.d_sae, "dtype": "float32", "device": "cpu",
        "apply_b_dec_to_input": True, "normalize_activations": "none", "reshape_activations": "none",
        "metadata": metadata,
    }
    if cfg.activation == "topk":
        out.update(k=cfg.k, rescale_acts_by_decoder_norm=False)
    save_file(w, tmp / WEIGHTS_NAME)
    (tmp / CFG_NAME).write_text(json.dumps(out, indent=2))


def _write_dictionary_learning(tmp: Path, cfg: SAEConfig, w: dict[str, torch.Tensor], ours: dict, prov: dict) -> None:
    trainer: dict[str, Any] = {"activation_dim": cfg.d_in, "dict_size": cfg.d_sae}
    if cfg.activation == "relu":
        trainer["dict_class"] = "AutoEncoder"
        state = {"bias": w["b_dec"], "encoder.weight": w["W_enc"].T.contiguous(),
                 "encoder.bias": w["b_enc"], "decoder.weight": w["W_dec"].T.contiguous()}
    elif cfg.activation == "topk":
        trainer.update(dict_class="AutoEncoderTopK", k=cfg.k)
        state = {"encoder.weight": w["W_enc"].T.contiguous(), "encoder.bias": w["b_enc"],
                 "decoder.weight": w["W_dec"].T.contiguous(), "b_dec": w["b_dec"],
                 "k": torch.tensor(cfg.k, dtype=torch.int), "threshold": torch.tensor(-1.0)}
    else:  # JumpReluAutoEncoder encodes x @ W_enc + b_enc: move b_dec's share into b_enc
        trainer["dict_class"] = "JumpReluAutoEncoder"
        state = {"W_enc": w["W_enc"], "b_enc": w["b_enc"] - w["b_dec"] @ w["W_enc"], "W_dec": w["W_dec"],
                 "b_dec": w["b_dec"], "threshold": w["threshold"]}
    if prov.get("model") is not None:
        trainer["lm_name"] = prov["model"]
    if prov.get("layer") is not None:
        trainer["layer"] = prov["layer"]
    torch.save(state, tmp / DL_WEIGHTS)
    (tmp / DL_CONFIG).write_text(json.dumps({"trainer": trainer, METADATA_KEY: ours}, indent=4))


def _write_sparsify(tmp: Path, cfg: SAEConfig, w: dict[str, torch.Tensor], ours: dict) -> None:
    if cfg.activation != "topk":
        raise UnsupportedDictionaryError(
            f"sparsify holds TopK (or GroupMax) coders only; this SAE's activation is {cfg.activation!r}"
        )
    out = {
        "activation": "topk", "expansion_factor": max(1, cfg.d_sae // cfg.d_in), "normalize_decoder": True,
        "num_latents": cfg.d_sae, "k": cfg.k, "multi_topk": False, "skip_connection": False,
        "transcode": False, "d_in": cfg.d_in,
    }
    save_file({"encoder.weight": w["W_enc"].T.contiguous(), "encoder.bias": w["b_enc"],
               "W_dec": w["W_dec"], "b_dec": w["b_dec"]}, tmp / SPARSIFY_WEIGHTS)
    (tmp / CFG_NAME).write_text(json.dumps(out, indent=2))
    (tmp / SPARSIFY_SIDECAR).write_text(json.dumps(ours, indent=2))


# SparseAutoencoder.save(path, format=...) writes the other layouts through these (sae.py does not import
# this module, which imports it)
EXPORTERS.update({name: (lambda sae, path, name=name: save_dictionary(sae, path, format=name))
                  for name in FORMATS if name != "ours"})
