"""What a feature fires on: per-latent statistics on held-out activations, feature cards, and a
token-level proxy compared between latent classes.

A **feature card** shows what every feature dashboard in the field shows (Bricken et al. 2023,
*Towards Monosemanticity*, feature visualisations; sae_vis / SAEDashboard; Neuronpedia):

- firing density on the held-out sample, with the detection limit 3/n of a latent seen never to fire
  (:func:`sae_core.report.latents.detection_limit`);
- the histogram of its nonzero activations, ``N_BINS`` equal bins over (0, max];
- its top ``N_TOP`` activations, each in its context: ``CONTEXT`` tokens either side of the firing token
  in its held-out document, the firing token highlighted, the activation printed;
- a sample from lower activation intervals: as in sae_vis's "interval groups", the activations in each
  interval of ``INTERVALS`` (fractions of the feature's maximum) and, among those, the
  ``N_PER_INTERVAL`` with the smallest seeded random key (a uniform sample without replacement);
- the tokens whose logits the feature raises and lowers most through the model's direct path:
  decoder row d → MLP output projection W_out → final LayerNorm → unembedding W_U, i.e.
  ``logit effect = W_U γ ⊙ C (W_outᵀ d)``, with C the LayerNorm's centring (x − mean x) and γ its gain;
  the LayerNorm's division by the residual's norm is frozen (one positive constant per token
  position, which rescales all logits alike and so leaves the order of tokens unchanged), as in
  TransformerLens's ``fold_ln``; later layers are ignored (the "direct logit attribution" of
  Bricken et al. and Neuronpedia);
- its MCS against the larger dictionary and the index of its nearest feature there.

The **token-level proxy** of a feature is the share of its activation mass on its ``TOP_K_TOKENS``
most-activating token ids, ``share = Σ_{t ∈ top-k} m_t / Σ_t m_t`` with ``m_t`` the sum of the
feature's activations on token id t; 1 for a feature that fires on at most k distinct tokens. It
is defined only for features with at least ``MIN_FIRINGS`` firings in the sample (with fewer,
the share is 1 by construction). A feature with few firings still puts them on few tokens by chance,
so the comparison is repeated at an equal number of firings: the share of its k most frequent tokens
among ``MIN_FIRINGS`` firings drawn without replacement (:meth:`TokenMass.matched_top_share`).
Beside it, the entropy (bits) of the distribution of the token ids it fires on,
``H = −Σ_t p_t log2 p_t`` with ``p_t`` the share of its firings on t. Groups are compared by their
means with percentile bootstrap intervals (Efron & Tibshirani 1993) and by Cliff's delta (Cliff 1993).

The synthetic source has no tokens: its cards show density, histogram and MCS and say so.
"""

from __future__ import annotations

import html
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from sae_core.io import cache_root
from sae_core.report.latents import LatentClasses, detection_limit
from sae_core.report.pipeline import Family
from sae_core.similarity import max_cosine_similarity

CONTEXT = 10  # tokens shown either side of the firing token
N_TOP = 10  # top activating contexts per card
INTERVALS = ((0.0, 0.25), (0.25, 0.5))  # lower activation intervals sampled, as fractions of the maximum
N_PER_INTERVAL = 3  # contexts sampled per interval
N_BINS = 24  # bins of the activation histogram over (0, max]
N_LOGITS = 8  # tokens whose logits the feature raises (and lowers) most
TOP_K_TOKENS = 5  # the proxy: share of activation mass on the top-k token ids
MIN_FIRINGS = 20  # features with fewer firings get no proxy value
CHUNK_ELEMENTS = 2**22  # codes computed per chunk: rows x latents
DENSE_PAIRS = 2**23  # (latent, token id) sums kept as a dense table up to this many cells


# ------------------------------------------------------------------ statistics of one dictionary
@dataclass
class FeatureStats:
    """Per-latent statistics of one dictionary on the first ``n_samples`` held-out activations
    (the same sample :func:`sae_core.report.latents.heldout_fires` counts). Rows are indices into
    that sample; ``-1`` pads."""

    size: int
    n_samples: int
    counts: np.ndarray  # [L] firings
    max_act: np.ndarray  # [L] largest activation (0 if never)
    top_values: np.ndarray  # [L, N_TOP] largest activations, descending
    top_rows: np.ndarray  # [L, N_TOP]
    hist: np.ndarray  # [L, N_BINS] counts of nonzero activations over (0, max]
    interval_values: np.ndarray  # [L, len(INTERVALS), N_PER_INTERVAL]
    interval_rows: np.ndarray  # [L, len(INTERVALS), N_PER_INTERVAL]
    interval_counts: np.ndarray  # [L, len(INTERVALS)] activations in each interval
    token_mass: TokenMass | None  # None: the source has no tokens


