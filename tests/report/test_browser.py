"""The feature browser in a real browser: headless Chromium opens the page as a file (no server), runs
its script, and the filter narrows the list.

Skips only when no Chromium binary exists (Debian: ``apt-get install chromium``).
"""

import re
import shutil
import subprocess

import pytest

from sae_core.report import browser, cards

CHROMIUM = next((path for name in ("chromium", "chromium-browser", "google-chrome")
                 if (path := shutil.which(name))), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH to open the page in a "
                                                         "real browser (apt-get install chromium)")


def _row(i: int, firing: str, low: bool, word: str) -> browser.BrowserRow:
    ctx = cards.Context(1.5, ["a", " ", word, " ", "<sat>"], 2)
    return browser.BrowserRow(i, firing, low, True, 0.3 if low else 0.9, i + 1, 0.01, 10, [(word, 0.5)], [ctx])


def _dom(tmp_path, url: str) -> str:
    out = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path}/chr",
                          "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def _shown(dom: str) -> tuple[int, int]:
    """(rows the counter says are shown, rows not hidden) in a dumped DOM."""
    counter = int(re.search(r'<span id="shown">(\d+)</span>', dom).group(1))
    rows = re.findall(r"<tr data-latent=[^>]*>", dom)
    return counter, sum("hidden" not in r for r in rows)


def test_page_loads_from_a_file_and_the_filter_narrows_the_list(tmp_path):
    rows = [_row(0, "active", True, "cat"), _row(1, "active", False, "dog"), _row(2, "ultralow", True, "cat"),
            _row(3, "never fires", True, "emu")]
    path = tmp_path / "page.html"
    path.write_text(browser.render_browser(rows, "test <page>", "four latents"), encoding="utf-8")
    url = path.as_uri()
    dom = _dom(tmp_path, url)
    assert "test &lt;page&gt;" in dom and "<mark>cat</mark>" in dom and "&lt;sat&gt;" in dom
    assert _shown(dom) == (4, 4)  # the script ran: every row shown, the counter filled in
    assert _shown(_dom(tmp_path, url + "#text=cat")) == (2, 2)
    assert _shown(_dom(tmp_path, url + "#class=active&mcs=low")) == (1, 1)
    assert _shown(_dom(tmp_path, url + "#text=3")) == (1, 1)  # a latent's index
