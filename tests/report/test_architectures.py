"""The Architectures chapter's report layer: matched k, the rows it trains on a tiny family, and each
sentence on its edge cases (no low mode, every latent dead, one feature, the 10% boundary)."""

import numpy as np
import pytest

from sae_core.report import answer, latents
from sae_core.report import architectures as arch


def _classes(size: int, counts: np.ndarray | None = None, unmoved: float = 0.0) -> latents.LatentClasses:
    counts = np.full(size, 100) if counts is None else counts
    init = np.where(np.arange(size) < unmoved * size, 1.0, 0.2)
    return latents.LatentClasses(size, 1000, 1e-3, counts, init)


def _low(size: int, n_low: int, never: int = 0, unmoved: int | None = 0, setting: str = "synthetic, TopK + AuxK"
         ) -> answer.LowByClass:
    values = np.where(np.arange(size) < n_low, 0.3, 0.9)
    return answer.LowByClass(setting, size, 8 * size, 0.5, size, n_low, 1000, 1e-3, never, 0, n_low - never, unmoved,
                             None if unmoved is None else n_low - never - unmoved, 0.0,
                             (0.0 if never == n_low else 0.01) if n_low else None,
                             0.05, values, _classes(size))


def _row(arch_name: str, size: int = 16, n_low: int = 0, never_share: float = 0.0, k: dict | None = None,
         l0: dict | None = None, seed: arch.SeedSharing | None = None, never: int = 0) -> arch.ArchRow:
    shares = {size: {"never fires": never_share, "ultralow": 0.0, "active": 1.0 - never_share, "unmoved": 0.0}}
    return arch.ArchRow("synthetic", arch_name, None, k, l0 or {size: 4.0}, {size: 0.9}, shares,
                        _low(size, n_low, never=never, setting=f"synthetic, {arch_name}"), False, 2 * size,
                        {"null cutoff 0.500": 0.5, "MCS ≥ 0.5": 0.5}, seed, 1e-3)


def test_matched_k_rounds_the_baselines_l0_within_one_and_the_size():
    assert arch.matched_k({64: 10.4, 16: 3.5, 32: 0.2, 8: 20.0}) == {8: 8, 16: 4, 32: 1, 64: 10}
    assert arch.architecture_overrides({"activation": "topk", "dead_window": 5}, {16: 2}) == {
        "activation": "topk", "dead_window": 5, "k": {16: 2}}
    assert arch.architecture_overrides({}, {16: 2}) == {}
    assert arch.architecture_overrides({"activation": "batchtopk"}, {16: 2}) == {
        "activation": "batchtopk", "k": {16: 2}}
    assert arch.architecture_overrides({"activation": "jumprelu", "l0_coeff": 0.1}, {16: 2}) == {
        "activation": "jumprelu", "l0_coeff": 0.1}
    assert arch.architecture_name({"activation": "topk"}) == "TopK + AuxK" and arch.architecture_name({}) == arch.RELU


def test_chapter_sizes_fall_back_to_the_chapters_pair():
    assert arch.chapter_sizes([128, 256, 512], [64, 128, 256, 512], 128, 256, 512) == ([128, 256, 512], 256)
    # a profile whose sizes lack arch_sizes (splitting: 1024 / 2048 / 4096)
    assert arch.chapter_sizes([128, 256, 512], [256, 1024, 2048, 4096], 1024, 2048, 4096) == ([1024, 2048, 4096], 2048)
    # mid equal to large (pythia: 2048 / 2048 / 4096 is fine; 4096 / 4096 falls back)
    assert arch.chapter_sizes([1024, 4096, 8192], [1024, 2048, 4096], 2048, 2048, 4096) == ([2048, 4096], 2048)
    assert arch.chapter_sizes([1024, 4096, 8192], [1024, 2048, 4096], 1024, 4096, 4096) == ([1024, 2048, 4096], 2048)
    assert arch.chapter_sizes([], [16, 32], 16, 32, 32) == ([16, 32], 16)


def test_matching_sentence_on_the_ten_percent_boundary():
    base = _row(arch.RELU, l0={16: 10.0})
    on = _row("TopK + AuxK", k={16: 10}, l0={16: 11.0})  # a gap of exactly 10%: within
    off = _row("TopK + AuxK", k={16: 10}, l0={16: 11.5})
    assert arch.l0_gaps(on, base) == {16: pytest.approx(0.1)}
    assert "has held-out L0 within 10%" in arch.matching_sentence([base, on], {"synthetic": base})
    text = arch.matching_sentence([base, off], {"synthetic": base})
    assert "not within 10%" in text and "15.0%" in text and "11.5 against 10.0" in text
    none = arch.matching_sentence([base], {"synthetic": base})
    assert none == "This build trains no architecture with a sparsity to match."
    jump = arch.matching_sentence([base, _row("JumpReLU", l0={16: 8.0})], {"synthetic": base})
    assert "JumpReLU with L0 coefficient –" in jump and "not within 10%" in jump and "(largest gap 20.0%" in jump
    silent = _row(arch.RELU, l0={16: 0.0})
    assert arch.l0_gaps(_row("TopK + AuxK", l0={16: 2.0}), silent) == {16: float("inf")}
    assert arch.l0_gaps(_row("TopK + AuxK", l0={16: 0.0}), silent) == {16: 0.0}


