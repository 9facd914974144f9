"""OGBench training, the test-time-scaling sweep and rollout videos, end to end through the real CLI.

Real environments and MuJoCo physics on a few generated episodes and a tiny network: the policies
are untrained, so these tests check plumbing, seeding and file formats, never success rates.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sorl_core.cli import main
from sorl_core.ogbench.generation import DataGenerateConfig, generate_dataset
from sorl_core.ogbench.rollouts import EnvBatch, episode_seeds, run_episodes
from sorl_core.stats import wilson_interval
from sorl_core.studies.sweep_schema import SWEEP_COLUMNS

pytest.importorskip("ogbench")
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

ENV = "cube-single-play-singletask-task2-v0"
REPO = Path(__file__).resolve().parents[1]


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    generate_dataset(DataGenerateConfig("cube-single-play-v0", dataset_dir=str(d), episodes=3, episode_length=201,
                                        workers=1, progress=False))
    return d


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
    """A 20-iteration run with evaluations at steps 10 and 20 (2 episodes at m_inf 1 and 8)."""
    out = tmp_path_factory.mktemp("run") / "run"
    rc = main(["train", "--env", ENV, "--dataset-dir", str(data_dir), "--iterations", "20", "--log-every", "5",
               "--eval-every", "10", "--eval-episodes", "2", "--eval-m-inf", "1", "8", "--eval-workers", "1",
               "--checkpoint-every", "10", "--agent.size", "tiny", "--no-progress", "--out", str(out)])
    assert rc == 0
    return out


def test_train_on_ogbench_uses_the_preset_and_logs_evaluations(trained):
    config = json.loads((trained / "config.json").read_text())
    assert config["env"] == ENV
    assert (config["agent"]["discount"], config["agent"]["q_agg"], config["agent"]["q_loss_coef"]) == (0.99, "mean", 10)
    rows = read_csv(trained / "eval.csv")
    assert [(int(r["step"]), int(r["m_inf"])) for r in rows] == [(10, 1), (10, 8), (20, 1), (20, 8)]
    for r in rows:
        assert int(r["episodes"]) == 2
        assert 0 <= float(r["success_ci_low"]) <= float(r["success_rate"]) <= float(r["success_ci_high"]) <= 1
        assert 1 <= float(r["mean_length"]) <= 200
    metrics = read_csv(trained / "metrics.csv")
    assert [int(r["step"]) for r in metrics] == [5, 10, 15, 20]
    assert all(np.isfinite(float(r["critic_loss"])) for r in metrics)


def test_train_resumes_an_ogbench_run(trained, data_dir):
    rc = main(["train", "--env", ENV, "--dataset-dir", str(data_dir), "--iterations", "30", "--log-every", "5",
               "--eval-every", "0", "--checkpoint-every", "10", "--agent.size", "tiny", "--no-progress",
               "--out", str(trained), "--resume"])
    assert rc == 0
    assert [int(r["step"]) for r in read_csv(trained / "metrics.csv")][-2:] == [25, 30]
    assert [int(r["step"]) for r in read_csv(trained / "eval.csv")][-1] == 20  # earlier evaluations kept


def test_unknown_or_goal_conditioned_environments_are_refused_with_the_list(capsys):
    assert main(["train", "--env", "cube-sextuple-play-singletask-task2-v0"]) == 2
    err = capsys.readouterr().err
    assert "supported environments" in err and "cube-single-play" in err and "scene-play" in err
    assert main(["train", "--env", "cube-single-play-v0"]) == 2
    assert "cube-single-play-singletask-task2-v0" in capsys.readouterr().err


def test_env_batch_is_seeded_and_workers_do_not_change_results():
    seeds = episode_seeds(3, 3)
    actions = np.random.default_rng(0).uniform(-1, 1, (3, 5)).astype(np.float32)
    results = []
    for workers in (1, 2):
        with EnvBatch(ENV, 3, workers=workers) as envs:
            first = envs.reset(seeds)
            assert np.array_equal(first, envs.reset(seeds))  # the same initial states every time
            stepped = envs.step(np.array([0, 2]), actions[[0, 2]])  # only episodes 0 and 2 move
            results.append((first, stepped[0]))
    assert np.array_equal(results[0][0], results[1][0]) and np.array_equal(results[0][1], results[1][1])
    assert not np.array_equal(results[0][0][0], results[0][0][1])  # different seeds, different states


def test_run_episodes_calls_the_policy_once_per_step_for_all_episodes(trained):
    from sorl_core.checkpoint import load_agent

    agent, _ = load_agent(trained / "checkpoint.pt", device="cpu")
    calls = []
    original = agent.sample
    agent.sample = lambda obs, **kw: calls.append(len(obs)) or original(obs, **kw)
    with EnvBatch(ENV, 3, workers=1, max_episode_steps=12) as envs:
        result = run_episodes(agent, envs, 2, 4, episode_seeds(0, 3), record_q=True)
    assert calls == [3] * 12  # three episodes, one batched call per step, ending at the 12-step limit
    assert list(result.lengths) == [12, 12, 12] and [len(q) for q in result.q_traces] == [12, 12, 12]
    s = result.summary()
    assert (s["actor_calls"], s["critic_calls"], s["network_calls"]) == (8, 4, 12)


def test_wilson_interval():
    assert wilson_interval(0, 50)[0] == 0.0 and 0.05 < wilson_interval(0, 50)[1] < 0.08
    low, high = wilson_interval(40, 50)
    assert low < 0.8 < high and round(low, 3) == 0.670 and round(high, 3) == 0.888


def test_evaluate_writes_the_sweep_csv_and_report(trained, tmp_path):
    rc = main(["evaluate", "--checkpoint", str(trained / "checkpoint.pt"), "--m-inf", "1", "2", "--n", "1", "2",
               "--episodes", "2", "--workers", "2", "--no-progress", "--out", str(tmp_path)])
    assert rc == 0
    rows = read_csv(tmp_path / "sweep.csv")
    assert tuple(rows[0]) == SWEEP_COLUMNS
    assert [(int(r["m_inf"]), int(r["n"])) for r in rows] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert [int(r["network_calls"]) for r in rows] == [1, 4, 2, 6]
    assert all(r["env"] == ENV and int(r["episodes"]) == 2 and float(r["ms_per_action"]) > 0 for r in rows)
    assert {r["method"] for r in rows} == {"sorl"}
    html = (tmp_path / "sweep.html").read_text()
    assert "plotly" in html.lower() and "Success over M_inf x N" in html and "Success against compute" in html


def test_an_interrupted_sweep_keeps_its_cells_and_resumes_only_the_rest(trained, tmp_path, monkeypatch, capsys):
    import sorl_core.studies.evaluate as E

    args = ["evaluate", "--checkpoint", str(trained / "checkpoint.pt"), "--m-inf", "1", "2", "--n", "1", "2",
            "--verifier", "q", "consensus", "--adaptive", "seq:eps=0.05", "--episodes", "2", "--workers", "1",
            "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "whole")]) == 0
    whole = read_csv(tmp_path / "whole" / "sweep.csv")
    real, calls, stop_at = E.run_episodes, [], [3]

    def interrupted_at_the_third_cell(*a, **kw):
        calls.append(a[2:4])
        if len(calls) == stop_at[0]:
            stop_at[0] = None
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(E, "run_episodes", interrupted_at_the_third_cell)
    out = tmp_path / "cut"
    assert main([*args, "--out", str(out)]) == 130
    assert "--resume" in capsys.readouterr().err
    kept = read_csv(out / "sweep.csv")  # M1 N1 (one run, a row per verifier), then M1 N2 ranked by q
    assert [(r["m_inf"], r["n"], r["verifier"]) for r in kept] == [("1", "1", "q"), ("1", "1", "consensus"),
                                                                  ("1", "2", "q")]
    calls.clear()
    assert main([*args, "--out", str(out), "--resume"]) == 0
    assert calls == [(1, 2), (2, 1), (2, 2), (2, 2), (8, 1)]  # the runs left (the rule at its caps), none again
    resumed = read_csv(out / "sweep.csv")
    measured = ("m_inf", "n", "verifier", "adaptive", "successes", "mean_return", "mean_length", "network_calls")
    assert [[r[c] for c in measured] for r in resumed] == [[r[c] for c in measured] for r in whole]
    calls.clear()
    assert main([*args, "--out", str(out), "--resume", "--episodes", "3"]) == 0  # other settings: nothing reused
    assert len(calls) == 7

    # A resume over another grid, interrupted at its first new cell, keeps every cell the file held (a sitting of
    # scripts/sweep_budget_runs.py over a wider grid once lost published M_inf = 8 cells this way).
    def settings():
        return {(r["m_inf"], r["n"], r["verifier"], r["adaptive"]) for r in read_csv(out / "sweep.csv")}

    held, calls[:], stop_at[0] = settings(), [], 1
    other_grid = [*args[:7], "1", "4", *args[9:], "--episodes", "3", "--out", str(out), "--resume"]
    assert main(other_grid) == 130 and calls == [(1, 4)]
    assert settings() == held  # M_inf 1, N 1 reused; the rest kept although this grid had not reached them
    assert main(other_grid) == 0
    assert settings() == held | {("1", "4", "q", ""), ("1", "4", "consensus", ""), ("2", "4", "q", ""),
                                 ("2", "4", "consensus", "")}  # N = 2 is outside this grid and stays


def test_a_baseline_trains_and_sweeps_on_ogbench_with_its_method_recorded(data_dir, tmp_path, capsys):
    out = tmp_path / "fql"
    assert main(["train", "--env", ENV, "--dataset-dir", str(data_dir), "--iterations", "6", "--eval-every", "6",
                 "--eval-episodes", "2", "--eval-workers", "1", "--checkpoint-every", "6", "--agent.size", "tiny",
                 "--agent.method", "fql", "--no-progress", "--out", str(out)]) == 0
    assert [int(r["m_inf"]) for r in read_csv(out / "eval.csv")] == [1]  # fql acts in one call
    assert main(["evaluate", "--checkpoint", str(out / "checkpoint.pt"), "--m-inf", "1", "--n", "1", "2", "--episodes",
                 "2", "--workers", "1", "--no-progress", "--out", str(tmp_path)]) == 0
    rows = read_csv(tmp_path / "sweep.csv")
    assert [(r["method"], int(r["n"]), int(r["network_calls"])) for r in rows] == [("fql", 1, 1), ("fql", 2, 4)]
    assert main(["evaluate", "--checkpoint", str(out / "checkpoint.pt"), "--m-inf", "1", "2", "--episodes", "2",
                 "--no-progress", "--out", str(tmp_path / "bad")]) == 2
    assert "fql acts with one call of its one-step policy, so m_inf must be 1" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_evaluate_rejects_bad_input(trained, tmp_path, capsys):
    ckpt = str(trained / "checkpoint.pt")
    assert main(["evaluate", "--checkpoint", ckpt, "--m-inf", "3", "--episodes", "1"]) == 2
    assert "power of two" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(REPO / "assets" / "toy" / "ring.pt"), "--episodes", "1"]) == 2
    assert "not an OGBench checkpoint" in capsys.readouterr().err
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    assert main(["evaluate", "--checkpoint", str(junk)]) == 2
    assert "not a readable SORL Lab checkpoint" in capsys.readouterr().err
    assert main(["render", "--checkpoint", ckpt, "--configs", "8by16"]) == 2
    assert "M_INFxN" in capsys.readouterr().err


def test_render_writes_playable_h264_side_by_side_and_caches(trained, tmp_path, monkeypatch):
    import imageio.v2 as imageio

    monkeypatch.setenv("SORL_LAB_CACHE", str(tmp_path / "cache"))
    args = ["render", "--checkpoint", str(trained / "checkpoint.pt"), "--configs", "1x1", "2x2", "--seed", "1",
            "--every", "20", "--size", "96", "--out", str(tmp_path / "videos")]
    assert main(args) == 0
    videos = sorted((tmp_path / "videos").glob("*.mp4"))
    assert [v.name for v in videos] == ["run-s1-M1xN1.mp4", "run-s1-M2xN2.mp4", "run-s1-side-by-side.mp4"]  # named by the run folder
    for video in videos:
        with imageio.get_reader(video, format="FFMPEG") as reader:
            meta = reader.get_meta_data()
            frames = [f for f in reader]
        assert meta["codec"] == "h264" and meta["pix_fmt"].startswith("yuv420p")
        # untrained policy: 200 steps, a frame every 20 (steps 0..200: 11, the last is the final state) + 1 s hold at 1 fps
        assert len(frames) == 11 + 1
        assert frames[0].shape == ((96, 192, 3) if "side" in video.name else (96, 96, 3))
        assert frames[0].std() > 5  # a picture, not a blank frame
    cached = sorted((tmp_path / "cache").glob("*.mp4"))
    assert len(cached) == 2
    stamp = [c.stat().st_mtime_ns for c in cached]
    assert main(args) == 0  # the second time comes from the cache
    assert [c.stat().st_mtime_ns for c in cached] == stamp


def test_render_replays_the_chosen_episode_of_an_evaluation(trained, tmp_path, monkeypatch, capsys):
    """`--episodes K --episode i` replays episode i of `evaluate --episodes K` (same reset seed, same noise)."""
    from sorl_core.checkpoint import load_agent
    from sorl_core.ogbench.rollouts import sample_seed

    monkeypatch.setenv("SORL_LAB_CACHE", str(tmp_path / "cache"))
    ckpt = trained / "checkpoint.pt"
    assert main(["render", "--checkpoint", str(ckpt), "--configs", "2x2", "--seed", "1", "--episodes", "3",
                 "--episode", "2", "--every", "50", "--size", "32", "--out", str(tmp_path / "videos")]) == 0
    assert sorted(v.name for v in (tmp_path / "videos").glob("*.mp4")) == [
        "run-s1-K3-e2-M2xN2.mp4", "run-s1-K3-e2-side-by-side.mp4"]
    printed = capsys.readouterr().out
    agent, _ = load_agent(ckpt, device="cpu")
    with EnvBatch(ENV, 3, workers=1) as envs:
        table = run_episodes(agent, envs, 2, 2, episode_seeds(1, 3), sample_seed=sample_seed(1, 2, 2))
    outcome = f"success at step {table.lengths[2]}" if table.success[2] else f"failed ({table.lengths[2]} steps)"
    assert f"M=2 N=2: {outcome}" in printed
    assert main(["render", "--checkpoint", str(ckpt), "--episodes", "3", "--episode", "3"]) == 2
    assert "between 0 and 2" in capsys.readouterr().err


BUNDLED = sorted((REPO / "assets" / "ogbench").glob("*/policy.pt"))


def test_the_cube_single_policy_is_bundled():
    assert "cube-single-task2" in [p.parent.name for p in BUNDLED]


@pytest.mark.parametrize("policy", BUNDLED, ids=[p.parent.name for p in BUNDLED])
def test_bundled_checkpoints_load_and_act_in_their_environment(policy):
    from sorl_core.baselines import m_inf_values, ranking_verifier
    from sorl_core.checkpoint import load_agent

    agent, extra = load_agent(policy, device="cpu")
    folder = policy.parent
    assert extra["env"].endswith("-v0") and "singletask" in extra["env"]
    rows = read_csv(folder / "sweep.csv")
    assert tuple(rows[0]) == SWEEP_COLUMNS and all(int(r["episodes"]) == 50 for r in rows)
    steps = m_inf_values(agent.config, (1, 2, 4, 8))  # fql acts in one call: its sweep spreads over N instead
    assert {(int(r["m_inf"]), int(r["n"])) for r in rows} >= {(m, 1) for m in steps}
    assert {r["method"] for r in rows} == {agent.config.method}
    card = (folder / "card.md").read_text()
    assert "sorl-lab train --env" in card and f"{agent.step:,}" in card
    with EnvBatch(extra["env"], 2, workers=1, max_episode_steps=15) as envs:
        assert envs.obs_dim == agent.config.obs_dim and envs.action_dim == agent.config.action_dim
        result = run_episodes(agent, envs, steps[-1], 4, episode_seeds(0, 2), record_q=True,
                              verifier=ranking_verifier(agent.config))
    assert all(1 <= length <= 15 for length in result.lengths)
    assert all(np.isfinite(q).all() for q in result.q_traces)
    assert all(len(q) == (length if agent.has_critic else 0) for q, length in zip(result.q_traces, result.lengths))


def test_a_worker_that_dies_is_an_error_not_a_hang():
    """A killed environment worker (e.g. by the kernel, out of memory) fails the next call at once."""
    import threading

    from sorl_core.ogbench.rollouts import EnvBatch

    envs = EnvBatch("cube-single-play-singletask-task2-v0", 2, workers=2)
    outcome = {}

    def call() -> None:
        try:
            envs.reset([0, 1])
        except RuntimeError as exc:
            outcome["error"] = str(exc)

    try:
        envs.reset([0, 1])
        envs.procs[0].kill()
        envs.procs[0].join(timeout=10)
        caller = threading.Thread(target=call, daemon=True)
        caller.start()
        caller.join(timeout=60)
        assert not caller.is_alive(), "the call hung on a dead worker"
        assert "stopped unexpectedly" in outcome.get("error", "")
    finally:
        envs.close()


def test_training_time_evaluation_samples_with_the_noise_evaluate_uses(monkeypatch):
    """eval.csv during training and `sorl-lab evaluate` play a cell with the same sampling noise seed."""
    from types import SimpleNamespace

    from sorl_core.ogbench import train as ogbench_train
    from sorl_core.ogbench.rollouts import sample_seed

    seen = []

    def fake_run_episodes(agent, envs, m, n, seeds, sample_seed=0, **kw):
        seen.append((m, n, seeds, sample_seed))
        return SimpleNamespace(summary=lambda: {k: 0 for k in ogbench_train.EVAL_COLUMNS})

    monkeypatch.setattr(ogbench_train, "run_episodes", fake_run_episodes)
    sorl = SimpleNamespace(config=SimpleNamespace(method="sorl"))  # every M_inf (fql would evaluate only 1)
    ogbench_train.evaluate_success(sorl, SimpleNamespace(count=3), [1, 2, 8], n=1, seed=5)
    assert seen == [(m, 1, episode_seeds(5, 3), sample_seed(5, m, 1)) for m in (1, 2, 8)]


@pytest.mark.parametrize("verifier", ["q", "consensus", "q-min"])
def test_recorded_q_is_the_critic_s_q_whatever_the_verifier(verifier):
    """The rollouts table's 'mean Q' and the video's Q trace show Q, not the verifier's score (consensus: distances)."""
    import torch

    from sorl_core.checkpoint import load_agent

    agent, extra = load_agent(BUNDLED[0], device="cpu")
    seen = []
    with EnvBatch(extra["env"], 2, workers=1, max_episode_steps=4) as envs:
        result = run_episodes(agent, envs, 8, 4, episode_seeds(0, 2), record_q=True, verifier=verifier,
                              on_sample=lambda t, index, obs, res: seen.append((obs, res.actions)))
    want = torch.cat([agent.q_value(obs, actions, k=8) for obs, actions in seen]).numpy()
    got = np.array([q for t in range(4) for q in (result.q_traces[0][t], result.q_traces[1][t])])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_snapshots_along_a_run_are_swept_as_a_training_budget_axis(data_dir, tmp_path):
    """`train --snapshots` keeps small bf16 inference-only snapshots; `evaluate RUN` sweeps them in one file with
    train_iterations, and records the success timing it ran with."""
    from sorl_core.checkpoint import CheckpointError, load_agent, load_for_resume

    out = tmp_path / "run"
    assert main(["train", "--env", ENV, "--dataset-dir", str(data_dir), "--iterations", "30", "--snapshots", "10", "20",
                 "--eval-every", "0", "--checkpoint-every", "10", "--agent.size", "tiny", "--no-progress",
                 "--out", str(out)]) == 0
    files = sorted(p.name for p in (out / "snapshots").iterdir())
    assert files == ["iteration-0000010.pt", "iteration-0000020.pt", "iteration-0000030.pt"]  # and the last one
    payload = torch.load(out / "snapshots" / files[0], weights_only=True)
    assert payload["agent"]["inference_only"] and payload["extra"]["train_iterations"] == 10
    assert all(t.dtype == torch.bfloat16 for t in payload["agent"]["actor"].values())
    snapshot, _ = load_agent(out / "snapshots" / files[0], device="cpu")
    assert snapshot.step == 10 and snapshot.actor.layers[0].weight.dtype == torch.float32
    with pytest.raises(CheckpointError, match="cannot resume"):
        load_for_resume(out / "snapshots" / files[0], device="cpu")

    assert main(["evaluate", "--checkpoint", str(out), "--m-inf", "1", "--n", "1", "--episodes", "2", "--workers", "1",
                 "--no-progress"]) == 0
    rows = read_csv(out / "sweep.csv")  # beside the run; the final checkpoint is the snapshot at 30
    assert [(r["checkpoint"], r["train_iterations"]) for r in rows] == [("run@10", "10"), ("run@20", "20"), ("run@30", "30")]
    assert {r["success_timing"] for r in rows} == {"pre"}  # OGBench 1.2's singletask default
    assert main(["evaluate", "--checkpoint", str(out / "checkpoint.pt"), str(out / "snapshots" / files[0]),
                 "--m-inf", "1", "--n", "1", "--episodes", "2", "--workers", "1", "--success-timing", "post",
                 "--no-progress", "--out", str(tmp_path / "post")]) == 0
    rows = read_csv(tmp_path / "post" / "sweep.csv")
    assert [(r["checkpoint"], r["train_iterations"], r["success_timing"]) for r in rows] == [
        ("run", "30", "post"), ("run@10", "10", "post")]


