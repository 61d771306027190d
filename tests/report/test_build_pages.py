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


def test_a_warm_kernel_has_the_imports_and_runs_a_notebook_as_a_cold_one_would(tmp_path):
    """The chapter's kernel was started, and the report imported, before the chapter: its cells still count
    from 1 and show only their own output, and the kernel is gone after shutdown."""
    import papermill

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import sys, os\nprint('sae_core.report.plots' in sys.modules, os.getcwd())"),
                nbformat.v4.new_code_cell("print(2 + 3)")]
    source, out = tmp_path / "in.ipynb", tmp_path / "out.ipynb"
    nbformat.write(nb, source)
    kernel = build.WarmKernel(tmp_path)
    try:
        kernel.ready()
        papermill.execute_notebook(str(source), str(out), kernel_name="python3", progress_bar=False, km=kernel.km)
    finally:
        kernel.shutdown()
    cells = nbformat.read(out, as_version=4).cells
    assert [c.execution_count for c in cells] == [1, 2]
    assert [o["text"] for c in cells for o in c.outputs] == [f"True {tmp_path}\n", "5\n"]
    assert not kernel.km.has_kernel
