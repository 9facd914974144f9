"""Training runs: progress bar, CSV metrics beside the resolved config, atomic checkpoints, resume."""

from __future__ import annotations

import csv
import json
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm.auto import tqdm

from . import toy
from .agent import SORLAgent
from .checkpoint import CheckpointError, load_for_resume, save_checkpoint
from .config import TOY_DEFAULTS, SORLConfig
from .data import OfflineDataset

EVAL_M_INF = (1, 2, 4, 8)


@dataclass
class ToyTrainConfig:
    """Train SORL on a toy 2D world (an offline contextual bandit with a known reward)."""

    world: str = "ring"
    """Toy world: ring, moons, checkerboard or spiral."""
    seed: int = 0
    """Seed of the dataset, the networks and all training noise."""
    iterations: int = 1500
    """SORL iterations (one critic and one actor step each)."""
    dataset_size: int = 10_000
    """Transitions in the generated offline dataset."""
    out: str | None = None
    """Run folder (default runs/<world>-<mode>-s<seed>)."""
    resume: bool = False
    """Continue the run in `out` from its last checkpoint (same result as an uninterrupted run)."""
    log_every: int = 100
    """Iterations between rows of metrics.csv."""
    eval_every: int = 500
    """Iterations between evaluations at m_inf in {1, 2, 4, 8} (rows of eval.csv); 0 disables."""
    checkpoint_every: int = 500
    """Iterations between checkpoints (one is always written at the end)."""
    eval_contexts: int = 256
    """Contexts sampled for each evaluation."""
    progress: bool = True
    """Show a tqdm progress bar."""
    agent: SORLConfig = field(default_factory=lambda: SORLConfig(**TOY_DEFAULTS))
    """Agent hyper-parameters (obs/action sizes are taken from the world)."""


def default_run_dir(cfg: ToyTrainConfig) -> Path:
    return Path("runs") / f"{cfg.world}-{cfg.agent.mode}-s{cfg.seed}"


class CsvLog:
    """Append-only CSV with a fixed header; on resume, rows past the checkpoint are dropped."""

    def __init__(self, path: Path, columns: list[str]):
        self.path, self.columns = path, columns

    def truncate_after(self, step: int) -> None:
        if not self.path.exists():
            return
        with self.path.open(newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["step"]) <= step]
        self._rewrite(rows)

    def reset(self) -> None:
        self._rewrite([])

    def _rewrite(self, rows: list[dict]) -> None:
        with self.path.open("w", newline="") as f:
            writer = csv.DictWriter(f, self.columns)
            writer.writeheader()
            writer.writerows(rows)

    def last(self, column: str, default: float = 0.0) -> float:
        """The value of `column` in the last row (e.g. the wall-clock reached before a resume)."""
        if not self.path.exists():
            return default
        with self.path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        return float(rows[-1][column]) if rows and rows[-1].get(column) not in (None, "") else default

    def append(self, rows: list[dict]) -> None:
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, self.columns).writerows(rows)


def evaluate_toy(agent: SORLAgent, world: toy.ToyWorld, data_actions: np.ndarray, contexts: np.ndarray,
                 m_values=EVAL_M_INF, n_values=(1,), seed: int = 0) -> list[dict]:
    """True reward, support fraction and distance to the data for each (m_inf, n); seeded, no training RNG used."""
    rows = []
    for m in m_values:
        for n in n_values:
            result = agent.sample(contexts, m_inf=m, n=n, generator=seed)
            metrics = toy.action_metrics(world, result.actions.cpu().numpy(), contexts, data_actions)
            rows.append({"m_inf": m, "n": n, **metrics, "network_calls": result.network_calls})
    return rows


