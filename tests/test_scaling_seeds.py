"""The Scaling page with several training seeds of one recipe: means, spread and per-seed lines, and the choice of
what tells series apart (bundled seeds or a `sorl-lab grid` sweep.csv)."""

import numpy as np
import pandas as pd
import pytest
from plotly_json import arr, specs
from test_app_pages import EPISODES, M_GRID, N_GRID, RATE_A, RATE_B, SCALING_PAGE, TIMEOUT, assert_clean, named, \
    sweep_bytes, sweep_rows

from app import scaling_page as S  # noqa: E402
from sorl_core.verifiers import calls_text  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

# Three seeds of recipe "ckpt" (M_BTT 8) whose rates differ, and one seed of "other" (M_BTT 1).
SHIFT = {0: 0.0, 1: -0.06, 2: 0.10}


def seed_rows(seed: int) -> list[dict]:
    rates = {cell: min(1.0, max(0.0, r + SHIFT[seed])) for cell, r in RATE_A.items()}
    name = "ckpt" if seed == 0 else f"ckpt-s{seed}"
    return [{**row, "train_seed": seed} for row in sweep_rows(name, 8, rates)]


def rate(seed: int, m: int, n: int) -> float:
    return round(min(1.0, max(0.0, RATE_A[m, n] + SHIFT[seed])) * EPISODES) / EPISODES


OTHER = [{**row, "train_seed": 0} for row in sweep_rows("other", 1, RATE_B)]


def parsed(*row_lists) -> pd.DataFrame:
    return S.combine([(f"f{i}", S.parse_sweep(sweep_bytes(rows))) for i, rows in enumerate(row_lists)])


def test_recipe_drops_only_a_trailing_seed_tag():
    assert [S.recipe(c) for c in ["cube-single-task2-s1", "run_sd005", "ckpt seed3", "cube-single-task2", "s1-run"]] == \
        ["cube-single-task2", "run", "ckpt", "cube-single-task2", "s1-run"]
    # `sorl-lab grid` names run folders train-<what varies>-<hash of every option>
    assert [S.recipe(c) for c in ["train-seed=1-m_btt=8-0123abcd", "train-seed=2-0123abce", "train-m_btt=1-ffffffff"]] == \
        ["m_btt=8", "grid runs", "m_btt=1"]


def test_across_seeds_pools_the_seeds_episodes_and_keeps_their_spread():
    from sorl_core.stats import wilson_interval

    table = parsed(seed_rows(0), seed_rows(1), seed_rows(2), OTHER)
    assert S.has_seed_spread(table) and S.varying_axes(table) == ["recipe", "M_BTT", "training seed"]
    agg, members = S.across_seeds(table, ["recipe", "M_BTT"])
    # The mean is named as one: it does not carry the name of the seed-0 checkpoint ("ckpt · M_BTT=8").
    assert S.series_order(agg) == ["ckpt · M_BTT=8 · mean of 3 seeds", "other · M_BTT=1"]
    for m in M_GRID:
        for n in N_GRID:
            cell = agg[(agg.series == "ckpt · M_BTT=8 · mean of 3 seeds") & (agg.m_inf == m) & (agg.n == n)].iloc[0]
            rates = [rate(s, m, n) for s in SHIFT]
            assert cell.success_rate == pytest.approx(np.mean(rates))  # equal episodes: the pooled rate is the mean
            # A 95% interval of the pooled episodes, not the lowest and highest seed (that is the spread).
            pooled = wilson_interval(round(sum(rates) * EPISODES), 3 * EPISODES)
            assert (cell.success_ci_low, cell.success_ci_high) == pytest.approx(pooled)
            assert (cell.spread_low, cell.spread_high) == (min(rates), max(rates))
            assert cell.members == 3 and cell.episodes == 3 * EPISODES
    assert set(members[members.series == "ckpt · M_BTT=8 · mean of 3 seeds"].member) == {"seed 0", "seed 1", "seed 2"}
    # Every seed its own series: nothing is averaged any more.
    per_seed, _ = S.across_seeds(table[table.checkpoint != "other"], ["training seed"])
    assert S.series_order(per_seed) == ["seed 0", "seed 1", "seed 2"] and (per_seed.members == 1).all()
    # A grid's sweep.csv: run folders named by cell, the seed in the name and in train_seed.
    grid = parsed([{**r, "checkpoint": f"train-seed={r['train_seed']}-{'%08x' % (7 + r['train_seed'])}"}
                   for r in seed_rows(0) + seed_rows(1)])
    assert S.has_seed_spread(grid) and S.varying_axes(grid) == ["training seed"]
    assert S.series_order(S.across_seeds(grid, [])[0]) == ["grid runs (M_BTT=8) · mean of 2 seeds"]
    # One seed each is not a spread.
    assert not S.has_seed_spread(parsed(seed_rows(0), OTHER))


