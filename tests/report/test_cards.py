"""Feature cards, the token-level proxy and its sentence, the browser page and tree nodes' top tokens.

A fake language-model family (a character-level "tokenizer", a held-out store with token columns
and a hand-made SAE whose latents fire on chosen characters) checks contexts and top tokens exactly;
the tiny synthetic family checks that cards degrade without tokens.
"""

import re

import numpy as np
import pytest
import torch

from sae_core.report import browser, cards, latents
from sae_core.report.pipeline import Family
from sae_core.sae import SAEConfig, SparseAutoencoder
from sae_core.sources.store import ActivationStore, StoreWriter

DOCS = ["the cat sat on the mat", "a <b>bold</b> & tidy dog", "then the tall tree", "xyz"]
CONTEXT = 8  # tokens per model row: each row's first token is not stored (skip_first)
FIRE = {0: "t", 1: "<"}  # latent -> the character it fires on; latent 2 never fires


class CharTokenizer:
    """One token per character, id = code point."""

    def __call__(self, text: str) -> dict:
        return {"input_ids": [ord(c) for c in text]}

    def decode(self, ids) -> str:
        return "".join(chr(i) for i in ids)

    def convert_ids_to_tokens(self, i: int) -> str:
        return chr(i)


class FakeSource:
    def __init__(self, heldout: ActivationStore) -> None:
        self.heldout = heldout


def _activation(ch: str, pos: int) -> list[float]:
    return [1.0 + 0.01 * pos if ch == FIRE[0] else 0.0, 2.0 if ch == FIRE[1] else 0.0, 0.0, 0.1]


@pytest.fixture
def lm_family(tmp_path) -> Family:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(DOCS) + "\n")
    rows, cols = [], {"token_id": [], "doc": [], "pos": []}
    for d, text in enumerate(DOCS):
        for p, ch in enumerate(text):
            if p % CONTEXT == 0:  # skip_first
                continue
            rows.append(_activation(ch, p))
            cols["token_id"].append(ord(ch))
            cols["doc"].append(d)
            cols["pos"].append(p)
    writer = StoreWriter(tmp_path / "heldout", 4, {"source": "test"})
    writer.add(np.array(rows, np.float32), 1, {k: np.array(v) for k, v in cols.items()})
    store = ActivationStore(writer.close())
    saes = {}
    for size in (3, 6):
        sae = SparseAutoencoder(SAEConfig(d_in=4, d_sae=size))
        with torch.no_grad():
            sae.W_enc.zero_()
            sae.b_enc.fill_(-1.0)  # silent unless set below
            sae.W_enc[0, 0], sae.W_enc[1, 1], sae.b_enc[0], sae.b_enc[1] = 1.0, 1.0, 0.0, 0.0
        saes[size] = sae
    params = {"source": "lm", "sizes": [3, 6], "seed": 0,
              "lm": {"corpus": str(corpus), "context": CONTEXT, "max_documents": 100}}
    family = Family(params, "fake", tmp_path / "family", saes, [], FakeSource(store))
    readout = torch.zeros(4, 200)
    readout[0, ord("h")] = 1.0  # the direction of input 0 raises the logit of "h"
    family.memo["lm_view"] = cards.LanguageModelView(cards.Vocabulary(CharTokenizer()), CONTEXT, readout, "test")
    return family


def _n(family: Family) -> int:
    return family.heldout_available


# ------------------------------------------------------------------ statistics and contexts
def test_stats_agree_with_the_held_out_firing_counts_and_the_brute_force_top(lm_family):
    n = _n(lm_family)
    stats = cards.feature_stats(lm_family, 3, n)
    assert np.array_equal(stats.counts, latents.heldout_fires(lm_family, 3, n))
    codes = lm_family.saes[3].encode(lm_family.sample(n)).detach().numpy()
    assert stats.max_act == pytest.approx(codes.max(0))
    k = (codes[:, 0] > 0).sum()
    assert np.sort(codes[:, 0])[::-1][:k] == pytest.approx(stats.top_values[0][:k])
    assert (stats.top_rows[2] == -1).all() and stats.counts[2] == 0  # never fires: nothing to show
    assert stats.hist[0].sum() == stats.counts[0] and stats.hist[2].sum() == 0
    # the lower-interval samples lie in their interval
    for g, (lo, hi) in enumerate(cards.INTERVALS):
        for v, r in zip(stats.interval_values[0, g], stats.interval_rows[0, g], strict=True):
            if r >= 0:
                assert lo * stats.max_act[0] < v <= hi * stats.max_act[0]


