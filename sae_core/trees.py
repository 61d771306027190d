"""Feature trees across dictionary widths, from the similarity of latent *activations*.

Two dictionaries read the same held-out activations; their codes (latent activations,
non-negative) are ``A [T, N]`` (the smaller dictionary, latents ``i``) and ``B [T, M]``
(the larger, latents ``j``). Write ``a_i(t), b_j(t) >= 0`` for one token ``t`` and
``S_i = {t : a_i(t) > 0}``, ``S_j = {t : b_j(t) > 0}`` for the tokens where a latent fires.
The masked cosine on a token set ``S`` is::

    cos_S(i, j) = sum_{t in S} a_i b_j / sqrt( sum_{t in S} a_i^2 * sum_{t in S} b_j^2 )

Three similarities are computed from it or alongside it:

- **Masked cosine similarity** (Bricken et al. 2023, *Towards Monosemanticity*, feature
  splitting): the cosine on the tokens where ``i`` fires and on those where ``j`` fires,
  the larger kept (symmetric)::

      MCS_act(i, j) = max( cos_{S_i}(i, j), cos_{S_j}(i, j) )

- **Directed masked cosine** (the directed-MCS follow-up post on feature trees,
  sparselatents.com/tree_view): only the tokens where the *larger* dictionary's latent
  fires, scaled by the ratio of maximum activations "to ignore latents that don't fire
  very much"::

      D(i -> j) = cos_{S_j}(i, j) * max_t b_j(t) / max_t a_i(t)

  The scale factor makes ``D`` unbounded above (a child that fires harder than its
  parent scores > 1); ``scale_by_max=False`` gives the bare ``cos_{S_j}``.

- **Pearson correlation** over all ``T`` held-out tokens (Bricken et al. 2023, the
  activation correlation used to match features between dictionaries)::

      rho(i, j) = (sum_t a_i b_j / T - mu_i mu_j) / (sigma_i sigma_j)

All three need only per-pair sums, accumulated chunk by chunk over tokens as matrix
products (``P = 1[A > 0]``, ``Q = 1[B > 0]``, squares elementwise)::

    X     = A^T B           [N, M]   sum_t a_i b_j  (equal to the sum over S_i, over S_j,
                                                      or over S_i ∩ S_j: a_i b_j = 0 elsewhere)
    A2onB = (A*A)^T Q       [N, M]   sum_{t in S_j} a_i^2
    B2onA = P^T (B*B)       [N, M]   sum_{t in S_i} b_j^2
    K     = P^T Q           [N, M]   |S_i ∩ S_j|, the co-firing tokens (edge support)

plus per-latent sums, sums of squares (``sum_{S_i} a_i^2 = sum_t a_i^2``), maxima and
firing counts. So ``cos_{S_j} = X / sqrt(A2onB * sumsq_b)`` and
``cos_{S_i} = X / sqrt(sumsq_a * B2onA)``; ``T = 50k`` tokens x 8192 latents is never dense
in memory at once, only ``4 N M`` float64 accumulators are (1.07 GiB for 4096 x 8192).

Zero conventions (no NaN in any score): a cosine whose denominator is 0 (either latent
never fires, or ``i`` never fires on ``S_j``) is 0, and so is then the numerator; a
directed score whose ``max a_i`` is 0 is 0; a correlation with a constant latent
(``sigma = 0``, e.g. a dead one) is 0. Cosines are clipped to [0, 1] and correlations to
[-1, 1] against rounding. Dead latents (no firing on the held-out tokens) never get an
edge and are counted separately in the tree statistics.

The same sums on the co-firing pairs only (:class:`PairStats`, :func:`pair_stats`): every pair
sum above is a sum over tokens where *both* latents fire, so the pairs that never co-fire
carry zeros, and sparse products of the codes (CSR, :func:`encode_sparse`) cost
``T * L0_small * L0_large`` instead of ``T * N * M`` (4 s against 292 s for 16,384 tokens,
4096 -> 8192 latents, 30 active per token, on this 2-core CPU).

Baselines. The *permutation baseline* pairs token ``t`` of the small dictionary with token
``pi(t)`` of the large one (:func:`pair_stats` ``large_tokens``, :func:`token_permutations`):
each large latent keeps its firing rate and magnitudes, and its co-firing with the small one
is broken, so whatever edges remain are drawn by chance. Every statistic of a rung
(:data:`LEVEL_STATISTICS`, :func:`ladder_depth`) is computed the same way on it, and on the
*seed baseline* (two dictionaries of the same size and settings, different seeds: nothing
splits), which is just another pair of codes. The chance floor is not zero: a latent firing on
a share ``p`` of tokens has a masked cosine of about ``sqrt(p) E[a] / sqrt(E[a^2])`` with any
independent latent (0.44 for ``p = 0.2``), so at Bricken et al.'s 0.4 frequent latents link to
everything (tested on a planted split).

Edges and trees (the follow-up post): an edge ``i -> j`` is drawn when the score is at
least a threshold (0.6 for the directed score, the post's value). The edges form a DAG
(a latent of the larger dictionary may have several parents, a *merge*); for drawing,
each large latent is kept under its best-scoring parent only.

A caution measured with this module: the masked scores of *dense* non-negative latents
have a high floor. For two ReLU latents of independent Gaussian directions that fire on
half the tokens, ``cos_{S_j} = sqrt(2)/pi ≈ 0.450`` exactly, and for directions with
cosine ``r = cos(theta)`` (arc-cosine kernel, Cho & Saul 2009)::

    cos_{S_j} = (sin theta + (pi - theta) cos theta) / (2 pi)
                / sqrt( (pi - theta + sin theta cos theta) / (4 pi) )

which crosses 0.6 at ``r ≈ 0.34`` (:func:`relu_masked_cosine`). Random Gaussian
dictionaries of 64 and 128 rows in d = 32 on Gaussian inputs therefore *do* produce edges
at 0.6 (13% of pairs; max directed score 1.12, bare cosine 0.72). When their latents fire
on 5% of tokens the bare cosine, MCS and correlation stay below 0.6 (max 0.51 over three
seeds), but the max-ratio factor alone still lifts a few pairs over 0.6 (max 0.65-0.80);
capping the ratio at 1 (``ratio_cap``, not in the post) removes them. Independent sparse
codes show the same through edges resting on one co-firing token, which a minimum
support (``build_ladder(min_cofire=...)``, not in the post) removes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Literal

import numpy as np
import torch
from scipy import sparse

from sae_core.device import resolve_device
from sae_core.sae import SparseAutoencoder
from sae_core.similarity import max_cosine_similarity

DIRECTED_THRESHOLD = 0.6  # the follow-up post's threshold for the directed score
DEFAULT_CHUNK = 4096  # tokens per chunk when a whole [T, N] tensor is given
DENSE_STEP_RATIO = 100  # pair_stats: dense when T N' M' < this many times the sparse products' steps
ScoreKind = Literal["directed", "directed_capped", "directed_cosine", "mcs", "pearson"]
SCORE_KINDS = ("directed", "directed_capped", "directed_cosine", "mcs", "pearson")
EDGE_KINDS = ("same", "split", "absorbed", "sibling", "unrelated", "unidentified")


# --------------------------------------------------------------------------- accumulation
@dataclass
class CoactivationStats:
    """Sufficient statistics of two dictionaries' codes over ``n_tokens`` tokens (float64).

    Per-latent vectors: ``[N]`` for the small dictionary, ``[M]`` for the large one.
    Pair matrices ``[N, M]``: ``cross = sum_t a_i b_j``, ``sumsq_small_on_large =
    sum_{t: b_j > 0} a_i^2``, ``sumsq_large_on_small = sum_{t: a_i > 0} b_j^2``,
    ``cofire = #{t : a_i > 0 and b_j > 0}``.
    """

    n_tokens: int
    sum_small: np.ndarray  # [N] sum_t a_i
    sum_large: np.ndarray  # [M] sum_t b_j
    sumsq_small: np.ndarray  # [N] sum_t a_i^2
    sumsq_large: np.ndarray  # [M] sum_t b_j^2
    max_small: np.ndarray  # [N] max_t a_i (0 if never fires)
    max_large: np.ndarray  # [M]
    count_small: np.ndarray  # [N] int64, #tokens with a_i > 0
    count_large: np.ndarray  # [M] int64
    cross: np.ndarray  # [N, M]
    sumsq_small_on_large: np.ndarray  # [N, M]
    sumsq_large_on_small: np.ndarray  # [N, M]
    cofire: np.ndarray  # [N, M] co-firing token counts (float64, integral)

    @property
    def shape(self) -> tuple[int, int]:
        return self.cross.shape

    @property
    def alive_small(self) -> np.ndarray:
        """[N] bool: the small latent fired on at least one held-out token."""
        return self.count_small > 0

    @property
    def alive_large(self) -> np.ndarray:
        """[M] bool."""
        return self.count_large > 0


class CoactivationAccumulator:
    """Accumulates :class:`CoactivationStats` chunk by chunk over tokens.

    Each :meth:`update` with codes ``A [t, N]``, ``B [t, M]`` costs four ``[N', t] @ [t, M']``
    products over the N' and M' latents that fire in the chunk, in ``dtype`` (float32 by
    default) on ``device``; the running sums are float64.
    Memory: ``4 N M`` float64 accumulators plus one chunk.
    """

    def __init__(
        self,
        n_small: int,
        n_large: int,
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if n_small <= 0 or n_large <= 0:
            raise ValueError(f"need positive dictionary sizes, got N={n_small}, M={n_large}")
        self.device = resolve_device("auto" if device is None else device)
        self.dtype = dtype
        self.n_small, self.n_large = n_small, n_large
        self.n_tokens = 0
        f64 = {"dtype": torch.float64, "device": self.device}
        self.sum_small = torch.zeros(n_small, **f64)
        self.sum_large = torch.zeros(n_large, **f64)
        self.sumsq_small = torch.zeros(n_small, **f64)
        self.sumsq_large = torch.zeros(n_large, **f64)
        self.max_small = torch.zeros(n_small, **f64)
        self.max_large = torch.zeros(n_large, **f64)
        self.count_small = torch.zeros(n_small, dtype=torch.int64, device=self.device)
        self.count_large = torch.zeros(n_large, dtype=torch.int64, device=self.device)
        self.cross = torch.zeros(n_small, n_large, **f64)
        self.sumsq_small_on_large = torch.zeros(n_small, n_large, **f64)
        self.sumsq_large_on_small = torch.zeros(n_small, n_large, **f64)
        self.cofire = torch.zeros(n_small, n_large, **f64)

    def _codes(self, x: torch.Tensor | np.ndarray, width: int, name: str) -> torch.Tensor:
        t = torch.as_tensor(x)
        if t.ndim != 2 or t.shape[1] != width:
            raise ValueError(f"{name} must have shape [tokens, {width}], got {tuple(t.shape)}")
        t = t.to(self.device, self.dtype)
        if not torch.isfinite(t).all():
            raise ValueError(f"{name} contains NaN or inf")
        if (t < 0).any():
            raise ValueError(f"{name} has negative entries; codes (latent activations) must be >= 0")
        return t

    @torch.no_grad()
    def update(self, codes_small: torch.Tensor | np.ndarray, codes_large: torch.Tensor | np.ndarray) -> None:
        """Add one chunk: ``codes_small [t, N]`` and ``codes_large [t, M]`` on the same ``t`` tokens."""
        a = self._codes(codes_small, self.n_small, "codes_small")  # [t, N]
        b = self._codes(codes_large, self.n_large, "codes_large")  # [t, M]
        if a.shape[0] != b.shape[0]:
            raise ValueError(f"the two code chunks cover different token counts: {a.shape[0]} vs {b.shape[0]}")
        if a.shape[0] == 0:
            return
        self.n_tokens += a.shape[0]
        # Only latents that fire in this chunk add to any sum: take those columns alone (a
        # dictionary with many dead latents costs a fraction of the full products)
        rows = torch.nonzero((a > 0).any(0)).squeeze(1)  # [n'] latents of the small dictionary
        cols = torch.nonzero((b > 0).any(0)).squeeze(1)  # [m'] of the large one
        a, b = a[:, rows], b[:, cols]  # [t, n'], [t, m']
        fire_a, fire_b = (a > 0).to(self.dtype), (b > 0).to(self.dtype)
        a2, b2 = a * a, b * b
        # per-chunk sums in the codes' dtype, accumulated across chunks in float64
        self.sum_small[rows] += a.sum(0).double()
        self.sum_large[cols] += b.sum(0).double()
        self.sumsq_small[rows] += a2.sum(0).double()
        self.sumsq_large[cols] += b2.sum(0).double()
        if rows.numel():
            self.max_small[rows] = torch.maximum(self.max_small[rows], a.max(0).values.double())
            self.count_small[rows] += fire_a.sum(0).long()
        if cols.numel():
            self.max_large[cols] = torch.maximum(self.max_large[cols], b.max(0).values.double())
            self.count_large[cols] += fire_b.sum(0).long()
        block = (rows.unsqueeze(1), cols.unsqueeze(0))
        self.cross[block] += (a.T @ b).double()  # [n', m']
        self.sumsq_small_on_large[block] += (a2.T @ fire_b).double()
        self.sumsq_large_on_small[block] += (fire_a.T @ b2).double()
        self.cofire[block] += (fire_a.T @ fire_b).double()  # exact while a chunk has < 2^24 tokens

    def result(self) -> CoactivationStats:
        """The statistics so far, as float64 numpy arrays (at least one token needed)."""
        if self.n_tokens == 0:
            raise ValueError("no tokens accumulated")

        def np_(t: torch.Tensor) -> np.ndarray:
            return t.cpu().numpy().copy()

        return CoactivationStats(
            n_tokens=self.n_tokens,
            sum_small=np_(self.sum_small),
            sum_large=np_(self.sum_large),
            sumsq_small=np_(self.sumsq_small),
            sumsq_large=np_(self.sumsq_large),
            max_small=np_(self.max_small),
            max_large=np_(self.max_large),
            count_small=np_(self.count_small),
            count_large=np_(self.count_large),
            cross=np_(self.cross),
            sumsq_small_on_large=np_(self.sumsq_small_on_large),
            sumsq_large_on_small=np_(self.sumsq_large_on_small),
            cofire=np_(self.cofire),
        )


def _chunks(x: torch.Tensor | np.ndarray, chunk_size: int) -> Iterator[torch.Tensor | np.ndarray]:
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    for start in range(0, x.shape[0], chunk_size):
        yield x[start : start + chunk_size]


def coactivation_stats(
    codes_small: torch.Tensor | np.ndarray,
    codes_large: torch.Tensor | np.ndarray,
    *,
    chunk_size: int = DEFAULT_CHUNK,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> CoactivationStats:
    """Statistics of two whole code matrices ``[T, N]``, ``[T, M]``, taken ``chunk_size`` tokens at a time."""
    if codes_small.shape[0] != codes_large.shape[0]:
        raise ValueError(f"codes cover different token counts: {codes_small.shape[0]} vs {codes_large.shape[0]}")
    acc = CoactivationAccumulator(codes_small.shape[1], codes_large.shape[1], device=device, dtype=dtype)
    for a, b in zip(_chunks(codes_small, chunk_size), _chunks(codes_large, chunk_size), strict=True):
        acc.update(a, b)
    return acc.result()


def _batches(activations: torch.Tensor | np.ndarray | Iterable, chunk_size: int) -> Iterator:
    if isinstance(activations, torch.Tensor | np.ndarray):
        yield from _chunks(activations, chunk_size)
    else:
        for batch in activations:
            yield from _chunks(batch, chunk_size)


def ladder_coactivation(
    saes: Sequence[SparseAutoencoder],
    activations: torch.Tensor | np.ndarray | Iterable[torch.Tensor | np.ndarray],
    *,
    chunk_size: int = DEFAULT_CHUNK,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> list[CoactivationStats]:
    """Statistics for every consecutive pair ``(saes[k], saes[k+1])`` in one pass over the activations.

    ``activations`` is a tensor ``[T, d_in]`` or an iterable of batches ``[B, d_in]``; each
    batch is encoded once by every SAE (``f = sae.encode(x)``, the SAE's own device) and
    fed to the accumulators in chunks of at most ``chunk_size`` tokens. ``device`` holds
    the accumulators (default: the first SAE's device).
    """
    if len(saes) < 2:
        raise ValueError("a ladder needs at least two SAEs")
    widths = [s.cfg.d_in for s in saes]
    if len(set(widths)) != 1:
        raise ValueError(f"the SAEs read activations of different widths: {widths}")
    sae_devices = [next(s.parameters()).device for s in saes]
    dev = sae_devices[0] if device is None else resolve_device(device)
    accs = [
        CoactivationAccumulator(s.cfg.d_sae, t.cfg.d_sae, device=dev, dtype=dtype)
        for s, t in pairwise(saes)
    ]
    with torch.no_grad():
        for x in _batches(activations, chunk_size):
            x = torch.as_tensor(x)
            if x.ndim != 2 or x.shape[1] != widths[0]:
                raise ValueError(f"activation batches must be [tokens, {widths[0]}], got {tuple(x.shape)}")
            codes = [s.encode(x.to(d, torch.float32)) for s, d in zip(saes, sae_devices, strict=True)]  # [t, d_sae]
            for k, acc in enumerate(accs):
                acc.update(codes[k], codes[k + 1])
    return [acc.result() for acc in accs]


def sae_coactivation(
    sae_small: SparseAutoencoder,
    sae_large: SparseAutoencoder,
    activations: torch.Tensor | np.ndarray | Iterable[torch.Tensor | np.ndarray],
    **kwargs,
) -> CoactivationStats:
    """Statistics of two SAEs' codes on the same activations (see :func:`ladder_coactivation`)."""
    return ladder_coactivation([sae_small, sae_large], activations, **kwargs)[0]


# --------------------------------------------------------------------------- sparse pair statistics
@dataclass
class PairStats:
    """:class:`CoactivationStats` held only on the pairs that co-fire on at least one token.

    Every pair sum (``cross``, ``sumsq_small_on_large``, ``sumsq_large_on_small``, ``cofire``)
    is a sum over tokens where *both* latents fire, so it is 0 for every other pair, and so is
    every score but Pearson's (whose value there, ``-mu_i mu_j / (sigma_i sigma_j) <= 0``, never
    reaches a positive threshold). The per-latent vectors are those of
    :class:`CoactivationStats`; the pair arrays are ``[P]``, sorted by ``(small, large)``.
    Memory: ``6 P`` numbers instead of ``4 N M``; :func:`pair_stats` computes them as sparse
    products, whose cost grows with ``T * L0_small * L0_large`` instead of ``T * N * M``.
    """

    n_tokens: int
    n_small: int
    n_large: int
    sum_small: np.ndarray  # [N]
    sum_large: np.ndarray  # [M]
    sumsq_small: np.ndarray  # [N]
    sumsq_large: np.ndarray  # [M]
    max_small: np.ndarray  # [N]
    max_large: np.ndarray  # [M]
    count_small: np.ndarray  # [N] int64
    count_large: np.ndarray  # [M] int64
    small: np.ndarray  # [P] int64, small latent of each co-firing pair
    large: np.ndarray  # [P] int64, its large latent
    cross: np.ndarray  # [P] sum_t a_i b_j
    sumsq_small_on_large: np.ndarray  # [P] sum_{t: b_j > 0} a_i^2
    sumsq_large_on_small: np.ndarray | None  # [P] sum_{t: a_i > 0} b_j^2 (None: not computed)
    cofire: np.ndarray  # [P] co-firing tokens (>= min_cofire)
    min_cofire: int = 1  # pairs co-firing on fewer tokens were dropped

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_small, self.n_large)

    @property
    def alive_small(self) -> np.ndarray:
        return self.count_small > 0

    @property
    def alive_large(self) -> np.ndarray:
        return self.count_large > 0

    def lookup(self, small: np.ndarray, large: np.ndarray, values: np.ndarray) -> np.ndarray:
        """``values [P]`` at the pairs ``(small[k], large[k])``, 0 for a pair that never co-fires."""
        small, large = np.asarray(small, np.int64), np.asarray(large, np.int64)
        keys, want = self.small * self.n_large + self.large, small * self.n_large + large  # keys are sorted
        if keys.size == 0:
            return np.zeros(want.shape)
        pos = np.minimum(np.searchsorted(keys, want), keys.size - 1)
        return np.where(keys[pos] == want, values[pos], 0.0)

    def to_dense(self) -> CoactivationStats:
        """The same statistics as dense ``[N, M]`` matrices (for checks on small dictionaries)."""
        def dense(v: np.ndarray) -> np.ndarray:
            out = np.zeros(self.shape)
            out[self.small, self.large] = v
            return out

        return CoactivationStats(
            self.n_tokens, self.sum_small.copy(), self.sum_large.copy(), self.sumsq_small.copy(),
            self.sumsq_large.copy(), self.max_small.copy(), self.max_large.copy(), self.count_small.copy(),
            self.count_large.copy(), dense(self.cross), dense(self.sumsq_small_on_large),
            dense(self.sumsq_large_on_small) if self.sumsq_large_on_small is not None else np.full(self.shape, np.nan),
            dense(self.cofire),
        )


def sparse_codes(codes: torch.Tensor | np.ndarray | sparse.spmatrix) -> sparse.csr_matrix:
    """Codes ``[T, n]`` (non-negative, finite) as a float64 CSR matrix without stored zeros."""
    if sparse.issparse(codes):
        out = sparse.csr_matrix(codes, dtype=np.float64, copy=True)
    else:
        t = torch.as_tensor(codes).detach().cpu()
        if t.ndim != 2:
            raise ValueError(f"codes must be [tokens, latents], got shape {tuple(t.shape)}")
        nonzero = t != 0  # in the codes' dtype: no dense float64 copy
        rows, cols = nonzero.nonzero(as_tuple=True)  # row-major, as CSR stores them
        indptr = np.zeros(t.shape[0] + 1, np.int64)
        np.cumsum(torch.bincount(rows, minlength=t.shape[0]).numpy(), out=indptr[1:])
        out = sparse.csr_matrix((t[nonzero].double().numpy(), cols.numpy(), indptr), shape=tuple(t.shape))
    if not np.isfinite(out.data).all():
        raise ValueError("codes contain NaN or inf")
    if (out.data < 0).any():
        raise ValueError("codes have negative entries; codes (latent activations) must be >= 0")
    out.eliminate_zeros()
    out.sort_indices()
    return out


def encode_sparse(
    saes: Sequence[SparseAutoencoder],
    activations: torch.Tensor | np.ndarray | Iterable[torch.Tensor | np.ndarray],
    *,
    chunk_size: int = DEFAULT_CHUNK,
) -> list[sparse.csr_matrix]:
    """Each SAE's codes ``f = sae.encode(x)`` of the same activations, as CSR ``[T, d_sae]``;
    each batch is encoded once by every SAE, ``chunk_size`` tokens at a time, so no dense
    ``[T, d_sae]`` matrix ever exists."""
    if not saes:
        raise ValueError("no SAEs to encode with")
    widths = [s.cfg.d_in for s in saes]
    if len(set(widths)) != 1:
        raise ValueError(f"the SAEs read activations of different widths: {widths}")
    devices = [next(s.parameters()).device for s in saes]
    parts: list[list[sparse.csr_matrix]] = [[] for _ in saes]
    with torch.no_grad():
        for x in _batches(activations, chunk_size):
            x = torch.as_tensor(x)
            if x.ndim != 2 or x.shape[1] != widths[0]:
                raise ValueError(f"activation batches must be [tokens, {widths[0]}], got {tuple(x.shape)}")
            for k, (sae, dev) in enumerate(zip(saes, devices, strict=True)):
                parts[k].append(sparse_codes(sae.encode(x.to(dev, torch.float32))))
    if not parts[0]:
        raise ValueError("no activations to encode")
    return [sparse.vstack(p, format="csr") for p in parts]


def pair_stats(
    codes_small: torch.Tensor | np.ndarray | sparse.spmatrix,
    codes_large: torch.Tensor | np.ndarray | sparse.spmatrix,
    *,
    large_tokens: np.ndarray | None = None,
    method: Literal["auto", "sparse", "dense"] = "auto",
    min_cofire: int = 1,
    small_masks: bool = True,
) -> PairStats:
    """:class:`PairStats` of two code matrices ``[T, N]``, ``[T, M]`` (dense or sparse).

    ``large_tokens [T]`` (a permutation of the tokens), if given, pairs token ``t`` of the small
    dictionary with token ``large_tokens[t]`` of the large one: the permutation baseline, which
    keeps each large latent's firing and magnitudes and breaks its co-firing with the small one.

    ``method``: four sparse products ``[N, T] @ [T, M]`` in float64 (``"sparse"``, cost
    ``sum_t L0_small(t) L0_large(t)``), or the dense accumulation of :class:`CoactivationAccumulator`
    (``"dense"``, cost ``T N' M'`` over the latents that fire). ``"auto"`` takes the dense one
    when codes are so dense that it is faster (measured here: a sparse product step costs about
    as much as 400-1000 dense multiply-adds, less the dense path's overheads: a factor of 100)
    and its ``4 N M`` accumulators fit in 1 GiB. The
    sparse path takes two products: ``A^T B`` and the complex ``(A*A + i P)^T Q``, whose real part
    is ``sumsq_small_on_large`` and imaginary part the co-firing count (exact: small integers); a
    third, ``P^T (B*B)``, only with ``small_masks`` (``sumsq_large_on_small``, which the masked
    cosine on the small latent's tokens needs: ``"mcs"``; without it that field is ``None``).

    ``min_cofire`` keeps only pairs that co-fire on at least that many tokens (the rest are
    treated as never co-firing: no score of theirs can then be asked for, see :func:`scored_pairs`);
    on real codes most co-firing pairs share one or two tokens, so this shrinks the result many-fold.
    """
    a, b = sparse_codes(codes_small), sparse_codes(codes_large)
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"codes cover different token counts: {a.shape[0]} vs {b.shape[0]}")
    if a.shape[0] == 0:
        raise ValueError("no tokens")
    if large_tokens is not None:
        large_tokens = np.asarray(large_tokens, np.int64)
        if not np.array_equal(np.sort(large_tokens), np.arange(b.shape[0])):
            raise ValueError("large_tokens must be a permutation of the tokens")
        b = b[large_tokens]
    if method not in ("auto", "sparse", "dense"):
        raise ValueError(f"unknown method {method!r}")
    if min_cofire < 1:
        raise ValueError(f"min_cofire must be >= 1, got {min_cofire}")
    if method == "auto":
        sparse_steps = float(np.dot(np.diff(a.indptr).astype(np.float64), np.diff(b.indptr)))
        n_fire, m_fire = np.unique(a.indices).size, np.unique(b.indices).size
        dense_steps = float(a.shape[0]) * n_fire * m_fire
        method = "dense" if dense_steps < DENSE_STEP_RATIO * sparse_steps and a.shape[1] * b.shape[1] <= 2**25 \
            else "sparse"
    if method == "dense":
        acc = CoactivationAccumulator(a.shape[1], b.shape[1], device="cpu")
        for start in range(0, a.shape[0], DEFAULT_CHUNK):
            stop = start + DEFAULT_CHUNK
            acc.update(torch.from_numpy(a[start:stop].toarray()), torch.from_numpy(b[start:stop].toarray()))
        return _pairs_of(acc.result(), min_cofire, small_masks)
    at = a.T.tocsr()  # [N, T]
    a2_fire = at.astype(np.complex128)
    a2_fire.data = at.data**2 + 1j  # a^2 + i * 1[a > 0]
    fire_b = b.copy()
    fire_b.data[:] = 1.0
    cross = at @ b  # [N, M]; every product has one sparsity pattern: sums of positive terms on co-firing tokens
    sq_and_count = a2_fire @ fire_b
    products = [cross, sq_and_count]
    if small_masks:
        fire_a, b2 = at.copy(), b.copy()
        fire_a.data[:] = 1.0
        b2.data **= 2
        products.append(fire_a @ b2)
    for m in products:
        m.sort_indices()
    ref = products[0]
    for m in products[1:]:
        if not (np.array_equal(m.indptr, ref.indptr) and np.array_equal(m.indices, ref.indices)):
            raise RuntimeError("sparse products with different patterns")  # pragma: no cover
    cofire = np.rint(sq_and_count.data.imag)
    keep = cofire >= min_cofire
    small = np.repeat(np.arange(ref.shape[0], dtype=np.int64), np.diff(ref.indptr))[keep]
    large = ref.indices.astype(np.int64)[keep]

    def col(x: sparse.csr_matrix, how: str) -> np.ndarray:
        if how == "max":
            return np.asarray(x.max(axis=0).todense(), np.float64).ravel() if x.nnz else np.zeros(x.shape[1])
        return np.asarray(getattr(x, how)(axis=0), np.float64).ravel()

    a_sq, b_sq = a.multiply(a).tocsr(), b.multiply(b).tocsr()
    return PairStats(
        n_tokens=a.shape[0], n_small=a.shape[1], n_large=b.shape[1],
        sum_small=col(a, "sum"), sum_large=col(b, "sum"), sumsq_small=col(a_sq, "sum"), sumsq_large=col(b_sq, "sum"),
        max_small=np.maximum(col(a, "max"), 0.0), max_large=np.maximum(col(b, "max"), 0.0),
        count_small=np.bincount(a.indices, minlength=a.shape[1]).astype(np.int64),
        count_large=np.bincount(b.indices, minlength=b.shape[1]).astype(np.int64),
        small=small, large=large, cross=cross.data[keep], sumsq_small_on_large=sq_and_count.data.real[keep],
        sumsq_large_on_small=products[2].data[keep] if small_masks else None, cofire=cofire[keep],
        min_cofire=int(min_cofire),
    )


