"""On-disk activation store: sharded .npy files, memory-mapped, with their metadata.

Layout of a finished store ``<root>/<key>/``::

    meta.json            # model, site, corpus, token count, dtype, d, shard sizes
    shard_00000.npy ...  # float32 [rows, d] each
    shard_00000.token_id.npy ...  # optional int32 [rows] per row: token id, document, position

The optional per-row columns (``token_id``, ``doc``, ``pos`` for a language model) let any
row be shown in its context: document ``doc`` of the corpus, token ``pos`` of it.

While it is written, shards go to ``<key>.partial/`` with a ``progress.json`` naming
how far the input got; an interrupted extraction resumes after its last complete shard,
and the folder is renamed to ``<key>/`` only when complete (so a half-written store is
never mistaken for a finished one).

:class:`StoreSource` feeds the training loop through a shuffling buffer: the rows are
cut into blocks, each epoch visits the blocks in a seeded order, ``blocks_per_buffer``
blocks are loaded at a time and shuffled together. Memory stays at one buffer however
large the store; batch ``k`` is a pure function of ``k`` and the seed, so training
resumes exactly.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sae_core.io import save_npy_atomic, write_json_atomic

META = "meta.json"
PROGRESS = "progress.json"


class StoreWriter:
    """Append activation rows; ``close()`` publishes the store. Resumes a ``.partial`` folder."""

    def __init__(self, path: str | os.PathLike, d: int, meta: dict[str, Any], shard_rows: int = 65536) -> None:
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.d, self.meta, self.shard_rows = d, meta, shard_rows
        self.partial.mkdir(parents=True, exist_ok=True)
        progress_file = self.partial / PROGRESS
        if progress_file.is_file():
            progress = json.loads(progress_file.read_text())
            if progress["meta"] != meta:
                raise ValueError(f"{self.partial} was started with other settings; delete it to start over")
        else:
            progress = {"meta": meta, "shards": [], "cursor": 0}
        # drop shards written after the last progress record (a kill between the two writes)
        known = {s["file"][:-4] for s in progress["shards"]}
        for stray in self.partial.glob("shard_*.npy"):
            if stray.name.split(".")[0] not in known:
                stray.unlink()
        self.progress = progress
        self._buffer: list[np.ndarray] = []
        self._columns: dict[str, list[np.ndarray]] = {}
        self._buffered = 0

    @property
    def cursor(self) -> int:
        """How many input items (e.g. batches of documents) are safely stored."""
        return self.progress["cursor"]

    @property
    def rows(self) -> int:
        return sum(s["rows"] for s in self.progress["shards"]) + self._buffered

    def add(self, rows: torch.Tensor | np.ndarray, cursor: int,
            columns: dict[str, np.ndarray] | None = None) -> None:
        """Add rows produced by the input up to ``cursor``; full shards are flushed to disk.
        ``columns``: optional int32 values per row (e.g. ``token_id``, ``doc``, ``pos``), the same
        names on every call."""
        arr = np.asarray(rows.detach().cpu() if isinstance(rows, torch.Tensor) else rows, dtype=np.float32)
        if arr.ndim != 2 or arr.shape[1] != self.d:
            raise ValueError(f"store rows must be [n, {self.d}], got {arr.shape}")
        if not np.isfinite(arr).all():
            raise ValueError("activations contain NaN or inf")
        columns = columns or {}
        if self._columns and set(columns) != set(self._columns):
            raise ValueError(f"store columns changed from {sorted(self._columns)} to {sorted(columns)}")
        for name, values in columns.items():
            values = np.asarray(values, dtype=np.int32)
            if values.shape != (arr.shape[0],):
                raise ValueError(f"column {name!r} must have one value per row ({arr.shape[0]}), got {values.shape}")
            self._columns.setdefault(name, []).append(values)
        self._buffer.append(arr)
        self._buffered += arr.shape[0]
        self._pending_cursor = cursor
        if self._buffered >= self.shard_rows:
            self._flush()

    def _flush(self) -> None:
        if not self._buffered:
            return
        data = np.concatenate(self._buffer)
        name = f"shard_{len(self.progress['shards']):05d}.npy"
        tmp = self.partial / f".{name}.tmp"
        with open(tmp, "wb") as fh:
            np.save(fh, data)
        for column, parts in self._columns.items():  # side files first: the shard counts once recorded
            col_tmp = self.partial / f".{name[:-4]}.{column}.npy.tmp"
            with open(col_tmp, "wb") as fh:
                np.save(fh, np.concatenate(parts))
            os.replace(col_tmp, self.partial / f"{name[:-4]}.{column}.npy")
        os.replace(tmp, self.partial / name)
        self.progress["shards"].append({"file": name, "rows": int(data.shape[0]), "columns": sorted(self._columns)})
        self.progress["cursor"] = self._pending_cursor
        write_json_atomic(self.partial / PROGRESS, self.progress)
        self._buffer, self._buffered = [], 0
        self._columns = {k: [] for k in self._columns}

    def close(self) -> Path:
        self._flush()
        total = sum(s["rows"] for s in self.progress["shards"])
        if total == 0:
            raise ValueError("no activations were extracted: the corpus produced no tokens")
        meta = {**self.meta, "d": self.d, "rows": total, "dtype": "float32", "shards": self.progress["shards"]}
        write_json_atomic(self.partial / META, meta)
        (self.partial / PROGRESS).unlink()
        if self.path.exists():
            shutil.rmtree(self.path)
        os.replace(self.partial, self.path)
        return self.path


class ActivationStore:
    """A finished store, memory-mapped shard by shard."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        meta_file = self.path / META
        if not meta_file.is_file():
            raise FileNotFoundError(f"{self.path} is not a finished activation store ({META} missing)")
        self.meta = json.loads(meta_file.read_text())
        self.d = int(self.meta["d"])
        self.shards = [np.load(self.path / s["file"], mmap_mode="r") for s in self.meta["shards"]]
        for arr, s in zip(self.shards, self.meta["shards"], strict=True):
            if arr.shape != (s["rows"], self.d) or arr.dtype != np.float32:
                raise ValueError(f"{self.path / s['file']} has shape {arr.shape} {arr.dtype}, "
                                 f"expected ({s['rows']}, {self.d}) float32")
        self.offsets = np.cumsum([0] + [a.shape[0] for a in self.shards])
        names = [set(s.get("columns", [])) for s in self.meta["shards"]]
        self.column_names = sorted(set.intersection(*names)) if names else []

    def column(self, name: str) -> np.ndarray:
        """One per-row int32 column over the whole store (e.g. ``token_id``), in row order."""
        if name not in self.column_names:
            raise KeyError(f"{self.path} has no per-row column {name!r} (it has {self.column_names or 'none'}); "
                           "stores extracted before token ids were kept must be extracted again")
        return np.concatenate([np.load(self.path / f"{s['file'][:-4]}.{name}.npy") for s in self.meta["shards"]])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) across shards, copied out of the memory map."""
        out = []
        first = int(np.searchsorted(self.offsets, start, side="right") - 1)
        for i in range(first, len(self.shards)):
            lo, hi = self.offsets[i], self.offsets[i + 1]
            if lo >= stop:
                break
            out.append(np.asarray(self.shards[i][max(start, lo) - lo : min(stop, hi) - lo]))
        return np.concatenate(out) if out else np.empty((0, self.d), np.float32)

    def iter_rows(self, chunk: int = 65536) -> Iterator[np.ndarray]:
        for start in range(0, len(self), chunk):
            yield self.rows(start, min(start + chunk, len(self)))


class StoreSource:
    """Training batches from an :class:`ActivationStore` through a seeded shuffling buffer."""

    def __init__(self, store: ActivationStore, seed: int = 0, block_rows: int = 1024,
                 blocks_per_buffer: int = 64) -> None:
        if len(store) == 0:
            raise ValueError(f"activation store {store.path} is empty")
        self.store, self.seed = store, seed
        self.d_in = store.d
        self.block_rows = min(block_rows, len(store))
        self.n_blocks = -(-len(store) // self.block_rows)
        self.blocks_per_buffer = min(blocks_per_buffer, self.n_blocks)
        self.buffers_per_epoch = -(-self.n_blocks // self.blocks_per_buffer)
        self._cached: tuple[int, np.ndarray] | None = None
        self._bounds_cache: tuple[int, np.ndarray] | None = None
        self.heldout: ActivationStore | None = None  # rows of documents this source never serves (lm_source sets it)

    def __len__(self) -> int:
        return len(self.store)

    def _buffer(self, index: int) -> np.ndarray:
        """Shuffled rows of buffer ``index`` (counted across epochs)."""
        if self._cached is not None and self._cached[0] == index:
            return self._cached[1]
        epoch, within = divmod(index, self.buffers_per_epoch)
        order = np.random.default_rng([self.seed, epoch]).permutation(self.n_blocks)
        blocks = order[within * self.blocks_per_buffer : (within + 1) * self.blocks_per_buffer]
        rows = np.concatenate([self.store.rows(b * self.block_rows, (b + 1) * self.block_rows) for b in blocks])
        rows = rows[np.random.default_rng([self.seed, epoch, within, 1]).permutation(len(rows))]
        self._cached = (index, rows)
        return rows

    def _bounds(self, epoch: int) -> np.ndarray:
        """Start row of each buffer of ``epoch`` within that epoch's stream (only the store's
        last block may be short, and the permutation decides which buffer holds it)."""
        if self._bounds_cache is None or self._bounds_cache[0] != epoch:
            order = np.random.default_rng([self.seed, epoch]).permutation(self.n_blocks)
            n = len(self.store)
            sizes = [sum(min(self.block_rows, n - b * self.block_rows)
                         for b in order[w * self.blocks_per_buffer : (w + 1) * self.blocks_per_buffer])
                     for w in range(self.buffers_per_epoch)]
            self._bounds_cache = (epoch, np.cumsum([0, *sizes]))
        return self._bounds_cache[1]

    def batch(self, index: int, batch_size: int) -> torch.Tensor:
        n = len(self.store)
        start = index * batch_size
        epoch, pos = divmod(start, n)
        out, need = [], batch_size
        while need:
            bounds = self._bounds(epoch)
            w = int(np.searchsorted(bounds, pos, side="right") - 1)
            rows = self._buffer(epoch * self.buffers_per_epoch + w)
            take = rows[pos - bounds[w] : pos - bounds[w] + need]
            out.append(take)
            need -= len(take)
            pos += len(take)
            if pos >= n:
                epoch, pos = epoch + 1, 0
        return torch.from_numpy(np.concatenate(out))

    def describe(self) -> dict[str, Any]:
        out = {k: v for k, v in self.store.meta.items() if k != "shards"}
        out["train_rows"] = len(self.store)
        if self.heldout is not None:
            out["heldout_rows"] = len(self.heldout)
        return out


class StoredStream:
    """A deterministic, index-addressed source whose training batches are drawn once and kept on disk.

    Batch ``i`` of ``batch_size`` rows is row ``i % block`` of ``<folder>/b<batch_size>_<i // block>.npy``
    ([block, batch_size, d] float32), written atomically the first time any batch of the block is asked
    for and read back after that: the same tensor, bit for bit, as ``source.batch(i, batch_size)``.
    Other batch sizes, and indices from ``stored_below`` on (held-out samples, resampling pools), go to
    the source unchanged. Why: the synthetic source costs about 7 ms to draw a batch of 256 (a uniform
    number per row and true feature), about 9 s per 1,200-step family, and the report trains several
    families on its first batches; read back, a batch costs a fraction of a millisecond. Everything
    else is the source's.
    """

    def __init__(self, source: Any, folder: str | os.PathLike, batch_size: int, block: int = 64,
                 stored_below: int = 10**6) -> None:
        if batch_size <= 0 or block <= 0:
            raise ValueError(f"batch_size and block must be positive, got {batch_size} and {block}")
        self.source, self.folder = source, Path(folder)
        self.batch_size, self.block, self.stored_below = batch_size, block, stored_below
        self._loaded: tuple[int, np.ndarray] | None = None  # (block index, its batches)

    def __getattr__(self, name: str) -> Any:  # d_in, describe, true_features, ...: the source's
        if name == "source":  # not set yet (copy, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.source, name)

    def _block(self, b: int) -> np.ndarray:
        if self._loaded is None or self._loaded[0] != b:
            path = self.folder / f"b{self.batch_size}_{b:06d}.npy"
            if path.is_file():
                rows = np.load(path)
            else:
                first = b * self.block
                rows = torch.stack([self.source.batch(first + j, self.batch_size)
                                    for j in range(min(self.block, self.stored_below - first))]).numpy()
                save_npy_atomic(path, rows)
            self._loaded = (b, rows)
        return self._loaded[1]

    def batch(self, index: int, batch_size: int) -> torch.Tensor:
        if batch_size != self.batch_size or not 0 <= index < self.stored_below:
            return self.source.batch(index, batch_size)
        b, i = divmod(index, self.block)
        return torch.from_numpy(self._block(b)[i].copy())
