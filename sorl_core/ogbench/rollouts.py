"""Episodes in OGBench environments, many at once: one policy call per step for every running episode.

`EnvBatch` holds E environments of one name, split over worker processes (one per core) so physics
runs in parallel while the policy runs batched in the main process. `run_episodes` plays one
(m_inf, n) configuration from given reset seeds, so every configuration faces the same initial states.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..processes import spawn_safe_main
from ..stats import wilson_interval


def make_env(env_name: str, **env_kwargs):
    """One OGBench environment (no dataset needed); a clear error for names OGBench does not know."""
    warnings.filterwarnings("ignore", message=".*precision lowered.*")
    warnings.filterwarnings("ignore", message=".*DISPLAY.*")
    import ogbench

    from .datasets import dataset_name_for

    try:
        dataset_name_for(env_name)  # raises a ValueError listing what is supported
        return ogbench.make_env_and_datasets(env_name, env_only=True, **env_kwargs)
    except ValueError:
        raise
    except Exception as exc:  # gymnasium.error.NameNotFound / UnregisteredEnv and friends
        raise ValueError(f"OGBench cannot make {env_name!r}: {exc}") from None


def success_timing_of(env_name: str, **env_kwargs) -> str:
    """When `env_name` (made with `env_kwargs`) judges success: "pre" or "post"; "" for environments without the
    setting. OGBench 1.2's cube, scene and puzzle singletask environments default to "pre" (OGBench 1.1: "post")."""
    env = make_env(env_name, **env_kwargs)
    try:
        return str(getattr(env.unwrapped, "_success_timing", ""))
    finally:
        env.close()


# ----------------------------------------------------------------------------- state save / restore
# Derived MuJoCo arrays the environments read between steps (effector pose in the controller and observation,
# contact forces in the observation). After `mj_step` they describe the last physics substep, not the final qpos,
# so `mj_forward` would not reproduce them: they are copied as they are. Everything else in MjData is recomputed
# by the next `mj_step` from the integration state (qpos, qvel, act, ctrl, warm start, mocap, time, ...).
_MJ_DERIVED = (
    "xpos", "xquat", "xmat", "xipos", "ximat", "xanchor", "xaxis", "geom_xpos", "geom_xmat", "geom_xquat",
    "site_xpos", "site_xmat", "site_xquat", "cam_xpos", "cam_xmat", "light_xpos", "light_xdir", "subtree_com",
    "cdof", "cinert", "crb", "cvel", "cacc", "cfrc_int", "cfrc_ext", "cdof_dot", "subtree_linvel", "subtree_angmom",
    "qM", "M", "qLD", "qLDiagInv", "qfrc_bias", "qfrc_passive", "qfrc_actuator", "qfrc_smooth", "qfrc_constraint",
    "qacc", "qacc_smooth", "act_dot", "actuator_length", "actuator_velocity", "actuator_force", "actuator_moment",
    "sensordata", "ten_length", "ten_velocity", "energy", "tree_asleep", "body_awake",
)
_NOT_STATE = frozenset({"spec", "_renderer", "_passive_viewer_handle"})


def _plain(value) -> bool:
    """Python-side environment state worth saving: numbers, strings, arrays, RNGs and containers of them."""
    if value is None or isinstance(value, (bool, int, float, str, np.ndarray, np.generic, np.random.Generator)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, (str, int)) and _plain(v) for k, v in value.items())
    return type(value).__module__.startswith("ogbench.manipspace.lie")  # SE3 / SO3 poses (plain arrays inside)


def _layers(env) -> list:
    """The wrapper chain, outermost first, ending with the unwrapped environment."""
    layers = [env]
    while hasattr(layers[-1], "env"):
        layers.append(layers[-1].env)
    return layers


def _mujoco(env):
    u = env.unwrapped
    return (u._model, u._data) if hasattr(u, "_data") else (u.model, u.data)


def _observe(env) -> np.ndarray:
    u = env.unwrapped
    return u.compute_observation() if hasattr(u, "compute_observation") else u._get_obs()


