"""What build.dress_for_reading puts on a page: the abstract (the landing page) gets no parameters table."""

import nbformat

from sae_core.report import build


def dressed(tmp_path, **kwargs) -> list:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('profile = "smoke"  # name of the profile')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# Abstract"), params]
    path = tmp_path / "page.ipynb"
    nbformat.write(nb, path)
    build.dress_for_reading(path, {"profile": "smoke"}, **kwargs)
    return nbformat.read(path, as_version=4).cells


def test_a_chapter_gets_its_parameters_table(tmp_path):
    cells = dressed(tmp_path)
    assert any("Parameters of this build" in c.source for c in cells if c.cell_type == "markdown")


def test_the_landing_page_gets_no_parameters_table(tmp_path):
    cells = dressed(tmp_path, parameter_table=False)
    assert not any("Parameters of this build" in c.source for c in cells)
    assert "remove-cell" in cells[1].metadata["tags"]  # the parameters cell itself is still off the page
    assert build.LANDING == build.CHAPTERS[0] == "00_abstract"
