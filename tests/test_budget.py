"""best_within_budget: the one rule for the compute-optimal cell under a budget."""

from sorl_core.studies.sweep_schema import best_within_budget

CELLS = [
    {"m_inf": 8, "n": 1, "network_calls": 8, "success_rate": 0.88},
    {"m_inf": 4, "n": 2, "network_calls": 10, "success_rate": 0.88},  # as good, dearer
    {"m_inf": 1, "n": 4, "network_calls": 8, "success_rate": 0.88},  # as good, as dear, fewer Euler steps
    {"m_inf": 8, "n": 4, "network_calls": 36, "success_rate": 0.50},
    {"m_inf": 1, "n": 1, "network_calls": 1, "success_rate": 0.10},
]


def test_the_best_cell_that_fits_with_ties_to_fewer_calls_then_fewer_steps():
    assert best_within_budget(CELLS, 100)["m_inf"] == 1 and best_within_budget(CELLS, 100)["n"] == 4
    assert best_within_budget(CELLS, 7) == CELLS[4]
    assert best_within_budget(CELLS, 0.5) is None


def test_any_value_column():
    assert best_within_budget(CELLS, 100, value="network_calls") == CELLS[3]  # the dearest, for the sake of it
