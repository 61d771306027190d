"""SAE variants, and other libraries' dictionaries in and out (sae_core.formats).

The fixtures under ``tests/fixtures/interop/`` were written by the real libraries
(SAELens 6.54.12, dictionary_learning 0.1.0, sparsify 1.3.3) with their own writers, and
hold their own codes and reconstructions; ``make_fixtures.py`` there says how. These tests
only read them: offline, with the project's own dependencies.
"""

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from sae_core.formats import (
    FORMATS,
    UnsupportedDictionaryError,
    detect_format,
    load_dictionary,
    save_dictionary,
)
from sae_core.sae import SAEConfig, SparseAutoencoder

INTEROP = Path(__file__).resolve().parents[1] / "fixtures" / "interop"
TOL = 1e-5


def _fixtures() -> list:
    cases = []
    for manifest in sorted(INTEROP.glob("*/manifest.json")):
        data = json.loads(manifest.read_text())
        for entry in data["fixtures"]:
            cases.append(pytest.param(data["library"], manifest.parent / entry["name"], entry["load"],
                                      id=f"{data['library']}-{entry['name']}"))
    return cases


FIXTURES = _fixtures()


def _outputs(sae: SparseAutoencoder, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        recons, codes = sae(x, output_features=True)
    return codes, recons


def _random_sae(activation: str = "relu", **kwargs) -> SparseAutoencoder:
    cfg = SAEConfig(d_in=16, d_sae=64, use_b_dec=True, seed=3, activation=activation,
                    k=4 if activation == "topk" else None, provenance={"source": "test", "layer": 1}, **kwargs)
    sae = SparseAutoencoder(cfg)
    g = torch.Generator().manual_seed(9)
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.2, generator=g)
        sae.b_dec.normal_(0, 0.5, generator=g)
        if activation == "jumprelu":
            sae.threshold.uniform_(0.05, 0.4, generator=g)
    return sae


def _inputs(n: int = 32, d: int = 16) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(5)) + 0.3


# ------------------------------------------------------------------ variants (sae.py)
def test_default_init_and_files_are_unchanged(tmp_path):
    cfg = SAEConfig(d_in=8, d_sae=12, seed=4)
    sae = SparseAutoencoder(cfg)
    gen = torch.Generator().manual_seed(4)
    w_dec = torch.randn(12, 8, generator=gen)
    w_dec /= w_dec.norm(dim=1, keepdim=True)
    assert torch.equal(sae.W_dec, w_dec)
    assert torch.equal(sae.W_enc, w_dec.t() * min(1.0, 8 / 12))
    assert torch.equal(sae.b_enc, torch.zeros(12))
    assert set(sae.state_dict()) == {"W_enc", "W_dec", "b_enc", "b_dec"}
    sae.save(tmp_path / "sae")
    saved = json.loads((tmp_path / "sae" / "cfg.json").read_text())
    assert set(saved) == {"d_in", "d_sae", "l1_coeff", "use_b_dec", "seed", "dtype", "provenance"}
    assert set(load_file(tmp_path / "sae" / "sae_weights.safetensors")) == {"W_enc", "W_dec", "b_enc", "b_dec"}
    # a cfg.json written before the variants existed loads as the default
    assert SparseAutoencoder.load(tmp_path / "sae").cfg == cfg


def test_post_init_is_functional_sae_xavier_and_seeded():
    cfg = SAEConfig(d_in=16, d_sae=64, seed=11, init="post", decoder_norm="in_forward")
    a, b = SparseAutoencoder(cfg), SparseAutoencoder(cfg)
    for name, tensor in a.state_dict().items():
        assert torch.equal(tensor, b.state_dict()[name])
    assert not torch.equal(a.W_enc, SparseAutoencoder(SAEConfig(**{**cfg.to_dict(), "seed": 12})).W_enc)
    gen = torch.Generator().manual_seed(11)
    enc = torch.nn.init.xavier_uniform_(torch.empty(64, 16), generator=gen)  # FunctionalSAE.init order
    dec = torch.nn.init.xavier_uniform_(torch.empty(64, 16), generator=gen)
    assert torch.equal(a.W_enc, enc.t()) and torch.equal(a.W_dec, dec)
    bound = math.sqrt(6 / (16 + 64))
    assert a.W_enc.abs().max() <= bound and a.W_dec.abs().max() <= bound
    assert torch.equal(a.b_enc, torch.zeros(64))
    assert not torch.allclose(a.W_dec.norm(dim=1), torch.ones(64))  # not normalised at init


