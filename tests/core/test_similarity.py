"""MCS and one-to-one matching against brute force, geometry, and bad input."""

import itertools

import numpy as np
import pytest
import torch

from sae_core.similarity import (
    gaussian_dictionary,
    max_cosine_similarity,
    one_to_one_mcs,
    reverse_mcs,
    sampled_null_mcs,
    self_mcs,
)


def brute_force_mcs(a: np.ndarray, b: np.ndarray, exclude_self: bool = False):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    cos = a @ b.T
    if exclude_self:
        np.fill_diagonal(cos, -np.inf)
    return cos.max(1), cos.argmax(1)


@pytest.mark.parametrize("n,m,d", [(7, 13, 5), (64, 300, 16), (200, 50, 3)])
@pytest.mark.parametrize("budget", [64, 4096, 2**28])
def test_mcs_matches_brute_force_float64(n, m, d, budget):
    rng = np.random.default_rng(n * m + d)
    a, b = rng.normal(size=(n, d)), rng.normal(size=(m, d))
    res = max_cosine_similarity(a, b, dtype=torch.float64, memory_budget_bytes=budget)
    values, idx = brute_force_mcs(a, b)
    np.testing.assert_allclose(res.values.numpy(), values, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(res.indices.numpy(), idx)


def test_mcs_float32_values_and_clear_argmaxes():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(500, 32)), rng.normal(size=(3000, 32))
    res = max_cosine_similarity(a, b, memory_budget_bytes=100_000)  # many tiles
    values, idx = brute_force_mcs(a, b)
    np.testing.assert_allclose(res.values.numpy(), values, atol=2e-6)
    an = a / np.linalg.norm(a, axis=1, keepdims=True)
    bn = b / np.linalg.norm(b, axis=1, keepdims=True)
    top2 = np.sort(an @ bn.T, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 1e-5  # float32 can only break near-ties differently
    assert clear.mean() > 0.95
    np.testing.assert_array_equal(res.indices.numpy()[clear], idx[clear])


def test_tiles_stay_within_budget(matmul_bytes):
    """No cosine tile larger than the budget is ever built, even for N = M."""
    rng = np.random.default_rng(2)
    a = torch.from_numpy(rng.normal(size=(1000, 8)))
    budget = 40_000  # bytes: 10_000 float32 entries
    res = max_cosine_similarity(a, a, memory_budget_bytes=budget)
    matmul_bytes.stop()
    largest = matmul_bytes.sizes
    assert max(largest) <= budget
    assert len(largest) > 100
    np.testing.assert_allclose(res.values.numpy(), 1.0, atol=1e-6)


def test_self_mcs_excludes_diagonal_across_tiles():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(300, 10))
    values, idx = brute_force_mcs(a, a, exclude_self=True)
    for budget in (200, 4000, 2**26):
        res = self_mcs(a, dtype=torch.float64, memory_budget_bytes=budget)
        np.testing.assert_allclose(res.values.numpy(), values, atol=1e-12)
        np.testing.assert_array_equal(res.indices.numpy(), idx)
        assert (res.indices.numpy() != np.arange(300)).all()


def test_reverse_mcs_is_mcs_with_roles_swapped():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(20, 6)), rng.normal(size=(90, 6))
    values, idx = brute_force_mcs(b, a)
    res = reverse_mcs(a, b, dtype=torch.float64)
    assert res.values.shape == (90,)
    np.testing.assert_allclose(res.values.numpy(), values, atol=1e-12)
    np.testing.assert_array_equal(res.indices.numpy(), idx)


