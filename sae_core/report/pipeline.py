"""From a chapter's parameters to a trained, cached family of dictionaries.

Every chapter calls :func:`ensure_family` with its parameters. The family is cached
under ``<cache>/families/<key>/``, where the key hashes every parameter that affects
the dictionaries (plus the package version), so chapters share one training run and a
changed parameter never reuses stale dictionaries. Training resumes from its
checkpoint if it was interrupted, and a run that differs from a cached one only by more
``n_steps`` continues from that run's final checkpoint (the methods chapter's check at
twice the training costs the extra steps only).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sae_core import __version__
from sae_core.io import cache_root, save_npy_atomic, stage
from sae_core.sae import SparseAutoencoder, load_family
from sae_core.sources.store import StoredStream
from sae_core.sources.synthetic import SyntheticConfig, SyntheticSource
from sae_core.train import CHECKPOINT_DIR, FAMILY_FILE, TrainConfig, family_is_complete, load_latent_stats, train_family

# Notebook parameters that decide the dictionaries. ``synthetic`` and ``lm`` are dicts
# of overrides for the source's config (SyntheticConfig / LMSourceConfig).
TRAIN_KEYS = ("sizes", "n_steps", "batch_size", "lr", "l1_coeff", "seed", "resample_every", "use_b_dec", "init")
# Added later, and part of a family's parameters only when not at their defaults, so that the
# keys of families cached before they existed stay valid.
OPTIONAL_TRAIN_KEYS = ("normalize_activations", "resample_pool", "activation", "k", "aux_k", "aux_coeff", "dead_window",
                       "lr_warmup", "lr_decay", "threshold_beta", "l0_coeff", "jump_bandwidth", "jump_init")
TOPK_STEP = 2  # version of the fused TopK step's summation order (enters TopK families' cache keys)
FAMILY_KEYS = ("source", *TRAIN_KEYS, *OPTIONAL_TRAIN_KEYS, "synthetic", "lm")


def family_params(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The family-defining parameters of a notebook's namespace (``globals()``), canonicalised:
    sizes sorted, and the source's overrides completed with its config defaults, so equal
    settings give equal cache keys however they were written."""
    if namespace.get("source") == "dictionaries":
        return _dictionaries_params(namespace)
    params = {k: namespace[k] for k in FAMILY_KEYS if k in namespace}
    source = params.get("source")
    if source not in ("synthetic", "lm"):
        raise ValueError(f"unknown source {source!r}; use 'synthetic', 'lm' or 'dictionaries'")
    if "sizes" not in params:
        raise ValueError("the parameters must list the dictionary sizes ('sizes')")
    params["sizes"] = sorted(int(s) for s in params["sizes"])
    defaults = TrainConfig().to_dict()
    for key in TRAIN_KEYS:  # an unset training parameter is its default: equal settings, equal keys
        params.setdefault(key, defaults[key])
    for key in OPTIONAL_TRAIN_KEYS:
        if key in params and params[key] == defaults[key]:
            del params[key]
    if isinstance(params.get("k"), Mapping):  # TopK's k per size: {size: k}, sizes as integers, in order
        params["k"] = {int(s): int(v) for s, v in sorted(params["k"].items(), key=lambda kv: int(kv[0]))}
    # resampling draws from a pool (issue 18): a resampling family keys its pool size, so no cache of the
    # old batch-drawn resampling is reused; without resampling the pool changes nothing and stays out
    if params["resample_every"]:
        params.setdefault("resample_pool", defaults["resample_pool"])
    else:
        params.pop("resample_pool", None)
    if params.get("activation") == "topk":
        # the TopK step's sums run in another order since the latent-major kernels (1e-6 per step,
        # chaotic over 1,200 steps): a TopK family of the earlier step is not reused as this one's
        params["topk_step"] = TOPK_STEP
    overrides = dict(params.pop("synthetic", None) or {}), dict(params.pop("lm", None) or {})
    if source == "synthetic":
        params["synthetic"] = dataclasses.asdict(SyntheticConfig(**overrides[0]))
    else:
        from sae_core.sources.lm_source import LMSourceConfig

        params["lm"] = dataclasses.asdict(LMSourceConfig(**overrides[1]))
    return params


