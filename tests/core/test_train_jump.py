"""BatchTopK (Bussmann et al. 2024) and JumpReLU with a trained threshold (Rajamanoharan et al. 2024) in the
family loop: the weights against plain references written here, the inference threshold, bit-exact resume,
and export to the layouts that hold JumpReLU dictionaries with zero difference."""

import pytest
import torch

from sae_core.sae import SAEConfig, SparseAutoencoder
from sae_core.sources.synthetic import SyntheticConfig, SyntheticSource
from sae_core.train import TrainConfig, family_is_complete, sae_seed, train_family

SMALL_SOURCE = SyntheticConfig(d_in=32, n_features=64, mean_active=3.0, n_parents=4, children_per_parent=2, seed=1)
SIZES = (16, 40)


def quiet(**kwargs) -> TrainConfig:
    return TrainConfig(progress=False, **kwargs)


def _start(src, s: int, seed: int = 0) -> SparseAutoencoder:
    return SparseAutoencoder(SAEConfig(d_in=src.d_in, d_sae=s, l1_coeff=0.0, seed=sae_seed(seed, s),
                                       activation="jumprelu"))


def _batchtopk_reference(src, k, n_steps, batch_size, dead_window, aux_k, beta, aux_coeff=1 / 32, lr=1e-3):
    """Bussmann et al.'s training as written in their paper: the top B·k activations of the batch, MSE plus
    Gao et al.'s AuxK; θ an EMA of the smallest kept activation; encoder = decoder transpose at the start."""
    out = {}
    for s, k_s in k.items():
        sae = _start(src, s)
        with torch.no_grad():
            sae.W_enc.copy_(sae.W_dec.t())
        params = [sae.W_enc, sae.b_enc, sae.W_dec]
        opt = torch.optim.Adam(params, lr=lr)
        since = torch.zeros(s, dtype=torch.long)
        theta = None
        for step in range(n_steps):
            x = src.batch(step, batch_size)
            z = x @ sae.W_enc + sae.b_enc
            acts = torch.relu(z)
            vals, idx = acts.flatten().topk(batch_size * k_s)
            f = torch.zeros(acts.numel()).index_put((idx,), vals).reshape(acts.shape)
            x_hat = f @ sae.W_dec
            loss = ((x_hat - x) ** 2).mean()
            fired = (f > 0).any(0)
            dead = ~fired & (since + 1 >= dead_window)
            if dead.any():
                t = torch.where(dead, z, torch.zeros_like(z)).topk(min(aux_k, s), dim=1)
                h = torch.zeros_like(z).scatter(1, t.indices, torch.relu(t.values))
                e = (x - x_hat).detach()
                loss = loss + aux_coeff * ((h @ sae.W_dec - e) ** 2).sum() / ((e - e.mean(0)) ** 2).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sae.normalize_decoder()
            m = vals[vals > 0].min().detach()
            theta = m if theta is None else beta * theta + (1 - beta) * m
            since = torch.where(fired, 0, since + 1)
        out[s] = (sae, theta)
    return out


def _jumprelu_reference(src, sizes, n_steps, batch_size, lam, eps, theta0, lr=1e-3):
    """JumpReLU by autograd with the straight-through estimator written as a zero-valued term whose gradient
    is the pseudo-derivative (Rajamanoharan et al. 2024, eqs. 11-12): K(u) = 1[|u| < 1/2]."""
    out = {}
    for s in sizes:
        sae = _start(src, s)
        with torch.no_grad():
            sae.threshold.fill_(theta0)
        opt = torch.optim.Adam([sae.W_enc, sae.b_enc, sae.W_dec, sae.threshold], lr=lr)
        for step in range(n_steps):
            x = src.batch(step, batch_size)
            z = x @ sae.W_enc + sae.b_enc
            th = sae.threshold
            kernel = ((z.detach() - th.detach()).abs() < eps / 2).float() / eps
            shift = th - th.detach()  # zero, with gradient 1 to θ
            f = torch.relu(z) * (z.detach() > th.detach()) - shift * th.detach() * kernel
            l0 = ((z.detach() > th.detach()).float() - shift * kernel).sum(1).mean()
            loss = ((f @ sae.W_dec - x) ** 2).mean() + lam * l0
            opt.zero_grad()
            loss.backward()
            opt.step()
            sae.normalize_decoder()
            with torch.no_grad():
                sae.threshold.clamp_(min=0.0)
        out[s] = sae
    return out


