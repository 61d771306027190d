"""Build the whole book for the smoke profile and check what a reader would see.

The executed notebooks stay in .cache/smoke-book/book/executed for the nbval pass
that `make test` runs next.
"""

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from sae_core.report import build as report

ROOT = report.REPO_ROOT / ".cache" / "smoke-book"
FIGURES = {  # glued figures per chapter
    "00_abstract": 1, "01_introduction": 1, "02_methods": 2, "03_bimodality": 4, "04_random_nulls": 3,
    "05_low_mode": 4, "05b_architectures": 2,
    "06_cross_dictionary": 2, "07_feature_splitting": 2, "08_conclusions": 0, "09_appendix_geometry": 1,
}


@pytest.fixture(scope="session")
def smoke_book() -> Path:
    shutil.rmtree(ROOT / "book", ignore_errors=True)
    report.main(["--profile", "smoke", "--root", str(ROOT)])
    return ROOT / "book" / "_build" / "html"


def test_every_chapter_page_exists_with_its_figures(smoke_book):
    assert set(FIGURES) == set(report.CHAPTERS)
    for chapter, n_figures in FIGURES.items():
        page = smoke_book / "book" / "executed" / f"{chapter}.html"
        assert page.is_file(), f"missing page {page}"
        html = page.read_text()
        images = re.findall(r'<img[^>]+src="([^"]+\.png)"', html)
        assert len(images) >= n_figures, f"{chapter}: {len(images)} figures, expected {n_figures}"
        for src in images:
            assert (page.parent / src).resolve().is_file(), f"{chapter}: image {src} is missing"
        assert "<Figure size" not in html, f"{chapter}: a figure was pasted as text, not as an image"
        assert "|---|" not in html and "|—|" not in html, f"{chapter}: a Markdown table was not rendered"
        assert "Traceback" not in html and "output traceback" not in html, f"{chapter}: error output on the page"
    with_tables = ("01_introduction", "03_bimodality", "04_random_nulls", "05_low_mode", "05b_architectures",
                   "06_cross_dictionary",
                   "07_feature_splitting")
    for chapter in with_tables:
        assert "<table" in (smoke_book / "book" / "executed" / f"{chapter}.html").read_text(), chapter
    assert (smoke_book / "book" / "references.html").is_file()
    assert "Sharkey" in (smoke_book / "book" / "references.html").read_text()


def test_no_error_outputs_no_unresolved_glue_and_no_nan(smoke_book):
    assert_clean_book(ROOT, smoke_book)


def test_prose_numbers_come_from_the_run(smoke_book):
    """A glued number in the prose equals the value the notebook computed."""
    nb = json.loads((ROOT / "book" / "executed" / "03_bimodality.ipynb").read_text())
    glued = {}
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            meta = out.get("metadata", {}).get("scrapbook", {})
            if meta:
                text = out["data"][meta["mime_prefix"] + "text/plain"]
                glued[meta["name"]] = "".join(text) if isinstance(text, list) else text
    frac = float(glued["frac_high"])
    page = (smoke_book / "book" / "executed" / "03_bimodality.html").read_text()
    assert f"{frac:.1%}" in page


def assert_clean_book(root: Path, html: Path) -> None:
    """Every chapter executed without an error output, rendered with no unresolved glue and no
    "nan" in its text."""
    for chapter in report.CHAPTERS:
        nb = json.loads((root / "book" / "executed" / f"{chapter}.ipynb").read_text())
        for cell in nb["cells"]:
            for out in cell.get("outputs", []):
                assert out["output_type"] != "error", f"{chapter}: {out.get('ename')}: {out.get('evalue')}"
        page = (html / "book" / "executed" / f"{chapter}.html").read_text()
        assert "glue:" not in page and "{glue" not in page, f"{chapter}: unresolved glue role on the page"
        text = re.sub(r"<[^>]+>", " ", page[page.find("<main"):page.find("</main>")])
        assert not re.search(r"\bnan\b", text), f"{chapter}: 'nan' on the page"


LM_ROOT = report.REPO_ROOT / ".cache" / "smoke-lm-book"


