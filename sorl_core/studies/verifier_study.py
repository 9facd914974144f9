"""Ground truth for best-of-N candidates: counterfactual returns.

Best-of-N keeps the candidate its verifier scores highest. Whether the verifier is right needs the truth for every
candidate, not only for the one kept. At states visited by seeded rollouts, this study restores the environment
exactly (`sorl_core.ogbench.rollouts.env_state`), draws the policy's N candidates, applies each one, and continues with a
continuation policy until the episode ends or for H steps, R times. The discounted return of each candidate is its
truth; every verifier's scores are compared against it, state by state.

Choices (documented here once):

* States are decision points of `episodes` seeded rollouts of the checkpoint at the study's M_inf and N = 1 (the
  same reset seeds and sampling noise as `sorl-lab evaluate`'s N = 1 cell), spread evenly over each episode.
* Candidates of a state: `agent.sample(obs, m_inf, n)` with a generator seeded by (seed, episode, step).
* Continuation: the same checkpoint (or `continuation_checkpoint`) at `continuation_m_inf` Euler steps, N = 1 by
  default. Repeat r of a state uses the same continuation noise for all its candidates (common random numbers: the
  candidates differ in their first action only), different noise for different repeats.
* Best-of-N continuation (`continuation_n` > 1): at every later step the continuation policy draws
  `continuation_n` candidates and keeps the one `continuation_verifier` scores highest, as `cont.sample(obs,
  continuation_m_inf, continuation_n, verifier=...)` does (same integration, clamp, scores and first argmax; the
  noise is passed in rather than drawn, see `continuation_actions`). Shared: the noise of step t, repeat r is one
  (continuation_n, A) array for all candidates of the state (common random numbers as at N = 1); its row 0 is the
  N = 1 study's noise of that step and repeat, so the N = 1 and N > 1 studies share their candidates, states and
  candidate-0 continuation noise. Not shared: once two rollouts are in different states, the same noise gives them
  other candidates and other picks. It tests whether picking by a verifier at every step (compounding) changes the
  return from the same states, which the N = 1 continuation cannot. The study's identity records the two settings
  only when continuation_n > 1, so studies made before the option resume unchanged.
* Return: sum over the rollout of discount^t * r_t (discount from the checkpoint's config), r_0 the reward of the
  candidate's own step. No bootstrap at the horizon: the truth is the H-step return. Success: info['success'] at
  the rollout's last step. Mean and std (population, ddof 0) over the repeats.
* Toy worlds (one-step bandits): states are held-out contexts and the truth is the closed-form reward
  `toy.make_world(w).reward(a, c)`: no continuation, no repeats, no success.
* Before the candidates of a state run, the recorded rollout's next actions (up to PROOF_STEPS = 10) are replayed
  from the restored state: every observation and reward must equal the recorded ones bit for bit, else the study
  refuses.

Per-state metrics, one set per verifier, named `<metric>_<verifier>` (e.g. `spearman_q-min`):

* spearman: rank correlation (ties share their mean rank) of the verifier's scores with the candidates' true mean
  returns; empty when either is constant over the candidates (e.g. every candidate fails alike).
* top1_regret: best true return among the candidates minus the true return of the verifier's pick (>= 0).
* winners_curse_score / winners_curse_return: the pick's score above the mean score of the candidates, and the
  pick's true return above the candidates' mean true return. A verifier that over-optimises shows a large score
  gap with a small (or negative) return gap. The score is in the verifier's own units: a return for the Q
  verifiers (comparable), minus a summed distance for `consensus` (not comparable).
* pick_distance / mean_distance: Euclidean distance of the pick to the candidates' coordinate-wise median, and the
  mean of that distance over all candidates (what a random candidate scores). Pick farther than average: the
  verifier favours outlying actions.
* pick_return / pick_success: the true mean return and success rate of the pick (compare with the state's
  mean_return / mean_success over all candidates).

Outputs in `out`: verifier_candidates.csv (one row per state x candidate), verifier_states.csv (one row per state),
verifier_summary.csv (one row per verifier), verifier.html, verifier_config.json (the study's identity; a rerun with
the same settings skips the states already in verifier_states.csv, a rerun with other settings is refused).
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..agent import integrate
from ..checkpoint import CheckpointError, checkpoint_digest, load_agent
from ..io import write_atomic
from ..ogbench.rollouts import EnvBatch, episode_seeds, run_episodes, sample_seed
from ..verifiers import DEFAULT_BETA, VERIFIERS, check_verifier
from ..verifiers import get as get_verifier
from ..stats import spearman
from .verifier_report import METRICS, Study, study_html, summary_csv, summary_rows

CANDIDATES_CSV, STATES_CSV, SUMMARY_CSV, HTML, CONFIG_JSON = (
    "verifier_candidates.csv", "verifier_states.csv", "verifier_summary.csv", "verifier.html", "verifier_config.json")


@dataclass
class VerifierStudyConfig:
    """Ground truth for best-of-N: the counterfactual return of every candidate, against every verifier's score."""

    checkpoint: str
    """Checkpoint of the policy (an OGBench one, or a toy world's; bundled ones under assets/)."""
    m_inf: int = 8
    """Euler steps of the candidates (and of the rollouts the states are drawn from)."""
    n: int = 16
    """Candidates per state (at least 2: a verifier ranks them)."""
    states: int = 50
    """States studied: decision points of seeded rollouts (OGBench) or held-out contexts (toy worlds)."""
    horizon: int = 200
    """Most steps of a candidate's rollout (its own step included); episodes also end on success or time limit."""
    repeats: int = 2
    """Rollouts per candidate, each with other continuation noise (toy worlds: one, the reward is exact)."""
    seed: int = 0
    """Seed of the rollouts the states come from, of the candidates and of the continuation noise."""
    out: str | None = None
    """Output folder (default runs/verifier-<checkpoint name>); a rerun there resumes the study."""
    verifiers: tuple[str, ...] = tuple(VERIFIERS)
    """Verifiers to score the candidates with; target-q is recorded as absent for a checkpoint without a target critic."""
    beta: float = DEFAULT_BETA
    """The q-lcb verifier's penalty on the critics' disagreement (mean - beta * |q1 - q2|)."""
    episodes: int = 10
    """Seeded rollouts the states are drawn from, spread evenly over each episode (OGBench only)."""
    early_steps: int = 0
    """0: states spread over whole episodes; K > 0: only over each episode's first K decision points (steps 0 .. K-1),
    where an episode's course is set (OGBench only)."""
    continuation_m_inf: int = 8
    """Euler steps of the continuation policy after a candidate's first step."""
    continuation_n: int = 1
    """Candidates per step of the continuation policy: 1 (one action per step) or best-of-N by continuation_verifier."""
    continuation_verifier: str = "q"
    """How the continuation policy ranks its candidates when continuation_n > 1 (a verifier name; beta as above)."""
    continuation_checkpoint: str | None = None
    """Another checkpoint to continue with (same environment); default: the studied one."""
    batch_states: int = 10
    """States whose rollouts step together (batch_states x n x repeats environments); finished batches are saved."""
    workers: int = 2
    """Processes stepping the environments (the policies run batched in the main process)."""
    device: str = "auto"
    """Where the policy runs: auto, cpu or cuda."""
    progress: bool = True
    """Show a progress bar over states."""


