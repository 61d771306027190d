"""Dictionaries as matrices of rows: what the MCS (:mod:`sae_core.similarity`) and the one-to-one
matching (:mod:`sae_core.matching`) share, in one home so that neither imports the other's private
helpers: input checks, row normalisation, the tiling of an N x M cosine matrix into pieces of at
most a memory budget, and the matching's result type.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

DEFAULT_MEMORY_BUDGET = 256 * 2**20  # bytes for one tile of the cosine matrix
ASSIGNMENT_MAX_ENTRIES = 8192 * 16384  # limit on N*M for the dense one-to-one method only, see one_to_one_mcs


@dataclass
class MatchResult:
    values: torch.Tensor  # [N] cosine of each row of A with its matched row of B
    indices: torch.Tensor  # [N] matched row of B (all distinct)


def as_matrix(x: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    """``x`` as a 2-D floating tensor [n_features, d], checked: not empty, finite."""
    t = torch.as_tensor(x)
    if t.ndim != 2:
        raise ValueError(f"{name} must be a 2-D dictionary [n_features, d], got shape {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise ValueError(f"{name} is empty (0 features)")
    if t.shape[1] == 0:
        raise ValueError(f"{name} has width 0")
    if not t.is_floating_point():
        t = t.double()
    if not torch.isfinite(t).all():
        rows = (~torch.isfinite(t)).any(dim=1).nonzero().squeeze(1)[:5].tolist()
        raise ValueError(f"{name} contains NaN or inf (rows {rows}...)")
    return t


def normalize_rows(x: torch.Tensor, name: str = "dictionary") -> torch.Tensor:
    """Rows scaled to unit L2 norm; a zero row is an error (its cosine is undefined)."""
    x = as_matrix(x, name)
    norms = x.norm(dim=1, keepdim=True)
    zero = (norms.squeeze(1) == 0).nonzero().squeeze(1)
    if len(zero):
        raise ValueError(f"{name} has {len(zero)} zero rows (first: {zero[:5].tolist()}); cosine is undefined")
    return x / norms


def normalized_pair(a, b) -> tuple[torch.Tensor, torch.Tensor]:
    """Both dictionaries with unit rows, checked to have the same width."""
    a = normalize_rows(a, "dictionary A")
    b = normalize_rows(b, "dictionary B")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"dictionaries have different widths: A is {a.shape[1]}-d, B is {b.shape[1]}-d")
    return a, b


def tile_sizes(n: int, m: int, itemsize: int, budget: int) -> tuple[int, int]:
    """Row and column tile sizes whose product fits ``budget`` bytes (column tile as wide as possible)."""
    entries = max(budget // itemsize, 1)
    col = min(m, max(entries // 1024, 1))  # at least ~1024 rows per tile when M is huge
    row = min(n, max(entries // col, 1))
    return row, col
