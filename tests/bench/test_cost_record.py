"""The cost comparison in a run record keeps its relative precision however small the fraction of the bound."""

import pytest

from planner.benchmark import CostComparison


@pytest.mark.parametrize("measured", [1.0, 3.7, 55.5, 2593.9, 9000.0])
def test_fraction_and_dollars_keep_six_significant_digits(measured):
    bound = 2594.13
    exact = CostComparison(1, 55.04, measured, 55.04 / (measured * 3600) * 1e6, bound,
                           55.04 / (bound * 3600) * 1e6, measured / bound)
    record = exact.to_json()
    for key in ("fraction_of_bound", "measured_usd_per_million", "bound_usd_per_million", "measured_tokens_per_s"):
        assert record[key] == pytest.approx(getattr(exact, key), rel=5e-6), key