def test_in_forward_decoder_norm_uses_unit_rows_with_gradient_through_them():
    sae = SparseAutoencoder(SAEConfig(d_in=16, d_sae=64, seed=2, init="post", decoder_norm="in_forward"))
    x = _inputs()
    rows = sae.W_dec / sae.W_dec.norm(dim=1, keepdim=True)
    assert torch.allclose(sae.features, rows)
    assert torch.allclose(sae.features.norm(dim=1), torch.ones(64), atol=1e-6)
    f = sae.encode(x)
    assert torch.allclose(sae.decode(f), f @ rows + sae.b_dec, atol=1e-6)
    loss, _ = sae.loss(x)
    loss.backward()
    # d/dw of w/||w|| is (I - r r^T)/||w||: the gradient has no component along each row
    radial = (sae.W_dec.grad * rows).sum(dim=1).abs().max()
    assert radial < 1e-6 * sae.W_dec.grad.norm()
    sae.normalize_decoder()  # still the after-step projection
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(64), atol=1e-6)


def test_topk_keeps_the_k_largest_relu_values():
    sae = _random_sae("topk")
    x = _inputs()
    z = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    f = sae.encode(x)
    assert ((f > 0).sum(dim=1) <= 4).all() and ((f > 0).sum(dim=1) == 4).any()
    top = torch.relu(z).topk(4, dim=1)
    assert torch.equal(f.gather(1, top.indices), top.values)
    assert torch.equal((f != 0).sum(dim=1), (top.values != 0).sum(dim=1))


def test_jumprelu_thresholds_and_files(tmp_path):
    sae = _random_sae("jumprelu")
    x = _inputs()
    z = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    f = sae.encode(x)
    assert torch.equal(f, torch.where(z > sae.threshold, torch.relu(z), torch.zeros_like(z)))
    sae.save(tmp_path / "j")
    assert "threshold" in load_file(tmp_path / "j" / "sae_weights.safetensors")
    loaded = SparseAutoencoder.load(tmp_path / "j")
    assert loaded.cfg == sae.cfg and torch.equal(loaded.threshold, sae.threshold)
    zero = SparseAutoencoder(SAEConfig(d_in=16, d_sae=64, seed=3, activation="jumprelu"))
    plain = SparseAutoencoder(SAEConfig(d_in=16, d_sae=64, seed=3))
    assert torch.equal(zero.encode(x), plain.encode(x))  # threshold 0 is the ReLU


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"activation": "topk"}, "needs k"),
        ({"activation": "topk", "k": 65}, "k=65 exceeds d_sae=64"),
        ({"activation": "topk", "k": 0}, "positive integer"),
        ({"activation": "topk", "k": 2.5}, "positive integer"),
        ({"k": 4}, "only used by activation='topk'"),
        ({"activation": "gelu"}, "unknown SAEConfig.activation 'gelu'"),
        ({"init": "kaiming"}, "unknown SAEConfig.init 'kaiming'"),
        ({"decoder_norm": "never"}, "unknown SAEConfig.decoder_norm 'never'"),
    ],
)
def test_invalid_variant_combinations_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SAEConfig(d_in=16, d_sae=64, **kwargs)


# ------------------------------------------------------------------ fixtures by the real libraries
def test_every_library_has_fixtures():
    assert {p.values[0] for p in FIXTURES} == {"saelens", "dictionary_learning", "sparsify"}


