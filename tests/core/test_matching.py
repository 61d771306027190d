"""Sparse exact one-to-one matching: agreement with the dense Hungarian solver, its certificate, bad input."""

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from scipy.sparse.csgraph import maximum_bipartite_matching

import sae_core.matching as matching
from sae_core.matching import (
    SparseMatchResult,
    _CandidateGraph,
    _has_cycle,
    _improve,
    _scan_error,
    _tile_topk,
    certify_assignment,
    sparse_assignment,
)
from sae_core.similarity import gaussian_dictionary, one_to_one_mcs


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def dense_optimum(a: np.ndarray, b: np.ndarray) -> tuple[float, np.ndarray]:
    """Total and cosine matrix of the Hungarian solution, in float64."""
    cos = unit(a) @ unit(b).T
    rows, cols = linear_sum_assignment(cos, maximize=True)
    return float(cos[rows, cols].sum()), cos


def check_matching(res: SparseMatchResult, a: np.ndarray, b: np.ndarray) -> None:
    """Same total as linear_sum_assignment, a valid matching, values its cosines, certified."""
    total, cos = dense_optimum(a, b)
    idx = res.indices.numpy()
    assert len(np.unique(idx)) == len(a)
    np.testing.assert_allclose(res.values.numpy(), cos[np.arange(len(a)), idx], rtol=0, atol=1e-12)
    assert abs(res.values.sum().item() - total) <= 1e-9
    assert res.certificate.certified, res.certificate
    assert res.certificate.max_violation <= res.certificate.tol


@pytest.mark.parametrize(
    "n,m,d,k",
    [(1, 1, 3, 1), (1, 6, 2, 1), (7, 7, 3, 2), (30, 41, 5, 3), (64, 64, 8, 4), (100, 100, 16, 16),
     (120, 600, 16, 2), (250, 250, 32, 16), (300, 310, 12, 5), (400, 2000, 64, 8)],
)
def test_total_equals_linear_sum_assignment(n, m, d, k):
    rng = np.random.default_rng(n * 1000 + m + d)
    a, b = rng.normal(size=(n, d)), rng.normal(size=(m, d))
    check_matching(sparse_assignment(a, b, k=k), a, b)


def test_small_k_forces_certificate_rounds_and_tiny_tiles():
    rng = np.random.default_rng(11)
    a, b = rng.normal(size=(200, 16)), rng.normal(size=(200, 16))
    res = sparse_assignment(a, b, k=1, memory_budget_bytes=20_000)  # many tiles as well
    check_matching(res, a, b)
    history = res.certificate.history
    assert res.certificate.rounds == len(history) > 2
    assert history[0].max_violation > 1e-3 and history[0].added > 0  # the first sparse optimum is not global
    assert res.certificate.candidates > 200


def test_duals_are_a_certificate_checked_densely():
    """u_i + v_j >= c_ij on every pair, equality on the matching, v = 0 on unmatched columns, v >= 0."""
    rng = np.random.default_rng(12)
    a, b = rng.normal(size=(90, 10)), rng.normal(size=(130, 10))
    res = sparse_assignment(a, b, k=3)
    _, cos = dense_optimum(a, b)
    u, v = res.certificate.row_duals.numpy(), res.certificate.col_duals.numpy()
    idx = res.indices.numpy()
    assert (cos - u[:, None] - v[None, :]).max() <= 1e-12
    np.testing.assert_allclose(u + v[idx], cos[np.arange(90), idx], atol=1e-14)
    unmatched = np.setdiff1d(np.arange(130), idx)
    assert (v >= 0).all() and (v[unmatched] == 0).all()
    assert abs(u.sum() + v.sum() - res.values.sum().item()) < 1e-10  # zero duality gap


def test_near_duplicates_recover_a_planted_permutation():
    rng = np.random.default_rng(13)
    a = rng.normal(size=(300, 24))
    perm = rng.permutation(300)
    distractors = rng.normal(size=(200, 24))
    b = np.vstack([a[perm] * 3.0 + 1e-3 * rng.normal(size=(300, 24)), distractors])  # rescaled, noisy, extra rows
    res = sparse_assignment(a, b, k=4)
    check_matching(res, a, b)
    np.testing.assert_array_equal(perm[res.indices.numpy()], np.arange(300))
    assert res.values.min() > 0.99


def test_ties_duplicated_rows_and_orthogonal_dictionaries():
    rng = np.random.default_rng(14)
    base = rng.normal(size=(20, 6))
    a = np.repeat(base, 5, axis=0)  # every row five times: many optimal matchings
    b = np.vstack([base, base, base, rng.normal(size=(40, 6))])
    check_matching(sparse_assignment(a, b, k=2), a, b)
    eye = np.eye(64)
    res = sparse_assignment(eye[:32], eye[32:], k=3)  # every cosine exactly 0
    assert res.certificate.certified and res.values.abs().max() == 0
    same = np.tile(rng.normal(size=(1, 8)), (60, 1))  # all rows of A identical: Hall's condition fails at k = 2
    other = rng.normal(size=(80, 8))
    check_matching(sparse_assignment(same, other, k=2), same, other)


