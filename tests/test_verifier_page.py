"""The Verifier page (app/pages/4_Verifier.py) under AppTest, and its logic (app/verifier_page.py) on the real
cube-single environment with the bundled policy."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from app import policies
from app import rollouts_page as R
from app import verifier_page as V
from sorl_core.stats import spearman
from sorl_core.studies import verifier_report

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "app" / "pages" / "4_Verifier.py"
POLICY = REPO / "assets" / "ogbench" / "cube-single-task2" / "policy.pt"
pytestmark = pytest.mark.slow
# In the recorded episode (episode 1 of K = 3, seed 0, M_inf = 8, N = 4: a success after 53 steps), step 38 is one
# where the four candidates lead to the goal at different times within a 30-step horizon: their returns differ.
STEP, HORIZON = 38, 30


@pytest.fixture(scope="module")
def loaded():
    return policies.load_checkpoint(POLICY, "cube-single-task2")


@pytest.fixture(scope="module")
def record(loaded):
    return V.record_episode(loaded.agent, loaded.env_name, 8, 4, "q", seed=0, episode=1, episodes=3, size=64)


def test_the_recorded_episode_is_the_rollouts_table_s_episode(loaded, record):
    (row,) = R.run_configs(loaded.agent, loaded.env_name, [(8, 4)], 3, 0)  # the rollouts page's table, K = 3
    assert record.success == row["episode_success"][1] and record.length == row["episode_length"][1]
    assert len(record.frames) == record.length + 1  # a frame before every action and one after the last
    assert all(c.shape == (4, loaded.action_dim) for c in record.candidates)
    for t in range(record.length):  # the pick is the verifier's argmax at every step
        assert record.chosen[t] == int(np.argmax(record.scores[t]))


def test_counterfactual_returns_at_a_step_are_reproducible_and_rank_the_candidates(loaded, record):
    assert record.success and record.length > STEP  # the episode STEP was chosen in (it ends at step 53)
    first = V.counterfactual_at(loaded.agent, record, STEP, horizon=HORIZON)
    again = V.counterfactual_at(loaded.agent, record, STEP, horizon=HORIZON)
    returns, success = first["returns"], first["success"]
    assert returns.shape == success.shape == (4,)
    assert np.array_equal(returns, again["returns"]) and np.array_equal(success, again["success"])  # reproducible
    # cube-single rewards are -1 until the task is solved, then 0: every rollout here solves it within the horizon,
    # so each return is minus the discounted number of steps its candidate needed, and they rank the candidates.
    assert np.all(success == 1) and np.all(returns < 0) and np.all(returns > -HORIZON)
    # Different candidates, different outcomes: a ranking to check (if the recorded episode changed, choose STEP anew).
    assert len(np.unique(returns)) >= 3, returns
    # Each return belongs to its own candidate, not to a position: the same candidates in reverse order (the pick
    # moved with them) get the same returns and successes, reversed.
    flipped = dataclasses.replace(record, candidates=list(record.candidates), chosen=list(record.chosen))
    flipped.candidates[STEP] = record.candidates[STEP][::-1].copy()
    flipped.chosen[STEP] = 3 - record.chosen[STEP]
    reverse = V.counterfactual_at(loaded.agent, flipped, STEP, horizon=HORIZON)
    assert np.array_equal(reverse["returns"], returns[::-1]) and np.array_equal(reverse["success"], success[::-1])
    # The verifier's ranking against the truth, as the page and the study read it: a positive rank correlation here
    # (the critic orders these candidates roughly right), and the pick's regret is its gap to the best return.
    scores = record.scores[STEP]
    assert spearman(scores, returns) > 0.5
    assert returns.max() - returns[record.chosen[STEP]] == pytest.approx(0.0)  # q's pick is the truly best here


def test_the_page_plays_scrubs_and_scores_the_truth():
    at = AppTest.from_file(str(PAGE), default_timeout=300).run()
    assert not at.exception and not at.error
    at.number_input(key="vf_n").set_value(4)
    at.button(key="vf_play").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    figure = lambda: json.loads(at.get("plotly_chart")[0].proto.spec)  # noqa: E731
    before = figure()
    at.slider(key="vf_step").set_value(10).run()
    after = figure()
    assert before["data"][-2]["y"] != after["data"][-2]["y"]  # the pick's line moved with the step
    at.button(key="vf_truth_button").click().run()
    assert not at.exception and not at.error
    assert "true return" in figure()["layout"]["title"]["text"]
    # The sentence under the figure is computed from the returns the button just measured at this step.
    rec, truth = at.session_state["vf_record"], at.session_state["vf_truth"][10]
    scores, returns = rec.scores[10], truth["returns"]
    assert returns.shape == (4,) and len(np.unique(returns)) > 1  # the candidates' true returns differ here
    rho, regret = spearman(scores, returns), float(returns.max() - returns[rec.chosen[10]])
    (note,) = [m.value for m in at.markdown if "Rank correlation of the q score with the true return" in m.value]
    assert f"over these 4 candidates: {rho:.2f}; the pick's true return is {regret:.3f} below" in note


def test_target_q_on_the_bundled_policy_is_refused_plainly():
    at = AppTest.from_file(str(PAGE), default_timeout=120).run()
    at.selectbox(key="vf_verifier").set_value("target-q").run()
    assert not at.exception and at.button(key="vf_play").disabled
    assert any("no target critic" in w.value for w in at.warning)


def test_a_study_folder_becomes_calibration_figures(tmp_path):
    cand = tmp_path / "verifier_candidates.csv"
    cand.write_text("state,episode,step,candidate,score_q,score_consensus,return_mean\n"
                    "0,0,1,0,1.0,-3,-5\n0,0,1,1,2.0,-2,-4\n0,0,1,2,3.0,-1,-6\n")
    (tmp_path / "verifier_states.csv").write_text(
        "state,episode,step,spearman_q,top1_regret_q,pick_distance_q,mean_distance_q,"
        "spearman_consensus,top1_regret_consensus,pick_distance_consensus,mean_distance_consensus\n"
        "0,0,1,-0.5,2,0.3,0.2,-0.5,2,0.1,0.2\n")
    study = verifier_report.read_study(tmp_path)
    assert study.verifiers == ["q", "consensus"]
    summary = {r["verifier"]: r for r in study.summary}
    assert float(summary["q"]["mean_top1_regret"]) == 2
    assert float(summary["consensus"]["mean_pick_distance"]) == pytest.approx(0.1)
    names = [k for k, _ in verifier_report.figures(study)]
    assert names == ["calibration", "spearman", "side by side", "regret against N", "ceiling against N"]
    by_n = verifier_report.regret_by_n(study.candidates, ["q", "consensus"])
    # first 2 candidates: returns -5, -4; q picks candidate 1 (score 2 > 1): regret 0; consensus picks 1 too
    assert by_n["q"] == {2: 0.0} and by_n["consensus"] == {2: 0.0}


def ceiling_rows(successes: list[list[float]], scores: list[list[float]]) -> list[dict]:
    return [{"state": str(s), "candidate": str(j), "score_q": str(scores[s][j]), "return_mean": str(-10 + 10 * ok),
             "success_mean": str(ok)} for s in range(len(successes)) for j, ok in enumerate(successes[s])]


def test_the_ceiling_is_the_oracle_pick_beside_each_verifier_s():
    # State 0: only candidate 1 succeeds and q prefers it; state 1: only candidate 3 succeeds, q prefers candidate 0.
    rows = ceiling_rows([[0, 1, 0, 0], [0, 0, 0, 1]], [[0, 5, 1, 2], [9, 1, 2, 3]])
    c = verifier_report.ceiling_by_n(rows, ["q"])
    assert c.ns == [1, 2, 4] and c.measure == "success"
    assert c.coverage == [0.0, 0.5, 1.0]  # some succeeding candidate among the first N
    assert c.oracle_return == [-10.0, -5.0, 0.0]
    assert c.pick_rate["q"] == [0.0, 0.5, 0.5] and c.pick_return["q"] == [-10.0, -5.0, -5.0]
    assert c.fit is None  # coverage strictly between 0 and 1 at one N only: nothing to fit


def test_the_power_law_fit_of_coverage_and_when_it_does_not_fit():
    ns = [1, 2, 4, 8, 16]
    exact = verifier_report.power_law_fit(ns, [1 - 0.8 * n ** -0.5 for n in ns])
    assert exact["b"] == pytest.approx(-0.5) and exact["a"] == pytest.approx(np.log(0.8)) and exact["r2"] == pytest.approx(1)
    bent = verifier_report.power_law_fit(ns, [0.1, 0.8, 0.2, 0.9, 0.3])
    assert bent["r2"] < verifier_report.FIT_R2
    assert verifier_report.power_law_fit(ns, [0.5, 1, 1, 1, 1]) is None


def test_the_ceiling_note_states_the_gap_of_the_bundled_study():
    study = verifier_report.read_study(REPO / "assets" / "ogbench" / "cube-single-task2-mbtt1" / "verifier")
    c = verifier_report.ceiling_by_n(study.candidates, study.verifiers)
    note = verifier_report.ceiling_note(study)
    assert f"in {c.coverage[-1]:.0%} of the 50 states with N = 16, against {c.coverage[0]:.0%} with N = 1" in note
    assert c.coverage[-1] > c.coverage[0]  # more candidates hold more successes (24% against 6% when bundled)
    picks = note.split("picks at N = 16: ")[1].split(". ")[0]
    for v in study.verifiers:  # verifiers with one rate are named together: "q, q-min and q-lcb 4% (...)"
        group = next(part for part in picks.split("; ") if v in part.replace(",", " ").split())
        assert f" {c.pick_rate[v][-1]:.0%} (" in group
    assert "power law" in note


def test_the_pick_profile_says_where_the_pick_stands_out_and_what_it_earns():
    # One state, 4 candidates on a line in dimension 0; q picks the outlier (the only failure), consensus the middle.
    rows = [{"state": "0", "candidate": str(j), "a0": str(x), "a1": "0.0", "score_q": str(q), "score_consensus": str(c),
             "return_mean": str(r), "success_mean": str(ok)}
            for j, (x, q, c, r, ok) in enumerate([(0.0, 1, -3, -1, 1), (0.1, 2, -2, -1, 1), (0.2, 3, -2.5, -1, 1),
                                                   (1.0, 9, -9, -5, 0)])]
    study = verifier_report.Study(Path("."), candidates=rows, states=[], verifiers=["q", "consensus"], absent={})
    p = verifier_report.pick_profile(study, "q")
    assert p["states"] == 1 and p["pick_deviation"][0] == pytest.approx(0.85)  # median of 0, .1, .2, 1 is 0.15
    assert p["candidate_deviation"][0] == pytest.approx((0.15 + 0.05 + 0.05 + 0.85) / 4)
    assert p["return_gain"] == pytest.approx(-5 + 2) and p["success_gain"] == pytest.approx(-0.75)
    assert p["deciding_states"] == 1 and p["deciding_gain"] == pytest.approx(-0.75)
    note = verifier_report.pick_profile_note(study, "q", ["hand x", "hand y"])
    assert note.startswith("Over 1 states, the q pick's distance") and "hand x 3.1x (0.850 against 0.275)" in note
    assert "in hand x the pick lies above the median at 100% of the states (mean offset +0.850)" in note
    assert "-75.0 points" in note


def test_a_typed_path_outside_the_allowed_folders_is_refused():
    at = AppTest.from_file(str(PAGE), default_timeout=120).run()
    at.selectbox(key="vf_policy").set_value("a path…").run()
    at.text_input(key="vf_path").input("/etc/passwd").run()
    assert not at.exception and at.button(key="vf_play").disabled
    assert len(at.error) == 1 and "only reads inside" in at.error[0].value


def test_the_restore_is_proved_at_the_episode_s_last_step_too(loaded, record):
    """The last action of an episode is replayed against what the recording saw after it, not against itself."""
    last = record.length - 1
    assert len(record.next_obs) == len(record.rewards) == record.length
    V.counterfactual_at(loaded.agent, record, last, horizon=3)  # the true recording passes
    wrong = dataclasses.replace(record, next_obs=[*record.next_obs[:-1], record.next_obs[-1] + 1e-3])
    with pytest.raises(RuntimeError, match=f"step {last} part from the recording at step {last + 1}"):
        V.counterfactual_at(loaded.agent, wrong, last, horizon=3)


def test_the_candidates_figure_names_the_action_dimensions_and_keeps_the_pick_out_of_the_colour_scale():
    import numpy as np
    from plotly.colors import get_colorscale

    from app import verifier_page as VP

    rng = np.random.default_rng(0)
    cands, truth = rng.uniform(-1, 1, (6, 5)), np.linspace(0, 1, 6)
    fig = VP.candidates_figure(cands, truth, chosen=2, verifier="q", truth=truth)
    assert list(fig.data[0].x) == ["hand x", "hand y", "hand z", "hand yaw", "gripper"]
    pick = next(t for t in fig.data if t.name == "picked by q")
    assert pick.line.dash == "dash" and pick.line.color.lower() not in {c.lower() for _, c in get_colorscale("Viridis")}
    assert list(VP.candidates_figure(cands[:, :3], None, 0, "q").data[0].x) == ["a1", "a2", "a3"]


@pytest.mark.parametrize("method, fix", [("fql", ("vf_m", 1)), ("flow-bc", ("vf_verifier", "consensus"))])
def test_a_baseline_is_asked_only_for_what_its_method_can_do(tmp_path, monkeypatch, method, fix):
    """fql acts in one Euler step and flow-bc has no critic: the page says what to choose, and Play waits for it."""
    from sorl_core.baselines import make_agent
    from sorl_core.checkpoint import save_checkpoint
    from sorl_core.config import SORLConfig

    agent = make_agent(SORLConfig(obs_dim=28, action_dim=5, size="tiny", method=method, precision="fp32"), seed=0)
    path = save_checkpoint(tmp_path / f"{method}.pt", agent,
                           extra={"kind": "ogbench", "env": "cube-single-play-singletask-task2-v0"})
    monkeypatch.setenv("SORL_LAB_PATHS", str(tmp_path))
    at = AppTest.from_file(str(PAGE), default_timeout=120)
    at.run()
    at.selectbox(key="vf_policy").set_value("a path…").run()
    at.text_input(key="vf_path").set_value(str(path)).run()
    assert not at.exception and not at.error
    assert [w.value for w in at.warning] == [
        {"fql": "Baseline fql (one-step policy): acts in one call: set M_inf to 1.",
         "flow-bc": "Baseline flow-bc (flow matching only): no critic: best-of-N by consensus only: choose a verifier "
                    "that needs no critic (consensus)."}[method]]
    assert at.button(key="vf_play").disabled
    key, value = fix
    (at.select_slider(key=key) if key == "vf_m" else at.selectbox(key=key)).set_value(value).run()
    assert not at.warning and not at.button(key="vf_play").disabled
