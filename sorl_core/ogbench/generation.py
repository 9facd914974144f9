"""Regenerating OGBench datasets offline with OGBench's scripted oracles (names, recipes and loading are
sorl_core/ogbench/datasets.py).

OGBench's own data-generation scripts (`data_gen_scripts/generate_manipspace.py` and
`generate_locomaze.py` in the OGBench repository, run with the arguments of its `commands.sh`) are
not part of the pip package. This module re-implements their procedure on top of the oracles and
environments that the package does ship, with three additions the scripts lack:

* everything is seeded from one integer, per episode (`SeedSequence(seed, spawn_key=(split, episode))`),
  so a dataset does not depend on the number of worker processes or on resuming;
* episodes are produced by worker processes in chunks that are written atomically to a partial folder,
  so an interrupted run resumes where it stopped;
* the final files are streamed into the `.npz` one array at a time (the same format as
  `np.savez_compressed`), so the largest datasets never sit in memory twice.

The output is the official file format: `<dataset_dir>/<name>.npz` and `<name>-val.npz` with
`observations` (float32), `actions` (float32, in [-1, 1]), `terminals` (bool, 1 on the last row of each
episode), `qpos`, `qvel` (float32, the simulator state of the same row's observation) and, for scene
and puzzle, `button_states` (int64). `ogbench.make_env_and_datasets` reads them without a network, and
official files downloaded by the user are read the same way.

The official files were generated unseeded with MuJoCo 3.x: ours follow the same recipe (same
distribution), not the same bits.
"""

from __future__ import annotations

import json
import multiprocessing
import queue as queue_module
import shutil
import time
import warnings
import zipfile
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from tyro.conf import Positional

from ..io import atomic_path, write_atomic
from .datasets import DEFAULT_DATASET_DIR, DatasetSpec, dataset_paths, dataset_spec, validation_episodes
# --------------------------------------------------------------------------------------------------
# Configuration (the `sorl-lab data generate` subcommand)
# --------------------------------------------------------------------------------------------------


@dataclass
class DataGenerateConfig:
    """Generate an OGBench dataset offline with OGBench's scripted oracles (the official recipe)."""

    dataset: Positional[str] = "cube-single-play-v0"
    """Dataset name, e.g. cube-single-play-v0, scene-play-v0, puzzle-3x3-noisy-v0, pointmaze-medium-navigate-v0."""
    episodes: int | None = None
    """Training episodes; None: the official size (1000 for cube-single/double, scene, puzzle-3x3/4x4 and
    pointmaze navigate; 3000 cube-triple, puzzle-4x5; 5000 cube-quadruple, puzzle-4x6, pointmaze stitch;
    500 pointmaze-giant navigate)."""
    dataset_dir: str = DEFAULT_DATASET_DIR
    """Folder of `<name>.npz` and `<name>-val.npz` (OGBench's usual place by default)."""
    seed: int = 0
    """Seed of everything; each episode gets its own stream, so the files do not depend on `workers`."""
    workers: int = 2
    """Worker processes (1: generate in this process)."""
    resume: bool = True
    """Reuse finished chunks of an interrupted run (`--no-resume` discards them)."""
    progress: bool = True
    """Show a progress bar over episodes."""
    val: bool = True
    """Also write `<name>-val.npz`: a tenth as many episodes (at least one) from a separate seed stream."""
    force: bool = False
    """Regenerate even if the output files already exist (they are replaced atomically at the end)."""
    chunk_episodes: int = 10
    """Episodes per resumable chunk (written to `<dataset_dir>/.partial-<name>-s<seed>/`)."""
    episode_length: int | None = None
    """Rows per episode; None: the official length (1001; 2001 pointmaze-giant navigate; 201 stitch).
    Other values are for quick tests only: such files are not the official recipe."""


@dataclass
class GenerateResult:
    """What `generate_dataset` did."""

    paths: list[str] = field(default_factory=list)
    """Files of the dataset (written now or already present)."""
    skipped: bool = False
    """True when every requested file existed already and nothing was generated."""
    env_steps: int = 0
    """Environment steps simulated now (rows written plus redone unhealthy scene episodes)."""
    episodes: int = 0
    """Episodes generated now (chunks reused from an interrupted run not counted)."""
    redone: int = 0
    """Scene episodes discarded by the health check and redone."""
    seconds: float = 0.0
    """Wall time of generation and writing."""