def env_state(env, obs: np.ndarray) -> dict:
    """Everything needed to put `env` (whose last observation is `obs`) back where it is now, in any copy of it.

    MuJoCo's integration state (qpos, qvel, act, ctrl, warm start, mocap, applied forces, time), the derived arrays
    the environment reads between steps, and every plain Python attribute of every wrapper layer (task targets,
    button states, success flag, TimeLimit's step counter, the reset RNG).
    """
    import copy

    import mujoco

    model, data = _mujoco(env)
    integration = mujoco.mjtState.mjSTATE_INTEGRATION
    physics = np.empty(mujoco.mj_stateSize(model, integration))
    mujoco.mj_getState(model, data, physics, integration)
    derived = {k: getattr(data, k).copy() for k in _MJ_DERIVED if isinstance(getattr(data, k, None), np.ndarray)}
    # Copied, not referenced: the environment changes some of these arrays in place as it steps (the puzzle's and
    # the scene's button states), and a state kept in this process must not follow them.
    python = [{k: copy.deepcopy(v) for k, v in vars(layer).items() if k not in _NOT_STATE and _plain(v)}
              for layer in _layers(env)]
    return {"physics": physics, "derived": derived, "python": python, "obs": np.array(obs, copy=True)}


def restore_env_state(env, state: dict, env_name: str = "") -> np.ndarray:
    """Put `env` into a state saved by `env_state`; returns the observation there, refusing if it is not exact."""
    import copy

    import mujoco

    model, data = _mujoco(env)
    for layer, saved in zip(_layers(env), state["python"]):
        for key, value in saved.items():
            setattr(layer, key, copy.deepcopy(value))
    for key, value in state["derived"].items():
        getattr(data, key)[...] = value
    mujoco.mj_setState(model, data, state["physics"], mujoco.mjtState.mjSTATE_INTEGRATION)
    obs = _observe(env)
    if not np.array_equal(obs, state["obs"]):
        raise RuntimeError(f"restoring a saved state of {env_name or 'the environment'} does not reproduce its "
                           f"observation (largest difference {np.max(np.abs(obs - state['obs'])):.3g}), so its "
                           "counterfactual returns would not be exact")
    return obs


def clone_env(env):
    """A second environment sharing `env`'s compiled MuJoCo model (the costly part: ~150 MB and ~1 s each) with
    its own MjData and Python state. The model's colours are shared (display only); physics is independent."""
    import copy

    import mujoco

    layers = _layers(env)
    base = copy.copy(layers[-1])
    for key, value in vars(base).items():
        if key not in _NOT_STATE and isinstance(value, (np.ndarray, list, dict, np.random.Generator)) and _plain(value):
            setattr(base, key, copy.deepcopy(value))
    model, data = _mujoco(env)
    clone_data = mujoco.MjData(model)
    mujoco.mj_copyData(clone_data, model, data)
    setattr(base, "_data" if hasattr(base, "_data") else "data", clone_data)
    if hasattr(base, "_renderer"):
        base._renderer = None
    inner = base
    for layer in reversed(layers[:-1]):
        wrapper = copy.copy(layer)
        wrapper.env = inner
        inner = wrapper
    return inner


class _LocalEnvs:
    """A slice of environments stepped in this process."""

    def __init__(self, env_name: str, count: int, env_kwargs: dict, share_model: bool = False):
        self.env_name = env_name
        if share_model:
            first = make_env(env_name, **env_kwargs)
            self.envs = [first] + [clone_env(first) for _ in range(count - 1)]
        else:
            self.envs = [make_env(env_name, **env_kwargs) for _ in range(count)]
        self.last_obs: list = [None] * count

    def reset(self, seeds: list[int]) -> np.ndarray:
        obs = []
        for env, s in zip(self.envs, seeds):
            obs.append(env.reset(seed=int(s))[0])
            # OGBench's task resets settle the goal scene with a few random actions from a fresh, unseeded action
            # space, then put qpos and qvel back; the controls and the solver's warm start keep a trace of those
            # actions (a puzzle replay drifted by 4e-8 at a button press). Cleared, one seed gives one start, bit for
            # bit; every step sets the controls again, and the warm start is only the solver's first guess.
            _, data = _mujoco(env)
            data.qacc_warmstart[:] = 0.0
            data.ctrl[:] = 0.0
        self.last_obs = list(obs)
        return np.stack(obs)

    def get_states(self, index: list[int]) -> list[dict]:
        return [env_state(self.envs[i], self.last_obs[i]) for i in index]

    def set_states(self, index: list[int], states: list[dict]) -> np.ndarray:
        obs = [restore_env_state(self.envs[i], s, self.env_name) for i, s in zip(index, states)]
        for i, o in zip(index, obs):
            self.last_obs[i] = o
        return np.stack(obs) if obs else np.zeros((0,))

    def step(self, index: list[int], actions: np.ndarray) -> tuple:
        out = [self.envs[i].step(a) for i, a in zip(index, actions)]
        for i, o in zip(index, out):
            self.last_obs[i] = o[0]
        obs = np.stack([o[0] for o in out]) if out else np.zeros((0,))
        reward = np.array([o[1] for o in out], dtype=np.float64)
        terminated = np.array([o[2] for o in out], dtype=bool)
        truncated = np.array([o[3] for o in out], dtype=bool)
        success = np.array([bool(o[4].get("success", False)) for o in out], dtype=bool)
        return obs, reward, terminated, truncated, success

    def close(self) -> None:
        for env in self.envs:
            env.close()


