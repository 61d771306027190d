"""Language-model activations for the report: corpus -> (GPT) -> nnsight -> store -> source.

``lm_source(params)`` is what :func:`sae_core.report.pipeline.build_source` calls for
``source = "lm"``. Every stage is cached under ``<cache>/`` by a hash of the settings
that shape it: the replication GPT under ``gpt/``, extracted activations under
``activations/``. Extract once; the whole family trains from the store.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import itertools
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm  # text bars: papermill streams them from the kernel to the terminal (make book)

from sae_core.device import resolve_device
from sae_core.io import REPO_ROOT, cache_root, stage
from sae_core.sources import nnsight_sites as lm_sites
from sae_core.sources.store import ActivationStore, StoreSource, StoreWriter

REPLICATION_GPT = "replication-gpt"
# WikiText-2 (validation + test splits, CC BY-SA 3.0, Merity et al. 2016), vendored so the
# language-model path runs offline on real English; see data/README.md.
VENDORED_CORPUS = REPO_ROOT / "data" / "wikitext2.txt.gz"


@dataclass(frozen=True)
class LMSourceConfig:
    model: str = REPLICATION_GPT  # "replication-gpt" (trained here), a hub id, or a local HF folder
    corpus: str = "Skylion007/openwebtext"  # local .txt/.txt.gz file or folder, or a HF dataset id (needs network)
    text_field: str = "text"  # column of a HF dataset that holds the text
    site: str = "blocks.2.mlp.hook_post"  # TransformerLens hook name, or a module path
    context: int = 128  # tokens per row
    batch_size: int = 32  # rows per forward pass
    tokens: int = 1_000_000  # activations to extract (after masking)
    skip_first: bool = True  # drop each row's first token (attention-sink outliers)
    max_documents: int = 200_000  # documents read from the corpus (GPT + tokenizer training)
    # Share of the corpus's documents held out from SAE training (chosen by a hash of each
    # document's index): every held-out figure (firing density, FVE, loss recovered) reads them.
    # The GPT itself trains on every document; the SAEs never see a held-out one.
    heldout_share: float = 0.5
    heldout_tokens: int = 1_000_000  # at most this many held-out activations are extracted
    gpt_steps: int = 3000  # replication GPT: optimizer steps
    gpt_batch_size: int = 64
    vocab_size: int = 4096
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        for name in ("context", "batch_size", "tokens", "max_documents", "gpt_steps", "gpt_batch_size", "vocab_size",
                     "heldout_tokens"):
            if getattr(self, name) <= 0:
                raise ValueError(f"LMSourceConfig.{name} must be positive")
        if not 0.0 < self.heldout_share < 1.0:
            raise ValueError(f"LMSourceConfig.heldout_share must be in (0, 1), got {self.heldout_share}")


def is_heldout(index: int, share: float) -> bool:
    """Whether document ``index`` (0-based, in corpus order) is held out from SAE training: a hash
    of the index below ``share``, so the split needs no pass over the corpus and interleaves
    the two parts through it."""
    digest = hashlib.blake2b(str(index).encode(), digest_size=8, person=b"sae-heldout").digest()
    return int.from_bytes(digest, "big") / 2.0**64 < share


def split_documents(documents: Iterator[str], share: float, heldout: bool) -> Iterator[tuple[int, str]]:
    """(corpus index, text) of the documents in one part of the split."""
    for index, doc in enumerate(documents):
        if is_heldout(index, share) == heldout:
            yield index, doc


def _key(data: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


TEXT_SUFFIXES = (".txt", ".txt.gz")  # plain or gzip-compressed UTF-8 text, one document per line


def _looks_like_path(corpus: str) -> bool:
    return (corpus.startswith((".", "/", "~")) or corpus.endswith((*TEXT_SUFFIXES, ".md")) or Path(corpus).exists()
            or (REPO_ROOT / corpus).exists())


def iter_documents(corpus: str, text_field: str = "text", limit: int | None = None) -> Iterator[str]:
    """Non-empty documents (at most ``limit``) of a local text file (one per line; ``.gz`` files
    are decompressed on the fly), a folder of .txt and .txt.gz files, or a Hugging Face dataset
    streamed from the hub."""
    texts = _local_texts(corpus) if _looks_like_path(corpus) else _hub_texts(corpus, text_field)
    yield from itertools.islice((t.strip() for t in texts if t.strip()), limit)


def _local_texts(corpus: str) -> Iterator[str]:
    path = Path(corpus).expanduser()
    if not path.exists() and not path.is_absolute() and (REPO_ROOT / path).exists():
        path = REPO_ROOT / path  # a repository-relative path (data/...) works from any working directory
    if not path.exists():
        raise FileNotFoundError(f"corpus file or folder {path} does not exist")
    files = sorted(f for suffix in TEXT_SUFFIXES for f in path.glob(f"**/*{suffix}")) if path.is_dir() else [path]
    if not files:
        raise FileNotFoundError(f"corpus folder {path} holds no .txt or .txt.gz files")
    for file in files:
        # gzip.open in text mode yields the same lines (universal newlines) as open() on the plain file
        opener = gzip.open if file.name.endswith(".gz") else open
        with opener(file, "rt", encoding="utf-8") as fh:
            yield from fh


def _hub_texts(corpus: str, text_field: str) -> Iterator[str]:
    try:
        import datasets

        for row in datasets.load_dataset(corpus, split="train", streaming=True):
            yield row[text_field]
    except (ConnectionError, OSError, ValueError) as err:
        raise ConnectionError(
            f"could not stream the dataset {corpus!r} from the Hugging Face hub ({type(err).__name__}: {err}). "
            "This needs a network connection; offline, pass a local text file or folder as the corpus."
        ) from err


def token_batches(tokenizer, documents: Iterator[str], context: int, batch_size: int
                  ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Rows of at most ``context`` tokens (long documents are cut into several), right-padded
    per batch; yields (input_ids [B, T], attention_mask [B, T])."""
    for ids, mask, _, _ in located_token_batches(tokenizer, enumerate(documents), context, batch_size):
        yield ids, mask