# --------------------------------------------------------------------------------------------------
# One episode (runs in workers)
# --------------------------------------------------------------------------------------------------

_SPLITS = {"train": 0, "val": 1}


def _episode_seeds(seed: int, split: str, episode: int) -> tuple[int, np.ndarray, np.random.Generator]:
    """Environment seed, global NumPy seed (the oracles draw from np.random) and our own generator."""
    ss = np.random.SeedSequence(seed, spawn_key=(_SPLITS[split], episode))
    env_ss, np_ss, rng_ss = ss.spawn(3)
    return int(env_ss.generate_state(1)[0]), np_ss.generate_state(4), np.random.default_rng(rng_ss)


class _Collector:
    """An environment plus oracles for one dataset, producing seeded episodes."""

    def __init__(self, spec: DatasetSpec, episode_length: int):
        self.spec = spec
        self.length = episode_length
        # Quiet: glfw's "DISPLAY missing" (nothing is rendered) and gymnasium's float32-casting notes.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            self._make_env()

    def _make_env(self):
        import gymnasium

        import ogbench  # noqa: F401  (registers the environments)

        spec, episode_length = self.spec, self.length
        if spec.family == "pointmaze":
            self.env = gymnasium.make(spec.env_id, terminate_at_goal=False, max_episode_steps=episode_length)
            self._init_maze_cells()
        else:
            self.env = gymnasium.make(
                spec.env_id, terminate_at_goal=False, mode="data_collection", max_episode_steps=episode_length
            )
            self.agents = self._make_oracles()
            self.has_buttons = hasattr(self.env.unwrapped, "_cur_button_states")

    # ---- manipulation (generate_manipspace.py) ----

    def _make_oracles(self):
        from ogbench.manipspace.oracles.markov.button_markov import ButtonMarkovOracle
        from ogbench.manipspace.oracles.markov.cube_markov import CubeMarkovOracle
        from ogbench.manipspace.oracles.markov.drawer_markov import DrawerMarkovOracle
        from ogbench.manipspace.oracles.markov.window_markov import WindowMarkovOracle
        from ogbench.manipspace.oracles.plan.button_plan import ButtonPlanOracle
        from ogbench.manipspace.oracles.plan.cube_plan import CubePlanOracle
        from ogbench.manipspace.oracles.plan.drawer_plan import DrawerPlanOracle
        from ogbench.manipspace.oracles.plan.window_plan import WindowPlanOracle

        env, family = self.env, self.spec.family
        if self.spec.kind == "play":  # non-Markovian plan oracle, temporally correlated noise inside the plan
            plan = dict(noise=self.spec.noise, noise_smoothing=0.5)
            if family == "cube":
                return {"cube": CubePlanOracle(env=env, **plan)}
            if family == "scene":
                return {
                    "cube": CubePlanOracle(env=env, **plan),
                    "button": ButtonPlanOracle(env=env, **plan),
                    "drawer": DrawerPlanOracle(env=env, **plan),
                    "window": WindowPlanOracle(env=env, **plan),
                }
            return {"button": ButtonPlanOracle(env=env, gripper_always_closed=True, **plan)}
        min_norm = 0.4  # Markov oracle; noise is added per step below
        if family == "cube":
            return {"cube": CubeMarkovOracle(env=env, min_norm=min_norm)}
        if family == "scene":
            return {
                "cube": CubeMarkovOracle(env=env, min_norm=min_norm, max_step=100),
                "button": ButtonMarkovOracle(env=env, min_norm=min_norm),
                "drawer": DrawerMarkovOracle(env=env, min_norm=min_norm),
                "window": WindowMarkovOracle(env=env, min_norm=min_norm),
            }
        return {"button": ButtonMarkovOracle(env=env, min_norm=min_norm, gripper_always_closed=True)}

    def _p_stack(self, rng: np.random.Generator) -> float:
        name = self.spec.name
        if "-single-" in name:
            return 0.0
        if "-double-" in name:
            return rng.uniform(0.0, 0.25)
        if "-triple-" in name:
            return rng.uniform(0.05, 0.35)
        if "-quadruple-" in name:
            return rng.uniform(0.1, 0.5)
        return 0.5  # scene (puzzle ignores it)

    def _manip_try(self, rng: np.random.Generator, env_seed: int | None) -> dict[str, list]:
        env, spec = self.env, self.spec
        ob, info = env.reset(seed=env_seed)
        p_stack = self._p_stack(rng)
        noisy = spec.kind == "noisy"
        xi = rng.uniform(0.0, spec.noise) if noisy else 0.0
        noise_std = np.array([xi, xi, xi, 3 * xi, 10 * xi])
        agent = self.agents[info["privileged/target_task"]]
        agent.reset(ob, info)
        rows: dict[str, list] = {k: [] for k in ("observations", "actions", "terminals", "qpos", "qvel")}
        if self.has_buttons:
            rows["button_states"] = []
        done = False
        while not done:
            if spec.p_random_action > 0 and rng.random() < spec.p_random_action:
                action = rng.uniform(-1.0, 1.0, size=5)  # env.action_space.sample() is not seedable here
            else:
                action = np.array(agent.select_action(ob, info), dtype=np.float64)
                if noisy:
                    action = action + rng.normal(0.0, noise_std)
            action = np.clip(action, -1.0, 1.0)
            next_ob, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
            if agent.done:  # the oracle finished its subtask: a new random target, maybe a new oracle
                agent_ob, agent_info = env.unwrapped.set_new_target(p_stack=p_stack)
                agent = self.agents[agent_info["privileged/target_task"]]
                agent.reset(agent_ob, agent_info)
            rows["observations"].append(ob)
            rows["actions"].append(action)
            rows["terminals"].append(done)
            rows["qpos"].append(info["prev_qpos"])
            rows["qvel"].append(info["prev_qvel"])
            if self.has_buttons:
                rows["button_states"].append(info["prev_button_states"])
            ob = next_ob
        return rows

    @staticmethod
    def _scene_healthy(qpos: np.ndarray) -> bool:
        """The script's health check: the cube stays in view unless it is in the drawer."""
        xyz = qpos[:, 14:17]
        if (xyz[:, 1] >= 0.29).any():
            return False
        return not ((xyz[:, 1] <= -0.3) & ((xyz[:, 2] < 0.06) | (xyz[:, 2] > 0.08))).any()

    # ---- point maze (generate_locomaze.py with the point "expert") ----

    def _init_maze_cells(self):
        maze = self.env.unwrapped.maze_map
        self.maze_map = maze
        self.all_cells, self.vertex_cells = [], []
        for i in range(maze.shape[0]):
            for j in range(maze.shape[1]):
                if maze[i, j] != 0:
                    continue
                self.all_cells.append((i, j))
                vertical_hall = maze[i - 1, j] == 0 and maze[i + 1, j] == 0 and maze[i, j - 1] == 1 and maze[i, j + 1] == 1
                horizontal_hall = maze[i, j - 1] == 0 and maze[i, j + 1] == 0 and maze[i - 1, j] == 1 and maze[i + 1, j] == 1
                if not (vertical_hall or horizontal_hall):
                    self.vertex_cells.append((i, j))

    def _cells_at_distance(self, start: tuple[int, int], steps: int) -> list[tuple[int, int]]:
        maze = self.maze_map
        dist = np.full(maze.shape, -1, dtype=np.int64)
        dist[start] = 0
        frontier, found = [start], []
        while frontier:
            i, j = frontier.pop(0)
            for di, dj in ((-1, 0), (0, -1), (1, 0), (0, 1)):
                ni, nj = i + di, j + dj
                if 0 <= ni < maze.shape[0] and 0 <= nj < maze.shape[1] and maze[ni, nj] == 0 and dist[ni, nj] == -1:
                    dist[ni, nj] = dist[i, j] + 1
                    frontier.append((ni, nj))
                    if dist[ni, nj] == steps:
                        found.append((ni, nj))
        return found

    def _maze_episode(self, rng: np.random.Generator, env_seed: int) -> dict[str, list]:
        env, u, spec = self.env, self.env.unwrapped, self.spec
        init_ij = self.all_cells[rng.integers(len(self.all_cells))]
        if spec.kind == "navigate":
            goal_ij = self.vertex_cells[rng.integers(len(self.vertex_cells))]
        else:  # stitch: a goal 4 cells away
            near = self._cells_at_distance(init_ij, 4)
            goal_ij = near[rng.integers(len(near))] if near else init_ij
        env.action_space.seed(env_seed)  # the reset's few stabilising random steps
        ob, _ = env.reset(seed=env_seed, options=dict(task_info=dict(init_ij=init_ij, goal_ij=goal_ij)))
        rows: dict[str, list] = {k: [] for k in ("observations", "actions", "terminals", "qpos", "qvel")}
        done = False
        while not done:
            xy = u.get_xy()
            subgoal_xy, _ = u.get_oracle_subgoal(xy, u.cur_goal_xy)
            direction = subgoal_xy - xy
            direction = direction / (np.linalg.norm(direction) + 1e-6)
            action = np.clip(direction + rng.normal(0.0, spec.noise, size=2), -1.0, 1.0)
            next_ob, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
            if info["success"] and spec.kind == "navigate":  # reached: a new goal, same episode
                u.set_goal(self.vertex_cells[rng.integers(len(self.vertex_cells))])
            rows["observations"].append(ob)
            rows["actions"].append(action)
            rows["terminals"].append(done)
            rows["qpos"].append(info["prev_qpos"])
            rows["qvel"].append(info["prev_qvel"])
            ob = next_ob
        return rows

    # ---- both ----

    def episode(self, seed: int, split: str, index: int) -> tuple[dict[str, np.ndarray], int, int]:
        """One seeded episode: (arrays, env steps simulated, unhealthy tries redone)."""
        env_seed, np_seed, rng = _episode_seeds(seed, split, index)
        np.random.seed(np_seed)  # OGBench's oracles and mazes draw from the global generator
        steps = redone = 0
        if self.spec.family == "pointmaze":
            rows = self._maze_episode(rng, env_seed)
            steps = len(rows["actions"])
        else:
            reset_seed: int | None = env_seed
            while True:
                rows = self._manip_try(rng, reset_seed)
                reset_seed = None  # a redo continues the episode's streams
                steps += len(rows["actions"])
                if self.spec.family != "scene" or self._scene_healthy(np.asarray(rows["qpos"])):
                    break
                redone += 1
        arrays = {k: np.asarray(v, dtype=_DTYPES.get(k, np.float32)) for k, v in rows.items()}
        if arrays["terminals"].shape[0] != self.length or not arrays["terminals"][-1] or arrays["terminals"][:-1].any():
            raise RuntimeError(f"episode of {arrays['terminals'].shape[0]} rows, expected {self.length}")
        return arrays, steps, redone

    def close(self):
        self.env.close()