@dataclass
class StudyState:
    """One state of the study: where it was visited and how to get back there."""

    index: int
    episode: int  # OGBench: rollout index; toy: held-out context index
    step: int
    obs: np.ndarray  # (obs_dim,) float32, as the policy sees it
    env_state: dict | None = None  # rollouts.env_state (OGBench)
    # What the recorded rollout did from here (up to PROOF_STEPS actions) and what followed each action: replayed
    # from the restored state, they prove the restore before any candidate runs. rewards None: not recorded.
    replay_actions: np.ndarray | None = None  # (k, A)
    replay_obs: np.ndarray | None = None  # (k, obs_dim)
    replay_rewards: np.ndarray | None = None  # (k,)


@dataclass
class Recording:
    """Seeded rollouts: per episode the observations (L + 1), actions (L) and rewards (L)."""

    seeds: list[int]
    obs: list[np.ndarray]
    actions: list[np.ndarray]
    rewards: list[np.ndarray]

    @property
    def lengths(self) -> list[int]:
        return [len(a) for a in self.actions]


# ----------------------------------------------------------------------------- metrics
def state_metrics(scores, returns, candidates, success=None) -> dict[str, float]:
    """The metrics of one verifier at one state (see the module docstring), keyed by METRICS.

    scores, returns: (N,); candidates: (N, A); success: (N,) success rates or None. The pick is the first argmax
    of the scores, as best-of-N takes it.
    """
    scores = np.asarray(scores, dtype=np.float64)
    returns = np.asarray(returns, dtype=np.float64)
    candidates = np.asarray(candidates, dtype=np.float64)
    pick = int(np.argmax(scores))
    median = np.median(candidates, axis=0)
    distance = np.linalg.norm(candidates - median, axis=1)
    return {
        "spearman": spearman(scores, returns),
        "top1_regret": float(returns.max() - returns[pick]),
        "winners_curse_score": float(scores[pick] - scores.mean()),
        "winners_curse_return": float(returns[pick] - returns.mean()),
        "pick_distance": float(distance[pick]),
        "mean_distance": float(distance.mean()),
        "pick_return": float(returns[pick]),
        "pick_success": float("nan") if success is None else float(np.asarray(success, dtype=np.float64)[pick]),
    }


