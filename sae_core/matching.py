"""Exact one-to-one matching of two dictionaries without the dense N x M cosine matrix.

For unit rows a_i of A [N, d] and b_j of B [M, d], N <= M, and cosines c_ij = <a_i, b_j>,
the one-to-one matching is the linear program (the assignment problem, Kuhn 1955)::

    maximise  sum_ij c_ij x_ij   subject to   sum_j x_ij  = 1   for every row i of A,
                                              sum_i x_ij <= 1   for every row j of B,   x >= 0,

whose optimal vertices are matchings sigma. Its dual (Burkard, Dell'Amico & Martello,
*Assignment Problems*, SIAM 2009, ch. 4) is::

    minimise  sum_i u_i + sum_j v_j   subject to   u_i + v_j >= c_ij  for all i, j,   v_j >= 0.

**Certificate.** Take duals with u_i + v_sigma(i) = c_i,sigma(i) on the matched pairs and
v_j = 0 on the unmatched columns, so that sum u + sum v is the matched total, and let::

    eta = max over ALL N*M pairs of  c_ij - u_i - v_j.

Then (u + eta, v) is dual feasible and weak duality gives ``optimum <= total + N * max(eta, 0)``:
eta <= ``tol`` certifies the matching optimal to within ``N * tol`` (default 1e-12: below 1e-7
even at N = 65536).

**Method** (pricing, as in column generation, Dantzig & Wolfe 1960):

1. Candidate graph: each row's ``k`` most similar columns, from float32 tiles of at most
   ``memory_budget_bytes`` as in :func:`sae_core.similarity.max_cosine_similarity`; edge
   weights are the exact float64 cosines. The k-th largest cosine of row i bounds every pair
   left out, and v >= 0, so it also bounds ``max_j (c_ij - v_j)`` over them: a row whose u_i
   is above it is certified without being scanned (for N <= M/2 at d = 128, every row).
   Columns in no row's list get their own k nearest rows when some of them must be matched,
   and Hopcroft-Karp checks that a full matching exists (else edges are added).
2. Solve the assignment on the candidate graph: LAPJVsp (Jonker & Volgenant 1987),
   ``scipy.sparse.csgraph.min_weight_full_bipartite_matching``, or in d <= 3 the dense
   Hungarian solver (see :func:`_solve`); then cancel any improving cycle or path left by
   rounding (Klein 1967), found as in step 3, so the matching is optimal on the graph.
3. Duals: with u_i = c_i,sigma(i) - v_sigma(i), the constraint on a candidate edge reads
   ``v_j >= v_sigma(i) - (c_i,sigma(i) - c_ij)``, a system of difference constraints. Its
   smallest solution v >= floor (floor = 0 in the first round, the previous round's v after)
   is a shortest-path problem for p = -v, solved by Bellman-Ford (Bellman 1958) with every
   label starting at -floor; a cycle in the parent pointers proves a negative cycle, i.e. an
   improving exchange (Cherkassky & Goldberg 1999). With floor = 0 these are the smallest
   duals (the minimum-price equilibrium of Shapley & Shubik 1971), which leave the columns
   outside the graph cheapest to certify; the floor keeps v from falling between rounds, so
   the bounds of rows already scanned stay valid (if some v_j does fall, every bound is
   raised by the largest fall).
4. Scan the rows whose bound does not certify them: ``max_j (c_ij - v_j)`` over the columns
   outside the graph, in tiles (one matmul of [a_i, 1] with [b_j, -v_j], then a row max: the
   MCS pass), against u_i. Pairs that may violate are re-checked in float64; violators, and
   pairs within ``_NEAR`` of violating (the duals move about that much between rounds), join
   the graph. Repeat from 2 until the certificate holds.

The float32 scan is rigorous through the dot-product error bound (Higham, *Accuracy and
Stability of Numerical Algorithms*, 2nd ed., §3.1): ``|fl(x.y) - x.y| <= gamma_n sum|x_k y_k|``,
``gamma_n = n u / (1 - n u)``; see :func:`_scan_error`. A row whose float32 maximum is within
that error of a violation is settled in float64, so ``certified`` does not rest on float32.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from scipy.sparse import csr_array
from scipy.sparse.csgraph import maximum_bipartite_matching, min_weight_full_bipartite_matching

from sae_core.device import resolve_device
from sae_core.dictionary_rows import (
    ASSIGNMENT_MAX_ENTRIES,
    DEFAULT_MEMORY_BUDGET,
    MatchResult,
    normalized_pair,
    tile_sizes,
)

DEFAULT_K = 24  # candidates per row: at d = 128 the k-th cosine alone certifies most rows (module docstring, 1)
DEFAULT_TOL = 1e-12  # certificate tolerance on c_ij - u_i - v_j: ~1000x the float64 rounding of one dual
_NEAR = 0.02  # also add pairs this close to violating: about how far the duals move between rounds
_PAIR_CHUNK = 256  # pairs per exact float64 gather: small enough to stay in cache (measured fastest)
_BLOCK = 256  # at most this many columns per block in the blocked top-k of a tile
_LOW_DIM = 3  # at or below this width the dense Hungarian solver replaces LAPJVsp (see _solve)
_IMPROVE_PASSES = 30  # cycle-cancelling passes after a solve (one, normally: it only confirms)


@dataclass
class RoundStats:
    """One pricing round: graph size, what the scan found, how long it took."""

    candidates: int  # edges in the candidate graph that was solved
    rows_scanned: int  # rows whose bound could no longer certify them, re-scanned against all columns
    max_violation: float  # upper bound on max_ij c_ij - u_i - v_j for this round's duals
    added: int  # violating pairs added to the graph
    suspect_rows: int  # rows whose float32 maximum came within the error bound of a violation
    seconds: float


@dataclass
class Certificate:
    """LP-duality certificate of a one-to-one matching (see the module docstring).

    ``max_violation`` is an upper bound on ``max_ij c_ij - u_i - v_j`` over all N*M pairs
    (``inf`` when the candidate graph itself holds an improving exchange) and ``gap_bound =
    N * max(max_violation, 0)`` bounds how far the matched total can be below the optimum.
    """

    certified: bool
    max_violation: float
    gap_bound: float
    tol: float
    rounds: int
    candidates: int
    row_duals: torch.Tensor  # u [N], float64
    col_duals: torch.Tensor  # v [M], float64, 0 on unmatched columns
    history: list[RoundStats] = field(default_factory=list)
    note: str = ""


@dataclass
class SparseMatchResult(MatchResult):
    certificate: Certificate


class _NegativeCycle(Exception):
    """The matching is not optimal on the candidate graph: an exchange improves it by more than tol/2."""


def _prepare(a, b) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit rows (validated and normalised as in similarity.py, then float64); N <= M enforced."""
    a, b = (x.double() for x in normalized_pair(a, b))  # the same cosines as max_cosine_similarity's
    if a.shape[0] > b.shape[0]:
        raise ValueError(
            f"one-to-one matching needs len(A) <= len(B), got {a.shape[0]} > {b.shape[0]}; swap the arguments"
        )
    return a, b


