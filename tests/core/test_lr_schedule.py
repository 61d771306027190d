"""The learning-rate schedule (warm-up and decay) of the family loop."""

import pytest
import torch

from sae_core.sources.synthetic import SyntheticConfig, SyntheticSource
from sae_core.train import TrainConfig, lr_at, train_family

SOURCE = SyntheticConfig(d_in=16, n_features=48, mean_active=3.0, n_parents=2, children_per_parent=2, seed=2)


def test_the_schedule_warms_up_linearly_and_decays_to_zero_over_the_last_share():
    cfg = TrainConfig(sizes=(8,), n_steps=100, lr=1e-3, lr_warmup=10, lr_decay=0.2)
    assert lr_at(cfg, 0) == pytest.approx(1e-4)  # step 1 of 10
    assert lr_at(cfg, 9) == pytest.approx(1e-3) and lr_at(cfg, 50) == pytest.approx(1e-3)
    assert lr_at(cfg, 80) == pytest.approx(1e-3)  # the decay covers steps 80..99: 20/20 at its start
    assert lr_at(cfg, 90) == pytest.approx(1e-3 * 10 / 20) and lr_at(cfg, 99) == pytest.approx(1e-3 / 20)
    constant = TrainConfig(sizes=(8,), n_steps=100)
    assert {lr_at(constant, s) for s in range(100)} == {1e-3}
    with pytest.raises(ValueError, match="lr_decay"):
        TrainConfig(sizes=(8,), lr_decay=1.0)
    with pytest.raises(ValueError, match="lr_warmup"):
        TrainConfig(sizes=(8,), lr_warmup=-1)


def test_the_fused_and_plain_steps_follow_the_same_schedule_and_differ_from_a_constant_rate():
    common = {"sizes": (16, 32), "n_steps": 12, "batch_size": 32, "progress": False, "sparse_below": 0.0,
              "checkpoint_every": 0}
    scheduled = {**common, "lr_warmup": 4, "lr_decay": 0.5}
    fused, _ = train_family(SyntheticSource(SOURCE), TrainConfig(**scheduled, fused=True))
    plain, _ = train_family(SyntheticSource(SOURCE), TrainConfig(**scheduled, fused=False))
    const, _ = train_family(SyntheticSource(SOURCE), TrainConfig(**common, fused=True))
    for size in (16, 32):
        torch.testing.assert_close(fused[size].W_dec, plain[size].W_dec, atol=1e-5, rtol=0)
        assert (fused[size].W_dec - const[size].W_dec).abs().max() > 1e-4  # the schedule changed training