def test_geometry_identity_rotation_orthogonal():
    d = gaussian_dictionary(256, 64, seed=5)
    assert torch.allclose(max_cosine_similarity(d, d).values, torch.ones(256), atol=1e-5)
    q, _ = torch.linalg.qr(gaussian_dictionary(64, 64, seed=6).double())
    rotated = d.double() @ q  # the same dictionary written in another orthonormal basis
    ones = torch.ones(256, dtype=torch.float64)
    assert torch.allclose(max_cosine_similarity(rotated, rotated, dtype=torch.float64).values, ones, atol=1e-12)
    other = gaussian_dictionary(500, 64, seed=7).double()
    before = max_cosine_similarity(d, other, dtype=torch.float64)
    after = max_cosine_similarity(rotated, other @ q, dtype=torch.float64)  # rotating both keeps every cosine
    assert torch.allclose(before.values, after.values, atol=1e-12)
    assert torch.equal(before.indices, after.indices)
    perm = torch.randperm(256, generator=torch.Generator().manual_seed(0))
    res = max_cosine_similarity(d, 3.0 * d[perm])  # rescaled, shuffled copy
    assert torch.allclose(res.values, torch.ones(256), atol=1e-5)
    assert torch.equal(perm[res.indices], torch.arange(256))
    eye = torch.eye(64)
    assert torch.equal(max_cosine_similarity(eye[:32], eye[32:]).values, torch.zeros(32))


@pytest.mark.parametrize(
    "a,b,message",
    [
        (torch.ones(3, 4), torch.ones(5, 6), "different widths"),
        (torch.zeros(3, 4), torch.ones(5, 4), "zero rows"),
        (torch.tensor([[1.0, float("nan")]]), torch.ones(5, 2), "NaN"),
        (torch.ones(3, 2), torch.tensor([[1.0, float("inf")]]), "NaN or inf"),
        (torch.ones(0, 4), torch.ones(5, 4), "empty"),
        (torch.ones(4), torch.ones(5, 4), "2-D"),
    ],
)
def test_bad_input_is_a_clear_error(a, b, message):
    with pytest.raises(ValueError, match=message):
        max_cosine_similarity(a, b)
    if a.ndim == 2 and a.shape[0] <= b.shape[0]:
        for method in ("sparse", "dense"):
            with pytest.raises(ValueError, match=message):
                one_to_one_mcs(a, b, method=method)


def test_one_to_one_matches_enumeration_of_all_assignments():
    rng = np.random.default_rng(7)
    for n, m in [(3, 3), (3, 5), (4, 6), (5, 7)]:
        a, b = rng.normal(size=(n, 4)), rng.normal(size=(m, 4))
        an = a / np.linalg.norm(a, axis=1, keepdims=True)
        bn = b / np.linalg.norm(b, axis=1, keepdims=True)
        cos = an @ bn.T
        best = max(itertools.permutations(range(m), n), key=lambda p: cos[np.arange(n), list(p)].sum())
        for method in ("sparse", "dense"):
            res = one_to_one_mcs(a, b, method=method)
            np.testing.assert_array_equal(res.indices.numpy(), np.array(best))
            np.testing.assert_allclose(res.values.numpy(), cos[np.arange(n), list(best)], atol=1e-12)
            assert len(set(res.indices.tolist())) == n


def test_one_to_one_is_at_most_greedy_and_respects_limits():
    a, b = gaussian_dictionary(50, 8, seed=8), gaussian_dictionary(60, 8, seed=9)
    matched = one_to_one_mcs(a, b).values
    greedy = max_cosine_similarity(a, b, dtype=torch.float64).values
    assert (matched <= greedy + 1e-12).all()
    assert matched.sum() < greedy.sum()  # 50 random rows of 60 always collide somewhere
    with pytest.raises(ValueError, match="len\\(A\\) <= len\\(B\\)"):
        one_to_one_mcs(b, a)
    with pytest.raises(ValueError, match="limit is N\\*M <= 100"):
        one_to_one_mcs(a, b, max_entries=100, method="dense")  # the size limit is the dense method's
    assert len(one_to_one_mcs(a, b, max_entries=100).values) == 50  # the sparse default has none


def test_random_dictionaries_are_seeded():
    assert torch.equal(gaussian_dictionary(10, 4, seed=1), gaussian_dictionary(10, 4, seed=1))
    assert not torch.equal(gaussian_dictionary(10, 4, seed=1), gaussian_dictionary(10, 4, seed=2))
    assert torch.equal(sampled_null_mcs(30, 40, 8, seed=3), sampled_null_mcs(30, 40, 8, seed=3))
    with pytest.raises(ValueError, match="positive shape"):
        gaussian_dictionary(0, 4)
