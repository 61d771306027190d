"""The appendix on geometry: where decoder rows of every size lie (PCA), and which tokens of the
replication GPT's embedding random directions and learned features point at.

A thread around the post found that random directions, read through a model's token
embedding, land on a few "hub" tokens; learned features, if they are more than random, should
spread over many more tokens.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch

from sae_core.report.analysis import RANDOM_SEED_BASE, mcs_values
from sae_core.report.pipeline import Family
from sae_core.similarity import gaussian_dictionary


@dataclass
class DecoderPCA:
    coords: np.ndarray  # [rows, 2] projection of every decoder row of every size
    size: np.ndarray  # [rows] the dictionary each row belongs to
    high: np.ndarray  # [rows] MCS against the largest dictionary at or above the cutoff (largest: True)
    explained: tuple[float, float]  # share of the rows' variance along the two components


def decoder_pca(family: Family, cutoff: float) -> DecoderPCA:
    """PCA of the unit decoder rows of all sizes together (rows centred, top two components by SVD)."""
    large = family.sizes[-1]
    rows, sizes, high = [], [], []
    for size in family.sizes:
        f = family.features(size)
        rows.append((f / f.norm(dim=1, keepdim=True)).double().numpy())
        sizes.append(np.full(size, size))
        high.append(np.ones(size, bool) if size == large else mcs_values(family, size, large) >= cutoff)
    x = np.concatenate(rows)
    x = x - x.mean(0)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    var = s**2 / (s**2).sum()
    return DecoderPCA(x @ vt[:2].T, np.concatenate(sizes), np.concatenate(high), (float(var[0]), float(var[1])))


@dataclass
class TokenHubs:
    n: int  # directions read, of each kind
    distinct_random: int  # distinct nearest tokens among n random directions
    distinct_learned: int  # among n learned features
    top_random: list[tuple[str, int]]  # the most frequent nearest tokens of random directions
    top_learned: list[tuple[str, int]]
    vocab: int


def _readout(family: Family):
    """The replication GPT's token embedding and the map from the site into the residual stream, or
    None when the family's activations do not come from it at an MLP-hidden or residual site."""
    if "lm" not in family.params:
        return None
    from sae_core.sources.evaluation import language_model
    from sae_core.sources.lm_source import REPLICATION_GPT
    from sae_core.sources.nnsight_sites import _SITE_RE

    lm_params = family.params["lm"]
    match = _SITE_RE.match(lm_params.get("site", ""))
    if lm_params.get("model") != REPLICATION_GPT or match is None:
        return None
    lm, _, tokenizer, _ = language_model(lm_params)
    model = lm._module
    wte = model.transformer.wte.weight.detach().float()  # [V, d_model]
    layer, kind = int(match.group(1)), match.group(2)
    if kind == "mlp.hook_post":
        readout = model.transformer.h[layer].mlp.c_proj.weight.detach().float()  # Conv1D: [d_mlp, d_model]
    elif wte.shape[1] == family.d_in:
        readout = torch.eye(family.d_in)
    else:
        return None
    return wte, readout, tokenizer


def token_hubs(family: Family, n: int = 1024, top: int = 5, seed: int = 0) -> TokenHubs | None:
    """Nearest token (cosine in the embedding) of n random directions and of n learned features of the
    largest dictionary, each mapped into the residual stream by the site's read-out (the MLP's output
    projection for ``mlp.hook_post``). None when the source has no such embedding."""
    parts = _readout(family)
    if parts is None:
        return None
    wte, readout, tokenizer = parts
    emb = wte / wte.norm(dim=1, keepdim=True)
    large = family.features(family.sizes[-1])
    n = min(n, len(large))
    pick = torch.randperm(len(large), generator=torch.Generator().manual_seed(seed))[:n]
    random = gaussian_dictionary(n, family.d_in, seed=RANDOM_SEED_BASE + 77 + seed)

    def nearest(directions: torch.Tensor) -> np.ndarray:
        r = directions.float() @ readout  # [n, d_model]
        r = r / r.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return (r @ emb.t()).argmax(1).numpy()

    near_random, near_learned = nearest(random), nearest(large[pick])

    def top_tokens(ids: np.ndarray) -> list[tuple[str, int]]:
        return [(repr(tokenizer.decode([int(t)])), c) for t, c in Counter(ids.tolist()).most_common(top)]

    return TokenHubs(n, len(set(near_random.tolist())), len(set(near_learned.tolist())), top_tokens(near_random),
                     top_tokens(near_learned), int(wte.shape[0]))


def hub_table(hubs: TokenHubs) -> tuple[list[str], list[list[object]]]:
    """The nearest tokens of random directions and of learned features, for ``plots.table``."""
    def top(pairs: list[tuple[str, int]]) -> str:
        return ", ".join(f"{t} ({c})" for t, c in pairs)

    return (["directions", "distinct nearest tokens", "most frequent nearest tokens (count)"],
            [["random", hubs.distinct_random, top(hubs.top_random)],
             ["learned", hubs.distinct_learned, top(hubs.top_learned)]])
