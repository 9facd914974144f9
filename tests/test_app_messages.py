"""Messages a teacher's class meets: plain sentences, no internals (issue: a lab for a whole class)."""

from __future__ import annotations

import pytest

from app import toy_page as T
from app.uploads import checkpoint_from_upload
from sorl_core.agent import SORLAgent
from sorl_core.checkpoint import save_checkpoint
from sorl_core.config import SORLConfig
from sorl_core.studies.sweep_report import SweepError, parse_sweep


def test_a_file_of_another_kind_is_refused_with_what_to_upload_instead(tmp_path):
    with pytest.raises(ValueError) as err:
        checkpoint_from_upload([("notes.txt", b"hello")], folder=tmp_path)
    assert str(err.value) == ("notes.txt is not a file the lab reads: upload a checkpoint (.pt), or an authors' run "
                              "(a .zip of its folder, or its flags.json with a params_N.pkl).")
    assert not any(tmp_path.iterdir())  # nothing stored


def test_an_ogbench_policy_on_the_toy_page_is_named_in_words(tmp_path):
    path = save_checkpoint(tmp_path / "cube.pt", SORLAgent(SORLConfig(obs_dim=28, action_dim=5, size="tiny"), seed=0),
                           extra={"kind": "ogbench", "env": "cube-single-play-singletask-task2-v0"})
    with pytest.raises(ValueError) as err:
        T.read_upload(path.read_bytes(), "cube.pt")
    message = str(err.value)
    assert "OGBench environment cube-single-play-singletask-task2-v0" in message and "rollouts page" in message
    assert "obs_dim" not in message and "None" not in message


def test_a_csv_that_is_not_a_sweep_says_so_in_one_short_sentence():
    for data in (b"a,b\n1,2\n", b""):
        with pytest.raises(SweepError) as err:
            parse_sweep(data, "results.csv")
        message = str(err.value)
        assert "sweep written by `sorl-lab evaluate`" in message and len(message) < 200, message


@pytest.mark.parametrize("page,key", [("1_OGBench_rollouts.py", "rollouts"), ("4_Verifier.py", "verifier")])
def test_a_teacher_can_turn_a_page_off(page, key, monkeypatch):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("SORL_LAB_PAGES_OFF", f"scaling, {key}")
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app" / "pages" / page), default_timeout=60).run()
    assert not at.exception and len(at.info) == 1 and "page is turned off on this server" in at.info[0].value
    assert not at.button  # nothing to press: the page stopped before its controls