@pytest.fixture(scope="session")
def smoke_lm_book() -> Path:
    """The language-model path in the book: a tiny replication GPT on a slice of the vendored corpus."""
    shutil.rmtree(LM_ROOT / "book", ignore_errors=True)
    report.main(["--profile", "smoke-lm", "--root", str(LM_ROOT)])
    return LM_ROOT / "book" / "_build" / "html"


def test_language_model_book_builds_without_errors_or_nan(smoke_lm_book):
    assert_clean_book(LM_ROOT, smoke_lm_book)
    intro = (smoke_lm_book / "book" / "executed" / "01_introduction.html").read_text()
    assert "blocks.2.mlp.hook_post" in intro and "CE recovered" in intro
    # the landing page is the abstract: the answer with its numbers, from the build, and its figure
    landing = (smoke_lm_book / "index.html").read_text()
    assert "00_abstract.html" in landing
    abstract = (smoke_lm_book / "book" / "executed" / "00_abstract.html").read_text()
    answer_text = re.sub(r"<[^>]+>", " ", abstract[abstract.find("Answer."):abstract.find("The post")])
    assert re.search(r"In \d+ of the \d+ dictionaries with a low mode", answer_text)
    assert "held-out activations" in answer_text
    assert re.search(r'<img[^>]+src="[^"]+\.png"', abstract) and "Huben" in abstract


