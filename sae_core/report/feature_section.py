"""Chapter 5's section "What the features fire on": feature cards, the token-level proxy by class, and
the feature browser pages, from the chapter's one classification of latents.

The notebook makes one call, :func:`feature_section`, and shows what it returns: the cards (HTML),
the proxy's sentence (glued) and the links to the browser pages written into the book.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

from sae_core import stats
from sae_core.report import browser, cards, latents
from sae_core.report.pipeline import Family


@dataclass
class FeatureSection:
    cards: cards.CardSet | None  # None: no source with activations
    card_source: str  # which source the cards are of
    proxy: cards.ProxyComparison | None
    pages: list[tuple[str, browser.BrowserPage]]  # (source label, page)

    def cards_html(self) -> str:
        if self.cards is None:
            return "<p>These dictionaries were read without activations, so there are no feature cards.</p>"
        return self.cards.html()

    def proxy_sentence(self) -> str:
        if self.proxy is None:
            return "Without activations there is no token-level comparison."
        return cards.proxy_sentence(self.proxy)

    def browser_sentence(self) -> str:
        """Which pages the browser has and their sizes, as a sentence (plain text, for glue)."""
        if not self.pages:
            return "Without activations there is no feature browser."
        parts = [f"the {page.size}-feature dictionary of the {label} ({page.n_bytes / 1e3:,.0f} kB)"
                 for label, page in self.pages]
        return ("The feature browser lists every latent, with its class, MCS, density and (for a language model) "
                "top contexts, and filters them in the page (by class, by MCS part, by token text or index; a small "
                "script, no server): one page for " + " and one for ".join(parts) + ".")

    def links_html(self) -> str:
        """Links to the browser pages, relative to a chapter page of the built book."""
        items = "".join(f'<li><a href="{html.escape(page.href)}">Feature browser: the {page.size}-feature '
                        f"dictionary of the {html.escape(label)}</a> ({page.n_bytes:,} bytes)</li>"
                        for label, page in self.pages)
        return f"<ul>{items}</ul>" if items else ""


def _source_label(family: Family) -> str:
    return {"lm": "language model", "synthetic": "synthetic source"}.get(family.params["source"],
                                                                           family.params["source"])


def feature_section(sources: list[Family], small: int, large: int, null_q: float, n_heldout: int, seed: int = 0,
                    folder: Path | None = None) -> FeatureSection:
    """Cards of the first source with tokens (else the first with activations) for ``small`` against
    ``large``, the proxy comparison on it, and a browser page of ``small`` for every source with
    activations (earlier pages in the folder are removed, so a build holds only its own)."""
    usable = [f for f in sources if f.has_activations and small in f.saes]
    if not usable:
        return FeatureSection(None, "", None, [])
    folder = folder or cards.browser_folder()
    if folder.is_dir():
        for stale in folder.glob("*.html"):
            stale.unlink()

    def pair(fam: Family) -> tuple[latents.LatentClasses, int, float]:
        against = large if large in fam.saes else fam.sizes[-1]
        threshold = latents.density_threshold(fam, n_heldout).value
        return latents.classify(fam, small, n_heldout, threshold), against, stats.null_cutoff(fam.d_in, against, null_q)

    lead = next((f for f in usable if cards.heldout_rows(f, 1) is not None), usable[0])
    classes, against, cutoff = pair(lead)
    card_set = cards.feature_cards(lead, classes, against, cutoff, seed)
    proxy = cards.proxy_comparison(lead, classes, against, cutoff, seed)
    pages = []
    for fam in usable:
        c, a, cut = pair(fam)
        name = f"{fam.params['source']}_{small}"
        pages.append((_source_label(fam), browser.write_browser(fam, c, a, cut, name, folder, seed)))
    return FeatureSection(card_set, _source_label(lead), proxy, pages)