def test_low_dimension_uses_the_dense_solver_inside_the_certified_loop():
    """In d <= 3 LAPJVsp slows without bound; the dense Hungarian solver stands in, still certified."""
    rng = np.random.default_rng(22)
    a, b = rng.normal(size=(400, 2)), rng.normal(size=(450, 2))
    check_matching(sparse_assignment(a, b, k=4), a, b)
    big = np.ones((12_000, 2))
    with pytest.raises(ValueError, match="exceeds its limit"):
        sparse_assignment(big, big)


def test_dictionary_against_itself_is_the_identity():
    d = gaussian_dictionary(500, 32, seed=15)
    res = sparse_assignment(d, d)
    np.testing.assert_array_equal(res.indices.numpy(), np.arange(500))
    assert torch.allclose(res.values, torch.ones(500, dtype=torch.float64), atol=1e-6)
    assert res.certificate.certified


def test_certificate_accepts_the_optimum_and_catches_suboptimal_matchings():
    rng = np.random.default_rng(16)
    a, b = rng.normal(size=(150, 12)), rng.normal(size=(180, 12))
    _, cos = dense_optimum(a, b)
    rows, cols = linear_sum_assignment(cos, maximize=True)
    best = cols[np.argsort(rows)]
    good = certify_assignment(a, b, best)
    assert good.certified and good.gap_bound <= 150 * good.tol
    swapped = best.copy()
    swapped[[0, 1]] = swapped[[1, 0]]  # a 2-exchange: worse, and both pairs are in the candidate graph
    loss = cos[[0, 1], best[[0, 1]]].sum() - cos[[0, 1], swapped[[0, 1]]].sum()
    assert loss > 0
    bad = certify_assignment(a, b, swapped)
    assert not bad.certified and bad.max_violation > 1e-6
    assert bad.gap_bound >= loss - 1e-12  # the bound is a bound: at least the true shortfall
    free = np.setdiff1d(np.arange(180), best)
    worst_free = free[np.argmin(cos[0, free])]
    moved = best.copy()
    moved[0] = worst_free  # row 0 leaves its partner for the worst free column: an improving path exists
    cert = certify_assignment(a, b, moved, k=1)
    shortfall = cos[0, best[0]] - cos[0, worst_free]
    assert not cert.certified and cert.gap_bound >= shortfall - 1e-12


def test_one_to_one_mcs_defaults_to_the_certified_sparse_solver():
    a, b = gaussian_dictionary(200, 16, seed=17), gaussian_dictionary(260, 16, seed=18)
    sparse = one_to_one_mcs(a, b)
    dense = one_to_one_mcs(a, b, method="dense")
    assert isinstance(sparse, SparseMatchResult) and sparse.certificate.certified
    assert abs(sparse.values.sum().item() - dense.values.sum().item()) <= 1e-9
    assert torch.equal(sparse.indices, dense.indices)  # continuous random data: a unique optimum
    assert sparse.values.dtype == dense.values.dtype == torch.float64
    assert one_to_one_mcs(a, b, k=2, max_rounds=30).certificate.certified
    with pytest.raises(RuntimeError, match="not certified"):
        one_to_one_mcs(a, b, k=1, max_rounds=1)


def test_tiles_stay_within_budget(matmul_bytes):
    """No torch product (the cosine tiles) larger than the budget: the N x M matrix is never built."""
    rng = np.random.default_rng(19)
    a, b = rng.normal(size=(300, 8)), rng.normal(size=(320, 8))
    budget = 40_000
    res = sparse_assignment(a, b, k=2, memory_budget_bytes=budget)
    matmul_bytes.stop()
    largest = matmul_bytes.sizes
    assert 0 < max(largest) <= budget
    check_matching(res, a, b)


def test_float32_scan_error_bound_holds():
    """The rigour of the float32 scan rests on _scan_error; check it against float64 on adversarial-ish data."""
    rng = np.random.default_rng(20)
    for d in (8, 128, 512):
        a = unit(rng.normal(size=(200, d)) * rng.lognormal(size=(1, d)) * 3)  # uneven coordinates
        b = unit(np.vstack([a[:100] + 1e-4 * rng.normal(size=(100, d)), rng.normal(size=(200, d))]))
        v = rng.uniform(0, 2, size=len(b))
        exact = a @ b.T - v
        a32 = torch.from_numpy(np.hstack([a, np.ones((200, 1))])).float()
        b32 = torch.from_numpy(np.hstack([b, -v[:, None]])).float()
        err = np.abs((a32 @ b32.T).double().numpy() - exact).max()
        assert err <= _scan_error(d, float(v.max()), torch.float32)


