"""A feature browser: one self-contained HTML page per dictionary, every latent in one table.

Each row is one latent: its firing class on the held-out sample (never fires / ultralow / active,
:mod:`sae_core.report.latents`), low or high MCS against the larger dictionary and the nearest
feature there, its firing density, the tokens it fires on most (share of activation mass) and its
top ``N_CONTEXTS`` activating contexts (``WIDTH`` tokens either side, the firing token marked), the
rows of a Neuronpedia or SAEDashboard feature list in one file.

The page is plain HTML with one small script that hides the rows a reader filters out (by class, by
MCS part, by text in the tokens, or a number: the latent's index); a link can set the filters in its fragment,
``lm_1024.html#class=active&mcs=low&text=the``. It needs no server and no network: opened
as a file it works as it does inside the built book, where chapter 5 writes it into
``book/_static/browser/`` (Sphinx's ``html_static_path`` copies it into the HTML).
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sae_core.report import cards
from sae_core.report.latents import LatentClasses
from sae_core.report.pipeline import Family
from sae_core.similarity import max_cosine_similarity

N_CONTEXTS = 3  # top contexts per latent
WIDTH = 6  # tokens either side of the firing token
N_TOKENS = 3  # top tokens per latent


@dataclass
class BrowserRow:
    latent: int
    firing: str  # "never fires", "ultralow", "active"
    low: bool  # MCS below the cutoff
    moved: bool | None  # None: no training record
    mcs: float
    nearest: int
    density: float
    count: int
    tokens: list[tuple[str, float]]  # top tokens and their share of activation mass
    contexts: list[cards.Context]


def browser_rows(family: Family, classes: LatentClasses, against: int, cutoff: float, seed: int = 0
                 ) -> list[BrowserRow]:
    """One :class:`BrowserRow` per latent of ``classes.size`` against dictionary ``against``."""
    size = classes.size
    res = max_cosine_similarity(family.features(size), family.features(against))
    mcs, nearest = res.values.numpy(), res.indices.numpy()
    view = cards.language_model_view(family)
    # without tokens a row needs only the classes and MCS: no pass over the held-out sample
    stats = cards.feature_stats(family, size, classes.n_samples, seed) if view is not None else None
    firing = np.where(classes.active, "active", np.where(classes.ultralow, "ultralow", "never fires"))
    moved = classes.unmoved
    if stats is not None:
        cards.prefetch_documents(family, view, stats.n_samples, stats.top_rows[:, :N_CONTEXTS])
    rows = []
    for i in range(size):
        tokens, ctxs = [], []
        if stats is not None and stats.counts[i]:
            tokens = [(view.vocab.label(t), s) for t, s in stats.token_mass.top(i, N_TOKENS)]
            ctxs = cards.contexts(family, view, stats.n_samples, stats.top_rows[i][:N_CONTEXTS],
                                  stats.top_values[i][:N_CONTEXTS], width=WIDTH)
        rows.append(BrowserRow(i, str(firing[i]), bool(mcs[i] < cutoff), None if moved is None else not moved[i],
                               float(mcs[i]), int(nearest[i]), float(classes.density[i]), int(classes.counts[i]),
                               tokens, ctxs))
    return rows


PAGE_CSS = """
body{font-family:system-ui,sans-serif;margin:1em;font-size:14px;color:#222}
h1{font-size:1.3em}
#controls{position:sticky;top:0;background:#fff;padding:0.5em 0;border-bottom:1px solid #ccc}
#controls label{margin-right:1em}
table{border-collapse:collapse;width:100%}
th,td{border-bottom:1px solid #eee;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f4f4f4}
td.num{font-family:monospace;text-align:right;white-space:nowrap}
.ctx{font-family:monospace;white-space:pre-wrap;display:block}
mark{background:#f58518;color:#000;font-weight:bold}
.tok{font-family:monospace;margin-right:0.6em}
.low{color:#b2182b}.high{color:#2166ac}
"""

PAGE_SCRIPT = """
(function(){
  var rows = Array.prototype.slice.call(document.querySelectorAll('#latents tbody tr'));
  var cls = document.getElementById('f-class'), part = document.getElementById('f-mcs');
  var text = document.getElementById('f-text'), shown = document.getElementById('shown');
  function apply(){
    var c = cls.value, p = part.value, q = text.value.trim().toLowerCase(), n = 0;
    rows.forEach(function(r){
      var ok = (!c || r.dataset.firing === c) && (!p || r.dataset.mcs === p) &&
               (!q || (/^[0-9]+$/.test(q) ? r.dataset.latent === q : r.textContent.toLowerCase().indexOf(q) >= 0));
      r.hidden = !ok; if (ok) n++;
    });
    shown.textContent = n;
  }
  [cls, part, text].forEach(function(el){ el.addEventListener('input', apply); el.addEventListener('change', apply); });
  var given = new URLSearchParams(location.hash.slice(1));  // e.g. #class=active&mcs=low&text=the
  if (given.has('class')) cls.value = given.get('class');
  if (given.has('mcs')) part.value = given.get('mcs');
  if (given.has('text')) text.value = given.get('text');
  apply();
})();
"""


def _context_html(ctx: cards.Context) -> str:
    before = html.escape("".join(ctx.tokens[:ctx.focus]))
    after = html.escape("".join(ctx.tokens[ctx.focus + 1:]))
    return (f'<span class="ctx">{ctx.value:.3g}: {before}<mark>{html.escape(ctx.tokens[ctx.focus])}</mark>'
            f"{after}</span>")


def render_browser(rows: list[BrowserRow], title: str, description: str) -> str:
    """The page: a header saying what it lists, the filter controls, one table row per latent."""
    body = []
    for r in rows:
        part = "low" if r.low else "high"
        moved = "" if r.moved is None else (" · moved" if r.moved else " · unmoved")
        tokens = "".join(f'<span class="tok">{html.escape(t)} {s:.0%}</span>' for t, s in r.tokens)
        ctxs = "".join(_context_html(c) for c in r.contexts)
        body.append(f'<tr data-latent="{r.latent}" data-firing="{r.firing}" data-mcs="{part}">'
                    f'<td class="num">{r.latent}</td><td>{html.escape(r.firing)}{moved}</td>'
                    f'<td class="num {part}">{r.mcs:.3f}</td><td class="num">{r.nearest}</td>'
                    f'<td class="num">{r.density:.2e}</td><td>{tokens}</td><td>{ctxs}</td></tr>')
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{PAGE_CSS}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{html.escape(description)}</p>
<div id="controls">
<label>class <select id="f-class"><option value="">all</option><option value="active">active</option>
<option value="ultralow">ultralow</option><option value="never fires">never fires</option></select></label>
<label>MCS <select id="f-mcs"><option value="">all</option><option value="low">low</option>
<option value="high">high</option></select></label>
<label>text or latent <input id="f-text" type="search" placeholder="e.g. the, or 17"></label>
<span><span id="shown">{len(rows)}</span> of {len(rows)} latents shown</span>
</div>
<table id="latents"><thead><tr><th>latent</th><th>class</th><th>MCS</th><th>nearest</th><th>density</th>
<th>fires most on</th><th>top contexts</th></tr></thead>
<tbody>
{chr(10).join(body)}
</tbody></table>
<script>{PAGE_SCRIPT}</script>
</body></html>
"""


@dataclass
class BrowserPage:
    path: Path
    href: str  # link from a chapter page
    size: int  # dictionary size
    n_bytes: int


def write_browser(family: Family, classes: LatentClasses, against: int, cutoff: float, name: str,
                  folder: Path | None = None, seed: int = 0) -> BrowserPage:
    """Write the browser page of dictionary ``classes.size`` as ``<folder>/<name>.html`` (``folder``: the
    book's, :func:`sae_core.report.cards.browser_folder`); returns where it is and its size in bytes."""
    folder = folder or cards.browser_folder()
    folder.mkdir(parents=True, exist_ok=True)
    rows = browser_rows(family, classes, against, cutoff, seed)
    n_low = sum(r.low for r in rows)
    has_tokens = any(r.contexts for r in rows)
    description = (f"Every latent of the {classes.size}-feature dictionary: its firing class on "
                   f"{classes.n_samples:,} held-out activations (detection limit {classes.detection_limit:.1e}; "
                   f"ultralow below density {classes.threshold:.1e}), its MCS against the {against}-feature "
                   f"dictionary ({n_low} below the null cutoff {cutoff:.3f}: low) and nearest feature there, and "
                   + ("the tokens it fires on most with its top contexts (the firing token marked)."
                      if has_tokens else "no contexts: this source has no tokens."))
    page = render_browser(rows, f"Feature browser: {classes.size} latents against {against}", description)
    path = folder / f"{name}.html"
    path.write_text(page, encoding="utf-8")
    return BrowserPage(path, f"{cards.BROWSER_HREF}/{name}.html", classes.size, path.stat().st_size)