@dataclass
class TokenMass:
    """Sparse [latent, token id] sums of activation and counts of firings, sorted by latent then
    by mass (descending)."""

    latent: np.ndarray
    token: np.ndarray
    mass: np.ndarray
    count: np.ndarray
    size: int

    def top(self, latent: int, k: int) -> list[tuple[int, float]]:
        """The ``k`` token ids with the most activation mass, with their share of the mass."""
        lo, hi = np.searchsorted(self.latent, [latent, latent + 1])
        total = self.mass[lo:hi].sum()
        stop = min(lo + k, hi)
        return [(int(t), float(m / total)) for t, m in zip(self.token[lo:stop], self.mass[lo:stop], strict=True)]

    def top_share(self, k: int = TOP_K_TOKENS) -> np.ndarray:
        """[L] share of each latent's activation mass on its top-k token ids (NaN: never fires)."""
        starts = np.searchsorted(self.latent, np.arange(self.size))
        rank = np.arange(self.latent.size) - starts[self.latent]
        total = np.bincount(self.latent, self.mass, minlength=self.size)
        top = np.bincount(self.latent[rank < k], self.mass[rank < k], minlength=self.size)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total > 0, top / total, np.nan)

    def matched_top_share(self, m: int, k: int = TOP_K_TOKENS, draws: int = 20, seed: int = 0) -> np.ndarray:
        """[L] the proxy at an equal number of firings: of ``m`` firings drawn without replacement from a
        latent's firings (its token counts, a multivariate hypergeometric draw), the share on the ``k``
        tokens drawn most often, averaged over ``draws`` draws; NaN for a latent with fewer than m firings.
        A feature with few firings puts them on few tokens by chance alone; at equal m that advantage goes."""
        out = np.full(self.size, np.nan)
        rng = np.random.default_rng([seed, 21, m])
        starts = np.searchsorted(self.latent, np.arange(self.size + 1))
        for j in range(self.size):
            c = self.count[starts[j]:starts[j + 1]]
            if c.sum() < m:
                continue
            drawn = np.sort(rng.multivariate_hypergeometric(c, m, size=draws), axis=1)[:, ::-1]
            out[j] = drawn[:, :k].sum(1).mean() / m
        return out

    def entropy(self) -> np.ndarray:
        """[L] entropy in bits of the distribution of token ids each latent fires on (NaN: never fires)."""
        total = np.bincount(self.latent, self.count, minlength=self.size).astype(float)
        p = self.count / np.maximum(total[self.latent], 1)
        h = np.bincount(self.latent, -p * np.log2(np.maximum(p, 1e-300)), minlength=self.size)
        return np.where(total > 0, h, np.nan)