def located_token_batches(tokenizer, documents: Iterator[tuple[int, str]], context: int, batch_size: int
                          ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """As :func:`token_batches` over (corpus index, text) pairs, also yielding where each row
    comes from: (input_ids [B, T], attention_mask [B, T], document index [B], first token's
    position in the document [B])."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rows: list[tuple[list[int], int, int]] = []

    def emit(chunk: list[tuple[list[int], int, int]]):
        ids, mask = _pad([r[0] for r in chunk], pad)
        return ids, mask, torch.tensor([r[1] for r in chunk]), torch.tensor([r[2] for r in chunk])

    for index, doc in documents:
        ids = tokenizer(doc)["input_ids"]
        rows.extend((ids[i : i + context], index, i) for i in range(0, len(ids), context))
        while len(rows) >= batch_size:
            yield emit(rows[:batch_size])
            rows = rows[batch_size:]
    if rows:
        yield emit(rows)


def _pad(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids, mask


def extract_activations(lm, site: lm_sites.Site, batches: Iterator[tuple[torch.Tensor, ...]],
                        store_path: Path, meta: dict[str, Any], tokens: int, skip_first: bool,
                        device: torch.device, progress: bool = True,
                        on_batch: Callable[[int], None] | None = None) -> ActivationStore:
    """Run ``lm`` over ``batches`` and store the site's activations at real tokens.

    Batches are (input_ids, attention_mask) or, from :func:`located_token_batches`, also
    (document index, first position) per row: then the store keeps each activation's token id,
    document and position in the document (columns ``token_id``, ``doc``, ``pos``).
    Resumes an interrupted ``.partial`` store: batches already stored are skipped (the
    batch order is deterministic). ``on_batch(i)`` runs after batch ``i`` (tests use it).
    """
    writer: StoreWriter | None = None
    bar = tqdm(total=tokens, disable=not progress, desc=f"extract {site.name}", unit="tok")
    for i, batch in enumerate(batches):
        ids, mask = batch[0], batch[1]
        if writer is not None and i < writer.cursor:
            continue
        acts = lm_sites.read_site(lm, site, ids.to(device), mask.to(device))
        keep_cpu = lm_sites.token_mask(mask, skip_first)
        keep = keep_cpu.to(acts.device)
        rows = acts[keep].float().cpu()  # [n_kept, d]
        columns = None
        if len(batch) == 4:  # where each kept activation sits in the corpus
            doc, start = batch[2], batch[3]
            positions = start[:, None] + torch.arange(ids.shape[1])[None, :]  # [B, T]
            columns = {"token_id": ids[keep_cpu].numpy(), "doc": doc[:, None].expand_as(ids)[keep_cpu].numpy(),
                       "pos": positions[keep_cpu].numpy()}
        if writer is None:
            writer = StoreWriter(store_path, rows.shape[1], meta)
            bar.update(writer.rows)
            if i < writer.cursor:
                continue
        rows = rows[: tokens - writer.rows]
        if columns is not None:
            columns = {k: v[: len(rows)] for k, v in columns.items()}
        writer.add(rows, cursor=i + 1, columns=columns)
        bar.update(len(rows))
        if on_batch is not None:
            on_batch(i)
        if writer.rows >= tokens:
            break
    bar.close()
    if writer is None:
        raise ValueError("the corpus produced no batches: nothing to extract")
    return ActivationStore(writer.close())


def _gpt_dir(cfg: LMSourceConfig, cache: Path) -> Path:
    """Cache folder of the replication GPT: keyed by corpus and every GPT setting."""
    from sae_core.sources.gpt import GPTConfig, GPTTrainConfig

    settings = {"corpus": cfg.corpus, "text_field": cfg.text_field, "max_documents": cfg.max_documents,
                "gpt": dataclasses.asdict(GPTConfig(context=cfg.context, vocab_size=cfg.vocab_size)),
                "train": dataclasses.asdict(GPTTrainConfig(steps=cfg.gpt_steps, batch_size=cfg.gpt_batch_size,
                                                           seed=cfg.seed))}
    settings["train"].pop("progress")
    settings["train"].pop("device")
    return cache / "gpt" / _key(settings)


def replication_gpt(cfg: LMSourceConfig, cache: Path, progress: bool = True, load: bool = True):
    """Train (or load) the replication GPT for ``cfg``; returns (model, tokenizer, report, key).
    With ``load=False`` a trained model is not read from disk (model and tokenizer are None)."""
    from sae_core.sources.gpt import GPTConfig, GPTTrainConfig, load_gpt, train_gpt

    folder = _gpt_dir(cfg, cache)
    if not (folder / "report.json").is_file():
        start = time.perf_counter()
        stage(f"replication GPT {folder.name}: tokenizer and {cfg.gpt_steps} steps on {cfg.corpus}")
        docs = iter_documents(cfg.corpus, cfg.text_field, limit=cfg.max_documents)
        train_gpt(docs, folder, GPTConfig(context=cfg.context, vocab_size=cfg.vocab_size),
                  GPTTrainConfig(steps=cfg.gpt_steps, batch_size=cfg.gpt_batch_size, seed=cfg.seed,
                                 device=cfg.device, progress=progress))
        stage(f"replication GPT {folder.name}: trained in {time.perf_counter() - start:.0f} s")
    model, tokenizer = load_gpt(folder) if load else (None, None)
    return model, tokenizer, json.loads((folder / "report.json").read_text()), folder.name


def lm_source(params: dict[str, Any], progress: bool = True) -> StoreSource:
    """The training source for ``params['lm']``: activations extracted once, then streamed."""
    cfg = LMSourceConfig(**params["lm"])
    cache = cache_root()
    device = resolve_device(cfg.device)
    if cfg.model == REPLICATION_GPT:
        # the model itself is read from disk only when activations must be extracted
        _, _, report, model_id = replication_gpt(cfg, cache, progress, load=False)
        model_desc = {"model": REPLICATION_GPT, "model_id": model_id, "gpt_val_loss": report["val_loss"],
                      "gpt_train_tokens": report["train_tokens"]}
    else:
        model_desc = {"model": cfg.model, "model_id": cfg.model}
    site_match = lm_sites._SITE_RE.match(cfg.site)
    meta = {
        "source": "lm", **model_desc, "site": cfg.site,
        "hook_name": cfg.site if site_match else None,
        "layer": int(site_match.group(1)) if site_match else None,
        "corpus": cfg.corpus, "context": cfg.context, "tokens": cfg.tokens, "skip_first": cfg.skip_first,
        "max_documents": cfg.max_documents, "heldout_share": cfg.heldout_share, "columns": ["token_id", "doc", "pos"],
    }
    parts = {"train": (meta, cfg.tokens),
             "heldout": ({**meta, "part": "heldout", "tokens": cfg.heldout_tokens}, cfg.heldout_tokens)}
    paths = {part: cache / "activations" / _key(m) for part, (m, _) in parts.items()}
    missing = [part for part, path in paths.items() if not (path / "meta.json").is_file()]
    if missing:
        model, tokenizer = replication_gpt(cfg, cache, progress)[:2] if cfg.model == REPLICATION_GPT else (None, None)
        if model is None:
            lm = lm_sites.load_language_model(cfg.model, device=str(device))
            tokenizer = lm.tokenizer
            if tokenizer.pad_token_id is None:
                tokenizer.pad_token = tokenizer.eos_token
        else:
            lm = lm_sites.wrap(model.to(device), tokenizer)
        site = lm_sites.resolve_site(lm._model if hasattr(lm, "_model") else lm._module, cfg.site)
        for part in missing:
            part_meta, limit = parts[part]
            docs = split_documents(iter_documents(cfg.corpus, cfg.text_field, limit=cfg.max_documents),
                                   cfg.heldout_share, heldout=part == "heldout")
            batches = located_token_batches(tokenizer, docs, cfg.context, cfg.batch_size)
            start = time.perf_counter()
            stage(f"activations {paths[part].name} ({part} documents): up to {limit:,} at {cfg.site}")
            store = extract_activations(lm, site, batches, paths[part], part_meta, limit, cfg.skip_first, device,
                                        progress)
            stage(f"activations {paths[part].name}: {len(store):,} {part} rows extracted in "
                  f"{time.perf_counter() - start:.0f} s")
    source = StoreSource(ActivationStore(paths["train"]), seed=params.get("seed", 0))
    source.heldout = ActivationStore(paths["heldout"])  # documents the SAEs never train on
    return source


def gpt_report(lm_params: dict[str, Any]) -> dict[str, Any] | None:
    """The training report of the replication GPT an ``lm`` source uses (config, parameters,
    tokens seen, validation curve and loss, tokenizer), or None for another model or before it
    is trained."""
    cfg = LMSourceConfig(**lm_params)
    if cfg.model != REPLICATION_GPT:
        return None
    path = _gpt_dir(cfg, cache_root()) / "report.json"
    return json.loads(path.read_text()) if path.is_file() else None
