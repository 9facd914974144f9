"""What users of the "Scaling study" and "Training runs" pages rely on beyond plotting: new series appear and keep
their names, the bundled training logs show on a fresh clone, the policy's Q replaces the flat Q loss, typed
paths stay inside the allow-list, and messages read as sentences (no exception class names, no numpy reprs).

Sweep CSVs are the synthetic fixtures of test_app_pages.py (made-up rates with exact Wilson intervals). The
bundled training logs are the real ones in assets/ogbench.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from plotly_json import arr, specs
from streamlit.testing.v1 import AppTest
from test_app_pages import (RATE_A, RATE_B, SCALING_PAGE, RUNS_PAGE, TWO_CHECKPOINTS, SERIES_A, SERIES_B, TIMEOUT,
                            assert_clean, sweep_bytes, sweep_rows)

from app import policies
from app import runs_page as R
from app import scaling_page as S

BUNDLED_RUNS = Path(__file__).resolve().parents[1] / "assets" / "ogbench"
REFUSED = "This lab only reads inside"


def page_text(at) -> str:
    """Every message, caption, markdown, JSON and code block on the page, joined: what a user can read."""
    kinds = ("markdown", "caption", "error", "warning", "info", "success", "json", "code", "text", "exception")
    return "\n".join(str(e.value) for k in kinds for e in at.get(k))


@pytest.fixture
def sweeps(tmp_path, monkeypatch):
    """No bundled sweeps, and this test's temp folder allow-listed for typed paths."""
    monkeypatch.setenv("SORL_LAB_SWEEP_DIR", str(tmp_path / "none-here"))
    monkeypatch.setenv("SORL_LAB_OGBENCH_DIR", str(tmp_path / "no-bundled-policies"))
    monkeypatch.setenv("SORL_LAB_PATHS", str(tmp_path))
    at = AppTest.from_file(str(SCALING_PAGE), default_timeout=TIMEOUT)
    at.run()
    assert_clean(at)
    return at


def series_of(at) -> list[str]:
    """The series drawn in the success-against-compute figure (its data traces, not the legend key)."""
    lines = [t for t in specs(at)[0]["data"] if "error_y" in t]  # each line's hover starts with its series
    return list(dict.fromkeys(t["hovertemplate"].split("<br>")[0] for t in lines))


# --------------------------------------------------------------------------- new series appear, names stay
def test_a_sweep_run_on_the_page_joins_the_plots_selected_with_a_notice(sweeps, tmp_path, monkeypatch):
    """Two checkpoints shown, one hidden by the user; a small sweep run on the page is added, selected and drawn,
    and the caption counts its cells. The evaluator is replaced by fixed CSV bytes: only the page is under test."""
    at = sweeps
    at.file_uploader(key="upload").set_value(("two.csv", TWO_CHECKPOINTS, "text/csv")).run()
    at.multiselect(key="series").set_value([SERIES_A]).run()  # the user hides B
    assert series_of(at) == [SERIES_A]
    policy = tmp_path / "mine" / "checkpoint.pt"
    policy.parent.mkdir()
    policy.write_bytes(b"stand-in")
    monkeypatch.setattr(policies, "load_checkpoint", lambda path, name=None: SimpleNamespace(
        path=Path(path), digest="test-digest-1", name=name or Path(path).name,
        agent=SimpleNamespace(has_target_critic=True)))
    ran = []

    def fake_sweep(checkpoint, label, m_values, n_values, episodes, seed, on_progress=None, verifiers=("q",)):
        ran.append((label, m_values, n_values))
        return sweep_bytes(sweep_rows(label, 8, {(m, n): 0.5 for m in m_values for n in n_values}))

    monkeypatch.setattr(S, "run_small_sweep", fake_sweep)
    at.selectbox(key="sweep_ckpt").set_value("a path…").run()
    at.text_input(key="sweep_path").set_value(str(policy)).run()
    at.multiselect(key="sweep_m").set_value([1, 2]).run()
    at.multiselect(key="sweep_n").set_value([1, 4]).run()
    at.button(key="sweep_run").click().run()
    assert_clean(at)
    new = "mine · s0 (M_BTT=8)"
    assert ran == [("mine · s0", (1, 2), (1, 4))]
    assert at.multiselect(key="series").value == [SERIES_A, new]  # the new one selected, B still hidden
    assert series_of(at) == [SERIES_A, new]
    assert any(new in s.value and "loaded" in s.value for s in at.success)
    assert any(c.value.startswith(f"{12 + 4} cells of 2 checkpoint(s) from 2 file(s)") for c in at.caption)
    # Running the same sweep again adds no copy, and says so.
    at.button(key="sweep_run").click().run()
    assert at.multiselect(key="series").options == [SERIES_A, SERIES_B, new]
    assert any("already loaded" in i.value for i in at.info)