@pytest.mark.parametrize("library,folder,load", FIXTURES)
def test_fixture_matches_the_library_codes_and_reconstructions(library, folder, load):
    expected = load_file(folder / "expected.safetensors")
    sae = load_dictionary(folder / load)
    assert sae.cfg.provenance["imported_from"]["format"] == library
    assert (sae.cfg.d_in, sae.cfg.d_sae) == (16, 64)
    codes, recons = _outputs(sae, expected["inputs"])
    assert (expected["codes"] > 0).any()
    torch.testing.assert_close(codes, expected["codes"], atol=TOL, rtol=0)
    torch.testing.assert_close(recons, expected["recons"], atol=TOL, rtol=0)


def test_layouts_are_detected_and_single_subfolders_entered():
    assert detect_format(INTEROP / "saelens" / "standard") == "saelens"
    assert detect_format(INTEROP / "sparsify" / "topk" / "layers.0.mlp") == "sparsify"
    release = INTEROP / "dictionary_learning" / "standard" / "mlp_out_layer0"
    assert detect_format(release / "10_64") == "dictionary_learning"
    x = load_file(INTEROP / "dictionary_learning" / "standard" / "expected.safetensors")["inputs"]
    via_site, via_run = load_dictionary(release), load_dictionary(release / "10_64")  # <site>/ holds one run
    assert torch.equal(_outputs(via_site, x)[0], _outputs(via_run, x)[0])
    topk = load_dictionary(INTEROP / "sparsify" / "topk")  # the checkpoint root holds one hookpoint
    assert topk.cfg.activation == "topk" and topk.cfg.k == 4
    assert topk.cfg.provenance["imported_from"]["path"].endswith("layers.0.mlp")


def test_non_unit_decoder_rows_are_used_as_stored():
    sae = load_dictionary(INTEROP / "dictionary_learning" / "standard" / "mlp_out_layer0")
    norms = sae.W_dec.norm(dim=1)
    assert norms.min() < 0.9 and norms.max() > 1.1
    assert sae.cfg.decoder_norm == "after_step"


def test_bf16_sparsify_weights_are_cast_to_float32():
    weights = load_file(INTEROP / "sparsify" / "topk_bf16" / "layers.3" / "sae.safetensors")
    assert weights["W_dec"].dtype == torch.bfloat16
    sae = load_dictionary(INTEROP / "sparsify" / "topk_bf16")
    assert all(t.dtype == torch.float32 for t in sae.state_dict().values())
    assert torch.equal(sae.W_dec, weights["W_dec"].float())


def test_expected_average_scaling_needs_its_constant(tmp_path):
    folder = shutil.copytree(INTEROP / "saelens" / "standard_expected_average", tmp_path / "sae")
    expected = load_file(folder / "expected.safetensors")
    factor = json.loads((folder / "activation_scaler.json").read_text())["scaling_factor"]
    (folder / "activation_scaler.json").unlink()
    with pytest.raises(UnsupportedDictionaryError, match="norm_scaling_factor"):
        load_dictionary(folder)
    codes, recons = _outputs(load_dictionary(folder, norm_scaling_factor=factor), expected["inputs"])
    torch.testing.assert_close(codes, expected["codes"], atol=TOL, rtol=0)
    torch.testing.assert_close(recons, expected["recons"], atol=TOL, rtol=0)
    with pytest.raises(ValueError, match="SAELens folders only"):
        load_dictionary(INTEROP / "sparsify" / "topk", norm_scaling_factor=2.0)


# ------------------------------------------------------------------ export round trips
ROUND_TRIPS = [
    (fmt, activation, extra)
    for activation, extra in [("relu", {}), ("topk", {}), ("jumprelu", {}),
                              ("relu", {"init": "post", "decoder_norm": "in_forward"})]
    for fmt in FORMATS
    if not (fmt == "sparsify" and activation != "topk")
]


@pytest.mark.parametrize("fmt,activation,extra", ROUND_TRIPS,
                         ids=[f"{f}-{a}{'-post' if e else ''}" for f, a, e in ROUND_TRIPS])
