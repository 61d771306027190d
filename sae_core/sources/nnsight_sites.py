"""Activations of a Hugging Face causal LM, read through nnsight at a named site.

Sites use TransformerLens hook names, so a dictionary's ``cfg.json`` says where its
activations came from in the naming most SAE work uses:

=========================  ==============================================  ================
site                       what it is                                      read as
=========================  ==============================================  ================
``blocks.L.mlp.hook_post``  MLP hidden after the nonlinearity               input of the MLP's output projection
``blocks.L.hook_mlp_out``   MLP output                                      output of the MLP module
``blocks.L.hook_attn_out``  attention output                                output of the attention module
``blocks.L.hook_resid_post`` residual stream after block L                  output of block L
=========================  ==============================================  ================

"Input of the output projection" is the MLP hidden state for plain and gated MLPs alike.
A raw module path (e.g. ``transformer.h.2.mlp.act``, read as that module's output) is
also accepted. The forward pass stops once the site has been read (nnsight's
``tracer.stop()``), so later layers cost nothing.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

import torch
from torch import nn

# Per architecture: path of the block list, and names inside a block.
ARCHITECTURES = {
    "gpt2": {"layers": "transformer.h", "attn": "attn", "mlp": "mlp", "mlp_out_proj": "c_proj"},
    "gpt_neox": {"layers": "gpt_neox.layers", "attn": "attention", "mlp": "mlp", "mlp_out_proj": "dense_4h_to_h"},
    "llama": {"layers": "model.layers", "attn": "self_attn", "mlp": "mlp", "mlp_out_proj": "down_proj"},
}
SITE_KINDS = ("mlp.hook_post", "hook_mlp_out", "hook_attn_out", "hook_resid_post")
_SITE_RE = re.compile(r"^blocks\.(\d+)\.(mlp\.hook_post|hook_mlp_out|hook_attn_out|hook_resid_post)$")


@dataclass(frozen=True)
class Site:
    name: str  # as given: a TransformerLens hook name or a module path
    module_path: str  # path of the torch module inside the HF model
    read: str  # "input" (first positional argument) or "output"
    layer: int | None  # block index for TransformerLens names


def _get_module(model: nn.Module, path: str) -> nn.Module | None:
    try:
        return model.get_submodule(path)
    except AttributeError:
        return None


def detect_architecture(model: nn.Module) -> str:
    for arch, names in ARCHITECTURES.items():
        if isinstance(_get_module(model, names["layers"]), nn.ModuleList):
            return arch
    raise ValueError(
        f"cannot find the block list of {type(model).__name__}; known layouts: "
        + ", ".join(f"{a} ({n['layers']})" for a, n in ARCHITECTURES.items())
        + ". Pass a raw module path as the site instead."
    )


def available_sites(model: nn.Module) -> list[str]:
    """Every TransformerLens-style site this model supports."""
    arch = ARCHITECTURES[detect_architecture(model)]
    n_layers = len(model.get_submodule(arch["layers"]))
    return [f"blocks.{layer}.{kind}" for layer in range(n_layers) for kind in SITE_KINDS]


def resolve_site(model: nn.Module, site: str) -> Site:
    """Map a site name to the module to read, with a clear error listing valid names."""
    match = _SITE_RE.match(site)
    if match is None:
        if _get_module(model, site) is not None and site:
            return Site(site, site, "output", None)
        try:
            valid = available_sites(model)
        except ValueError:
            valid = []
        raise ValueError(
            f"site {site!r} does not exist in {type(model).__name__}. Valid sites: "
            f"{', '.join(valid) if valid else '(no known layout)'}; or any module path, e.g. "
            f"{', '.join(n for n, _ in list(model.named_modules())[1:4])}"
        )
    layer, kind = int(match.group(1)), match.group(2)
    arch = ARCHITECTURES[detect_architecture(model)]
    blocks = model.get_submodule(arch["layers"])
    if layer >= len(blocks):
        raise ValueError(
            f"site {site!r} asks for layer {layer}, but the model has {len(blocks)} layers (0..{len(blocks) - 1}). "
            f"Valid sites: {', '.join(available_sites(model))}"
        )
    block = f"{arch['layers']}.{layer}"
    path, read = {
        "mlp.hook_post": (f"{block}.{arch['mlp']}.{arch['mlp_out_proj']}", "input"),
        "hook_mlp_out": (f"{block}.{arch['mlp']}", "output"),
        "hook_attn_out": (f"{block}.{arch['attn']}", "output"),
        "hook_resid_post": (block, "output"),
    }[kind]
    if _get_module(model, path) is None:
        raise ValueError(f"site {site!r} maps to module {path!r}, which {type(model).__name__} does not have")
    return Site(site, path, read, layer)


def _first_tensor(value) -> torch.Tensor:
    """Attention modules and older blocks return tuples; the activation is the first element."""
    while isinstance(value, (tuple, list)):
        value = value[0]
    return value


def wrap(model: nn.Module, tokenizer):
    """An nnsight ``LanguageModel`` around an already-loaded HF model and tokenizer."""
    from nnsight import LanguageModel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # LanguageModel's deprecation notice in nnsight 0.8
        return LanguageModel(model, tokenizer=tokenizer)


def load_language_model(name_or_path: str, device: str = "cpu"):
    """``nnsight.LanguageModel`` for a hub id or a local folder (hub ids need the network)."""
    from nnsight import LanguageModel

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return LanguageModel(name_or_path, device_map=device, dispatch=True)
    except OSError as err:
        raise OSError(
            f"could not load model {name_or_path!r}: not a local folder and the Hugging Face hub is not "
            f"reachable from this machine ({err}). Download it on a connected machine or pass a local path."
        ) from err


def read_site(lm, site: Site, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Run ``lm`` (an nnsight model) on a batch and return the site's activation [B, T, d]."""
    envoy = lm
    for part in site.module_path.split("."):
        envoy = envoy[int(part)] if part.isdigit() else getattr(envoy, part)
    with torch.no_grad(), lm.trace({"input_ids": input_ids, "attention_mask": attention_mask}) as tracer:
        value = (envoy.input if site.read == "input" else envoy.output).save()
        tracer.stop()  # nothing after the site is needed
    return _first_tensor(value).detach()


def token_mask(attention_mask: torch.Tensor, skip_first: bool) -> torch.Tensor:
    """Positions whose activations are kept: real tokens, optionally minus each row's first token."""
    keep = attention_mask.bool().clone()
    if skip_first:
        first = keep.int().argmax(dim=1)  # first real token (handles left padding too)
        keep[torch.arange(keep.shape[0]), first] = False
    return keep
