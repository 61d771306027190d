"""Similarity between dictionaries: max cosine similarity (MCS) and one-to-one matching.

For dictionaries A [N, d] and B [M, d] (features are rows), after normalising rows::

    MCS(a_i; B) = max_j  <a_i, b_j> / (||a_i|| ||b_j||)

(Sharkey et al. 2022 use the mean of this as their "MMCS"; the bimodality finding is
about its distribution.) The one-to-one variant restricts each feature of B to be used
once: a maximum-weight assignment on the cosine matrix (Kuhn 1955). By default it is solved
exactly on a sparse candidate graph with an LP-duality certificate over all N x M pairs
(:mod:`sae_core.matching`); ``method="dense"`` keeps the dense Hungarian solver
(``scipy.optimize.linear_sum_assignment``) for verification.

MCS is computed in tiles of at most ``memory_budget_bytes`` so N x M never has to fit
in memory, on the GPU when one is present.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from sae_core.device import resolve_device
from sae_core.dictionary_rows import (  # noqa: F401  (re-exported: the names callers import from here)
    ASSIGNMENT_MAX_ENTRIES,
    DEFAULT_MEMORY_BUDGET,
    MatchResult,
    as_matrix,
    normalize_rows,
    normalized_pair,
    tile_sizes,
)
from sae_core.matching import sparse_assignment

_as_matrix, _normalized_pair, _tile_sizes = as_matrix, normalized_pair, tile_sizes  # the names benchmarks use

@dataclass
class MCSResult:
    values: torch.Tensor  # [N] max cosine of each row of A with any row of B
    indices: torch.Tensor  # [N] index of that row of B


_ARGMAX_BLOCK = 256  # columns per block in _row_max_argmax


def _row_max_argmax(tile: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``tile.max(dim=1)`` (values, lowest index of each row's max), in about 60% of its time.

    ``max`` with indices is a slow reduction on the CPU (about 3x ``amax`` on a 1024 x 65536
    tile; this costs about 2x). Each row's maxima of blocks of ``_ARGMAX_BLOCK`` columns come
    from one ``amax``; the first block holding the row max is found among those maxima and
    searched alone. The first block to reach the max holds its first occurrence, so ties keep
    the lowest index, as ``max`` does.
    """
    rows, width = tile.shape
    n_blocks = width // _ARGMAX_BLOCK
    if n_blocks < 2:
        return tile.max(dim=1)
    full = n_blocks * _ARGMAX_BLOCK
    blocks = tile[:, :full].view(rows, n_blocks, _ARGMAX_BLOCK)
    best, block = blocks.amax(2).max(dim=1)
    winner = blocks[torch.arange(rows, device=tile.device), block]  # [rows, block]: a small copy
    index = block * _ARGMAX_BLOCK + winner.argmax(dim=1)
    if full < width:  # the ragged last block; strict > keeps the earlier index on ties
        tail_best, tail_idx = tile[:, full:].max(dim=1)
        later = tail_best > best
        best = torch.where(later, tail_best, best)
        index = torch.where(later, tail_idx + full, index)
    return best, index


def max_cosine_similarity(
    a: torch.Tensor | np.ndarray,
    b: torch.Tensor | np.ndarray,
    *,
    exclude_self: bool = False,
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
) -> MCSResult:
    """MCS of each row of ``a`` [N, d] against the rows of ``b`` [M, d].

    ``values[i] = max_j cos(a_i, b_j)`` and ``indices[i]`` the argmax (lowest index on
    ties). With ``exclude_self`` (``a`` and ``b`` the same dictionary) the diagonal
    ``j = i`` is skipped: each feature's nearest *other* feature. The cosine matrix is
    built tile by tile, each tile at most ``memory_budget_bytes``; beyond that the call
    holds unit-normalised copies of A and B ((N + M) * d values).
    """
    a, b = _normalized_pair(a, b)
    if exclude_self and a.shape[0] != b.shape[0]:
        raise ValueError("exclude_self needs A and B to be the same dictionary (same number of rows)")
    if exclude_self and b.shape[0] < 2:
        raise ValueError("exclude_self needs at least two features")
    dev = resolve_device("auto" if device is None else device)
    itemsize = torch.empty((), dtype=dtype).element_size()
    n, m = a.shape[0], b.shape[0]
    row_tile, col_tile = _tile_sizes(n, m, itemsize, memory_budget_bytes)
    values = torch.full((n,), -torch.inf, dtype=dtype, device=dev)
    indices = torch.zeros(n, dtype=torch.long, device=dev)
    b = b.to(dev, dtype)  # B itself is small (M x d); only the M x N cosines are tiled
    for i in range(0, n, row_tile):
        a_tile = a[i : i + row_tile].to(dev, dtype)
        best = torch.full((a_tile.shape[0],), -torch.inf, dtype=dtype, device=dev)
        best_idx = torch.zeros(a_tile.shape[0], dtype=torch.long, device=dev)
        for j in range(0, m, col_tile):
            b_tile = b[j : j + col_tile]
            cos = a_tile @ b_tile.T  # [rows, cols]
            if exclude_self:
                r = torch.arange(a_tile.shape[0], device=dev) + i - j
                ok = (r >= 0) & (r < b_tile.shape[0])
                cos[ok.nonzero().squeeze(1), r[ok]] = -torch.inf
            tile_best, tile_idx = _row_max_argmax(cos)
            better = tile_best > best  # strict: earlier tiles win ties, so the lowest index is kept
            best = torch.where(better, tile_best, best)
            best_idx = torch.where(better, tile_idx + j, best_idx)
            del cos  # free this tile before the next one is allocated: one tile alive at a time
        values[i : i + row_tile] = best
        indices[i : i + row_tile] = best_idx
    return MCSResult(values.cpu(), indices.cpu())