def _pairs_of(stats: CoactivationStats, min_cofire: int = 1, small_masks: bool = True) -> PairStats:
    """The pairs of dense statistics that co-fire on at least ``min_cofire`` tokens."""
    small, large = np.nonzero(stats.cofire >= min_cofire)  # row-major: sorted by (small, large)
    n, m = stats.shape
    return PairStats(
        stats.n_tokens, n, m, stats.sum_small, stats.sum_large, stats.sumsq_small, stats.sumsq_large,
        stats.max_small, stats.max_large, stats.count_small, stats.count_large, small.astype(np.int64),
        large.astype(np.int64), stats.cross[small, large], stats.sumsq_small_on_large[small, large],
        stats.sumsq_large_on_small[small, large] if small_masks else None, stats.cofire[small, large],
        int(min_cofire),
    )


def token_permutations(n_tokens: int, n_permutations: int, seed: int = 0) -> list[np.ndarray]:
    """``n_permutations`` seeded permutations of ``range(n_tokens)`` (permutation ``k`` from seed ``(seed, k)``)."""
    return [np.random.default_rng([seed, k]).permutation(n_tokens) for k in range(n_permutations)]


# --------------------------------------------------------------------------- scores
AnyStats = CoactivationStats | PairStats


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den where den > 0, else 0."""
    out = np.zeros(np.broadcast_shapes(np.shape(num), np.shape(den)))
    np.divide(num, den, out=out, where=den > 0)
    return out


def _per_small(stats: AnyStats, v: np.ndarray) -> np.ndarray:
    """A small-latent vector ``[N]`` aligned with the pair values: ``[N, 1]`` or ``[P]``."""
    return v[stats.small] if isinstance(stats, PairStats) else v[:, None]


def _per_large(stats: AnyStats, v: np.ndarray) -> np.ndarray:
    return v[stats.large] if isinstance(stats, PairStats) else v[None, :]


def masked_cosine_on_large(stats: AnyStats) -> np.ndarray:
    """``cos_{S_j}(i, j) = sum_t a_i b_j / sqrt(sum_{b_j>0} a_i^2 * sum_t b_j^2)`` [N, M] (``[P]`` for
    :class:`PairStats`); 0 where undefined."""
    den = np.sqrt(stats.sumsq_small_on_large * _per_large(stats, stats.sumsq_large))
    return np.clip(_safe_div(stats.cross, den), 0.0, 1.0)


def masked_cosine_on_small(stats: AnyStats) -> np.ndarray:
    """``cos_{S_i}(i, j) = sum_t a_i b_j / sqrt(sum_t a_i^2 * sum_{a_i>0} b_j^2)`` [N, M]; 0 where undefined."""
    if stats.sumsq_large_on_small is None:
        raise ValueError("these pair statistics were computed without small_masks: no masked cosine on S_i")
    den = np.sqrt(_per_small(stats, stats.sumsq_small) * stats.sumsq_large_on_small)
    return np.clip(_safe_div(stats.cross, den), 0.0, 1.0)


def masked_cosine(stats: AnyStats) -> np.ndarray:
    """Masked cosine similarity of Bricken et al. 2023: ``max(cos_{S_i}, cos_{S_j})`` [N, M], in [0, 1]."""
    return np.maximum(masked_cosine_on_small(stats), masked_cosine_on_large(stats))


def directed_masked_cosine(
    stats: AnyStats, *, scale_by_max: bool = True, ratio_cap: float | None = None
) -> np.ndarray:
    """Directed score of the follow-up post, small ``i`` -> large ``j`` [N, M]:
    ``D(i -> j) = cos_{S_j}(i, j) * max_t b_j / max_t a_i`` (0 where ``max a_i = 0``).

    Not bounded by 1 when ``scale_by_max``; without it, the bare ``cos_{S_j}`` in [0, 1].
    ``ratio_cap`` (not in the post) replaces the ratio by ``min(ratio, ratio_cap)``: with 1,
    the factor still discounts a ``j`` that fires weakly but never lifts a pair above its
    cosine (``D <= cos_{S_j} <= 1``).
    """
    cos = masked_cosine_on_large(stats)
    if not scale_by_max:
        return cos
    ratio = _safe_div(_per_large(stats, stats.max_large), _per_small(stats, stats.max_small))  # [N, M]
    if ratio_cap is not None:
        ratio = np.minimum(ratio, ratio_cap)
    return cos * ratio


def activation_correlation(stats: AnyStats) -> np.ndarray:
    """Pearson correlation over all held-out tokens [N, M]:
    ``rho = (sum a b / T - mu_a mu_b) / (sigma_a sigma_b)``, 0 for a constant (e.g. dead) latent.
    (``[P]`` for :class:`PairStats`: the co-firing pairs only.)
    """
    t = stats.n_tokens
    mu_a, mu_b = stats.sum_small / t, stats.sum_large / t  # [N], [M]
    var_a = np.maximum(stats.sumsq_small / t - mu_a**2, 0.0)
    var_b = np.maximum(stats.sumsq_large / t - mu_b**2, 0.0)
    # A variance at rounding level of the mean square is a constant latent: treat it as 0.
    var_a[var_a <= 1e-12 * np.maximum(stats.sumsq_small / t, 1e-300)] = 0.0
    var_b[var_b <= 1e-12 * np.maximum(stats.sumsq_large / t, 1e-300)] = 0.0
    cov = stats.cross / t - _per_small(stats, mu_a) * _per_large(stats, mu_b)  # [N, M]
    den = np.sqrt(_per_small(stats, var_a) * _per_large(stats, var_b))
    return np.clip(_safe_div(cov, den), -1.0, 1.0)


def correlation_at(stats: AnyStats, small: np.ndarray, large: np.ndarray,
                   cross: np.ndarray | None = None) -> np.ndarray:
    """Pearson correlation of the pairs ``(small[k], large[k])`` (any pairs, co-firing or not).

    ``cross [K]`` (``sum_t a b`` of each pair) replaces the statistics' own, which for
    :class:`PairStats` built with ``min_cofire > 1`` lack the pairs that co-fire on fewer tokens."""
    small, large = np.asarray(small, np.int64), np.asarray(large, np.int64)
    t = stats.n_tokens
    if cross is None:
        cross = stats.lookup(small, large, stats.cross) if isinstance(stats, PairStats) else stats.cross[small, large]
    mu_a, mu_b = stats.sum_small[small] / t, stats.sum_large[large] / t
    sq_a, sq_b = stats.sumsq_small[small] / t, stats.sumsq_large[large] / t
    var_a, var_b = np.maximum(sq_a - mu_a**2, 0.0), np.maximum(sq_b - mu_b**2, 0.0)
    var_a[var_a <= 1e-12 * np.maximum(sq_a, 1e-300)] = 0.0
    var_b[var_b <= 1e-12 * np.maximum(sq_b, 1e-300)] = 0.0
    return np.clip(_safe_div(cross / t - mu_a * mu_b, np.sqrt(var_a * var_b)), -1.0, 1.0)


def containment(stats: AnyStats) -> np.ndarray:
    """Share of the large latent's firing tokens on which the small one also fires [N, M]:
    ``|S_i ∩ S_j| / |S_j|`` (0 for a dead ``j``). About 1 for a true child under its parent,
    whose feature fires only with the parent's (the synthetic source's hierarchy)."""
    return _safe_div(stats.cofire, _per_large(stats, stats.count_large).astype(np.float64))


def similarity_scores(stats: AnyStats, kind: ScoreKind = "directed") -> np.ndarray:
    """One of the scores [N, M] (``[P]`` for :class:`PairStats`): ``"directed"`` (D with the max
    ratio), ``"directed_capped"`` (D with the ratio capped at 1), ``"directed_cosine"``
    (``cos_{S_j}``), ``"mcs"`` (masked cosine similarity), ``"pearson"``."""
    if kind == "directed":
        return directed_masked_cosine(stats)
    if kind == "directed_capped":
        return directed_masked_cosine(stats, ratio_cap=1.0)
    if kind == "directed_cosine":
        return masked_cosine_on_large(stats)
    if kind == "mcs":
        return masked_cosine(stats)
    if kind == "pearson":
        return activation_correlation(stats)
    raise ValueError(f"unknown score kind {kind!r}; use one of {SCORE_KINDS}")


def relu_masked_cosine(r: float | np.ndarray) -> np.ndarray:
    """Population ``cos_{S_j}`` of ``a = ReLU(<u, x>)``, ``b = ReLU(<v, x>)`` for ``x ~ N(0, I)``
    and unit ``u, v`` with ``<u, v> = r = cos(theta)`` (no bias, both fire half the time)::

        E[a b]        = (sin theta + (pi - theta) cos theta) / (2 pi)     (Cho & Saul 2009)
        E[a^2 1_b>0]  = (pi - theta + sin theta cos theta) / (2 pi),   E[b^2] = 1/2
        cos_{S_j}     = E[a b] / sqrt(E[a^2 1_b>0] E[b^2])

    The floor of the directed score for random dense dictionaries: sqrt(2)/pi at r = 0.
    """
    theta = np.arccos(np.clip(np.asarray(r, dtype=np.float64), -1.0, 1.0))
    s, c = np.sin(theta), np.cos(theta)
    e_ab = (s + (np.pi - theta) * c) / (2 * np.pi)
    e_a2_on_b = (np.pi - theta + s * c) / (2 * np.pi)
    return _safe_div(e_ab, np.sqrt(e_a2_on_b * 0.5))


# --------------------------------------------------------------------------- edges and trees
@dataclass
class TreeLevel:
    """Edges from a dictionary of ``n_small`` latents to one of ``n_large`` (one rung of the ladder).

    ``src [E]``, ``dst [E]``, ``score [E]``: the DAG's edges (score >= threshold, both ends
    alive), sorted by (src, dst). ``best_parent [M]``: for drawing, each large latent's
    highest-scoring parent (lowest index on ties), -1 without one.
    """

    n_small: int
    n_large: int
    threshold: float
    src: np.ndarray  # [E] int64
    dst: np.ndarray  # [E] int64
    score: np.ndarray  # [E] float64
    best_parent: np.ndarray  # [M] int64
    alive_small: np.ndarray  # [N] bool
    alive_large: np.ndarray  # [M] bool

    @property
    def n_children(self) -> np.ndarray:
        """[N] out-degree in the DAG."""
        return np.bincount(self.src, minlength=self.n_small)

    @property
    def n_parents(self) -> np.ndarray:
        """[M] in-degree in the DAG."""
        return np.bincount(self.dst, minlength=self.n_large)

    @property
    def tree_children(self) -> np.ndarray:
        """[N] children in the drawn tree (large latents whose best parent this is)."""
        kept = self.best_parent[self.best_parent >= 0]
        return np.bincount(kept, minlength=self.n_small)

    def edges(self) -> set[tuple[int, int]]:
        return {(int(i), int(j)) for i, j in zip(self.src, self.dst, strict=True)}


def _masks(n: int, m: int, alive_small: np.ndarray | None,
           alive_large: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    alive_small = np.ones(n, bool) if alive_small is None else np.asarray(alive_small, bool)
    alive_large = np.ones(m, bool) if alive_large is None else np.asarray(alive_large, bool)
    if alive_small.shape != (n,) or alive_large.shape != (m,):
        raise ValueError(f"alive masks must be [N] = [{n}] and [M] = [{m}], "
                         f"got {alive_small.shape}, {alive_large.shape}")
    return alive_small, alive_large


def _level_from_edges(n: int, m: int, threshold: float, src: np.ndarray, dst: np.ndarray, score: np.ndarray,
                      alive_small: np.ndarray, alive_large: np.ndarray) -> TreeLevel:
    """A :class:`TreeLevel` from its edges (any order): sorted by (src, dst), best parent per large latent
    (highest score, lowest index on ties)."""
    order = np.lexsort((dst, src))
    src, dst, score = src[order].astype(np.int64), dst[order].astype(np.int64), score[order].astype(np.float64)
    best_parent = np.full(m, -1, np.int64)
    if src.size:
        by_dst = np.lexsort((src, -score, dst))  # per large latent: best score first, then lowest index
        first = np.ones(by_dst.size, bool)
        first[1:] = dst[by_dst][1:] != dst[by_dst][:-1]
        best_parent[dst[by_dst][first]] = src[by_dst][first]
    return TreeLevel(n, m, float(threshold), src, dst, score, best_parent, alive_small, alive_large)


def tree_level(
    scores: np.ndarray,
    threshold: float = DIRECTED_THRESHOLD,
    *,
    alive_small: np.ndarray | None = None,
    alive_large: np.ndarray | None = None,
    allowed: np.ndarray | None = None,
) -> TreeLevel:
    """Edges ``i -> j`` with ``scores[i, j] >= threshold`` between alive latents; best parent per ``j``.

    ``scores [N, M]``; ``alive_*`` default to all latents (pass ``stats.alive_small`` etc.);
    ``allowed [N, M]`` bool, if given, further restricts the pairs (e.g. a minimum support).
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"scores must be [N, M], got shape {scores.shape}")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or inf")
    n, m = scores.shape
    alive_small, alive_large = _masks(n, m, alive_small, alive_large)
    ok = (scores >= threshold) & alive_small[:, None] & alive_large[None, :]  # [N, M]
    if allowed is not None:
        if np.shape(allowed) != (n, m):
            raise ValueError(f"allowed must be [N, M] = {(n, m)}, got {np.shape(allowed)}")
        ok &= np.asarray(allowed, bool)
    src, dst = np.nonzero(ok)
    return _level_from_edges(n, m, threshold, src, dst, scores[src, dst], alive_small, alive_large)