_DTYPES = {"terminals": bool, "button_states": np.int64}


# --------------------------------------------------------------------------------------------------
# Chunks, workers, resume
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Chunk:
    index: int
    split: str
    first: int  # first episode index within its split
    count: int


def _plan_chunks(train: int, val: int, per_chunk: int) -> list[_Chunk]:
    chunks: list[_Chunk] = []
    for split, n in (("train", train), ("val", val)):
        for first in range(0, n, per_chunk):
            chunks.append(_Chunk(len(chunks), split, first, min(per_chunk, n - first)))
    return chunks


def _chunk_path(partial: Path, chunk: _Chunk) -> Path:
    return partial / f"chunk-{chunk.index:04d}.npz"


def _atomic_savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)


def _chunk_ok(path: Path, chunk: _Chunk, length: int) -> bool:
    """A finished chunk: readable, with the right number of episodes of the right length."""
    if not path.is_file():
        return False
    try:
        with np.load(path) as f:
            terminals = f["terminals"]
            return terminals.shape == (chunk.count * length,) and int(terminals.sum()) == chunk.count
    except Exception:
        return False


_PROGRESS_QUEUE = None
_WORKER_COLLECTOR: _Collector | None = None


def _worker_init(progress_queue) -> None:
    global _PROGRESS_QUEUE
    warnings.filterwarnings("ignore", module="glfw")  # "DISPLAY missing": nothing is rendered
    _PROGRESS_QUEUE = progress_queue


