"""Family caching: keys follow every parameter that shapes the dictionaries, and nothing stale is reused."""

import pytest
import torch

from sae_core.report import pipeline
from sae_core.report.build import apply_overrides, load_profile

BASE = {"source": "synthetic", "sizes": [32, 16], "n_steps": 5, "batch_size": 16, "seed": 0,
        "synthetic": {"d_in": 8, "n_features": 24, "mean_active": 2.0, "n_parents": 2, "children_per_parent": 2}}


def test_params_are_canonical():
    params = pipeline.family_params({**BASE, "unrelated": 1, "small_size": 16})
    assert params["sizes"] == [16, 32]
    assert "unrelated" not in params and "small_size" not in params
    assert params["synthetic"]["noise_std"] == 0.0  # completed with the config defaults
    explicit = pipeline.family_params({**BASE, "synthetic": {**BASE["synthetic"], "noise_std": 0.0}})
    assert pipeline.family_key(params) == pipeline.family_key(explicit)


@pytest.mark.parametrize("change", [
    {"n_steps": 6}, {"sizes": [16, 64]}, {"seed": 1}, {"l1_coeff": 2e-3},
    {"synthetic": {**BASE["synthetic"], "n_features": 25}},
])
def test_every_shaping_parameter_changes_the_key(change):
    assert pipeline.family_key(pipeline.family_params(BASE)) != pipeline.family_key(
        pipeline.family_params({**BASE, **change}))


def test_cache_is_reused_and_never_stale(tmp_path, monkeypatch):
    monkeypatch.setenv("SAE_REPORT_CACHE", str(tmp_path))
    first = pipeline.ensure_family(pipeline.family_params(BASE), progress=False)
    trained = []
    monkeypatch.setattr(pipeline, "train_family", lambda *a, **k: trained.append(1))
    again = pipeline.ensure_family(pipeline.family_params(BASE), progress=False)
    assert trained == [] and again.path == first.path
    assert (again.features(32) == first.features(32)).all()
    monkeypatch.undo()
    monkeypatch.setenv("SAE_REPORT_CACHE", str(tmp_path))
    other = pipeline.ensure_family(pipeline.family_params({**BASE, "seed": 1}), progress=False)
    assert other.path != first.path
    assert not (other.features(32) == first.features(32)).all()


def test_bad_parameters_are_clear_errors():
    with pytest.raises(ValueError, match="unknown source"):
        pipeline.family_params({**BASE, "source": "dataset"})
    with pytest.raises(ValueError, match="sizes"):
        pipeline.family_params({"source": "synthetic"})
    with pytest.raises(TypeError):
        pipeline.family_params({**BASE, "synthetic": {"no_such_field": 1}})


def test_profiles_and_overrides():
    smoke = load_profile("smoke")
    assert smoke["source"] == "synthetic"
    changed = apply_overrides(smoke, ["n_steps=7", "synthetic.d_in=16", "sizes=[8, 16]"])
    assert changed["n_steps"] == 7 and changed["synthetic"]["d_in"] == 16 and changed["sizes"] == [8, 16]
    assert smoke["synthetic"]["d_in"] == 32  # the loaded profile itself is untouched
    for name in ("default", "replication", "pythia"):
        assert "sizes" in load_profile(name)
    with pytest.raises(FileNotFoundError, match="known profiles"):
        load_profile("nope")
    with pytest.raises(ValueError, match="KEY=VALUE"):
        apply_overrides(smoke, ["n_steps"])


def test_compared_pair_falls_back_to_sizes_the_family_has(tmp_path, monkeypatch):
    from sae_core.report.analysis import compared_pair

    monkeypatch.setenv("SAE_REPORT_CACHE", str(tmp_path))
    family = pipeline.ensure_family(pipeline.family_params({**BASE, "sizes": [8, 16, 32]}), progress=False)
    assert compared_pair(family, 16, 32) == (16, 32)
    assert compared_pair(family, 1024, 8192) == (16, 32)  # missing sizes: largest, and the largest below it
    assert compared_pair(family, 8, 16) == (8, 16)
    assert compared_pair(family, 32, 16) == (8, 16)  # a "small" size not below the reference is not used