@dataclass
class ScoredPairs:
    """Every pair that can become an edge of one rung, with its score: both latents alive and at
    least ``min_cofire`` co-firing tokens. :func:`level_at` draws the edges at any threshold > 0
    from it, so a threshold sweep scores the pairs once."""

    n_small: int
    n_large: int
    kind: str
    min_cofire: int
    small: np.ndarray  # [P'] int64
    large: np.ndarray  # [P'] int64
    score: np.ndarray  # [P'] float64
    alive_small: np.ndarray  # [N] bool: fired on the tokens and kept by the caller's mask
    alive_large: np.ndarray  # [M] bool


def scored_pairs(
    stats: AnyStats,
    *,
    kind: ScoreKind = "directed",
    min_cofire: int = 1,
    alive_small: np.ndarray | None = None,
    alive_large: np.ndarray | None = None,
) -> ScoredPairs:
    """The candidate edges of one rung. ``alive_small [N]``, ``alive_large [M]`` (e.g. latents that
    fire on held-out activations) further restrict the latents that fired on these tokens."""
    if min_cofire < 1:
        raise ValueError(f"min_cofire must be >= 1 (a pair that never co-fires is no edge), got {min_cofire}")
    if isinstance(stats, PairStats) and min_cofire < stats.min_cofire:
        raise ValueError(f"these pair statistics keep only pairs co-firing on >= {stats.min_cofire} tokens; "
                         f"min_cofire={min_cofire} needs more")
    n, m = stats.shape
    keep_small, keep_large = _masks(n, m, alive_small, alive_large)
    keep_small, keep_large = keep_small & stats.alive_small, keep_large & stats.alive_large
    score = similarity_scores(stats, kind)
    if isinstance(stats, PairStats):
        small, large, cofire = stats.small, stats.large, stats.cofire
    else:
        small, large = np.nonzero(stats.cofire >= 1)
        cofire, score = stats.cofire[small, large], score[small, large]
    ok = (cofire >= min_cofire) & keep_small[small] & keep_large[large]
    return ScoredPairs(n, m, str(kind), int(min_cofire), small[ok].astype(np.int64), large[ok].astype(np.int64),
                       np.asarray(score[ok], np.float64), keep_small, keep_large)


