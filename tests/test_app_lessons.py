"""The toy page as a lesson: the "what to notice" sentences, the guide, the comparison of a short run with the
bundled policy, downloading a policy trained on the page, and shared links to an uploaded policy."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from app import notes as N
from app import toy_page as T
from app import uploads as U
from app.policies import digest_bytes
from sorl_core.checkpoint import load_agent
from sorl_core.train import ToyTrainConfig, train_toy

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "app" / "Home.py"
TIMEOUT = 120


def rows(table: dict[tuple[int, int], float]) -> list[dict]:
    return [{"m_inf": m, "n": n, "mean_reward": r} for (m, n), r in table.items()]


# --------------------------------------------------------------------------- the sentences, from the numbers
def test_scaling_note_says_why_when_more_steps_lower_the_reward():
    text = N.scaling_note(rows({(1, 1): 0.84, (2, 1): 0.90, (4, 1): 0.62, (8, 1): 0.03, (8, 16): 0.89}), 8)
    assert "falls" in text and "0.84" in text and "0.03" in text
    assert "flow matching" in text and "bundled" in text  # the reason, and where the converged picture is
    assert "lifts" in text  # best-of-16 raised the M_inf = 8 reward here


def test_scaling_note_on_a_converged_policy():
    rising = N.scaling_note(rows({(1, 1): 0.80, (2, 1): 0.85, (4, 1): 0.9, (8, 1): 0.95, (8, 16): 0.95}), 8)
    assert "pays" in rising and "falls" not in rising and "changes little" in rising
    level = N.scaling_note(rows({(1, 1): 0.95, (2, 1): 0.94, (4, 1): 0.95, (8, 1): 0.95, (8, 64): 0.85}), 8)
    assert "hardly changes" in level and "**lowers**" in level and "winner's curse" in level
    dip = N.scaling_note(rows({(1, 1): 0.9, (2, 1): -0.5, (4, 1): 0.9, (8, 1): 0.9}), 8)
    assert "dip at M_inf = 2" in dip


def test_q_landscape_note_finds_a_peak_off_the_data():
    xs = np.linspace(-1, 1, 41)
    gx, gy = np.meshgrid(xs, xs)
    off = -((gx - 0.0) ** 2 + (gy - 1.0) ** 2)  # peak at (0, 1): outside the ring's modes (radius 0.75)
    text = N.q_landscape_note("ring", 0.0, xs, xs, off)
    assert "off the data" in text and "(+0.00, +1.00)" in text
    on = -((gx - 0.0) ** 2 + (gy - 0.75) ** 2)  # peak on the mode at (0, 0.75)
    assert "on the data" in N.q_landscape_note("ring", 0.0, xs, xs, on)


def test_consistency_note_points_at_the_row_of_the_chosen_step():
    probe = SimpleNamespace(step_sizes=np.array([1.0, 0.5, 0.25]),
                            error=np.array([[0.5, np.nan], [0.002, 0.004], [0.3, 0.2]]))
    assert "row d = 1/2" in N.consistency_note(probe, 2, 8) and "small" in N.consistency_note(probe, 2, 8)
    assert "large" in N.consistency_note(probe, 4, 8)
    assert "flow matching trains directly" in N.consistency_note(probe, 8, 8)
    assert "extrapolating" in N.consistency_note(probe, 16, 8)


def test_reward_map_note_compares_with_the_best_possible_reward():
    text = N.reward_map_note("ring", 0.0, {"mean_reward": 0.2, "frac_in_support": 0.3}, [0.0, 0.0])
    assert "Best possible here: 1.00" in text and "left the data" in text


# --------------------------------------------------------------------------- the page
@pytest.fixture(scope="module")
def home():
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert not at.exception and not at.error
    return at


def test_guide_opens_on_a_first_visit(home):
    guide = next(e for e in home.expander if e.label == "How to read this page")
    assert guide.proto.expanded


def test_every_figure_has_a_sentence_on_what_to_notice(home):
    text = " ".join(m.value for m in home.markdown)
    for phrase in ("Best possible here", "each path takes 8 steps", "The learned Q", "finest step",
                   "At N = 1 the true reward"):
        assert phrase in text, phrase


def test_comparison_puts_the_bundled_policy_beside_a_short_run(monkeypatch):
    monkeypatch.setattr(T, "SHORT_RUN_ITERATIONS", 30)  # the page reads it from this module: a quick "short run"
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    at.toggle(key="compare").set_value(True).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    fig = at.get("plotly_chart")[-1].proto.spec
    names = [t["name"] for t in __import__("json").loads(fig)["data"]]
    assert len(names) == 4 and sum("bundled" in n for n in names) == 2 and sum("30-iteration" in n for n in names) == 2
    note = at.markdown[-1].value
    assert note.count("at N = 1 the reward") == 2


def test_a_policy_trained_on_the_page_downloads_as_a_checkpoint_the_cli_loads(tmp_path):
    job = T.TrainJob("ring", seed=3, iterations=20).start()
    assert job.done.wait(120) and job.error is None
    path = tmp_path / "mine.pt"
    path.write_bytes(job.checkpoint)
    agent, extra = load_agent(path, device="cpu")
    assert extra["world"] == "ring" and extra["train_config"]["seed"] == 3 and agent.step == 20
    obs = np.linspace(-1, 1, 8, dtype=np.float32)[:, None]
    ours = agent.sample(obs, m_inf=4, n=4, generator=0).actions
    assert torch.equal(ours, job.agent.sample(obs, m_inf=4, n=4, generator=0).actions)
    # and `sorl-lab train --resume` continues it from the downloaded file
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(job.checkpoint)
    resumed, _ = train_toy(ToyTrainConfig(world="ring", seed=3, iterations=25, out=str(run), resume=True,
                                          progress=False, eval_every=0))
    assert resumed.step == 25


def test_trained_policy_download_button_is_on_the_page():
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params.update({"tseed": "5", "titers": "100"})
    at.run()
    assert not at.exception and not at.error
    assert any(b.proto.label == "Download this policy (.pt)" for b in at.sidebar.get("download_button"))
    assert any("100 iterations" in i.value and "bundled one had" in i.value for i in at.info)


def test_a_shared_link_restores_an_uploaded_policy(tmp_path, monkeypatch):
    monkeypatch.setattr(U, "uploads_dir", lambda: tmp_path)  # the page reads the folder through this function
    job = T.TrainJob("moons", seed=1, iterations=10).start()
    assert job.done.wait(120) and job.error is None
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    # AppTest has no file-upload accessor: store the bytes as the page's upload handler does, then open the link.
    assert U.store_upload(job.checkpoint).parent == tmp_path
    digest = digest_bytes(job.checkpoint)
    shared = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    shared.query_params.update({"upload": digest, "m": "2", "n": "1"})
    shared.run()
    assert not shared.exception and not shared.error and not shared.warning
    assert shared.session_state.world == "moons" and shared.session_state.policy["kind"] == "upload"
    assert shared.query_params["upload"] == digest
    assert any("uploaded checkpoint" in c.value for c in shared.sidebar.caption)
    # a link to an upload this server no longer has: one warning, the bundled policy
    gone = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    gone.query_params.update({"upload": "0" * 16})
    gone.run()
    assert not gone.exception and len(gone.warning) == 1 and "no longer on this server" in gone.warning[0].value
    assert gone.session_state.policy["kind"] == "bundled"
    del at


def test_bad_url_is_one_warning_in_plain_words():
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params.update({"m": "1.7", "n": "999", "c": "abc", "world": "mars", "seed": "-1", "ext": "maybe",
                            "titers": "7"})
    at.run()
    assert not at.exception and len(at.warning) == 1
    text = at.warning[0].value
    assert "np." not in text and "Error" not in text and "m=1.7" in text and "world=mars" in text


# --------------------------------------------------------------------------- verifiers on the toy page
def test_the_verifier_selector_changes_the_pick_the_compute_and_the_link(home):
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert at.selectbox(key="verifier").value == "q" and "verifier" not in at.query_params
    at.selectbox(key="verifier").set_value("consensus").run()
    assert not at.exception and not at.error
    calls = next(m.value for m in at.metric if m.label == "Calls / action")
    assert calls == str(8 * 16)  # no critic calls: the medoid needs no Q
    assert at.query_params["verifier"] == "consensus"
    panel = json.loads(at.get("plotly_chart")[4].proto.spec)
    assert panel["data"][1]["name"] == "picked by consensus"
    assert any("Rank correlation of the consensus score" in m.value for m in at.markdown)
    at.selectbox(key="verifier").set_value("q-lcb").run()
    assert at.slider(key="beta").value == 1.0
    at.slider(key="beta").set_value(2.5).run()
    assert at.query_params["verifier"] == "q-lcb" and at.query_params["beta"] == "2.5"
    # the pick at this state is the argmax of mean Q - 2.5 |Q1 - Q2|, computed directly
    agent, _ = load_agent(T.toy_checkpoint_path("ring"), device="cpu")
    res = agent.sample(np.array([[0.0]], dtype=np.float32), m_inf=8, n=16, generator=0)
    q1, q2 = agent.critic(torch.zeros(16, 1), res.candidates[0], 8)
    expected = int(torch.argmax((q1 + q2) / 2 - 2.5 * (q1 - q2).abs()))
    star = json.loads(at.get("plotly_chart")[4].proto.spec)["data"][1]
    assert star["x"][0] == pytest.approx(float(((q1 + q2) / 2 - 2.5 * (q1 - q2).abs())[expected]), abs=1e-4)


def test_a_shared_link_restores_the_verifier():
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params.update({"verifier": "q-min", "n": "4"})
    at.run()
    assert not at.exception and at.selectbox(key="verifier").value == "q-min"


def test_score_truth_note_reads_the_ranking():
    good = N.score_truth_note([1, 2, 3, 4], [0.1, 0.2, 0.3, 0.4], 3, "q")
    assert "1.00" in good and "truly best" in good
    bad = N.score_truth_note([1, 2, 3, 4], [0.4, 0.3, 0.2, 0.1], 3, "q")
    assert "-1.00" in bad and "lottery" in bad and "0.300 below" in bad


def test_score_truth_note_when_every_candidate_is_worth_the_same():
    note = N.score_truth_note([1, 2, 3, 4], [0.5, 0.5, 0.5, 0.5], 3, "q")
    assert "nan" not in note and "truly best" not in note and "same true reward here (0.500)" in note


def test_a_flat_scaling_curve_is_not_stretched_into_zig_zags():
    from sorl_core import viz

    rows = [{"m_inf": m, "n": 1, "network_calls": m, "mean_reward": r} for m, r in ((1, 0.940), (2, 0.955), (4, 0.948))]
    low, high = viz.scaling_figure(rows).layout.yaxis.range
    assert high - low >= 0.2 and low <= 0.940 and high >= 0.955
    steep = [dict(r, mean_reward=v) for r, v in zip(rows, (-1.0, 0.2, 0.9))]
    assert viz.scaling_figure(steep).layout.yaxis.range is None  # autoscaled when the differences are real


def test_a_change_that_rounds_to_zero_is_grey_not_a_red_minus_zero():
    assert T.delta_text(-0.0002, "{:+.3f}") == ("0.000", "off")
    assert T.delta_text(-0.012, "{:+.3f}") == ("-0.012", "normal")
    assert T.delta_text(0.04, "{:+.1f}", " pts") == ("0.0 pts", "off")


def test_the_moons_scaling_sentence_does_not_praise_more_steps_on_a_policy_off_the_data():
    # moons' bundled numbers: -1.04 at M_inf = 1, -0.74 at 8 (N = 1), -1.07 with best-of-16
    text = N.scaling_note(rows({(1, 1): -1.04, (2, 1): -1.04, (4, 1): -0.94, (8, 1): -0.74, (8, 16): -1.07}), 8)
    assert "pays" not in text and "far below what the data allows" in text and "lowers" in text


def test_consistency_note_has_a_middle_band_so_the_verdict_does_not_flip_on_a_hair():
    probe = SimpleNamespace(step_sizes=np.array([1.0, 0.5]), error=np.array([[0.5, np.nan], [0.04, 0.04]]))
    note = N.consistency_note(probe, 2, 8)
    assert "moderate" in note and "2.0% of the action box's width" in note