def test_a_longer_run_continues_the_shorter_one_exactly(tmp_path, monkeypatch, capsys):
    from sae_core.train import train_family

    monkeypatch.setenv("SAE_REPORT_CACHE", str(tmp_path))
    short = pipeline.ensure_family(pipeline.family_params({**BASE, "n_steps": 6}), progress=False)
    capsys.readouterr()
    longer_params = pipeline.family_params({**BASE, "n_steps": 12})
    longer = pipeline.ensure_family(longer_params, progress=False)
    assert f"continuing from the 6-step run {short.path.name}" in capsys.readouterr().err
    # the history keeps the shorter run's rows (its last step is logged), then goes on
    assert [r["step"] for r in longer.history if r["d_sae"] == 16] == [6, 12]
    scratch, _ = train_family(pipeline.build_source(longer_params), pipeline.train_config(longer_params, False))
    for size in (16, 32):
        assert torch.equal(longer.features(size), scratch[size].features)  # bit for bit: the same 12 steps
    assert not torch.equal(longer.features(32), short.features(32))
    # resampling's schedule depends on n_steps, so such runs never continue a shorter one
    with_resampling = pipeline.family_params({**BASE, "n_steps": 12, "resample_every": 4})
    pipeline.ensure_family(pipeline.family_params({**BASE, "n_steps": 6, "resample_every": 4}), progress=False)
    capsys.readouterr()
    pipeline.ensure_family(with_resampling, progress=False)
    assert "continuing" not in capsys.readouterr().err


def test_a_profile_extends_another(tmp_path):
    sweep, default = load_profile("sweep"), load_profile("default")
    assert sweep["profile"] == "sweep" and sweep["sweep"] and "sweep" not in default
    changed = ("profile", "sweep", "sweep_sizes", "ablations", "architectures")  # what the sweep sets on top
    assert {k: v for k, v in sweep.items() if k not in changed} == \
        {k: v for k, v in default.items() if k not in changed}
    (tmp_path / "a.yml").write_text("extends: " + str(tmp_path / "b.yml") + "\nn_steps: 3\n")
    (tmp_path / "b.yml").write_text("extends: " + str(tmp_path / "a.yml") + "\n")
    with pytest.raises(ValueError, match="loop"):
        load_profile(str(tmp_path / "a.yml"))


