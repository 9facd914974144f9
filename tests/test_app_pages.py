"""The multipage app: the "Scaling study" and "Training runs" pages under Streamlit's AppTest, their logic
modules (app/scaling_page.py, app/runs_page.py), and the front page surviving a visit to another page.

The sweep CSVs here are synthetic fixtures written by the tests (made-up success rates with exact Wilson
intervals), never results. The run folders are real: `sorl-lab train` with a tiny budget.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from plotly_json import arr, specs

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "app"
SCALING_PAGE = APP / "pages" / "2_Scaling_study.py"
RUNS_PAGE = APP / "pages" / "3_Training_runs.py"

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from app import runs_page as R  # noqa: E402
from app import scaling_page as S  # noqa: E402
from sorl_core.studies.sweep_schema import SWEEP_COLUMNS  # noqa: E402

TIMEOUT = 60
M_GRID, N_GRID = (1, 2, 4, 8), (1, 4, 16)


# --------------------------------------------------------------------------- helpers


def named(spec: dict, name: str) -> dict:
    return next(t for t in spec["data"] if t.get("name") == name)


def assert_clean(at) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    p, d = k / n, 1 + z * z / n
    c, h = (p + z * z / (2 * n)) / d, z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


def calls(m: int, n: int) -> int:
    return m * n + (n if n > 1 else 0)


# Synthetic success rates: checkpoint A gains more from Euler steps than B; B starts higher.
RATE_A = {(m, n): min(1.0, 0.10 + 0.10 * math.log2(m) + 0.12 * math.log2(n)) for m in M_GRID for n in N_GRID}
RATE_B = {(m, n): min(1.0, 0.20 + 0.05 * math.log2(m) + 0.08 * math.log2(n)) for m in M_GRID for n in N_GRID}
EPISODES = 50


def sweep_rows(checkpoint: str, m_btt: int, rates: dict) -> list[dict]:
    rows = []
    for (m, n), rate in rates.items():
        k = round(rate * EPISODES)
        lo, hi = wilson(k, EPISODES)
        rows.append(dict(checkpoint=checkpoint, env="synthetic-test-env", m_btt=m_btt, m_inf=m, n=n, episodes=EPISODES,
                         successes=k, success_rate=k / EPISODES, success_ci_low=lo, success_ci_high=hi,
                         mean_return=k / EPISODES, mean_length=100.0, actor_calls=m * n, critic_calls=n if n > 1 else 0,
                         network_calls=calls(m, n), ms_per_action=0.01 * calls(m, n), seed=0))
    return rows


def sweep_bytes(*row_lists: list[dict]) -> bytes:
    buf = io.StringIO()
    w = csv.DictWriter(buf, SWEEP_COLUMNS)
    w.writeheader()
    w.writerows(r for rows in row_lists for r in rows)
    return buf.getvalue().encode()


TWO_CHECKPOINTS = sweep_bytes(sweep_rows("ckpt-A", 8, RATE_A), sweep_rows("ckpt-B", 1, RATE_B))
SERIES_A, SERIES_B = "ckpt-A (M_BTT=8)", "ckpt-B (M_BTT=1)"


def expected_pick(rates: dict, budget: int) -> tuple[int, int]:
    """Brute force: highest recorded success among cells within budget; ties -> fewer calls, then fewer steps."""
    cells = [(round(r * EPISODES) / EPISODES, -calls(m, n), -m, (m, n)) for (m, n), r in rates.items()
             if calls(m, n) <= budget]
    return max(cells)[3]


@pytest.fixture(autouse=True)
def allow_tmp(tmp_path_factory, monkeypatch):
    """Typed paths are read only inside allow-listed folders (app/paths.py): allow this session's temp folders."""
    monkeypatch.setenv("SORL_LAB_PATHS", str(tmp_path_factory.getbasetemp()))


@pytest.fixture
def no_bundled(tmp_path, monkeypatch):
    monkeypatch.setenv("SORL_LAB_SWEEP_DIR", str(tmp_path / "none-here"))


