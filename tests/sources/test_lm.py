"""The language-model path, offline: tiny random models and a tokenizer trained on generated text."""

import gzip
import hashlib

import numpy as np
import pytest
import torch
from generated_corpus import generated_text

from sae_core.sources import nnsight_sites as lm_sites
from sae_core.sources.gpt import GPTConfig, GPTTrainConfig, build_model, load_gpt, train_gpt, train_tokenizer
from sae_core.sources.lm_source import (
    VENDORED_CORPUS,
    LMSourceConfig,
    _local_texts,
    extract_activations,
    is_heldout,
    iter_documents,
    lm_source,
    replication_gpt,
    token_batches,
)
from sae_core.sources.store import ActivationStore, StoreSource, StoreWriter


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(generated_text(300), vocab_size=120)


def tiny_neox(vocab: int):
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(0)
    cfg = GPTNeoXConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=128)
    return GPTNeoXForCausalLM(cfg).eval()


def tiny_gpt2(vocab: int):
    return build_model(GPTConfig(n_layer=2, context=64), vocab, seed=0).eval()


def hooked(model, site: lm_sites.Site, ids, mask) -> torch.Tensor:
    """The same activation through a plain PyTorch forward hook: the independent reference."""
    module = model.get_submodule(site.module_path)
    seen = {}

    def hook(mod, args, output):
        seen["value"] = args[0] if site.read == "input" else output

    handle = module.register_forward_hook(hook)
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask)
    handle.remove()
    return lm_sites._first_tensor(seen["value"])


@pytest.mark.parametrize("make_model", [tiny_neox, tiny_gpt2], ids=["gpt_neox", "gpt2"])
def test_every_site_matches_a_plain_forward_hook(tokenizer, make_model):
    model = make_model(len(tokenizer))
    lm = lm_sites.wrap(model, tokenizer)
    ids, mask = next(token_batches(tokenizer, iter(generated_text(6, seed=1)), context=24, batch_size=6))
    assert (mask == 0).any(), "the batch must contain padding for this test to mean anything"
    sites = lm_sites.available_sites(model)
    assert len(sites) == 4 * model.config.num_hidden_layers
    for name in sites:
        site = lm_sites.resolve_site(model, name)
        got = lm_sites.read_site(lm, site, ids, mask)
        want = hooked(model, site, ids, mask)
        assert got.shape == want.shape, name
        torch.testing.assert_close(got, want, rtol=0, atol=0, msg=name)
    mlp_post = lm_sites.resolve_site(model, "blocks.1.mlp.hook_post")
    assert lm_sites.read_site(lm, mlp_post, ids, mask).shape[-1] == (
        model.config.intermediate_size if hasattr(model.config, "intermediate_size") else model.config.n_inner)


def test_padding_and_first_token_are_masked(tokenizer, tmp_path):
    model = tiny_neox(len(tokenizer))
    lm = lm_sites.wrap(model, tokenizer)
    site = lm_sites.resolve_site(model, "blocks.2.hook_resid_post")
    docs = generated_text(10, seed=2)
    batches = list(token_batches(tokenizer, iter(docs), context=16, batch_size=4))
    for skip_first in (False, True):
        store = extract_activations(lm, site, iter(batches), tmp_path / f"s{skip_first}", {"t": skip_first},
                                    tokens=10**6, skip_first=skip_first, device=torch.device("cpu"), progress=False)
        expected = []
        for ids, mask in batches:
            full = hooked(model, site, ids, mask)
            keep = lm_sites.token_mask(mask, skip_first)
            expected.append(full[keep])
        expected = torch.cat(expected).numpy()
        n_real = sum(int(m.sum()) for _, m in batches)
        n_rows = sum(m.shape[0] for _, m in batches)
        assert len(store) == n_real - (n_rows if skip_first else 0)
        np.testing.assert_array_equal(store.rows(0, len(store)), expected)


def test_unknown_site_lists_valid_ones(tokenizer):
    model = tiny_neox(len(tokenizer))
    with pytest.raises(ValueError, match=r"blocks\.0\.mlp\.hook_post.*blocks\.2\.hook_resid_post"):
        lm_sites.resolve_site(model, "blocks.0.hook_nonsense")
    with pytest.raises(ValueError, match="has 3 layers"):
        lm_sites.resolve_site(model, "blocks.7.hook_mlp_out")
    raw = lm_sites.resolve_site(model, "gpt_neox.layers.1.mlp.act")
    assert raw.read == "output" and raw.layer is None


