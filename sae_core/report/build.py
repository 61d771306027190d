"""Run the chapters with papermill for a profile, then build the Jupyter Book.

    python -m sae_core.report --profile default        # what `make book` runs
    python -m sae_core.report --profile smoke --root .cache/smoke-book

Each chapter in ``notebooks/`` (Jupytext py:percent) is converted to ipynb and executed
with the profile's values for the parameters it declares, into ``<root>/book/executed/``.
Then ``jupyter-book build`` renders ``<root>`` with warnings as errors. With a ``--root``
other than the repository, the book's sources (_config.yml, _toc.yml, book/*.md, .bib)
are copied there first, so a test build never touches the repository's own book.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO_ROOT / "notebooks"
PROFILES = NOTEBOOKS / "profiles"
CHAPTERS = (
    "00_abstract", "01_introduction", "02_methods", "03_bimodality", "04_random_nulls", "05_low_mode",
    "05b_architectures", "06_cross_dictionary", "07_feature_splitting", "08_conclusions", "09_appendix_geometry",
)
LANDING = CHAPTERS[0]  # the abstract: the book's first page, without a parameters table
BOOK_SOURCES = ("_config.yml", "_toc.yml", "book/references.md", "book/references.bib", "book/_static/report.css")


def load_profile(name_or_path: str, _seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """A profile by name (``notebooks/profiles/<name>.yml``) or by path. ``extends: <profile>``
    takes that profile's values first; the file's own values replace them key by key."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PROFILES / f"{name_or_path}.yml"
    if not path.is_file():
        known = sorted(p.stem for p in PROFILES.glob("*.yml"))
        raise FileNotFoundError(f"no profile {name_or_path!r} (looked for {path}); known profiles: {known}")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a mapping of parameter names to values")
    base = data.pop("extends", None)
    if base is None:
        return data
    if str(path) in _seen:
        raise ValueError(f"profiles extend each other in a loop: {' -> '.join((*_seen, str(path)))}")
    return {**load_profile(str(base), (*_seen, str(path))), **data}