def test_export_round_trip_through_our_loader(tmp_path, fmt, activation, extra):
    sae = _random_sae(activation, **extra)
    path = sae.save(tmp_path / "out", format=fmt)
    assert detect_format(path) == fmt
    loaded = load_dictionary(path)
    for field in ("d_in", "d_sae", "l1_coeff", "use_b_dec", "seed", "activation", "k", "init", "decoder_norm"):
        assert getattr(loaded.cfg, field) == getattr(sae.cfg, field), field
    assert loaded.cfg.provenance["layer"] == 1
    if fmt != "ours":
        assert loaded.cfg.provenance["imported_from"]["format"] == fmt
    x = _inputs()
    for got, want in zip(_outputs(loaded, x), _outputs(sae, x), strict=True):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    torch.testing.assert_close(loaded.features, sae.features, atol=1e-6, rtol=0)
    if fmt != "ours":  # importing twice replaces the record rather than nesting it
        again = load_dictionary(save_dictionary(loaded, tmp_path / "again", format=fmt))
        assert "imported_from" not in json.dumps(again.cfg.provenance["imported_from"])


def test_saelens_export_is_a_6x_config(tmp_path):
    sae = _random_sae("topk")
    cfg = json.loads((save_dictionary(sae, tmp_path / "s", "saelens") / "cfg.json").read_text())
    assert cfg["architecture"] == "topk" and cfg["k"] == 4 and cfg["apply_b_dec_to_input"] is True
    assert cfg["metadata"]["sae_lens_version"].startswith("6.")
    assert cfg["metadata"]["sae_core"]["config"]["activation"] == "topk"


def test_sparsify_export_needs_topk(tmp_path):
    with pytest.raises(UnsupportedDictionaryError, match="TopK"):
        save_dictionary(_random_sae("relu"), tmp_path / "s", format="sparsify")
    assert not (tmp_path / "s").exists()
    with pytest.raises(ValueError, match="unknown format"):
        save_dictionary(_random_sae("relu"), tmp_path / "s", format="onnx")


# ------------------------------------------------------------------ what cannot be represented
def _saelens_folder(tmp_path: Path, cfg: dict, extra: dict | None = None) -> Path:
    folder = tmp_path / "sae"
    folder.mkdir()
    w = {"W_enc": torch.zeros(4, 8), "W_dec": torch.zeros(8, 4), "b_enc": torch.zeros(8), "b_dec": torch.zeros(4)}
    save_file({**w, **(extra or {})}, folder / "sae_weights.safetensors")
    base = {"d_in": 4, "d_sae": 8, "dtype": "float32", "apply_b_dec_to_input": True,
            "normalize_activations": "none", "metadata": {"sae_lens_version": "6.54.12"}}
    (folder / "cfg.json").write_text(json.dumps({**base, **cfg}))
    return folder


@pytest.mark.parametrize(
    "cfg,extra,message",
    [
        ({"architecture": "gated"}, {"b_gate": torch.zeros(8), "r_mag": torch.zeros(8)}, "gated encoder"),
        ({"architecture": "transcoder", "metadata": {"sae_lens_version": "6.54.12", "hook_name": "h.0"}}, {},
         "transcoder .*separate input and output sites"),
        ({"architecture": "jumprelu_skip_transcoder"}, {"W_skip": torch.zeros(4, 4)}, "skip term"),
        ({"architecture": "matryoshka_batchtopk"}, {}, "supported: 'standard', 'topk', 'jumprelu'"),
        ({"architecture": "standard", "normalize_activations": "layer_norm"}, {}, "layer-norm input normalisation"),
        ({"architecture": "standard", "normalize_activations": "constant_norm_rescale"}, {}, "per-input"),
        ({"architecture": "standard", "normalize_activations": "expected_average_only_in"}, {},
         "norm_scaling_factor"),
        ({"architecture": "standard", "normalize_activations": "covariance_whitening"}, {},
         "activation_whitening.safetensors"),
        ({"architecture": "standard"}, {"W_skip": torch.zeros(4, 4)}, "skip connection"),
        ({"architecture": "standard"}, {"b_mag": torch.zeros(8)}, "b_mag"),
        ({"architecture": "topk", "k": 2}, {"W_skip": torch.zeros(4, 4)}, "W_skip"),
    ],
)
def test_unsupported_saelens_dictionaries_are_clear_errors(tmp_path, cfg, extra, message):
    with pytest.raises(UnsupportedDictionaryError, match=message):
        load_dictionary(_saelens_folder(tmp_path, cfg, extra))


