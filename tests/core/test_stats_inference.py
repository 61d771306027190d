"""Reporting p-values, a count against a null rate, correlations with intervals and the
bootstrap over dependent groups (sae_core.stats)."""

import numpy as np
import pytest

from sae_core.stats import TruncatedNullTest, format_p


# ------------------------------------------------------------------ format_p
@pytest.mark.parametrize(
    "n_mc,p,text",
    [
        (1000, 1 / 1001, "p ≤ 0.001"),  # the floor 0.000999 rounded up
        (999, 1 / 1000, "p ≤ 0.001"),
        (200, 1 / 201, "p ≤ 0.005"),  # 0.004975
        (400, 1 / 401, "p ≤ 0.003"),  # 0.002494
        (9999, 1 / 10_000, "p ≤ 1e-4"),
        (10**6, 1 / (10**6 + 1), "p ≤ 1e-6"),
        (1, 0.5, "p ≤ 0.5"),
        (1000, 2 / 1001, "p = 0.002"),  # one step above the floor is a value, not a bound
        (1000, 23 / 1001, "p = 0.023"),
        (1000, 1.0, "p = 1.000"),
        (10**6, 5 / (10**6 + 1), "p < 1e-5"),  # above the floor but below 0.001
    ],
)
def test_format_p_monte_carlo(n_mc, p, text):
    assert format_p(p, n_mc) == text


@pytest.mark.parametrize(
    "p,text",
    [
        (0.5, "p = 0.500"),
        (0.023, "p = 0.023"),
        (0.001, "p = 0.001"),
        (0.000999, "p < 0.001"),
        (3.2e-7, "p < 1e-6"),
        (1e-6, "p < 1e-5"),  # a bound, so never "p < 1e-6" for p = 1e-6 itself
        (3.15e-10, "p < 1e-9"),
        (0.0, "p < 1e-300"),
        (1.0, "p = 1.000"),
    ],
)
def test_format_p_analytic(p, text):
    assert format_p(p) == text


def test_format_p_rejects_bad_input():
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="lies in"):
            format_p(bad)
    for bad in (0, -5, 2.5):
        with pytest.raises(ValueError, match="n_mc"):
            format_p(0.5, bad)


def test_truncated_null_test_exposes_its_floor():
    at = TruncatedNullTest(n=100, cutoff=0.4, w1=0.05, expected=0.01, spread=0.002, p_value=1 / 1001, n_mc=1000)
    assert at.p_floor == pytest.approx(1 / 1001) and at.at_floor and at.p_text == "p ≤ 0.001"
    above = TruncatedNullTest(n=100, cutoff=0.4, w1=0.01, expected=0.01, spread=0.002, p_value=412 / 1001, n_mc=1000)
    assert not above.at_floor and above.p_text == "p = 0.412"
    np.testing.assert_equal(above.consistent(), True)
