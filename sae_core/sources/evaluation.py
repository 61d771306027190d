"""Cross-entropy loss recovered when an SAE's reconstruction is spliced into a language model.

On token batches the model is run three times through nnsight (:mod:`nnsight_sites` names
the sites), each time computing the next-token cross-entropy

    L = (1 / N) * sum_{(b, t) in P} -log softmax(logits[b, t])[input_ids[b, t + 1]]

over the set P of predicted positions: (b, t) with both t and t + 1 real tokens,
``attention_mask[b, t] = attention_mask[b, t + 1] = 1``, and N = |P|. Padding (right or left)
never counts. P is pooled over *all* batches, so every predicted token weighs the same: L is
the token-weighted mean (sum of the per-token losses over the total count), not a mean of
per-batch or per-sequence means. The three runs are

* ``L_clean``: the unmodified model;
* ``L_sae``: the site's activation x [B, T, d] replaced at every position (padding
  included; it cannot reach a counted logit through the causal, masked attention) by the
  reconstruction ``x_hat = sae(c * x) / c``, where c is ``scale``, the factor a family
  trained on normalised activations was fed (c = 1 for raw activations);
* ``L_zero``: the site's activation replaced by zeros (zero-ablation);

and the fraction of the loss recovered is

    recovered = (L_zero - L_sae) / (L_zero - L_clean)

(1 when splicing costs nothing, 0 when the reconstruction is as bad as zero-ablation; it can
leave [0, 1] either way). This follows dictionary_learning's ``loss_recovered``
(saprmarks/dictionary_learning, ``dictionary_learning/evaluation.py`` at 12e8427: three
traces, the replacement at the submodule's input or output, logits[:, :-1] scored against
tokens[:, 1:], ``use_cache=False``, ``frac_recovered = (L_rec - L_zero) / (L_orig - L_zero)``)
and the zero-ablation baseline of Bricken et al. 2023 ("Towards Monosemanticity",
transformer-circuits.pub). Differences from dictionary_learning: padding is masked with the
attention mask rather than ``ignore_index=pad_token_id`` (which would also drop real tokens
whose id equals the pad id, e.g. an EOS used as padding), the reconstruction is computed
from the clean run's activation outside the trace, and ``scale`` is a fixed constant rather
than a per-batch ``sqrt(d) / mean ||x||``. The fraction depends on how bad the baseline is:
zeroing the residual stream (``hook_resid_post``) wrecks the model, so a large L_zero
flatters any reconstruction there. Gao et al. 2024 (arXiv:2406.04093) report the downstream
loss itself instead; ``sae - clean`` (the loss increase) belongs alongside the fraction.

The reconstruction is computed from the clean run's activation; the model must be
deterministic (eval mode, which is checked), so that the spliced run reads the same x.

The replacement happens at the exact tensor the site reads (:func:`nnsight_sites.read_site`):
the first positional input of the module for ``read == "input"`` (e.g.
``blocks.L.mlp.hook_post``, the input of the MLP's output projection), or the module's
output (its first element when the module returns a tuple, e.g. attention) for
``read == "output"``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

from sae_core.device import resolve_device
from sae_core.sources.nnsight_sites import Site, _first_tensor

__all__ = ["LossRecovered", "ce_loss_recovered", "ce_loss_recovered_many", "next_token_ce", "next_token_ce_from_hidden",
           "reconstruct"]


@dataclass(frozen=True)
class LossRecovered:
    """The three token-weighted mean cross-entropies (nats per predicted token) and the fraction."""

    clean: float  # L_clean, unmodified model
    sae: float  # L_sae, site replaced by sae(c x) / c
    zero: float  # L_zero, site replaced by zeros
    recovered: float  # (zero - sae) / (zero - clean); nan when zero == clean
    n_tokens: int  # N, predicted positions counted (both the position and its target real)


def _predicted_positions(attention_mask: torch.Tensor, device: torch.device) -> torch.Tensor:
    """[B, T-1] bool: position t is scored against t + 1 where both are real tokens (the set P)."""
    mask = attention_mask.to(device).bool()
    return mask[:, 1:] & mask[:, :-1]


def next_token_ce(logits: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
                  ) -> tuple[float, int]:
    """Sum of next-token cross-entropies over the predicted positions, and their number.

    ``logits [B, T, V]`` at position t are scored against ``input_ids[:, t + 1]`` for every
    (b, t) with ``attention_mask[b, t] = attention_mask[b, t + 1] = 1``: the cross-entropy
    ``logsumexp(z) - z_target``, in float32 (what ``F.cross_entropy`` computes, without copying
    the ``[B, T-1, V]`` slice of the logits or writing their log-softmax: one read pass), the sum
    accumulated in float64. Returns ``(sum, N)``.
    """
    keep = _predicted_positions(attention_mask, logits.device)  # [B, T-1]
    z = logits[:, :-1] if logits.dtype == torch.float32 else logits[:, :-1].float()  # [B, T-1, V], a view
    target = z.gather(-1, input_ids[:, 1:].to(logits.device).unsqueeze(-1)).squeeze(-1)  # [B, T-1]
    ce = torch.logsumexp(z, dim=-1) - target  # [B, T-1]
    return float(ce[keep].double().sum()), int(keep.sum())


@torch.no_grad()
def next_token_ce_from_hidden(hidden: torch.Tensor, head: torch.nn.Linear, input_ids: torch.Tensor,
                              attention_mask: torch.Tensor) -> tuple[float, int]:
    """:func:`next_token_ce` of the logits ``head(hidden)`` without forming them: ``hidden [B, T, d]``
    are the final hidden states the linear LM head reads. The counted rows are scored in chunks
    (:func:`~sae_core.sources.gpt.chunk_rows`), so only a chunk's ``[rows, V]`` logits exist at a time,
    in cache, instead of the ``[B, T, V]`` logits the model writes and reads back (0.13 GB at B·T = 8192
    and V = 4096). Same formula, ``logsumexp(z) - z_target`` in float32, summed in float64."""
    from sae_core.sources.gpt import chunk_rows

    keep = _predicted_positions(attention_mask, hidden.device)  # [B, T-1]
    rows = hidden[:, :-1][keep].float()  # [N, d]
    targets = input_ids[:, 1:].to(hidden.device)[keep]  # [N]
    weight = head.weight.float()  # [V, d]
    bias = None if head.bias is None else head.bias.float()
    total = torch.zeros((), dtype=torch.float64)
    step = chunk_rows(weight.shape[0], hidden.device)
    for i in range(0, len(rows), step):
        h, y = rows[i : i + step], targets[i : i + step]
        z = h @ weight.t() if bias is None else torch.addmm(bias, h, weight.t())  # [chunk, V]
        total += (torch.logsumexp(z, dim=1) - z.gather(1, y[:, None]).squeeze(1)).double().sum()
    return float(total), int(keep.sum())


def _linear_head(lm) -> torch.nn.Linear | None:
    """The model's LM head when the scored logits could be a linear map of the base model's final hidden
    states (a ``Linear`` output embedding, a ``logits_to_keep`` argument to skip forming them); None
    otherwise. Each run still checks it on the last position (see :func:`_ce_run`)."""
    import inspect

    model = lm._module
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    prefix = getattr(model, "base_model_prefix", "")
    if (not isinstance(head, torch.nn.Linear) or not prefix or not hasattr(model, prefix)
            or "logits_to_keep" not in inspect.signature(model.forward).parameters):
        return None
    return head


def _declared_d_in(sae) -> int | None:
    """The SAE's input width if it says so: ``cfg.d_in`` or the rows of ``W_enc [d_in, d_sae]``."""
    d_in = getattr(getattr(sae, "cfg", None), "d_in", None)
    if isinstance(d_in, int):
        return d_in
    w_enc = getattr(sae, "W_enc", None)
    return int(w_enc.shape[0]) if isinstance(w_enc, torch.Tensor) else None