def test_architecture_sentence_without_a_low_mode():
    base = _row(arch.RELU, n_low=12)
    topk = _row("TopK + AuxK", n_low=3)
    text = arch.architecture_sentence(topk, base)
    assert "so there is no low mode" in text and "3 of its 16 features (18.8%)" in text
    assert "ReLU: 0.0% and 0.0%; low share 75.0%" in text and "nan" not in text


def test_architecture_sentence_when_every_latent_is_dead():
    dead = _row("TopK + AuxK", n_low=16, never_share=1.0, never=16)
    text = arch.architecture_sentence(dead, None)
    assert "100.0% of the latents never fire" in text
    assert "The low part is inactive latents, some moved" in text and "100.0% of it never fires" in text
    assert "median firing density 0 against" in text
    assert "ReLU" not in text and "nan" not in text


def test_architecture_sentence_with_one_feature():
    one = _row("TopK + AuxK", size=1, n_low=1, l0={1: 1.0})
    text = arch.architecture_sentence(one, one)  # its own baseline: no comparison printed
    assert "1 of its 1 features (100.0%)" in text and "no low mode" in text and "ReLU:" not in text


def test_seed_and_overall_sentences():
    assert arch.seed_sentence([_row(arch.RELU)]) == ("No second seed was trained, so seed-to-seed sharing is not "
                                                     "measured.")
    s = arch.SeedSharing(16, (0, 1), 0.61, 0.25, 0.4321)
    text = arch.seed_sentence([_row(arch.RELU, seed=s)])
    assert "seed 1" in text and "25.0% of the matched pairs above the null cutoff 0.610" in text and "0.432" in text
    assert arch.overall_sentence([_row(arch.RELU)]).startswith("This build trains no architecture beside ReLU")
    assert "dictionaries read from disk" in arch.overall_sentence([])
    text = arch.overall_sentence([_row(arch.RELU, n_low=12), _row("TopK + AuxK", n_low=2),
                                  _row("TopK + AuxK", n_low=12, never_share=0.5, never=12)])
    assert text.startswith("Among the 2 dictionaries of an architecture built to keep latents alive, one has fewer "
                           "than 1% of latents that never fire, and it has no low mode")
    one = arch.overall_sentence([_row("TopK + AuxK", n_low=12, never_share=0.5, never=12)])
    assert one.startswith("Among the 1 dictionary of an architecture built to keep latents alive, none has fewer "
                          "than 1% of latents that never fire (")
    two = arch.overall_sentence([_row("TopK + AuxK", n_low=12), _row("TopK + AuxK", n_low=2)])
    assert ("2 have fewer than 1% of latents that never fire; 1 of these 2 still has features below the null "
            "cutoff") in two
    both = arch.overall_sentence([_row("TopK + AuxK", n_low=12), _row("TopK + AuxK", n_low=12)])
    assert ("2 have fewer than 1% of latents that never fire; all of them still have features below the null "
            "cutoff (") in both
    assert "not bimodal, its low part is" in both
    gone = arch.overall_sentence([_row("TopK + AuxK", n_low=2), _row("TopK + AuxK", n_low=2)])
    assert "2 have fewer than 1% of latents that never fire; none of them has a low mode (" in gone
    assert "its low part is inactive latents, some moved" in text


def test_density_text_and_table_on_edges():
    assert [arch.density_text(x) for x in (None, 0.0, 0.5, 2e-5)] == ["–", "0", "50.0%", "2.0e-05"]
    assert arch.table([]) == (["source"], [])
    headers, rows = arch.table([_row(arch.RELU), _row("TopK + AuxK", k={16: 4})])
    assert len(rows) == 2 and all(len(r) == len(headers) for r in rows)
    assert rows[0][2] == "–" and rows[1][2] == "4" and "nan" not in " ".join(map(str, rows[1]))


def test_rows_for_source_trains_topk_at_the_baselines_l0(family):
    rows = arch.rows_for_source(family, [{"activation": "topk", "dead_window": 5}], [16, 32, 64], 16, 32, 2048,
                                second_seed=1, progress=False)
    relu, topk = rows
    assert relu.arch == arch.RELU and topk.arch == "TopK + AuxK"
    assert relu.k is None and topk.k == arch.matched_k(relu.l0)
    assert {s: sae.cfg.k for s, sae in topk.family.saes.items()} == topk.k
    assert all(sae.cfg.activation == "topk" for sae in topk.family.saes.values())
    # held-out L0 of a TopK dictionary is at most its k
    assert all(topk.l0[s] <= topk.k[s] + 1e-9 for s in topk.k)
    assert topk.seed is not None and topk.seed.seeds == (0, 1) and 0 <= topk.seed.share_above <= 1
    assert -1 <= topk.seed.pw_mcc <= 1 and topk.low.against == 64 and topk.low.size == 16
    assert relu.family.key == family.key  # the baseline at a subset of the family's sizes is that subset
    fig = arch.mcs_figure(rows)
    assert len(fig.axes) == 2
    with pytest.raises(ValueError, match="must include the small"):
        arch.rows_for_source(family, [], [32, 64], 16, 32, 2048, progress=False)