def test_contexts_show_the_firing_token_in_its_document(lm_family):
    n = _n(lm_family)
    stats = cards.feature_stats(lm_family, 3, n)
    view = cards.language_model_view(lm_family)
    ctxs = cards.contexts(lm_family, view, n, stats.top_rows[0], stats.top_values[0], width=3)
    assert ctxs and all(c.tokens[c.focus] == "t" for c in ctxs)
    top = ctxs[0]  # the largest activation is the latest "t" (activation grows with position)
    text = DOCS[top.doc]
    assert "".join(top.tokens) == text[max(0, top.pos - 3):top.pos + 4]
    assert top.unseen == max(0, top.pos - top.pos % CONTEXT - max(0, top.pos - 3))
    # a row's first token, dropped from the store, is back from the re-tokenised document
    assert "…" not in "".join(top.tokens)


def test_token_mass_top_tokens_proxy_and_entropy(lm_family):
    mass = cards.feature_stats(lm_family, 3, _n(lm_family)).token_mass
    assert mass.top(0, 5) == [(ord("t"), pytest.approx(1.0))]  # fires on "t" only: one token, all the mass
    share, entropy = mass.top_share(), mass.entropy()
    assert share[0] == pytest.approx(1.0) and entropy[0] == pytest.approx(0.0)
    assert np.isnan(share[2]) and np.isnan(entropy[2])


def test_token_mass_of_a_latent_never_spills_into_the_next():
    m = cards.TokenMass(np.array([0, 1, 1, 1]), np.array([5, 6, 7, 8]), np.array([2.0, 3.0, 2.0, 1.0]),
                        np.array([1, 3, 2, 1]), 2)
    assert m.top(0, 3) == [(5, 1.0)]
    assert [t for t, _ in m.top(1, 2)] == [6, 7] and sum(s for _, s in m.top(1, 5)) == pytest.approx(1.0)
    assert m.top_share(1) == pytest.approx([1.0, 0.5])
    p = np.array([3, 2, 1]) / 6
    assert m.entropy()[1] == pytest.approx(-(p * np.log2(p)).sum())


# ------------------------------------------------------------------ cards
def test_card_escapes_tokens_marks_the_firing_one_and_lists_logits(lm_family):
    n = _n(lm_family)
    stats = cards.feature_stats(lm_family, 3, n)
    card = cards.build_card(lm_family, stats, 1, "active, low MCS", 0.2, 6, 1)
    page = cards.render_card(card)
    assert '<span class="fc-fire">&lt;</span>' in page  # the firing token "<", escaped
    assert not re.search(r"<(?!/?(div|h4|p|span|ul|li|code|svg|rect|text)\b)", page), "unescaped markup"
    assert "<svg" in page and not re.search(r"\bnan\b", page)
    raised = cards.build_card(lm_family, stats, 0, "high MCS", 0.9, 6, 0)
    assert raised.raises[0][0] == "h" and "fires on" in cards.render_card(raised)


def test_never_firing_card_has_a_detection_limit_and_no_nan(lm_family):
    n = _n(lm_family)
    card = cards.build_card(lm_family, cards.feature_stats(lm_family, 3, n), 2, "never fires", 0.1, 6, 3)
    page = cards.render_card(card)
    assert f"never fires on {n:,}" in page and f"{3 / n:.1e}" in page
    assert not re.search(r"\bnan\b", page) and not card.top


def test_cards_degrade_without_tokens(family):
    classes = latents.classify(family, 32, 2048)
    card_set = cards.feature_cards(family, classes, 64, cutoff=0.5)
    assert card_set.cards and not card_set.has_tokens
    text = card_set.html()
    assert "no tokens" in text and not re.search(r"\bnan\b", text) and 'class="fc-fire"' not in text
    assert all(not c.top and not c.raises for c in card_set.cards)
    sentence = cards.proxy_sentence(cards.proxy_comparison(family, classes, 64, 0.5))
    assert "no tokens" in sentence