def _sae_device_dtype(sae, x: torch.Tensor) -> tuple[torch.device, torch.dtype]:
    """Where and in what dtype the SAE computes: its first parameter's, else the activation's."""
    params = getattr(sae, "parameters", None)
    first = next(iter(params()), None) if callable(params) else None
    return (first.device, first.dtype) if first is not None else (x.device, x.dtype)


@torch.no_grad()
def reconstruct(sae: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, scale: float = 1.0,
                site_name: str = "the site") -> torch.Tensor:
    """``x_hat = sae(c * x) / c`` for activations ``x [B, T, d]``, returned as [B, T, d] in x's dtype.

    The SAE sees rows ``[B*T, d]`` (its documented ``[batch, d_in]``), on its own device and
    dtype. Raises ``ValueError`` when the SAE's width (``cfg.d_in`` or ``W_enc.shape[0]``, or
    failing that the shape it returns) differs from the site's width d.
    """
    width = x.shape[-1]
    d_in = _declared_d_in(sae)
    if d_in is not None and d_in != width:
        raise ValueError(
            f"the SAE expects d_in={d_in}, but {site_name} has width {width}: "
            "this dictionary was not trained on this site (or this model)"
        )
    device, dtype = _sae_device_dtype(sae, x)
    rows = x.reshape(-1, width).to(device=device, dtype=dtype)  # [B*T, d]
    out = sae(rows * scale)
    out = _first_tensor(out)  # an SAE called with output_features=True returns (x_hat, f)
    if tuple(out.shape) != tuple(rows.shape):
        raise ValueError(
            f"the SAE returned shape {tuple(out.shape)} for input {tuple(rows.shape)} from {site_name}; "
            f"a reconstruction must have the input's shape (site width {width})"
        )
    return (out / scale).to(device=x.device, dtype=x.dtype).reshape(x.shape)  # [B, T, d]