def _make_chunk(spec: DatasetSpec, length: int, seed: int, chunk: _Chunk, path: str) -> tuple[int, int, int]:
    """Generate one chunk and write it atomically; returns (chunk index, env steps, redone)."""
    global _WORKER_COLLECTOR
    if _WORKER_COLLECTOR is None or _WORKER_COLLECTOR.spec != spec or _WORKER_COLLECTOR.length != length:
        _WORKER_COLLECTOR = _Collector(spec, length)
    episodes, steps, redone = [], 0, 0
    for e in range(chunk.first, chunk.first + chunk.count):
        arrays, s, r = _WORKER_COLLECTOR.episode(seed, chunk.split, e)
        episodes.append(arrays)
        steps, redone = steps + s, redone + r
        if _PROGRESS_QUEUE is not None:
            _PROGRESS_QUEUE.put(1)
    merged = {k: np.concatenate([ep[k] for ep in episodes]) for k in episodes[0]}
    _atomic_savez(Path(path), merged)
    return chunk.index, steps, redone


class _InProcessProgress:
    """Stands in for the worker queue when generating in this process."""

    def __init__(self, bar):
        self.bar = bar

    def put(self, n):
        self.bar.update(n)


def _run_in_process(spec, length, seed, todo, partial, bar, on_chunk):
    global _PROGRESS_QUEUE, _WORKER_COLLECTOR
    saved_state = np.random.get_state()  # the oracles reseed the global generator; give it back after
    old_queue, _PROGRESS_QUEUE = _PROGRESS_QUEUE, _InProcessProgress(bar)
    results = []
    try:
        for chunk in todo:
            results.append(_make_chunk(spec, length, seed, chunk, str(_chunk_path(partial, chunk))))
            if on_chunk is not None:
                on_chunk(chunk.index)
    finally:
        _PROGRESS_QUEUE = old_queue
        if _WORKER_COLLECTOR is not None:
            _WORKER_COLLECTOR.close()
            _WORKER_COLLECTOR = None
        np.random.set_state(saved_state)
    return results


