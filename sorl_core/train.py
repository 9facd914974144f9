"""Training runs: progress bar, CSV metrics beside the resolved config, atomic checkpoints, resume."""

from __future__ import annotations

import csv
import json
import signal
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from . import cpu, toy
from .agent import SORLAgent
from .baselines import m_inf_values, make_agent
from .checkpoint import CheckpointError, load_for_resume, save_checkpoint, snapshot_path
from .config import TOY_DEFAULTS, SORLConfig
from .data import OfflineDataset
from .processes import usable_cores

EVAL_M_INF = (1, 2, 4, 8)


@dataclass
class ToyTrainConfig:
    """Train SORL on a toy 2D world (an offline contextual bandit with a known reward)."""

    world: str = "ring"
    """Toy world: ring, moons, checkerboard or spiral."""
    seed: int | tuple[int, ...] = 0
    """Seed of the dataset, the networks and all training noise. Several (`--seed 0 1 2 3`) train as one stacked
    model in one process, one run folder per seed, each the run that seed alone would make."""
    iterations: int = 1500
    """SORL iterations (one critic and one actor step each)."""
    dataset_size: int = 10_000
    """Transitions in the generated offline dataset."""
    out: str | None = None
    """Run folder (default runs/<world>-<mode>-s<seed>); with several seeds, one folder <out>-s<seed> per seed."""
    resume: bool = False
    """Continue the run in `out` from its last checkpoint (same result as an uninterrupted run)."""
    log_every: int = 100
    """Iterations between rows of metrics.csv."""
    eval_every: int = 500
    """Iterations between evaluations at m_inf in {1, 2, 4, 8} (rows of eval.csv); 0 disables."""
    checkpoint_every: int = 500
    """Iterations between checkpoints (one is always written at the end)."""
    snapshots: tuple[int, ...] = ()
    """Iterations after which to keep a small inference-only snapshot (bf16 weights, config, iteration count) in
    <run>/snapshots/, plus one at the last iteration; `sorl-lab evaluate` reads them as a training-budget axis."""
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
    for m in m_inf_values(agent.config, m_values):
        for n in n_values:
            result = agent.sample(contexts, m_inf=m, n=n, generator=seed)
            metrics = toy.action_metrics(world, result.actions.cpu().numpy(), contexts, data_actions)
            rows.append({"m_inf": m, "n": n, **metrics, "network_calls": result.network_calls})
    return rows


def train_toy(cfg: ToyTrainConfig, on_progress: Callable[[int, int], None] | None = None,
              folders: dict[int, str] | None = None):
    """Run (or resume) a toy training run; returns the agent and the run folder.

    Several seeds train as one stacked model; then it returns a list of agents and a list of folders, in seed order.
    folders: each seed's run folder, instead of <out>-s<seed> (the grid's cells).
    """
    world = toy.make_world(cfg.world)
    opened = []
    for seed, out in seed_folders(cfg.seed, cfg.out, folders):
        one = replace(cfg, seed=seed, out=out)
        arrays = toy.make_dataset(world, size=cfg.dataset_size, seed=seed)
        contexts = world.sample_contexts(cfg.eval_contexts, np.random.default_rng(seed + 10_000))  # apart from training noise
        opened.append(open_run(
            Path(out) if out else default_run_dir(one), one, arrays,
            replace(cfg.agent, obs_dim=world.obs_dim, action_dim=world.action_dim),
            same_run=lambda saved, one=one: saved.get("train_config", {}).get("world") == one.world, what="world",
            eval_columns=TOY_EVAL_COLUMNS, extra={"kind": "toy", "world": cfg.world},
            evaluate=lambda agent, arrays=arrays, contexts=contexts, seed=seed: evaluate_toy(
                agent, world, arrays["actions"], contexts, seed=seed)))
    agents = train_seeds(opened, cfg.iterations, cfg.log_every, cfg.eval_every, cfg.checkpoint_every,
                         desc=f"train {cfg.world}", progress=cfg.progress, on_progress=on_progress, snapshots=cfg.snapshots)
    return single_or_lists(agents, [run.run_dir for _, run in opened], cfg.seed)


TOY_EVAL_COLUMNS = ["step", "m_inf", "n", "mean_reward", "frac_in_support", "sliced_wasserstein", "reward_gap", "network_calls"]


def seed_folders(seed: int | tuple[int, ...], out: str | None,
                 folders: dict[int, str] | None = None) -> list[tuple[int, str | None]]:
    """(seed, run folder or None for the default) for each seed; several seeds share `out` as <out>-s<seed>
    unless `folders` names each one's."""
    seeds = [int(seed)] if isinstance(seed, int) else [int(s) for s in seed]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seed takes one or more different numbers, got {seeds}")
    if folders is not None:
        return [(s, str(folders[s])) for s in seeds]
    if len(seeds) == 1:
        return [(seeds[0], out)]
    return [(s, f"{out}-s{s}" if out else None) for s in seeds]