def _envoy(lm, path: str):
    """The nnsight envoy of the module at ``path`` (``transformer.h.0.mlp`` -> lm.transformer.h[0].mlp)."""
    envoy = lm
    for part in path.split("."):
        envoy = envoy[int(part)] if part.isdigit() else getattr(envoy, part)
    return envoy


def _replace_first(value, new: torch.Tensor):
    """``value`` with its first tensor (descending into tuples and lists) replaced by ``new``."""
    if isinstance(value, (tuple, list)):
        return type(value)([_replace_first(value[0], new), *value[1:]])
    return new


def _logits(output) -> torch.Tensor:
    return output.logits if hasattr(output, "logits") else _first_tensor(output)


def _run(lm, site: Site, inputs: dict[str, torch.Tensor], replacement: torch.Tensor | None = None,
         hidden: bool = False) -> tuple[torch.Tensor, ...]:
    """One traced forward pass; returns (site activation [B, T, d] as read, logits [B, T, V]).

    With ``replacement`` the site's tensor is set to it before the rest of the model runs; the
    returned activation is then the one read before the replacement. nnsight 0.8 requires
    the site to be touched before ``lm.output`` (modules in execution order).

    ``hidden=True`` (a model with a linear head, :func:`_linear_head`): the model forms the logits
    of the last position only (``logits_to_keep=1``), and the run returns (activation, the base
    model's final hidden states [B, T, d_model], the last position's logits [B, 1, V]).
    """
    envoy = _envoy(lm, site.module_path)
    extra = {"logits_to_keep": 1} if hidden else {}
    with torch.no_grad(), lm.trace(inputs, use_cache=False, **extra):
        if site.read == "input":
            value = envoy.input.save()  # the first positional argument
            if replacement is not None:
                envoy.input = replacement  # nnsight repacks it into (args, kwargs)
        else:
            value = envoy.output.save()
            if replacement is not None:
                envoy.output = _replace_first(value, replacement)
        if hidden:
            states = _envoy(lm, lm._module.base_model_prefix).output[0].save()  # after the final norm
        logits = _logits(lm.output).save()
    if hidden:
        return _first_tensor(value).detach(), states.detach(), logits.detach()
    return _first_tensor(value).detach(), logits.detach()


@torch.no_grad()
def _ce_run(lm, site: Site, inputs: dict[str, torch.Tensor], replacement: torch.Tensor | None,
            head: torch.nn.Linear | None) -> tuple[torch.Tensor, float, int, torch.nn.Linear | None]:
    """One run's (site activation, cross-entropy sum, N, head to use next). With a linear ``head`` the
    loss is taken from the final hidden states (:func:`next_token_ce_from_hidden`) once the model's own
    last-position logits are seen to equal ``head(hidden)`` there (to 1e-4 of their scale); if they differ
    (a model that scales or caps its logits after the head), this run is repeated with the full logits
    and so is every later one (the returned head is None)."""
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    if head is not None:
        x, states, last = _run(lm, site, inputs, replacement, hidden=True)
        # the head's weights applied directly (not the module, whose hooks would act on both sides)
        mine = torch.nn.functional.linear(states[:, -1:].to(head.weight.dtype), head.weight, head.bias).float()
        scale = float(mine.abs().max()) if mine.numel() else 0.0
        if last.shape == mine.shape and torch.allclose(last.float(), mine, rtol=1e-4, atol=1e-4 * max(scale, 1.0)):
            return (x, *next_token_ce_from_hidden(states, head, ids, mask), head)
        head = None
    x, logits = _run(lm, site, inputs, replacement)
    return (x, *next_token_ce(logits, ids, mask), head)


def ce_loss_recovered(lm, site: Site, sae: Callable[[torch.Tensor], torch.Tensor],
                      batches: Iterable[tuple[torch.Tensor, torch.Tensor]], scale: float = 1.0,
                      max_batches: int | None = None) -> LossRecovered:
    """L_clean, L_sae, L_zero and the fraction recovered of ``sae`` at ``site`` (module docstring).

    ``lm`` is an nnsight ``LanguageModel`` (:func:`nnsight_sites.wrap`) in eval mode, ``site``
    from :func:`nnsight_sites.resolve_site`, ``sae`` any callable mapping ``[n, d]`` to
    ``[n, d]`` (a :class:`sae_core.sae.SparseAutoencoder`'s forward), ``batches`` yields
    ``(input_ids [B, T], attention_mask [B, T])`` as :func:`lm_source.token_batches` does
    (at most ``max_batches`` of them are used), and ``scale`` is c in ``sae(c x) / c``.
    Three forward passes per batch.
    """
    return ce_loss_recovered_many(lm, site, {None: sae}, batches, scale, max_batches)[None]