def level_at(pairs: ScoredPairs, threshold: float = DIRECTED_THRESHOLD) -> TreeLevel:
    """The rung's edges at ``threshold`` (> 0): pairs of ``pairs`` scoring at least it."""
    if not threshold > 0:
        raise ValueError(f"the threshold must be positive (pairs that never co-fire are not scored), got {threshold}")
    ok = pairs.score >= threshold
    return _level_from_edges(pairs.n_small, pairs.n_large, threshold, pairs.small[ok], pairs.large[ok],
                             pairs.score[ok], pairs.alive_small, pairs.alive_large)


def build_ladder(
    stats: Sequence[AnyStats],
    *,
    kind: ScoreKind = "directed",
    threshold: float = DIRECTED_THRESHOLD,
    min_cofire: int = 1,
    alive: Sequence[tuple[np.ndarray | None, np.ndarray | None]] | None = None,
) -> list[TreeLevel]:
    """One :class:`TreeLevel` per consecutive pair of the ladder, from their statistics (dense or
    :class:`PairStats`); ``alive[k] = (mask_small, mask_large)`` restricts rung ``k``'s latents.

    ``min_cofire`` (not in the post): an edge also needs ``|S_i ∩ S_j| >= min_cofire``
    co-firing tokens. 1 changes nothing (a pair that never co-fires scores 0), but the
    directed score of *independent* sparse latents reaches 0.6 on a single shared token
    (``cos_{S_j} = b_j(t) / ||b_j||`` can be ~0.5 and the max ratio ~2), so large ladders
    want a few tokens of support.
    """
    masks = list(alive) if alive is not None else [(None, None)] * len(stats)
    if len(masks) != len(stats):
        raise ValueError(f"{len(masks)} pairs of masks for {len(stats)} rungs")
    return [
        level_at(scored_pairs(s, kind=kind, min_cofire=min_cofire, alive_small=ms, alive_large=ml), threshold)
        for s, (ms, ml) in zip(stats, masks, strict=True)
    ]


