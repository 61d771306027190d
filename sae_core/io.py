"""Small helpers for atomic writes: a killed process never leaves a half-written artifact."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder that replaces ``path`` only if the block finishes.

    The folder is renamed into place (``os.replace`` is atomic on one file system); an
    existing ``path`` is moved aside first and removed after the swap.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp.", dir=path.parent))
    os.chmod(tmp, 0o755)  # mkdtemp's 0700 would follow the artifact after the rename
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_atomic(path: str | os.PathLike, mode: str, write: Callable[[Any], None]) -> None:
    """``write(file)`` into a temporary file beside ``path`` (opened with ``mode``), then an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.chmod(tmp, 0o644)  # mkstemp's 0600 would follow the file after the rename
    try:
        with os.fdopen(fd, mode) as fh:
            write(fh)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    """Write JSON to ``path`` through a temporary file and an atomic rename."""
    _write_atomic(path, "w", lambda fh: json.dump(data, fh, indent=2, sort_keys=True))


def save_npy_atomic(path: str | os.PathLike, array) -> None:
    """Write a numpy array to ``path`` (``.npy``) through a temporary file and an atomic rename."""
    import numpy as np

    _write_atomic(path, "wb", lambda fh: np.save(fh, array))


def optimizer_tensors(opt, prefix: str) -> tuple[dict, list]:
    """An optimizer's state as flat tensors ``{prefix}.{param_idx}.{slot}`` plus its param_groups."""
    import torch

    state = opt.state_dict()
    tensors = {
        f"{prefix}.{idx}.{slot}": torch.as_tensor(value).detach().cpu().contiguous()
        for idx, slots in state["state"].items()
        for slot, value in slots.items()
    }
    return tensors, state["param_groups"]


def load_optimizer_tensors(opt, tensors: dict, param_groups: list, prefix: str, device) -> None:
    """Inverse of :func:`optimizer_tensors` (Adam's ``step`` counters stay on the CPU)."""
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith(prefix + "."):
            idx, slot = key[len(prefix) + 1 :].split(".", 1)
            state.setdefault(int(idx), {})[slot] = value if slot == "step" else value.to(device)
    opt.load_state_dict({"state": state, "param_groups": param_groups})


REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_root() -> Path:
    """Where cached artifacts live (trained GPTs, activation stores, families):
    ``$SAE_REPORT_CACHE`` if set, else ``.cache`` in the repository. Sources and the report
    both read it, so it lives in the core, which imports neither."""
    return Path(os.environ.get("SAE_REPORT_CACHE", REPO_ROOT / ".cache"))


def stage(message: str) -> None:
    """One line per pipeline stage on stderr (``[pipeline] ...``): ``make book`` streams it from
    the chapter's kernel, so a long build shows where it is and how long each stage took."""
    print(f"[pipeline] {message}", file=sys.stderr, flush=True)