def apply_overrides(profile: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs (VALUE parsed as YAML) over a profile; ``lm.corpus=...`` sets a nested key."""
    profile = {k: (dict(v) if isinstance(v, dict) else v) for k, v in profile.items()}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} is not KEY=VALUE")
        value = yaml.safe_load(raw)
        head, _, tail = key.partition(".")
        if tail:
            profile[head] = {**(profile.get(head) or {}), tail: value}
        else:
            profile[head] = value
    return profile


def notebook_parameters(py_path: Path) -> set[str]:
    import jupytext
    import papermill

    nb = jupytext.read(py_path)
    tmp = py_path.with_suffix(".inspect.ipynb")
    try:
        jupytext.write(nb, tmp)
        return set(papermill.inspect_notebook(str(tmp)))
    finally:
        tmp.unlink(missing_ok=True)


# What every chapter's first cells import (about 3.5 s of a kernel's start on 2 CPU cores): imported in the next
# chapter's kernel while the current chapter runs, so that chapters do not wait for them one after another
PRELOAD = ("import numpy, torch, matplotlib.pyplot\n"
           "import sae_core.report.analysis, sae_core.report.pipeline\n"
           "import sae_core.report.plots, sae_core.report.sentences")


class WarmKernel:
    """A Python kernel started, and :data:`PRELOAD` imported in it, ahead of the chapter that will run in it.

    Starting a kernel and importing torch, matplotlib and the report takes about 6 s, and each chapter
    runs in a fresh kernel. Started while the previous chapter computes, that time overlaps its work.
    The import runs silently (no output, no execution count), so the chapter's cells, outputs and
    execution counts are those of a cold kernel; the kernel's environment and working directory are the
    ones papermill would give it."""

    def __init__(self, cwd: Path) -> None:
        from jupyter_client import BlockingKernelClient
        from jupyter_client.manager import AsyncKernelManager
        from jupyter_core.utils import run_sync

        class Manager(AsyncKernelManager):
            """Remembers the clients it hands out (papermill's among them) so that shutdown can stop their
            channels: papermill leaves a kernel manager it did not create running, with its client."""

            def client(self, **kwargs: Any):
                kc = super().client(**kwargs)
                clients.append(kc)
                return kc

        clients: list[Any] = []
        self._clients = clients
        self.km = Manager(kernel_name="python3")
        run_sync(self.km.start_kernel)(cwd=str(cwd))
        # a client of its own for the import; the zmq queue holds the request until the kernel listens
        self._client = BlockingKernelClient()
        self._client.load_connection_info(self.km.get_connection_info())
        self._client.start_channels()
        self._preload = self._client.execute(PRELOAD, silent=True, store_history=False)

    def ready(self, timeout: float = 300) -> None:
        """Wait until the imports have run (they usually have, long before); a failed import is left to
        the chapter's own import cell, which then shows the error where it belongs."""
        try:
            while True:
                reply = self._client.get_shell_msg(timeout=timeout)
                if reply["parent_header"].get("msg_id") == self._preload:
                    return
        finally:
            self._client.stop_channels()

    def shutdown(self) -> None:
        from jupyter_core.utils import run_sync

        for client in (self._client, *self._clients):
            if client.channels_running:
                client.stop_channels()
        run_sync(self.km.shutdown_kernel)(now=True)


def execute_chapters(profile: dict[str, Any], out_dir: Path, chapters: tuple[str, ...] = CHAPTERS,
                     log=print) -> dict[str, float]:
    """Execute each chapter with the profile's values for its declared parameters; return seconds each.
    Each chapter runs in a fresh kernel, started (and its imports made) while the previous chapter ran."""
    import jupytext
    import papermill

    out_dir.mkdir(parents=True, exist_ok=True)
    declared = {ch: notebook_parameters(NOTEBOOKS / f"{ch}.py") for ch in chapters}
    unknown = set(profile) - set().union(*declared.values())
    if unknown:
        raise ValueError(f"profile sets {sorted(unknown)}, which no chapter declares as a parameter")
    timings = {}
    kernel = WarmKernel(REPO_ROOT)
    try:
        for i, ch in enumerate(chapters):
            source = out_dir / f".{ch}.src.ipynb"
            jupytext.write(jupytext.read(NOTEBOOKS / f"{ch}.py"), source)
            params = {k: v for k, v in profile.items() if k in declared[ch]}
            log(f"[report] {ch}: executing with {len(params)} profile parameters")
            start = time.perf_counter()
            current, kernel = kernel, None
            try:
                current.ready()
                kernel = WarmKernel(REPO_ROOT) if i + 1 < len(chapters) else None  # the next chapter's
                # log_output streams the kernel's output (stage lines, training progress) to this terminal
                papermill.execute_notebook(str(source), str(out_dir / f"{ch}.ipynb"), parameters=params,
                                           kernel_name="python3", progress_bar=False, cwd=str(REPO_ROOT),
                                           log_output=True, km=current.km)
            finally:
                source.unlink(missing_ok=True)
                current.shutdown()
            dress_for_reading(out_dir / f"{ch}.ipynb", params, parameter_table=ch != LANDING)
            timings[ch] = time.perf_counter() - start
            log(f"[report] {ch}: {timings[ch]:.1f} s")
    finally:
        if kernel is not None:
            kernel.shutdown()
    return timings


def shows_something(cell) -> bool:
    """Whether a code cell puts something on the page: a displayed output that is not a hidden glue
    record or stderr, or a figure it glues for a ``glue:figure`` below it."""
    if "glue_figure" in cell.source:
        return True
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            if out.get("name") == "stdout":
                return True
        elif out.get("output_type") in ("display_data", "execute_result"):
            if not any(k.startswith("application/papermill.record/") for k in out.get("data", {})):
                return True
        elif out.get("output_type") == "error":
            return True
    return False


def dress_for_reading(path: Path, injected: dict[str, Any], parameter_table: bool = True) -> None:
    """Make an executed chapter read as a paper: the parameters cells (the defaults and papermill's
    injected values) are removed and replaced by one folded table of the values this build used,
    and every other code cell's input is folded behind a toggle (Jupyter Book's ``hide-input``) when the
    cell shows something (a table, a figure it glues) or removed from the page (``remove-input``: it stays
    in the source) when it only sets up or glues text, so set-up does not stack toggles on the page.
    ``parameter_table=False`` (the abstract) removes the parameters cells without putting the table there."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    values: dict[str, str] = {}
    where = None
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        tags = cell.metadata.setdefault("tags", [])
        if "parameters" in tags or "injected-parameters" in tags:
            for line in cell.source.splitlines():
                name, sep, value = line.partition("=")
                if sep and name.strip().isidentifier() and not line.startswith((" ", "#")):
                    values[name.strip()] = value.split("  #")[0].strip()
            if "remove-cell" not in tags:
                tags.append("remove-cell")
            where = i
        elif "hide-input" not in tags and "remove-cell" not in tags and "remove-input" not in tags:
            tags.append("hide-input" if shows_something(cell) else "remove-input")
    if where is None or not values or not parameter_table:
        nbformat.write(nb, path)
        return
    rows = "\n".join(f"| `{k}` | `{v}` | {'profile' if k in injected else 'chapter default'} |"
                      for k, v in values.items())
    table = (":::{admonition} Parameters of this build\n:class: dropdown\n\n"
             "| parameter | value | set by |\n|---|---|---|\n" + rows + "\n:::")
    nb.cells.insert(where + 1, nbformat.v4.new_markdown_cell(table))
    nbformat.write(nb, path)


def build_book(root: Path) -> Path:
    """``jupyter-book build`` with warnings as errors; returns the HTML folder."""
    # the CLI module has no __main__ guard, so call the console script beside this Python
    cmd = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(root), "--path-output", str(root / "book"),
           "-W", "-n", "--keep-going"]
    subprocess.run(cmd, check=True)
    return root / "book" / "_build" / "html"


def prepare_root(root: Path) -> None:
    if root.resolve() == REPO_ROOT.resolve():
        return
    for rel in BOOK_SOURCES:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / rel, root / rel)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="default", help="profile name in notebooks/profiles/ or a YAML path")
    parser.add_argument("--root", default=str(REPO_ROOT), help="folder to build the book in")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a profile value, e.g. --set n_steps=8000 --set lm.corpus=data.txt")
    parser.add_argument("--no-build", action="store_true", help="execute the chapters only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("papermill").setLevel(logging.INFO)  # the chapters' output, streamed
    profile = apply_overrides(load_profile(args.profile), args.set)
    root = Path(args.root)
    prepare_root(root)
    # chapter 5 writes the feature browser into <root>/book/_static/browser (report/cards.browser_folder);
    # the kernels papermill starts inherit this environment
    os.environ["SAE_BOOK_ROOT"] = str(root.resolve())
    start = time.perf_counter()
    timings = execute_chapters(profile, root / "book" / "executed")
    executed = time.perf_counter() - start
    if args.no_build:
        print(f"[report] chapters executed in {executed:.0f} s under {root / 'book' / 'executed'}")
        return
    html = build_book(root)
    total = time.perf_counter() - start
    print(f"[report] profile {args.profile}: chapters {executed:.0f} s "
          f"({', '.join(f'{k} {v:.0f}s' for k, v in timings.items())}), book {total - executed:.0f} s")
    print(f"[report] open {html / 'index.html'}")


if __name__ == "__main__":
    main()