def _mean(x: np.ndarray) -> float:
    return float(x.mean()) if x.size else float("nan")


def _share(count: int | np.integer, total: int | np.integer) -> float:
    return float(count) / float(total) if total else float("nan")


def level_summary(level: TreeLevel) -> dict[str, float | int]:
    """Per-level statistics of the DAG (dead latents excluded from every share and mean).

    ``edges_per_latent``: edges per alive small latent (= ``branching_all``, the mean out-degree);
    ``branching_parents``: mean out-degree over alive small latents with >= 1 child;
    ``branching_all``: mean out-degree over all alive small latents; ``share_children_0/1/many``:
    shares of alive small latents with 0, 1, > 1 children; ``share_merges``: large latents with
    > 1 parent among alive large latents (``share_merges_linked``: among those with >= 1
    parent); ``share_orphans``: alive large latents without a parent; ``branching_parents_tree``:
    the first mean in the drawn tree (best parent only). Means over an empty set are NaN.
    """
    kids = level.n_children[level.alive_small]  # [N_alive]
    parents = level.n_parents[level.alive_large]  # [M_alive]
    tree_kids = level.tree_children[level.alive_small]
    n_alive_s, n_alive_l = int(level.alive_small.sum()), int(level.alive_large.sum())
    n_linked = int((parents >= 1).sum())
    return {
        "n_small": level.n_small,
        "n_large": level.n_large,
        "n_small_dead": level.n_small - n_alive_s,
        "n_large_dead": level.n_large - n_alive_l,
        "n_edges": int(level.src.size),
        "edges_per_latent": _mean(kids),
        "branching_parents": _mean(kids[kids >= 1]),
        "branching_all": _mean(kids),
        "share_children_0": _share((kids == 0).sum(), n_alive_s),
        "share_children_1": _share((kids == 1).sum(), n_alive_s),
        "share_children_many": _share((kids > 1).sum(), n_alive_s),
        "n_merges": int((parents > 1).sum()),
        "share_merges": _share((parents > 1).sum(), n_alive_l),
        "share_merges_linked": _share((parents > 1).sum(), n_linked),
        "share_orphans": _share((parents == 0).sum(), n_alive_l),
        "branching_parents_tree": _mean(tree_kids[tree_kids >= 1]),
    }