def test_the_budget_sweep_script_sweeps_every_seed_at_each_budget_and_merges_them(data_dir, tmp_path):
    """scripts/sweep_budget_runs.py: each snapshot of each seed swept once (a second sitting redoes nothing), merged
    in training order into the bundled sweep_budget.csv the Scaling page reads."""
    import subprocess
    import sys

    runs = tmp_path / "runs"
    assert main(["train", "--env", ENV, "--dataset-dir", str(data_dir), "--iterations", "20", "--snapshots", "10", "20",
                 "--eval-every", "0", "--checkpoint-every", "10", "--agent.size", "tiny", "--no-progress",
                 "--out", str(runs / "cube-single-s0")]) == 0
    (runs / "cube-single-s1").mkdir()
    (runs / "cube-single-s1" / "snapshots").symlink_to(runs / "cube-single-s0" / "snapshots")
    args = [sys.executable, str(REPO / "scripts" / "sweep_budget_runs.py"), "--runs", str(runs), "--archive",
            str(tmp_path / "none"), "--bundle", str(tmp_path / "assets"), "--episodes", "1", "--m-inf", "1", "2",
            "--n", "1", "2"]
    first = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    assert [line.split()[-1] for line in first.stdout.splitlines() if " sweeping " in line] == [
        "cube-single-s0@20", "cube-single-s1@20", "cube-single-s0@10", "cube-single-s1@10"]
    rows = read_csv(tmp_path / "assets" / "cube-single-task2-budget" / "sweep_budget.csv")
    assert len(rows) == 4 * 8  # M {1, 2} x N {1, 2} x verifier {q, consensus} per snapshot
    assert [r["checkpoint"] for r in rows[::8]] == ["cube-single-s0@10", "cube-single-s1@10", "cube-single-s0@20",
                                                    "cube-single-s1@20"]
    assert {(r["train_iterations"], r["verifier"]) for r in rows} == {(i, v) for i in ("10", "20")
                                                                      for v in ("q", "consensus")}
    card = (tmp_path / "assets" / "cube-single-task2-budget" / "card.md").read_text()
    assert "## Success at each training budget" in card and "| 10 | 2 | " in card and "| 20 | 2 | " in card
    assert "| trained so far | 20 iterations of 20 planned" in card
    assert "| sweep | M_inf 1, 2 x N 1, 2 x verifier q, consensus; 1 seeded episodes" in card  # what was measured
    assert "; from SORL (paper, Table 6) |" in card  # where the preset comes from (puzzle's: FQL's, translated)
    # cube-single's 80% target is judged at M_inf = 8, which this tiny sweep leaves out: the card says so
    assert "Success at M_inf = 8, N = 1 is not measured, so the 80% target cannot be judged." in card
    again = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and " sweeping " not in again.stdout

    # A fresh clone has the published sweep_budget.csv but no sweep folders: a sitting over a wider grid measures only
    # the new cells (a published cell is kept as it was, marked here) and drops no published snapshot.
    import shutil

    shutil.rmtree(runs / "sweeps")
    published = tmp_path / "assets" / "cube-single-task2-budget" / "sweep_budget.csv"
    rows[0]["mean_return"] = "-12345.0"
    with open(published, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    wider = subprocess.run(args[:-6] + ["--m-inf", "1", "2", "4", "--n", "1", "2"], capture_output=True, text=True,
                           timeout=600)
    assert wider.returncode == 0, wider.stderr[-2000:]
    rows = read_csv(published)
    assert len(rows) == 4 * 12 and {r["m_inf"] for r in rows} == {"1", "2", "4"}
    assert [r["mean_return"] for r in rows if r["checkpoint"] == "cube-single-s0@10"].count("-12345.0") == 1
    # a sitting that only republishes (--minutes 0, the default grid) still describes the grid the file holds, and
    # the card shows each seed's own evaluations during training (eval.csv: denser than the snapshots, 20 episodes)
    (runs / "cube-single-s0" / "eval.csv").write_text(
        "step,m_inf,n,episodes,success_rate,success_ci_low,success_ci_high,mean_return,mean_length\n"
        "40000,1,1,20,0.0,0.0,0.16,-200,200\n40000,8,1,20,0.5,0.3,0.7,-150,150\n80000,8,1,20,0.9,0.7,0.97,-80,80\n")
    assert subprocess.run(args[:-6] + ["--minutes", "0"], capture_output=True, text=True, timeout=600).returncode == 0
    card = (tmp_path / "assets" / "cube-single-task2-budget" / "card.md").read_text()
    assert "| sweep | M_inf 1, 2, 4 x N 1, 2 x verifier q, consensus;" in card
    assert "| 0 | 40k: 50% [30%, 70%], 80k: 90% [70%, 97%] |" in card


def sweep_script(monkeypatch):
    """scripts/sweep_budget_runs.py as a module, to call its functions with some of them replaced."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("sweep_budget_runs", REPO / "scripts" / "sweep_budget_runs.py")
    script = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, script)  # its dataclass looks its module up there
    spec.loader.exec_module(script)
    return script


def test_the_card_says_how_far_each_seed_trained_when_they_are_apart(tmp_path, monkeypatch):
    """A stop can leave a stack's seeds at different steps (cube-single: 320,000, 299,765, 320,000): the card must not
    report the first seed's count as the run's."""
    script = sweep_script(monkeypatch)
    cfg = script.SweepBudgetConfig(runs=tmp_path, archive=tmp_path / "none")
    runs = ("cube-single-s0", "cube-single-s1", "cube-single-s2")
    for run, step in zip(runs, (320000, 299765, 320000)):
        (tmp_path / run).mkdir()
        (tmp_path / run / "metrics.csv").write_text(f"step,seconds\n1000,1.0\n{step},2.0\n")
    assert script.trained_words(cfg, runs) == "seed 0: 320,000, seed 1: 299,765, seed 2: 320,000"
    (tmp_path / runs[1] / "metrics.csv").write_text("step,seconds\n320000,3.0\n")
    assert script.trained_words(cfg, runs) == "320,000"


def test_a_sitting_out_of_time_still_republishes_every_job(tmp_path, monkeypatch):
    """--minutes 0 republishes the cards of every job asked for, also after one whose grid is not finished."""
    script = sweep_script(monkeypatch)
    published = []
    monkeypatch.setattr(script, "publish", lambda cfg, job, cells: published.append(job))
    cfg = script.SweepBudgetConfig(jobs=("cube-single", "scene", "cube-double"), minutes=0, runs=tmp_path / "runs",
                                   archive=tmp_path / "none", bundle=tmp_path / "assets")
    for run in ("cube-single-s0", "scene", "cube-double"):  # a snapshot in every run, none of them swept
        (tmp_path / "runs" / run / "snapshots").mkdir(parents=True)
        (tmp_path / "runs" / run / "snapshots" / "iteration-0000010.pt").touch()
    monkeypatch.setattr(script, "snapshots_of", lambda cfg, run: sorted((cfg.runs / run / "snapshots").glob("*.pt")))
    assert script.main(cfg) == 0
    assert published == ["cube-single", "scene", "cube-double"]


def test_a_sitting_can_sweep_only_the_budgets_asked_for(tmp_path, monkeypatch):
    """--budgets 20 sweeps the snapshots kept after 20 iterations, of every seed, and no other."""
    script = sweep_script(monkeypatch)
    swept = []
    monkeypatch.setattr(script, "publish", lambda cfg, job, cells: None)
    monkeypatch.setattr(script.subprocess, "call", lambda cmd, cwd: swept.append(cmd[cmd.index("--checkpoint") + 1]) or 0)
    monkeypatch.setattr(script, "snapshots_of", lambda cfg, run: sorted((cfg.runs / run / "snapshots").glob("*.pt")))
    cfg = script.SweepBudgetConfig(jobs=("cube-single",), minutes=5, budgets=(20,), runs=tmp_path / "runs",
                                   archive=tmp_path / "none", bundle=tmp_path / "assets")
    for run in ("cube-single-s0", "cube-single-s1", "cube-single-s2"):
        for iterations in (10, 20, 40):
            (tmp_path / "runs" / run / "snapshots").mkdir(parents=True, exist_ok=True)
            (tmp_path / "runs" / run / "snapshots" / f"iteration-{iterations:07d}.pt").touch()
    assert script.main(cfg) == 0
    assert [Path(p).parent.parent.name + "/" + Path(p).name for p in swept] == [
        f"cube-single-s{seed}/iteration-0000020.pt" for seed in range(3)]


def test_the_card_names_each_precision_of_a_run_once(monkeypatch):
    """A run trained in bf16, then resumed in float32 on a CPU without native bf16: its card says where each ends."""
    script = sweep_script(monkeypatch)
    kept = {}
    monkeypatch.setattr(script, "snapshots_of", lambda cfg, run: list(kept))
    monkeypatch.setattr(script, "read_checkpoint", lambda path: {"agent": {"step": int(path)},
                                                                  "config": {"precision": kept[path]}})
    cfg = script.SweepBudgetConfig()
    kept.update({"10": "bf16", "40": "bf16", "80": "fp32"})
    assert script.precision_history(cfg, "run", "fp32") == "bf16 (snapshots to 40), float32 from there on"
    kept.pop("80")
    assert script.precision_history(cfg, "run", "fp32") == "bf16 (snapshots to 40), float32 from there on"
    assert script.precision_history(cfg, "run", "bf16") == "bf16"


def test_a_sitting_generates_no_dataset_past_its_deadline(tmp_path):
    """scripts/train_budget_runs.sh: dataset generation obeys the sitting's deadline like training does (chunks are
    resumable), so a sitting out of time starts neither and says so; an unknown job is named."""
    import os
    import subprocess

    env = {**os.environ, "BUDGET_DATA": str(tmp_path / "data"), "BUDGET_ARCHIVE": str(tmp_path / "archive"),
           "BUDGET_RUNS": str(tmp_path / "runs")}
    script = str(REPO / "scripts" / "train_budget_runs.sh")
    done = subprocess.run(["bash", script, "--minutes", "0", "puzzle-3x3"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "puzzle-3x3-play-v0: no time left in this sitting to generate it" in done.stdout
    assert " training " not in done.stdout and not list((tmp_path / "data").glob("*.npz"))
    assert "puzzle-3x3-play-v0: no time left" in (tmp_path / "runs" / "status").read_text()
    wrong = subprocess.run(["bash", script, "--minutes", "0", "cube-triple"], env=env, capture_output=True, text=True,
                           timeout=300)
    assert wrong.returncode == 2 and "unknown job cube-triple" in wrong.stderr