def test_cards_are_chosen_by_a_seeded_rule():
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 50, 200)
    classes = latents.LatentClasses(200, 1000, 0.01, counts, None)
    mcs = rng.uniform(0, 1, 200)
    first = cards.choose_cards(classes, mcs, 0.5, seed=3)
    assert [c.latent for c in first] == [c.latent for c in cards.choose_cards(classes, mcs, 0.5, seed=3)]
    assert [c.latent for c in first] != [c.latent for c in cards.choose_cards(classes, mcs, 0.5, seed=4)]
    by_rule = {}
    for c in first:
        by_rule.setdefault(c.rule, []).append(c.latent)
    high, low, ultra = by_rule.values()
    assert len(high) == cards.N_HIGH_CARDS and all(classes.active[i] and mcs[i] >= 0.5 for i in high)
    assert len(low) == cards.LOW_CARD_CAP and all(classes.active[i] and mcs[i] < 0.5 for i in low)
    assert len(ultra) == cards.N_ULTRALOW_CARDS and all(classes.ultralow[i] for i in ultra)
    few_low = mcs.copy()
    few_low[np.flatnonzero(classes.active & (mcs < 0.5))[3:]] = 0.9  # only three active low features remain
    chosen = cards.choose_cards(classes, few_low, 0.5)
    assert sum("every active low-MCS" in c.rule for c in chosen) == 3  # every one of them, under the cap


def test_histogram_svg_has_one_bar_per_filled_bin():
    hist = np.array([0, 3, 1, 0])
    svg = cards.histogram_svg(hist, 2.5)
    assert svg.count("<rect") == 2 and ">2.5<" in svg
    assert "no activations" in cards.histogram_svg(np.zeros(4), 0.0)


# ------------------------------------------------------------------ the proxy's sentence
def _compare(low_vals, high_vals, counts=30):
    share = np.array([*low_vals, *high_vals], float)
    low = np.array([True] * len(low_vals) + [False] * len(high_vals))
    n = len(share)
    return cards.compare_proxy(share, None, np.full(n, counts), np.ones(n, bool), low, 128, 512)


def test_proxy_sentence_says_which_group_is_more_token_specific():
    c = _compare([0.9, 0.95, 0.85, 0.92], [0.3, 0.35, 0.4, 0.32])
    assert c.diff > 0 and c.diff_ci[0] > 0 and c.cliffs_delta == 1.0
    s = cards.proxy_sentence(c)
    assert "more token-specific" in s and "4 active low-MCS features" in s and "Cliff's delta +1.00" in s
    assert "less token-specific" in cards.proxy_sentence(_compare([0.3, 0.35, 0.4, 0.32], [0.9, 0.95, 0.85, 0.92]))


def test_proxy_sentence_with_equal_proxies_claims_no_difference():
    c = _compare([0.5, 0.5, 0.5], [0.5, 0.5])
    assert c.diff == 0 and c.cliffs_delta == 0
    assert "about equally token-specific" in cards.proxy_sentence(c)


def test_proxy_sentence_without_active_low_features_or_with_one_feature():
    none_low = cards.proxy_sentence(_compare([], [0.4, 0.5, 0.6]))
    assert "no active low-MCS feature" in none_low and "nan" not in none_low.lower()
    none_high = cards.proxy_sentence(_compare([0.4, 0.5], []))
    assert "no high-MCS feature" in none_high
    one = _compare([0.7], [0.4, 0.5, 0.6])
    assert one.low.ci is None and one.diff_ci is None
    s = cards.proxy_sentence(one)
    assert "the one active low-MCS feature puts 70%" in s and "no direction is claimed" in s
    nothing = cards.proxy_sentence(_compare([0.4], [0.5], counts=3))  # too few firings: both excluded
    assert "no active feature fired often enough" in nothing and "2 active features with fewer" in nothing


def test_cliffs_delta_and_bootstrap_intervals():
    assert cards.cliffs_delta(np.array([1, 2]), np.array([0, 3])) == 0.0
    assert cards.cliffs_delta(np.array([2.0]), np.array([1.0])) == 1.0
    with pytest.raises(ValueError):
        cards.cliffs_delta(np.array([]), np.array([1.0]))
    assert cards.bootstrap_mean_ci(np.array([1.0])) is None
    lo, hi = cards.bootstrap_mean_ci(np.arange(100.0))
    assert lo < 49.5 < hi