def _worker(conn, env_name: str, count: int, env_kwargs: dict, share_model: bool = False) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        local = _LocalEnvs(env_name, count, env_kwargs, share_model)
        conn.send(("ok", None))
    except Exception as exc:  # reported to the parent, which raises it
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    while True:
        command, args = conn.recv()
        if command == "close":
            local.close()
            conn.close()
            return
        try:
            conn.send(("ok", getattr(local, command)(*args)))
        except Exception as exc:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


class EnvBatch:
    """`count` environments of `env_name`; with `workers` > 1 they live in that many processes.

    `share_model`: the environments of one process share one compiled MuJoCo model (`clone_env`): hundreds of
    environments for state restores (`get_states` / `set_states`) cost little memory and start at once.
    """

    def __init__(self, env_name: str, count: int, workers: int = 1, share_model: bool = False, **env_kwargs):
        if count < 1:
            raise ValueError("EnvBatch needs at least one environment")
        self.env_name, self.count = env_name, count
        workers = max(1, min(workers, count))
        sizes = [count // workers + (i < count % workers) for i in range(workers)]
        self.slices = np.split(np.arange(count), np.cumsum(sizes)[:-1])
        if workers == 1:
            self.local, self.conns, self.procs = _LocalEnvs(env_name, count, env_kwargs, share_model), [], []
            probe = self.local.envs[0]
        else:
            self.local = None
            context = mp.get_context("spawn")  # torch in the parent: never fork it
            self.conns, self.procs = [], []
            with spawn_safe_main():
                for size in sizes:
                    parent, child = context.Pipe()
                    proc = context.Process(target=_worker, args=(child, env_name, size, env_kwargs, share_model),
                                           daemon=True)
                    proc.start()
                    child.close()  # only the worker holds its end: if it dies, recv() here ends instead of hanging
                    self.conns.append(parent)
                    self.procs.append(proc)
            for conn in self.conns:
                self._receive(conn)
            probe = make_env(env_name, **env_kwargs)
        self.max_episode_steps = probe.spec.max_episode_steps if probe.spec else None
        self.obs_dim = probe.observation_space.shape[0]
        self.action_dim = probe.action_space.shape[0]
        if self.local is None:
            probe.close()

    def _receive(self, conn):
        try:
            status, value = conn.recv()
        except (EOFError, ConnectionError):
            self.close()
            raise RuntimeError(f"an environment worker of {self.env_name} stopped unexpectedly (often out of memory: "
                               "run fewer episodes at once)") from None
        if status == "error":
            self.close()
            raise RuntimeError(f"environment worker failed: {value}")
        return value

    def _call(self, command: str, per_slice_args: list[tuple]) -> list:
        if self.local is not None:
            return [getattr(self.local, command)(*per_slice_args[0])]
        for conn, args in zip(self.conns, per_slice_args):
            try:
                conn.send((command, args))
            except (BrokenPipeError, ConnectionError, OSError):
                self.close()
                raise RuntimeError(f"an environment worker of {self.env_name} stopped unexpectedly (often out of "
                                   "memory: run fewer episodes at once)") from None
        return [self._receive(conn) for conn in self.conns]

    def reset(self, seeds) -> np.ndarray:
        seeds = list(seeds)
        if len(seeds) != self.count:
            raise ValueError(f"reset needs {self.count} seeds, got {len(seeds)}")
        parts = self._call("reset", [([seeds[i] for i in s],) for s in self.slices])
        return np.concatenate(parts).astype(np.float32)

    def step(self, index: np.ndarray, actions: np.ndarray) -> tuple:
        """Step the environments `index` (sorted global indices) with `actions`; returns arrays in that order."""
        args, order = [], []
        for s in self.slices:
            mine = np.nonzero(np.isin(index, s))[0]
            order.append(mine)
            args.append(([int(i - s[0]) for i in index[mine]], actions[mine]))
        parts = self._call("step", args)
        fields = []
        for f in range(5):
            chunks = [p[f] for p, o in zip(parts, order) if len(o)]
            fields.append(np.concatenate(chunks) if chunks else np.zeros((0,)))
        perm = np.argsort(np.concatenate(order))  # back to the order of `index`
        obs, reward, terminated, truncated, success = (x[perm] for x in fields)
        return obs.astype(np.float32), reward, terminated, truncated, success

    def _split(self, index) -> tuple[list, list]:
        """Per worker: the positions in `index` it holds and their local indices."""
        index = np.asarray(index, dtype=np.int64)
        mine = [np.nonzero(np.isin(index, s))[0] for s in self.slices]
        return mine, [[int(index[m] - s[0]) for m in ms] for ms, s in zip(mine, self.slices)]

    def get_states(self, index) -> list[dict]:
        """Saved states (`env_state`) of environments `index`, in that order."""
        mine, local = self._split(index)
        parts = self._call("get_states", [(loc,) for loc in local])
        out: list = [None] * len(np.asarray(index))
        for ms, part in zip(mine, parts):
            for m, state in zip(ms, part):
                out[m] = state
        return out

    def set_states(self, index, states: list[dict]) -> np.ndarray:
        """Restore environments `index` to `states` (one each; the same state may repeat: it is sent once per
        worker); returns their observations. Raises if a restore does not reproduce its saved observation."""
        mine, local = self._split(index)
        parts = self._call("set_states", [(loc, [states[m] for m in ms]) for ms, loc in zip(mine, local)])
        obs = [None] * len(states)
        for ms, part in zip(mine, parts):
            for m, o in zip(ms, part):
                obs[m] = o
        return np.stack(obs).astype(np.float32)

    def close(self) -> None:
        if self.local is not None:
            self.local.close()
            self.local = None
        for conn in self.conns:
            try:
                conn.send(("close", ()))
            except (BrokenPipeError, OSError):
                pass
        for proc in self.procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
        self.conns, self.procs = [], []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@dataclass
class EpisodeResults:
    """Outcome of one (m_inf, n) configuration over a set of seeded episodes."""

    m_inf: int
    n: int
    seeds: list[int]
    success: np.ndarray  # (E,) bool: info['success'] at each episode's last step
    returns: np.ndarray  # (E,) undiscounted
    lengths: np.ndarray  # (E,) steps
    actor_calls: int | float  # per action (with act: the mean over the actions taken)
    critic_calls: int | float  # per action
    policy_seconds: float  # wall-clock inside agent.sample, all steps
    actions_taken: int
    q_traces: list[np.ndarray] = field(default_factory=list)  # per episode: Q of each chosen action (if recorded)

    @property
    def successes(self) -> int:
        return int(self.success.sum())

    def summary(self) -> dict:
        low, high = wilson_interval(self.successes, len(self.seeds))
        return {
            "m_inf": self.m_inf,
            "n": self.n,
            "episodes": len(self.seeds),
            "successes": self.successes,
            "success_rate": round(self.successes / max(1, len(self.seeds)), 4),
            "success_ci_low": round(low, 4),
            "success_ci_high": round(high, 4),
            "mean_return": round(float(self.returns.mean()), 3),
            "mean_length": round(float(self.lengths.mean()), 2),
            "actor_calls": self.actor_calls,
            "critic_calls": self.critic_calls,
            "network_calls": self.actor_calls + self.critic_calls,
            "ms_per_action": round(1000.0 * self.policy_seconds / max(1, self.actions_taken), 4),
        }


def sample_seed(seed: int, m_inf: int, n: int) -> int:
    """Seed of the sampling noise of configuration (m_inf, n): evaluate, render and the app use the same one."""
    return seed * 7919 + 31 * m_inf + n


def episode_seeds(seed: int, episodes: int) -> list[int]:
    """Reset seeds of a sweep: episode i starts from the same state in every configuration."""
    return [seed * 100_003 + i for i in range(episodes)]


def run_episodes(
    agent,
    envs: EnvBatch,
    m_inf: int,
    n: int,
    seeds: list[int],
    sample_seed: int = 0,
    extrapolate: bool = False,
    record_q: bool = False,
    on_step: Callable[[int, int], None] | None = None,
    on_env_step: Callable[[int, np.ndarray], None] | None = None,
    stop_after: int | None = None,
    verifier: str = "q",
    beta: float = 1.0,
    budget=None,
    on_sample: Callable | None = None,
    on_transition: Callable | None = None,
) -> EpisodeResults:
    """Play len(seeds) episodes (== envs.count) of one configuration to their end.

    Each step calls `agent.sample` once for all running episodes. Episodes end on success or at the
    time limit. `record_q` also stores the online critic's Q (at k = m_inf) of every chosen action (nothing for a
    policy without a critic).
    `on_step(done, total)` reports finished episodes; `on_env_step(t, running)` is called after the
    reset (t = 0) and after every step with the mask of episodes that were stepped (rendering hooks here).
    `stop_after=i` stops once episode i has ended (replaying one episode of a batch); the other episodes'
    results are then partial. The noise episode i sees is unchanged: it depends only on earlier steps.
    `verifier` / `beta` choose how best-of-N ranks candidates (sorl_core.verifiers; default the paper's `q`).
    `budget` (sorl_core.budgets: an adaptive rule, or Fixed) is run by `agent.sample(..., budget=budget)` in place of
    the fixed (m_inf, n); it reports per-state `.actor_calls` / `.critic_calls` arrays (S,), and the results then
    hold the mean calls per action over every action taken (floats). record_q is not available with it.
    `on_sample(t, index, obs, result)` sees every policy call before its actions are stepped: the running episodes'
    indices, their observations and the sampler's result (candidates, scores, pick), e.g. to record them.
    `on_transition(index, obs, actions, next_obs, rewards)` sees every step taken by the running episodes.
    """
    import torch  # here, not at the top: environment worker processes import this module without torch

    from .. import verifiers

    with torch.no_grad():
        count = envs.count
        obs = envs.reset(seeds)
        running = np.ones(count, dtype=bool)
        success = np.zeros(count, dtype=bool)
        returns, lengths = np.zeros(count), np.zeros(count, dtype=np.int64)
        q_traces: list[list[float]] = [[] for _ in range(count)]
        generator = torch.Generator(agent.device).manual_seed(int(sample_seed))
        if on_env_step is not None:
            on_env_step(0, running.copy())
        t = 0
        policy_seconds, actions_taken = 0.0, 0
        calls = verifiers.calls_per_action(m_inf, n, verifier)  # replaced by the sampler's own count below
        call_sums = [0.0, 0.0]  # act: summed per-state calls
        if budget is not None and record_q:
            raise ValueError("record_q needs agent.sample's scores; it is not available with a budget")
        with_q = record_q and agent.has_critic  # a policy without a critic (flow-bc) has no Q: its traces stay empty
        while running.any() and (stop_after is None or running[stop_after]):
            index = np.nonzero(running)[0]
            t0 = time.perf_counter()
            result = agent.sample(obs[index], m_inf=m_inf, n=n, generator=generator, extrapolate=extrapolate,
                                  verifier=verifier, beta=beta, budget=budget)
            actions = result.actions.float().cpu().numpy()
            policy_seconds += time.perf_counter() - t0
            if on_sample is not None:
                on_sample(t, index, obs[index], result)
            actions_taken += len(index)
            if budget is not None:
                call_sums[0] += float(np.sum(result.actor_calls))
                call_sums[1] += float(np.sum(result.critic_calls))
                calls = (call_sums[0] / actions_taken, call_sums[1] / actions_taken)
            else:
                calls = (result.actor_calls, result.critic_calls)
            if with_q:  # Q, not the verifier's score (consensus scores are distances): recomputed unless equal
                if result.q is not None and verifiers.get(verifier).score_is_q:
                    q = result.q.gather(1, result.chosen[:, None])[:, 0]
                else:  # for the plot and the table; not counted as compute
                    q = agent.q_value(obs[index], result.actions, k=m_inf)
                for i, value in zip(index, q.float().cpu().numpy()):
                    q_traces[i].append(float(value))
            next_obs, reward, terminated, truncated, succ = envs.step(index, actions)
            if on_transition is not None:
                on_transition(index, obs[index], actions, next_obs, reward)
            t += 1
            if on_env_step is not None:
                on_env_step(t, running.copy())
            returns[index] += reward
            lengths[index] += 1
            obs[index] = next_obs
            ended = terminated | truncated
            success[index[ended]] = succ[ended]
            running[index[ended]] = False
            if on_step is not None and ended.any():
                on_step(int((~running).sum()), count)
        return EpisodeResults(
            m_inf=m_inf, n=n, seeds=list(seeds), success=success, returns=returns, lengths=lengths,
            actor_calls=calls[0], critic_calls=calls[1], policy_seconds=policy_seconds, actions_taken=actions_taken,
            q_traces=[np.array(t) for t in q_traces] if record_q else [],
        )