@pytest.fixture
def scaling(no_bundled):
    at = AppTest.from_file(str(SCALING_PAGE), default_timeout=TIMEOUT)
    at.run()
    assert_clean(at)
    at.file_uploader(key="upload").set_value(("two-checkpoints.csv", TWO_CHECKPOINTS, "text/csv")).run()
    assert_clean(at)
    return at


# --------------------------------------------------------------------------- scaling page
def test_scaling_page_without_bundled_sweeps_says_so_and_offers_the_upload(no_bundled):
    at = AppTest.from_file(str(SCALING_PAGE), default_timeout=TIMEOUT)
    at.run()
    assert_clean(at)
    assert any("No bundled sweeps" in i.value and "sweep*.csv" in i.value for i in at.info)
    up = at.file_uploader(key="upload")
    # Any file is accepted, so that a wrong one gets the reason in words (a browser-side filter shows only a red icon).
    assert up.accept_multiple_files and up.allowed_type == [] and "M_BTT" in up.help
    assert not at.get("plotly_chart") and "series" not in [w.key for w in at.multiselect]  # nothing to plot, no empty picker


def test_scaling_grid_compute_plot_and_picks_for_two_checkpoints(scaling):
    at = scaling
    s = specs(at)
    assert len(s) == 3  # success vs compute, then one grid per checkpoint, side by side
    # The grids hold the numbers of the file, M_inf down, N across.
    for spec, rates, title in ((s[1], RATE_A, SERIES_A), (s[2], RATE_B, SERIES_B)):
        heat = named(spec, "success rate")
        assert spec["layout"]["title"]["text"] == title
        assert heat["y"] == [str(m) for m in M_GRID] and heat["x"] == [str(n) for n in N_GRID]
        want = np.array([[round(rates[m, n] * EPISODES) / EPISODES for n in N_GRID] for m in M_GRID])
        np.testing.assert_allclose(arr(heat["z"]), want)
        assert heat["texttemplate"] == "%{z:.2f}"  # the numbers are written in the cells
    # Success against compute: both checkpoints overlaid, x = network calls on a log axis, 95% CI error bars.
    comp = s[0]
    assert comp["layout"]["xaxis"]["type"] == "log"
    line = named(comp, f"{SERIES_B} · N = 4")
    np.testing.assert_array_equal(arr(line["x"]), [calls(m, 4) for m in M_GRID])
    rows = {(r["m_inf"], r["n"]): r for r in sweep_rows("b", 1, RATE_B)}
    np.testing.assert_allclose(arr(line["error_y"]["array"]),
                               [rows[m, 4]["success_ci_high"] - rows[m, 4]["success_rate"] for m in M_GRID])
    assert {t["name"].split(" · ")[0] for t in comp["data"] if " · N = " in t["name"]} == {SERIES_A, SERIES_B}
    # Full budget: the best cell of each checkpoint; the budget slider offers exactly the sweep's call counts.
    budget = at.select_slider(key="budget")
    assert [int(o) for o in budget.options] == sorted({calls(m, n) for m in M_GRID for n in N_GRID})
    assert budget.value == 144 and "M_inf·N actor calls" in budget.help
    values = {m.label: m.value for m in at.metric}
    assert values[SERIES_A] == "M_inf={}, N={}".format(*expected_pick(RATE_A, 144))