def test_unsupported_flat_saelens_activation(tmp_path):
    folder = _saelens_folder(tmp_path, {"activation_fn_str": "tanh-relu", "metadata": None})
    cfg = json.loads((folder / "cfg.json").read_text())
    del cfg["metadata"]
    (folder / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(UnsupportedDictionaryError, match="tanh-relu"):
        load_dictionary(folder)


def test_unsupported_dictionary_learning_dictionaries(tmp_path):
    gated = tmp_path / "gated"
    gated.mkdir()
    torch.save({"decoder_bias": torch.zeros(4), "encoder.weight": torch.zeros(8, 4), "r_mag": torch.zeros(8),
                "gate_bias": torch.zeros(8), "mag_bias": torch.zeros(8), "decoder.weight": torch.zeros(4, 8)},
               gated / "ae.pt")
    (gated / "config.json").write_text(json.dumps({"trainer": {"dict_class": "GatedAutoEncoder"}}))
    with pytest.raises(UnsupportedDictionaryError, match=r"GatedAutoEncoder .*gated encoder"):
        load_dictionary(gated)
    matryoshka = tmp_path / "matryoshka"
    shutil.copytree(INTEROP / "dictionary_learning" / "topk" / "trainer_0", matryoshka)
    (matryoshka / "config.json").write_text(json.dumps({"trainer": {"dict_class": "MatryoshkaBatchTopKSAE"}}))
    with pytest.raises(UnsupportedDictionaryError, match="MatryoshkaBatchTopKSAE"):
        load_dictionary(matryoshka)
    (matryoshka / "config.json").unlink()  # AutoEncoderTopK and BatchTopKSAE share their tensors
    with pytest.raises(ValueError, match="dict_class is needed"):
        load_dictionary(matryoshka)
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    torch.save(torch.nn.Linear(2, 2), pickled / "ae.pt")  # a whole module: not weights_only-loadable
    with pytest.raises(ValueError, match="weights_only"):
        load_dictionary(pickled)


@pytest.mark.parametrize(
    "cfg,extra,message",
    [
        ({"activation": "groupmax"}, {}, "groupmax"),
        ({"skip_connection": True}, {"W_skip": torch.zeros(4, 4)}, "skip_connection"),
        ({"transcode": True}, {}, "transcoder"),
    ],
)
def test_unsupported_sparsify_coders(tmp_path, cfg, extra, message):
    folder = tmp_path / "layers.0"
    folder.mkdir()
    save_file({"encoder.weight": torch.zeros(8, 4), "encoder.bias": torch.zeros(8), "W_dec": torch.zeros(8, 4),
               "b_dec": torch.zeros(4), **extra}, folder / "sae.safetensors")
    (folder / "cfg.json").write_text(json.dumps({"activation": "topk", "k": 2, "num_latents": 8, "d_in": 4, **cfg}))
    with pytest.raises(UnsupportedDictionaryError, match=message):
        load_dictionary(folder)


def test_unrecognised_folders_list_what_they_hold(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"")
    (tmp_path / "notes").mkdir()
    with pytest.raises(ValueError, match=r"found \['notes/', 'weights.bin'\]"):
        load_dictionary(tmp_path)
    with pytest.raises(ValueError, match=r"weights\.bin"):
        detect_format(tmp_path)
    for name in ("a", "b"):
        _random_sae().save(tmp_path / "many" / name)
    with pytest.raises(ValueError, match=r"pass one of them: \['a', 'b'\]"):
        load_dictionary(tmp_path / "many")
    with pytest.raises(FileNotFoundError):
        load_dictionary(tmp_path / "missing")


def test_shape_mismatch_between_config_and_weights(tmp_path):
    folder = _saelens_folder(tmp_path, {"architecture": "standard", "d_sae": 9})
    with pytest.raises(ValueError, match="d_sae=9, the weights have 8"):
        load_dictionary(folder)