def test_batchtopk_gives_the_reference_weights_and_threshold():
    src = SyntheticSource(SMALL_SOURCE)
    k = {16: 3, 40: 4}
    ref = _batchtopk_reference(src, k, 10, 64, dead_window=2, aux_k=16, beta=0.9)
    saes, history = train_family(src, quiet(sizes=SIZES, n_steps=10, batch_size=64, activation="batchtopk", k=k,
                                            aux_k=16, dead_window=2, threshold_beta=0.9, log_every=1))
    for s in SIZES:
        want, theta = ref[s]
        for name in ("W_enc", "b_enc", "W_dec"):
            got, exp = getattr(saes[s], name).detach(), getattr(want, name).detach()
            assert torch.allclose(got, exp, rtol=1e-5, atol=1e-6), (s, name, (got - exp).abs().max())
        assert saes[s].cfg.activation == "jumprelu" and saes[s].cfg.k is None
        assert torch.allclose(saes[s].threshold, theta.expand(s), rtol=1e-5) and float(theta) > 0
    # training keeps B·k entries, so the mean L0 per input is at most k
    assert all(r["l0"] <= k[r["d_sae"]] + 1e-9 for r in history)
    assert any(r["aux"] > 0 for r in history)


def test_jumprelu_gives_the_reference_weights_and_trains_its_threshold():
    src = SyntheticSource(SMALL_SOURCE)
    lam, eps = 3e-2, 0.05  # a wide kernel, so that the threshold's pseudo-gradient acts in a few steps
    ref = _jumprelu_reference(src, SIZES, 10, 64, lam, eps, theta0=0.05)
    saes, _ = train_family(src, quiet(sizes=SIZES, n_steps=10, batch_size=64, activation="jumprelu", l0_coeff=lam,
                                      jump_bandwidth=eps, jump_init=0.05))
    for s in SIZES:
        for name in ("W_enc", "b_enc", "W_dec", "threshold"):
            got, exp = getattr(saes[s], name).detach(), getattr(ref[s], name).detach()
            assert torch.allclose(got, exp, rtol=1e-5, atol=1e-6), (s, name, (got - exp).abs().max())
        theta = saes[s].threshold.detach()
        assert (theta >= 0).all() and not torch.all(theta == 0.05)  # trained, per latent


@pytest.mark.parametrize("activation,extra", [("batchtopk", {"k": {16: 3, 40: 4}}), ("jumprelu", {})])
def test_interrupted_run_resumes_bit_exactly(tmp_path, activation, extra):
    src = SyntheticSource(SMALL_SOURCE)
    cfg = quiet(sizes=SIZES, n_steps=20, batch_size=32, checkpoint_every=10, log_every=4, activation=activation,
                dead_window=3, **extra)
    reference, ref_history = train_family(src, cfg)

    def interrupt(step: int) -> None:
        if step == 14:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_family(src, cfg, out_dir=tmp_path, on_step=interrupt)
    assert not family_is_complete(tmp_path)
    resumed, history = train_family(src, cfg, out_dir=tmp_path)
    for s in SIZES:
        for name, tensor in reference[s].state_dict().items():
            assert torch.equal(tensor, resumed[s].state_dict()[name]), (activation, s, name)
    assert history == ref_history


@pytest.mark.parametrize("fmt", ["saelens", "dictionary_learning"])
def test_trained_jumprelu_and_batchtopk_dictionaries_export_and_load_back_exactly(tmp_path, fmt):
    from sae_core.formats import detect_format, load_dictionary

    src = SyntheticSource(SMALL_SOURCE)
    x = src.batch(5000, 64)
    for activation, extra in (("batchtopk", {"k": {16: 3, 40: 4}}), ("jumprelu", {})):
        saes, _ = train_family(src, quiet(sizes=SIZES, n_steps=8, batch_size=32, activation=activation, **extra))
        for size, sae in saes.items():
            path = sae.save(tmp_path / f"{activation}_{fmt}_{size}", format=fmt)
            assert detect_format(path) == fmt
            loaded = load_dictionary(path)
            assert loaded.cfg.activation == "jumprelu"
            for name, tensor in sae.state_dict().items():
                assert torch.equal(loaded.state_dict()[name], tensor), (activation, fmt, size, name)
            with torch.no_grad():
                (want_x, want_f), (got_x, got_f) = sae(x, output_features=True), loaded(x, output_features=True)
            assert torch.equal(got_f, want_f) and torch.equal(got_x, want_x)


def test_new_architecture_settings_are_checked():
    with pytest.raises(ValueError, match="needs k"):
        quiet(sizes=(16,), activation="batchtopk")
    with pytest.raises(ValueError, match="jump_bandwidth > 0"):
        quiet(sizes=(16,), activation="jumprelu", jump_bandwidth=0.0)
    with pytest.raises(ValueError, match="resampling"):
        quiet(sizes=(16,), activation="jumprelu", resample_every=10)