@pytest.mark.parametrize("budget", [8, 20, 48])
def test_the_budget_moves_the_compute_optimal_pick_and_greys_the_grid(scaling, budget):
    at = scaling
    before = specs(at)
    at.select_slider(key="budget").set_value(budget).run()
    assert_clean(at)
    after = specs(at)
    values = {m.label: m.value for m in at.metric}
    for series, rates, spec_before, spec in ((SERIES_A, RATE_A, before[1], after[1]), (SERIES_B, RATE_B, before[2], after[2])):
        m, n = expected_pick(rates, budget)
        assert values[series] == f"M_inf={m}, N={n}"
        star = named(spec, "compute-optimal")
        assert (star["x"], star["y"]) == ([str(n)], [str(m)])
        frame = next(sh for sh in spec["layout"]["shapes"] if sh.get("name") == "compute-optimal")
        assert frame["x0"] < N_GRID.index(n) < frame["x1"] and frame["y0"] < M_GRID.index(m) < frame["y1"]
        # The data layer is unchanged; the "over budget" layer covers exactly the cells that cost more.
        np.testing.assert_allclose(arr(named(spec, "success rate")["z"]), arr(named(spec_before, "success rate")["z"]))
        over = arr(named(spec, "over budget")["z"])
        np.testing.assert_array_equal(~np.isnan(over), [[calls(mm, nn) > budget for nn in N_GRID] for mm in M_GRID])
        assert np.isnan(arr(named(spec_before, "over budget")["z"])).all()  # at the full budget nothing is grey
    assert values[SERIES_A] != "M_inf=8, N=16"
    budget_line = next(t for t in after[0]["data"] if t["name"].startswith("budget:"))
    assert arr(budget_line["x"]).tolist() == [budget, budget]


def test_lines_per_m_inf_and_hiding_a_checkpoint(scaling):
    at = scaling
    at.radio(key="group").set_value("one per M_inf (parallel)").run()
    assert_clean(at)
    names = [t["name"] for t in specs(at)[0]["data"]]
    assert f"{SERIES_A} · M_inf = 2" in names and not any(" · N = " in n for n in names)
    assert "Parallel scaling" in specs(at)[0]["layout"]["title"]["text"]
    at.multiselect(key="series").set_value([SERIES_B]).run()
    assert_clean(at)
    s = specs(at)
    assert len(s) == 2 and s[1]["layout"]["title"]["text"] == SERIES_B
    assert [m.label for m in at.metric] == ["Compute-optimal"]
    assert len(at.get("download_button")) == 2


def test_bundled_sweeps_are_offered_and_two_files_with_one_label_stay_apart(tmp_path, monkeypatch):
    folder = tmp_path / "bundled" / "cube-single"
    folder.mkdir(parents=True)
    (folder / "sweep_synthetic.csv").write_bytes(sweep_bytes(sweep_rows("same-name", 8, RATE_A)))
    (folder / "notes.csv").write_text("not,a,sweep\n")  # not sweep*.csv: not offered
    monkeypatch.setenv("SORL_LAB_SWEEP_DIR", str(tmp_path / "bundled"))
    at = AppTest.from_file(str(SCALING_PAGE), default_timeout=TIMEOUT)
    at.run()
    assert_clean(at)
    picker = at.multiselect(key="bundled")
    assert picker.options == [str(Path("cube-single") / "sweep_synthetic.csv")] and picker.value == picker.options
    assert len(at.get("plotly_chart")) == 2 and not any("No bundled" in i.value for i in at.info)
    at.file_uploader(key="upload").set_value(("mine.csv", sweep_bytes(sweep_rows("same-name", 8, RATE_B)), "text/csv")).run()
    assert_clean(at)
    titles = [s["layout"]["title"]["text"] for s in specs(at)[1:]]
    assert titles == ["same-name (M_BTT=8)", "same-name (M_BTT=8) (2)"]  # the first keeps its name; the newcomer is numbered
    assert any("same-name (M_BTT=8) (2) is from mine.csv" in c.value for c in at.caption)


