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
from .sweep_schema import COLUMN_DEFAULTS, SWEEP_COLUMNS
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
    resume: bool = False
    """Keep the cells an interrupted sweep already wrote to the output folder's sweep.csv (same checkpoint, training
    iterations, settings, episodes, seed and success timing) and run only the rest; its cells at settings outside
    this grid stay in the file too. sweep.csv is rewritten after every cell, so an interrupted sweep loses at most the cell in
    progress."""


# What makes two rows the same measurement: a resumed sweep reuses a previous row only when all of these agree.
CELL_KEY = ("checkpoint", "train_iterations", "method", "m_inf", "n", "verifier", "adaptive", "episodes", "seed",
            "success_timing")


def cell_key(row: dict) -> tuple[str, ...]:
    return tuple(str(row[c]) for c in CELL_KEY)


def with_earlier(rows: list[dict], earlier: list[dict]) -> list[dict]:
    """`rows`, then the `earlier` rows at settings (`setting_key`) that `rows` do not measure."""
    measured = {setting_key(r) for r in rows}
    return rows + [r for r in earlier if setting_key(r) not in measured]


def setting_key(row: dict) -> tuple[str, ...]:
    """The policy and test-time setting of a row, whatever the episodes, seed and success timing it was measured with."""
    return tuple(str(row.get(c, "")) for c in CELL_KEY if c not in ("episodes", "seed", "success_timing"))


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during a sweep, after `rows` measured rows were written to `path`."""

    def __init__(self, path: Path, rows: int):
        super().__init__(f"interrupted; the {rows} rows measured so far are in {path}: run the same command with "
                         "--resume to measure only the rest")
        self.path, self.rows = path, rows


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


def run_sweep(cfg: EvaluateConfig, on_progress: Callable[[int, int], None] | None = None,
              previous: list[dict] | None = None, on_cell: Callable[[list[dict]], None] | None = None) -> list[dict]:
    """One row per (m_inf, n) and checkpoint, in SWEEP_COLUMNS order; every cell faces the same initial states.

    `previous`: rows of an earlier sweep (as read from its CSV) whose cells are reused instead of run again (see
    CELL_KEY); `on_cell(rows so far)` is called after every cell, reused or measured."""
    opened: dict[str, tuple[EnvBatch, str]] = {}  # environment -> its workers and success timing, shared by checkpoints
    kept = {cell_key(row): row for row in previous or ()}
    rows: list[dict] = []
    try:
        for path in checkpoints_of(cfg.checkpoint):
            _sweep_checkpoint(replace(cfg, checkpoint=path), on_progress, opened, kept, rows, on_cell)
        return rows
    finally:
        for envs, _ in opened.values():
            envs.close()


def _sweep_checkpoint(cfg: EvaluateConfig, on_progress, opened: dict, kept: dict, rows: list[dict],
                      on_cell: Callable[[list[dict]], None] | None) -> None:
    """Appends the rows of one checkpoint file to `rows`; its environment's workers are started once for every
    checkpoint of the sweep, and only when a cell is not in `kept`."""
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
    head = {"checkpoint": label, "env": env_name, "m_btt": agent.config.m_btt, "train_seed": train_seed,
            "train_iterations": train_iterations, "method": agent.config.method, "episodes": cfg.episodes,
            "seed": cfg.seed}
    # Known without starting the workers when cells may be reused (a probe environment is built and closed).
    timing = opened[env_name][1] if env_name in opened else success_timing_of(env_name, **env_kwargs) if kept else ""
    bar = None
    for i, (m, n, verifier) in enumerate(cells):
        caps = m.caps(agent) if isinstance(m, budgets.Rule) else (m, n)
        adaptive = m.label if isinstance(m, budgets.Rule) else ""
        shared = cfg.verifier if (n == 1 or (adaptive and not m.ranks)) else (verifier,)  # verifiers sharing the run
        wanted = [cell_key({**head, "m_inf": caps[0], "n": caps[1], "verifier": v, "adaptive": adaptive,
                            "success_timing": timing}) for v in shared]
        if kept and all(k in kept for k in wanted):
            rows += [{c: kept[k][c] for c in SWEEP_COLUMNS} for k in wanted]
            if on_cell is not None:
                on_cell(rows)
            continue
        if env_name not in opened:
            opened[env_name] = (EnvBatch(env_name, cfg.episodes, workers=cfg.workers, **env_kwargs),
                                success_timing_of(env_name, **env_kwargs))
        envs, timing = opened[env_name]
        if bar is None:
            bar = tqdm(total=total, desc=f"evaluate {label}", unit="ep", disable=not cfg.progress, dynamic_ncols=True)

        def step_progress(done: int, count: int, base: int = i * cfg.episodes) -> None:
            bar.n = base + done
            bar.refresh()
            if on_progress is not None:
                on_progress(base + done, total)

        if adaptive:
            new = _adaptive_rows(cfg, agent, envs, m, verifier, seeds, step_progress,
                                 {**head, "success_timing": timing})
        else:
            result = run_episodes(agent, envs, m, n, seeds, sample_seed=sample_seed(cfg.seed, m, n),
                                  extrapolate=cfg.extrapolate, on_step=step_progress, verifier=verifier, beta=cfg.beta)
            row = {**head, **result.summary(), "seed": cfg.seed, "adaptive": "", "success_timing": timing}
            new = [{**row, "verifier": v} for v in shared]
        rows += [{k: row[k] for k in SWEEP_COLUMNS} for row in new]
        if on_cell is not None:
            on_cell(rows)
    if bar is not None:
        bar.close()


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
    """Run the sweep and write sweep.csv (after every cell) and sweep.html; returns their paths."""
    first = Path(checkpoints_of(cfg.checkpoint)[0])
    out = Path(cfg.out) if cfg.out else (first.parent.parent if first.parent.name == SNAPSHOTS else first.parent)
    csv_path, html_path = out / "sweep.csv", out / "sweep.html"
    previous = read_sweep_rows(csv_path) if cfg.resume and csv_path.is_file() else []
    written = [0]

    def save(rows: list[dict]) -> None:  # the folder appears with the first measured cell: bad input writes nothing
        # The earlier sweep's cells at settings this run has not reached (or does not ask for) stay: an interrupted
        # resume loses only the cell in progress, never what the file held; a setting measured anew replaces its row.
        rows = with_earlier(rows, previous)
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(csv_path, sweep_csv(rows))
        written[0] = len(rows)

    try:
        rows = run_sweep(cfg, previous=previous, on_cell=save)
    except KeyboardInterrupt as exc:
        raise SweepInterrupted(csv_path, written[0]) from exc
    save(rows)
    write_atomic(html_path, sweep_html(sweep_csv(rows)))
    return csv_path, html_path


def read_sweep_rows(path: Path) -> list[dict]:
    """The rows of a sweep CSV as strings, columns missing from older files filled with their defaults."""
    with open(path, newline="") as f:
        return [{c: row.get(c) or COLUMN_DEFAULTS.get(c, "") for c in SWEEP_COLUMNS} for row in csv.DictReader(f)]