def test_store_round_trip_and_shuffled_epochs(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.normal(size=(2300, 5)).astype(np.float32)
    writer = StoreWriter(tmp_path / "store", 5, {"model": "x"}, shard_rows=500)
    for i in range(0, 2300, 230):
        writer.add(data[i : i + 230], cursor=i // 230 + 1)
    store = ActivationStore(writer.close())
    assert len(store) == 2300 and store.meta["model"] == "x" and len(store.shards) == 4  # 690, 690, 690, 230 rows
    np.testing.assert_array_equal(store.rows(0, 2300), data)
    np.testing.assert_array_equal(store.rows(480, 1020), data[480:1020])
    source = StoreSource(store, seed=3, block_rows=64, blocks_per_buffer=5)
    epoch = torch.cat([source.batch(i, 100) for i in range(23)]).numpy()
    assert sorted(map(tuple, epoch)) == sorted(map(tuple, data))  # every row exactly once per epoch
    assert not np.array_equal(epoch, data)
    again = StoreSource(store, seed=3, block_rows=64, blocks_per_buffer=5)
    assert torch.equal(again.batch(31, 77), source.batch(31, 77))
    with pytest.raises(FileNotFoundError, match="not a finished activation store"):
        ActivationStore(tmp_path / "nothing")


def test_interrupted_extraction_resumes_to_the_same_store(tokenizer, tmp_path):
    model = tiny_gpt2(len(tokenizer))
    lm = lm_sites.wrap(model, tokenizer)
    site = lm_sites.resolve_site(model, "blocks.1.mlp.hook_post")
    docs = generated_text(80, seed=3)

    def run(path, on_batch=None):
        batches = token_batches(tokenizer, iter(docs), context=16, batch_size=4)
        return extract_activations(lm, site, batches, path, {"m": 1}, tokens=1500, skip_first=True,
                                   device=torch.device("cpu"), progress=False, on_batch=on_batch)

    reference = run(tmp_path / "ref")

    def crash(i: int) -> None:
        if i == 12:
            raise KeyboardInterrupt

    # small shards so that some are complete when the crash comes
    import sae_core.sources.store as store_mod

    original = store_mod.StoreWriter.__init__

    def small_shards(self, path, d, meta, shard_rows=65536):
        original(self, path, d, meta, shard_rows=100)

    store_mod.StoreWriter.__init__ = small_shards
    try:
        with pytest.raises(KeyboardInterrupt):
            run(tmp_path / "resumed", on_batch=crash)
        assert not (tmp_path / "resumed" / "meta.json").exists()
        assert (tmp_path / "resumed.partial" / "progress.json").exists()
        forwarded = []
        resumed = run(tmp_path / "resumed", on_batch=forwarded.append)
    finally:
        store_mod.StoreWriter.__init__ = original
    assert forwarded[0] > 0  # the stored batches were not run again
    assert len(resumed) == len(reference) == 1500
    np.testing.assert_array_equal(resumed.rows(0, 1500), reference.rows(0, 1500))


def test_replication_gpt_loss_falls(tmp_path):
    docs = generated_text(400, seed=4)
    cfg = GPTConfig(context=32, vocab_size=150)
    report = train_gpt(docs, tmp_path, cfg, GPTTrainConfig(steps=60, batch_size=16, eval_every=20, warmup=5,
                                                            progress=False))
    vals = [e["val_loss"] for e in report["evals"]]
    assert len(vals) == 3 and vals[-1] < vals[0] - 0.5
    model, _tok = load_gpt(tmp_path)
    assert model.config.n_layer == 6 and model.config.n_embd == 32 and model.config.n_head == 4
    assert model.config.n_inner == 128
    site = lm_sites.resolve_site(model, "blocks.2.mlp.hook_post")
    assert site.module_path == "transformer.h.2.mlp.c_proj" and site.read == "input"


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "reference"])
def test_replication_gpt_resumes_to_the_same_weights(tmp_path, monkeypatch, fused):
    import sae_core.sources.gpt as gpt_mod

    docs = generated_text(200, seed=5)
    cfg = GPTConfig(context=16, vocab_size=120)
    tcfg = GPTTrainConfig(steps=20, batch_size=8, eval_every=10, warmup=2, checkpoint_every=10, progress=False,
                          fused=fused)
    reference = train_gpt(docs, tmp_path / "a", cfg, tcfg)

    real_evaluate = gpt_mod.evaluate
    calls = []

    def evaluate_then_die(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the step-20 evaluation, after the step-10 checkpoint
            raise KeyboardInterrupt
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(gpt_mod, "evaluate", evaluate_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_gpt(docs, tmp_path / "b", cfg, tcfg)
    monkeypatch.setattr(gpt_mod, "evaluate", real_evaluate)
    assert not (tmp_path / "b" / "report.json").exists()
    resumed = train_gpt(docs, tmp_path / "b", cfg, tcfg)
    a, _ = load_gpt(tmp_path / "a")
    b, _ = load_gpt(tmp_path / "b")
    for name, tensor in a.state_dict().items():
        assert torch.equal(tensor, b.state_dict()[name]), name
    assert resumed["evals"] == reference["evals"]


def test_corpus_errors_name_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list(iter_documents(str(tmp_path / "missing.txt")))
    (tmp_path / "c.txt").write_text("first line\n\n second line \n")
    assert list(iter_documents(str(tmp_path / "c.txt"))) == ["first line", "second line"]


def test_gzip_corpus_reads_like_plain_text(tmp_path):
    text = "first line\n\n second line \r\nthird, café\n" + "\n".join(generated_text(50, seed=8)) + "\n"
    plain, packed = tmp_path / "plain", tmp_path / "packed"
    plain.mkdir()
    packed.mkdir()
    (plain / "a.txt").write_bytes(text.encode())
    (plain / "b.txt").write_bytes(b"last document\n")
    (packed / "a.txt.gz").write_bytes(gzip.compress(text.encode(), mtime=0))
    (packed / "b.txt").write_bytes(b"last document\n")  # folders may mix plain and compressed files
    docs = list(iter_documents(str(plain)))
    assert docs[:3] == ["first line", "second line", "third, café"] and docs[-1] == "last document"
    assert list(iter_documents(str(packed))) == docs
    assert list(iter_documents(str(packed / "a.txt.gz"))) == docs[:-1]
    assert list(iter_documents(str(packed / "a.txt.gz"), limit=2)) == docs[:2]
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no \.txt or \.txt\.gz files"):
        list(iter_documents(str(tmp_path / "empty")))


def test_vendored_wikitext2_is_read_whole_and_trains_a_tokenizer():
    """data/wikitext2.txt.gz (in the repository, see data/README.md) as the corpus."""
    raw = gzip.decompress(VENDORED_CORPUS.read_bytes())
    assert hashlib.sha256(raw).hexdigest() == "ee8e179331812a9025fac9f2602faeb12e773d051d55ee6e50ce15da3bc784c1"
    text = raw.decode("utf-8")
    assert len(raw) == 2_378_130 and len(text) == 2_375_210  # bytes, characters: a few non-ASCII ones
    assert "".join(_local_texts(str(VENDORED_CORPUS))) == text  # nothing lost or added by the reader
    docs = list(iter_documents(str(VENDORED_CORPUS)))
    assert len(docs) == 5352 == sum(1 for line in text.splitlines() if line.strip())
    assert docs[0] == "= Homarus gammarus =" and docs[1].startswith("Homarus gammarus , known as the European lobster")
    tok = train_tokenizer(docs[:300], vocab_size=1024)
    assert tok.decode(tok(docs[1])["input_ids"]) == docs[1]
    held_out = docs[300:600]
    n_tokens = sum(len(tok(d)["input_ids"]) for d in held_out)
    assert n_tokens < 0.5 * sum(map(len, held_out))  # merges that carry over to unseen English (bytes: >= 1 per char)


def test_lm_source_end_to_end_offline(tmp_path, monkeypatch):
    """replication GPT on a local file -> nnsight extraction -> store -> a trained SAE family."""
    monkeypatch.setenv("SAE_REPORT_CACHE", str(tmp_path / "cache"))
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(generated_text(300, seed=6)))
    from sae_core.report.pipeline import ensure_family, family_params

    params = family_params({
        "source": "lm", "sizes": [64, 128], "n_steps": 30, "batch_size": 64, "seed": 0,
        "lm": {"corpus": str(corpus), "context": 32, "tokens": 3000, "gpt_steps": 30, "gpt_batch_size": 8,
               "vocab_size": 150, "batch_size": 8},
    })
    family = ensure_family(params, progress=False)
    assert family.d_in == 128  # blocks.2.mlp.hook_post of the replication GPT
    prov = family.saes[64].cfg.provenance
    assert prov["hook_name"] == "blocks.2.mlp.hook_post" and prov["layer"] == 2
    assert prov["model"] == "replication-gpt" and prov["tokens"] == 3000
    assert np.isfinite(prov["gpt_val_loss"])
    source = lm_source(params, progress=False)  # second call reuses the store
    assert len(source) == 3000

    # held-out means held out: the two stores come from disjoint documents, chosen by is_heldout
    train_docs, held_docs = set(source.store.column("doc")), set(source.heldout.column("doc"))
    assert train_docs and held_docs and not train_docs & held_docs
    assert all(is_heldout(int(d), 0.5) for d in held_docs) and not any(is_heldout(int(d), 0.5) for d in train_docs)
    # each stored row is the token its columns name: re-tokenise the document independently
    _, tokenizer, _, _ = replication_gpt(LMSourceConfig(**params["lm"]), tmp_path / "cache", progress=False)
    docs = list(iter_documents(str(corpus)))
    ids, doc, pos = (source.heldout.column(c) for c in ("token_id", "doc", "pos"))
    for row in range(0, len(ids), 97):
        assert tokenizer(docs[doc[row]])["input_ids"][pos[row]] == ids[row]
    assert (pos % 32 != 0).all()  # skip_first drops each row's first token
    # the family's held-out sample is those rows: a prefix of one fixed order, capped at what there is
    x = family.sample(10**7)
    assert x.shape[0] == len(source.heldout) == family.heldout_available
    held = torch.from_numpy(source.heldout.rows(0, len(source.heldout)))
    assert torch.equal(torch.sort(x, dim=0).values, torch.sort(held, dim=0).values)
    assert torch.equal(family.sample(100), x[:100])


def test_heldout_split_takes_its_share_of_documents():
    share = np.mean([is_heldout(i, 0.2) for i in range(20000)])
    assert abs(share - 0.2) < 0.01
    with pytest.raises(ValueError, match="heldout_share"):
        LMSourceConfig(heldout_share=1.0)


def test_hub_corpus_and_model_offline_name_the_missing_network():
    """With the hub unreachable (offline mode, as on CI), both hub paths fail with a clear message."""
    import os
    import subprocess
    import sys

    code = (
        "from sae_core.sources.lm_source import iter_documents\n"
        "from sae_core.sources.nnsight_sites import load_language_model\n"
        "for call in (lambda: next(iter_documents('Skylion007/openwebtext')),\n"
        "             lambda: load_language_model('EleutherAI/pythia-70m-deduped')):\n"
        "    try:\n"
        "        call()\n"
        "    except (ConnectionError, OSError) as err:\n"
        "        print(type(err).__name__, '|', str(err).replace(chr(10), ' '))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300).stdout
    lines = out.strip().splitlines()
    assert len(lines) == 2, out
    assert lines[0].startswith("ConnectionError") and "needs a network connection" in lines[0]
    assert "pass a local text file" in lines[0]
    assert lines[1].startswith("OSError") and "pythia-70m-deduped" in lines[1] and "local path" in lines[1]


def test_repository_relative_corpus_reads_from_any_directory(tmp_path, monkeypatch):
    """``data/wikitext2.txt.gz`` names the vendored corpus wherever the process runs (nbval runs
    the executed chapters from their own folder)."""
    monkeypatch.chdir(tmp_path)
    first = next(iter_documents("data/wikitext2.txt.gz"))
    assert first == "= Homarus gammarus ="