def test_blocked_topk_of_wide_tiles_keeps_the_top_values():
    gen = torch.Generator().manual_seed(21)
    for width, k in [(20_000, 4), (65_536 + 77, 16), (5000, 3)]:
        tile = torch.randn(40, width, generator=gen)
        tile[0, :] = 1.0  # one row all ties
        tile[1, -5:] = 9.0  # the largest values in the ragged last block
        tile[2, :: width // 7] = -torch.inf
        vals, idx = _tile_topk(tile, k)
        assert torch.equal(vals.sort(1).values, tile.topk(k, dim=1).values.sort(1).values)
        assert torch.equal(tile.gather(1, idx), vals)
        assert all(len(set(row)) == k for row in idx.tolist())


@pytest.mark.parametrize("n,m", [(60, 60), (50, 70)])
def test_cycle_and_path_cancelling_reaches_the_graph_optimum(n, m):
    """From an arbitrary full matching of a sparse graph, cancelling improving cycles (and, for N < M,
    paths to free columns) ends at the graph's optimum: the one LSA finds with non-edges forbidden."""
    rng = np.random.default_rng(n + m)
    a, b = unit(rng.normal(size=(n, 8))), unit(rng.normal(size=(m, 8)))
    cos = a @ b.T
    graph = _CandidateGraph(a, b)
    graph.add(np.repeat(np.arange(n), 6), np.argsort(-cos, axis=1)[:, :6].ravel())
    start = rng.permutation(m)[:n]  # an arbitrary full matching, made part of the graph
    graph.add(np.arange(n), start)
    masked = np.full((n, m), -1e6)
    masked[graph.rows, graph.cols] = graph.weights
    rows, cols = linear_sum_assignment(masked, maximize=True)
    sigma, labels = _improve(graph, start, 1e-12, 500)
    assert labels is not None and len(np.unique(sigma)) == n
    assert cos[np.arange(n), start].sum() < cos[np.arange(n), sigma].sum()
    assert abs(cos[np.arange(n), sigma].sum() - masked[rows, cols].sum()) < 1e-9


def test_a_suboptimal_solve_is_repaired_inside_the_loop(monkeypatch):
    """If the graph solver's matching is not optimal (rounding, say), the loop cancels cycles and goes on."""

    def any_full_matching(graph):  # Hopcroft-Karp ignores the weights
        return maximum_bipartite_matching(graph.biadjacency(np.ones(len(graph))), perm_type="column").astype(np.int64)

    monkeypatch.setattr(matching, "_solve", any_full_matching)
    monkeypatch.setattr(matching, "_IMPROVE_PASSES", 500)
    rng = np.random.default_rng(23)
    for n, m in [(80, 80), (60, 90)]:
        a, b = rng.normal(size=(n, 8)), rng.normal(size=(m, 8))
        check_matching(sparse_assignment(a, b, k=5), a, b)


def test_parent_cycle_detection():
    assert not _has_cycle(np.array([-1, 0, 1, 2, 0]))
    assert _has_cycle(np.array([-1, 2, 3, 1, 0]))  # 1 -> 2 -> 3 -> 1
    assert _has_cycle(np.array([0]))  # a self-loop


@pytest.mark.parametrize(
    "a,b,message",
    [
        (np.ones((5, 3)), np.ones((4, 3)), "len\\(A\\) <= len\\(B\\)"),
        (np.ones((3, 4)), np.ones((5, 6)), "different widths"),
        (np.zeros((3, 4)), np.ones((5, 4)), "zero rows"),
        (np.array([[1.0, np.nan]]), np.ones((5, 2)), "NaN"),
        (np.ones((0, 4)), np.ones((5, 4)), "empty"),
        (np.ones(4), np.ones((5, 4)), "2-D"),
    ],
)
def test_bad_input_is_a_clear_error(a, b, message):
    with pytest.raises(ValueError, match=message):
        sparse_assignment(a, b)
    with pytest.raises(ValueError, match=message):
        one_to_one_mcs(a, b)


def test_bad_options_are_clear_errors():
    a, b = np.eye(3), np.eye(3)
    with pytest.raises(ValueError, match="k and max_rounds must be positive"):
        sparse_assignment(a, b, k=0)
    with pytest.raises(ValueError, match="tol must be >= 0"):
        sparse_assignment(a, b, tol=float("nan"))
    with pytest.raises(ValueError, match="distinct rows of B"):
        certify_assignment(a, b, [0, 0, 1])
    with pytest.raises(ValueError, match="method must be"):
        one_to_one_mcs(a, b, method="greedy")
    with pytest.raises(TypeError, match="method='sparse' only"):
        one_to_one_mcs(a, b, method="dense", k=3)
