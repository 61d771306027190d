"""Static checks of the chapters' citations: every work cited is in the bibliography, and each page
names, dates and links the post where it first mentions it. No book build is needed."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.py"))
BIB = REPO / "book" / "references.bib"
POST_KEY = "mcs_post_2023"
CITE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]+)`")


def bib_keys(text: str) -> set[str]:
    return set(re.findall(r"(?m)^@\w+\{\s*([^,\s]+)\s*,", text))


def bib_entry(text: str, key: str) -> str:
    start = text.index(f"{{{key},")
    end = text.find("\n@", start)
    return text[start:] if end < 0 else text[start:end]


def cited_keys(source: str) -> set[str]:
    """Every key of every {cite}/{cite:t}/{cite:p}/... role in a chapter, code strings included."""
    return {key.strip() for group in CITE.findall(source) for key in group.split(",")}


def markdown_paragraphs(source: str) -> list[str]:
    """The paragraphs of a Jupytext py:percent chapter's markdown cells, in order."""
    heads = re.findall(r"(?m)^# %%.*$", source)
    cells = re.split(r"(?m)^# %%.*\n", source)[1:]
    text = "\n\n".join("\n".join(line[2:] if line.startswith("# ") else line.lstrip("#") for line in cell.splitlines())
                       for head, cell in zip(heads, cells, strict=True) if "[markdown]" in head)
    return [p for p in re.split(r"\n\s*\n", text) if p.strip()]


def first_mention_of_the_post(source: str) -> str | None:
    return next((p for p in markdown_paragraphs(source) if re.search(r"\bpost'?s?\b", p)), None)


def test_the_parsers_on_a_tiny_chapter():
    chapter = ("# %% [markdown]\n# # Title\n#\n# Words {cite:t}`a2020, b2021` and {cite}`c`.\n"
               "# %%\nx = '{cite:p}`d`'\n# %% [markdown]\n# The post {cite:p}`e` said so.\n#\n# The post again.\n")
    assert cited_keys(chapter) == {"a2020", "b2021", "c", "d", "e"}
    assert first_mention_of_the_post(chapter) == "The post {cite:p}`e` said so."
    assert bib_keys("@misc{k1,\n  title = {x}\n}\n@article{ k2 ,\n}") == {"k1", "k2"}


def test_the_bibliography_names_dates_and_links_the_post():
    entry = bib_entry(BIB.read_text(), POST_KEY)
    assert re.search(r"author\s*=\s*\{[^}]*Huben", entry)
    assert re.search(r"year\s*=\s*\{2023\}", entry) and re.search(r"month\s*=\s*\{jun", entry)
    assert re.search(r"url\s*=\s*\{https://[^}]+bimodal\}", entry)


@pytest.mark.parametrize("chapter", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_cited_work_is_in_the_bibliography(chapter):
    missing = cited_keys(chapter.read_text()) - bib_keys(BIB.read_text())
    assert not missing, f"{chapter.name} cites {sorted(missing)}, which book/references.bib does not hold"


@pytest.mark.parametrize("chapter", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_post_is_cited_where_a_page_first_mentions_it(chapter):
    first = first_mention_of_the_post(chapter.read_text())
    if first is None:
        pytest.skip(f"{chapter.name} does not mention the post in its prose")
    assert POST_KEY in cited_keys(first), f"{chapter.name}: the first paragraph naming the post does not cite it"


# the pages whose first mention names the post in full: author (through {cite:t}), month and year, and a link
FULL_FORM = ("00_abstract", "01_introduction", "03_bimodality", "04_random_nulls", "06_cross_dictionary",
             "07_feature_splitting", "08_conclusions", "09_appendix_geometry")


@pytest.mark.parametrize("name", FULL_FORM)
def test_the_post_is_named_dated_and_linked_at_first_mention(name):
    first = first_mention_of_the_post((REPO / "notebooks" / f"{name}.py").read_text())
    url = re.search(r"url\s*=\s*\{([^}]+)\}", bib_entry(BIB.read_text(), POST_KEY)).group(1)
    assert f"{{cite:t}}`{POST_KEY}`" in first, f"{name}: the post's author is not named ({{cite:t}})"
    assert "June 2023" in first, f"{name}: the post is not dated"
    assert f"]({url})" in first, f"{name}: the post is not linked"
