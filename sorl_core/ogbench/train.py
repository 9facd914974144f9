"""Training SORL on an OGBench singletask environment: presets, periodic success evaluation, resume."""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..agent import SORLAgent, resolve_device
from ..config import SORLConfig
from ..baselines import m_inf_values
from ..train import EVAL_M_INF, single_or_lists, open_run, seed_folders, train_seeds
from .datasets import DEFAULT_DATASET_DIR, dataset_name_for, dataset_paths, dataset_spec, load_dataset_and_env
from .environments import preset_for
from .generation import DataGenerateConfig, generate_dataset
from .rollouts import EnvBatch, episode_seeds, run_episodes, sample_seed

ACTION_CLIP = 1 - 1e-5  # docs/ALGORITHM.md §7: dataset actions are clipped to +-(1 - 1e-5)
SNAPSHOT_DEFAULT = tuple(10_000 * 2**i for i in range(8))  # 10k, 20k, 40k, ... 1.28M iterations
EVAL_COLUMNS = ["step", "m_inf", "n", "episodes", "success_rate", "success_ci_low", "success_ci_high", "mean_return", "mean_length"]


def training_curve(eval_csv: str) -> list[tuple[int, float]]:
    """(step, success) of a run's evaluations during training (the text of its eval.csv, 20 episodes per row by
    default) at M_inf = 8, N = 1, or at M_inf = 1 for a method that acts in one call (fql)."""
    rows = [r for r in csv.DictReader(eval_csv.splitlines()) if int(r["n"]) == 1]
    m = 8 if any(int(r["m_inf"]) == 8 for r in rows) else 1
    return [(int(r["step"]), float(r["success_rate"])) for r in rows if int(r["m_inf"]) == m]


@dataclass
class EnvTrainConfig:
    """Train SORL on an OGBench singletask environment with its per-environment preset (docs/ALGORITHM.md §6)."""

    env: str = "cube-single-play-singletask-task2-v0"
    """OGBench singletask environment, e.g. cube-single-play-singletask-task2-v0."""
    seed: int | tuple[int, ...] = 0
    """Seed of the networks, the batches and the evaluation episodes. Several (`--seed 0 1 2`) train as one stacked
    model in one process, one run folder per seed, each the run that seed alone would make."""
    iterations: int = 1_000_000
    """SORL iterations (the paper's figures use 1M; on a CPU try 50k-100k with the lab size)."""
    dataset_dir: str = DEFAULT_DATASET_DIR
    """Folder of the dataset files (`<name>.npz`, `<name>-val.npz`), official or generated."""
    generate_missing: bool = True
    """Generate a missing dataset here with OGBench's oracles first (about 15 min on 2 cores)."""
    out: str | None = None
    """Run folder (default runs/<env>-<size>-mbtt<M_BTT>-s<seed>); with several seeds, <out>-s<seed> per seed."""
    resume: bool = False
    """Continue the run in `out` from its last checkpoint."""
    log_every: int = 1000
    """Iterations between rows of metrics.csv."""
    eval_every: int = 100_000
    """Iterations between success evaluations at each `eval_m_inf` (rows of eval.csv); 0 disables."""
    eval_m_inf: tuple[int, ...] = EVAL_M_INF
    """Euler step counts evaluated (N = 1)."""
    eval_episodes: int = 50
    """Episodes per evaluated m_inf (seeded: the same initial states every time)."""
    eval_workers: int = 2
    """Processes that step the evaluation environments."""
    checkpoint_every: int = 10_000
    """Iterations between checkpoints (one is always written at the end)."""
    snapshots: tuple[int, ...] = SNAPSHOT_DEFAULT
    """Iterations after which to keep a small inference-only snapshot (bf16 weights, config, iteration count) in
    <run>/snapshots/ (default: doubling from 10,000), plus one at the last iteration; `sorl-lab evaluate RUN/snapshots`
    sweeps them as a training-budget axis. `--snapshots` with no value keeps none."""
    progress: bool = True
    """Show progress bars."""
    agent: SORLConfig = field(default_factory=SORLConfig)
    """Agent hyper-parameters; discount, AGG and q_loss_coef default to the environment's preset."""


