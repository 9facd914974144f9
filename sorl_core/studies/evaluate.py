"""The test-time-scaling sweep: success over an M_inf x N grid, a CSV and a self-contained HTML report."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from tqdm.auto import tqdm

from .. import budgets
from ..checkpoint import SNAPSHOTS, CheckpointError, checkpoint_label, load_agent, read_checkpoint, snapshot_path
from ..io import write_atomic
from ..ogbench.rollouts import EnvBatch, episode_seeds, run_episodes, sample_seed, success_timing_of
from .sweep_report import sweep_html
from .sweep_schema import SWEEP_COLUMNS
from ..verifiers import DEFAULT_BETA, check_verifier


@dataclass
class EvaluateConfig:
    """Run the test-time-scaling grid of a checkpoint in its OGBench environment."""

    checkpoint: str | tuple[str, ...]
    """Checkpoint written by `sorl-lab train --env ...` (or a bundled one under assets/ogbench/); several, or a run's
    folder (its snapshots, and its checkpoint if it went further) or its snapshots folder: one sweep with a
    `train_iterations` column."""
    m_inf: tuple[int, ...] = (1, 2, 4, 8)
    """Euler step counts (powers of two; above the trained M_disc needs --extrapolate)."""
    n: tuple[int, ...] = (1, 4, 16)
    """Best-of-N candidate counts."""
    verifier: tuple[str, ...] = ("q",)
    """How best-of-N ranks its candidates: q (the paper's learned Q), q-min, q-lcb, q-kbtt, target-q, consensus."""
    beta: float = DEFAULT_BETA
    """The q-lcb verifier's penalty on the critics' disagreement (mean - beta * |q1 - q2|)."""
    episodes: int = 50
    """Episodes per cell; episode i starts from the same seeded state in every cell."""
    seed: int = 0
    """Seed of the initial states and the sampling noise."""
    workers: int = 2
    """Processes stepping the environments (the policy runs batched in the main process)."""
    out: str | None = None
    """Output folder for sweep.csv and sweep.html (default: beside the checkpoint)."""
    extrapolate: bool = False
    """Allow m_inf above the trained M_disc (an extrapolation experiment)."""
    adaptive: tuple[str, ...] = ()
    """Adaptive-compute rules to run beside the grid, one row each: seq:eps=0.05 (double M from 1 while the actions
    at M and 2M differ by more than eps), par:delta=1.0[,m=8][,nmax=64] (rounds of 4 candidates until the
    verifier's top-vs-runner-up margin exceeds delta score standard deviations); calls are then means per action."""
    success_timing: Literal["default", "pre", "post"] = "default"
    """When the environment judges success and reward: `pre` (before the action: OGBench 1.2's singletask
    environments), `post` (after it: OGBench 1.1, which the paper's code was written against), or the
    environment's default. The sweep records which one ran (column `success_timing`)."""
    device: str = "auto"
    """Where the policy runs: auto, cpu or cuda."""
    progress: bool = True
    """Show a progress bar over episodes."""


def checkpoints_of(checkpoint: str | tuple[str, ...]) -> list[str]:
    """The checkpoint files to evaluate: files as given; a snapshots folder -> its snapshots in training order; a run
    folder -> its snapshots, then its checkpoint when no snapshot was taken at its step."""
    paths = []
    for given in [checkpoint] if isinstance(checkpoint, str) else list(checkpoint):
        folder = Path(given)
        if not folder.is_dir():
            paths.append(given)
            continue
        snapshots = folder if folder.name == SNAPSHOTS else folder / SNAPSHOTS
        found = sorted(str(p) for p in snapshots.glob("iteration-*.pt"))
        last = folder / "checkpoint.pt"
        if folder.name != SNAPSHOTS and last.is_file() and not (snapshots and snapshot_path(folder, read_checkpoint(
                last)["agent"]["step"]).is_file()):  # the run went on after its last snapshot
            found.append(str(last))
        if not found:
            raise CheckpointError(f"{given} is a folder with no checkpoint.pt and no snapshots/iteration-*.pt; "
                                  "name a checkpoint file, a run folder or its snapshots folder")
        paths += found
    return paths


def run_sweep(cfg: EvaluateConfig, on_progress: Callable[[int, int], None] | None = None) -> list[dict]:
    """One row per (m_inf, n) and checkpoint, in SWEEP_COLUMNS order; every cell faces the same initial states."""
    opened: dict[str, tuple[EnvBatch, str]] = {}  # environment -> its workers and success timing, shared by checkpoints
    try:
        return [row for path in checkpoints_of(cfg.checkpoint)
                for row in _sweep_checkpoint(replace(cfg, checkpoint=path), on_progress, opened)]
    finally:
        for envs, _ in opened.values():
            envs.close()


def _sweep_checkpoint(cfg: EvaluateConfig, on_progress, opened: dict) -> list[dict]:
    """The rows of one checkpoint file; its environment's workers are started once for every checkpoint of the sweep."""
    agent, extra = load_agent(cfg.checkpoint, device=cfg.device)
    env_name = extra.get("env")
    if not env_name:
        raise CheckpointError(f"{cfg.checkpoint} is not an OGBench checkpoint (a toy world policy?); "
                              "evaluate needs one trained with `sorl-lab train --env ...`")
    for m in cfg.m_inf:  # fail before any episode runs
        agent.check_m_inf(m, cfg.extrapolate)
    if min(cfg.n) < 1:
        raise ValueError(f"n must be >= 1, got {min(cfg.n)}")
    for v in cfg.verifier:
        if (reason := check_verifier(v, cfg.beta).unavailable(agent.has_target_critic)) is not None:
            raise CheckpointError(f"{cfg.checkpoint}: {reason}")
    rules = budgets.check_rules(agent, cfg.adaptive, cfg.extrapolate)
    label, seeds = checkpoint_label(cfg.checkpoint), episode_seeds(cfg.seed, cfg.episodes)
    train_seed = extra.get("train_config", {}).get("seed", "")  # empty for files that do not record it
    # A snapshot says how far it was trained; a full checkpoint knows its step (an inference-only export may not).
    train_iterations = extra.get("train_iterations", agent.step if agent.step else "")
    env_kwargs = {} if cfg.success_timing == "default" else {"success_timing": cfg.success_timing}
    # At N = 1 nothing is ranked: every verifier plays the same episodes, so they run once and share the row.
    cells = [(m, n, v) for m in cfg.m_inf for n in cfg.n for v in (cfg.verifier if n > 1 else cfg.verifier[:1])]
    # A sequential rule ranks nothing either: it runs once and its row is shared by every verifier.
    cells += [(rule, None, v) for rule in rules for v in (cfg.verifier if rule.ranks else cfg.verifier[:1])]
    total = len(cells) * cfg.episodes
    bar = tqdm(total=total, desc=f"evaluate {label}", unit="ep", disable=not cfg.progress, dynamic_ncols=True)
    rows = []
    if env_name not in opened:
        opened[env_name] = (EnvBatch(env_name, cfg.episodes, workers=cfg.workers, **env_kwargs),
                            success_timing_of(env_name, **env_kwargs))
    envs, timing = opened[env_name]
    for i, (m, n, verifier) in enumerate(cells):
        def step_progress(done: int, count: int, base: int = i * cfg.episodes) -> None:
            bar.n = base + done
            bar.refresh()
            if on_progress is not None:
                on_progress(base + done, total)

        if isinstance(m, budgets.Rule):
            rows += _adaptive_rows(cfg, agent, envs, m, verifier, seeds, step_progress,
                                   {"checkpoint": label, "env": env_name, "m_btt": agent.config.m_btt,
                                    "train_seed": train_seed, "train_iterations": train_iterations,
                                    "success_timing": timing, "method": agent.config.method})
            continue
        result = run_episodes(agent, envs, m, n, seeds, sample_seed=sample_seed(cfg.seed, m, n),
                              extrapolate=cfg.extrapolate, on_step=step_progress, verifier=verifier, beta=cfg.beta)
        row = {"checkpoint": label, "env": env_name, "m_btt": agent.config.m_btt, **result.summary(), "seed": cfg.seed,
               "adaptive": "", "train_seed": train_seed, "train_iterations": train_iterations, "success_timing": timing,
               "method": agent.config.method}
        for v in (cfg.verifier if n == 1 else (verifier,)):
            rows.append({**row, "verifier": v})
    bar.close()
    return [{k: row[k] for k in SWEEP_COLUMNS} for row in rows]


def _adaptive_rows(cfg: EvaluateConfig, agent, envs, rule, verifier: str, seeds, on_step, head: dict) -> list[dict]:
    """The row(s) of one adaptive rule: m_inf and n are its caps, the calls the mean per action (4 decimals)."""
    m_cap, n_cap = rule.caps(agent)
    result = run_episodes(agent, envs, m_cap, n_cap, seeds,
                          sample_seed=sample_seed(cfg.seed, m_cap, n_cap) + rule.seed_offset(),
                          extrapolate=cfg.extrapolate, on_step=on_step, verifier=verifier, beta=cfg.beta,
                          budget=rule)
    row = {**head, **result.summary(), "seed": cfg.seed, "adaptive": rule.label}
    for key in ("actor_calls", "critic_calls", "network_calls"):
        row[key] = round(float(row[key]), 4)
    return [{**row, "verifier": v} for v in ((verifier,) if rule.ranks else cfg.verifier)]


def sweep_csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, SWEEP_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def evaluate(cfg: EvaluateConfig) -> tuple[Path, Path]:
    """Run the sweep and write sweep.csv and sweep.html; returns their paths."""
    rows = run_sweep(cfg)
    first = Path(checkpoints_of(cfg.checkpoint)[0])
    out = Path(cfg.out) if cfg.out else (first.parent.parent if first.parent.name == SNAPSHOTS else first.parent)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, html_path = out / "sweep.csv", out / "sweep.html"
    write_atomic(csv_path, sweep_csv(rows))
    write_atomic(html_path, sweep_html(sweep_csv(rows)))
    return csv_path, html_path
