"""Verifier study: exact restores, the truth it measures, its metrics, the CLI, resume and refusals."""

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from sorl_core import toy
from sorl_core.studies import verifier_study as vs
from sorl_core.checkpoint import load_agent
from sorl_core.cli import main
from sorl_core.studies.toy_scaling import held_out_contexts

REPO = Path(__file__).resolve().parents[1]
CUBE = REPO / "assets" / "ogbench" / "cube-single-task2" / "policy.pt"
RING = REPO / "assets" / "toy" / "ring.pt"
CUBE_ENV = "cube-single-play-singletask-task2-v0"


def read(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ----------------------------------------------------------------------------- metrics by hand
def test_metrics_equal_hand_computed_values():
    scores = [0.5, 2.0, 1.0, -1.0]
    returns = [1.0, 0.0, 3.0, 2.0]
    candidates = [[0, 0], [2, 0], [0, 1], [1, 1]]
    m = vs.state_metrics(scores, returns, candidates, success=[0, 1, 0.5, 1])
    # ranks: scores (1, 3, 2, 0), returns (1, 0, 3, 2); sum d^2 = 14 -> 1 - 6 * 14 / (4 * 15) = -0.4
    assert m["spearman"] == pytest.approx(-0.4, abs=1e-12)
    assert m["top1_regret"] == 3.0  # best 3.0, the pick (index 1) has 0.0
    assert m["winners_curse_score"] == pytest.approx(2.0 - 0.625, abs=1e-12)
    assert m["winners_curse_return"] == pytest.approx(0.0 - 1.5, abs=1e-12)
    # coordinate-wise median (0.5, 0.5); the pick (2, 0) is sqrt(2.5) from it, the others sqrt(0.5)
    assert m["pick_distance"] == pytest.approx(math.sqrt(2.5), abs=1e-12)
    assert m["mean_distance"] == pytest.approx((3 * math.sqrt(0.5) + math.sqrt(2.5)) / 4, abs=1e-12)
    assert m["pick_return"] == 0.0 and m["pick_success"] == 1.0


def test_states_spread_over_episodes():
    assert vs.spread_steps([10, 3], 4) == [(0, 2), (0, 7), (1, 0), (1, 2)]
    assert vs.spread_steps([2, 1], 3) == [(0, 0), (0, 1), (1, 0)]
    # early steps only: the first 21 decision points of each episode (steps 0 .. 20), however long it ran
    assert vs.spread_steps([120, 200], 4, early_steps=21) == [(0, 5), (0, 15), (1, 5), (1, 15)]
    assert vs.spread_steps([10, 200], 4, early_steps=21) == [(0, 2), (0, 7), (1, 5), (1, 15)]
    with pytest.raises(ValueError, match="hold only 3 decision points"):
        vs.spread_steps([2, 1], 4)


# ----------------------------------------------------------------------------- exact restores
@pytest.fixture(scope="module")
def cube_recording():
    pytest.importorskip("ogbench")
    from sorl_core.ogbench.rollouts import EnvBatch, episode_seeds, sample_seed

    agent, _ = load_agent(CUBE, device="cpu")
    envs = EnvBatch(CUBE_ENV, 2, workers=1, share_model=True)
    recording = vs.record_episodes(agent, envs, 8, episode_seeds(0, 2), sample_seed(0, 8, 1))
    yield envs, recording
    envs.close()


def test_restore_and_replay_reproduce_a_recorded_cube_single_trajectory(cube_recording):
    envs, recording = cube_recording
    length = recording.lengths[0]
    assert length > 10
    # mid-episode (the gripper near or on the cube) and one step before the end; restored into the other environment
    for step in (length // 2, length - 1):
        vs.verify_restore(envs, recording, episode=0, step=step, target=1)


def test_a_restore_that_misses_the_observation_is_refused(cube_recording):
    envs, recording = cube_recording
    envs.reset(recording.seeds)
    for t in range(5):
        envs.step(np.array([0]), recording.actions[0][t][None])
    (state,) = envs.get_states([0])
    broken = {**state, "derived": {}}  # without the derived arrays the effector pose is the target's own
    with pytest.raises(RuntimeError, match=CUBE_ENV):
        envs.set_states([1], [broken])


# ----------------------------------------------------------------------------- toy worlds: closed-form truth
def test_toy_truth_is_the_closed_form_reward(tmp_path):
    result = vs.run_study(vs.VerifierStudyConfig(str(RING), n=4, states=5, batch_states=2, out=str(tmp_path),
                                                 progress=False))
    world = toy.make_world("ring")
    contexts = held_out_contexts(world, 5)
    rows = read(result.candidates_csv)
    assert len(rows) == 5 * 4
    for row in rows:
        action = np.array([[float(row["a0"]), float(row["a1"])]], dtype=np.float32)
        context = contexts[int(row["state"])][None]
        assert float(row["return_mean"]) == float(world.reward(action, context)[0])
        assert float(row["return_std"]) == 0.0 and row["success_mean"] == ""
    states = read(result.states_csv)
    assert [float(r["context"]) for r in states] == [float(c) for c in contexts[:, 0]]
    # each verifier's pick is the argmax of its own scores, and its regret follows from the returns
    for r in states:
        cands = [c for c in rows if c["state"] == r["state"]]
        for v in ("q", "consensus"):
            pick = max(range(4), key=lambda j: (float(cands[j][f"score_{v}"]), -j))
            assert cands[pick][f"picked_{v}"] == "1"
            best = max(float(c["return_mean"]) for c in cands)
            assert float(r[f"top1_regret_{v}"]) == pytest.approx(best - float(cands[pick]["return_mean"]), abs=1e-12)


# ----------------------------------------------------------------------------- CLI end to end, resume
def _spy_chunks(monkeypatch, name: str) -> list[int]:
    seen: list[int] = []
    original = getattr(vs, name)

    def spy(*args, **kwargs):
        seen.append(len(args[2]))  # the batch of states
        return original(*args, **kwargs)

    monkeypatch.setattr(vs, name, spy)
    return seen


def test_cli_toy_study_end_to_end_and_rerun_skips(tmp_path, monkeypatch, capsys):
    args = ["verifier", "--checkpoint", str(RING), "--n", "4", "--states", "3", "--out", str(tmp_path), "--no-progress"]
    assert main(args) == 0
    for name in ("verifier_candidates.csv", "verifier_states.csv", "verifier.html"):
        assert (tmp_path / name).exists()
    assert "spearman" in capsys.readouterr().out
    seen = _spy_chunks(monkeypatch, "candidate_draws")
    assert main(args) == 0
    assert seen == []  # every state was already there


def test_cli_cube_single_end_to_end_resumes_without_redoing_states(tmp_path, monkeypatch):
    pytest.importorskip("ogbench")
    args = ["verifier", "--checkpoint", str(CUBE), "--n", "4", "--states", "2", "--repeats", "1", "--horizon", "20",
            "--episodes", "1", "--batch-states", "1", "--workers", "1", "--out", str(tmp_path), "--no-progress"]
    assert main(args) == 0
    cands, states = read(tmp_path / "verifier_candidates.csv"), read(tmp_path / "verifier_states.csv")
    assert len(cands) == 2 * 4 and len(states) == 2
    assert all(r["score_target-q"] == "" for r in cands)  # inference-only: target-q recorded as absent
    assert all(1 <= float(r["length_mean"]) <= 20 for r in cands)
    assert all(r["picked_by"] for r in cands if r["picked_q"] == "1")
    for r in states:
        assert -1 <= float(r["spearman_q"] or 0) <= 1 and float(r["top1_regret_q"]) >= 0
    html = (tmp_path / "verifier.html").read_text()
    assert "plotly" in html and "absent" in html and len(html) > 1_000_000  # plotly.js inlined
    # an interrupted study: the second state's row never made it to verifier_states.csv
    original_states = (tmp_path / "verifier_states.csv").read_text().splitlines()
    (tmp_path / "verifier_states.csv").write_text("\n".join(original_states[:2]) + "\n")
    seen = _spy_chunks(monkeypatch, "counterfactual_returns")
    assert main(args) == 0
    assert seen == [1]  # only the missing state ran again ...
    assert read(tmp_path / "verifier_states.csv") == states  # ... with the same result (same seeds, same batch)
    assert read(tmp_path / "verifier_candidates.csv") == cands
    assert main(args) == 0 and seen == [1]  # nothing left to do


# ----------------------------------------------------------------------------- best-of-N continuation
def test_continuation_actions_equal_agent_sample_from_the_same_noise():
    agent, _ = load_agent(CUBE, device="cpu")
    obs = torch.randn(3, agent.config.obs_dim, generator=torch.Generator().manual_seed(1))
    for n, verifier in ((1, "q"), (4, "q"), (4, "consensus")):
        noise = torch.randn(3, n, agent.config.action_dim, generator=torch.Generator().manual_seed(7))
        mine = vs.continuation_actions(agent, obs, noise, 8, verifier)
        theirs = agent.sample(obs, m_inf=8, n=n, generator=7, verifier=verifier).actions
        torch.testing.assert_close(mine, theirs, rtol=0, atol=1e-6)


def test_best_of_n_continuation_shares_states_candidates_and_row_0_of_its_noise(tmp_path, monkeypatch):
    pytest.importorskip("ogbench")
    seen: dict[int, list] = {}
    original = vs.continuation_actions

    def spy(cont, obs, noise, m_inf, verifier="q", beta=1.0):
        seen.setdefault(noise.shape[1], []).append((noise.clone(), verifier))
        return original(cont, obs, noise, m_inf, verifier, beta)

    monkeypatch.setattr(vs, "continuation_actions", spy)
    common = dict(n=3, states=2, repeats=2, horizon=6, episodes=1, batch_states=2, workers=1, progress=False)
    one = vs.run_study(vs.VerifierStudyConfig(str(CUBE), out=str(tmp_path / "n1"), **common))
    four = vs.run_study(vs.VerifierStudyConfig(str(CUBE), out=str(tmp_path / "n4"), continuation_n=4,
                                               continuation_verifier="q-min", **common))
    (first_one, v1), (first_four, v4) = seen[1][0], seen[4][0]
    assert first_four.shape == (2 * 3 * 2, 4, first_one.shape[-1]) and v4 == "q-min"
    # row 0 of every rollout's N_c = 4 noise is its N_c = 1 noise; the other rows are new
    torch.testing.assert_close(first_four[:, 0], first_one[:, 0], rtol=0, atol=0)
    assert not torch.equal(first_four[:, 1], first_one[:, 0])
    # common random numbers: every candidate of a state (one repeat) gets the same noise
    per = first_four.reshape(2, 3, 2, 4, -1)
    assert torch.equal(per[:, 0], per[:, 1]) and torch.equal(per[:, 0], per[:, 2])
    assert not torch.equal(per[:, :, 0], per[:, :, 1])  # other repeats, other noise
    # same states and candidates, other continuation
    cands_one, cands_four = read(one.candidates_csv), read(four.candidates_csv)
    action_cols = [k for k in cands_one[0] if k[0] == "a" and k[1:].isdigit()]
    assert [[r[k] for k in ["state", "step", *action_cols]] for r in cands_one] == \
        [[r[k] for k in ["state", "step", *action_cols]] for r in cands_four]
    ident_one = json.loads((tmp_path / "n1" / vs.CONFIG_JSON).read_text())
    ident_four = json.loads((tmp_path / "n4" / vs.CONFIG_JSON).read_text())
    assert "continuation_n" not in ident_one  # studies made before the option keep their identity
    assert ident_four["continuation_n"] == 4 and ident_four["continuation_verifier"] == "q-min"


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("extra, message", [
    (["--verifiers", "oracle"], "unknown verifier 'oracle'"),
    (["--beta", "-1"], "beta"),
    (["--horizon", "0"], "horizon must be 1 or more"),
    (["--repeats", "0"], "repeats must be 1 or more"),
    (["--n", "1"], "n must be 2 or more"),
    (["--continuation-n", "0"], "continuation_n must be 1 or more"),
    (["--continuation-verifier", "oracle"], "unknown verifier 'oracle'"),
])
def test_bad_settings_give_one_clear_sentence(tmp_path, capsys, extra, message):
    assert main(["verifier", "--checkpoint", str(RING), "--out", str(tmp_path), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_corrupt_checkpoint_is_refused(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    assert main(["verifier", "--checkpoint", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "not a readable SORL Lab checkpoint" in capsys.readouterr().err


def test_other_settings_in_the_same_folder_are_refused(tmp_path, capsys):
    base = ["verifier", "--checkpoint", str(RING), "--n", "3", "--states", "2", "--out", str(tmp_path), "--no-progress"]
    assert main(base) == 0
    assert main(base[:-1] + ["--seed", "1", "--no-progress"]) == 2
    assert "already holds a verifier study with other settings (seed 0 there, 1 here)" in capsys.readouterr().err


def test_more_states_than_the_episodes_hold_is_refused(tmp_path, capsys):
    pytest.importorskip("ogbench")
    assert main(["verifier", "--checkpoint", str(CUBE), "--states", "401", "--episodes", "2", "--workers", "1",
                 "--out", str(tmp_path), "--no-progress"]) == 2
    assert "401 states asked for, but 2 episodes of at most 200 steps cannot hold them" in capsys.readouterr().err


def test_a_study_folder_knows_its_checkpoint_by_content_not_by_path(tmp_path, capsys):
    """Resuming into a study whose checkpoint file was replaced at the same path would mix two policies."""
    policy = tmp_path / "policy.pt"
    shutil.copyfile(RING, policy)
    base = ["verifier", "--checkpoint", str(policy), "--n", "3", "--states", "2", "--out", str(tmp_path / "study"),
            "--no-progress"]
    assert main(base) == 0
    assert main(base) == 0  # same file: a resume
    shutil.copyfile(REPO / "assets" / "toy" / "moons.pt", policy)  # another policy, same path
    assert main(base) == 2
    err = capsys.readouterr().err
    assert "already holds a verifier study with other settings (checkpoint_digest" in err


def test_the_restore_proof_replays_several_recorded_steps(cube_recording):
    """A restore that is right for one step and wrong later (e.g. a velocity not restored) must still be caught."""
    envs, recording = cube_recording
    (state,) = vs.snapshot_states(envs, recording, [(0, 5)])
    assert len(state.replay_actions) == vs.PROOF_STEPS == len(state.replay_obs) == len(state.replay_rewards)
    vs.prove_restores(envs, [state])  # the true recording passes
    state.replay_obs = state.replay_obs.copy()
    state.replay_obs[3] += 1e-4  # what the fourth replayed action led to, slightly off
    with pytest.raises(RuntimeError, match="episode 0, step 5 part from the recording at step 9"):
        vs.prove_restores(envs, [state])


def test_a_recording_starts_from_the_reset_observation(cube_recording):
    """Step 0 of every recorded episode is what the reset showed (a state the study may choose), not a later one."""
    envs, recording = cube_recording
    first = envs.reset(recording.seeds)
    for e in range(envs.count):
        assert np.array_equal(recording.obs[e][0], first[e]) and len(recording.obs[e]) == recording.lengths[e] + 1


@pytest.mark.parametrize("env_name", ["puzzle-3x3-play-singletask-task4-v0", "cube-single-play-singletask-task2-v0"])
def test_one_reset_seed_gives_one_start_bit_for_bit(env_name):
    """OGBench's task resets settle the goal scene with unseeded random actions, which leave the controls and the
    solver's warm start different from reset to reset (a puzzle replay drifted at a button press, and the verifier
    study refused it): the lab's resets must give the whole integration state of MuJoCo again, not only qpos/qvel."""
    pytest.importorskip("ogbench")
    import mujoco

    from sorl_core.ogbench.rollouts import EnvBatch, _mujoco

    with EnvBatch(env_name, 2, workers=1, share_model=True) as envs:
        first = envs.reset([5, 5])
        states = []
        for env in envs.local.envs:
            model, data = _mujoco(env)
            state = np.empty(mujoco.mj_stateSize(model, mujoco.mjtState.mjSTATE_INTEGRATION))
            mujoco.mj_getState(model, data, state, mujoco.mjtState.mjSTATE_INTEGRATION)
            states.append(state)
        assert np.array_equal(first[0], first[1]) and np.array_equal(states[0], states[1])


def test_a_puzzle_state_just_after_a_button_press_restores_exactly():
    """Puzzle state lives partly outside MuJoCo (the button states): a restore must bring it back, or replayed actions
    would light other buttons. A press is made by driving a button's joint through its threshold (OGBench counts a
    press when the joint crosses -0.02 during a step)."""
    pytest.importorskip("ogbench")
    from sorl_core.ogbench.rollouts import _layers, clone_env, env_state, make_env, restore_env_state

    env = make_env("puzzle-3x3-play-singletask-task4-v0")
    obs, _ = env.reset(seed=0)
    at_reset = env_state(env, obs)  # kept in this process, as the Verifier page keeps its episode's states
    puzzle = _layers(env)[-1]
    before = puzzle._cur_button_states.copy()
    joint = puzzle._data.joint("buttonbox_joint_4")  # the centre button: it flips itself and its four neighbours
    joint.qpos[0], joint.qvel[0] = -0.015, -2.0
    obs, *_ = env.step(np.zeros(env.action_space.shape))
    assert list(np.flatnonzero(puzzle._cur_button_states != before)) == [1, 3, 4, 5, 7]
    state = env_state(env, obs)
    actions = np.random.default_rng(0).uniform(-1, 1, (20, *env.action_space.shape))
    recorded = [env.step(a)[0] for a in actions]
    other = clone_env(env)
    other.reset(seed=1)  # somewhere else first: every button state must come from the saved state
    assert np.array_equal(restore_env_state(other, state), state["obs"])
    assert all(np.array_equal(a, b) for a, b in zip(recorded, (other.step(a)[0] for a in actions)))
    assert np.array_equal(_layers(other)[-1]._cur_button_states, puzzle._cur_button_states)
    # The press flipped the button states in place: the state saved before it must not have followed them.
    assert np.array_equal(restore_env_state(other, at_reset), at_reset["obs"])
    assert np.array_equal(_layers(other)[-1]._cur_button_states, before)
    # Without the Python-side state the buttons are the reset's, and the restore refuses rather than lie.
    fresh = clone_env(env)
    fresh.reset(seed=0)
    with pytest.raises(RuntimeError, match="does not reproduce its observation"):
        restore_env_state(fresh, {**state, "python": [{} for _ in state["python"]]})