BAD = {
    "missing column": (b"checkpoint,env,m_inf,n\na,e,1,1\n", ["is not a sweep written by `sorl-lab evaluate`", "m_btt",
                                                            "more."]),
    "non-numeric": (TWO_CHECKPOINTS.replace(b",0.1,", b",lots,", 1), ["success_rate", "line 2", "'lots'"]),
    "empty cell": (TWO_CHECKPOINTS.replace(b"\nckpt-A,synthetic-test-env,8,1,4,", b"\nckpt-A,synthetic-test-env,,1,4,"),
                   ["m_btt", "line 3"]),
    "fraction out of range": (TWO_CHECKPOINTS.replace(b",0.1,", b",1.5,", 1), ["success_rate must lie in [0, 1]"]),
    "duplicate cell": (sweep_bytes(sweep_rows("a", 8, RATE_A), sweep_rows("a", 8, RATE_B)), ["appears twice", "line 14"]),
    "empty file": (b"", ["is empty"]),
    "header only": (",".join(SWEEP_COLUMNS).encode() + b"\n", ["no rows"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_sweep_csv_is_a_clear_error_not_a_crash(no_bundled, case):
    data, words = BAD[case]
    at = AppTest.from_file(str(SCALING_PAGE), default_timeout=TIMEOUT)
    at.run()
    at.file_uploader(key="upload").set_value(("bad.csv", data, "text/csv")).run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.error) == 1
    msg = at.error[0].value
    assert msg.startswith("bad.csv"), msg
    for w in words:
        assert w in msg, (w, msg)
    assert not at.get("plotly_chart")


def test_a_bad_file_beside_a_good_one_is_reported_and_the_good_one_shown(no_bundled):
    at = AppTest.from_file(str(SCALING_PAGE), default_timeout=TIMEOUT)
    at.run()
    at.file_uploader(key="upload").set_value([("good.csv", TWO_CHECKPOINTS, "text/csv"),
                                              ("bad.csv", BAD["non-numeric"][0], "text/csv")]).run()
    assert not at.exception
    assert [e.value.split(":")[0] for e in at.error] == ["bad.csv"]
    assert len(at.get("plotly_chart")) == 3


def test_the_same_file_uploaded_twice_stays_two_series(no_bundled):
    at = AppTest.from_file(str(SCALING_PAGE), default_timeout=TIMEOUT)
    at.run()
    one = sweep_bytes(sweep_rows("ckpt", 8, RATE_A))
    at.file_uploader(key="upload").set_value([("s.csv", one, "text/csv"), ("s.csv", one, "text/csv")]).run()
    assert_clean(at)
    assert at.multiselect(key="series").options == ["ckpt (M_BTT=8)", "ckpt (M_BTT=8) (2)"]
    assert len(at.get("plotly_chart")) == 3


def test_compute_optimal_ties_go_to_fewer_calls_and_nothing_fits_is_none():
    df = S.parse_sweep(TWO_CHECKPOINTS)
    a = df[df.checkpoint == "ckpt-A"].copy()
    a["success_rate"] = 0.5
    a["success_ci_low"], a["success_ci_high"] = 0.3, 0.7
    pick = S.compute_optimal(a, 144)
    assert (pick["m_inf"], pick["n"], pick["network_calls"]) == (1, 1, 1)  # every cell ties: the cheapest
    assert S.compute_optimal(a, 0.5) is None
    _, _, z = S.grid(a.iloc[1:])  # a missing cell is NaN, not a zero
    assert np.isnan(z[0, 0]) and np.isfinite(z[1:, :]).all()


@pytest.mark.slow
def test_a_small_sweep_runs_from_the_page_and_joins_the_plots(no_bundled, tmp_path, monkeypatch):
    """The page runs the real evaluator (environments, seeded episodes) on a checkpoint path."""
    from sorl_core.agent import SORLAgent
    from sorl_core.checkpoint import save_checkpoint
    from sorl_core.config import SORLConfig

    monkeypatch.setenv("SORL_LAB_OGBENCH_DIR", str(tmp_path / "no-bundled"))
    policy = save_checkpoint(tmp_path / "cube-tiny.pt", SORLAgent(SORLConfig(obs_dim=28, action_dim=5, size="tiny"), seed=0),
                             extra={"kind": "ogbench", "env": "cube-single-play-singletask-task2-v0"})
    at = AppTest.from_file(str(SCALING_PAGE), default_timeout=240)
    at.run()
    at.selectbox(key="sweep_ckpt").set_value("a path…").run()
    at.text_input(key="sweep_path").set_value(str(policy)).run()
    at.multiselect(key="sweep_m").set_value([1, 2]).run()
    at.multiselect(key="sweep_n").set_value([1, 2]).run()
    at.number_input(key="sweep_episodes").set_value(1).run()
    at.button(key="sweep_run").click().run()
    assert_clean(at)
    grid = [sp for sp in specs(at) if any(t.get("type") == "heatmap" for t in sp["data"])]
    assert grid, "the sweep's grid is drawn"
    z = arr(grid[0]["data"][0]["z"])
    assert z.shape == (2, 2) and np.all(z == 0)  # an untrained policy: no success in any cell
    rows = list(csv.DictReader(io.StringIO(S.run_small_sweep(policy, "again", [1], [2], 1, 0).decode())))
    assert [(r["m_inf"], r["n"], r["network_calls"], r["checkpoint"]) for r in rows] == [("1", "2", "4", "again")]


# --------------------------------------------------------------------------- training runs page
def _train(out: Path, *extra: str) -> Path:
    exe = Path(sys.executable).parent / "sorl-lab"
    cmd = [str(exe) if exe.exists() else "sorl-lab", "train", "--world", "ring", "--iterations", "60", "--log-every",
           "10", "--checkpoint-every", "30", "--out", str(out), "--no-progress", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    subprocess.run(cmd, check=True, env=env, capture_output=True, timeout=300)
    return out


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory) -> Path:
    """Two real runs: ring-m8 (evaluated every 30 iterations) and ring-m1 (M_BTT = 1, no evaluation)."""
    root = tmp_path_factory.mktemp("runs")
    _train(root / "ring-m8", "--eval-every", "30")
    _train(root / "ring-m1", "--eval-every", "0", "--agent.m-btt", "1")
    return root


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def runs_page(root: Path, selected=None) -> AppTest:
    at = AppTest.from_file(str(RUNS_PAGE), default_timeout=TIMEOUT)
    at.run()
    at.radio(key="runs_source").set_value("Your runs folder").run()
    at.text_input(key="runs_root").set_value(str(root)).run()
    if selected is not None:
        at.multiselect(key="runs_selected").set_value(selected).run()
    return at


def loss_trace(spec: dict, label: str, col: str, kind: str = "shown") -> dict:
    return next(t for t in spec["data"] if t.get("meta") == [label, col, kind])


@pytest.mark.slow
def test_runs_page_plots_the_run_s_losses_evaluations_and_config(runs_root):
    at = runs_page(runs_root, ["ring-m8"])
    assert_clean(at)
    assert at.multiselect(key="runs_selected").options == ["ring-m1", "ring-m8"]
    for w in (at.text_input(key="runs_root"), at.multiselect(key="runs_selected"), at.slider(key="smoothing")):
        assert w.help and len(w.help) > 40
    losses, evals = specs(at)
    metrics = read_rows(runs_root / "ring-m8" / "metrics.csv")
    assert len(metrics) == 6
    panels = R.loss_panels({"ring-m8": R.read_metrics((runs_root / "ring-m8" / "metrics.csv").read_bytes())})
    assert panels[:4] == ["critic_loss", "fm_loss", "sc_loss", "policy_q"]
    for col in [*panels, "q_mean"]:  # q_mean: the dataset actions' Q, dotted in the policy's Q panel
        t = loss_trace(losses, "ring-m8", col, "dataset" if col == "q_mean" else "shown")
        np.testing.assert_array_equal(arr(t["x"]), [float(r["step"]) for r in metrics])
        np.testing.assert_allclose(arr(t["y"]), [float(r[col]) for r in metrics], rtol=1e-12)
    titles = [a["text"] for a in losses["layout"]["annotations"]]
    assert titles == [R.PANEL_TITLES[c] for c in panels]
    # Evaluation: mean_reward (a toy run) by M_inf over iterations.
    rows = read_rows(runs_root / "ring-m8" / "eval.csv")
    assert [t["name"] for t in evals["data"]] == ["M_inf = 1", "M_inf = 2", "M_inf = 4", "M_inf = 8"]
    m4 = named(evals, "M_inf = 4")
    np.testing.assert_array_equal(arr(m4["x"]), [30, 60])
    np.testing.assert_allclose(arr(m4["y"]), [float(r["mean_reward"]) for r in rows if r["m_inf"] == "4"])
    assert "Mean true reward" in evals["layout"]["title"]["text"]
    # The resolved config, as written.
    assert at.json[0].value and json.loads(at.json[0].value)["agent"]["m_btt"] == 8


@pytest.mark.slow
def test_smoothing_keeps_the_raw_curve_and_overlay_compares_configs(runs_root):
    at = runs_page(runs_root, ["ring-m8", "ring-m1"])
    assert_clean(at)
    assert any("`ring-m1` has no evaluations in eval.csv" in c.value for c in at.caption)  # header only
    losses, evals = specs(at)
    assert {t["meta"][0] for t in losses["data"]} == {"ring-m8", "ring-m1"}
    assert {t["meta"][0] for t in evals["data"] if "meta" in t} == {"ring-m8"}  # only the evaluated run (the rest: the key)
    assert named(evals, "ring-m8 · M_inf = 8")  # named by run, as several runs are selected
    diff = at.table[0].value
    assert "agent.m_btt" in set(diff.index) and "seed" not in set(diff.index)
    at.slider(key="smoothing").set_value(0.6).run()
    assert_clean(at)
    losses = specs(at)[0]
    raw_data = [float(r["critic_loss"]) for r in read_rows(runs_root / "ring-m1" / "metrics.csv")]
    np.testing.assert_allclose(arr(loss_trace(losses, "ring-m1", "critic_loss", "raw")["y"]), raw_data, rtol=1e-12)
    shown = arr(loss_trace(losses, "ring-m1", "critic_loss")["y"])
    np.testing.assert_allclose(shown, R.smooth(raw_data, 0.6))
    assert shown[0] == pytest.approx(raw_data[0]) and not np.allclose(shown, raw_data)


@pytest.mark.slow
@pytest.mark.parametrize("content, words", [
    ("step,critic_loss\n10,0.5\n", ["metrics.csv lacks the column(s) fm_loss, sc_loss, q_loss"]),
    ("step,seconds,critic_loss,fm_loss,sc_loss,q_loss\n10,1,0.5,oops,0.1,0.2\n", ["fm_loss", "line 2", "'oops'"]),
    ("", ["metrics.csv is empty"]),
])
def test_a_malformed_metrics_csv_is_a_clear_error(runs_root, tmp_path, content, words):
    shutil.copytree(runs_root / "ring-m8", tmp_path / "broken")
    (tmp_path / "broken" / "metrics.csv").write_text(content)
    at = runs_page(tmp_path)
    assert not at.exception, [e.value for e in at.exception]
    msg = " ".join(e.value for e in at.error)
    for w in words:
        assert w in msg, (w, msg)
    assert "broken/metrics.csv" in msg
    assert any("metrics.csv" in i.value for i in at.info)  # and the page says there is nothing to plot
    assert len(at.get("plotly_chart")) == 1  # the evaluations still show


@pytest.mark.slow
def test_ogbench_style_eval_draws_success_with_its_interval_per_n(runs_root, tmp_path):
    run = tmp_path / "ogb"
    shutil.copytree(runs_root / "ring-m8", run)
    rows = ["step,m_inf,n,success_rate,success_ci_low,success_ci_high,mean_return"]
    for step in (30, 60):
        for m in (1, 8):
            for n in (1, 4):
                rate = 0.1 * m / 8 + 0.05 * n + step / 600  # synthetic
                rows.append(f"{step},{m},{n},{rate:.4f},{rate - 0.05:.4f},{rate + 0.1:.4f},{rate * 10:.3f}")
    (run / "eval.csv").write_text("\n".join(rows) + "\n")
    at = runs_page(tmp_path)
    assert_clean(at)
    assert at.selectbox(key="eval_n").options == ["1", "4"]
    at.selectbox(key="eval_n").set_value(4).run()
    assert_clean(at)
    ev = specs(at)[1]
    assert "Success rate" in ev["layout"]["title"]["text"] and ev["layout"]["title"]["text"].endswith("N = 4")
    m8 = named(ev, "M_inf = 8")
    np.testing.assert_allclose(arr(m8["y"]), [0.1 + 0.2 + 30 / 600, 0.1 + 0.2 + 60 / 600], atol=1e-4)
    np.testing.assert_allclose(arr(m8["error_y"]["array"]), [0.1, 0.1], atol=1e-4)
    np.testing.assert_allclose(arr(m8["error_y"]["arrayminus"]), [0.05, 0.05], atol=1e-4)


@pytest.mark.slow
def test_a_run_without_eval_csv_shows_its_losses_and_says_so(runs_root, tmp_path):
    shutil.copytree(runs_root / "ring-m8", tmp_path / "no-eval")
    (tmp_path / "no-eval" / "eval.csv").unlink()
    at = runs_page(tmp_path)
    assert_clean(at)
    assert any("`no-eval` has no eval.csv" in c.value for c in at.caption)
    assert any("No evaluations to show" in i.value for i in at.info)
    assert len(at.get("plotly_chart")) == 1  # the losses


def test_missing_or_empty_runs_folder_is_a_message(tmp_path):
    at = AppTest.from_file(str(RUNS_PAGE), default_timeout=TIMEOUT)
    at.run()
    at.radio(key="runs_source").set_value("Your runs folder").run()
    at.text_input(key="runs_root").set_value(str(tmp_path / "nope")).run()
    assert not at.exception and any("There is no folder" in w.value for w in at.warning)
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    at.text_input(key="runs_root").set_value(str(tmp_path / "empty")).run()
    assert not at.exception and any("No run folders" in i.value for i in at.info)
    assert not at.get("plotly_chart")


def test_run_readers_name_the_problem():
    with pytest.raises(R.RunError, match="neither a success_rate nor a mean_reward"):
        R.read_eval(b"step,m_inf,n,frac_in_support\n10,1,1,0.5\n")
    with pytest.raises(R.RunError, match="not valid JSON"):
        R.read_config(b"{nope")
    df = R.read_metrics(b"step,critic_loss,fm_loss,sc_loss,q_loss,note\n20,1,2,3,4,x\n10,,2,3,4,y\n")
    assert df.step.tolist() == [10, 20] and np.isnan(df.critic_loss[0]) and df.note.tolist() == ["y", "x"]
    np.testing.assert_allclose(R.smooth([1.0, 3.0], 0.5), [1.0, 7 / 3])  # debiased: (0.25 + 1.5) / 0.75


def test_find_runs_looks_a_few_levels_down(tmp_path):
    for rel in ("a", "group/b", "group/deeper/c"):
        (tmp_path / rel).mkdir(parents=True)
        (tmp_path / rel / "metrics.csv").write_text("step\n")
    (tmp_path / "not-a-run").mkdir()
    assert [R.run_label(p, tmp_path) for p in R.find_runs(tmp_path)] == ["a", "group/b", "group/deeper/c"]


# --------------------------------------------------------------------------- the front page in a multipage app
@pytest.mark.slow
def test_home_keeps_its_view_after_a_visit_to_another_page():
    at = AppTest.from_file(str(APP / "Home.py"), default_timeout=TIMEOUT)
    at.run()
    assert_clean(at)
    at.select_slider(key="m").set_value(2).run()
    at.slider(key="n").set_value(4).run()
    at.switch_page("pages/2_Scaling_study.py").run()
    assert not at.exception and at.title[0].value.startswith("Scaling study")
    at.switch_page("Home.py").run()
    assert_clean(at)
    assert at.select_slider(key="m").value == 2 and at.slider(key="n").value == 4
    assert at.query_params["m_inf"] == "2" and at.query_params["n"] == "4"
    assert next(m.value for m in at.metric if m.label == "Calls / action") == "12"


def test_the_best_series_under_a_budget_is_named_with_the_ones_it_cannot_be_told_from(scaling):
    text = "\n".join(m.value for m in scaling.markdown)
    assert "Best under 144 calls per action: **" in text
    picks = {"A": {"success_rate": 0.9, "success_ci_low": 0.8, "success_ci_high": 0.96, "network_calls": 8, "m_inf": 8, "n": 1},
             "B": {"success_rate": 0.85, "success_ci_low": 0.7, "success_ci_high": 0.92, "network_calls": 4, "m_inf": 4, "n": 1},
             "C": {"success_rate": 0.3, "success_ci_low": 0.2, "success_ci_high": 0.45, "network_calls": 2, "m_inf": 2, "n": 1}}
    sentence = S.best_overall(picks, 8)
    assert sentence.startswith("Best under 8 calls per action: **A** at M_inf = 8, N = 1, success 90% [80%, 96%].")
    assert "overlaps those of B: at this budget the data cannot tell them apart" in sentence and "C" not in sentence
    assert S.best_overall({"A": picks["A"]}, 8) == ""


def test_one_click_sets_sorl_beside_its_baselines_each_method_s_seeds_pooled(tmp_path, monkeypatch):
    root = tmp_path / "bundled"
    for seed in (0, 1, 2):
        tag = "" if seed == 0 else f"-s{seed}"
        for method, rates in (("sorl", RATE_A), ("fql", {(1, n): r for (m, n), r in RATE_B.items() if m == 1})):
            name = f"task{'-fql' if method == 'fql' else ''}{tag}"
            (root / name).mkdir(parents=True)
            rows = [dict(r, method=method, train_seed=seed) for r in sweep_rows(name, 8, rates)]
            (root / name / "sweep.csv").write_bytes(sweep_bytes(rows))
    monkeypatch.setenv("SORL_LAB_SWEEP_DIR", str(root))
    at = AppTest.from_file(str(SCALING_PAGE), default_timeout=TIMEOUT)
    at.run()
    assert_clean(at)
    assert at.multiselect(key="bundled").value == ["task", "task-s1", "task-s2"]  # it still opens on SORL's seeds
    at.button(key="compare_methods").click().run()
    assert_clean(at)
    assert sorted(at.multiselect(key="bundled").value) == ["task", "task-fql", "task-fql-s1", "task-fql-s2", "task-s1",
                                                          "task-s2"]
    assert at.multiselect(key="compare_axes").value == ["method"]
    assert sorted(m.label for m in at.metric) == ["fql · mean of 3 seeds", "sorl · mean of 3 seeds"]
    # The figure opens on each method's best cell within each budget: the grids differ (fql has M_inf = 1 only).
    assert at.radio(key="group").value == "best within each budget"
    fig = specs(at)[0]
    lines = {t["name"]: t for t in fig["data"] if t.get("line", {}).get("shape") == "hv"}
    assert set(lines) == {"fql · mean of 3 seeds", "sorl · mean of 3 seeds"}
    sorl = lines["sorl · mean of 3 seeds"]  # a step at every cost SORL's grid has, never falling
    x, y = list(arr(sorl["x"])), list(arr(sorl["y"]))
    assert x == sorted(set(x)) and y == sorted(y) and y[-1] == pytest.approx(max(RATE_A.values()))
    # At the whole grid's budget SORL's best cell (M_inf = 8, N = 16 of RATE_A: 100%) is the best (method, M_inf, N).
    assert any(md.value.startswith("Best under") and "**sorl · mean of 3 seeds** at M_inf = 8" in md.value
               for md in at.markdown)


def test_no_comparison_button_when_one_method_is_bundled(tmp_path, monkeypatch):
    root = tmp_path / "bundled"
    for name in ("task", "task-s1"):
        (root / name).mkdir(parents=True)
        (root / name / "sweep.csv").write_bytes(sweep_bytes(sweep_rows(name, 8, RATE_A)))
    monkeypatch.setenv("SORL_LAB_SWEEP_DIR", str(root))
    at = AppTest.from_file(str(SCALING_PAGE), default_timeout=TIMEOUT)
    at.run()
    assert_clean(at)
    assert not [b for b in at.button if b.key == "compare_methods"]