def single_or_lists(agents: list, run_dirs: list[Path], seed):
    """(agent, run folder) for one seed, (agents, run folders) for several."""
    return (agents[0], run_dirs[0]) if isinstance(seed, int) or len(agents) == 1 else (agents, run_dirs)


@dataclass
class SeedRun:
    """One seed's share of a training: its run folder, batches, logs, evaluation and checkpoint."""

    run_dir: Path
    dataset: OfflineDataset
    train_log: CsvLog
    eval_log: CsvLog
    evaluate: Callable[[SORLAgent], list[dict]]
    checkpoint: Callable[[SORLAgent], None]
    snapshot: Callable[[SORLAgent], None]


def open_run(run_dir: Path, cfg, arrays: dict, agent_config: SORLConfig, same_run: Callable[[dict], bool], what: str,
             eval_columns: list[str], extra: dict, evaluate: Callable[[SORLAgent], list[dict]]) -> tuple[SORLAgent, SeedRun]:
    """A seed's run folder: a new agent, or the one its checkpoint resumes (`cfg.resume`), with the dataset's
    sampler where it stopped; config.json written and the logs cut back to the checkpoint."""
    ckpt_path = run_dir / "checkpoint.pt"
    if cfg.resume:
        # A run keeps its precision, unless auto asks to choose again for this machine (bf16 -> fp32 on AVX2 CPUs).
        agent, saved = load_for_resume(ckpt_path, device=agent_config.device,
                                       precision="auto" if agent_config.precision == "auto" else None)
        was = saved.get("train_config", {}).get("agent", {}).get("precision", agent.config.precision)
        if agent.config.precision != was:
            print(f"{run_dir}: trained in {was} up to iteration {agent.step:,}; it goes on in {agent.config.precision} "
                  "(--agent.precision auto on this machine)")
        if agent.config.method != agent_config.method:
            raise CheckpointError(f"{ckpt_path} was trained with --agent.method {agent.config.method}; resume it with that "
                                  "method, or train the new one in a different --out")
        if saved.get("train_config", {}).get("seed") != cfg.seed or not same_run(saved):
            raise CheckpointError(f"{ckpt_path} belongs to another run ({what} or seed differ); use a different --out")
        agent.seeds = [cfg.seed]  # checkpoints written before the seed was saved in them
        dataset = OfflineDataset(arrays, agent.device, seed=cfg.seed)
        dataset.generator.set_state(saved["dataset_generator"])
    else:
        agent = make_agent(agent_config, seed=cfg.seed)
        dataset = OfflineDataset(arrays, agent.device, seed=cfg.seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    resolved = {**asdict(cfg), "agent": agent.config.to_dict(), "out": str(run_dir)}
    (run_dir / "config.json").write_text(json.dumps(resolved, indent=2))
    train_log, eval_log = CsvLog(run_dir / "metrics.csv", TRAIN_COLUMNS), CsvLog(run_dir / "eval.csv", eval_columns)
    for log in (train_log, eval_log):
        log.truncate_after(agent.step) if cfg.resume else log.reset()

    def checkpoint(trained: SORLAgent) -> None:
        save_checkpoint(ckpt_path, trained, {"train_config": resolved, "dataset_generator": dataset.generator.get_state(), **extra})

    def snapshot(trained: SORLAgent) -> None:
        save_checkpoint(snapshot_path(run_dir, trained.step), trained,
                        {"train_config": resolved, "train_iterations": trained.step, **extra},
                        inference_only=True, dtype=torch.bfloat16)

    return agent, SeedRun(run_dir, dataset, train_log, eval_log, evaluate, checkpoint, snapshot)


def train_seeds(opened: list[tuple[SORLAgent, SeedRun]], iterations: int, log_every: int, eval_every: int,
                checkpoint_every: int, desc: str, progress: bool = True,
                on_progress: Callable[[int, int], None] | None = None, snapshots: tuple[int, ...] = ()) -> list[SORLAgent]:
    """Train the opened seeds to `iterations`, those at one step as one stacked model; returns each seed's agent.

    Seeds resumed from different steps (a stop between two seeds' checkpoints) are brought level first: the ones
    behind train alone until they reach the others, then all go on as one stack. Each seed's run is its own either way.
    """
    first = opened[0][0]
    if first.config.precision == "bf16" and not cpu.bf16_matmul_native(first.device):
        warnings.warn("bf16 training is slow here: this CPU has no native bf16 matrix products (no AVX-512), so it "
                      "runs about 15 times slower than float32; train with --agent.precision auto (bf16 only where it "
                      "is fast), which also switches a resumed run.", RuntimeWarning, stacklevel=2)
    runs = [run for _, run in opened]
    for agent, run in opened:  # resumed where a stop during an evaluation left its snapshot unwritten (older versions)
        if agent.step in snapshot_steps(snapshots, iterations) and not snapshot_path(run.run_dir, agent.step).is_file():
            run.snapshot(agent)
    if not opened[0][0].stackable:  # baselines: one seed after the other
        for agent, run in opened:
            run_loop(agent, [run], iterations, log_every, eval_every, checkpoint_every, desc=_desc(desc, opened, agent),
                     progress=progress, on_progress=on_progress, snapshots=snapshots)
        return [agent for agent, _ in opened]
    agents = [agent for agent, _ in opened]
    # The seeds furthest behind train until they reach the next ones, then on as one stack with them.
    while (low := min(a.step for a in agents)) < iterations:
        group = [i for i, a in enumerate(agents) if a.step == low]
        until = min([a.step for a in agents if a.step > low] + [iterations])
        agent = stack_seeds([agents[i] for i in group])
        try:
            run_loop(agent, [runs[i] for i in group], iterations, log_every, eval_every, checkpoint_every,
                     desc=_desc(desc, opened, agent), progress=progress, on_progress=on_progress,
                     snapshots=snapshots, until=until)
        finally:
            if isinstance(agent, SeedGroups):
                agent.close()
        for p, i in enumerate(group):
            agents[i] = agent.member(p)
    return agents


def _desc(desc: str, opened: list, agent) -> str:
    return desc if len(opened) == 1 else f"{desc} seeds {', '.join(str(s) for s in agent.seeds)}"


def stack_seeds(agents: list[SORLAgent]):
    """Agents of several seeds (at one step) as what trains them fastest here: one stacked model on a GPU;
    on a CPU, one stack per core, each updated by its own thread on one core (`SeedGroups`).

    On a 2-core CPU a 256-wide matmul gains only about 1.5x from its second thread, so two stacks side by side
    beat one stack on both cores (docs/PERFORMANCE.md has the figures).
    """
    if len(agents) == 1:
        return agents[0]
    groups = min(len(agents), usable_cores()) if agents[0].device.type == "cpu" else 1
    if groups == 1:
        return SORLAgent.stack(agents)
    parts = [agents[g::groups] for g in range(groups)]  # seeds dealt round-robin: near-equal stacks
    return SeedGroups([part[0] if len(part) == 1 else SORLAgent.stack(part) for part in parts])


class SeedGroups:
    """Several stacks of seeds updated side by side, each by its own thread with one torch thread: what one
    stacked agent offers the training loop (`update`, `member`, `step`, `seeds`), spread over the cores.

    Seed order is the order given to `stack_seeds`; each stack's update is the stack's own, so every seed
    still follows its single-seed run. torch's thread count is set to one while it trains (process-wide:
    only the training loop, which owns the process, builds this) and put back by `close`.
    """

    stacked = True

    def __init__(self, parts: list[SORLAgent]):
        self.parts = parts
        count = len(parts)
        # Seed p of the whole is seed p // count of part p % count (dealt round-robin by stack_seeds).
        self.where = [(p % count, p // count) for p in range(sum(len(a.seeds) for a in parts))]
        self.rows = [[p for p, (g, _) in enumerate(self.where) if g == part] for part in range(count)]
        self._order = torch.argsort(torch.tensor([p for rows in self.rows for p in rows]))
        self.seeds = [parts[g].seeds[i] for g, i in self.where]
        self.config, self.device = parts[0].config, parts[0].device
        self._threads = torch.get_num_threads()
        torch.set_num_threads(1)
        self._pool = ThreadPoolExecutor(max_workers=count, thread_name_prefix="seed-stack")

    @property
    def step(self) -> int:
        return self.parts[0].step

    def update(self, batch: dict) -> dict[str, torch.Tensor]:
        """One iteration of every stack on its rows of the (seeds, batch, ...) batch; metrics per seed, in seed order."""
        jobs = [self._pool.submit(agent.update, {k: v[rows] if agent.stacked else v[rows[0]] for k, v in batch.items()})
                for agent, rows in zip(self.parts, self.rows)]
        infos = [job.result() for job in jobs]
        return {key: torch.cat([info[key].reshape(-1) for info in infos])[self._order] for key in infos[0]}

    def member(self, p: int) -> SORLAgent:
        g, i = self.where[p]
        return self.parts[g].member(i)

    def close(self) -> None:
        self._pool.shutdown()
        torch.set_num_threads(self._threads)


TRAIN_COLUMNS = ["step", "seconds", "critic_loss", "fm_loss", "sc_loss", "q_loss", "policy_q", "q_mean",
                 "grad_norm_critic_step", "grad_norm_actor_step", "value_loss", "distill_loss"]  # the last two: baselines


def run_loop(agent: SORLAgent, runs: list[SeedRun], iterations: int, log_every: int, eval_every: int,
             checkpoint_every: int, desc: str, progress: bool = True,
             on_progress: Callable[[int, int], None] | None = None, snapshots: tuple[int, ...] = (),
             until: int | None = None) -> None:
    """Update until `iterations` (or stop early at `until`, a seed catching up), logging, evaluating, checkpointing and
    snapshotting each seed's run on its `iterations` schedule; Ctrl-C or SIGTERM saves first. `agent` is one seed's
    agent with one run, or a stack of len(runs) seeds."""
    with _interrupts_save() as stop:
        _loop(agent, runs, iterations, min(until or iterations, iterations), log_every, eval_every, checkpoint_every,
              desc, progress, on_progress, stop, snapshot_steps(snapshots, iterations))


def snapshot_steps(snapshots: tuple[int, ...], iterations: int) -> set[int]:
    """The iterations a run keeps snapshots after: those asked for within the run, and its last one."""
    return {s for s in snapshots if 0 < s <= iterations} | ({iterations} if snapshots else set())


@dataclass
class _StopRequest:
    """What SIGTERM and SIGINT have asked of the training loop, and whether it is inside an update."""

    asked: bool = False
    updating: bool = False


@contextmanager
def _interrupts_save():
    """SIGTERM (kill, a scheduler's stop) and SIGINT (even when a background shell ignored it) ask the loop to
    stop: it finishes the iteration it is in, writes a checkpoint and exits with KeyboardInterrupt. An update
    is never cut in half, so the checkpoint resumes exactly. A second signal stops at once (e.g. during a long
    evaluation), except inside an update, which it lets finish: GNU `timeout` signals twice (the command, then its
    process group), and a second signal that cut an update short left seeds trained on separate threads an
    iteration apart, or one seed half-updated. The checkpoint then holds the last finished iteration too."""
    stop = _StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop  # signal handlers can only be set from the main thread (e.g. not from a Streamlit script thread)
        return

    def handler(signum, frame):
        if stop.asked and not stop.updating:
            raise KeyboardInterrupt
        stop.asked = True

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _loop(agent, runs, iterations, until, log_every, eval_every, checkpoint_every, desc, progress, on_progress, stop,
          snapshots) -> None:
    bar = tqdm(total=iterations, initial=agent.step, desc=desc, disable=not progress, dynamic_ncols=True)
    # Seconds count on across resumes; a stack's seeds share one clock (the process trained them together).
    t0, pending = time.perf_counter() - runs[0].train_log.last("seconds"), [[] for _ in runs]
    batch_size = agent.config.batch_size
    taken: dict[int, list[SORLAgent]] = {}

    def members() -> list[SORLAgent]:
        """Each seed's agent at this step, copied out of a stack once for evaluation, snapshot and checkpoint alike."""
        if agent.step not in taken:
            taken.clear()
            taken[agent.step] = [agent.member(p) for p in range(len(agent.seeds))]
        return taken[agent.step]

    def save_all() -> None:
        for run, rows, member in zip(runs, pending, members()):
            _flush(run.train_log, rows)
            run.checkpoint(member)

    try:
        while agent.step < until:
            stop.updating = True  # sampling the batch too: the sampler's state is saved with the checkpoint
            if agent.stacked:
                batches = [run.dataset.sample(batch_size) for run in runs]
                info = agent.update({key: torch.stack([b[key] for b in batches]) for key in batches[0]})
            else:
                info = agent.update(runs[0].dataset.sample(batch_size))
            stop.updating = False
            step = agent.step
            if step % log_every == 0 or step == iterations:
                seconds = time.perf_counter() - t0
                for p, rows in enumerate(pending):  # tensors; read only when written
                    rows.append((step, seconds, {k: v[p] for k, v in info.items()} if agent.stacked else info))
            if step in snapshots:  # before the evaluation: a stop during it must not lose the snapshot
                for run, member in zip(runs, members()):
                    run.snapshot(member)
            if eval_every and (step % eval_every == 0 or step == iterations):
                for run, member in zip(runs, members()):
                    run.eval_log.append([{"step": step, **r} for r in run.evaluate(member)])
            if step % checkpoint_every == 0 or step == iterations:
                save_all()
            bar.update(1)
            if on_progress is not None:
                on_progress(step, iterations)
            if stop.asked:
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        save_all()
        bar.close()
        folders = " ".join(str(run.run_dir) for run in runs)
        print(f"\ninterrupted at step {agent.step}; checkpoint saved in {folders}. "
              "Continue with the same command and --resume")
        raise
    bar.close()
    for run, rows in zip(runs, pending):
        _flush(run.train_log, rows)


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