def test_a_second_sweep_of_a_loaded_checkpoint_gets_its_own_stable_name(sweeps):
    at = sweeps
    first = ("a.csv", sweep_bytes(sweep_rows("ckpt-A", 8, RATE_A)), "text/csv")
    again = ("b.csv", sweep_bytes(sweep_rows("ckpt-A", 8, RATE_B)), "text/csv")
    other = ("c.csv", sweep_bytes(sweep_rows("ckpt-B", 1, RATE_B)), "text/csv")
    at.file_uploader(key="upload").set_value([first, other]).run()
    assert series_of(at) == [SERIES_A, SERIES_B]
    at.file_uploader(key="upload").set_value([first, other, again]).run()  # a second sweep of ckpt-A arrives
    assert_clean(at)
    # The shown names do not change; the newcomer is numbered, selected and drawn with its own numbers.
    assert at.multiselect(key="series").options == [SERIES_A, SERIES_B, f"{SERIES_A} (2)"]
    assert at.multiselect(key="series").value == [SERIES_A, SERIES_B, f"{SERIES_A} (2)"]
    figure = specs(at)[0]
    ys = {t["name"]: arr(t["y"]) for t in figure["data"] if t["name"].endswith(" · N = 4")}
    np.testing.assert_allclose(ys[f"{SERIES_A} (2) · N = 4"], [round(RATE_B[m, 4] * 50) / 50 for m in (1, 2, 4, 8)])
    np.testing.assert_allclose(ys[f"{SERIES_A} · N = 4"], [round(RATE_A[m, 4] * 50) / 50 for m in (1, 2, 4, 8)])
    assert any(f"{SERIES_A} (2) is from b.csv" in c.value for c in at.caption)
    assert [s["layout"]["title"]["text"] for s in specs(at)[1:]] == [SERIES_A, SERIES_B, f"{SERIES_A} (2)"]


def test_names_are_stable_and_freed_when_their_file_goes():
    registry: dict = {}
    S.name_series([("a", "ck", 8), ("b", "ck", 8)], registry)
    assert list(registry.values()) == ["ck (M_BTT=8)", "ck (M_BTT=8) (2)"]
    S.name_series([("b", "ck", 8), ("c", "ck", 8)], registry)  # a goes, c comes: b keeps "(2)", c takes the free name
    assert registry == {("b", "ck", 8): "ck (M_BTT=8) (2)", ("c", "ck", 8): "ck (M_BTT=8)"}


# --------------------------------------------------------------------------- readable with three series
def test_three_series_get_one_colour_each_and_a_short_legend_below():
    df = S.combine([("a.csv", S.parse_sweep(TWO_CHECKPOINTS)),
                    ("b.csv", S.parse_sweep(sweep_bytes(sweep_rows("ckpt-C", 4, RATE_B))))])
    picks = {s: S.compute_optimal(df[df.series == s], 48) for s in S.series_order(df)}
    fig = S.compute_figure(df, "n", 48, picks).to_plotly_json()
    data = [t for t in fig["data"] if " · N = " in t["name"]]
    colours = {s: {t["line"]["color"] for t in data if t["name"].startswith(s + " · ")} for s in S.series_order(df)}
    assert all(len(c) == 1 for c in colours.values()) and len(set().union(*colours.values())) == 3
    assert {t["line"]["dash"] for t in data if t["name"].startswith("ckpt-C")} == {"solid", "dash", "dot"}
    legend = [t["name"] for t in fig["data"] if t.get("showlegend", True)]
    assert legend == [SERIES_A, SERIES_B, "ckpt-C (M_BTT=4)", "N = 1", "N = 4", "N = 16", "budget: 48 calls",
                      "compute-optimal"]  # 8 entries, not 3 x 3 lines + 3 stars
    assert fig["layout"]["legend"]["orientation"] == "h" and fig["layout"]["legend"]["y"] < 0  # below the plot


# --------------------------------------------------------------------------- typed paths are allow-listed
@pytest.mark.parametrize("typed", ["/etc/passwd", "../../etc", "/etc/no-such-file"])
def test_the_scaling_checkpoint_path_outside_the_allow_list_is_refused(sweeps, typed):
    at = sweeps
    at.selectbox(key="sweep_ckpt").set_value("a path…").run()
    at.text_input(key="sweep_path").set_value(typed).run()
    assert not at.exception
    assert [e.value for e in at.error] == [e.value for e in at.error if e.value.startswith(REFUSED)] and len(at.error) == 1
    assert at.button(key="sweep_run").disabled  # nothing to run
    assert "root:" not in page_text(at)  # nothing of the file