def _scan_dtype(dev: torch.device) -> torch.dtype:
    # TF32 / bf16 matmuls would void the float32 error bound; fall back to float64 tiles then
    reduced = torch.get_float32_matmul_precision() != "highest"
    if dev.type == "cuda":
        reduced = reduced or torch.backends.cuda.matmul.allow_tf32
    return torch.float64 if reduced else torch.float32


def _scan_error(d: int, vmax: float, dtype: torch.dtype) -> float:
    """Bound on |T_ij - (c_ij - v_j)| for the tile value T_ij = <[a_i, 1], [b_j, -v_j]> in ``dtype``.

    With unit roundoff u and n = d + 1 terms: rounding the unit rows costs <= 2u + u^2 on the
    cosine, rounding v_j costs <= u |v_j|, and the dot product of the rounded vectors costs
    <= gamma_n ((1 + u)^2 + (1 + u) |v_j|), gamma_n = n u / (1 - n u) (Higham §3.1, any
    summation order, FMA or not). The factor 1.01 covers rows whose float64 norm is 1 only to
    float32 precision (they were normalised in the input dtype).
    """
    u = torch.finfo(dtype).eps / 2
    n = d + 1
    gamma = n * u / (1 - n * u)
    return 1.01 * (gamma * ((1 + u) ** 2 + (1 + u) * vmax) + 2 * u + u * u + u * vmax)


