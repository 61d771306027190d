"""Feature trees from activation similarity: brute force, a planted hierarchy, random nulls, validation."""

from itertools import pairwise

import numpy as np
import pytest
import torch
from scipy import sparse

from sae_core.sae import SAEConfig, SparseAutoencoder
from sae_core.trees import (
    SCORE_KINDS,
    CoactivationAccumulator,
    activation_correlation,
    bootstrap_interval,
    build_ladder,
    coactivation_stats,
    containment,
    correlation_at,
    decoder_vs_activation,
    depth_statistics,
    directed_masked_cosine,
    encode_sparse,
    first_split_size,
    identify_latents,
    ladder_coactivation,
    ladder_depth,
    level_at,
    level_intervals,
    level_statistics,
    level_summary,
    masked_cosine,
    masked_cosine_on_large,
    pair_stats,
    pooled_split_rates,
    recovered_hierarchy,
    relu_masked_cosine,
    sae_coactivation,
    scored_pairs,
    similarity_scores,
    sparse_codes,
    token_permutations,
    tree_from,
    tree_level,
    validate_edges,
)


# ----------------------------------------------------------------------------- brute force
def _cos(u: np.ndarray, v: np.ndarray) -> float:
    den = np.sqrt((u * u).sum() * (v * v).sum())
    return float((u * v).sum() / den) if den > 0 else 0.0