# ------------------------------------------------------------------ browser and tree nodes
def test_browser_page_lists_every_latent_with_escaped_contexts(lm_family, tmp_path):
    n = _n(lm_family)
    classes = latents.classify(lm_family, 3, n, threshold=1e-3)
    page = browser.write_browser(lm_family, classes, 6, 0.5, "lm_3", tmp_path / "out")
    text = page.path.read_text()
    assert page.n_bytes == len(text.encode()) and page.href.endswith("/lm_3.html")
    assert len(re.findall(r"<tr data-latent=", text)) == 3
    assert "<mark>&lt;</mark>" in text and "<mark>t</mark>" in text
    assert 'data-firing="never fires"' in text and "<script>" in text


def test_tree_nodes_get_their_top_tokens(lm_family, family):
    lines = ["3:0", "  6:1", "  6:2"]
    out = cards.with_top_tokens(lines, lm_family, _n(lm_family))
    assert out[0] == "3:0 — 't' 100%" and out[1] == "  6:1 — '<' 100%" and out[2] == "  6:2"
    assert cards.with_top_tokens(["16:3"], family, 512) == ["16:3"]  # no tokens: unchanged


def test_sparse_pair_sums_agree_with_the_dense_table(lm_family, monkeypatch):
    dense = cards.feature_stats(lm_family, 6, _n(lm_family)).token_mass
    monkeypatch.setattr(cards, "DENSE_PAIRS", 0)
    lm_family.memo.clear()
    sparse = cards.feature_stats(lm_family, 6, _n(lm_family)).token_mass
    for name in ("latent", "token", "count"):
        assert np.array_equal(getattr(dense, name), getattr(sparse, name))
    assert sparse.mass == pytest.approx(dense.mass)


def test_browser_of_a_source_without_tokens_lists_classes_and_mcs(family, tmp_path):
    classes = latents.classify(family, 32, 2048)
    page = browser.write_browser(family, classes, 64, 0.5, "synthetic_32", tmp_path / "out")
    text = page.path.read_text()
    assert len(re.findall(r"<tr data-latent=", text)) == 32 and "<mark>" not in text
    assert "no contexts: this source has no tokens" in text and not re.search(r"\bnan\b", text)


def test_matched_proxy_removes_the_advantage_of_few_firings():
    # latent 0: 40 firings on 40 distinct tokens; latent 1: 20 firings on one token; latent 2: too few firings
    latent = np.array([0] * 40 + [1, 2])
    m = cards.TokenMass(latent, np.r_[np.arange(40), 7, 8], np.ones(42), np.r_[np.ones(40, int), 20, 5], 3)
    share = m.matched_top_share(20, k=5)
    assert share[0] == pytest.approx(5 / 20) and share[1] == 1.0 and np.isnan(share[2])


def test_proxy_sentence_repeats_the_comparison_at_equal_firings():
    share = np.array([0.9, 0.95, 0.85, 0.3, 0.35, 0.4])
    matched = np.array([0.5, 0.45, 0.55, 0.5, 0.45, 0.55])
    low = np.array([True] * 3 + [False] * 3)
    c = cards.compare_proxy(share, None, np.full(6, 30), np.ones(6, bool), low, 128, 512, matched=matched)
    assert c.matched is not None and c.matched.diff == pytest.approx(0.0)
    s = cards.proxy_sentence(c)
    assert "more token-specific" in s and "20 firings drawn at random" in s and "within chance" in s


def test_byte_level_pieces_show_as_bytes_and_spaces_as_visible_marks():
    class ByteLevel:
        def decode(self, ids):
            return {1: " a", 2: "\ufffd", 3: "\x7f"}[ids[0]]

        def convert_ids_to_tokens(self, i):
            return {1: "Ġa", 2: "ĠâĢ", 3: "\x7f"}[i]

    vocab = cards.Vocabulary(ByteLevel())
    assert vocab.label(1) == "␣a" and vocab.text(1) == " a"
    assert vocab.text(2) == vocab.label(2) == "⟨20 e2 80⟩"  # a space and the first bytes of "–"
    assert vocab.text(3) == "\\x7f" and vocab.text(-1) == "…"
