"""Locomotion (antmaze, humanoidmaze, antsoccer) needs OGBench's official files: their datasets come from expert
policies that cannot be downloaded here. A small file written in the official format stands in for them: the lab
says exactly where the files go, and `train --env` reads them with OGBench's loader and reaches its first
evaluation in the real MuJoCo environment."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ogbench")
import gymnasium  # noqa: E402
import ogbench  # noqa: E402,F401  (registers the environments)

CLI = str(Path(sys.executable).parent / "sorl-lab")
ENV = "antmaze-large-navigate-singletask-task1-v0"
DATASET = "antmaze-large-navigate-v0"  # the file a singletask environment reads


def official_format_episodes(episodes: int, length: int, seed: int) -> dict[str, np.ndarray]:
    """Random-action episodes of antmaze-large, with the official file's keys, dtypes and row layout
    (observations, actions, terminals on each episode's last row, qpos, qvel of the same row's state)."""
    env = gymnasium.make("antmaze-large-v0")
    rng = np.random.default_rng(seed)
    rows = {k: [] for k in ("observations", "actions", "terminals", "qpos", "qvel")}
    for e in range(episodes):
        ob, _ = env.reset(seed=seed * 1000 + e)
        for i in range(length):
            action = rng.uniform(-1, 1, env.action_space.shape).astype(np.float32)
            rows["observations"].append(ob)
            rows["actions"].append(action)
            rows["terminals"].append(i == length - 1)
            rows["qpos"].append(env.unwrapped.data.qpos.copy())
            rows["qvel"].append(env.unwrapped.data.qvel.copy())
            ob, *_ = env.step(action)
    env.close()
    return {k: np.asarray(v, dtype=bool if k == "terminals" else np.float32) for k, v in rows.items()}


def run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=300)


def test_data_info_says_exactly_where_the_official_files_go(tmp_path):
    out = run_cli("data", "info", ENV, "--dataset-dir", str(tmp_path)).stdout
    assert f"trains on the files of the dataset {DATASET}" in out
    for name in (f"{DATASET}.npz", f"{DATASET}-val.npz"):
        assert f"missing {tmp_path / name}" in out  # the absolute path, with the dataset's (not the task's) name
        assert f"https://rail.eecs.berkeley.edu/datasets/ogbench/{name}" in out
        assert f"\n  {tmp_path / name}\n" in out  # and where to copy the download
    train = run_cli("train", "--env", ENV, "--iterations", "20", "--dataset-dir", str(tmp_path), "--no-progress")
    assert train.returncode == 2 and str(tmp_path / f"{DATASET}-val.npz") in train.stderr
    assert "generating" not in train.stdout  # it cannot be generated here, so it does not pretend to


def test_train_reads_official_format_files_and_reaches_its_first_evaluation(tmp_path):
    np.savez_compressed(tmp_path / f"{DATASET}.npz", **official_format_episodes(4, 51, seed=0))
    np.savez_compressed(tmp_path / f"{DATASET}-val.npz", **official_format_episodes(1, 51, seed=1))
    info = run_cli("data", "info", ENV, "--dataset-dir", str(tmp_path))
    assert info.stdout.count("found") == 2, info.stdout
    out = tmp_path / "run"
    proc = run_cli("train", "--env", ENV, "--iterations", "20", "--eval-every", "20", "--eval-episodes", "1",
                   "--eval-workers", "1", "--dataset-dir", str(tmp_path), "--out", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    config = json.loads((out / "config.json").read_text())
    assert (config["agent"]["obs_dim"], config["agent"]["action_dim"]) == (29, 8)  # the ant's observation and joints
    rows = list(csv.DictReader(open(out / "eval.csv")))
    assert [(int(r["step"]), int(r["m_inf"])) for r in rows] == [(20, 1), (20, 2), (20, 4), (20, 8)]
    # 20 iterations on random data do not reach the goal: each episode runs to antmaze's 1000-step limit.
    assert all(float(r["mean_length"]) == 1000 and float(r["success_rate"]) == 0 for r in rows)
    assert (out / "checkpoint.pt").is_file()