def _dictionaries_params(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """``source: dictionaries``: a family read from folders in any supported layout
    (:func:`sae_core.formats.load_dictionary`), optionally with the language model and site
    (``lm``) to read activations from. Each folder's files (names, sizes, times) enter the key,
    so a changed folder is never taken for the old one."""
    folders = namespace.get("dictionaries")
    if not folders or isinstance(folders, str):
        raise ValueError("source 'dictionaries' needs `dictionaries`: a list of folders, one dictionary each")
    paths = []
    for folder in folders:
        path = Path(folder).expanduser().resolve()
        if not path.is_dir():
            raise FileNotFoundError(f"dictionary folder {folder!r} does not exist")
        paths.append(str(path))
    stamp = [[str(f.relative_to(p)), f.stat().st_size, int(f.stat().st_mtime)]
             for p in map(Path, paths) for f in sorted(Path(p).rglob("*")) if f.is_file()]
    params: dict[str, Any] = {"source": "dictionaries", "dictionaries": paths, "files": stamp}
    lm = namespace.get("lm") or {}
    if lm:
        from sae_core.sources.lm_source import LMSourceConfig

        params["lm"] = dataclasses.asdict(LMSourceConfig(**lm))
        params["seed"] = namespace.get("seed", 0)
    return params


def family_key(params: Mapping[str, Any]) -> str:
    blob = json.dumps({"params": dict(params), "version": __version__}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def train_config(params: Mapping[str, Any], progress: bool = True) -> TrainConfig:
    kwargs = {k: params[k] for k in (*TRAIN_KEYS, *OPTIONAL_TRAIN_KEYS) if k in params}
    kwargs["sizes"] = tuple(kwargs["sizes"])
    if isinstance(kwargs.get("k"), Mapping):
        kwargs["k"] = {int(s): int(v) for s, v in kwargs["k"].items()}
    return TrainConfig(progress=progress, **kwargs)


def build_source(params: Mapping[str, Any], progress: bool = True):
    """The activation source the parameters describe (extracting LM activations if needed)."""
    if params["source"] == "synthetic":
        return SyntheticSource(SyntheticConfig(**params["synthetic"]))
    from sae_core.sources.lm_source import lm_source  # heavy imports only when needed

    return lm_source(params, progress=progress)


@dataclass
class Family:
    params: dict[str, Any]
    key: str
    path: Path
    saes: dict[int, SparseAutoencoder]
    history: list[dict[str, float]]
    source: Any  # SyntheticSource (with ground truth) or an LM activation source
    memo: dict[Any, Any] = field(default_factory=dict, repr=False)  # per-family results a chapter reuses

    @property
    def sizes(self) -> list[int]:
        return sorted(self.saes)

    @property
    def d_in(self) -> int:
        return next(iter(self.saes.values())).cfg.d_in

    def features(self, size: int) -> torch.Tensor:
        if size not in self.saes:
            raise KeyError(f"no dictionary of size {size}; this family has {self.sizes}")
        return self.saes[size].features

    @property
    def true_features(self) -> torch.Tensor | None:
        return getattr(self.source, "true_features", None)

    def subset(self, sizes) -> Family:
        """The same family restricted to ``sizes`` (each dictionary trained independently of the others)."""
        missing = sorted(set(sizes) - set(self.saes))
        if missing:
            raise KeyError(f"sizes {missing} are not in this family ({self.sizes})")
        keep = sorted(set(sizes))
        return Family({**self.params, "sizes": keep}, self.key, self.path, {s: self.saes[s] for s in keep},
                      [r for r in self.history if r["d_sae"] in keep], self.source, self.memo)

    @property
    def latent_stats(self) -> dict[int, dict[str, torch.Tensor]] | None:
        """Per latent of each size, recorded during training: steps fired in, last step fired,
        cosine of the final decoder row with the initial one (see ``train.latent_stats``)."""
        if "latent_stats" not in self.memo:
            self.memo["latent_stats"] = load_latent_stats(self.path)
        return self.memo["latent_stats"]

    @property
    def activation_scale(self) -> float:
        """The constant the family's training multiplied activations by (1 unless normalised)."""
        if "activation_scale" not in self.memo:
            info = json.loads((self.path / FAMILY_FILE).read_text()) if (self.path / FAMILY_FILE).is_file() else {}
            self.memo["activation_scale"] = float(info.get("activation_scale", 1.0))
        return self.memo["activation_scale"]

    @property
    def has_activations(self) -> bool:
        """False for dictionaries read without a model and site: no firing, dead-latent or tree analysis."""
        return self.source is not None

    @property
    def heldout_available(self) -> int | None:
        """Held-out activations there are: rows of the documents the SAEs never trained on for a
        language model; None (unlimited) for the synthetic source, which draws fresh samples."""
        if self.source is None:
            return 0
        store = getattr(self.source, "heldout", None)
        return len(store) if store is not None else None

    def heldout_n(self, n: int) -> int:
        """How many held-out activations a request for ``n`` gets: ``n``, or all there are."""
        available = self.heldout_available
        return n if available is None else min(n, available)

    def sample(self, n: int) -> torch.Tensor:
        """The first ``n`` held-out activations in one fixed order (so a smaller sample is a prefix
        of a larger one; capped at what there is, see :meth:`heldout_n`), scaled as in training.
        Synthetic: fresh samples, batches of 4096 from index 10**6 of the stream, which training
        never reaches. Language model: rows of held-out documents (``lm.heldout_share``), in a seeded
        shuffled order."""
        if self.source is None:
            raise NoActivations("these dictionaries were read without a model and site to take activations from; "
                                "set `lm` (model, site, corpus) to get firing, dead-latent and tree analyses")
        store = getattr(self.source, "heldout", None)
        if n <= 0:
            raise ValueError(f"need a positive number of held-out activations, got {n}")
        if store is None:  # fresh batches of 4096 from index 10**6: a smaller sample is a prefix of a larger
            return synthetic_heldout(self.source, n) * self.activation_scale
        order = self.heldout_order()[: self.heldout_n(n)]
        rows = np.sort(order)  # memory-mapped reads in row order, then back to the fixed order
        return torch.from_numpy(_gather(store, rows)[np.searchsorted(rows, order)]) * self.activation_scale

    def heldout_order(self) -> np.ndarray:
        """The fixed, seeded order of the held-out store's rows that :meth:`sample` takes prefixes of."""
        if "heldout_order" not in self.memo:
            store = self.source.heldout
            self.memo["heldout_order"] = np.random.default_rng([int(self.params.get("seed", 0)), 7]).permutation(
                len(store))
        return self.memo["heldout_order"]


def synthetic_heldout(source, n: int) -> torch.Tensor:
    """The first ``n`` held-out rows of a synthetic source (batches of 4096 from index 10**6 of its stream,
    which training never reaches), unscaled. Drawing them costs seconds per 100k rows (a uniform number
    per row and true feature), and every chapter asks for the same rows of the same few sources: the
    largest draw so far is stored under the cache (``heldout/synthetic_<key>.npy``) and sliced."""
    n_batches = -(-n // 4096)
    path = cache_root() / "heldout" / f"synthetic_{_source_key(source)}.npy"
    if path.is_file():
        stored = np.load(path, mmap_mode="r")
        if len(stored) >= n:
            return torch.from_numpy(np.array(stored[:n]))
    rows = torch.cat([source.batch(10**6 + i, 4096) for i in range(n_batches)])  # [n_batches * 4096, d]
    save_npy_atomic(path, rows.numpy())
    return rows[:n].clone()


def _source_key(source) -> str:
    blob = json.dumps({"source": source.describe(), "version": __version__}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def training_stream(source, params: Mapping[str, Any]):
    """What a family trains on: a synthetic source's batches drawn once per cache and read back by every
    family that trains on them (:class:`~sae_core.sources.store.StoredStream`, under
    ``streams/<source key>/``); a language model's store as it is."""
    if params["source"] != "synthetic":
        return source
    return StoredStream(source, cache_root() / "streams" / _source_key(source), int(params["batch_size"]))


def _gather(store, rows: np.ndarray) -> np.ndarray:
    """Rows ``rows`` (sorted) of a store, read shard by shard."""
    out = np.empty((len(rows), store.d), np.float32)
    for i in range(len(store.shards)):
        lo, hi = int(store.offsets[i]), int(store.offsets[i + 1])
        sel = (rows >= lo) & (rows < hi)
        if sel.any():
            out[sel] = store.shards[i][rows[sel] - lo]
    return out


def ensure_family(params: Mapping[str, Any], progress: bool = True) -> Family:
    """Load the cached family for ``params``, training (or resuming) it first if needed."""
    params = dict(params)
    key = family_key(params)
    path = cache_root() / "families" / key
    if params["source"] == "dictionaries":
        return _load_dictionaries(params, key, path, progress)
    source = build_source(params, progress=progress)
    if not family_is_complete(path):
        path.mkdir(parents=True, exist_ok=True)
        (path / "params.json").write_text(json.dumps(params, indent=2, sort_keys=True))
        start = time.perf_counter()
        prefix = _shorter_run(params)
        if prefix is not None and not (path / CHECKPOINT_DIR / "meta.json").is_file():
            steps, folder = prefix
            shutil.copytree(folder / CHECKPOINT_DIR, path / CHECKPOINT_DIR, dirs_exist_ok=True)
            stage(f"family {key}: continuing from the {steps}-step run {folder.name} of the same settings")
        stage(f"family {key}: training sizes {params['sizes']} for {params['n_steps']} steps on {params['source']}")
        train_family(training_stream(source, params), train_config(params, progress), out_dir=path)
        stage(f"family {key}: trained in {time.perf_counter() - start:.0f} s")
    saes = load_family(path)
    if sorted(saes) != sorted(params["sizes"]):
        raise RuntimeError(f"cache {path} holds sizes {sorted(saes)}, expected {params['sizes']}")
    history = json.loads((path / "history.json").read_text())
    return Family(params, key, path, saes, history, source)


def _shorter_run(params: Mapping[str, Any]) -> tuple[int, Path] | None:
    """(n_steps, folder) of the cached family whose training is the first steps of the run ``params`` asks for: same
    settings but fewer ``n_steps``, with its final checkpoint kept. With a constant learning rate
    and the same batches, steps 1..n of a longer run are that run exactly, so a longer run (the
    convergence check) continues from it. Not with resampling or a decaying learning rate, whose schedules
    depend on n_steps."""
    if params.get("resample_every") or params.get("lr_decay"):
        return None
    wanted = json.loads(json.dumps(dict(params)))  # as params.json holds it (tuples become lists)
    best: tuple[int, Path] | None = None
    for candidate in (cache_root() / "families").glob("*/params.json"):
        try:
            other = json.loads(candidate.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        steps = other.get("n_steps", 0)
        if not (0 < steps < params["n_steps"]) or {**other, "n_steps": params["n_steps"]} != wanted:
            continue
        folder = candidate.parent
        meta = folder / CHECKPOINT_DIR / "meta.json"
        if (family_is_complete(folder) and meta.is_file() and json.loads(meta.read_text()).get("step") == steps
                and (best is None or steps > best[0])):
            best = (steps, folder)
    return best


def companion_family(family: Family, overrides: Mapping[str, Any] | None, progress: bool = True) -> Family | None:
    """The family to read ground truth from: ``family`` itself when its source has true features;
    else, with ``overrides`` (e.g. ``{"source": "synthetic"}``), a family with the same training
    settings and sizes on that source (trained or loaded from the cache); else None."""
    if family.true_features is not None:
        return family
    if not overrides:
        return None
    return ensure_family(companion_params(family.params, overrides), progress=progress)


def companion_params(params: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The companion's family parameters: ``params`` with ``overrides``, canonicalised (family_params
    keeps only the chosen source's settings, so the other source's block is dropped)."""
    return family_params(merge_overrides(params, overrides))


def merge_overrides(params: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``overrides`` over family ``params``; nested source settings (``synthetic``, ``lm``) merge key by key."""
    out = dict(params)
    for key, value in overrides.items():
        if key in ("synthetic", "lm") and isinstance(value, Mapping):
            out[key] = {**(out.get(key) or {}), **value}
        else:
            out[key] = value
    return out


class NoActivations(ValueError):
    """Raised when a family read from dictionaries has no model and site to read activations from."""


def _load_dictionaries(params: dict[str, Any], key: str, path: Path, progress: bool) -> Family:
    from sae_core.formats import load_dictionary

    saes: dict[int, SparseAutoencoder] = {}
    for folder in params["dictionaries"]:
        sae = load_dictionary(folder)
        size = sae.cfg.d_sae
        if size in saes:
            raise ValueError(f"two dictionaries of width {size} ({folder} and an earlier one): a family needs "
                             "distinct sizes")
        saes[size] = sae
    widths = {s.cfg.d_in for s in saes.values()}
    if len(widths) != 1:
        raise ValueError(f"the dictionaries read activations of different widths {sorted(widths)}")
    if len(saes) < 2:
        raise ValueError("a family needs at least two dictionaries of different sizes")
    path.mkdir(parents=True, exist_ok=True)
    (path / "params.json").write_text(json.dumps(params, indent=2, sort_keys=True))
    source = None
    if "lm" in params:
        from sae_core.sources.lm_source import lm_source

        source = lm_source(params, progress=progress)
    stage(f"family {key}: {len(saes)} dictionaries read ({sorted(saes)}), "
          + ("activations from the model's site" if source is not None else "no activations"))
    return Family({**params, "sizes": sorted(saes)}, key, path, dict(sorted(saes.items())), [], source)