def _chunk_rows(size: int) -> int:
    return max(256, CHUNK_ELEMENTS // size)


class _BestPerGroup:
    """The ``k`` best candidates of each group seen so far (largest or smallest score; ties by row), kept
    as flat arrays and reduced after each offer (a sort of the candidates, then the first k of each group)."""

    def __init__(self, n_groups: int, k: int, largest: bool) -> None:
        self.n_groups, self.k, self.largest = n_groups, k, largest
        self.group = np.zeros(0, np.int64)
        self.score = np.zeros(0)
        self.row = np.zeros(0, np.int64)
        self.value = np.zeros(0)
        self.bar = np.full(n_groups, -np.inf if largest else np.inf)  # the k-th best score of each group

    def offer(self, group: np.ndarray, score: np.ndarray, row: np.ndarray, value: np.ndarray) -> None:
        # only a candidate at least as good as its group's k-th best so far can enter (ties go to the sort)
        better = score >= self.bar[group] if self.largest else score <= self.bar[group]
        group, score, row, value = group[better], score[better], row[better], value[better]
        if not group.size:
            return
        g = np.concatenate([self.group, group])
        s = np.concatenate([self.score, score])
        r = np.concatenate([self.row, row])
        v = np.concatenate([self.value, value])
        order = np.lexsort((r, -s if self.largest else s, g))
        g = g[order]
        rank = np.arange(g.size) - np.searchsorted(g, g)
        keep = order[rank < self.k]
        self.group, self.score, self.row, self.value = g[rank < self.k], s[keep], r[keep], v[keep]
        full = rank[rank < self.k] == self.k - 1
        self.bar[self.group[full]] = self.score[full]

    def table(self) -> tuple[np.ndarray, np.ndarray]:
        """[n_groups, k] rows (-1 pads) and values (0 pads), best first."""
        rows = np.full((self.n_groups, self.k), -1, np.int64)
        values = np.zeros((self.n_groups, self.k))
        rank = np.arange(self.group.size) - np.searchsorted(self.group, self.group)
        rows[self.group, rank] = self.row
        values[self.group, rank] = self.value
        return rows, values


def token_ids(family: Family, n_samples: int) -> np.ndarray | None:
    """Token id of each of the first ``n_samples`` held-out activations, or None (no tokens)."""
    where = heldout_rows(family, n_samples)
    return None if where is None else where[0]


def heldout_rows(family: Family, n_samples: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(token id, document, position) of each of the first ``n_samples`` held-out activations (the
    order of :meth:`Family.sample`), or None when the source keeps no tokens."""
    store = getattr(family.source, "heldout", None)
    if store is None or "token_id" not in getattr(store, "column_names", []):
        return None
    n = family.heldout_n(n_samples)
    key = ("heldout_rows", n)
    if key not in family.memo:
        order = family.heldout_order()[:n]
        family.memo[key] = tuple(store.column(c)[order] for c in ("token_id", "doc", "pos"))
    return family.memo[key]


def feature_stats(family: Family, size: int, n_samples: int, seed: int = 0) -> FeatureStats:
    """:class:`FeatureStats` of dictionary ``size`` on the first ``n_samples`` held-out activations, in two
    passes over the sample (the second needs each latent's maximum); memoised on the family."""
    n = family.heldout_n(n_samples)
    key = ("feature_stats", size, n, seed)
    if key in family.memo:
        return family.memo[key]
    sae = family.saes[size]
    x = family.sample(n)
    tokens = token_ids(family, n)
    chunk = _chunk_rows(size)
    vocab = int(tokens.max()) + 1 if tokens is not None else 0
    pairs = _PairSums(size, vocab)
    counts = np.zeros(size, np.int64)
    top = _BestPerGroup(size, N_TOP, largest=True)

    def nonzero(start: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(sample row, latent, activation) of every firing in the chunk starting at ``start``."""
        with torch.no_grad():
            codes = sae.encode(x[start:start + chunk]).float()
        r, j = codes.nonzero(as_tuple=True)
        return r.numpy() + start, j.numpy(), codes[r, j].double().numpy()

    for start in range(0, n, chunk):
        r, j, v = nonzero(start)
        counts += np.bincount(j, minlength=size)
        top.offer(j, v, r, v)
        if tokens is not None:
            pairs.add(torch.from_numpy(j * vocab + tokens[r].astype(np.int64)), torch.from_numpy(v))
    top_rows, top_values = top.table()
    max_act = top_values[:, 0]
    safe_max = np.where(max_act > 0, max_act, 1.0)
    hist = np.zeros(size * N_BINS, np.int64)
    intervals = [_BestPerGroup(size, N_PER_INTERVAL, largest=False) for _ in INTERVALS]
    int_counts = np.zeros((size, len(INTERVALS)), np.int64)
    for c, start in enumerate(range(0, n, chunk)):
        r, j, v = nonzero(start)
        frac = v / safe_max[j]
        hist += np.bincount(j * N_BINS + np.clip((frac * N_BINS).astype(np.int64), 0, N_BINS - 1),
                            minlength=size * N_BINS)
        keys = np.random.default_rng([seed, 21, c]).random(r.size)  # uniform sampling without replacement
        for g, (lo, hi) in enumerate(INTERVALS):
            inside = (frac > lo) & (frac <= hi)
            int_counts[:, g] += np.bincount(j[inside], minlength=size)
            intervals[g].offer(j[inside], keys[inside], r[inside], v[inside])
    tables = [t.table() for t in intervals]
    stats = FeatureStats(size, n, counts, max_act, top_values, top_rows, hist.reshape(size, N_BINS),
                         np.stack([t[1] for t in tables], 1), np.stack([t[0] for t in tables], 1), int_counts,
                         pairs.result() if tokens is not None else None)
    family.memo[key] = stats
    return stats


class _PairSums:
    """Sums of activation and counts of firings per (latent, token id), keyed ``latent * vocab + token``:
    a dense table when it is small (``DENSE_PAIRS`` cells), else (key, value) lists reduced now and then."""

    def __init__(self, size: int, vocab: int) -> None:
        self.size, self.vocab = size, vocab
        self.dense = size * vocab <= DENSE_PAIRS
        if self.dense:
            self.mass = torch.zeros(size * vocab, dtype=torch.float64)
            self.count = torch.zeros(size * vocab, dtype=torch.float64)
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.pending = 0

    def add(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        if self.dense:
            self.mass.index_add_(0, keys, values)
            self.count.index_add_(0, keys, torch.ones_like(values))
            return
        self.parts.append((keys.numpy(), values.numpy(), np.ones(len(keys))))
        self.pending += len(keys)
        if self.pending > 2**24:
            self.parts = [self._reduce()]
            self.pending = 0

    def _reduce(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self.parts:
            return np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
        keys = np.concatenate([p[0] for p in self.parts])
        uniq, inverse = np.unique(keys, return_inverse=True)
        return (uniq, np.bincount(inverse, np.concatenate([p[1] for p in self.parts])),
                np.bincount(inverse, np.concatenate([p[2] for p in self.parts])))

    def result(self) -> TokenMass:
        if self.dense:
            keys = torch.nonzero(self.count).flatten()
            keys, mass, count = keys.numpy(), self.mass[keys].numpy(), self.count[keys].numpy()
        else:
            keys, mass, count = self._reduce()
        latent, token = keys // max(self.vocab, 1), keys % max(self.vocab, 1)
        count = np.rint(count).astype(np.int64)
        order = np.lexsort((token, -mass, latent))
        return TokenMass(latent[order], token[order], mass[order], count[order], self.size)


# ------------------------------------------------------------------ tokens, contexts and logits
class Vocabulary:
    """Token ids to display text, escaped for HTML when rendered (``repr``-like: newlines as ↵)."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self._text: dict[int, str] = {}

    def text(self, token: int) -> str:
        """The token as text; a token that is part of a multi-byte character (which decodes alone to
        U+FFFD) or a control character as its bytes in hex, e.g. ``⟨e2 80⟩``; ``…`` for an unknown token
        (id -1)."""
        if token < 0:
            return "…"
        if token not in self._text:
            text = self.tokenizer.decode([int(token)]).replace("\n", "↵").replace("\t", "⇥")
            if "\ufffd" in text or not text.isprintable():  # part of a character, or a control character
                text = _byte_text(self.tokenizer.convert_ids_to_tokens(int(token))) or text.encode(
                    "unicode_escape").decode("ascii")
            self._text[token] = text
        return self._text[token]

    def label(self, token: int) -> str:
        """The token for a list of tokens: spaces shown as ␣ so a space token is visible."""
        text = self.text(token)
        return text if text.startswith("⟨") and text.endswith("⟩") else text.replace(" ", "␣")


def _byte_level_alphabet() -> dict[str, int]:
    """GPT-2's byte-level BPE alphabet (Radford et al. 2019, ``bytes_to_unicode``): character -> byte."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    chars, n = keep[:], 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(keep, chars, strict=True)}


_BYTES = _byte_level_alphabet()


def _byte_text(piece: str | None) -> str | None:
    """A byte-level BPE token's bytes in hex (``⟨e2 80⟩``), or None if it is not byte-level."""
    if not piece or any(ch not in _BYTES for ch in piece):
        return None
    return "⟨" + " ".join(f"{_BYTES[ch]:02x}" for ch in piece) + "⟩"


@dataclass
class Context:
    """One activation in its document: ``tokens`` around the firing token at ``focus``."""

    value: float
    tokens: list[str]
    focus: int
    unseen: int = 0  # leading tokens before the model's row (the model did not see them)
    doc: int = -1
    pos: int = -1


@dataclass
class LanguageModelView:
    """What a language-model family needs for cards: its tokenizer, the documents' tokens, and the
    logit effect of directions in the site's space."""

    vocab: Vocabulary
    context: int  # tokens per row the model ran on (rows start at multiples of it)
    readout: torch.Tensor | None  # [d_in, V]: logit effect of a unit of a site direction; None: not available
    readout_note: str
    documents: dict[int, np.ndarray] = field(default_factory=dict)  # doc -> token ids (-1: unknown)


def language_model_view(family: Family) -> LanguageModelView | None:
    """The tokenizer and logit read-out of a language-model family; None for a source without tokens.
    Memoised on the family."""
    if "lm_view" in family.memo:
        return family.memo["lm_view"]
    view = None
    if heldout_rows(family, 1) is not None:
        from sae_core.sources.evaluation import language_model

        lm, _, tokenizer, cfg = language_model(family.params["lm"])
        readout, note = _logit_readout(lm._module, cfg.site, family.d_in)
        view = LanguageModelView(Vocabulary(tokenizer), cfg.context, readout, note)
    family.memo["lm_view"] = view
    return view


def _logit_readout(model, site: str, d_in: int) -> tuple[torch.Tensor | None, str]:
    """[d_in, V] matrix mapping a direction at ``site`` to its direct effect on the logits of a GPT-2-style
    model: W_out (the MLP output projection, for ``mlp.hook_post``), then the final LayerNorm's
    centring and gain with its scale frozen, then the unembedding; with a note saying so."""
    from sae_core.sources.nnsight_sites import _SITE_RE

    transformer = getattr(model, "transformer", None)
    head = getattr(model, "lm_head", None)
    match = _SITE_RE.match(site)
    if transformer is None or head is None or match is None:
        return None, f"the logit effect is computed for GPT-2-style models at a named site; not for {site}"
    layer, kind = int(match.group(1)), match.group(2)
    with torch.no_grad():
        if kind == "mlp.hook_post":
            to_resid = transformer.h[layer].mlp.c_proj.weight.detach().float()  # Conv1D: [d_mlp, d_model]
            path = ("decoder row → MLP output projection → final LayerNorm (centring and gain; scale frozen) → "
                    "unembedding")
        elif d_in == head.weight.shape[1]:
            to_resid = torch.eye(d_in)
            path = "decoder row → final LayerNorm (centring and gain; scale frozen) → unembedding"
        else:
            return None, f"the site {site} does not write to the residual stream directly"
        centred = to_resid - to_resid.mean(1, keepdim=True)
        gain = getattr(transformer, "ln_f", None)
        if gain is not None:
            centred = centred * gain.weight.detach().float()
        return centred @ head.weight.detach().float().t(), f"direct path only, later layers ignored: {path}"


def document_tokens(family: Family, view: LanguageModelView, docs: Iterable[int]) -> None:
    """Fill ``view.documents`` for ``docs``: each document re-tokenised from a local corpus (exactly the
    ids the store was extracted from), else the ids the held-out store keeps (a row's first token,
    dropped at extraction, then shows as …)."""
    wanted = sorted(set(int(d) for d in docs) - set(view.documents))
    if not wanted:
        return
    from sae_core.sources.lm_source import LMSourceConfig, _looks_like_path, iter_documents

    cfg = LMSourceConfig(**family.params["lm"])
    if _looks_like_path(cfg.corpus):
        need = set(wanted)
        for index, text in enumerate(iter_documents(cfg.corpus, cfg.text_field, limit=cfg.max_documents)):
            if index in need:
                view.documents[index] = np.asarray(view.vocab.tokenizer(text)["input_ids"], np.int64)
                need.discard(index)
                if not need:
                    break
    missing = [d for d in wanted if d not in view.documents]
    if missing:
        store = family.source.heldout
        doc, pos, tok = store.column("doc"), store.column("pos"), store.column("token_id")
        for d in missing:
            sel = doc == d
            ids = np.full(int(pos[sel].max()) + 1, -1, np.int64)
            ids[pos[sel]] = tok[sel]
            view.documents[d] = ids


def prefetch_documents(family: Family, view: LanguageModelView, n_samples: int, rows: np.ndarray) -> None:
    """Tokens of the documents of every sample row in ``rows`` (any shape, -1 skipped), in one pass over
    the corpus (each :func:`contexts` call would otherwise read it again for its new documents)."""
    rows = np.asarray(rows).ravel()
    document_tokens(family, view, heldout_rows(family, n_samples)[1][rows[rows >= 0]])


def contexts(family: Family, view: LanguageModelView, n_samples: int, rows: Sequence[int],
             values: Sequence[float], width: int = CONTEXT) -> list[Context]:
    """Each sample row (index into the held-out sample, -1 skipped) in its document, ``width`` tokens
    either side."""
    token, doc, pos = heldout_rows(family, n_samples)
    keep = [(int(r), float(v)) for r, v in zip(rows, values, strict=True) if r >= 0]
    document_tokens(family, view, (doc[r] for r, _ in keep))
    out = []
    for r, v in keep:
        d, p = int(doc[r]), int(pos[r])
        ids = view.documents[d]
        lo, hi = max(0, p - width), min(len(ids), p + width + 1)
        window = [int(t) for t in ids[lo:hi]]
        if p < len(ids) and ids[p] != token[r]:  # the store is the truth about the firing token
            window[p - lo] = int(token[r])
        row_start = p - p % view.context
        out.append(Context(v, [view.vocab.text(t) for t in window], p - lo, max(0, row_start - lo), d, p))
    return out


# ------------------------------------------------------------------ cards
@dataclass
class Card:
    """Everything one card shows; :func:`render_card` draws it."""

    latent: int
    size: int
    label: str  # the class, e.g. "active · low MCS · moved"
    n_samples: int
    count: int
    detection_limit: float
    mcs: float
    against: int
    nearest: int
    hist: np.ndarray  # [N_BINS]
    max_act: float
    top: list[Context]
    intervals: list[tuple[str, int, list[Context]]]  # (interval label, activations in it, sampled contexts)
    raises: list[tuple[str, float]]  # tokens whose logits the feature raises most
    lowers: list[tuple[str, float]]
    top_tokens: list[tuple[str, float]]  # token text, share of activation mass
    notes: list[str]  # what the card cannot show and why
    rule: str = ""  # how the card was chosen


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def _tok(text: str) -> str:
    return html.escape(text)


def histogram_svg(hist: np.ndarray, max_act: float, width: int = 240, height: int = 60) -> str:
    """The activation histogram as a small inline SVG: one bar per bin over (0, max], heights
    proportional to counts, axis labels 0 and the maximum."""
    hist = np.asarray(hist, float)
    if hist.sum() <= 0:
        return '<span class="fc-none">no activations to draw</span>'
    w = width / len(hist)
    top = hist.max()
    bars = "".join(
        f'<rect x="{i * w:.1f}" y="{height - 14 - h:.1f}" width="{max(w - 1, 0.5):.1f}" height="{h:.1f}"/>'
        for i, h in enumerate((hist / top) * (height - 16)) if h > 0)
    return (f'<svg class="fc-hist" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="activation histogram">{bars}'
            f'<text x="0" y="{height - 2}">0</text>'
            f'<text x="{width}" y="{height - 2}" text-anchor="end">{html.escape(_fmt(max_act))}</text></svg>')


def context_html(ctx: Context) -> str:
    """One context: tokens before the model's row greyed, the firing token marked."""
    parts = []
    for i, t in enumerate(ctx.tokens):
        cls = "fc-fire" if i == ctx.focus else ("fc-unseen" if i < ctx.unseen else "fc-t")
        parts.append(f'<span class="{cls}">{_tok(t)}</span>')
    return f'<span class="fc-act">{_fmt(ctx.value)}</span><span class="fc-ctx">{"".join(parts)}</span>'


CARD_CSS = """
.fc-cards{display:flex;flex-direction:column;gap:1em;font-size:0.85em}
.fc-card{border:1px solid #ccc;border-radius:6px;padding:0.6em 0.8em;background:#fcfcfc}
.fc-card h4{margin:0 0 0.3em 0;font-size:1.05em}
.fc-meta{color:#333;margin:0.2em 0}
.fc-hist rect{fill:#4c78a8}.fc-hist text{font-size:9px;fill:#555}
.fc-ctx{font-family:monospace;white-space:pre-wrap}
.fc-t{color:#222}.fc-unseen{color:#aaa}
.fc-fire{background:#f58518;color:#000;font-weight:bold;border-radius:2px}
.fc-act{display:inline-block;min-width:6.5em;color:#555;font-family:monospace}
.fc-none{color:#777;font-style:italic}
.fc-list{margin:0.2em 0 0.4em 0;padding-left:0;list-style:none}
.fc-tokens code{margin-right:0.5em}
"""


def render_card(card: Card) -> str:
    """One card as an HTML fragment (every token and label escaped)."""
    if card.count:
        density = (f"fires on {card.count:,} of {card.n_samples:,} held-out activations "
                   f"(density {card.count / card.n_samples:.2e}; detection limit {card.detection_limit:.1e})")
    else:
        density = (f"never fires on {card.n_samples:,} held-out activations (density below "
                   f"{card.detection_limit:.1e} with 95% confidence)")
    out = [f'<div class="fc-card" data-latent="{card.latent}">',
           f"<h4>Feature {card.latent} of {card.size} · {html.escape(card.label)}</h4>",
           f'<p class="fc-meta">{density}. MCS against the {card.against}-feature dictionary {card.mcs:.3f}, '
           f"nearest feature there: {card.nearest}.</p>"]
    if card.rule:
        out.append(f'<p class="fc-meta fc-none">Chosen as {html.escape(card.rule)}.</p>')
    out.append(f'<div>{histogram_svg(card.hist, card.max_act)}</div>')
    if card.top_tokens:
        out.append('<p class="fc-meta fc-tokens">Fires most on: ' + "".join(
            f"<code>{_tok(t)}</code>{s:.0%} " for t, s in card.top_tokens) + "(share of activation mass)</p>")
    if card.raises:
        out.append('<p class="fc-meta fc-tokens">Raises the logits of: ' + "".join(
            f"<code>{_tok(t)}</code>" for t, _ in card.raises) + "; lowers: " + "".join(
            f"<code>{_tok(t)}</code>" for t, _ in card.lowers) + "</p>")
    if card.top:
        out.append(f"<div>Top {len(card.top)} activations:</div><ul class=\"fc-list\">"
                   + "".join(f"<li>{context_html(c)}</li>" for c in card.top) + "</ul>")
    for label, n_in, ctxs in card.intervals:
        if ctxs:
            out.append(f"<div>{html.escape(label)} ({n_in:,} activations), a seeded sample:</div><ul class=\"fc-list\">"
                       + "".join(f"<li>{context_html(c)}</li>" for c in ctxs) + "</ul>")
    for note in card.notes:
        out.append(f'<p class="fc-meta fc-none">{html.escape(note)}</p>')
    out.append("</div>")
    return "\n".join(out)


def render_cards(cards: Sequence[Card], legend: str = "") -> str:
    """Cards with their stylesheet and a legend, as one HTML fragment."""
    head = f"<style>{CARD_CSS}</style>"
    lead = f'<p class="fc-meta">{html.escape(legend)}</p>' if legend else ""
    return head + '<div class="fc-cards">' + lead + "\n".join(render_card(c) for c in cards) + "</div>"


# ------------------------------------------------------------------ choosing cards
N_HIGH_CARDS = 3  # high-MCS features, a seeded sample
LOW_CARD_CAP = 8  # active low-MCS features: all of them up to this cap (a seeded sample beyond)
N_ULTRALOW_CARDS = 2  # ultralow features, a seeded sample


@dataclass
class Choice:
    latent: int
    label: str
    rule: str


def choose_cards(classes: LatentClasses, mcs: np.ndarray, cutoff: float, seed: int = 0,
                 n_high: int = N_HIGH_CARDS, low_cap: int = LOW_CARD_CAP, n_ultralow: int = N_ULTRALOW_CARDS
                 ) -> list[Choice]:
    """Which latents get a card, by a stated rule: ``n_high`` active high-MCS features (MCS at or above the
    cutoff) drawn at random, every active low-MCS feature up to ``low_cap`` (drawn at random beyond it), and
    ``n_ultralow`` ultralow features drawn at random; each draw from ``numpy.random.default_rng([seed, 21,
    class])``, listed in index order within its class."""
    mcs = np.asarray(mcs)
    low = mcs < cutoff
    moved = classes.unmoved

    def movement(i: int) -> str:
        return "" if moved is None else (" · unmoved" if moved[i] else " · moved")

    pools = [("high MCS", classes.active & ~low, n_high, f"one of {n_high} active high-MCS features drawn at random"),
             ("active, low MCS", classes.active & low, low_cap,
              f"every active low-MCS feature up to {low_cap} (drawn at random beyond)"),
             ("ultralow", classes.ultralow, n_ultralow, f"one of {n_ultralow} ultralow features drawn at random")]
    out = []
    for c, (name, mask, k, rule) in enumerate(pools):
        idx = np.flatnonzero(mask)
        if len(idx) > k:
            idx = np.sort(np.random.default_rng([seed, 21, c]).choice(idx, size=k, replace=False))
        for i in idx:
            label = f"{name} ({'low' if low[i] else 'high'} MCS)" if name == "ultralow" else name
            out.append(Choice(int(i), label + movement(int(i)), rule))
    return out


def selection_rule(n_high: int = N_HIGH_CARDS, low_cap: int = LOW_CARD_CAP, n_ultralow: int = N_ULTRALOW_CARDS,
                   seed: int = 0) -> str:
    return (f"Cards are chosen by a fixed rule, never by hand: {n_high} active high-MCS features drawn at random, "
            f"every active low-MCS feature up to {low_cap} (drawn at random beyond), and {n_ultralow} ultralow "
            f"features drawn at random (numpy's generator seeded with [{seed}, 21, class]).")


def build_card(family: Family, stats: FeatureStats, latent: int, label: str, mcs: float, against: int, nearest: int,
               rule: str = "") -> Card:
    """The :class:`Card` of one latent from its family's statistics."""
    view = language_model_view(family)
    notes: list[str] = []
    top, intervals, raises, lowers, top_tokens = [], [], [], [], []
    if view is None:
        notes.append("This source has no tokens (synthetic activations), so the card shows no contexts, "
                     "token shares or logit effects.")
    else:
        top = contexts(family, view, stats.n_samples, stats.top_rows[latent], stats.top_values[latent])
        for g, (lo, hi) in enumerate(INTERVALS):
            label_g = f"Activations in ({lo:.2f}, {hi:.2f}] of the maximum"
            intervals.append((label_g, int(stats.interval_counts[latent, g]),
                              contexts(family, view, stats.n_samples, stats.interval_rows[latent, g],
                                       stats.interval_values[latent, g])))
        if stats.token_mass is not None and stats.counts[latent]:
            top_tokens = [(view.vocab.label(t), s) for t, s in stats.token_mass.top(latent, TOP_K_TOKENS)]
        if view.readout is not None:
            effect = family.features(stats.size)[latent].float() @ view.readout
            up, down = torch.topk(effect, N_LOGITS), torch.topk(-effect, N_LOGITS)
            raises = [(view.vocab.label(int(t)), float(v)) for v, t in zip(up.values, up.indices, strict=True)]
            lowers = [(view.vocab.label(int(t)), -float(v)) for v, t in zip(down.values, down.indices, strict=True)]
        else:
            notes.append(f"No logit effect: {view.readout_note}.")
        if not stats.counts[latent]:
            notes.append("It never fires on the held-out sample, so there are no contexts to show.")
    return Card(latent, stats.size, label, stats.n_samples, int(stats.counts[latent]),
                detection_limit(stats.n_samples), float(mcs), against, int(nearest), stats.hist[latent],
                float(stats.max_act[latent]), top, intervals, raises, lowers, top_tokens, notes, rule)


@dataclass
class CardSet:
    """The chosen cards of one dictionary and how they were chosen."""

    size: int
    against: int
    cards: list[Card]
    rule: str
    n_per_class: dict[str, int]  # cards per class
    has_tokens: bool

    def html(self) -> str:
        legend = self.rule + (" In each context the firing token is highlighted; grey tokens precede the row "
                              "the model read, so it did not see them. Logit effects are the direct path "
                              "(decoder row → MLP output projection → final LayerNorm with its scale frozen → "
                              "unembedding); later layers are ignored." if self.has_tokens else
                              " The synthetic source has no tokens: the cards show density, the activation "
                              "histogram and MCS only.")
        return render_cards(self.cards, legend)


def feature_cards(family: Family, classes: LatentClasses, against: int, cutoff: float, seed: int = 0) -> CardSet:
    """Cards of dictionary ``classes.size`` against ``against``, chosen by :func:`choose_cards`."""
    size = classes.size
    res = max_cosine_similarity(family.features(size), family.features(against))
    mcs, nearest = res.values.numpy(), res.indices.numpy()
    stats = feature_stats(family, size, classes.n_samples, seed)
    chosen = choose_cards(classes, mcs, cutoff, seed)
    view = language_model_view(family)
    if view is not None:
        picked = [c.latent for c in chosen]
        prefetch_documents(family, view, stats.n_samples,
                           np.concatenate([stats.top_rows[picked].ravel(), stats.interval_rows[picked].ravel()]))
    cards = [build_card(family, stats, c.latent, c.label, mcs[c.latent], against, nearest[c.latent], c.rule)
             for c in chosen]
    per_class: dict[str, int] = {}
    for c in chosen:
        per_class[c.rule] = per_class.get(c.rule, 0) + 1
    return CardSet(size, against, cards, selection_rule(seed=seed), per_class, language_model_view(family) is not None)


# ------------------------------------------------------------------ the token-level proxy
@dataclass
class GroupSummary:
    name: str
    n: int  # features with a proxy value
    mean: float | None
    ci: tuple[float, float] | None  # percentile bootstrap interval of the mean (None: fewer than 2)


@dataclass
class ProxyComparison:
    """The proxy (share of activation mass on the top-k token ids) of active low-MCS against active
    high-MCS features of one dictionary."""

    size: int
    against: int
    k: int
    min_firings: int
    low: GroupSummary
    high: GroupSummary
    diff: float | None  # mean(low) - mean(high)
    diff_ci: tuple[float, float] | None
    cliffs_delta: float | None  # P(low > high) - P(low < high), Cliff 1993
    excluded: int  # active features left out for fewer than min_firings firings
    has_tokens: bool = True
    entropy_low: float | None = None  # mean entropy (bits) of the firing-token distribution
    entropy_high: float | None = None
    matched: ProxyComparison | None = None  # the same comparison at an equal number of firings per feature


def cliffs_delta(a: np.ndarray, b: np.ndarray) -> float:
    """Cliff's delta, P(A > B) − P(A < B) over all pairs (Cliff 1993): −1 … 1, 0 when neither tends higher."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if not a.size or not b.size:
        raise ValueError("Cliff's delta needs two non-empty samples")
    diff = a[:, None] - b[None, :]
    return float(((diff > 0).sum() - (diff < 0).sum()) / diff.size)


def bootstrap_mean_ci(x: np.ndarray, n_boot: int = 2000, level: float = 0.95, seed: int = 0
                      ) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean (Efron & Tibshirani 1993); None with fewer than 2 values."""
    x = np.asarray(x, float)
    if x.size < 2:
        return None
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(1)
    a = (1 - level) / 2
    return float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def bootstrap_diff_ci(a: np.ndarray, b: np.ndarray, n_boot: int = 2000, level: float = 0.95, seed: int = 0
                      ) -> tuple[float, float] | None:
    """Percentile bootstrap interval of mean(a) − mean(b), each sample resampled on its own; None unless
    both have 2 or more values."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.size < 2 or b.size < 2:
        return None
    rng = np.random.default_rng(seed)
    d = (a[rng.integers(0, a.size, size=(n_boot, a.size))].mean(1)
         - b[rng.integers(0, b.size, size=(n_boot, b.size))].mean(1))
    q = (1 - level) / 2
    return float(np.quantile(d, q)), float(np.quantile(d, 1 - q))


def compare_proxy(share: np.ndarray, entropy: np.ndarray | None, counts: np.ndarray, active: np.ndarray,
                  low: np.ndarray, size: int, against: int, k: int = TOP_K_TOKENS, min_firings: int = MIN_FIRINGS,
                  seed: int = 0, matched: np.ndarray | None = None) -> ProxyComparison:
    """Compare the proxy of active low-MCS and active high-MCS features that fired at least ``min_firings``
    times: each group's mean with a bootstrap interval, the difference of means with its interval, and
    Cliff's delta; with ``matched`` (the proxy at an equal number of firings,
    :meth:`TokenMass.matched_top_share`) the same comparison of it."""
    share, counts, active, low = (np.asarray(v) for v in (share, counts, active, low))
    enough = active & (counts >= min_firings)
    groups = {}
    for name, mask in (("low", enough & low), ("high", enough & ~low)):
        vals = share[mask]
        groups[name] = (vals, GroupSummary(name, int(vals.size), float(vals.mean()) if vals.size else None,
                                           bootstrap_mean_ci(vals, seed=seed)))
    (a, ga), (b, gb) = groups["low"], groups["high"]
    both = a.size and b.size
    ent = (None, None)
    if entropy is not None:
        entropy = np.asarray(entropy)
        ent = tuple(float(entropy[enough & m].mean()) if (enough & m).any() else None for m in (low, ~low))
    same_n = None if matched is None else compare_proxy(matched, None, counts, active, low, size, against, k,
                                                        min_firings, seed)
    return ProxyComparison(size, against, k, min_firings, ga, gb, float(a.mean() - b.mean()) if both else None,
                           bootstrap_diff_ci(a, b, seed=seed), cliffs_delta(a, b) if both else None,
                           int((active & ~enough).sum()), True, *ent, same_n)


def proxy_comparison(family: Family, classes: LatentClasses, against: int, cutoff: float, seed: int = 0
                     ) -> ProxyComparison:
    """:func:`compare_proxy` on dictionary ``classes.size`` against ``against`` (MCS below ``cutoff`` is low)."""
    size = classes.size
    mcs = max_cosine_similarity(family.features(size), family.features(against)).values.numpy()
    stats = feature_stats(family, size, classes.n_samples, seed)
    if stats.token_mass is None:
        empty = GroupSummary("low", 0, None, None)
        return ProxyComparison(size, against, TOP_K_TOKENS, MIN_FIRINGS, empty, GroupSummary("high", 0, None, None),
                               None, None, None, 0, has_tokens=False)
    mass = stats.token_mass
    return compare_proxy(mass.top_share(), mass.entropy(), stats.counts, classes.active, mcs < cutoff, size, against,
                         seed=seed, matched=mass.matched_top_share(MIN_FIRINGS, seed=seed))


def _interval(g: GroupSummary) -> str:
    return f" (95% interval {g.ci[0]:.0%}–{g.ci[1]:.0%})" if g.ci is not None else ""


def _group_text(g: GroupSummary, what: str) -> str:
    """``the 33 active low-MCS features put 89% of their mass there on average (95% interval …)``."""
    if g.n == 1:
        return f"the one {what} feature puts {g.mean:.0%} of its mass there"
    return f"the {g.n} {what} features put {g.mean:.0%} of their mass there on average{_interval(g)}"


def _against_text(g: GroupSummary, what: str) -> str:
    """``46% for the 718 high-MCS features (95% interval …)``."""
    if g.n == 1:
        return f"{g.mean:.0%} for the one {what} feature"
    return f"{g.mean:.0%} for the {g.n} {what} features{_interval(g)}"


def proxy_sentence(c: ProxyComparison) -> str:
    """What the active low-MCS features fire on compared with high-MCS ones, in words, with the numbers."""
    if not c.has_tokens:
        return ("This build's source has no tokens (synthetic activations), so what its features fire on cannot "
                "be read as text and no token-level comparison is made; a language-model build makes it.")
    base = (f"Token specificity of the {c.size}-feature dictionary, as the share of a feature's activation mass "
            f"on its {c.k} most-activating tokens (active features with at least {c.min_firings} firings on the "
            "held-out sample")
    base += f"; {c.excluded} active features with fewer are left out): " if c.excluded else "): "
    if c.low.n == 0 and c.high.n == 0:
        return base + "no active feature fired often enough to compare."
    if c.low.n == 0:
        return base + (_group_text(c.high, "high-MCS") + "; no active low-MCS feature fired often enough to "
                       "compare them with.")
    if c.high.n == 0:
        return base + (_group_text(c.low, "active low-MCS") + "; no high-MCS feature fired often enough to "
                       "compare them with.")
    text = base + _group_text(c.low, "active low-MCS") + ", against " + _against_text(c.high, "high-MCS") + ". "
    delta = c.cliffs_delta if c.cliffs_delta is not None else 0.0
    if c.diff_ci is None:
        verdict = (f"With a single feature in a group there is no interval for the difference "
                   f"({c.diff:+.0%}, Cliff's delta {delta:+.2f}), so no direction is claimed.")
    elif c.diff_ci[0] > 0:
        verdict = (f"Active low-MCS features are more token-specific: the difference is {c.diff:+.0%} "
                   f"(95% interval {c.diff_ci[0]:+.0%} to {c.diff_ci[1]:+.0%}), Cliff's delta {delta:+.2f}.")
    elif c.diff_ci[1] < 0:
        verdict = (f"Active low-MCS features are less token-specific: the difference is {c.diff:+.0%} "
                   f"(95% interval {c.diff_ci[0]:+.0%} to {c.diff_ci[1]:+.0%}), Cliff's delta {delta:+.2f}.")
    else:
        verdict = (f"The interval of the difference, {c.diff_ci[0]:+.0%} to {c.diff_ci[1]:+.0%} "
                   f"({c.diff:+.0%}; Cliff's delta {delta:+.2f}), includes no difference: the two groups are "
                   "about equally token-specific at this sample size.")
    if c.entropy_low is not None and c.entropy_high is not None:
        verdict += (f" The entropy of the tokens they fire on is {c.entropy_low:.2f} bits for the low-MCS and "
                    f"{c.entropy_high:.2f} bits for the high-MCS features on average.")
    return text + verdict + _matched_text(c.matched)


def _matched_text(m: ProxyComparison | None) -> str:
    """The comparison repeated at an equal number of firings per feature, as one sentence (empty without it)."""
    if m is None or m.diff is None:
        return ""
    interval = (f" (95% interval {m.diff_ci[0]:+.0%} to {m.diff_ci[1]:+.0%})" if m.diff_ci is not None else
                " (no interval: a single feature in a group)")
    if m.diff_ci is not None and m.diff_ci[0] > 0:
        kind = "the low-MCS features stay more token-specific"
    elif m.diff_ci is not None and m.diff_ci[1] < 0:
        kind = "the low-MCS features are less token-specific"
    elif m.diff_ci is not None:
        kind = "the difference is within chance"
    else:
        kind = "no direction is claimed"
    return (f" A feature with few firings puts them on few tokens by chance alone, so the share is also taken on "
            f"{m.min_firings} firings drawn at random from each feature: {m.low.mean:.0%} for the low-MCS and "
            f"{m.high.mean:.0%} for the high-MCS features, a difference of {m.diff:+.0%}{interval}, Cliff's delta "
            f"{m.cliffs_delta:+.2f}; {kind}.")


# ------------------------------------------------------------------ top tokens of tree nodes (chapter 7)
def node_top_tokens(family: Family, nodes: Iterable[tuple[int, int]], n_samples: int, k: int = 3,
                    seed: int = 0) -> dict[tuple[int, int], list[tuple[str, float]]]:
    """For each (size, latent) node: its ``k`` top token ids by activation mass on the held-out sample, as
    (text, share of mass); empty for a source without tokens or a latent that never fires."""
    view = language_model_view(family)
    out: dict[tuple[int, int], list[tuple[str, float]]] = {}
    for size, latent in nodes:
        if view is None:
            out[(size, latent)] = []
            continue
        mass = feature_stats(family, size, n_samples, seed).token_mass
        out[(size, latent)] = [(view.vocab.label(t), s) for t, s in mass.top(latent, k)] if mass is not None else []
    return out


def with_top_tokens(lines: Sequence[str], family: Family, n_samples: int, k: int = 3) -> list[str]:
    """Lines of :func:`sae_core.report.splitting.describe_subtree` (``size:latent ...``) with each node's top
    tokens appended, e.g. ``1024:17 — ' the' 41%, ' a' 12%``; unchanged without tokens."""
    import re

    found = [(i, re.search(r"(\d+):(\d+)", line)) for i, line in enumerate(lines)]
    nodes = {(int(m.group(1)), int(m.group(2))) for _, m in found if m}
    tops = node_top_tokens(family, sorted(nodes), n_samples, k)
    out = list(lines)
    for i, m in found:
        if m and tops.get((int(m.group(1)), int(m.group(2)))):
            out[i] += " — " + ", ".join(f"'{t}' {s:.0%}" for t, s in tops[(int(m.group(1)), int(m.group(2)))])
    return out


# ------------------------------------------------------------------ where the browser goes
BOOK_ROOT_ENV = "SAE_BOOK_ROOT"  # set by ``python -m sae_core.report`` to the book being built
BROWSER_FOLDER = Path("book") / "_static" / "browser"  # copied into the built book by html_static_path
BROWSER_HREF = "../../_static/browser"  # from a chapter page (book/executed/<chapter>.html)


def browser_folder() -> Path:
    """Where chapter 5 writes the browser pages: ``<book root>/book/_static/browser`` when the book is being
    built (``$SAE_BOOK_ROOT``), else ``<cache>/browser`` (a notebook run outside a build)."""
    root = os.environ.get(BOOK_ROOT_ENV)
    return Path(root) / BROWSER_FOLDER if root else cache_root() / "browser"