def _drain(progress_queue, bar) -> None:
    while True:
        try:
            bar.update(progress_queue.get_nowait())
        except queue_module.Empty:
            return


def _run_in_pool(spec, length, seed, todo, partial, bar, on_chunk, workers):
    from ..processes import spawn_safe_main

    # spawn: fresh interpreters (no forked MuJoCo/OpenGL state); a worker that dies raises BrokenProcessPool
    # here instead of hanging, and a worker's exception is re-raised by `result()`.
    ctx = multiprocessing.get_context("spawn")
    progress_queue = ctx.Queue()
    results = []
    with spawn_safe_main():  # e.g. under Streamlit or after AppTest, __main__ is a script the workers must not run
        pool = ProcessPoolExecutor(
            max_workers=min(workers, len(todo)), mp_context=ctx, initializer=_worker_init, initargs=(progress_queue,)
        )
        try:
            pending = {pool.submit(_make_chunk, spec, length, seed, c, str(_chunk_path(partial, c))) for c in todo}
            while pending:
                finished, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                _drain(progress_queue, bar)
                for future in finished:
                    try:
                        out = future.result()
                    except BrokenProcessPool as exc:
                        raise RuntimeError(
                            "a worker process died (or could not start: spawned workers re-import the main module, "
                            "which fails for code read from stdin); run from a file or with --workers 1"
                        ) from exc
                    results.append(out)
                    if on_chunk is not None:
                        on_chunk(out[0])
            _drain(progress_queue, bar)
        finally:
            # Chunks already running finish and are kept (each is written atomically); queued ones are dropped.
            pool.shutdown(wait=True, cancel_futures=True)
    return results


# --------------------------------------------------------------------------------------------------
# Final files
# --------------------------------------------------------------------------------------------------


def _write_npz_streaming(path: Path, chunk_paths: list[Path]) -> None:
    """Concatenate chunk files key by key into one `.npz` (the format of np.savez_compressed), atomically.

    Only one chunk's array of one key is in memory at a time.
    """
    with np.load(chunk_paths[0]) as f:
        keys = list(f.keys())
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
            for key in keys:
                shapes, dtype = [], None
                for cp in chunk_paths:  # shapes from the .npy headers, without decompressing the data
                    with zipfile.ZipFile(cp) as czf, czf.open(f"{key}.npy") as member:
                        version = np.lib.format.read_magic(member)
                        read_header = (
                            np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                        )
                        shape, _, dt = read_header(member)
                    shapes.append(shape)
                    dtype = dt
                total = (sum(s[0] for s in shapes), *shapes[0][1:])
                header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": total}
                with zf.open(f"{key}.npy", "w", force_zip64=True) as out:
                    np.lib.format.write_array_header_1_0(out, header)  # as np.save writes it
                    for cp in chunk_paths:
                        with np.load(cp) as f:
                            out.write(np.ascontiguousarray(f[key], dtype=dtype).tobytes())


