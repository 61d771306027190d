"""The fused family step over the active latents only (issue 19): same weights as the dense
step and as the per-SAE autograd step, in both decoder-normalisation modes and across the
dense/sparse switch, and bit-exact resumes."""

import pytest
import torch

from sae_core.sources.synthetic import SyntheticConfig, SyntheticSource
from sae_core.train import TrainConfig, _FusedFamily, _make_family, train_family

SMALL_SOURCE = SyntheticConfig(d_in=32, n_features=64, mean_active=3.0, n_parents=4, children_per_parent=2, seed=1)
SIZES = (16, 40, 96)
ALWAYS_SPARSE = 1.1  # a share of active entries is never above 1


def quiet(**kwargs) -> TrainConfig:
    return TrainConfig(progress=False, **kwargs)


def _family(init: str, sparse_below: float) -> _FusedFamily:
    cfg = quiet(sizes=SIZES, l1_coeff=1e-2, init=init)
    members = _make_family(cfg, SMALL_SOURCE.d_in, {}, torch.device("cpu"), fused=False)
    return _FusedFamily(members, cfg.lr, cfg.l1_coeff, sparse_below)


@pytest.mark.parametrize("init", ["transposed", "post"])  # decoder_norm "after_step", "in_forward"
def test_sparse_step_gives_the_dense_steps_gradients_and_weights(init):
    src = SyntheticSource(SMALL_SOURCE)
    dense, sparse = _family(init, 0.0), _family(init, ALWAYS_SPARSE)
    for step in range(8):
        x = src.batch(step, 64)
        fired_d, parts_d = dense.step(x, want_parts=True)
        fired_s, parts_s = sparse.step(x, want_parts=True)
        assert sparse.sparse and not dense.sparse
        assert torch.equal(fired_d, fired_s)
        for name, p in dense.params.items():
            q = sparse.params[name]
            # a latent that fired nowhere gets exactly zero gradient by both steps (Adam would
            # still move it through its moments, so a stray nonzero would change the weights)
            assert torch.equal(p.grad == 0, q.grad == 0), (step, name)
            assert torch.allclose(q.grad, p.grad, rtol=1e-5, atol=1e-9), (step, name)
            assert torch.allclose(q.data, p.data, rtol=1e-5, atol=1e-6), (step, name, (q.data - p.data).abs().max())
        for size in SIZES:
            for key in ("loss", "mse", "l1", "l0"):
                assert parts_s[size][key] == pytest.approx(parts_d[size][key], rel=1e-5, abs=1e-7)
    assert sparse.in_forward == (init == "post")


def test_a_batch_in_which_nothing_fires_is_a_zero_gradient():
    fam = _family("transposed", ALWAYS_SPARSE)
    fam.b_enc.data.fill_(-1e3)
    fired, parts = fam.step(torch.randn(8, SMALL_SOURCE.d_in), want_parts=True)
    assert not fired.any() and fam.sparse
    assert all(p.grad.dtype == torch.float32 and not p.grad.any() for p in fam.params.values())
    assert parts[16]["l0"] == 0 and parts[16]["l1"] == 0


@pytest.mark.parametrize("alternate", [False, True])
@pytest.mark.parametrize("init", ["transposed", "post"])
def test_crossing_the_switch_gives_the_autograd_weights(init, alternate, monkeypatch):
    """The codes start half active; with the switch at 0.4 the first steps run dense and the later
    ones sparse. ``alternate`` flips between the two steps at every step instead."""
    modes = []
    real = _FusedFamily.step

    def spy(self, x, want_parts):
        if alternate:
            self.sparse_below = ALWAYS_SPARSE if len(modes) % 2 else 0.0
        out = real(self, x, want_parts)
        modes.append(self.sparse)
        return out

    monkeypatch.setattr(_FusedFamily, "step", spy)
    src = SyntheticSource(SMALL_SOURCE)
    base = dict(sizes=SIZES, n_steps=14, batch_size=64, l1_coeff=1e-2, init=init, log_every=1)
    fused, fused_hist = train_family(src, quiet(fused=True, sparse_below=0.4, **base))
    plain, plain_hist = train_family(src, quiet(fused=False, **base))
    assert modes[0] is False and modes[-1] is True and len(modes) == 14
    if alternate:
        assert modes == [i % 2 == 1 for i in range(14)]
    else:  # dense, then sparse from some step on
        assert sorted(modes) == modes
    for s in SIZES:
        for name in ("W_enc", "b_enc", "W_dec"):
            got, ref = getattr(fused[s], name).detach(), getattr(plain[s], name).detach()
            assert torch.allclose(got, ref, rtol=1e-5, atol=1e-6), (s, name, (got - ref).abs().max())
    for a, b in zip(fused_hist, plain_hist, strict=True):
        assert a["d_sae"] == b["d_sae"] and a["l0"] == b["l0"]
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)


@pytest.mark.parametrize("sparse_below", [0.4, ALWAYS_SPARSE])
def test_sparse_runs_resume_bit_exactly(tmp_path, sparse_below):
    src = SyntheticSource(SMALL_SOURCE)
    cfg = quiet(sizes=SIZES, n_steps=24, batch_size=32, checkpoint_every=8, l1_coeff=1e-2, log_every=4,
                sparse_below=sparse_below)
    reference, ref_history = train_family(src, cfg)

    def interrupt(step: int) -> None:
        if step == 13:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_family(src, cfg, out_dir=tmp_path, on_step=interrupt)
    resumed, history = train_family(src, cfg, out_dir=tmp_path)
    for s in SIZES:
        for name, tensor in reference[s].state_dict().items():
            assert torch.equal(tensor, resumed[s].state_dict()[name]), (s, name)
    assert history == ref_history


def test_the_sparse_switch_is_not_a_cache_key():
    """Results agree to float rounding whichever step ran, so the switch must not split caches."""
    from sae_core.report.pipeline import FAMILY_KEYS

    assert "sparse_below" not in FAMILY_KEYS and "fused" not in FAMILY_KEYS


@pytest.mark.parametrize("activation", ["relu", "topk"])
def test_the_step_does_not_depend_on_the_thread_count(activation, monkeypatch):
    """SPARSE_THREADS / UPDATE_THREADS ("auto" picks by load) must not change a single bit."""
    import sae_core.train as train

    src = SyntheticSource(SMALL_SOURCE)
    kw = {"k": 8, "aux_k": 16} if activation == "topk" else {}
    cfg = quiet(sizes=(512, 2048), l1_coeff=1e-2, activation=activation, **kw)
    old = torch.get_num_threads()
    weights = []
    try:
        torch.set_num_threads(2)
        for threads in (1, None):
            monkeypatch.setattr(train, "SPARSE_THREADS", threads)
            monkeypatch.setattr(train, "UPDATE_THREADS", threads)
            members = _make_family(cfg, SMALL_SOURCE.d_in, {}, torch.device("cpu"), fused=False)
            fam = _FusedFamily(members, cfg.lr, cfg.l1_coeff, ALWAYS_SPARSE,
                               aux_k={s: 16 for s in cfg.sizes} if activation == "topk" else None, dead_window=2)
            since = torch.full((sum(cfg.sizes),), 5)  # every latent "dead" for AuxK's selection
            for step in range(6):
                fam.step(src.batch(step, 256), want_parts=False, since=since if activation == "topk" else None)
            assert fam.sparse
            weights.append({n: p.data.clone() for n, p in fam.params.items()})
    finally:
        torch.set_num_threads(old)
    for name in weights[0]:
        assert torch.equal(weights[0][name], weights[1][name]), name