def train_toy(cfg: ToyTrainConfig, on_progress: Callable[[int, int], None] | None = None) -> tuple[SORLAgent, Path]:
    """Run (or resume) a toy training run; returns the agent and the run folder."""
    world = toy.make_world(cfg.world)
    run_dir = Path(cfg.out) if cfg.out else default_run_dir(cfg)
    ckpt_path = run_dir / "checkpoint.pt"
    arrays = toy.make_dataset(world, size=cfg.dataset_size, seed=cfg.seed)
    agent_cfg = replace(cfg.agent, obs_dim=world.obs_dim, action_dim=world.action_dim)

    if cfg.resume:
        agent, extra = load_for_resume(ckpt_path, device=agent_cfg.device)
        if extra.get("train_config", {}).get("seed") != cfg.seed or extra.get("train_config", {}).get("world") != cfg.world:
            raise CheckpointError(f"{ckpt_path} belongs to another run (world/seed differ); use a different --out")
        dataset = OfflineDataset(arrays, agent.device, seed=cfg.seed)
        dataset.generator.set_state(extra["dataset_generator"])
    else:
        agent = SORLAgent(agent_cfg, seed=cfg.seed)
        dataset = OfflineDataset(arrays, agent.device, seed=cfg.seed)

    run_dir.mkdir(parents=True, exist_ok=True)
    resolved = {**asdict(cfg), "agent": agent.config.to_dict(), "out": str(run_dir)}
    (run_dir / "config.json").write_text(json.dumps(resolved, indent=2))
    train_log = CsvLog(run_dir / "metrics.csv", TRAIN_COLUMNS)
    eval_log = CsvLog(run_dir / "eval.csv", ["step", "m_inf", "n", "mean_reward", "frac_in_support", "sliced_wasserstein", "reward_gap", "network_calls"])
    for log in (train_log, eval_log):
        log.truncate_after(agent.step) if cfg.resume else log.reset()

    eval_rng = np.random.default_rng(cfg.seed + 10_000)  # evaluation contexts, independent of training noise
    contexts = world.sample_contexts(cfg.eval_contexts, eval_rng)
    data_actions = arrays["actions"]

    def checkpoint() -> None:
        extra = {"train_config": resolved, "dataset_generator": dataset.generator.get_state(), "kind": "toy", "world": cfg.world}
        save_checkpoint(ckpt_path, agent, extra)

    run_loop(agent, dataset, cfg.iterations, cfg.log_every, cfg.eval_every, cfg.checkpoint_every,
             evaluate=lambda: evaluate_toy(agent, world, data_actions, contexts, seed=cfg.seed),
             train_log=train_log, eval_log=eval_log, checkpoint=checkpoint, run_dir=run_dir,
             desc=f"train {cfg.world}", progress=cfg.progress, on_progress=on_progress)
    return agent, run_dir


TRAIN_COLUMNS = ["step", "seconds", "critic_loss", "fm_loss", "sc_loss", "q_loss", "policy_q", "q_mean",
                 "grad_norm_critic_step", "grad_norm_actor_step"]


def run_loop(agent: SORLAgent, dataset: OfflineDataset, iterations: int, log_every: int, eval_every: int,
             checkpoint_every: int, evaluate: Callable[[], list[dict]], train_log: CsvLog, eval_log: CsvLog,
             checkpoint: Callable[[], None], run_dir: Path, desc: str, progress: bool = True,
             on_progress: Callable[[int, int], None] | None = None) -> None:
    """Update until `iterations`, logging, evaluating and checkpointing on schedule; Ctrl-C or SIGTERM saves first."""
    with _interrupts_save():
        _loop(agent, dataset, iterations, log_every, eval_every, checkpoint_every, evaluate, train_log, eval_log,
              checkpoint, run_dir, desc, progress, on_progress)


@contextmanager
def _interrupts_save():
    """SIGTERM (kill, a scheduler's stop) and SIGINT (even when a background shell ignored it) become
    KeyboardInterrupt, so the loop writes a checkpoint before it exits."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread (e.g. not from a Streamlit script thread)
        return

    def stop(signum, frame):
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _loop(agent, dataset, iterations, log_every, eval_every, checkpoint_every, evaluate, train_log, eval_log,
          checkpoint, run_dir, desc, progress, on_progress) -> None:
    bar = tqdm(total=iterations, initial=agent.step, desc=desc, disable=not progress, dynamic_ncols=True)
    t0, pending = time.perf_counter() - train_log.last("seconds"), []  # seconds count on across resumes
    try:
        while agent.step < iterations:
            info = agent.update(dataset.sample(agent.config.batch_size))
            step = agent.step
            if step % log_every == 0 or step == iterations:
                pending.append((step, time.perf_counter() - t0, info))  # tensors; read only when written
            if eval_every and (step % eval_every == 0 or step == iterations):
                eval_log.append([{"step": step, **r} for r in evaluate()])
            if step % checkpoint_every == 0 or step == iterations:
                _flush(train_log, pending)
                checkpoint()
            bar.update(1)
            if on_progress is not None:
                on_progress(step, iterations)
    except KeyboardInterrupt:
        _flush(train_log, pending)
        checkpoint()
        bar.close()
        print(f"\ninterrupted at step {agent.step}; checkpoint saved. Continue with: sorl-lab train ... --out {run_dir} --resume")
        raise
    bar.close()
    _flush(train_log, pending)


def _flush(log: CsvLog, pending: list) -> None:
    """Write the buffered (step, seconds at that step, metrics) rows."""
    rows = [{"step": s, "seconds": round(seconds, 3), **{k: float(v) for k, v in info.items() if k in log.columns}}
            for s, seconds, info in pending]
    log.append(rows)
    pending.clear()


def fit(agent: SORLAgent, dataset: OfflineDataset, iterations: int, progress: bool = True,
        callback: Callable[[int, dict], None] | None = None) -> SORLAgent:
    """Library API (config -> agent -> fit -> sample): run `iterations` updates on a dataset."""
    for _ in tqdm(range(iterations), disable=not progress, desc="fit", dynamic_ncols=True):
        info = agent.update(dataset.sample(agent.config.batch_size))
        if callback is not None:
            callback(agent.step, info)
    return agent