def glued_values(executed: Path) -> dict[str, dict[str, str]]:
    """{glue name: {chapter: value as text}} over every executed chapter (figures left out)."""
    out: dict[str, dict[str, str]] = {}
    for path in sorted(executed.glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            for output in cell.get("outputs", []):
                name = output.get("metadata", {}).get("scrapbook", {}).get("name")
                value = output.get("data", {}).get("application/papermill.record/text/plain")
                if name and value is not None and not value.startswith("<Figure"):
                    out.setdefault(name, {})[path.stem] = value
    return out


def test_a_quantity_glued_on_several_pages_has_one_value(smoke_lm_book):
    """One number, one source: a name glued by several chapters (the reference size, the null cutoff,
    the compared pair, the null's mode, ...) carries the same value on every page."""
    values = glued_values(LM_ROOT / "book" / "executed")
    shared = {name: pages for name, pages in values.items() if len(pages) > 1}
    page = (smoke_lm_book / "book" / "executed" / "05_low_mode.html").read_text()
    assert "report.css" in page and (smoke_lm_book / "_static" / "report.css").is_file()  # glued text not bold
    assert {"large", "null_cut", "pair"} <= set(shared)  # the cross-page quantities exist under one name each
    for name, pages in shared.items():
        assert len(set(pages.values())) == 1, f"{name} differs between pages: {pages}"


DICT_ROOT = report.REPO_ROOT / ".cache" / "smoke-dictionaries-book"


@pytest.fixture(scope="session")
def dictionaries_book(tmp_path_factory) -> Path:
    """Every chapter on dictionaries trained elsewhere: three sizes saved in three libraries' layouts,
    read without a model (no activations)."""
    from sae_core import TrainConfig, save_dictionary, train_family
    from sae_core.sources import SyntheticConfig, SyntheticSource

    folder = tmp_path_factory.mktemp("dictionaries")
    src = SyntheticSource(SyntheticConfig(d_in=16, n_features=96, mean_active=3.0, n_parents=4, children_per_parent=2))
    saes, _ = train_family(src, TrainConfig(sizes=(32, 64, 128), n_steps=80, batch_size=64, progress=False))
    paths = []
    for (size, sae), fmt in zip(saes.items(), ("ours", "saelens", "dictionary_learning"), strict=True):
        paths.append(str(save_dictionary(sae, folder / f"{fmt}_{size}", format=fmt)))
    profile = {
        "profile": "smoke-dictionaries", "source": "dictionaries", "dictionaries": paths, "sizes": [32, 64, 128],
        "small_size": 32, "large_size": 128, "mid_size": 64, "emd_sizes": [32, 64],
        "cross_triples": [[32, 64, 128]], "n_random_sets": 2, "n_mc": 100, "ablation_sizes": [32, 64],
        "tree_tokens": 1024,
    }
    path = folder / "profile.yml"
    path.write_text(yaml.safe_dump(profile))
    shutil.rmtree(DICT_ROOT / "book", ignore_errors=True)
    report.main(["--profile", str(path), "--root", str(DICT_ROOT)])
    return DICT_ROOT / "book" / "_build" / "html"


def test_book_runs_on_dictionaries_read_from_other_layouts(dictionaries_book):
    assert_clean_book(DICT_ROOT, dictionaries_book)
    low = (dictionaries_book / "book" / "executed" / "05_low_mode.html").read_text()
    assert "without a model and site" in low  # the chapter says why the firing parts are missing
    intro = (dictionaries_book / "book" / "executed" / "01_introduction.html").read_text()
    assert "3 dictionaries read from disk" in intro


def page_paragraphs(page: Path) -> list[str]:
    """The visible paragraphs of a built page as a reader sees them: each <p> of the article (list items and
    figure captions included), code cells dropped, tags stripped, whitespace collapsed."""
    import html as html_lib

    text = page.read_text()
    main = text[text.find("<main"):text.find("</main>")] if "<main" in text else text
    main = re.sub(r'<div class="cell_input.*?</div>\s*</div>', " ", main, flags=re.S)
    main = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", main, flags=re.S)
    paragraphs = (html_lib.unescape(re.sub(r"<[^>]+>", " ", p)) for p in re.findall(r"<p\b[^>]*>(.*?)</p>", main, re.S))
    return [" ".join(p.split()) for p in paragraphs if p.strip()]


def repeated_paragraphs(pages: dict[str, list[str]], min_words: int = 40) -> dict[str, list[str]]:
    """{paragraph: pages} for each paragraph of ``min_words`` words or more found on two pages or more."""
    seen: dict[str, set[str]] = {}
    for name, paragraphs in pages.items():
        for p in paragraphs:
            if len(p.split()) >= min_words:
                seen.setdefault(p, set()).add(name)
    return {p: sorted(names) for p, names in seen.items() if len(names) > 1}


def test_the_paragraph_reader_and_the_repeat_check(tmp_path):
    page = tmp_path / "a.html"
    page.write_text('<main><div class="cell_input docutils"><div><p>code</p></div>\n</div>'
                    "<p>One <strong>two</strong>\n three &amp; four.</p><li><p>item</p></li></main>")
    assert page_paragraphs(page) == ["One two three & four.", "item"]
    long = " ".join(["word"] * 40)
    assert repeated_paragraphs({"a": [long, "short"], "b": [long, "short"]}) == {long: ["a", "b"]}
    assert repeated_paragraphs({"a": [long[:-5]], "b": [long[:-5]]}) == {}  # 39 words: allowed


@pytest.mark.parametrize("which", ["smoke", "smoke-lm"])
def test_no_paragraph_of_40_words_or_more_appears_on_two_pages(which, request):
    """One sentence, one place: a long paragraph is written once and the other pages point to it."""
    html = request.getfixturevalue("smoke_book" if which == "smoke" else "smoke_lm_book")
    pages = {chapter: page_paragraphs(html / "book" / "executed" / f"{chapter}.html") for chapter in report.CHAPTERS}
    repeats = repeated_paragraphs(pages)
    assert not repeats, "\n".join(f"{names}: {p[:160]}..." for p, names in repeats.items())


def test_the_abstract_has_no_parameters_table_and_chapters_do(smoke_book):
    """The landing page reads as an abstract: no "Parameters of this build" dropdown; a chapter keeps its table."""
    executed = smoke_book / "book" / "executed"
    assert "Parameters of this build" not in (executed / "00_abstract.html").read_text()
    assert "Parameters of this build" in (executed / "03_bimodality.html").read_text()


def test_language_model_book_shows_feature_cards_and_contains_the_browser(smoke_lm_book):
    """Chapter 5 shows feature cards with a highlighted firing token and links the feature browser, which
    the build copies into the HTML (book/_static/browser -> _static/browser)."""
    chapter = smoke_lm_book / "book" / "executed" / "05_low_mode.html"
    page = chapter.read_text()
    assert '<span class="fc-fire">' in page and 'class="fc-card"' in page
    href = re.search(r'href="([^"]*_static/browser/lm_\d+\.html)"', page).group(1)
    browser_page = (chapter.parent / href).resolve()
    assert browser_page.is_file() and browser_page.is_relative_to(smoke_lm_book.resolve())
    assert 'id="f-class"' in browser_page.read_text() and "<mark>" in browser_page.read_text()