def _pair_cosines(a64: np.ndarray, b64: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Exact (float64) c_ij for the listed pairs, in chunks so no [pairs, d] copy grows unbounded."""
    out = np.empty(len(rows), dtype=np.float64)
    for s in range(0, len(rows), _PAIR_CHUNK):
        r, c = rows[s : s + _PAIR_CHUNK], cols[s : s + _PAIR_CHUNK]
        out[s : s + len(r)] = np.einsum("pd,pd->p", a64[r], b64[c])  # numpy: ~5x torch's gather+einsum here
    return out


def _ranges(starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, s + l) over (s, l): CSR slices of many rows at once."""
    total = int(lens.sum())
    return np.repeat(starts - np.cumsum(lens) + lens, lens) + np.arange(total)


class _CandidateGraph:
    """Candidate pairs as sorted keys i*M + j (rows contiguous: CSR order) with their exact cosines."""

    def __init__(self, a64: np.ndarray, b64: np.ndarray) -> None:
        self.a64, self.b64 = a64, b64
        self.n, self.m = a64.shape[0], b64.shape[0]
        self.keys = np.empty(0, dtype=np.int64)
        self.weights = np.empty(0, dtype=np.float64)

    def __len__(self) -> int:
        return len(self.keys)

    def add(self, rows: np.ndarray, cols: np.ndarray) -> int:
        """Add pairs (repeats and known pairs ignored); returns how many were new."""
        keys = np.unique(np.asarray(rows, dtype=np.int64) * self.m + np.asarray(cols, dtype=np.int64))
        keys = keys[~np.isin(keys, self.keys, assume_unique=True)]
        if len(keys) == 0:
            return 0
        weights = _pair_cosines(self.a64, self.b64, keys // self.m, keys % self.m)
        all_keys = np.concatenate([self.keys, keys])
        order = np.argsort(all_keys, kind="stable")
        self.keys, self.weights = all_keys[order], np.concatenate([self.weights, weights])[order]
        return len(keys)

    @property
    def rows(self) -> np.ndarray:
        return self.keys // self.m

    @property
    def cols(self) -> np.ndarray:
        return self.keys % self.m

    def indptr(self) -> np.ndarray:
        return np.searchsorted(self.keys, np.arange(self.n + 1, dtype=np.int64) * self.m)

    def weight(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return self.weights[np.searchsorted(self.keys, rows * self.m + cols)]

    def biadjacency(self, values: np.ndarray | None = None) -> csr_array:
        data = self.weights if values is None else values
        return csr_array((data, self.cols.astype(np.int32), self.indptr()), shape=(self.n, self.m))


def _tile_topk(tile: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's ``k`` largest entries (unsorted), at about the cost of one row max.

    The row is cut into blocks; the k blocks with the largest maxima hold k entries >= the
    k-th largest (if a block holding one of the top k is not among them, the k chosen maxima
    are k such entries), so ``topk`` runs on k blocks, not on the whole row.
    """
    rows, width = tile.shape
    block = min(_BLOCK, width // (16 * k))
    if block < 64:  # too few columns to gain anything (measured: 8192 wide, k = 16)
        return tile.topk(min(k, width), dim=1, sorted=False)
    n_blocks = width // block
    full = n_blocks * block
    block_max = tile[:, :full].view(rows, n_blocks, block).amax(2)
    chosen = block_max.topk(k, dim=1, sorted=False).indices
    offsets = torch.arange(block, device=tile.device)
    cols = (chosen[:, :, None] * block + offsets).view(rows, k * block)
    if full < width:  # the ragged last block is always searched
        cols = torch.cat([cols, torch.arange(full, width, device=tile.device).expand(rows, -1)], 1)
    vals, pos = tile.gather(1, cols).topk(k, dim=1, sorted=False)
    return vals, cols.gather(1, pos)


def _row_topk(
    a: torch.Tensor,
    b: torch.Tensor,
    k: int,
    budget: int,
    *,
    rows: np.ndarray | None = None,
    cols: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's ``k`` largest cosines (tiled, in ``a``'s dtype and device); optionally a sub-block.

    Returns the pairs (rows, cols) and, per row, the k-th largest value: every pair left out
    is at most that (in the tile dtype).
    """
    row_ids = np.arange(a.shape[0]) if rows is None else rows
    col_ids = np.arange(b.shape[0]) if cols is None else cols
    if rows is not None:
        a = a[torch.from_numpy(rows).to(a.device)]
    if cols is not None:
        b = b[torch.from_numpy(cols).to(b.device)]
    n, m = a.shape[0], b.shape[0]
    k = min(k, m)
    row_tile, col_tile = tile_sizes(n, m, a.element_size(), budget)
    out = np.empty((n, k), dtype=np.int64)
    kth = np.empty(n)
    for i in range(0, n, row_tile):
        a_tile = a[i : i + row_tile]
        vals = idx = None
        for j in range(0, m, col_tile):
            cos = a_tile @ b[j : j + col_tile].T
            tv, ti = _tile_topk(cos, k)
            del cos  # one tile alive at a time
            if vals is None:
                vals, idx = tv, ti + j
            else:  # merge with the earlier column tiles: the top k of the union
                vals, pos = torch.cat([vals, tv], 1).topk(k, dim=1, sorted=False)
                idx = torch.cat([idx, ti + j], 1).gather(1, pos)
        out[i : i + row_tile] = idx.cpu().numpy()
        kth[i : i + row_tile] = vals.amin(1).double().cpu().numpy()
    if k == m:  # every pair is a candidate
        kth[:] = -np.inf
    return np.repeat(row_ids, k), col_ids[out.ravel()], kth


def _ensure_full_matching(graph: _CandidateGraph, a_s: torch.Tensor, b_s: torch.Tensor, k: int, budget: int) -> int:
    """Add edges until every row can be matched at once; returns the number of edges added.

    Rows left out of a maximum-cardinality matching (Hopcroft-Karp) first get their ``k`` best
    columns among those it leaves free; if some row still cannot be placed, each is joined to
    a distinct free column. That guarantees a full matching; its quality is the certificate's job.
    """
    added = 0
    for attempt in range(2):
        ones = graph.biadjacency(np.ones(len(graph)))
        match = maximum_bipartite_matching(ones, perm_type="column")  # column of each row, -1 if none
        lonely = np.flatnonzero(match < 0)
        if len(lonely) == 0:
            return added
        free = np.setdiff1d(np.arange(graph.m), match[match >= 0])
        if attempt == 0:
            added += graph.add(*_row_topk(a_s, b_s, k, budget, rows=lonely, cols=free)[:2])
        else:
            added += graph.add(lonely, free[: len(lonely)])  # len(free) >= len(lonely) since N <= M
    return added


def _solve(graph: _CandidateGraph) -> np.ndarray:
    """A maximum-weight full matching on the candidate graph; the column of each row.

    LAPJVsp (``min_weight_full_bipartite_matching``) minimises, so it gets 2 - c, in [1, 3]:
    positive, and never the zero that scipy reads as "no edge" (with the negative weights of
    ``maximize=True`` it ran without end on 1000 x 1000 at d = 4). In ambient dimension
    <= ``_LOW_DIM`` its augmenting paths grow long (2000 x 2000 at d = 2: over two minutes;
    8000 x 8000 at d = 4 already 4.7 s against 0.3 s at d = 128); there the dense Hungarian
    solver takes the whole cosine matrix (N*M is capped, see sparse_assignment) and its
    optimal pairs join the graph. Either way :func:`_improve` then removes any
    rounding-level suboptimality.
    """
    n = graph.n
    sigma = np.empty(n, dtype=np.int64)
    if graph.a64.shape[1] <= _LOW_DIM:
        rows, cols = linear_sum_assignment(graph.a64 @ graph.b64.T, maximize=True)
        sigma[rows] = cols
        graph.add(np.arange(n), sigma)
        return sigma
    rows, cols = min_weight_full_bipartite_matching(graph.biadjacency(2.0 - graph.weights))
    sigma[rows] = cols
    return sigma


def _has_cycle(parent: np.ndarray) -> bool:
    """Whether the parent pointers (-1 = root) contain a cycle: pointer doubling, log2(M) steps."""
    return len(_cycle_roots(parent)) > 0


def _cycle_roots(parent: np.ndarray) -> np.ndarray:
    """Columns on cycles of the parent pointers: where each column's 2^L-th ancestor lands (L >= log2 M)."""
    m = len(parent)
    jump = np.append(np.where(parent < 0, m, parent), m)  # m: a sentinel root pointing to itself
    for _ in range(int(np.ceil(np.log2(m + 1))) + 1):
        jump = jump[jump]
    return np.unique(jump[:m][jump[:m] != m])


@dataclass
class _Labels:
    p: np.ndarray  # shortest-path labels, p = -v
    parent: np.ndarray  # column whose row's move set each label, -1 if none
    row_of_col: np.ndarray  # -1 on unmatched columns
    c_match: np.ndarray  # c_i,sigma(i)
    cycle: bool  # stopped on a cycle in the parent pointers


def _bellman_ford(graph: _CandidateGraph, sigma: np.ndarray, tol: float, floor: np.ndarray | None) -> _Labels:
    """Shortest paths of the dual difference constraints for ``sigma`` (module docstring, step 3).

    Jacobi passes over the columns whose label changed (a vectorised SPFA), on p = -v with
    edges sigma(i) -> j of weight c_i,sigma(i) - c_ij, labels starting at -floor (0 on unmatched
    columns). A label moves only when it improves by more than tol/2, so float rounding around
    zero-weight cycles (ties) cannot keep it relaxing. Stops early when the parent pointers
    close a cycle, which proves a negative cycle (Cherkassky & Goldberg 1999).
    """
    n, m = graph.n, graph.m
    rows, cols = graph.rows, graph.cols
    c_match = graph.weight(np.arange(n), sigma)
    off = cols != sigma[rows]
    e_row, e_tgt = rows[off], cols[off]
    e_w = c_match[e_row] - graph.weights[off]
    indptr = np.searchsorted(e_row, np.arange(n + 1))
    row_of_col = np.full(m, -1, dtype=np.int64)
    row_of_col[sigma] = np.arange(n)
    p = np.zeros(m) if floor is None else -floor
    p[row_of_col < 0] = 0.0
    parent = np.full(m, -1, dtype=np.int64)
    active = np.arange(n)
    for sweep in range(1, m + 2):
        lens = indptr[active + 1] - indptr[active]
        edge = _ranges(indptr[active], lens)
        if len(edge) == 0:
            break
        src, tgt = np.repeat(sigma[active], lens), e_tgt[edge]
        cand = p[src] + e_w[edge]
        best = np.full(m, np.inf)
        np.minimum.at(best, tgt, cand)
        improved = best < p - tol / 2
        if not improved.any():
            break
        p[improved] = best[improved]
        hit = improved[tgt] & (cand == p[tgt])
        parent[tgt[hit]] = src[hit]
        active = row_of_col[improved]
        active = active[active >= 0]  # unmatched columns have no outgoing edges
        if sweep % 16 == 0 and _has_cycle(parent):
            return _Labels(p, parent, row_of_col, c_match, True)
    else:  # M + 1 passes that still relax: a negative cycle, whatever the parent pointers show
        return _Labels(p, parent, row_of_col, c_match, True)
    return _Labels(p, parent, row_of_col, c_match, False)


def _duals(
    graph: _CandidateGraph, sigma: np.ndarray, tol: float, floor: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The smallest v >= floor (default 0) with u_i + v_j >= c_ij on every candidate edge, and u.

    The duals meet every candidate constraint to within tol/2 plus one rounding. Raises
    :class:`_NegativeCycle` if ``sigma`` is not optimal on the graph (an improving cycle, or a
    path to an unmatched column). If the floor would force v > 0 on an unmatched column, the
    floor is dropped.
    """
    labels = _bellman_ford(graph, sigma, tol, floor)
    if labels.cycle:
        raise _NegativeCycle("the parent pointers close a cycle: an improving exchange")
    unmatched = labels.row_of_col < 0
    if (labels.p[unmatched] < -tol / 2).any():
        if floor is not None:
            return _duals(graph, sigma, tol)
        raise _NegativeCycle("a path to an unmatched column: an improving exchange")
    v = -labels.p
    v[unmatched] = 0.0  # complementary slackness (labels there are within tol/2 of 0)
    return labels.c_match - v[sigma], v


def _improve(
    graph: _CandidateGraph, sigma: np.ndarray, tol: float, max_passes: int
) -> tuple[np.ndarray, _Labels | None]:
    """Cancel improving cycles and paths until ``sigma`` is optimal on the graph (to tol/2).

    Bellman-Ford from labels 0: a cycle in its parent pointers is an improving exchange
    around a cycle (each row on it moves to the column its edge points at); with it settled,
    an unmatched column with p < -tol/2 ends an improving path from a root column, which
    the move frees. Disjoint cycles (or paths) are cancelled together, then again from the
    top: each pass gains more than tol/2, so it ends (Klein's cycle cancelling, 1967). Returns
    the matching and, if it is optimal (``max_passes`` did not run out), its labels from 0.
    """
    sigma = sigma.copy()
    for _ in range(max_passes):
        labels = _bellman_ford(graph, sigma, tol, None)
        parent, row_of_col = labels.parent, labels.row_of_col
        moves: list[list[int]] = []  # columns in order along each cycle or path, head first
        # checked even when Bellman-Ford settled: a cycle of gain between tol/2 and L tol/2 can stay
        on_cycles = _cycle_roots(parent)
        if len(on_cycles):
            seen: set[int] = set()
            for start in on_cycles.tolist():
                if start in seen:
                    continue
                cycle, col = [start], int(parent[start])
                while col != start:
                    cycle.append(col)
                    col = int(parent[col])
                seen.update(cycle)
                moves.append(cycle)
        else:
            ends = np.flatnonzero((row_of_col < 0) & (labels.p < -tol / 2))
            if len(ends) == 0:
                return sigma, labels
            used: set[int] = set()
            for end in ends[np.argsort(labels.p[ends])].tolist():  # the most improving first
                path, col = [end], int(parent[end])
                while col >= 0:
                    path.append(col)
                    col = int(parent[col])
                if used.isdisjoint(path):
                    used.update(path)
                    moves.append(path[:-1])  # the root column is left free
        for chain in moves:
            for col in chain:  # the row matched to col's parent moves to col
                sigma[row_of_col[parent[col]]] = col
    return sigma, None


@dataclass
class _Scan:
    add_rows: np.ndarray  # violating pairs, to join the candidate graph
    add_cols: np.ndarray
    bound: np.ndarray  # per scanned row: upper bound on max over non-candidate j of c_ij - v_j
    suspects: int


def _price_scan(
    graph: _CandidateGraph,
    a_aug: torch.Tensor,
    b_aug: torch.Tensor,
    u: np.ndarray,
    v: np.ndarray,
    rows: np.ndarray,
    *,
    tol: float,
    per_row: int,
    budget: int,
    near: float = 0.0,
) -> _Scan:
    """Check ``c_ij - u_i - v_j <= tol`` for the given rows and every non-candidate column.

    T_ij = c_ij - v_j is formed in tiles (one matmul of the augmented copies), candidate pairs
    masked out. A row whose tile maximum is at most ``u_i + tol - delta`` (``delta`` from
    :func:`_scan_error`) passes. Other rows are suspects: their ``per_row`` largest T are
    re-computed in float64 and the violators returned; a suspect with no violator among them
    whose ``per_row``-th T is still above the threshold is re-computed whole in float64.
    """
    n_rows, m = len(rows), graph.m
    if n_rows == 0:
        return _Scan(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0), 0)
    dev, dtype = a_aug.device, a_aug.dtype
    b_aug[:, -1] = torch.from_numpy(-v).to(dev, dtype)
    delta = _scan_error(a_aug.shape[1] - 1, float(np.abs(v).max(initial=0.0)), dtype)
    thresh = u[rows] + tol - delta
    thresh_dev = torch.from_numpy(thresh - near).to(dev)
    a_sub = a_aug if n_rows == graph.n else a_aug[torch.from_numpy(rows).to(dev)]
    indptr, g_cols = graph.indptr(), graph.cols
    row_tile, col_tile = tile_sizes(n_rows, m, a_aug.element_size(), budget)
    clean = np.full(n_rows, -np.inf)  # per row: max T over the tiles where it passed
    picks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (local row, col, T) of suspects
    for s in range(0, n_rows, row_tile):
        ids = rows[s : s + row_tile]
        lens = indptr[ids + 1] - indptr[ids]
        c_loc, c_col = np.repeat(np.arange(len(ids)), lens), g_cols[_ranges(indptr[ids], lens)]
        for j in range(0, m, col_tile):
            tile = a_sub[s : s + row_tile] @ b_aug[j : j + col_tile].T
            inside = (c_col >= j) & (c_col < j + tile.shape[1])
            tile[torch.from_numpy(c_loc[inside]).to(dev), torch.from_numpy(c_col[inside] - j).to(dev)] = -torch.inf
            top = tile.amax(dim=1).double()
            suspect = (top > thresh_dev[s : s + len(ids)]).cpu().numpy()
            part = clean[s : s + len(ids)]
            part[~suspect] = np.maximum(part[~suspect], top.cpu().numpy()[~suspect])
            if suspect.any():
                sus = np.flatnonzero(suspect)
                tv, ti = _tile_topk(tile[torch.from_numpy(sus).to(dev)], min(per_row, tile.shape[1]))
                picks.append((np.repeat(sus + s, tv.shape[1]), ti.cpu().numpy().ravel() + j,
                               tv.double().cpu().numpy().ravel()))
            del tile  # one tile alive at a time
    bound = clean + delta
    if not picks:
        return _Scan(np.empty(0, np.int64), np.empty(0, np.int64), bound, 0)
    r, c, t = (np.concatenate(x) for x in zip(*picks, strict=True))
    finite = np.isfinite(t)  # -inf: a masked candidate, when a row has fewer than per_row others
    r, c, t = r[finite], c[finite], t[finite]
    order = np.lexsort((-t, r))  # by row, largest T first
    r, c, t = r[order], c[order], t[order]
    keep = np.arange(len(r)) - np.searchsorted(r, r) < per_row  # the per_row largest over all column tiles
    r, c, t = r[keep], c[keep], t[keep]
    exact = _pair_cosines(graph.a64, graph.b64, rows[r], c) - v[c]  # c_ij - v_j in float64
    bad = exact - u[rows[r]] > tol
    close = exact - u[rows[r]] > tol - near
    np.maximum.at(bound, r, exact)
    sus, first, counts = np.unique(r, return_index=True, return_counts=True)
    # the rest of a suspect row is <= its smallest kept T, if it had per_row to keep
    rest = np.where(counts >= min(per_row, m), t[first + counts - 1], -np.inf)
    has_bad = np.zeros(n_rows, dtype=bool)
    has_bad[r[bad]] = True
    unresolved = sus[(rest > thresh[sus]) & ~has_bad[sus]]
    settled = ~np.isin(sus, unresolved)
    bound[sus[settled]] = np.maximum(bound[sus[settled]], rest[settled] + delta)
    add_r, add_c = [rows[r[close]]], [c[close]]
    if len(unresolved):  # near-ties within the float32 error: settle these rows in float64
        ur, uc, ub = _exact_rows(graph, rows[unresolved], u, v, tol=tol, per_row=per_row, budget=budget)
        add_r.append(ur)
        add_c.append(uc)
        bound[unresolved] = np.maximum(bound[unresolved], ub)
    return _Scan(np.concatenate(add_r), np.concatenate(add_c), bound, len(sus))


def _exact_rows(
    graph: _CandidateGraph, rows: np.ndarray, u: np.ndarray, v: np.ndarray, *, tol: float, per_row: int, budget: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Float64 check of whole rows against every non-candidate column: violators and max of c_ij - v_j."""
    m = graph.m
    chunk = max(1, budget // (8 * m))
    indptr, g_cols = graph.indptr(), graph.cols
    add_r, add_c, bound = [], [], np.empty(len(rows))
    for s in range(0, len(rows), chunk):
        rr = rows[s : s + chunk]
        t = graph.a64[rr] @ graph.b64.T - v
        lens = indptr[rr + 1] - indptr[rr]
        t[np.repeat(np.arange(len(rr)), lens), g_cols[_ranges(indptr[rr], lens)]] = -np.inf
        bound[s : s + len(rr)] = t.max(axis=1)
        top_t, top = (x.numpy() for x in torch.from_numpy(t).topk(min(per_row, m), dim=1))  # no chunk-sized index
        bad = (top_t - u[rr][:, None] > tol).ravel()
        add_r.append(np.repeat(rr, top.shape[1])[bad])
        add_c.append(top.ravel()[bad])
    return np.concatenate(add_r), np.concatenate(add_c), bound


def _augmented(a64: np.ndarray, b64: np.ndarray, dev: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """[a_i, 1] and [b_j, -v_j] in the scan dtype on ``dev``, so that one matmul gives c_ij - v_j."""
    dtype = _scan_dtype(dev)
    a_aug = torch.from_numpy(np.hstack([a64, np.ones((len(a64), 1))])).to(dev, dtype)
    b_aug = torch.from_numpy(np.hstack([b64, np.zeros((len(b64), 1))])).to(dev, dtype)
    return a_aug, b_aug


def _certificate(graph, u, v, bound, tol, history, note="") -> Certificate:
    """Assemble the certificate: max violation over candidates (exact) and the rest (bounds)."""
    cand = graph.weights - u[graph.rows] - v[graph.cols]
    eta = max(float(cand.max(initial=-np.inf)), float((bound - u).max()))
    return Certificate(
        certified=eta <= tol,
        max_violation=eta,
        gap_bound=graph.n * max(eta, 0.0),
        tol=tol,
        rounds=len(history),
        candidates=len(graph),
        row_duals=torch.from_numpy(u),
        col_duals=torch.from_numpy(v),
        history=history,
        note=note,
    )


def sparse_assignment(
    a: torch.Tensor | np.ndarray,
    b: torch.Tensor | np.ndarray,
    *,
    k: int = DEFAULT_K,
    max_rounds: int = 50,
    tol: float = DEFAULT_TOL,
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
    device: str | torch.device | None = None,
) -> SparseMatchResult:
    """Maximum-total-cosine one-to-one matching of the rows of ``a`` [N, d] to rows of ``b`` [M, d], N <= M.

    Same problem and optimum as the dense Hungarian method (``one_to_one_mcs(..., method="dense")``),
    solved on a sparse candidate graph (each row's ``k`` nearest columns) that grows until an
    LP-duality certificate over all N*M pairs holds (module docstring). Memory: the unit rows
    ((N + M) * d in float64, plus a float32 copy), one cosine tile of at most
    ``memory_budget_bytes`` and the candidate graph (about N * k edges); never N x M.

    Returns values (float64 cosines) and indices like ``one_to_one_mcs``, and ``certificate``:
    ``certified``, ``max_violation``, ``gap_bound``, ``rounds``, the duals and per-round
    statistics. After ``max_rounds`` without a certificate the last matching is returned
    with ``certified=False`` and its ``gap_bound``.
    """
    if k < 1 or max_rounds < 1:
        raise ValueError(f"k and max_rounds must be positive, got k={k}, max_rounds={max_rounds}")
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    a64, b64 = (x.numpy() for x in _prepare(a, b))
    n = len(a64)
    if a64.shape[1] <= _LOW_DIM and n * len(b64) > ASSIGNMENT_MAX_ENTRIES:
        raise ValueError(
            f"in d = {a64.shape[1]} <= {_LOW_DIM} dimensions the sparse LAPJVsp solver slows without bound, so "
            f"the dense one is used, and {n} x {len(b64)} exceeds its limit N*M <= {ASSIGNMENT_MAX_ENTRIES}"
        )
    dev = resolve_device("auto" if device is None else device)
    a_aug, b_aug = _augmented(a64, b64, dev)
    a_s, b_s = a_aug[:, :-1], b_aug[:, :-1]  # views: the cosine part of the augmented copies
    graph = _CandidateGraph(a64, b64)
    rows, cols, kth = _row_topk(a_s, b_s, k, memory_budget_bytes)
    graph.add(rows, cols)
    # columns in no row's top k (hubness leaves some in high dimension): if more than M - N of them,
    # some must be matched, so they get their own k nearest rows; else the first matching pairs them
    # blindly and its duals send the first scan over most rows
    uncovered = np.flatnonzero(np.bincount(cols, minlength=len(b64)) == 0)
    if len(uncovered) > len(b64) - n:
        col_ids, row_ids, _ = _row_topk(b_s, a_s, k, memory_budget_bytes, rows=uncovered)
        graph.add(row_ids, col_ids)
    _ensure_full_matching(graph, a_s, b_s, k, memory_budget_bytes)
    # v >= 0, so c_ij - v_j <= c_ij <= (k-th largest cosine of row i) for every pair left out: the first
    # bound on each row's scan, against v = 0; rows it cannot certify are the only ones scanned
    bound = kth + _scan_error(a64.shape[1], 0.0, a_aug.dtype)
    v_prev = np.zeros(len(b64))
    history: list[RoundStats] = []
    for round_index in range(max_rounds):
        start = time.perf_counter()
        # rows that share their violators (duplicates, ties) would each add the same few columns per
        # round; doubling what a row may add keeps such cases to a logarithmic number of rounds
        per_row = min(k << min(round_index, 6), len(b64))
        # a fresh solve each round: measured faster than cancelling cycles from the last matching
        sigma = _solve(graph)
        try:
            try:
                u, v = _duals(graph, sigma, tol, floor=v_prev)
            except _NegativeCycle:  # rounding left an improving exchange: cancel it, then price again
                sigma, labels = _improve(graph, sigma, tol, _IMPROVE_PASSES)
                if labels is None:
                    raise _NegativeCycle(f"still improvable after {_IMPROVE_PASSES} cancelling passes") from None
                u, v = _duals(graph, sigma, tol, floor=v_prev)
        except _NegativeCycle as err:  # not expected: the solvers are exact up to rounding
            raise RuntimeError(f"the sparse assignment solver found no optimal matching: {err}") from err
        # a row's bound on max_j c_ij - v_j stays valid for the new v if raised by the largest drop in v
        bound += max(float((v_prev - v).max()), 0.0)
        rows = np.flatnonzero(bound - u > tol)
        scan = _price_scan(
            graph, a_aug, b_aug, u, v, rows, tol=tol, per_row=per_row, budget=memory_budget_bytes, near=_NEAR
        )
        bound[rows] = scan.bound
        v_prev = v
        size = len(graph)
        cand = graph.weights - u[graph.rows] - v[graph.cols]
        eta = max(float(cand.max()), float((bound - u).max()))
        added = graph.add(scan.add_rows, scan.add_cols)
        history.append(RoundStats(size, len(rows), eta, added, scan.suspects, time.perf_counter() - start))
        if eta <= tol or added == 0:
            break
    cert = _certificate(graph, u, v, bound, tol, history)
    if not cert.certified:
        cert.note = f"not certified after {len(history)} rounds (max_rounds={max_rounds})"
    return SparseMatchResult(torch.from_numpy(graph.weight(np.arange(n), sigma)), torch.from_numpy(sigma), cert)


def certify_assignment(
    a: torch.Tensor | np.ndarray,
    b: torch.Tensor | np.ndarray,
    indices: torch.Tensor | np.ndarray,
    *,
    k: int = DEFAULT_K,
    tol: float = DEFAULT_TOL,
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
    device: str | torch.device | None = None,
) -> Certificate:
    """Check any one-to-one matching ``indices`` [N] (a row of ``b`` for each row of ``a``) for optimality.

    Builds the candidate graph (each row's ``k`` nearest columns plus the matched pairs),
    computes the smallest duals for the matching on it and scans all N*M pairs once (module
    docstring). ``certified`` is True only if the matching is optimal to within ``N * tol``;
    a matching with an improving exchange inside the graph gets ``max_violation = inf``.
    """
    a64, b64 = (x.numpy() for x in _prepare(a, b))
    n, m = len(a64), len(b64)
    sigma = torch.as_tensor(indices).long().numpy()
    if sigma.shape != (n,) or sigma.min() < 0 or sigma.max() >= m or len(np.unique(sigma)) != n:
        raise ValueError(f"indices must be {n} distinct rows of B in [0, {m}), got shape {tuple(sigma.shape)}")
    dev = resolve_device("auto" if device is None else device)
    a_aug, b_aug = _augmented(a64, b64, dev)
    graph = _CandidateGraph(a64, b64)
    graph.add(*_row_topk(a_aug[:, :-1], b_aug[:, :-1], k, memory_budget_bytes)[:2])
    graph.add(np.arange(n), sigma)
    start = time.perf_counter()
    try:
        u, v = _duals(graph, sigma, tol)
    except _NegativeCycle as err:
        nan = torch.full((n + m,), torch.nan, dtype=torch.float64)
        return Certificate(False, np.inf, np.inf, tol, 1, len(graph), nan[:n], nan[n:], note=str(err))
    scan = _price_scan(graph, a_aug, b_aug, u, v, np.arange(n), tol=tol, per_row=k, budget=memory_budget_bytes)
    stats = RoundStats(len(graph), n, np.nan, len(np.unique(scan.add_rows * m + scan.add_cols)), scan.suspects,
                       time.perf_counter() - start)
    cert = _certificate(graph, u, v, scan.bound, tol, [stats])
    stats.max_violation = cert.max_violation
    return cert