def generate_dataset(
    cfg: DataGenerateConfig, on_chunk: Callable[[int], None] | None = None
) -> GenerateResult:
    """Generate `cfg.dataset` (and its validation file) into `cfg.dataset_dir` with OGBench's oracles.

    Finished chunks land in `<dataset_dir>/.partial-<name>-s<seed>/`; a rerun with the same settings
    skips them. The final files are written atomically; the partial folder is removed afterwards.
    `on_chunk(index)` is called in this process after each chunk is written (tests use it to interrupt).
    """
    spec = dataset_spec(cfg.dataset, cfg.dataset_dir)
    if cfg.workers < 1 or cfg.chunk_episodes < 1:
        raise ValueError("workers and chunk_episodes must be at least 1")
    train_eps = spec.episodes if cfg.episodes is None else int(cfg.episodes)
    if train_eps < 1:
        raise ValueError("episodes must be at least 1")
    val_eps = validation_episodes(train_eps)
    length = spec.episode_length if cfg.episode_length is None else int(cfg.episode_length)
    if length < 2:
        raise ValueError("episode_length must be at least 2")

    train_path, val_path = dataset_paths(spec.name, cfg.dataset_dir)
    wanted = {"train": train_path, **({"val": val_path} if cfg.val else {})}
    result = GenerateResult(paths=[str(p) for p in wanted.values()])
    splits = tuple(s for s, p in wanted.items() if cfg.force or not p.exists())
    if not splits:
        print(f"{spec.name}: {', '.join(map(str, wanted.values()))} already exist; nothing to do (--force regenerates).")
        result.skipped = True
        return result

    root = train_path.parent
    root.mkdir(parents=True, exist_ok=True)
    partial = root / f".partial-{spec.name}-s{cfg.seed}"
    meta = dict(
        dataset=spec.name, seed=cfg.seed, episodes=train_eps, val_episodes=val_eps, episode_length=length,
        chunk_episodes=cfg.chunk_episodes, recipe=asdict(spec),
    )
    meta_path = partial / "meta.json"
    if partial.exists() and not cfg.resume:
        shutil.rmtree(partial)
    if partial.exists() and any(partial.glob("chunk-*.npz")):
        try:
            old = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            old = {}
        if old != meta:
            diff = {k: (old.get(k), v) for k, v in meta.items() if old.get(k) != v}
            raise ValueError(
                f"{partial} holds chunks of a run with other settings (then, now: {diff}); rerun with the "
                f"settings of that run to finish it, or with --no-resume to discard its chunks"
            )
    else:
        partial.mkdir(parents=True, exist_ok=True)
        write_atomic(meta_path, json.dumps(meta, indent=1))

    # Chunk numbers do not depend on which files are still missing, so a partial folder stays valid.
    chunks = [c for c in _plan_chunks(train_eps, val_eps, cfg.chunk_episodes) if c.split in splits]
    todo = [c for c in chunks if not _chunk_ok(_chunk_path(partial, c), c, length)]
    done_eps = sum(c.count for c in chunks) - sum(c.count for c in todo)
    if done_eps:
        print(f"{spec.name}: resuming, {len(chunks) - len(todo)} of {len(chunks)} chunks ({done_eps} episodes) already done.")

    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    with tqdm(
        total=sum(c.count for c in chunks), initial=done_eps, desc=spec.name, unit="ep", disable=not cfg.progress,
        dynamic_ncols=True,
    ) as bar:
        if todo:
            if cfg.workers == 1 or len(todo) == 1:
                results = _run_in_process(spec, length, cfg.seed, todo, partial, bar, on_chunk)
            else:
                results = _run_in_pool(spec, length, cfg.seed, todo, partial, bar, on_chunk, cfg.workers)
            result.env_steps = sum(r[1] for r in results)
            result.redone = sum(r[2] for r in results)
            result.episodes = sum(c.count for c in todo)

    for split in splits:
        parts = [_chunk_path(partial, c) for c in chunks if c.split == split]
        _write_npz_streaming(wanted[split], parts)
    shutil.rmtree(partial, ignore_errors=True)
    result.seconds = time.perf_counter() - t0
    if cfg.progress:
        rate = result.env_steps / result.seconds if result.seconds > 0 else float("nan")
        print(f"{spec.name}: wrote {', '.join(str(wanted[s]) for s in splits)} ({result.env_steps} env steps, "
              f"{rate:.0f} steps/s incl. writing, {result.redone} unhealthy episodes redone)")
    return result


__all__ = ["DataGenerateConfig", "GenerateResult", "generate_dataset"]