@pytest.mark.parametrize("typed", ["/etc/passwd", "../../etc"])
def test_the_runs_folder_outside_the_allow_list_is_refused(typed):
    at = AppTest.from_file(str(RUNS_PAGE), default_timeout=TIMEOUT)
    at.run()
    at.radio(key="runs_source").set_value("Your runs folder").run()
    at.text_input(key="runs_root").set_value(typed).run()
    assert not at.exception
    assert len(at.error) == 1 and at.error[0].value.startswith(REFUSED) and "SORL_LAB_PATHS" in at.error[0].value
    assert not at.get("plotly_chart") and "runs_selected" not in [w.key for w in at.multiselect]
    assert "root:" not in page_text(at)


def test_a_runs_folder_listed_in_sorl_lab_paths_is_read(tmp_path, monkeypatch):
    run = tmp_path / "mine" / "cube"
    run.parent.mkdir()
    import shutil

    shutil.copytree(BUNDLED_RUNS / "cube-single-task2", run, ignore=shutil.ignore_patterns("*.pt"))
    at = AppTest.from_file(str(RUNS_PAGE), default_timeout=TIMEOUT)
    at.run()
    at.radio(key="runs_source").set_value("Your runs folder").run()
    at.text_input(key="runs_root").set_value(str(run.parent)).run()
    assert at.error and at.error[0].value.startswith(REFUSED)  # not listed yet
    monkeypatch.setenv("SORL_LAB_PATHS", str(tmp_path))
    at.run()
    assert_clean(at)
    assert at.multiselect(key="runs_selected").value == ["cube"] and len(at.get("plotly_chart")) == 2


# --------------------------------------------------------------------------- a fresh clone shows the bundled logs
def test_training_runs_opens_on_the_bundled_logs_when_runs_is_empty(tmp_path, monkeypatch):
    monkeypatch.setattr(R, "user_runs_dir", lambda: tmp_path / "runs")  # a fresh clone: no runs/ yet
    at = AppTest.from_file(str(RUNS_PAGE), default_timeout=TIMEOUT)
    at.run()
    assert_clean(at)
    assert at.radio(key="runs_source").value == "Bundled runs (assets/ogbench)"
    bundled = sorted(p.parent.name for p in BUNDLED_RUNS.glob("*/metrics.csv"))
    # It opens on the comparison a teacher shows first: the paper's M_BTT = 8 against M_BTT = 1, one colour per run
    # in both charts.
    assert at.multiselect(key="runs_selected").value == ["cube-single-task2", "cube-single-task2-mbtt1"]
    losses, evals = specs(at)
    loss_colour = {t["meta"][0]: t["line"]["color"] for t in losses["data"] if t.get("meta")}
    eval_colour = {t["meta"][0]: t["line"]["color"] for t in evals["data"] if t.get("meta")}
    assert eval_colour == loss_colour and len(set(loss_colour.values())) == 2
    diff = at.table[0].value
    assert "agent.m_btt" in set(diff.index) and not {"progress", "resume", "checkpoint_every"} & set(diff.index)
    at.multiselect(key="runs_selected").set_value(bundled).run()
    assert "cube-single-task2-mbtt1" in bundled and at.multiselect(key="runs_selected").value == bundled
    losses, evals = specs(at)
    # cube-double's critic gave some positive Qs early on, so over all bundled runs the Q loss moves and is drawn.
    titles = [a["text"] for a in losses["layout"]["annotations"]]
    logs = {n: pd.read_csv(BUNDLED_RUNS / n / "metrics.csv") for n in bundled}
    assert R.q_loss_informative(logs) == (R.LOSSES["q_loss"] in titles)
    assert "cube-double-task2" in bundled and R.LOSSES["q_loss"] in titles
    # SORL's cube-single runs alone: the policy's mean Q is drawn, as logged; the flat Q loss (≈ 1 throughout:
    # every Q < 0) is not, and the caption says why. (The baselines' runs log another Q loss: fql's is -Q itself.)
    sorl = [n for n in bundled if n.startswith("cube-single") and not any(m in n for m in ("flow-bc", "ifql", "fql"))]
    at.multiselect(key="runs_selected").set_value(sorl).run()
    assert_clean(at)
    losses, evals = specs(at)
    titles = [a["text"] for a in losses["layout"]["annotations"]]
    assert R.PANEL_TITLES["policy_q"] in titles and R.LOSSES["q_loss"] not in titles
    logged = pd.read_csv(BUNDLED_RUNS / "cube-single-task2-mbtt1" / "metrics.csv")
    q = next(t for t in losses["data"] if t.get("meta") == ["cube-single-task2-mbtt1", "policy_q", "shown"])
    np.testing.assert_allclose(arr(q["y"]), logged.policy_q)
    assert not any(t.get("meta", [None, None])[1] == "q_loss" for t in losses["data"])
    assert any("Q loss" in c.value and "left out" in c.value and "1.00" in c.value for c in at.caption)
    assert any("success" in t["name"] or "M_inf" in t["name"] for t in evals["data"])