def ladder_summary(levels: Sequence[TreeLevel]) -> list[dict[str, float | int]]:
    """:func:`level_summary` of every rung (sizes are in ``n_small``/``n_large``)."""
    return [level_summary(lv) for lv in levels]


# Statistics of one rung as functions of the per-latent degrees: (name, side, function). The
# side says which latents a bootstrap resamples: the alive small latents' out-degrees or the
# alive large latents' in-degrees.
def _mean_of_parents(k: np.ndarray) -> np.ndarray:
    """Mean over the last axis of the entries >= 1 (NaN where there is none)."""
    k = np.asarray(k, np.float64)
    has = k >= 1
    n = has.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (k * has).sum(-1) / np.maximum(n, 1), np.nan)


def _mean_last(k: np.ndarray) -> np.ndarray:
    return np.asarray(k, np.float64).mean(-1) if np.shape(k)[-1] else np.full(np.shape(k)[:-1], np.nan)


def _share_above_one(k: np.ndarray) -> np.ndarray:
    return _mean_last(np.asarray(k) > 1)


LEVEL_STATISTICS = {
    "edges_per_latent": ("small", _mean_last),  # edges per alive small latent
    "branching_parents": ("small", _mean_of_parents),  # children per small latent that has any
    "share_children_many": ("small", _share_above_one),  # share of small latents with > 1 child
    "share_merges": ("large", _share_above_one),  # share of large latents with > 1 parent
}