def brute_force_scores(a: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
    """Loop over pairs and masks, straight from the definitions."""
    n, m = a.shape[1], b.shape[1]
    out = {k: np.zeros((n, m)) for k in ("mcs", "directed_cosine", "directed", "pearson", "containment")}
    for i in range(n):
        for j in range(m):
            on_i, on_j = a[:, i] > 0, b[:, j] > 0
            c_i = _cos(a[on_i, i], b[on_i, j])
            c_j = _cos(a[on_j, i], b[on_j, j])
            out["mcs"][i, j] = max(c_i, c_j)
            out["directed_cosine"][i, j] = c_j
            out["containment"][i, j] = (on_i & on_j).sum() / on_j.sum() if on_j.any() else 0.0
            out["directed"][i, j] = c_j * b[:, j].max() / a[:, i].max() if a[:, i].max() > 0 else 0.0
            sa, sb = a[:, i].std(), b[:, j].std()
            out["pearson"][i, j] = (
                np.mean((a[:, i] - a[:, i].mean()) * (b[:, j] - b[:, j].mean())) / (sa * sb) if sa * sb > 0 else 0.0
            )
    return out


def random_codes(rng: np.random.Generator, t: int, n: int, rate: float) -> np.ndarray:
    codes = rng.exponential(size=(t, n)) * (rng.random((t, n)) < rate)  # [t, n] sparse, >= 0
    codes[:, 0] = 0.0  # a dead latent
    codes[:, -1] = 2.5  # a constant latent (fires everywhere, zero variance)
    return codes


@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_matmul_scores_equal_brute_force(chunk):
    rng = np.random.default_rng(chunk)
    a, b = random_codes(rng, 60, 6, 0.3), random_codes(rng, 60, 9, 0.4)
    stats = coactivation_stats(a, b, chunk_size=chunk, device="cpu", dtype=torch.float64)
    brute = brute_force_scores(a, b)
    got = {
        "mcs": masked_cosine(stats),
        "directed_cosine": masked_cosine_on_large(stats),
        "directed": directed_masked_cosine(stats),
        "pearson": activation_correlation(stats),
        "containment": containment(stats),
    }
    for kind, want in brute.items():
        np.testing.assert_allclose(got[kind], want, atol=1e-10, err_msg=kind)
        assert np.isfinite(got[kind]).all()
    assert stats.n_tokens == 60
    np.testing.assert_array_equal(stats.cofire, (a > 0).T.astype(float) @ (b > 0).astype(float))
    np.testing.assert_array_equal(stats.alive_small, a.max(0) > 0)
    assert not stats.alive_small[0] and not stats.alive_large[0]
    assert (got["mcs"][0] == 0).all() and (got["directed"][:, 0] == 0).all() and (got["pearson"][0] == 0).all()


def test_float32_chunks_and_iterator_of_batches_agree():
    rng = np.random.default_rng(3)
    a, b = random_codes(rng, 500, 12, 0.2), random_codes(rng, 500, 20, 0.1)
    ref = coactivation_stats(a, b, chunk_size=500, device="cpu", dtype=torch.float64)
    acc = CoactivationAccumulator(12, 20, device="cpu")  # float32 products, float64 sums
    for s in range(0, 500, 64):
        acc.update(torch.from_numpy(a[s : s + 64]).float(), torch.from_numpy(b[s : s + 64]).float())
    got = acc.result()
    for kind in SCORE_KINDS:
        np.testing.assert_allclose(similarity_scores(got, kind), similarity_scores(ref, kind), atol=1e-5)


def test_bad_codes_are_refused():
    acc = CoactivationAccumulator(2, 3, device="cpu")
    with pytest.raises(ValueError, match="negative"):
        acc.update(-np.ones((4, 2)), np.ones((4, 3)))
    with pytest.raises(ValueError, match="shape"):
        acc.update(np.ones((4, 3)), np.ones((4, 3)))
    with pytest.raises(ValueError, match="token counts"):
        acc.update(np.ones((4, 2)), np.ones((5, 3)))
    with pytest.raises(ValueError, match="no tokens"):
        acc.result()
    with pytest.raises(ValueError, match="score kind"):
        similarity_scores(coactivation_stats(np.ones((2, 2)), np.ones((2, 3)), device="cpu"), "nope")


def test_sae_ladder_streams_batches_like_dense_codes():
    saes = [SparseAutoencoder(SAEConfig(d_in=8, d_sae=k, seed=k)) for k in (4, 8, 16)]
    x = torch.randn(300, 8, generator=torch.Generator().manual_seed(0))
    batches = [x[:100], x[100:250], x[250:]]
    ladder = ladder_coactivation(saes, iter(batches), chunk_size=64, device="cpu", dtype=torch.float64)
    assert [s.shape for s in ladder] == [(4, 8), (8, 16)]
    with torch.no_grad():
        codes = [s.encode(x).double() for s in saes]
    for k, stats in enumerate(ladder):
        ref = coactivation_stats(codes[k], codes[k + 1], device="cpu", dtype=torch.float64)
        for kind in SCORE_KINDS:
            np.testing.assert_allclose(similarity_scores(stats, kind), similarity_scores(ref, kind), atol=1e-6)
    pair = sae_coactivation(saes[0], saes[1], x, chunk_size=128, device="cpu", dtype=torch.float64)
    np.testing.assert_allclose(pair.cross, ladder[0].cross, rtol=1e-6)


# ----------------------------------------------------------------------------- planted hierarchy
def planted_codes(t: int = 6000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Small: [parent P, X, Y, dead]; large: [X', child C1, child C2, Z, dead].

    Every token where P fires carries exactly one of its two children; the large dictionary
    has split P into C1 and C2, whose activation tracks P's (b = a * U(0.8, 1)).
    """
    rng = np.random.default_rng(seed)
    mag = lambda: rng.uniform(1.0, 2.0, t)  # noqa: E731
    p = mag() * (rng.random(t) < 0.2)
    x, y, z = (mag() * (rng.random(t) < 0.1) for _ in range(3))
    which = rng.random(t) < 0.5
    c1, c2 = p * which * rng.uniform(0.8, 1.0, t), p * ~which * rng.uniform(0.8, 1.0, t)
    small = np.stack([p, x, y, np.zeros(t)], 1)  # [t, 4]
    large = np.stack([0.9 * x, c1, c2, z, np.zeros(t)], 1)  # [t, 5]
    return small, large


def test_planted_split_gives_exactly_the_true_edges():
    small, large = planted_codes()
    stats = coactivation_stats(small, large, chunk_size=1000, device="cpu")
    expected = {(0, 1), (0, 2), (1, 0)}  # P -> C1, P -> C2, X -> X'
    for kind in ("directed", "directed_capped", "mcs"):
        (level,) = build_ladder([stats], kind=kind, threshold=0.6)
        assert level.edges() == expected, kind
    assert build_ladder([stats], min_cofire=100)[0].edges() == expected  # > 300 shared tokens each
    np.testing.assert_allclose(containment(stats)[0, 1:3], 1.0)  # children fire only with P
    scores = directed_masked_cosine(stats)
    off = scores.copy()
    off[tuple(np.array(sorted(expected)).T)] = 0
    assert scores[0, 1] > 0.9 and scores[0, 2] > 0.9 and off.max() < 0.5
    (level,) = build_ladder([stats])
    np.testing.assert_array_equal(level.best_parent, [1, 0, 0, -1, -1])
    assert tree_from([level], 0) == {0: {1: {}, 2: {}}}
    summary = level_summary(level)
    assert summary["n_small_dead"] == 1 and summary["n_large_dead"] == 1
    assert summary["branching_parents"] == pytest.approx(1.5)  # P: 2 children, X: 1
    assert summary["branching_all"] == pytest.approx(1.0)  # (2 + 1 + 0) / 3 alive
    for key in ("share_children_0", "share_children_1", "share_children_many"):
        assert summary[key] == pytest.approx(1 / 3)
    assert summary["n_merges"] == 0 and summary["share_orphans"] == pytest.approx(1 / 4)  # Z


def test_merges_best_parent_and_summary_on_a_score_matrix():
    scores = np.array([[0.9, 0.7, 0.0, 0.61], [0.8, 0.0, 0.0, 0.61], [0.0, 0.0, 0.0, 0.0]])
    level = tree_level(scores, 0.6)
    assert level.edges() == {(0, 0), (0, 1), (0, 3), (1, 0), (1, 3)}
    np.testing.assert_array_equal(level.best_parent, [0, 0, -1, 0])  # tie on column 3: lowest index
    s = level_summary(level)
    assert s["n_merges"] == 2 and s["share_merges"] == pytest.approx(0.5)
    assert s["share_merges_linked"] == pytest.approx(2 / 3) and s["share_orphans"] == pytest.approx(0.25)
    assert s["branching_parents"] == pytest.approx(2.5) and s["branching_parents_tree"] == pytest.approx(3.0)
    dead = tree_level(scores, 0.6, alive_small=np.array([True, False, True]))
    assert dead.edges() == {(0, 0), (0, 1), (0, 3)} and level_summary(dead)["n_small_dead"] == 1


# ----------------------------------------------------------------------------- random dictionaries
def random_ladder(bias: float, t: int = 20000, seed: int = 0):
    """Gaussian dictionaries of 64 and 128 rows in d = 32, codes ReLU(x W^T - bias |w|), x ~ N(0, I)."""
    g = torch.Generator().manual_seed(seed)
    w_small, w_large = torch.randn(64, 32, generator=g), torch.randn(128, 32, generator=g)
    x = torch.randn(t, 32, generator=g)
    a = torch.relu(x @ w_small.T - bias * w_small.norm(dim=1))  # [t, 64]
    b = torch.relu(x @ w_large.T - bias * w_large.norm(dim=1))  # [t, 128]
    unit = lambda w: w / w.norm(dim=1, keepdim=True)  # noqa: E731
    rho = (unit(w_small) @ unit(w_large).T).numpy()  # [64, 128] direction cosines
    return coactivation_stats(a, b, chunk_size=8192, device="cpu"), rho


def test_random_dense_relu_dictionaries_sit_on_the_analytic_floor():
    """The brief's "no edge above 0.6" fails for dense ReLU codes, and the reason is analytic.

    Each latent fires on half the tokens, so on b's support the non-negative a has masked
    cosine sqrt(2)/pi = 0.450 with b for orthogonal directions and more for aligned ones
    (relu_masked_cosine); the max ratio then multiplies by about |w_b| / |w_a|. Measured
    (seed 0, T = 20000): max directed score 1.12, max bare cosine 0.72, 13% of pairs >= 0.6.
    """
    stats, rho = random_ladder(bias=0.0)
    cos = masked_cosine_on_large(stats)
    np.testing.assert_allclose(cos, relu_masked_cosine(rho), atol=0.04)
    assert np.median(cos) == pytest.approx(np.sqrt(2) / np.pi, abs=0.01)
    assert relu_masked_cosine(0.0) == pytest.approx(np.sqrt(2) / np.pi)
    assert (rho[cos >= 0.6] > 0.25).all()  # bare-cosine edges only between aligned directions
    directed = directed_masked_cosine(stats)
    assert directed.max() > 1.0  # the max ratio lifts it above 1: D is not a cosine
    assert directed_masked_cosine(stats, ratio_cap=1.0).max() <= cos.max() + 1e-12


def test_random_sparse_dictionaries_edges_come_only_from_the_max_ratio():
    """Latents firing on 5% of tokens (bias 1.645 |w|): every cosine-type score stays below 0.6,
    the capped directed score too; the uncapped directed score exceeds 0.6 only where
    max b / max a > 1 (measured max 0.65 at seed 0, 0.05% of pairs; 0.66 and 0.80 at seeds 1, 2)."""
    stats, _ = random_ladder(bias=1.645)
    assert 0.03 < stats.count_small.mean() / stats.n_tokens < 0.07
    for kind in ("directed_cosine", "mcs", "pearson", "directed_capped"):
        assert similarity_scores(stats, kind).max() < 0.6, kind
    directed = directed_masked_cosine(stats)
    ratio = stats.max_large[None, :] / stats.max_small[:, None]
    assert (ratio[directed >= 0.6] > 1.0).all()
    assert (directed >= 0.6).mean() < 0.005


def test_independent_sparse_latents_reach_the_directed_threshold_on_one_shared_token():
    """I.i.d. sparse codes (1% firing, T = 8192): some pairs share a single token where b has its
    largest value, so cos_{S_j} = b(t) / ||b|| is ~0.5, and the max ratio (up to ~3 between
    independent latents) lifts D over 0.6 (0.07% of pairs, max 1.13). A support of a few
    co-firing tokens removes every such edge; the capped score never reaches 0.6."""
    g = torch.Generator().manual_seed(0)
    a = torch.relu(torch.randn(8192, 256, generator=g) - 2.3)  # [T, 256], P(fire) = 1.1%
    b = torch.relu(torch.randn(8192, 512, generator=g) - 2.3)  # [T, 512]
    stats = coactivation_stats(a, b, device="cpu")
    (level,) = build_ladder([stats])
    assert level.src.size > 50
    assert np.median(stats.cofire[level.src, level.dst]) == 1
    assert build_ladder([stats], min_cofire=5)[0].src.size == 0
    assert build_ladder([stats], kind="directed_capped")[0].src.size == 0
    assert build_ladder([stats], kind="mcs")[0].src.size == 0


# ----------------------------------------------------------------------------- ground truth
def basis(n: int, d: int = 32, seed: int = 0) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q[:n]  # [n, d] orthonormal rows


def noise_rows(k: int, d: int = 32, seed: int = 1) -> np.ndarray:
    r = np.random.default_rng(seed).normal(size=(k, d))
    return r / np.linalg.norm(r, axis=1, keepdims=True)


# true features 0..9: parents 0 (children 1, 2), 3 (children 4, 5), 8 (child 9); 6, 7 independent
PARENT_OF = np.array([-1, 0, 0, -1, 3, 3, -1, -1, -1, 8])


def test_edge_precision_and_recall_on_a_planted_level():
    g = basis(10)
    small_dec = np.concatenate([g[[0, 3, 6]], noise_rows(1), g[[5]]])  # features 0, 3, 6, none, 5
    large_dec = g[[1, 2, 4, 6, 3, 7]]
    small_id, large_id = identify_latents(small_dec, g), identify_latents(large_dec, g)
    np.testing.assert_array_equal(small_id.feature, [0, 3, 6, -1, 5])
    np.testing.assert_array_equal(large_id.feature, [1, 2, 4, 6, 3, 7])
    scores = np.zeros((5, 6))
    kinds = {
        (0, 0): "split", (0, 1): "split", (2, 3): "same", (1, 4): "same", (3, 5): "unidentified",
        (2, 0): "unrelated", (4, 2): "sibling", (4, 4): "absorbed",
    }  # the true split 3 -> 4 (latents 1 -> 2) is missed
    for edge in kinds:
        scores[edge] = 0.8
    level = tree_level(scores, 0.6)
    v = validate_edges(level, small_id.feature, large_id.feature, PARENT_OF)
    assert level.edges() == set(kinds)
    assert {(int(i), int(j)): k for i, j, k in zip(level.src, level.dst, v.kinds, strict=True)} == kinds
    assert v.counts == {"same": 2, "split": 2, "absorbed": 1, "sibling": 1, "unrelated": 1, "unidentified": 1}
    assert v.precision == pytest.approx(4 / 7)  # (same + split) / identified
    assert v.precision_split == pytest.approx(2 / 5)  # split / (identified - same)
    assert v.n_recoverable_split == 3 and v.recall_split == pytest.approx(2 / 3)  # (0,1), (0,2) of 0-1, 0-2, 3-4
    assert v.n_recoverable_same == 2 and v.recall_same == 1.0  # features 3 and 6


def test_first_split_size_along_a_ladder():
    g = basis(10)
    decoders = {
        4: np.concatenate([g[[0, 3, 6]], noise_rows(1, seed=2)]),
        8: np.concatenate([g[[0, 1, 3, 6, 7]], noise_rows(3, seed=3)]),
        16: np.concatenate([g[[1, 2, 4, 5, 6, 7, 8]], noise_rows(9, seed=4)]),
    }
    fs = first_split_size(decoders, g, PARENT_OF)
    np.testing.assert_array_equal(fs.parents, [0, 3, 8])
    np.testing.assert_array_equal(fs.split_size, [8, 16, -1])
    np.testing.assert_array_equal(fs.parent_size, [4, 4, 16])


def test_decoder_twins_that_fire_differently_and_the_reverse():
    rng = np.random.default_rng(0)
    e = np.eye(8)
    small_dec = e[[0, 1, 2, 6]]
    large_dec = np.stack([e[0], 0.3 * e[1] + np.sqrt(0.91) * e[5], e[2], e[3], e[6]])
    t = 2000
    u = rng.uniform(1, 2, t)
    first = rng.random(t) < 0.5
    on0, on1, on2 = first & (rng.random(t) < 0.4), rng.random(t) < 0.2, rng.random(t) < 0.3
    small = np.stack([u * on0, u * on1, u * on2, np.zeros(t)], 1)
    late = ~first & (rng.random(t) < 0.4)  # large twin of latent 0 fires on other tokens
    large = np.stack([u * late, u * on1, u * on2, u * (rng.random(t) < 0.1), np.zeros(t)], 1)
    stats = coactivation_stats(small, large, device="cpu")
    rep = decoder_vs_activation(small_dec, large_dec, stats)
    lean = pair_stats(small, large, min_cofire=50, small_masks=False)
    exact = decoder_vs_activation(small_dec, large_dec, lean, codes=(small, large))
    np.testing.assert_allclose(exact.activation_corr, rep.activation_corr, atol=1e-5)  # float32 sums there
    np.testing.assert_array_equal(rep.match, [0, 1, 2, 4])
    np.testing.assert_allclose(rep.decoder_cos, [1.0, 0.3, 1.0, 1.0], atol=1e-12)
    assert rep.activation_corr[0] < 0 and rep.activation_corr[1] == pytest.approx(1.0)
    np.testing.assert_array_equal(rep.alive, [True, True, True, False])  # dead pair not counted
    assert rep.n_twins_fire_differently == 1 and rep.n_fire_alike_not_twins == 1
    strict = decoder_vs_activation(small_dec, large_dec, stats, twin_corr=-1.0, far_cos=0.2)
    assert strict.n_twins_fire_differently == 0 and strict.n_fire_alike_not_twins == 0


# ----------------------------------------------------------------------------- sparse pairs and baselines
def test_pair_stats_equal_the_dense_statistics_and_draw_the_same_trees():
    rng = np.random.default_rng(7)
    a, b = random_codes(rng, 400, 10, 0.2), random_codes(rng, 400, 17, 0.15)
    dense = coactivation_stats(a, b, chunk_size=97, device="cpu", dtype=torch.float64)
    pairs = pair_stats(a, sparse.csr_matrix(b), method="sparse")
    assert pairs.shape == (10, 17) and (pairs.cofire >= 1).all()
    assert np.all(np.diff(pairs.small * 17 + pairs.large) > 0)  # sorted, no duplicates
    back = pairs.to_dense()
    for name in ("sum_small", "sum_large", "sumsq_small", "sumsq_large", "max_small", "max_large", "count_small",
                 "count_large", "cross", "sumsq_small_on_large", "sumsq_large_on_small", "cofire"):
        np.testing.assert_allclose(getattr(back, name), getattr(dense, name), rtol=1e-12, atol=1e-12, err_msg=name)
    for kind in SCORE_KINDS:
        got = similarity_scores(pairs, kind)  # [P]
        np.testing.assert_allclose(got, similarity_scores(dense, kind)[pairs.small, pairs.large], atol=1e-12)
        for min_cofire in (1, 3):
            for threshold in (0.3, 0.6):
                want = build_ladder([dense], kind=kind, threshold=threshold, min_cofire=min_cofire)[0]
                (lv,) = build_ladder([pairs], kind=kind, threshold=threshold, min_cofire=min_cofire)
                assert lv.edges() == want.edges(), (kind, min_cofire, threshold)
                np.testing.assert_array_equal(lv.best_parent, want.best_parent)
                ref = tree_level(similarity_scores(dense, kind), threshold, alive_small=dense.alive_small,
                                 alive_large=dense.alive_large, allowed=dense.cofire >= min_cofire)
                assert lv.edges() == ref.edges()
    for method in ("dense", "auto"):  # the dense accumulation (float32 products) gives the same pairs
        other = pair_stats(a, b, method=method)
        np.testing.assert_array_equal(other.small, pairs.small)
        np.testing.assert_array_equal(other.large, pairs.large)
        for kind in SCORE_KINDS:
            np.testing.assert_allclose(similarity_scores(other, kind), similarity_scores(pairs, kind), atol=1e-5)
    lean = pair_stats(a, b, method="sparse", min_cofire=3, small_masks=False)  # what the report computes
    assert lean.sumsq_large_on_small is None and (lean.cofire >= 3).all()
    for kind in ("directed", "directed_capped", "directed_cosine", "pearson"):
        want = build_ladder([dense], kind=kind, threshold=0.5, min_cofire=3)[0]
        assert build_ladder([lean], kind=kind, threshold=0.5, min_cofire=3)[0].edges() == want.edges(), kind
    with pytest.raises(ValueError, match="small_masks"):
        similarity_scores(lean, "mcs")
    with pytest.raises(ValueError, match="co-firing on >= 3"):
        scored_pairs(lean, min_cofire=2)
    i, j = np.array([0, 1, 2, 9]), np.array([0, 3, 16, 5])
    np.testing.assert_allclose(correlation_at(pairs, i, j), activation_correlation(dense)[i, j], atol=1e-12)
    np.testing.assert_allclose(correlation_at(dense, i, j), activation_correlation(dense)[i, j], atol=1e-12)


def test_encode_sparse_matches_dense_codes_and_bad_inputs_are_refused():
    saes = [SparseAutoencoder(SAEConfig(d_in=8, d_sae=k, seed=k)) for k in (4, 8)]
    x = torch.randn(300, 8, generator=torch.Generator().manual_seed(0))
    codes = encode_sparse(saes, [x[:100], x[100:]], chunk_size=64)
    with torch.no_grad():
        for sae, c in zip(saes, codes, strict=True):
            np.testing.assert_allclose(c.toarray(), sae.encode(x).double().numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="negative"):
        sparse_codes(-np.ones((3, 2)))
    with pytest.raises(ValueError, match="token counts"):
        pair_stats(np.ones((4, 2)), np.ones((5, 3)))
    with pytest.raises(ValueError, match="permutation"):
        pair_stats(np.ones((4, 2)), np.ones((4, 3)), large_tokens=np.array([0, 0, 1, 2]))
    with pytest.raises(ValueError, match="method"):
        pair_stats(np.ones((4, 2)), np.ones((4, 3)), method="nope")
    pairs = scored_pairs(pair_stats(np.ones((4, 2)), np.ones((4, 3))))
    with pytest.raises(ValueError, match="positive"):
        level_at(pairs, 0.0)
    with pytest.raises(ValueError, match="min_cofire"):
        scored_pairs(pair_stats(np.ones((4, 2)), np.ones((4, 3))), min_cofire=0)


def test_shuffling_the_large_codes_removes_the_planted_split():
    """The permutation baseline keeps every large latent's firing and breaks its co-firing: the
    planted P -> C1, P -> C2 and X -> X' edges (directed score > 0.9) fall to the chance floor.
    That floor is not 0: P fires on 20% of tokens, so on the tokens of an independent latent its
    masked cosine is about sqrt(0.2) E[a] / sqrt(E[a^2]) = 0.44, and at Bricken et al.'s 0.4 the
    shuffled P still links to every large latent; from 0.5 up no planted edge survives."""
    small, large = planted_codes()
    real = pair_stats(small, large)
    assert level_at(scored_pairs(real, min_cofire=5), 0.6).edges() == {(0, 1), (0, 2), (1, 0)}
    perms = token_permutations(small.shape[0], 5, seed=3)
    assert not any(np.array_equal(p, q) for p, q in pairwise(perms))
    np.testing.assert_array_equal(perms[0], token_permutations(small.shape[0], 1, seed=3)[0])  # seeded
    for perm in perms:
        shuffled = pair_stats(small, large, large_tokens=perm)
        np.testing.assert_array_equal(shuffled.count_large, real.count_large)  # firing rates kept
        np.testing.assert_allclose(shuffled.max_large, real.max_large)
        pairs = scored_pairs(shuffled, min_cofire=5)
        for threshold in (0.5, 0.6, 0.7, 0.8):
            assert not level_at(pairs, threshold).edges() & {(0, 1), (0, 2), (1, 0)}, threshold
        floor = pairs.score[pairs.small == 0]  # the shuffled parent against every large latent
        assert 0.35 < floor.min() and floor.max() < 0.5


def independent_dictionary(codes: np.ndarray, seed: int) -> np.ndarray:
    """A dictionary that learned every feature of a source without hierarchy: its latents are the
    features in another order, each activation scaled by its own noise (another training seed)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(codes.shape[1])
    return codes[:, order] * rng.uniform(0.7, 1.0, codes.shape)


def test_seed_baseline_of_a_source_without_hierarchy_splits_no_more_than_chance():
    """Two same-size dictionaries of a source with independent features (no parent, no child):
    each latent links to its twin and to nothing else, so the seed baseline's shares of latents
    with several children and of merges are at chance (the permutation baseline), i.e. zero."""
    rng = np.random.default_rng(0)
    t, k = 8000, 40
    codes = rng.uniform(0.5, 1.5, (t, k)) * (rng.random((t, k)) < rng.uniform(0.01, 0.2, k))
    seed_a, seed_b = independent_dictionary(codes, 1), independent_dictionary(codes, 2)
    (seed_level,) = build_ladder([pair_stats(seed_a, seed_b)], min_cofire=5)
    seed_stats = level_statistics(seed_level)
    chance = [level_statistics(level_at(scored_pairs(pair_stats(seed_a, seed_b, large_tokens=p), min_cofire=5), 0.6))
              for p in token_permutations(t, 4)]
    for name in ("share_children_many", "share_merges"):
        assert seed_stats[name] <= max(c[name] for c in chance) + 1e-12, name
    assert seed_level.src.size == k and seed_stats["edges_per_latent"] == 1.0  # exactly the twins
    assert max(c["edges_per_latent"] for c in chance) == 0.0


def test_depth_statistics_and_intervals_on_a_hand_built_ladder():
    # rung 0: 3 -> 4 latents, rung 1: 4 -> 5; chain 0 -> 1 -> 4 and 0 -> 2; 1 -> 3 (dead end); 2 has none
    level0 = tree_level(np.array([[0.9, 0.7, 0, 0], [0, 0, 0, 0.8], [0, 0, 0, 0]]), 0.6)
    level1 = tree_level(np.array([[0, 0, 0, 0, 0], [0, 0, 0, 0, 0.9], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]), 0.6)
    np.testing.assert_array_equal(ladder_depth([level0, level1]), [2, 1, 0])
    d = depth_statistics([level0, level1])
    assert d["depth"] == pytest.approx(1.0) and d["share_full_depth"] == pytest.approx(1 / 3)
    assert d["depth_lo"] <= d["depth"] <= d["depth_hi"] and d["n_rungs"] == 2 and d["n_roots"] == 3
    with pytest.raises(ValueError, match="chain"):
        ladder_depth([level1, level0])
    stats = level_statistics(level0)
    assert stats["edges_per_latent"] == pytest.approx(1.0) and stats["branching_parents"] == pytest.approx(1.5)
    assert stats["share_children_many"] == pytest.approx(1 / 3) and stats["share_merges"] == 0.0
    assert level_summary(level0)["edges_per_latent"] == stats["edges_per_latent"]
    for name, (lo, hi) in level_intervals(level0, n_boot=500).items():
        assert lo <= stats[name] <= hi, name
    empty = tree_level(np.zeros((2, 3)), 0.6)
    assert np.isnan(level_statistics(empty)["branching_parents"])
    assert np.isnan(level_intervals(empty)["branching_parents"][0])
    assert bootstrap_interval(np.array([]), np.mean) == (pytest.approx(np.nan, nan_ok=True),) * 2


def test_pooled_split_rates_and_recovered_hierarchy():
    assert np.isnan(pooled_split_rates([]).precision) and np.isnan(pooled_split_rates([]).recall)
    g = basis(10)
    small_id = identify_latents(np.concatenate([g[[0, 3, 6]], noise_rows(1), g[[5]]]), g).feature
    large_id = identify_latents(g[[1, 2, 4, 6, 3, 7]], g).feature
    scores = np.zeros((5, 6))
    for edge in ((0, 0), (0, 1), (2, 3), (1, 4), (3, 5), (2, 0), (4, 2), (4, 4)):
        scores[edge] = 0.8
    v = validate_edges(tree_level(scores, 0.6), small_id, large_id, PARENT_OF)
    assert v.n_recovered_split == 2
    rates = pooled_split_rates([v, v])
    assert (rates.n_split, rates.n_linking, rates.n_recovered, rates.n_recoverable) == (4, 10, 4, 6)
    assert rates.precision == pytest.approx(0.4) and rates.recall == pytest.approx(2 / 3)
    rec = recovered_hierarchy(large_id, PARENT_OF)
    assert (rec.n_parents, rec.n_children, rec.parents_found, rec.children_found, rec.features_found) == (3, 5, 1, 3, 6)
    none = recovered_hierarchy(np.full(4, -1), PARENT_OF)
    assert none.parents_found == 0 and none.children_found == 0 and none.features_found == 0