def test_training_runs_opens_on_your_runs_when_there_are_some(tmp_path, monkeypatch):
    (tmp_path / "runs" / "r1").mkdir(parents=True)
    (tmp_path / "runs" / "r1" / "metrics.csv").write_text("step,critic_loss,fm_loss,sc_loss,q_loss\n")
    monkeypatch.setattr(R, "user_runs_dir", lambda: tmp_path / "runs")
    monkeypatch.setenv("SORL_LAB_PATHS", str(tmp_path))
    at = AppTest.from_file(str(RUNS_PAGE), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    assert at.radio(key="runs_source").value == "Your runs folder"
    assert at.text_input(key="runs_root").value == str(tmp_path / "runs")
    assert at.multiselect(key="runs_selected").value == ["r1"]


def test_the_q_loss_panel_shows_only_when_it_varies():
    flat = pd.DataFrame({"step": [1, 2, 3], "q_loss": [1.0, 0.996, 1.0], "policy_q": [-5.0, -9.0, -12.0]})
    moving = flat.assign(q_loss=[1.0, 0.4, -0.6])  # Q changing sign: the normalised loss moves
    assert R.loss_panels({"a": flat}) == ["critic_loss", "fm_loss", "sc_loss", "policy_q"]
    assert R.loss_panels({"a": flat, "b": moving})[-1] == "q_loss"
    assert R.q_loss_level({"a": flat}) == "1.00"


# --------------------------------------------------------------------------- messages for people
def test_sweep_errors_name_values_plainly():
    bad = TWO_CHECKPOINTS.replace(b"\nckpt-A,synthetic-test-env,8,1,1,", b"\nckpt-A,synthetic-test-env,8,0,1,", 1)
    with pytest.raises(S.SweepError) as err:
        S.parse_sweep(bad, "bad.csv")
    assert "m_inf must be at least 1: line 2 (0)" in str(err.value) and "np." not in str(err.value)


def test_a_failing_sweep_is_one_sentence_without_exception_names(sweeps, tmp_path, monkeypatch):
    from sorl_core.checkpoint import CheckpointError

    at = sweeps
    policy = tmp_path / "x.pt"
    policy.write_bytes(b"stand-in")

    def refuse(path, name=None):
        raise CheckpointError("x.pt is not a SORL Lab checkpoint")

    monkeypatch.setattr(policies, "load_checkpoint", refuse)
    at.selectbox(key="sweep_ckpt").set_value("a path…").run()
    at.text_input(key="sweep_path").set_value(str(policy)).run()
    at.button(key="sweep_run").click().run()
    assert [e.value for e in at.error] == ["The sweep could not run: x.pt is not a SORL Lab checkpoint."]
    monkeypatch.setattr(policies, "load_checkpoint", lambda path, name=None: SimpleNamespace(
        path=Path(path), digest="test-digest-fails", name="x.pt", agent=SimpleNamespace(has_target_critic=True)))

    def crash(*args, **kwargs):
        raise RuntimeError("CUDA out of memory in some internal call")

    monkeypatch.setattr(S, "run_small_sweep", crash)
    at.button(key="sweep_run").click().run()
    assert not at.exception
    assert [e.value for e in at.error] == ["The sweep stopped with an unexpected error; the server log has the details."]
    assert "Error" not in page_text(at).replace("error", "")


def test_a_sweep_with_several_verifiers_shows_one_series_per_verifier():
    base = pd.read_csv(BUNDLED_RUNS / "cube-single-task2" / "sweep.csv")
    other = base.copy()
    other["verifier"] = "consensus"
    both = pd.concat([base, other[other.n > 1]]).to_csv(index=False).encode()
    df = S.parse_sweep(both, "two-verifiers.csv")
    table = S.combine([("two-verifiers.csv", df)])
    assert S.series_order(table) == ["cube-single-task2 (M_BTT=8)", "cube-single-task2 (M_BTT=8) · consensus"]


def test_the_verifier_filter_appears_for_a_sweep_ranked_by_several_verifiers():
    at = AppTest.from_file(str(SCALING_PAGE), default_timeout=TIMEOUT).run()
    assert not [w for w in at.multiselect if w.key == "verifiers_shown"]  # the default sweep ranks with q only
    chips = at.multiselect(key="bundled")
    wanted = [o for o in chips.options if "verifiers" in o][:1]
    assert wanted, chips.options
    chips.set_value(wanted).run()
    assert_clean(at)
    shown = at.multiselect(key="verifiers_shown")
    assert set(shown.value) == {"q", "q-min", "q-lcb", "consensus"}
    shown.set_value(["q", "consensus"]).run()
    assert_clean(at)
    assert {s.split(" · ")[-1] if " · " in s else "q" for s in at.multiselect(key="series").value} == {"q", "consensus"}