def level_degrees(level: TreeLevel) -> dict[str, np.ndarray]:
    """``{"small": out-degrees of the alive small latents, "large": in-degrees of the alive large ones}``."""
    return {"small": level.n_children[level.alive_small], "large": level.n_parents[level.alive_large]}


def level_statistics(level: TreeLevel) -> dict[str, float]:
    """The values of :data:`LEVEL_STATISTICS` for one rung (as in :func:`level_summary`)."""
    deg = level_degrees(level)
    return {name: float(fn(deg[side])) for name, (side, fn) in LEVEL_STATISTICS.items()}


def bootstrap_interval(values: np.ndarray, statistic, *, n_boot: int = 200, confidence: float = 0.95,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` (a function of a ``[..., n]`` array over its last
    axis) resampling the ``n`` values with replacement; (NaN, NaN) when there are no values or no
    resample gives a value."""
    values = np.asarray(values)
    if values.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    stats_ = np.asarray(statistic(values[rng.integers(0, values.size, (n_boot, values.size))]), np.float64)
    stats_ = stats_[np.isfinite(stats_)]
    if stats_.size == 0:
        return float("nan"), float("nan")
    tail = 100 * (1 - confidence) / 2
    lo, hi = np.percentile(stats_, [tail, 100 - tail])
    return float(lo), float(hi)


def level_intervals(level: TreeLevel, *, n_boot: int = 200, confidence: float = 0.95,
                    seed: int = 0) -> dict[str, tuple[float, float]]:
    """Bootstrap intervals of :func:`level_statistics` over the rung's alive latents."""
    deg = level_degrees(level)
    return {name: bootstrap_interval(deg[side], fn, n_boot=n_boot, confidence=confidence, seed=seed)
            for name, (side, fn) in LEVEL_STATISTICS.items()}


def ladder_depth(levels: Sequence[TreeLevel]) -> np.ndarray:
    """``[N_0]``: for each latent of the first rung's small dictionary, the number of consecutive
    rungs of its longest chain of edges ``i -> j -> k -> ...`` in the DAG (0: no child; ``len(levels)``:
    a chain down to the largest dictionary)."""
    if not levels:
        raise ValueError("no rungs")
    for a, b in pairwise(levels):
        if a.n_large != b.n_small:
            raise ValueError(f"rungs do not chain: {a.n_small}->{a.n_large} then {b.n_small}->{b.n_large}")
    below = np.zeros(levels[-1].n_large, np.int64)  # depth below each latent of the next dictionary
    for level in reversed(levels):
        depth = np.zeros(level.n_small, np.int64)
        np.maximum.at(depth, level.src, 1 + below[level.dst])
        below = depth
    return below


def depth_statistics(levels: Sequence[TreeLevel], *, n_boot: int = 200, confidence: float = 0.95,
                     seed: int = 0) -> dict[str, float]:
    """Mean chain depth (:func:`ladder_depth`) over the first dictionary's alive latents, its
    bootstrap interval, and the share of them whose chain reaches the last dictionary."""
    alive = levels[0].alive_small
    depth = ladder_depth(levels)[alive]
    lo, hi = bootstrap_interval(depth, _mean_last, n_boot=n_boot, confidence=confidence, seed=seed)
    return {"depth": float(_mean_last(depth)), "depth_lo": lo, "depth_hi": hi,
            "share_full_depth": float(_mean_last(depth == len(levels))), "n_roots": int(alive.sum()),
            "n_rungs": len(levels)}


def tree_from(levels: Sequence[TreeLevel], root: int, start: int = 0) -> dict[int, dict]:
    """The drawn tree below latent ``root`` of ``levels[start]``'s small dictionary, following
    best parents down the ladder: ``{root: {child: {grandchild: {...}}}}``."""

    def below(latent: int, k: int) -> dict[int, dict]:
        if k >= len(levels):
            return {}
        kids = np.nonzero(levels[k].best_parent == latent)[0]
        return {int(c): below(int(c), k + 1) for c in kids}

    if not 0 <= root < levels[start].n_small:
        raise ValueError(f"root {root} is not a latent of the small dictionary ({levels[start].n_small})")
    return {root: below(root, start)}


# --------------------------------------------------------------------------- ground truth
@dataclass
class Identification:
    feature: np.ndarray  # [n] index of the true feature each latent matches, -1 if none
    cosine: np.ndarray  # [n] max decoder cosine with any true feature


def identify_latents(
    decoder: torch.Tensor | np.ndarray, true_features: torch.Tensor | np.ndarray, threshold: float = 0.9
) -> Identification:
    """Each decoder row's true feature: ``argmax_f cos(w_i, g_f)`` if that max is >= ``threshold``, else -1.

    ``decoder [n, d]`` (the SAE's ``W_dec``), ``true_features [F, d]``.
    """
    res = max_cosine_similarity(decoder, true_features, dtype=torch.float64)
    cos = res.values.numpy()
    feat = np.where(cos >= threshold, res.indices.numpy(), -1).astype(np.int64)
    return Identification(feat, cos)


@dataclass
class EdgeValidation:
    """Learned edges against the true hierarchy; see :func:`validate_edges` for the definitions."""

    kinds: np.ndarray  # [E] one of EDGE_KINDS per edge of the level
    counts: dict[str, int] = field(default_factory=dict)
    precision: float = float("nan")  # (same + split) / identified edges
    precision_split: float = float("nan")  # split / identified edges that link different features
    recall_split: float = float("nan")  # recovered true (parent, child) pairs / recoverable ones
    recall_same: float = float("nan")  # features linked to themselves / features in both dictionaries
    n_recoverable_split: int = 0
    n_recoverable_same: int = 0
    n_recovered_split: int = 0  # recoverable true pairs with at least one split edge


def validate_edges(
    level: TreeLevel, small_feature: np.ndarray, large_feature: np.ndarray, parent_of: np.ndarray
) -> EdgeValidation:
    """Precision and recall of a level's edges against the true parent -> child pairs.

    With ``p = small_feature[i]``, ``q = large_feature[j]`` (from :func:`identify_latents`) and
    ``parent_of [F]`` (-1 for roots, as ``SyntheticSource.parent_of``), edge ``(i, j)`` is

    - ``unidentified`` if ``p = -1`` or ``q = -1``; otherwise
    - ``same``: ``q = p`` (the feature carried over); ``split``: ``parent_of[q] = p`` (a child
      of a's feature, the true split); ``absorbed``: ``parent_of[p] = q`` (reversed: a child
      latent pointing to its parent); ``sibling``: ``parent_of[p] = parent_of[q] >= 0``;
      ``unrelated``: anything else.

    ``precision = (same + split) / identified``; ``precision_split = split / (identified - same)``.
    Recall counts only what the two dictionaries can show: ``recall_split`` is the share of
    true pairs ``(p, c)`` with ``p`` among the small dictionary's features and ``c`` among the
    large one's that have at least one ``split`` edge ``(i, j)`` with those features;
    ``recall_same`` the share of features present in both with a ``same`` edge.
    """
    small_feature = np.asarray(small_feature, np.int64)
    large_feature = np.asarray(large_feature, np.int64)
    parent_of = np.asarray(parent_of, np.int64)
    if small_feature.shape != (level.n_small,) or large_feature.shape != (level.n_large,):
        raise ValueError("small_feature must be [N] and large_feature [M] for this level")
    p, q = small_feature[level.src], large_feature[level.dst]  # [E]
    ident = (p >= 0) & (q >= 0)
    pp, pq = np.where(p >= 0, parent_of[p], -1), np.where(q >= 0, parent_of[q], -1)
    kinds = np.full(p.shape, "unrelated", dtype=object)
    kinds[ident & (pp == pq) & (pp >= 0)] = "sibling"
    kinds[ident & (pp == q)] = "absorbed"
    kinds[ident & (pq == p)] = "split"
    kinds[ident & (q == p)] = "same"
    kinds[~ident] = "unidentified"
    counts = {k: int((kinds == k).sum()) for k in EDGE_KINDS}
    n_ident = int(ident.sum())
    linked_split = {(int(a), int(b)) for a, b, k in zip(p, q, kinds, strict=True) if k == "split"}
    linked_same = {int(a) for a, k in zip(p, kinds, strict=True) if k == "same"}
    in_small = set(small_feature[small_feature >= 0].tolist())
    in_large = set(large_feature[large_feature >= 0].tolist())
    recoverable_split = {(int(parent_of[c]), c) for c in in_large if parent_of[c] in in_small}
    recoverable_same = in_small & in_large
    return EdgeValidation(
        kinds=kinds,
        counts=counts,
        precision=_share(counts["same"] + counts["split"], n_ident),
        precision_split=_share(counts["split"], n_ident - counts["same"]),
        recall_split=_share(len(linked_split & recoverable_split), len(recoverable_split)),
        recall_same=_share(len(linked_same & recoverable_same), len(recoverable_same)),
        n_recoverable_split=len(recoverable_split),
        n_recoverable_same=len(recoverable_same),
        n_recovered_split=len(linked_split & recoverable_split),
    )


@dataclass
class SplitRates:
    """Precision and recall of true parent -> child edges pooled over rungs (see :func:`pooled_split_rates`)."""

    n_split: int  # edges between a true parent and its child
    n_linking: int  # identified edges between two different true features
    n_recovered: int  # true (parent, child) pairs with a split edge
    n_recoverable: int  # true pairs present in the two dictionaries of a rung
    precision: float  # n_split / n_linking (NaN when no edge links two features)
    recall: float  # n_recovered / n_recoverable (NaN when no true pair is present)


def pooled_split_rates(validations: Sequence[EdgeValidation]) -> SplitRates:
    """Split edges among the identified edges that link two different features (``split /
    (identified - same)``, the precision) and recovered among recoverable true pairs (the
    recall), summed over the rungs' :class:`EdgeValidation` before dividing."""
    n_split = sum(v.counts.get("split", 0) for v in validations)
    n_linking = sum(v.counts.get(k, 0) for v in validations for k in ("split", "absorbed", "sibling", "unrelated"))
    n_recovered = sum(v.n_recovered_split for v in validations)
    n_recoverable = sum(v.n_recoverable_split for v in validations)
    return SplitRates(n_split, n_linking, n_recovered, n_recoverable, _share(n_split, n_linking),
                      _share(n_recovered, n_recoverable))


@dataclass
class HierarchyRecovery:
    n_parents: int  # true features with children
    n_children: int  # true features with a parent
    parents_found: int  # of them, identified by at least one latent
    children_found: int
    features_found: int  # distinct true features identified by a latent


def recovered_hierarchy(feature: np.ndarray, parent_of: np.ndarray) -> HierarchyRecovery:
    """How many true parents and children a dictionary holds as learned features, from the true feature
    each latent is identified with (``feature [n]``, -1 for none, :func:`identify_latents`)."""
    parent_of = np.asarray(parent_of, np.int64)
    found = np.unique(np.asarray(feature, np.int64))
    found = found[found >= 0]
    parents = np.unique(parent_of[parent_of >= 0])
    children = np.flatnonzero(parent_of >= 0)
    return HierarchyRecovery(int(parents.size), int(children.size), int(np.isin(parents, found).sum()),
                             int(np.isin(children, found).sum()), int(found.size))


@dataclass
class FirstSplit:
    parents: np.ndarray  # [P] true features that have children
    split_size: np.ndarray  # [P] smallest size with a latent matching a child of the parent, -1 never
    parent_size: np.ndarray  # [P] smallest size with a latent matching the parent itself, -1 never


def first_split_size(
    decoders: Mapping[int, torch.Tensor | np.ndarray],
    true_features: torch.Tensor | np.ndarray,
    parent_of: np.ndarray | torch.Tensor,
    threshold: float = 0.9,
) -> FirstSplit:
    """For each true parent, the smallest dictionary size of the ladder ``{size: W_dec [size, d]}``
    holding a latent identified (:func:`identify_latents`) as one of its children: when the
    parent's feature first splits."""
    parent_of = np.asarray(parent_of, np.int64)
    parents = np.unique(parent_of[parent_of >= 0])  # [P]
    split = np.full(parents.shape, -1, np.int64)
    seen = np.full(parents.shape, -1, np.int64)
    for size in sorted(decoders):
        found = identify_latents(decoders[size], true_features, threshold).feature
        found = np.unique(found[found >= 0])
        child_parents = parent_of[found]
        has_child = np.isin(parents, child_parents[child_parents >= 0])
        has_self = np.isin(parents, found)
        split[(split < 0) & has_child] = size
        seen[(seen < 0) & has_self] = size
    return FirstSplit(parents, split, seen)


# --------------------------------------------------------------------------- geometry vs firing
@dataclass
class TwinReport:
    match: np.ndarray  # [N] large latent with the max decoder cosine
    decoder_cos: np.ndarray  # [N] that cosine
    activation_corr: np.ndarray  # [N] Pearson correlation of the matched pair's activations
    alive: np.ndarray  # [N] both latents of the pair fire on the held-out tokens
    n_twins_fire_differently: int  # alive, decoder_cos >= twin_cos and corr < twin_corr
    n_fire_alike_not_twins: int  # alive, decoder_cos < far_cos and corr >= alike_corr


def decoder_vs_activation(
    decoder_small: torch.Tensor | np.ndarray,
    decoder_large: torch.Tensor | np.ndarray,
    stats: AnyStats,
    *,
    correlation: np.ndarray | None = None,
    codes: tuple[sparse.spmatrix, sparse.spmatrix] | None = None,
    twin_cos: float = 0.9,
    twin_corr: float = 0.5,
    far_cos: float = 0.5,
    alike_corr: float = 0.9,
) -> TwinReport:
    """Decoder cosine and activation correlation of each small latent's max-decoder-cosine partner.

    ``match[i] = argmax_j cos(w_i, v_j)`` over decoder rows; ``activation_corr[i] = rho(i, match[i])``
    (Pearson over the held-out tokens, :func:`activation_correlation`, or ``correlation [N, M]``
    if given, or from ``codes = (A [T, N], B [T, M])``, the codes the statistics were taken from).
    Counts only pairs whose two latents are alive: "geometric twins that fire differently"
    (``cos >= twin_cos``, ``rho < twin_corr``) and the reverse (``cos < far_cos``, ``rho >= alike_corr``).
    """
    res = max_cosine_similarity(decoder_small, decoder_large, dtype=torch.float64)
    match, cos = res.indices.numpy(), res.values.numpy()
    if len(match) != stats.shape[0] or len(decoder_large) != stats.shape[1]:
        raise ValueError(f"decoders ({len(match)}, {len(decoder_large)}) do not fit the statistics {stats.shape}")
    rows = np.arange(len(match))
    if correlation is not None:
        corr = np.asarray(correlation, np.float64)[rows, match]
    elif codes is not None:  # exact sum_t a_i b_match(i) from the codes themselves
        a, b = sparse_codes(codes[0]), sparse_codes(codes[1])
        corr = correlation_at(stats, rows, match, np.asarray(a.multiply(b[:, match]).sum(0), np.float64).ravel())
    else:
        corr = correlation_at(stats, rows, match)
    alive = stats.alive_small & stats.alive_large[match]
    return TwinReport(
        match=match,
        decoder_cos=cos,
        activation_corr=corr,
        alive=alive,
        n_twins_fire_differently=int((alive & (cos >= twin_cos) & (corr < twin_corr)).sum()),
        n_fire_alike_not_twins=int((alive & (cos < far_cos) & (corr >= alike_corr)).sum()),
    )