def ce_loss_recovered_many(lm, site: Site, saes: dict[Any, Callable[[torch.Tensor], torch.Tensor]],
                           batches: Iterable[tuple[torch.Tensor, torch.Tensor]], scale: float = 1.0,
                           max_batches: int | None = None, fused: bool = True) -> dict[Any, LossRecovered]:
    """:func:`ce_loss_recovered` of every SAE in ``saes`` on the same batches: the clean and the
    zero-ablated runs are shared, so a batch costs 2 + len(saes) forward passes, not 3·len(saes).
    ``fused``: score a linear LM head from the final hidden states without forming the logits
    (:func:`_ce_run`, checked on every run); False: the model's full logits (the reference)."""
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be finite and > 0, got {scale!r}")
    if lm.training:
        raise ValueError("the model is in training mode (dropout would make the three runs differ); call .eval()")
    device = lm.device
    sums = {"clean": 0.0, "zero": 0.0, **{("sae", key): 0.0 for key in saes}}
    n_tokens = 0
    head = _linear_head(lm) if fused else None
    for i, (ids, mask) in enumerate(batches):
        if max_batches is not None and i >= max_batches:
            break
        inputs = {"input_ids": ids.to(device), "attention_mask": mask.to(device)}
        x, total, n, head = _ce_run(lm, site, inputs, None, head)  # x [B, T, d]
        sums["clean"] += total
        _, total, _, head = _ce_run(lm, site, inputs, torch.zeros_like(x), head)
        sums["zero"] += total
        for key, sae in saes.items():
            x_hat = reconstruct(sae, x, scale, site_name=f"site {site.name!r}")  # [B, T, d]
            _, total, _, head = _ce_run(lm, site, inputs, x_hat, head)
            sums[("sae", key)] += total
        n_tokens += n  # the same N for every run
    if n_tokens == 0:
        raise ValueError("the batches hold no predicted positions (each needs two consecutive real tokens)")
    clean, zero = sums["clean"] / n_tokens, sums["zero"] / n_tokens
    out = {}
    for key in saes:
        sae_loss = sums[("sae", key)] / n_tokens
        recovered = (zero - sae_loss) / (zero - clean) if zero != clean else math.nan
        out[key] = LossRecovered(clean=clean, sae=sae_loss, zero=zero, recovered=recovered, n_tokens=n_tokens)
    return out


def language_model(lm_params: dict[str, Any]):
    """The model, site and tokenizer an ``lm`` source reads, ready to evaluate: ``(lm, site, tokenizer,
    cfg)`` with the model in eval mode (the replication GPT from its cache, a hub or local model
    otherwise)."""
    from transformers.utils import logging as hf_logging

    from sae_core.io import cache_root
    from sae_core.sources import nnsight_sites
    from sae_core.sources.lm_source import REPLICATION_GPT, LMSourceConfig, replication_gpt

    cfg = LMSourceConfig(**lm_params)
    device = resolve_device(cfg.device)
    # loading prints config notices on stderr the first time in a process; a chapter's output
    # must not depend on whether an earlier cell already loaded the model
    hf_logging.set_verbosity_error()
    if cfg.model == REPLICATION_GPT:
        model, tokenizer, _, _ = replication_gpt(cfg, cache_root(), progress=False)
        lm = nnsight_sites.wrap(model.to(device).eval(), tokenizer)
    else:
        lm = nnsight_sites.load_language_model(cfg.model, device=str(device))
        tokenizer = lm.tokenizer
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        lm._module.eval()
    site = nnsight_sites.resolve_site(lm._module, cfg.site)
    return lm, site, tokenizer, cfg


def evaluate_saes(lm_params: dict[str, Any], saes: dict[int, Callable[[torch.Tensor], torch.Tensor]],
                  n_batches: int = 8, scale: float = 1.0) -> dict[int, LossRecovered]:
    """:func:`ce_loss_recovered` of each SAE on the first ``n_batches`` token batches of the
    source's held-out documents (``lm.heldout_share``; the SAEs never trained on them), in rows
    of ``context`` tokens, ``batch_size`` rows."""
    from sae_core.sources.lm_source import iter_documents, split_documents, token_batches

    lm, site, tokenizer, cfg = language_model(lm_params)
    docs = split_documents(iter_documents(cfg.corpus, cfg.text_field, limit=cfg.max_documents),
                           cfg.heldout_share, heldout=True)
    batches = token_batches(tokenizer, (text for _, text in docs), cfg.context, cfg.batch_size)
    return ce_loss_recovered_many(lm, site, saes, batches, scale=scale, max_batches=n_batches)