def mcs(a, b, **kwargs) -> torch.Tensor:
    """Shorthand: the MCS values of ``a`` against ``b`` (see :func:`max_cosine_similarity`)."""
    return max_cosine_similarity(a, b, **kwargs).values


def reverse_mcs(a, b, **kwargs) -> MCSResult:
    """MCS of each row of ``b`` against ``a``: the larger dictionary looking back at the smaller."""
    return max_cosine_similarity(b, a, **kwargs)


def self_mcs(a, **kwargs) -> MCSResult:
    """Within-dictionary MCS: each feature's cosine with its nearest other feature."""
    return max_cosine_similarity(a, a, exclude_self=True, **kwargs)


def one_to_one_mcs(
    a: torch.Tensor | np.ndarray,
    b: torch.Tensor | np.ndarray,
    max_entries: int = ASSIGNMENT_MAX_ENTRIES,
    *,
    method: str = "sparse",
    **sparse_options,
) -> MatchResult:
    """One-to-one MCS: match each row of ``a`` [N, d] to a distinct row of ``b`` [M, d], N <= M,
    maximising the total cosine ``sum_i cos(a_i, b_sigma(i))`` (the assignment problem).

    ``method="sparse"`` (default): :func:`sae_core.matching.sparse_assignment`, exact, with
    an LP-duality certificate checked over all N x M pairs in tiles; memory stays bounded
    (never the N x M matrix), so there is no size limit (65536 x 65536 at d = 128 takes
    minutes on a CPU). ``sparse_options`` go to it (``k``, ``max_rounds``, ``tol``,
    ``memory_budget_bytes``, ``device``); the result carries its ``certificate``. Raises
    RuntimeError if no certificate is reached within ``max_rounds``.

    ``method="dense"``: the Hungarian algorithm on the dense float64 cosine matrix
    (``scipy.optimize.linear_sum_assignment``), roughly O(N^2 M) time, so N*M is capped at
    ``max_entries`` (default 8192*16384: 1 GiB of matrix); larger inputs raise ValueError.

    Both normalise the rows as :func:`max_cosine_similarity` does, then work in float64.
    """
    if method == "sparse":
        result = sparse_assignment(a, b, **sparse_options)
        if not result.certificate.certified:
            raise RuntimeError(
                f"one-to-one matching not certified optimal: {result.certificate.note}, "
                f"max violation {result.certificate.max_violation:.3g}; raise max_rounds or use method='dense'"
            )
        return result
    if method != "dense":
        raise ValueError(f"method must be 'sparse' or 'dense', got {method!r}")
    if sparse_options:
        raise TypeError(f"options {sorted(sparse_options)} apply to method='sparse' only")
    a, b = (x.double() for x in _normalized_pair(a, b))
    n, m = a.shape[0], b.shape[0]
    if n > m:
        raise ValueError(f"one-to-one matching needs len(A) <= len(B), got {n} > {m}; swap the arguments")
    if n * m > max_entries:
        raise ValueError(
            f"one-to-one matching of {n} x {m} features needs a dense {n}x{m} float64 cosine matrix "
            f"({n * m * 8 / 2**30:.1f} GiB) and O(N^2 M) time; the limit is N*M <= {max_entries}. "
            "Use method='sparse', match a subset of A, or raise max_entries if you have the memory and time."
        )
    cos = (a @ b.T).numpy()
    rows, cols = linear_sum_assignment(cos, maximize=True)
    order = np.argsort(rows)
    cols = cols[order]
    values = cos[np.arange(n), cols]
    return MatchResult(torch.from_numpy(values), torch.from_numpy(cols.astype(np.int64)))


def gaussian_dictionary(n: int, d: int, seed: int = 0) -> torch.Tensor:
    """A random dictionary [n, d] with i.i.d. N(0, 1) entries (rows uniformly distributed in direction)."""
    if n <= 0 or d <= 0:
        raise ValueError(f"a random dictionary needs positive shape, got ({n}, {d})")
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def sampled_null_mcs(n: int, m: int, d: int, seed: int = 0, **kwargs) -> torch.Tensor:
    """MCS of ``n`` random Gaussian features against ``m`` others in ``d`` dimensions."""
    a = gaussian_dictionary(n, d, seed=2 * seed)
    b = gaussian_dictionary(m, d, seed=2 * seed + 1)
    return mcs(a, b, **kwargs)