def test_a_bad_train_seed_is_named():
    data = sweep_bytes([{**r, "train_seed": "x"} for r in seed_rows(1)])
    with pytest.raises(S.SweepError, match="train_seed must be empty or a whole number: line 2 \\('x'\\)"):
        S.parse_sweep(data)


@pytest.fixture
def bundled_seeds(tmp_path, monkeypatch):
    root = tmp_path / "bundled"
    # "a-single" sorts first but has one seed: the page opens on the recipe with the most seeds.
    for name, rows in (("a-single", OTHER), ("ckpt", seed_rows(0)), ("ckpt-s1", seed_rows(1)), ("ckpt-s2", seed_rows(2)),
                       ("other", OTHER)):
        (root / name).mkdir(parents=True)
        (root / name / "sweep.csv").write_bytes(sweep_bytes(rows))
    monkeypatch.setenv("SORL_LAB_SWEEP_DIR", str(root))
    at = AppTest.from_file(str(SCALING_PAGE), default_timeout=TIMEOUT)
    at.run()
    assert_clean(at)
    return at


def test_the_page_opens_on_the_mean_over_the_seeds_of_the_recipe_with_most_seeds(bundled_seeds):
    at = bundled_seeds
    assert at.multiselect(key="bundled").value == ["ckpt", "ckpt-s1", "ckpt-s2"]
    assert at.multiselect(key="compare_axes").value == []  # one recipe: the seeds are what is averaged
    comp = specs(at)[0]
    mean = named(comp, "N = 4")
    np.testing.assert_allclose(arr(mean["y"]), [np.mean([rate(s, m, 4) for s in SHIFT]) for m in M_GRID])
    from sorl_core.stats import wilson_interval

    hi = np.array([wilson_interval(round(sum(rate(s, m, 4) for s in SHIFT) * EPISODES), 3 * EPISODES)[1] for m in M_GRID])
    np.testing.assert_allclose(arr(mean["error_y"]["array"]), hi - arr(mean["y"]))
    thin = named(comp, "N = 4 · seed 2")
    np.testing.assert_allclose(arr(thin["y"]), [rate(2, m, 4) for m in M_GRID])
    assert "95% CI, seeds pooled" in comp["layout"]["yaxis"]["title"]["text"]
    assert any("thin lines" in (t.get("name") or "") for t in comp["data"])
    assert specs(at)[1]["layout"]["title"]["text"] == "ckpt (M_BTT=8) · mean of 3 seeds"
    assert any("Add “training seed”" in c.value for c in at.caption)  # the seeds are pooled: say how to split them


def test_compare_by_seed_or_by_recipe(bundled_seeds):
    at = bundled_seeds
    at.multiselect(key="compare_axes").set_value(["training seed"]).run()
    assert_clean(at)
    assert [s["layout"]["title"]["text"] for s in specs(at)[1:]] == ["seed 0", "seed 1", "seed 2"]
    assert not any("Add “training seed”" in c.value for c in at.caption)  # done already: not asked again
    np.testing.assert_allclose(arr(named(specs(at)[2], "success rate")["z"]),
                               [[rate(1, m, n) for n in N_GRID] for m in M_GRID])
    at.multiselect(key="compare_axes").set_value([]).run()
    # Another recipe arrives: its axes are compared at once, never averaged into the seeds' mean.
    at.multiselect(key="bundled").set_value(["ckpt", "ckpt-s1", "ckpt-s2", "other"]).run()
    assert_clean(at)
    assert at.multiselect(key="compare_axes").value == ["recipe", "M_BTT"]
    assert [s["layout"]["title"]["text"] for s in specs(at)[1:]] == ["ckpt · M_BTT=8 · mean of 3 seeds", "other · M_BTT=1"]
    at.multiselect(key="compare_axes").set_value(["recipe", "M_BTT", "training seed"]).run()
    assert_clean(at)
    assert len(specs(at)) == 1 + 4  # three seeds of ckpt and the one of other
    assert "ckpt · M_BTT=8 · seed 1" in {m.label for m in at.metric}


