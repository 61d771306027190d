"""TopK dictionaries with the AuxK loss (Gao et al. 2024) in the family loop: the fused and the plain
steps against a plain autograd reference written here, checkpoints and bit-exact resume, the firing
record, and the configuration's checks."""

import pytest
import torch

from sae_core.sae import SAEConfig, SparseAutoencoder
from sae_core.sources.synthetic import SyntheticConfig, SyntheticSource
from sae_core.train import TrainConfig, family_is_complete, load_latent_stats, sae_seed, train_family

SMALL_SOURCE = SyntheticConfig(d_in=32, n_features=64, mean_active=3.0, n_parents=4, children_per_parent=2, seed=1)
SIZES = (16, 40, 96)
K = {16: 3, 40: 4, 96: 6}


def quiet(**kwargs) -> TrainConfig:
    return TrainConfig(progress=False, **kwargs)


def _reference(src, sizes, k, n_steps, batch_size, dead_window, aux_k, aux_coeff=1 / 32, lr=1e-3, seed=0):
    """TopK + AuxK as Gao et al. write it, by autograd, one Adam per SAE: f = TopK_k(ReLU(z)),
    e = x - x̂ detached, h = ReLU of the top aux_k pre-activations among latents that have not fired
    in the last ``dead_window`` steps (this one included), loss = MSE + aux_coeff * ||h W - e||² /
    ||e - mean(e)||², decoder rows renormalised after the step. Returns the SAEs and, per size, the
    number of steps each latent fired in and the aux losses seen."""
    saes, opts, since, fire_steps, auxes = {}, {}, {}, {}, {s: [] for s in sizes}
    for s in sizes:
        saes[s] = SparseAutoencoder(SAEConfig(d_in=src.d_in, d_sae=s, l1_coeff=0.0, seed=sae_seed(seed, s),
                                              activation="topk", k=k[s]))
        opts[s] = torch.optim.Adam([p for p in saes[s].parameters() if p.requires_grad], lr=lr)
        since[s] = torch.zeros(s, dtype=torch.long)
        fire_steps[s] = torch.zeros(s, dtype=torch.long)
    for step in range(n_steps):
        x = src.batch(step, batch_size)
        for s, sae in saes.items():
            z = x @ sae.W_enc + sae.b_enc
            top = torch.relu(z).topk(k[s], dim=1)
            f = torch.zeros_like(z).scatter(1, top.indices, top.values)
            x_hat = f @ sae.W_dec
            loss = ((x_hat - x) ** 2).mean()
            fired = (f > 0).any(0)
            dead = ~fired & (since[s] + 1 >= dead_window)
            if dead.any():
                pre = torch.where(dead, z, torch.zeros_like(z))
                top_aux = pre.topk(min(aux_k, s), dim=1)
                h = torch.zeros_like(z).scatter(1, top_aux.indices, torch.relu(top_aux.values))
                e = (x - x_hat).detach()
                aux = ((h @ sae.W_dec - e) ** 2).sum() / ((e - e.mean(0)) ** 2).sum()
                auxes[s].append(float(aux.detach()))
                loss = loss + aux_coeff * aux
            opts[s].zero_grad()
            loss.backward()
            opts[s].step()
            sae.normalize_decoder()
            since[s] = torch.where(fired, 0, since[s] + 1)
            fire_steps[s] += fired
    return saes, fire_steps, auxes


@pytest.mark.parametrize("fused", [True, False])
def test_topk_aux_steps_give_the_autograd_reference_weights(fused):
    src = SyntheticSource(SMALL_SOURCE)
    n_steps, window, aux_k = 8, 2, 16  # a short window, so AuxK acts from the second step on
    reference, _, ref_aux = _reference(src, SIZES, K, n_steps, 64, window, aux_k)
    assert len(ref_aux[96]) > 0 and max(ref_aux[96]) > 0  # AuxK contributed (16 latents all fire)
    cfg = quiet(sizes=SIZES, n_steps=n_steps, batch_size=64, activation="topk", k=K, aux_k=aux_k,
                dead_window=window, fused=fused, log_every=1)
    trained, history = train_family(src, cfg)
    for s in SIZES:
        for name in ("W_enc", "b_enc", "W_dec"):
            ref, got = getattr(reference[s], name).detach(), getattr(trained[s], name).detach()
            assert torch.allclose(got, ref, rtol=1e-5, atol=1e-6), (fused, s, name, (got - ref).abs().max())
    rows = [r for r in history if r["d_sae"] == 96]
    assert len(rows) == n_steps and all(r["l0"] <= K[96] for r in rows)
    assert any(r["aux"] > 0 for r in rows)


def test_topk_codes_are_k_sparse_and_the_encoder_starts_as_the_decoder_transpose():
    sae = SparseAutoencoder(SAEConfig(d_in=8, d_sae=40, activation="topk", k=5, seed=3))
    assert torch.equal(sae.W_enc, sae.W_dec.t())  # Gao et al.: no d_in / d_sae scale
    relu = SparseAutoencoder(SAEConfig(d_in=8, d_sae=40, seed=3))
    assert torch.allclose(relu.W_enc, sae.W_enc * 8 / 40)
    f = sae.encode(torch.randn(50, 8, generator=torch.Generator().manual_seed(0)))
    assert int((f > 0).sum(1).max()) <= 5