# ----------------------------------------------------------------------------- checks and set-up
def _check_config(cfg: VerifierStudyConfig) -> None:
    for v in cfg.verifiers:
        check_verifier(v, cfg.beta)
    if not cfg.verifiers:
        raise ValueError("name at least one verifier")
    check_verifier(cfg.continuation_verifier, cfg.beta)
    for name in ("horizon", "repeats", "states", "episodes", "batch_states", "continuation_n"):
        if int(getattr(cfg, name)) <= 0:
            raise ValueError(f"{name} must be 1 or more, got {getattr(cfg, name)}")
    if cfg.n < 2:
        raise ValueError(f"n must be 2 or more (a verifier ranks candidates), got {cfg.n}")
    if cfg.early_steps < 0:
        raise ValueError(f"early_steps must be 0 (whole episodes) or more, got {cfg.early_steps}")


def _seed_of(*parts: int) -> int:
    """A 63-bit seed mixed from integers (numpy's SeedSequence): distinct parts give unrelated streams."""
    return int(np.random.SeedSequence([int(p) % (2**63) for p in parts]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def spread_steps(lengths: list[int], states: int, early_steps: int = 0) -> list[tuple[int, int]]:
    """(episode, step) of `states` decision points spread over the episodes (round robin) and evenly within each
    episode (step floor((j + 1/2) L / k) for its k states), L its length or, with early_steps K, min(length, K).
    Sorted by episode then step."""
    if early_steps:
        lengths = [min(length, early_steps) for length in lengths]
    available = sum(lengths)
    if states > available:
        raise ValueError(f"{states} states asked for, but the {len(lengths)} recorded episodes hold only {available} "
                         "decision points; ask for fewer states or more --episodes")
    counts = [0] * len(lengths)
    left = states
    while left:
        for i, length in enumerate(lengths):
            if left and counts[i] < length:
                counts[i] += 1
                left -= 1
    return [(i, int((j + 0.5) * length / k)) for i, (length, k) in enumerate(zip(lengths, counts)) for j in range(k)]


def record_episodes(agent, envs: EnvBatch, m_inf: int, seeds: list[int], noise_seed: int) -> Recording:
    """Play seeded episodes at (m_inf, N = 1) with `rollouts.run_episodes` and keep every observation, action and
    reward."""
    count = envs.count
    rec_obs: list[list] = [[] for _ in range(count)]
    rec_act: list[list] = [[] for _ in range(count)]
    rec_rew: list[list] = [[] for _ in range(count)]

    def keep(index, obs, actions, next_obs, reward) -> None:
        for k, i in enumerate(index):
            if not rec_obs[i]:
                rec_obs[i].append(obs[k])
            rec_obs[i].append(next_obs[k])
            rec_act[i].append(actions[k])
            rec_rew[i].append(reward[k])

    run_episodes(agent, envs, m_inf, 1, list(seeds), sample_seed=noise_seed, on_transition=keep)
    return Recording(list(seeds), [np.stack(o) for o in rec_obs], [np.stack(a) for a in rec_act],
                     [np.array(r, dtype=np.float64) for r in rec_rew])


PROOF_STEPS = 10  # recorded actions replayed from each restored state before its candidates run


def snapshot_states(envs: EnvBatch, recording: Recording, chosen: list[tuple[int, int]]) -> list[StudyState]:
    """Replay the recorded actions from the same reset seeds and save the environment at every chosen step.

    The replay must reproduce the recording bit for bit (a deterministic environment), else this refuses.
    """
    envs.reset(recording.seeds)
    lengths = recording.lengths
    wanted: dict[int, list[int]] = {}
    for e, t in chosen:
        wanted.setdefault(t, []).append(e)
    saved: dict[tuple[int, int], dict] = {}
    last = max(t for _, t in chosen)
    for t in range(last + 1):
        if t in wanted:
            for e, state in zip(wanted[t], envs.get_states(wanted[t])):
                saved[(e, t)] = state
        index = np.array([e for e in range(envs.count) if t < lengths[e]], dtype=np.int64)
        if t == last or not len(index):
            break
        obs, reward, *_ = envs.step(index, np.stack([recording.actions[e][t] for e in index]))
        expected = np.stack([recording.obs[e][t + 1] for e in index])
        if not np.array_equal(obs, expected):
            raise RuntimeError(f"{envs.env_name} does not replay its own recorded actions identically from the same "
                               "reset seed, so its states cannot be restored exactly")
    def state(g: int, e: int, t: int) -> StudyState:
        end = min(t + PROOF_STEPS, lengths[e])
        return StudyState(g, e, t, recording.obs[e][t], saved[(e, t)], recording.actions[e][t:end],
                          recording.obs[e][t + 1:end + 1], recording.rewards[e][t:end])
    return [state(g, e, t) for g, (e, t) in enumerate(chosen)]


def verify_restore(envs: EnvBatch, recording: Recording, episode: int, step: int, target: int = 0) -> None:
    """Prove a restore: reset the environments with the recording's seeds, replay episode `episode` to `step`, save
    it, restore that state into environment `target` (another one, left elsewhere) and replay the rest of the
    recorded actions there. Every observation and reward must equal the recording bit for bit, else a RuntimeError
    naming the environment."""
    seeds = list(recording.seeds) + [0] * (envs.count - len(recording.seeds))
    envs.reset(seeds[:envs.count])
    for t in range(step):
        envs.step(np.array([episode]), recording.actions[episode][t][None])
    (state,) = envs.get_states([episode])
    envs.set_states([target], [state])
    for t in range(step, len(recording.actions[episode])):
        obs, reward, *_ = envs.step(np.array([target]), recording.actions[episode][t][None])
        if not (np.array_equal(obs[0], recording.obs[episode][t + 1]) and reward[0] == recording.rewards[episode][t]):
            raise RuntimeError(f"replaying {envs.env_name} from a restored state diverges from the recording at step "
                               f"{t + 1} (episode {episode}, restored at step {step})")


# ----------------------------------------------------------------------------- the rollouts
def candidate_draws(agent, states: list[StudyState], cfg: VerifierStudyConfig, present: list[str]):
    """Candidates (S, N, A) of every state (seeded per state) and every present verifier's scores (S, N)."""
    obs = agent.as_obs(np.stack([s.obs for s in states]))
    candidates = torch.stack([
        agent.sample(obs[i:i + 1], m_inf=cfg.m_inf, n=cfg.n, generator=_seed_of(cfg.seed, 1, st.episode, st.step),
                     score=False).candidates[0]
        for i, st in enumerate(states)])
    obs_rep = obs.repeat_interleave(cfg.n, dim=0)
    scores = {v: agent.verifier_scores(obs_rep, candidates, cfg.m_inf, v, cfg.beta).float().cpu().numpy()
              for v in present}
    return candidates.float().cpu().numpy(), scores


def _restore(pool: EnvBatch, index: np.ndarray, states: list[dict]) -> np.ndarray:
    """`pool.set_states` with the worker's refusal passed on in its own words."""
    try:
        return pool.set_states(index, states)
    except RuntimeError as exc:
        raise RuntimeError(str(exc).split("RuntimeError: ", 1)[-1]) from None


def prove_restores(pool: EnvBatch, states: list[StudyState]) -> None:
    """Restore every state into its own environment of `pool` and replay the recorded actions from it: each
    observation (and reward, where recorded) must equal the recording bit for bit, else a RuntimeError naming the
    state and the step where they part."""
    if any(s.replay_actions is None or not len(s.replay_actions) for s in states):
        raise ValueError("every state needs at least one recorded action to replay, else its restore is unproven")
    index = np.arange(len(states))
    _restore(pool, index, [s.env_state for s in states])
    for i in range(max(len(s.replay_actions) for s in states)):
        active = np.array([k for k, s in enumerate(states) if i < len(s.replay_actions)], dtype=np.int64)
        obs, reward, *_ = pool.step(active, np.stack([states[k].replay_actions[i] for k in active]))
        for row, k in enumerate(active):
            s = states[k]
            same_reward = s.replay_rewards is None or reward[row] == s.replay_rewards[i]
            if not (np.array_equal(obs[row], s.replay_obs[i]) and same_reward):
                raise RuntimeError(f"{pool.env_name}: the recorded actions replayed from the restored state of episode "
                                   f"{s.episode}, step {s.step} part from the recording at step {s.step + i + 1}; "
                                   "refusing to study it")


@torch.no_grad()
def continuation_actions(cont, obs, noise: torch.Tensor, m_inf: int, verifier: str = "q",
                         beta: float = DEFAULT_BETA) -> torch.Tensor:
    """What `cont.sample(obs, m_inf, n, verifier=verifier, beta=beta).actions` computes when its noise is `noise`
    (S, n, A) instead of a draw: the n candidates of every state integrated, clamped, scored and the first argmax
    kept (n = 1: the one candidate, unscored). Lets the study hand each rollout its own seeded noise in one batch."""
    obs = cont.as_obs(obs)
    s, n, a_dim = noise.shape
    obs_rep = obs.repeat_interleave(n, dim=0)
    x, _ = integrate(cont.actor, obs_rep, noise.reshape(s * n, a_dim), m_inf)
    candidates = x.clamp(-1, 1).reshape(s, n, a_dim)
    if n == 1:
        return candidates[:, 0]
    chosen = cont.verifier_scores(obs_rep, candidates, m_inf, verifier, beta).argmax(dim=1)
    return candidates[torch.arange(s, device=candidates.device), chosen]


def counterfactual_returns(pool: EnvBatch, cont, states: list[StudyState], candidates: np.ndarray,
                           cfg: VerifierStudyConfig, discount: float,
                           on_step: Callable[[int, int], None] | None = None) -> dict[str, np.ndarray]:
    """Every (state, candidate, repeat) rollout stepped together: (S, N, R) returns, successes and lengths, and
    the number of (batched) continuation-policy calls.

    Rollout k = (s * N + j) * R + r lives in environment k of `pool`; each step makes one batched call of the
    continuation policy for all running rollouts.
    """
    s_count, n, reps, horizon = len(states), cfg.n, cfg.repeats, cfg.horizon
    total = s_count * n * reps
    which = np.arange(total)
    st_of, cand_of, rep_of = which // (n * reps), (which // reps) % n, which % reps
    a_dim = candidates.shape[-1]
    prove_restores(pool, states)
    _restore(pool, which, [states[s].env_state for s in st_of])
    # Common random numbers: repeat r of a state has one noise sequence, shared by all its candidates. Drawn as
    # (N_c, H, A): row 0 is the N_c = 1 sequence, so studies at other continuation_n share it.
    n_c = int(cfg.continuation_n)
    noise = np.stack([np.stack([np.random.default_rng(_seed_of(cfg.seed, 2, st.episode, st.step, r))
                                .standard_normal((n_c, horizon, a_dim)).astype(np.float32).transpose(1, 0, 2)
                                for r in range(reps)])
                      for st in states])  # (S, R, H, N_c, A)
    obs, reward, terminated, truncated, success = pool.step(which, candidates[st_of, cand_of])
    returns = reward.astype(np.float64).copy()
    last_success = success.copy()
    lengths = np.ones(total, dtype=np.int64)
    running = ~(terminated | truncated)
    current = obs
    calls, policy_seconds = 0, 0.0
    for t in range(1, horizon):
        if on_step is not None:  # progress: steps done of at most `horizon`
            on_step(t, horizon)
        index = np.nonzero(running)[0]
        if not len(index):
            break
        calls += 1
        t0 = time.perf_counter()
        x = torch.as_tensor(noise[st_of[index], rep_of[index], t], device=cont.device)
        actions = continuation_actions(cont, current[index], x, cfg.continuation_m_inf, cfg.continuation_verifier,
                                       cfg.beta).float().cpu().numpy()  # = cont.sample(obs, m, N_c) from this noise
        policy_seconds += time.perf_counter() - t0
        obs, reward, terminated, truncated, success = pool.step(index, actions)
        returns[index] += discount ** t * reward
        last_success[index] = success
        lengths[index] += 1
        current[index] = obs
        running[index[terminated | truncated]] = False
    shape = (s_count, n, reps)
    return {"returns": returns.reshape(shape), "success": last_success.reshape(shape).astype(np.float64),
            "lengths": lengths.reshape(shape), "policy_calls": calls, "policy_seconds": policy_seconds}


# ----------------------------------------------------------------------------- rows
def candidate_columns(verifiers: tuple[str, ...], action_dim: int) -> list[str]:
    return (["state", "episode", "step", "candidate"] + [f"a{i}" for i in range(action_dim)]
            + [f"score_{v}" for v in verifiers]
            + ["return_mean", "return_std", "success_mean", "success_std", "length_mean"]
            + [f"picked_{v}" for v in verifiers] + ["picked_by"])


def state_columns(verifiers: tuple[str, ...]) -> list[str]:
    return (["state", "episode", "step", "context", "mean_return", "best_return", "mean_success"]
            + [f"{m}_{v}" for v in verifiers for m in METRICS])


def _num(x) -> str:
    x = float(x)
    return "" if math.isnan(x) else repr(x)


def chunk_rows(states: list[StudyState], candidates: np.ndarray, scores: dict[str, np.ndarray],
               truth: dict[str, np.ndarray], verifiers: tuple[str, ...], contexts: np.ndarray | None = None):
    """Rows of both CSVs for a batch of finished states. truth: returns / success / lengths of shape (S, N, R)
    (success NaN where there is none)."""
    cand_rows, state_rows = [], []
    ret_mean, ret_std = truth["returns"].mean(axis=2), truth["returns"].std(axis=2)
    suc_mean, suc_std = truth["success"].mean(axis=2), truth["success"].std(axis=2)
    len_mean = truth["lengths"].mean(axis=2)
    for s, st in enumerate(states):
        metrics = {v: state_metrics(scores[v][s], ret_mean[s], candidates[s], suc_mean[s]) for v in scores}
        picks = {v: int(np.argmax(scores[v][s])) for v in scores}
        for j in range(candidates.shape[1]):
            row = {"state": st.index, "episode": st.episode, "step": st.step, "candidate": j}
            row.update({f"a{i}": _num(a) for i, a in enumerate(candidates[s, j])})
            row.update({f"score_{v}": _num(scores[v][s, j]) if v in scores else "" for v in verifiers})
            row.update({"return_mean": _num(ret_mean[s, j]), "return_std": _num(ret_std[s, j]),
                        "success_mean": _num(suc_mean[s, j]), "success_std": _num(suc_std[s, j]),
                        "length_mean": _num(len_mean[s, j])})
            row.update({f"picked_{v}": (int(picks[v] == j) if v in scores else "") for v in verifiers})
            row["picked_by"] = ";".join(v for v in verifiers if v in scores and picks[v] == j)
            cand_rows.append(row)
        row = {"state": st.index, "episode": st.episode, "step": st.step,
               "context": _num(contexts[s]) if contexts is not None else "",
               "mean_return": _num(ret_mean[s].mean()), "best_return": _num(ret_mean[s].max()),
               "mean_success": _num(suc_mean[s].mean())}
        for v in verifiers:
            for m in METRICS:
                row[f"{m}_{v}"] = _num(metrics[v][m]) if v in metrics else ""
        state_rows.append(row)
    return cand_rows, state_rows


def _read_csv(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _csv_text(columns: list[str], rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


# ----------------------------------------------------------------------------- the study
def _label(path: str) -> str:
    p = Path(path)
    return p.parent.name if p.stem in ("checkpoint", "policy") else p.stem


def _identity(cfg: VerifierStudyConfig) -> dict:
    keys = ("checkpoint", "m_inf", "n", "states", "horizon", "repeats", "seed", "verifiers", "beta", "episodes",
            "continuation_m_inf", "continuation_checkpoint")
    if cfg.continuation_n != 1:  # recorded only when used: studies made before the option keep their identity
        keys += ("continuation_n", "continuation_verifier")
    if cfg.early_steps:
        keys += ("early_steps",)
    identity = {k: (list(getattr(cfg, k)) if isinstance(getattr(cfg, k), tuple) else getattr(cfg, k)) for k in keys}
    # The files' content, not only their paths: a checkpoint retrained at the same path is another study.
    identity["checkpoint_digest"] = checkpoint_digest(cfg.checkpoint)
    if cfg.continuation_checkpoint:
        identity["continuation_checkpoint_digest"] = checkpoint_digest(cfg.continuation_checkpoint)
    return identity


def _prepare_out(cfg: VerifierStudyConfig) -> Path:
    out = Path(cfg.out) if cfg.out else Path("runs") / f"verifier-{_label(cfg.checkpoint)}"
    out.mkdir(parents=True, exist_ok=True)
    identity = _identity(cfg)
    path = out / CONFIG_JSON
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except ValueError:
            old = None
        if old != identity:
            diff = ", ".join(f"{k} {old.get(k)!r} there, {v!r} here" for k, v in identity.items()
                             if not isinstance(old, dict) or old.get(k) != v) if isinstance(old, dict) else "unreadable"
            raise ValueError(f"{out} already holds a verifier study with other settings ({diff}); "
                             "choose another --out or delete that folder")
    else:
        write_atomic(path, json.dumps(identity, indent=2) + "\n")
    return out


@dataclass
class StudyResult:
    out: Path
    candidates_csv: Path
    states_csv: Path
    summary_csv: Path
    html: Path
    summary: list[dict] = field(default_factory=list)
    studied: int = 0  # states run in this call (the rest were already there)
    env_steps: int = 0
    policy_calls: int = 0  # batched continuation-policy calls
    policy_seconds: float = 0.0  # inside those calls
    rollout_seconds: float = 0.0  # the counterfactual rollouts (restores, steps, policy), without set-up
    seconds: float = 0.0  # the whole call


def run_study(cfg: VerifierStudyConfig) -> StudyResult:
    """Run (or resume) the study; see the module docstring. Returns the paths, the per-verifier summary and this
    call's counters (environment steps and continuation-policy calls, for the benchmark)."""
    t_start = time.perf_counter()
    _check_config(cfg)
    agent, extra = load_agent(cfg.checkpoint, device=cfg.device)
    agent.check_m_inf(cfg.m_inf)
    absent = {v: reason for v in cfg.verifiers if (reason := get_verifier(v).missing(agent.has_target_critic))}
    present = [v for v in cfg.verifiers if v not in absent]
    if not present:
        raise ValueError(f"none of the chosen verifiers can run on this checkpoint: {'; '.join(absent.values())}")
    world, env_name = extra.get("world"), extra.get("env")
    if not world and not env_name:
        raise CheckpointError(f"{cfg.checkpoint} names neither a toy world nor an OGBench environment")
    verifiers = tuple(cfg.verifiers)
    out = _prepare_out(cfg)
    paths = {k: out / name for k, name in (("cand", CANDIDATES_CSV), ("state", STATES_CSV), ("summary", SUMMARY_CSV),
                                          ("html", HTML))}
    state_rows = _read_csv(paths["state"])
    done = {int(r["state"]) for r in state_rows}
    cand_rows = [r for r in _read_csv(paths["cand"]) if int(r["state"]) in done]
    cand_cols, st_cols = candidate_columns(verifiers, agent.config.action_dim), state_columns(verifiers)
    counters = {"env_steps": 0, "policy_calls": 0, "studied": 0, "policy_seconds": 0.0, "rollout_seconds": 0.0}

    def save(new_cand: list[dict], new_state: list[dict]) -> None:
        cand_rows.extend(new_cand)
        state_rows.extend(new_state)
        write_atomic(paths["cand"], _csv_text(cand_cols, cand_rows))  # candidates first: a state counts once in both
        write_atomic(paths["state"], _csv_text(st_cols, state_rows))

    if len(done) >= cfg.states:  # finished before: only the summary and report are rewritten
        world = env_name = None
    bar = tqdm(total=cfg.states, initial=len(done), desc=f"verifier study {_label(cfg.checkpoint)}", unit="state",
               disable=not cfg.progress, dynamic_ncols=True)
    try:
        if world:
            _toy_study(agent, world, cfg, present, verifiers, done, save, bar, counters)
        elif env_name:
            _env_study(agent, env_name, cfg, present, verifiers, done, save, bar, counters)
    finally:
        bar.close()
    state_rows.sort(key=lambda r: int(r["state"]))
    cand_rows.sort(key=lambda r: (int(r["state"]), int(r["candidate"])))
    summary = summary_rows(state_rows, verifiers, absent)
    write_atomic(paths["summary"], summary_csv(summary))
    title = f"Verifiers against counterfactual returns: {_label(cfg.checkpoint)} (M_inf {cfg.m_inf}, N {cfg.n})"
    write_atomic(paths["html"], study_html(Study(out, cand_rows, state_rows, present, absent), title))
    return StudyResult(out, paths["cand"], paths["state"], paths["summary"], paths["html"], summary,
                       counters["studied"], counters["env_steps"], counters["policy_calls"],
                       counters["policy_seconds"], counters["rollout_seconds"], time.perf_counter() - t_start)


def _toy_study(agent, world_name, cfg, present, verifiers, done, save, bar, counters) -> None:
    from .. import toy
    from .toy_scaling import held_out_contexts

    world = toy.make_world(world_name)
    contexts = held_out_contexts(world, cfg.states)
    todo = [g for g in range(cfg.states) if g not in done]
    for start in range(0, len(todo), cfg.batch_states):
        chunk = [StudyState(g, g, 0, contexts[g]) for g in todo[start:start + cfg.batch_states]]
        candidates, scores = candidate_draws(agent, chunk, cfg, present)
        ctx = np.stack([s.obs for s in chunk])
        reward = world.reward(candidates, ctx[:, None, :]).astype(np.float64)[..., None]  # (S, N, 1): exact
        truth = {"returns": reward, "success": np.full_like(reward, np.nan), "lengths": np.ones_like(reward)}
        save(*chunk_rows(chunk, candidates, scores, truth, verifiers, contexts=ctx[:, 0]))
        counters["studied"] += len(chunk)
        bar.update(len(chunk))


def _env_study(agent, env_name, cfg, present, verifiers, done, save, bar, counters) -> None:
    cont = agent
    if cfg.continuation_checkpoint:
        cont, cont_extra = load_agent(cfg.continuation_checkpoint, device=cfg.device)
        if cont_extra.get("env") != env_name:
            raise CheckpointError(f"{cfg.continuation_checkpoint} is not a policy for {env_name}, so it cannot "
                                  "continue its rollouts")
    cont.check_m_inf(cfg.continuation_m_inf)
    if cfg.continuation_n > 1 and get_verifier(cfg.continuation_verifier).missing(cont.has_target_critic):
        raise CheckpointError(f"the continuation policy holds no target critic (an inference-only export), so it "
                              f"cannot rank its candidates by {cfg.continuation_verifier}; choose another "
                              "--continuation-verifier")
    discount = float(agent.config.discount)
    with EnvBatch(env_name, cfg.episodes, workers=min(cfg.workers, cfg.episodes), share_model=True) as envs:
        limit = envs.max_episode_steps
        if limit and cfg.states > cfg.episodes * limit:
            raise ValueError(f"{cfg.states} states asked for, but {cfg.episodes} episodes of at most {limit} steps "
                             "cannot hold them; ask for fewer states or more --episodes")
        recording = record_episodes(agent, envs, cfg.m_inf, episode_seeds(cfg.seed, cfg.episodes),
                                    sample_seed(cfg.seed, cfg.m_inf, 1))
        chosen = spread_steps(recording.lengths, cfg.states, cfg.early_steps)
        todo_pairs = [(g, p) for g, p in enumerate(chosen) if g not in done]
        if not todo_pairs:
            return
        states = snapshot_states(envs, recording, chosen)
    todo = [states[g] for g, _ in todo_pairs]
    size = min(cfg.batch_states, len(todo)) * cfg.n * cfg.repeats
    with EnvBatch(env_name, size, workers=cfg.workers, share_model=True) as pool:
        for start in range(0, len(todo), cfg.batch_states):
            chunk = todo[start:start + cfg.batch_states]
            candidates, scores = candidate_draws(agent, chunk, cfg, present)
            t0 = time.perf_counter()
            truth = counterfactual_returns(pool, cont, chunk, candidates, cfg, discount)
            counters["rollout_seconds"] += time.perf_counter() - t0
            counters["policy_seconds"] += truth["policy_seconds"]
            counters["env_steps"] += int(truth["lengths"].sum()) + len(chunk)  # + the proof steps
            counters["policy_calls"] += int(truth["policy_calls"])
            save(*chunk_rows(chunk, candidates, scores, truth, verifiers))
            counters["studied"] += len(chunk)
            bar.update(len(chunk))
