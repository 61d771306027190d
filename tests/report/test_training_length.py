"""The stopping rule and its sentences (sae_core.report.training_length)."""

import pytest

from sae_core.report.training_length import Rung, ladder_table, settle, settling_sentence


def rung(steps: int, low: float, fve: float = 0.9, bimodal: bool = True, epochs: float | None = None) -> Rung:
    return Rung(steps, {"low share of 1024": low, "FVE at 8192": fve}, bimodal, epochs)


def test_settles_at_the_first_doubling_that_moves_every_quantity_less_than_the_tolerance():
    result = settle([rung(100, 0.30), rung(200, 0.25), rung(400, 0.245)])
    assert result.settled_at == 200
    assert result.last_changes["low share of 1024"] == pytest.approx(0.005)
    assert result.unsettled == []


def test_a_change_exactly_at_the_tolerance_has_not_settled():
    # 0.5 - 0.25 is exactly 0.25 in binary floating point; the rule asks for strictly less
    result = settle([rung(100, 0.25), rung(200, 0.5)], tolerance=0.25)
    assert result.settled_at is None
    assert result.unsettled == ["low share of 1024"]


def test_a_flipped_bimodality_verdict_is_not_settled_even_when_shares_hold():
    result = settle([rung(100, 0.30, bimodal=True), rung(200, 0.30, bimodal=False)])
    assert result.settled_at is None
    text = settling_sentence("language model", result, 100)
    assert "flipped" in text and "yes at 100, no at 200" in text and "no share moved" in text


def test_unsettled_quantities_are_named_largest_first_with_their_change():
    result = settle([rung(100, 0.30, fve=0.80), rung(200, 0.20, fve=0.85)])
    assert result.unsettled == ["low share of 1024", "FVE at 8192"]
    text = settling_sentence("synthetic source", result, 100)
    assert "had not settled by the cap of 200 steps" in text
    assert "low share of 1024 by 10.0 points; FVE at 8192 by 5.0 points" in text
    assert "nan" not in text


def test_the_sentence_says_whether_the_chapters_use_the_settled_length():
    result = settle([rung(100, 0.30, epochs=0.5), rung(200, 0.301, epochs=1.0)])
    assert result.settled_at == 100
    text = settling_sentence("language model", result, 100)
    assert "had settled at 100 steps" in text and "(1.00 epochs" in text and "report that length" in text
    assert "short of it" in settling_sentence("language model", settle([rung(400, 0.3), rung(800, 0.3)]), 200)


def test_one_rung_says_nothing_about_settling():
    text = settling_sentence("language model", settle([rung(100, 0.3)]), 100)
    assert "one rung" in text


def test_bad_ladders_are_refused():
    with pytest.raises(ValueError, match="double"):
        settle([rung(100, 0.3), rung(300, 0.3)])
    with pytest.raises(ValueError, match="at least one"):
        settle([])
    with pytest.raises(ValueError, match="tolerance"):
        settle([rung(100, 0.3)], tolerance=0)


def test_the_table_has_one_row_per_quantity_and_one_column_per_rung():
    header, rows = ladder_table(settle([rung(100, 0.30), rung(200, 0.25)]))
    assert header == ["quantity", "100 steps", "200 steps", "last change"]
    assert rows[0] == ["low share of 1024", "30.0%", "25.0%", "5.0 points"]
    assert rows[-1][0] == "bimodal (small)"


def test_the_ladder_measures_what_an_independent_count_gives_and_stops_at_the_cap(family):
    import torch

    from sae_core import stats
    from sae_core.report import analysis, latents, training_length

    result = training_length.ladder(family, 2, 16, 32, 64, n_heldout=2048, tolerance=1e-9, progress=False)
    assert [r.steps for r in result.rungs] == [60, 120]  # a tolerance nothing meets: the ladder runs to its cap
    assert result.settled_at is None and result.final_steps == 120
    first = result.rungs[0].values
    cut = stats.null_cutoff(family.d_in, 64, 0.99)
    features = {s: torch.nn.functional.normalize(family.features(s), dim=1) for s in (16, 64)}
    brute = (features[16] @ features[64].T).max(dim=1).values.numpy()  # MCS by brute force
    assert first["low share of 16"] == pytest.approx(float((brute < cut).mean()))
    never = float((latents.heldout_fires(family, 64, 2048) == 0).mean())
    assert first["never-fires share at 64"] == pytest.approx(never)
    x = family.sample(2048)
    with torch.no_grad():
        fve = 1 - float((x - family.saes[64](x)).pow(2).sum()) / float((x - x.mean(0)).pow(2).sum())
    assert first["FVE at 64"] == pytest.approx(fve, rel=1e-5)
    longer = analysis.longer_run(family, 2, progress=False)
    assert result.rungs[1].values["FVE at 64"] != first["FVE at 64"]  # the second rung is the longer family
    assert longer.params["n_steps"] == 120
    with pytest.raises(ValueError, match="at least 2"):
        analysis.longer_run(family, 1)
    with pytest.raises(ValueError, match="power of two"):
        training_length.ladder(family, 3, 16, 32, 64, n_heldout=2048)


def test_a_decaying_family_never_continues_a_shorter_run(tmp_path, monkeypatch):
    from sae_core.report import pipeline

    monkeypatch.setenv("SAE_REPORT_CACHE", str(tmp_path))
    params = {"source": "synthetic", "sizes": [8, 16], "n_steps": 6, "batch_size": 16,
              "synthetic": {"d_in": 8, "n_features": 24, "mean_active": 2.0, "n_parents": 2, "children_per_parent": 2}}
    pipeline.ensure_family(pipeline.family_params(params), progress=False)
    longer = pipeline.family_params({**params, "n_steps": 12})
    assert pipeline._shorter_run(longer) is not None  # constant rate: the 6-step run is a prefix
    assert pipeline._shorter_run({**longer, "lr_decay": 0.2}) is None
    assert "lr_warmup" not in longer and pipeline.family_params({**params, "lr_warmup": 5})["lr_warmup"] == 5


def test_each_quantity_is_drawn_in_its_own_panel():
    from sae_core.report.training_length import panel

    assert panel("low share of 1024") == "MCS shares"
    assert panel("share of 4096 at or above 0.5") == "MCS shares"
    assert panel("ultralow share at 4096") == "latent classes"  # contains "low share": not an MCS share
    assert panel("never-fires share at 8192") == "latent classes" and panel("unmoved share at 1024") == "latent classes"
    assert panel("FVE at 8192") == "FVE"


def test_the_abstract_summary_names_each_source_and_its_largest_move():
    from sae_core.report.training_length import settling_summary

    moving = settle([rung(100, 0.30, fve=0.80), rung(200, 0.20, fve=0.85)])
    settled = settle([rung(100, 0.30), rung(200, 0.301)])
    text = settling_summary({"language model": moving, "synthetic": settled, "x": settle([rung(100, 0.3)])})
    assert text == ("Training length (chapter 2): on the language model it had not settled by 200 steps (low share "
                    "of 1024 still moved by 10.0 points); on the synthetic it had settled at 100 steps; on the x it "
                    "was not checked.")
    assert settling_summary({}) == "This build did not check the training length."