def test_grid_folders_under_runs_are_offered(tmp_path, monkeypatch):
    """`sorl-lab grid` writes DIR/cells.csv and DIR/sweep.csv under runs/: the page lists those folders."""
    grid = tmp_path / "runs" / "grid-seeds"
    grid.mkdir(parents=True)
    (grid / "sweep.csv").write_bytes(sweep_bytes(
        [{**r, "checkpoint": f"train-seed={r['train_seed']}-{'%08x' % (9 + r['train_seed'])}"}
         for r in seed_rows(0) + seed_rows(1) + seed_rows(2)]))
    (grid / "cells.csv").write_text("cell,kind,parameters,state,node,seconds,error\n")
    (tmp_path / "runs" / "plain-run").mkdir()
    (tmp_path / "runs" / "plain-run" / "sweep.csv").write_text("not a grid\n")  # no cells.csv: not offered
    monkeypatch.setenv("SORL_LAB_GRID_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("SORL_LAB_SWEEP_DIR", str(tmp_path / "none"))
    at = AppTest.from_file(str(SCALING_PAGE), default_timeout=TIMEOUT)
    at.run()
    assert_clean(at)
    picker = at.multiselect(key="grids")
    assert picker.options == ["grid-seeds"] and picker.value == []
    picker.set_value(["grid-seeds"]).run()
    assert_clean(at)
    assert specs(at)[1]["layout"]["title"]["text"] == "grid runs (M_BTT=8)<br>mean of 3 seeds"  # 36 characters: two lines
    mean = named(specs(at)[0], "N = 1")
    np.testing.assert_allclose(arr(mean["y"]), [np.mean([rate(s, m, 1) for s in SHIFT]) for m in M_GRID])


def test_a_policy_that_never_succeeds_has_no_compute_optimal_cell(bundled_seeds):
    """A sweep of zeros (an untrained policy, like the bundled cube-double one) names no optimum and stars no cell."""
    at = bundled_seeds
    # Overwrite "a-single" (bundled, one seed) with a sweep of zeros.
    zeros = {cell: 0.0 for cell in RATE_A}
    root = S.sweep_dir()
    (root / "a-single" / "sweep.csv").write_bytes(sweep_bytes([{**r, "train_seed": 0} for r in sweep_rows("a-single", 8, zeros)]))
    at.multiselect(key="bundled").set_value(["a-single"]).run()
    assert_clean(at)
    assert [m.value for m in at.metric] == ["no cell succeeds"]
    assert "failed every episode" in at.metric[0].help
    assert not any("compute-optimal" in (t.get("name") or "") for spec in specs(at) for t in spec["data"])
    # One success somewhere: that cell is the optimum again.
    at.multiselect(key="bundled").set_value(["ckpt"]).run()
    assert at.metric[0].value.startswith("M_inf=")
    assert any("compute-optimal" in (t.get("name") or "") for t in specs(at)[0]["data"])


# ----------------------------------------------------------------------------- the training budget (snapshots)
BUDGETS = (10_000, 20_000, 40_000)


def snapshot_rows(seed: int) -> list[dict]:
    """One run's sweep of its snapshots (`sorl-lab evaluate RUN`): success grows with training iterations."""
    name = "run" if seed == 0 else f"run-s{seed}"
    rows = []
    for b, scale in zip(BUDGETS, (0.3, 0.7, 1.0)):
        rates = {cell: min(1.0, max(0.0, r * scale + SHIFT[seed])) for cell, r in RATE_A.items()}
        rows += [{**row, "train_seed": seed, "train_iterations": b, "success_timing": "pre"}
                 for row in sweep_rows(f"{name}@{b}", 8, rates)]
    return rows


def pooled_rate(b: int, m: int, n: int) -> float:
    scale = dict(zip(BUDGETS, (0.3, 0.7, 1.0)))[b]
    return np.mean([round(min(1.0, max(0.0, RATE_A[m, n] * scale + SHIFT[s])) * EPISODES) / EPISODES for s in SHIFT])


def test_training_budget_pools_each_budget_over_the_seeds():
    table = parsed(snapshot_rows(0), snapshot_rows(1), snapshot_rows(2))
    tb = S.training_budget(table)
    assert set(tb.run) == {"run"} and sorted(tb.train_iterations.unique()) == list(BUDGETS) and (tb.seeds == 3).all()
    for b in BUDGETS:
        cell = tb[(tb.train_iterations == b) & (tb.m_inf == 8) & (tb.n == 1)].iloc[0]
        assert cell.success_rate == pytest.approx(pooled_rate(b, 8, 1)) and cell.episodes == 3 * EPISODES
        assert cell.success_ci_low < cell.success_rate < cell.success_ci_high
    # One budget only (the bundled sweeps today): no training-budget view.
    assert S.training_budget(parsed(seed_rows(0), seed_rows(1))).empty
    sentence = S.cheapest_for_target(tb, 0.5)
    first = tb[tb.success_rate >= 0.5].sort_values(["train_iterations", "network_calls"]).iloc[0]
    assert sentence.startswith("To reach 50% success: after") and f"{calls_text(first.network_calls)} per action" in sentence
    short = S.cheapest_for_target(tb, 0.999)  # nothing reaches it: how close the best cell came, and which it is
    top = tb.sort_values(["success_rate", "train_iterations", "network_calls"], ascending=[False, True, True]).iloc[0]
    assert short.startswith("No measured") and f"reaches {top.success_rate:.0%} [{top.success_ci_low:.0%}, " in short
    assert f"({S.cell_label(top)}, after {top.train_iterations:,} iterations)" in short


def test_a_budget_swept_with_two_verifiers_keeps_one_line_per_n_1_setting():
    """N = 1 ranks nothing: its row repeated under each verifier is one setting, pooled once."""
    both = [{**r, "verifier": v} for r in snapshot_rows(0) for v in (("q", "consensus") if r["n"] == 1 else ("q",))]
    both += [{**r, "verifier": "consensus"} for r in snapshot_rows(0) if r["n"] > 1]
    tb = S.training_budget(parsed(both))
    one = tb[tb.n == 1]
    assert len(one) == len(BUDGETS) * len(M_GRID) and (one.episodes == EPISODES).all()
    assert set(tb[tb.n > 1].verifier) == {"q", "consensus"}
    assert S.headline_cells(tb) == ["M_inf=1, N=1", "M_inf=8, N=1", "M_inf=8, N=16 · q", "M_inf=8, N=16 · consensus"]


def test_the_budget_findings_answer_each_question_from_the_pooled_cells():
    from sorl_core.studies.sweep_report import budget_findings

    tb = S.training_budget(parsed(snapshot_rows(0), snapshot_rows(1), snapshot_rows(2)))
    q_line, m_line, cheapest = budget_findings(tb)
    for b in BUDGETS:
        q16, one = pooled_rate(b, 8, 16), pooled_rate(b, 8, 1)
        assert f"{b // 1000}k: {q16:.0%} against {one:.0%} ({round(100 * (q16 - one)):+d} points" in q_line
        assert f"{b // 1000}k: {pooled_rate(b, 1, 1):.0%} against {one:.0%}" in m_line
    assert q_line.startswith("Best-of-16 by Q against one sample, both at M_inf = 8")
    assert cheapest == S.cheapest_for_target(tb, 0.8)
    from sorl_core.studies.sweep_report import budget_markdown

    rows = [line for line in budget_markdown(tb) if any(line.startswith(f"| {b:,} |") for b in BUDGETS)]
    assert [r.split(" | ")[0] for r in rows] == [f"| {b:,}" for b in BUDGETS]
    assert all(f" | 3 | {pooled_rate(b, 1, 1):.0%} [" in r for b, r in zip(BUDGETS, rows))


def test_the_budget_findings_put_the_q_free_pick_beside_q_where_it_was_measured():
    from sorl_core.studies.sweep_report import budget_findings

    both = [{**r, "verifier": v} for r in snapshot_rows(0) for v in (("q", "consensus") if r["n"] == 1 else ("q",))]
    both += [{**r, "verifier": "consensus", "successes": 0} for r in snapshot_rows(0) if r["n"] > 1]
    q_line, consensus_line, m_line, cheapest = budget_findings(S.training_budget(parsed(both)))
    assert q_line.startswith("Best-of-16 by Q against one sample")
    assert consensus_line.startswith("Best-of-16 by consensus (no critic")
    for b in BUDGETS:
        one = next(int(r["successes"]) / int(r["episodes"]) for r in snapshot_rows(0)
                   if (r["train_iterations"], r["m_inf"], r["n"]) == (b, 8, 1))
        assert f"{b // 1000}k: 0% against {one:.0%} ({round(-100 * one):+d} points" in consensus_line
    assert m_line.startswith("M_inf = 1 against M_inf = 8")


def test_the_page_shows_training_against_test_time_compute(tmp_path, monkeypatch):
    root = tmp_path / "bundled"
    for seed in SHIFT:
        (root / f"run-s{seed}").mkdir(parents=True)
        (root / f"run-s{seed}" / "sweep.csv").write_bytes(sweep_bytes(snapshot_rows(seed)))
    monkeypatch.setenv("SORL_LAB_SWEEP_DIR", str(root))
    at = AppTest.from_file(str(SCALING_PAGE), default_timeout=TIMEOUT)
    at.run()
    assert_clean(at)
    assert "Training compute against test-time compute" in [h.value for h in at.subheader]
    curves = next(s for s in specs(at) if s["layout"]["title"]["text"].startswith("Success against training iterations"))
    line = named(curves, "M_inf=8, N=1")
    assert arr(line["x"]).tolist() == list(BUDGETS)
    np.testing.assert_allclose(arr(line["y"]), [pooled_rate(b, 8, 1) for b in BUDGETS])
    plane = next(s for s in specs(at) if s["layout"]["title"]["text"].startswith("Training compute against"))
    assert list(plane["data"][0]["y"]) == [f"{b:,}" for b in BUDGETS]
    assert any(m.value.startswith("To reach 80% success") or m.value.startswith("No measured") for m in at.markdown)
    at.select_slider(key="budget_target").set_value(0.5).run()
    first = next(b for b in BUDGETS if any(pooled_rate(b, m, n) >= 0.5 for m, n in RATE_A))  # 10k never gets there
    assert first == 20_000
    assert any(m.value.startswith("To reach 50% success: after 20,000 iterations") for m in at.markdown)


def test_the_success_target_opens_on_the_tasks_own_target(tmp_path, monkeypatch):
    """cube-double's target is 10%, not the 80% of cube-single: the sentence answers the question the task asks."""
    from sorl_core.studies.sweep_report import success_target

    root = tmp_path / "bundled"
    rows = [{**r, "env": "cube-double-play-singletask-task2-v0"} for r in snapshot_rows(0) + snapshot_rows(1)]
    assert success_target(S.training_budget(parsed(rows))) == 0.10
    assert success_target(S.training_budget(parsed(snapshot_rows(0), snapshot_rows(1)))) is None  # no such task
    (root / "run").mkdir(parents=True)
    (root / "run" / "sweep_budget.csv").write_bytes(sweep_bytes(rows))
    monkeypatch.setenv("SORL_LAB_SWEEP_DIR", str(root))
    at = AppTest.from_file(str(SCALING_PAGE), default_timeout=TIMEOUT)
    at.run()
    assert_clean(at)
    assert at.select_slider(key="budget_target").value == 0.10
    assert any(m.value.startswith("To reach 10% success") for m in at.markdown)


def test_the_page_opens_on_the_bundled_budget_sweep_and_counts_each_episode_once(tmp_path, monkeypatch):
    """A bundled sweep_budget.csv (scripts/sweep_budget_runs.py) feeds the training-budget view from the start, beside
    the seeds the page opens on; picking it above as well does not count its episodes twice."""
    root = tmp_path / "bundled"
    for seed in SHIFT:
        (root / f"ckpt-s{seed}").mkdir(parents=True)
        (root / f"ckpt-s{seed}" / "sweep.csv").write_bytes(sweep_bytes(seed_rows(seed)))
    (root / "run-budget").mkdir()
    (root / "run-budget" / "sweep_budget.csv").write_bytes(
        sweep_bytes(snapshot_rows(0) + snapshot_rows(1) + snapshot_rows(2)))
    monkeypatch.setenv("SORL_LAB_SWEEP_DIR", str(root))
    at = AppTest.from_file(str(SCALING_PAGE), default_timeout=TIMEOUT)
    at.run()
    assert_clean(at)
    assert sorted(at.multiselect(key="bundled").value) == ["ckpt-s0", "ckpt-s1", "ckpt-s2"]
    assert "Training compute against test-time compute" in [h.value for h in at.subheader]

    def curve():
        fig = next(s for s in specs(at) if s["layout"]["title"]["text"].startswith("Success against training"))
        return arr(named(fig, "M_inf=8, N=1")["y"])

    np.testing.assert_allclose(curve(), [pooled_rate(b, 8, 1) for b in BUDGETS])
    at.multiselect(key="bundled").set_value(["ckpt-s0", "run-budget/sweep_budget.csv"]).run()
    assert_clean(at)
    np.testing.assert_allclose(curve(), [pooled_rate(b, 8, 1) for b in BUDGETS])


def test_no_training_budget_view_without_snapshots(bundled_seeds):
    assert "Training compute against test-time compute" not in [h.value for h in bundled_seeds.subheader]


def test_a_baseline_s_sweep_is_named_by_its_method_and_an_unknown_method_is_refused():
    baseline = [{**r, "method": "ifql"} for r in sweep_rows("ifql-run", 8, RATE_A)]
    df = S.combine([("f", S.parse_sweep(sweep_bytes(baseline, sweep_rows("sorl-run", 8, RATE_B))))])
    assert set(df.series) == {"ifql-run (ifql)", "sorl-run (M_BTT=8)"}  # a file without the column: SORL's
    assert set(df.method) == {"ifql", "sorl"}
    assert "method" in S.varying_axes(df)
    with pytest.raises(S.SweepError, match="column method must name one of sorl, flow-bc, ifql, fql: line 2 \\('dqn'\\)"):
        S.parse_sweep(sweep_bytes([{**r, "method": "dqn"} for r in sweep_rows("x", 8, RATE_A)]))


def test_a_learning_curve_short_of_its_target_is_projected_along_its_last_slope():
    from sorl_core.studies.sweep_report import project_to_target

    rising = [(5_000, 0.0), (10_000, 0.05), (20_000, 0.10), (40_000, 0.15), (80_000, 0.20)]
    p = project_to_target(rising, 0.40)  # 5 points per doubling: 20 more points are 4 doublings on, 80k x 16
    assert not p["reached"] and p["rate_per_doubling"] == pytest.approx(0.05) and p["projected"] == 1_280_000
    assert project_to_target(rising, 0.20)["reached"] and project_to_target(rising, 0.20)["projected"] is None
    flat = project_to_target([(10_000, 0.0), (20_000, 0.0), (30_000, 0.0)], 0.10)
    assert flat["rate_per_doubling"] is None and flat["projected"] is None  # never succeeded: nothing to project from
    falling = project_to_target([(10_000, 0.3), (20_000, 0.2), (40_000, 0.1)], 0.5)
    assert falling["rate_per_doubling"] == pytest.approx(-0.1) and falling["projected"] is None


def test_a_target_reached_and_lost_again_is_said_with_the_longest_trained_figure():
    """scene's run reached its 40% at one snapshot and fell below at the next: the card must not stop at 'reached'."""
    import pandas as pd

    from sorl_core.stats import wilson_interval
    from sorl_core.studies.sweep_report import target_sentence

    def budget(points):
        rows = [{"m_inf": 8, "n": 1, "train_iterations": b, "success_rate": k / 50,
                 "success_ci_low": wilson_interval(k, 50)[0], "success_ci_high": wilson_interval(k, 50)[1]}
                for b, k in points]
        return pd.DataFrame(rows)

    lost = target_sentence(budget([(40_000, 2), (80_000, 24), (160_000, 4)]), 0.40)
    assert lost == ("The 40% target at M_inf = 8, N = 1 is reached after 80,000 iterations (48%), but it does not "
                    "hold: after 160,000 iterations success is 8% [3%, 19%].")
    held = target_sentence(budget([(40_000, 2), (80_000, 24), (160_000, 30)]), 0.40)
    assert held == "The 40% target at M_inf = 8, N = 1 is reached after 80,000 iterations (48%)."
    # below the target by less than the interval's reach (cube-single's pooled seeds at 320k: 79% [72%, 85%])
    near = target_sentence(budget([(160_000, 42), (320_000, 39)]), 0.80)
    assert near == ("The 80% target at M_inf = 8, N = 1 is reached after 160,000 iterations (84%); after 320,000 "
                    "iterations success is 78% [65%, 87%], below it, though its interval still holds the target.")
