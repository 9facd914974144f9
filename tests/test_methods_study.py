"""SORL against its baselines at equal calls (sorl_core/studies/methods.py): the pooling, the frontier and the words."""

from __future__ import annotations

import pytest

from sorl_core.stats import wilson_interval
from sorl_core.studies.methods import frontiers, pooled_cells, verdict


def row(method, m, n, successes, calls, seed=0, verifier="q", adaptive=""):
    return {"method": method, "m_inf": m, "n": n, "successes": successes, "episodes": 50, "mean_length": 100.0,
            "network_calls": calls, "verifier": verifier, "adaptive": adaptive, "train_seed": seed}


def test_cells_pool_the_seeds_and_leave_adaptive_rows_out():
    rows = [row("sorl", 8, 1, 40, 8, seed=0), row("sorl", 8, 1, 44, 8, seed=1),
            row("sorl", 8, 1, 49, 9.5, seed=0, adaptive="seq:eps=0.05")]
    (cell,) = pooled_cells(rows)["sorl"]
    assert (cell["successes"], cell["episodes"], cell["files"]) == (84, 100, 2)
    assert (cell["success_ci_low"], cell["success_ci_high"]) == pytest.approx(wilson_interval(84, 100))


def test_the_frontier_is_each_method_s_best_cell_within_each_budget():
    rows = [row("sorl", 1, 1, 5, 1), row("sorl", 8, 1, 45, 8), row("fql", 1, 1, 20, 1), row("fql", 1, 4, 30, 8)]
    best = frontiers(pooled_cells(rows), budgets=(1, 4, 8))
    assert [c["m_inf"] if c else None for c in best["sorl"]] == [1, 1, 8]
    assert [(c["m_inf"], c["n"]) for c in best["fql"]] == [(1, 1), (1, 1), (1, 4)]


def test_the_verdict_says_where_sorl_is_ahead_behind_or_not_told_apart():
    rows = [row("sorl", 1, 1, 5, 1), row("sorl", 4, 1, 30, 4), row("sorl", 8, 1, 45, 8),
            row("fql", 1, 1, 20, 1), row("fql", 1, 4, 32, 8)]
    lines = verdict(frontiers(pooled_cells(rows), budgets=(1, 4, 8)), budgets=(1, 4, 8))
    assert lines[0].startswith("- ≤ 1 call: sorl 10% (M_inf = 1, N = 1)")
    assert "fql 40% (M_inf = 1, N = 1): -30 points, intervals apart: behind" in lines[0]
    assert "+20 points, intervals overlap" in lines[1]  # 60% [46%, 72%] against 40% [28%, 54%]
    assert "+26 points, intervals apart: ahead" in lines[2]  # 90% against 64%
    assert lines[-1] == ("- In short, sorl is ahead of every baseline's best, intervals apart, at 8 calls; behind the "
                         "best baseline, intervals apart, at 1 call; not told apart from the best baseline at 4 calls "
                         "per action.")


def test_a_budget_where_no_best_cell_changes_gets_no_line_of_its_own_and_budgets_join_into_ranges():
    from sorl_core.studies.methods import budgets_text

    rows = [row("sorl", 1, 1, 5, 1), row("sorl", 2, 1, 40, 2), row("fql", 1, 1, 20, 1)]
    lines = verdict(frontiers(pooled_cells(rows), budgets=(1, 2, 4, 8)), budgets=(1, 2, 4, 8))
    assert len(lines) == 3 and lines[1].startswith("- ≤ 2 calls: sorl 80% (M_inf = 2, N = 1)")
    assert lines[-1].endswith("ahead of every baseline's best, intervals apart, at 2-8 calls; behind the best "
                              "baseline, intervals apart, at 1 call per action.")
    assert budgets_text([1, 2, 4, 8, 16], [1, 4, 8, 16]) == "1 and 4-16 calls"