@pytest.mark.parametrize("first,second", [(True, True), (True, False), (False, True)])
def test_topk_interrupted_run_resumes_to_the_same_weights(tmp_path, first, second):
    """Bit-exact with the same step on both sides; to float rounding across the two steps."""
    src = SyntheticSource(SMALL_SOURCE)
    base = dict(sizes=(16, 40), n_steps=24, batch_size=32, checkpoint_every=10, log_every=4, activation="topk",
                k={16: 3, 40: 4}, dead_window=3)
    reference, ref_history = train_family(src, quiet(fused=second, **base))

    def interrupt(step: int) -> None:
        if step == 13:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_family(src, quiet(fused=first, **base), out_dir=tmp_path, on_step=interrupt)
    assert not family_is_complete(tmp_path)
    resumed, history = train_family(src, quiet(fused=second, **base), out_dir=tmp_path)
    for s in (16, 40):
        for name, tensor in reference[s].state_dict().items():
            got = resumed[s].state_dict()[name]
            if first == second:
                assert torch.equal(tensor, got), (s, name)
            else:
                assert torch.allclose(tensor, got, atol=1e-5), (s, name)
    if first == second:
        assert history == ref_history
    assert resumed[40].cfg.activation == "topk" and resumed[40].cfg.k == 4


def test_topk_firing_record_counts_the_steps_each_latent_fired_in(tmp_path):
    src = SyntheticSource(SMALL_SOURCE)
    _, ref_fires, _ = _reference(src, SIZES, K, 12, 32, dead_window=4, aux_k=16)
    train_family(src, quiet(sizes=SIZES, n_steps=12, batch_size=32, activation="topk", k=K, aux_k=16,
                            dead_window=4), out_dir=tmp_path)
    stats = load_latent_stats(tmp_path)
    for s in SIZES:
        assert torch.equal(stats[s]["fire_steps"], ref_fires[s]), s
        never = stats[s]["fire_steps"] == 0
        assert torch.equal(never, stats[s]["last_fired"] == 0)


def test_auxk_moves_dead_latents_that_the_main_loss_leaves_alone(tmp_path):
    """With a one-step window every latent that did not fire is dead. Without AuxK the unfired latents
    get no gradient, so their decoder rows stay at their initial rows; with AuxK the dead
    latents among the top k_aux of some input move."""
    src = SyntheticSource(SMALL_SOURCE)
    base = dict(sizes=(96,), n_steps=1, batch_size=16, activation="topk", k=2, dead_window=1)
    off, _ = train_family(src, quiet(aux_coeff=0.0, **base), out_dir=tmp_path / "off")
    on, _ = train_family(src, quiet(**base), out_dir=tmp_path / "on")
    init = SparseAutoencoder(SAEConfig(d_in=32, d_sae=96, l1_coeff=0.0, seed=sae_seed(0, 96), activation="topk",
                                       k=2)).W_dec.detach()
    never = load_latent_stats(tmp_path / "off")[96]["fire_steps"] == 0
    assert torch.equal(never, load_latent_stats(tmp_path / "on")[96]["fire_steps"] == 0)
    assert int(never.sum()) > 50
    # (renormalising a unit row changes it by float rounding only)
    assert torch.allclose(off[96].W_dec[never], init[never], atol=1e-6)
    moved = (on[96].W_dec[never] - init[never]).abs().amax(1) > 1e-4
    assert 0 < int(moved.sum()) <= int(never.sum())


@pytest.mark.parametrize("kwargs,message", [
    (dict(activation="topk"), "needs k"),
    (dict(activation="topk", k={16: 2}), "gives sizes"),
    (dict(activation="topk", k=17), "integer in 1..16"),
    (dict(k=3), "only used by activation='topk'"),
    (dict(activation="topk", k=2, resample_every=10), "not resampling"),
    (dict(activation="gelu"), "must be one of"),
])
def test_topk_config_errors_are_clear(kwargs, message):
    with pytest.raises(ValueError, match=message):
        quiet(sizes=(16, 32), **kwargs) if "k" in kwargs and isinstance(kwargs["k"], dict) else \
            quiet(sizes=(16,), **kwargs)


@pytest.mark.parametrize("fmt", ["saelens", "dictionary_learning", "sparsify"])
def test_trained_topk_aux_dictionaries_export_and_load_back_exactly(tmp_path, fmt):
    """Every layout that has TopK holds a dictionary trained with AuxK (AuxK is a training loss only: the
    dictionary is a TopK one) and gives it back with zero difference: weights, k, codes, reconstructions."""
    from sae_core.formats import detect_format, load_dictionary

    src = SyntheticSource(SMALL_SOURCE)
    saes, _ = train_family(src, quiet(sizes=(16, 40), n_steps=12, batch_size=32, activation="topk",
                                      k={16: 3, 40: 5}, dead_window=3))
    x = src.batch(5000, 64)
    for size, sae in saes.items():
        path = sae.save(tmp_path / f"{fmt}_{size}", format=fmt)
        assert detect_format(path) == fmt
        loaded = load_dictionary(path)
        assert loaded.cfg.activation == "topk" and loaded.cfg.k == sae.cfg.k
        for name, tensor in sae.state_dict().items():
            assert torch.equal(loaded.state_dict()[name], tensor), (fmt, size, name)
        with torch.no_grad():
            (want_x, want_f), (got_x, got_f) = sae(x, output_features=True), loaded(x, output_features=True)
        assert torch.equal(got_f, want_f) and torch.equal(got_x, want_x)