def default_env_config(env: str) -> EnvTrainConfig:
    """Defaults for `env`: its preset (docs/ALGORITHM.md §6); paper size on CUDA, lab size on a CPU."""
    preset = preset_for(env)  # ValueError listing the supported environments
    if "-singletask" not in env:
        base = env.removesuffix("-v0")
        raise ValueError(f"{env!r} is goal-conditioned; SORL trains on a singletask version, "
                         f"e.g. {base}-singletask-task{preset.default_task}-v0 (tasks 1-5)")
    size = "paper" if resolve_device("auto").type == "cuda" else "lab"
    agent = SORLConfig(size=size, discount=preset.discount, q_agg=preset.q_agg, q_loss_coef=preset.q_loss_coef)
    return EnvTrainConfig(env=env, agent=agent)


def default_run_dir(cfg: EnvTrainConfig) -> Path:
    name = cfg.env.removesuffix("-v0")
    return Path("runs") / f"{name}-{cfg.agent.size}-mbtt{cfg.agent.m_btt}-s{cfg.seed}"


def load_training_arrays(env: str, dataset_dir: str, generate_missing: bool, progress: bool = True) -> dict[str, np.ndarray]:
    """The singletask training set (OGBench's loader and relabelling), generated first if asked and missing."""
    preset_for(env)
    name = dataset_name_for(env)
    if generate_missing and not all(p.is_file() for p in dataset_paths(name, dataset_dir)):
        dataset_spec(name, dataset_dir)  # datasets that cannot be generated: where their official files go
        print(f"{name} not found in {dataset_dir}: generating it with OGBench's oracles (resumable).")
        generate_dataset(DataGenerateConfig(dataset=name, dataset_dir=dataset_dir, progress=progress))
    env_obj, train, _ = load_dataset_and_env(env, dataset_dir)
    env_obj.close()
    arrays = {k: np.asarray(train[k]) for k in ("observations", "actions", "rewards", "next_observations", "masks")}
    arrays["actions"] = np.clip(arrays["actions"], -ACTION_CLIP, ACTION_CLIP)
    return arrays


def evaluate_success(agent: SORLAgent, envs: EnvBatch, m_values, n: int = 1, seed: int = 0) -> list[dict]:
    """Success, its 95% interval, return and length for each m_inf on the same seeded initial states."""
    seeds = episode_seeds(seed, envs.count)
    rows = []
    for m in m_inf_values(agent.config, m_values):
        summary = run_episodes(agent, envs, m, n, seeds, sample_seed=sample_seed(seed, m, n)).summary()
        rows.append({k: summary[k] for k in EVAL_COLUMNS if k != "step"})
    return rows


def train_env(cfg: EnvTrainConfig, on_progress: Callable[[int, int], None] | None = None,
              folders: dict[int, str] | None = None):
    """Run (or resume) SORL training on an OGBench environment; returns the agent and the run folder.

    Several seeds train as one stacked model on one copy of the data; then it returns lists, in seed order.
    folders: each seed's run folder, instead of <out>-s<seed> (the grid's cells).
    """
    arrays = load_training_arrays(cfg.env, cfg.dataset_dir, cfg.generate_missing, cfg.progress)
    agent_cfg = replace(cfg.agent, obs_dim=arrays["observations"].shape[1], action_dim=arrays["actions"].shape[1])
    envs = EnvBatch(cfg.env, cfg.eval_episodes, workers=cfg.eval_workers) if cfg.eval_every else None
    try:
        opened = []
        for seed, out in seed_folders(cfg.seed, cfg.out, folders):
            one = replace(cfg, seed=seed, out=out)
            opened.append(open_run(
                Path(out) if out else default_run_dir(one), one, arrays, agent_cfg,  # the seeds share the arrays
                same_run=lambda saved: saved.get("env") == cfg.env, what="environment",
                eval_columns=EVAL_COLUMNS, extra={"kind": "ogbench", "env": cfg.env},
                evaluate=lambda agent, seed=seed: evaluate_success(agent, envs, cfg.eval_m_inf, seed=seed)))
        del arrays
        agents = train_seeds(opened, cfg.iterations, cfg.log_every, cfg.eval_every, cfg.checkpoint_every,
                             desc=f"train {cfg.env}", progress=cfg.progress, on_progress=on_progress,
                             snapshots=cfg.snapshots)
    finally:
        if envs is not None:
            envs.close()
    return single_or_lists(agents, [run.run_dir for _, run in opened], cfg.seed)