def test_dress_for_reading_folds_what_shows_and_removes_set_up(tmp_path):
    import nbformat

    from sae_core.report.build import dress_for_reading

    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("n = 1  # a parameter")
    params.metadata["tags"] = ["parameters"]
    setup = nbformat.v4.new_code_cell("import numpy as np")
    glued = nbformat.v4.new_code_cell("glue('x', 1, display=False)")
    glued.outputs = [nbformat.v4.new_output("display_data", data={"application/papermill.record/text/plain": "1"})]
    table = nbformat.v4.new_code_cell("plots.table(['a'], [[1]])")
    table.outputs = [nbformat.v4.new_output("execute_result", data={"text/markdown": "| a |"}, execution_count=1)]
    figure = nbformat.v4.new_code_cell("plots.glue_figure('fig', f)")
    nb.cells = [params, setup, glued, table, figure]
    path = tmp_path / "ch.ipynb"
    nbformat.write(nb, path)
    dress_for_reading(path, {"n": 1})
    tags = [c.metadata.get("tags", []) for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    assert tags == [["parameters", "remove-cell"], ["remove-input"], ["remove-input"], ["hide-input"], ["hide-input"]]


def test_resampling_families_key_their_pool_and_others_do_not():
    from sae_core.report.pipeline import family_params

    base = {"source": "synthetic", "sizes": [16, 32], "n_steps": 10}
    assert "resample_pool" not in family_params(base)  # keys of families without resampling are unchanged
    resampled = family_params({**base, "resample_every": 5})
    assert resampled["resample_pool"] == 131072  # never the cache of the old batch-drawn resampling
    assert family_params({**base, "resample_every": 5, "resample_pool": 4096})["resample_pool"] == 4096


def test_the_synthetic_heldout_sample_is_drawn_once_and_sliced(tmp_path, monkeypatch):
    import torch

    from sae_core.report.pipeline import synthetic_heldout
    from sae_core.sources.synthetic import SyntheticConfig, SyntheticSource

    monkeypatch.setenv("SAE_REPORT_CACHE", str(tmp_path))
    cfg = SyntheticConfig(d_in=8, n_features=16, mean_active=2.0, n_parents=2, children_per_parent=2)
    source = SyntheticSource(cfg)
    direct = torch.cat([source.batch(10**6 + i, 4096) for i in range(2)])
    small = synthetic_heldout(source, 5000)
    assert torch.equal(small, direct[:5000])
    stored = list((tmp_path / "heldout").glob("synthetic_*.npy"))
    assert len(stored) == 1
    calls = []
    monkeypatch.setattr(source, "batch", lambda *a: calls.append(a))  # a stored draw is sliced, not redrawn
    assert torch.equal(synthetic_heldout(source, 3000), direct[:3000]) and not calls


def test_stored_stream_gives_the_sources_batches_and_draws_each_block_once(tmp_path, monkeypatch):
    import pytest
    import torch

    from sae_core.sources.store import StoredStream
    from sae_core.sources.synthetic import SyntheticConfig, SyntheticSource

    cfg = SyntheticConfig(d_in=8, n_features=16, mean_active=2.0, n_parents=2, children_per_parent=2)
    source = SyntheticSource(cfg)
    stream = StoredStream(source, tmp_path, batch_size=5, block=4)
    for i in (0, 3, 4, 9, 2):  # within a block, across blocks, back to an earlier block
        assert torch.equal(stream.batch(i, 5), source.batch(i, 5))
    assert sorted(p.name for p in tmp_path.glob("*.npy")) == ["b5_000000.npy", "b5_000001.npy", "b5_000002.npy"]
    assert stream.d_in == 8 and stream.describe() == source.describe()  # the rest is the source's
    # another batch size and the held-out region pass through, drawing nothing into the folder
    assert torch.equal(stream.batch(1, 7), source.batch(1, 7))
    assert torch.equal(stream.batch(10**6, 5), source.batch(10**6, 5))
    assert len(list(tmp_path.glob("*.npy"))) == 3
    # a second reader of the same folder reads the stored blocks back and never calls the source
    calls = []
    monkeypatch.setattr(source, "batch", lambda *a: calls.append(a))
    again = StoredStream(source, tmp_path, batch_size=5, block=4)
    assert torch.equal(again.batch(6, 5), SyntheticSource(cfg).batch(6, 5)) and not calls
    with pytest.raises(ValueError, match="positive"):
        StoredStream(source, tmp_path, batch_size=0)


def test_a_synthetic_family_trains_on_the_stored_stream_to_the_same_weights(tmp_path, monkeypatch):
    import torch

    from sae_core.report.pipeline import ensure_family, family_params
    from sae_core.sources.synthetic import SyntheticConfig, SyntheticSource
    from sae_core.train import TrainConfig, train_family

    monkeypatch.setenv("SAE_REPORT_CACHE", str(tmp_path))
    synthetic = {"d_in": 8, "n_features": 16, "mean_active": 2.0, "n_parents": 2, "children_per_parent": 2}
    params = family_params({"source": "synthetic", "synthetic": synthetic, "sizes": [8, 16], "n_steps": 12,
                            "batch_size": 32, "progress": False})
    family = ensure_family(params, progress=False)
    assert len(list((tmp_path / "streams").rglob("b32_*.npy"))) == 1  # 12 steps: one block of 64 batches
    direct, _ = train_family(SyntheticSource(SyntheticConfig(**synthetic)),
                             TrainConfig(sizes=(8, 16), n_steps=12, batch_size=32, progress=False))
    for size, sae in direct.items():
        assert torch.equal(sae.W_dec, family.saes[size].W_dec)
