"""Logic of the Verifier page (app/pages/4_Verifier.py) that does not need Streamlit.

One seeded episode is played exactly as the rollouts page plays episode i of K (same reset seeds, same sampling
noise, `rollouts.run_episodes`), and every step keeps the frame, the N candidates, the verifier's scores, the pick
and the environment's state, so the page can scrub through it and, on request, score every candidate of a step
by its counterfactual return (`sorl_core.studies.verifier_study`). A study written by `sorl-lab verifier` is summarised
as calibration figures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import plotly.graph_objects as go
from plotly.colors import sample_colorscale

SCORE_SCALE = "Viridis"


@dataclass
class EpisodeRecord:
    """Step t: the state before action t (frame t, observation t), its candidates, scores and pick."""

    env_name: str
    m_inf: int
    n: int
    verifier: str
    seed: int
    episode: int
    episodes: int
    frames: list = field(default_factory=list)  # (length + 1) RGB frames
    obs: list = field(default_factory=list)  # (obs_dim,) per step
    candidates: list = field(default_factory=list)  # (N, A) per step
    scores: list = field(default_factory=list)  # (N,) per step, or None when N = 1
    chosen: list = field(default_factory=list)  # int per step
    env_states: list = field(default_factory=list)  # rollouts.env_state per step
    next_obs: list = field(default_factory=list)  # (obs_dim,) per step: what the action led to
    rewards: list = field(default_factory=list)  # float per step
    success: bool = False

    @property
    def length(self) -> int:
        return len(self.chosen)


def record_episode(agent, env_name: str, m_inf: int, n: int, verifier: str, seed: int, episode: int = 0,
                   episodes: int = 1, beta: float = 1.0, size: int = 240,
                   on_progress: Callable[[int], None] | None = None) -> EpisodeRecord:
    """Play episode `episode` of a K = `episodes` evaluation from `seed` and keep everything the page shows."""
    from sorl_core.ogbench.render import grab_frame
    from sorl_core.ogbench.rollouts import EnvBatch, episode_seeds, run_episodes, sample_seed

    if not 0 <= episode < episodes:
        raise ValueError(f"the episode must be between 0 and {episodes - 1}, got {episode}")
    rec = EpisodeRecord(env_name, m_inf, n, verifier, seed, episode, episodes)
    with EnvBatch(env_name, episodes, workers=1, width=size, height=size) as envs:
        env = envs.local.envs[episode].unwrapped

        def keep(t: int, index: np.ndarray, obs: np.ndarray, result) -> None:
            where = np.nonzero(index == episode)[0]
            if not len(where):
                return
            k = int(where[0])
            rec.obs.append(np.asarray(obs[k], dtype=np.float32))
            rec.candidates.append(result.candidates[k].float().cpu().numpy())
            rec.scores.append(None if result.q is None else result.q[k].float().cpu().numpy())
            rec.chosen.append(int(result.chosen[k]))
            rec.env_states.append(envs.get_states([episode])[0])

        def transition(index: np.ndarray, obs: np.ndarray, actions: np.ndarray, next_obs: np.ndarray,
                       rewards: np.ndarray) -> None:
            where = np.nonzero(index == episode)[0]
            if len(where):
                rec.next_obs.append(np.asarray(next_obs[where[0]], dtype=np.float32))
                rec.rewards.append(float(rewards[where[0]]))

        def frame(t: int, stepped: np.ndarray) -> None:
            if stepped[episode]:
                rec.frames.append(grab_frame(env, first=not rec.frames))
                if on_progress is not None:
                    on_progress(len(rec.frames))

        res = run_episodes(agent, envs, m_inf, n, episode_seeds(seed, episodes), sample_seed=sample_seed(seed, m_inf, n),
                           verifier=verifier, beta=beta, on_sample=keep, on_env_step=frame, on_transition=transition,
                           stop_after=episode)
    rec.success = bool(res.success[episode])
    return rec


def counterfactual_at(agent, rec: EpisodeRecord, step: int, horizon: int = 100, repeats: int = 1,
                      workers: int = 2, on_progress: Callable[[int, int], None] | None = None) -> dict[str, np.ndarray]:
    """True (counterfactual) return of each candidate of one recorded step: restore the environment there, apply
    the candidate, continue with the same policy (M_inf = 8, N = 1). Returns mean return and success per candidate."""
    from sorl_core.ogbench.rollouts import EnvBatch
    from sorl_core.studies.verifier_study import PROOF_STEPS, StudyState, VerifierStudyConfig, counterfactual_returns

    if not 0 <= step < rec.length:
        raise ValueError(f"the step must be between 0 and {rec.length - 1}, got {step}")
    candidates = rec.candidates[step]
    n = len(candidates)
    # The recorded actions replayed from the restored state prove the restore (the study refuses otherwise): up to
    # PROOF_STEPS of them, each against the observation and reward recorded after it (the last step included).
    end = min(step + PROOF_STEPS, rec.length)
    actions = np.array([rec.candidates[t][rec.chosen[t]] for t in range(step, end)], dtype=np.float32)
    state = StudyState(0, rec.episode, step, rec.obs[step], rec.env_states[step], replay_actions=actions,
                       replay_obs=np.stack(rec.next_obs[step:end]), replay_rewards=np.array(rec.rewards[step:end]))
    cfg = VerifierStudyConfig(checkpoint="", m_inf=rec.m_inf, n=n, states=1, horizon=horizon, repeats=repeats,
                              seed=rec.seed)
    with EnvBatch(rec.env_name, n * repeats, workers=workers) as pool:
        out = counterfactual_returns(pool, agent, [state], candidates[None], cfg, agent.config.discount,
                                     on_step=on_progress)
    return {"returns": out["returns"][0].mean(axis=1), "success": out["success"][0].mean(axis=1)}


# --------------------------------------------------------------------------- figures
PICK_COLOR = "#d62728"  # red: not in the Viridis scale the candidates are coloured with
# OGBench's manipulation tasks (cube, scene, puzzle) act in 5 dimensions: the hand's relative position, its yaw,
# and the gripper's opening.
MANIPULATION_ACTIONS = ("hand x", "hand y", "hand z", "hand yaw", "gripper")


def action_names(dim: int) -> list[str]:
    return list(MANIPULATION_ACTIONS) if dim == len(MANIPULATION_ACTIONS) else [f"a{i + 1}" for i in range(dim)]


def candidates_figure(candidates: np.ndarray, scores: np.ndarray | None, chosen: int, verifier: str,
                      truth: np.ndarray | None = None) -> go.Figure:
    """Parallel coordinates: one line per candidate over the action dimensions, coloured by the verifier's score
    (or, when `truth` is given, by the candidate's true return); the pick is the dashed red line."""
    cand = np.asarray(candidates, dtype=np.float64)
    colour_by = truth if truth is not None else scores
    label = "true return" if truth is not None else f"{verifier} score"
    lo, hi = (float(np.min(colour_by)), float(np.max(colour_by))) if colour_by is not None else (0.0, 1.0)
    dims = action_names(cand.shape[1])
    traces = []
    for j, row in enumerate(cand):
        value = None if colour_by is None else float(colour_by[j])
        colour = "#888" if value is None else sample_colorscale(SCORE_SCALE, [(value - lo) / (hi - lo) if hi > lo else 0.5])[0]
        hover = f"candidate {j}" + ("" if scores is None else f"<br>{verifier} score {float(scores[j]):.3f}") + \
            ("" if truth is None else f"<br>true return {float(truth[j]):.3f}")
        traces.append(go.Scatter(x=dims, y=row, mode="lines+markers", line=dict(color=colour, width=1.5),
                                 marker=dict(size=4), showlegend=False, hovertemplate=hover + "<extra></extra>"))
    # The pick in a colour outside the colour scale, dashed: a gold pick looked like the best candidate once the
    # lines were coloured by true return (gold is the top of the scale).
    traces.append(go.Scatter(x=dims, y=cand[chosen], mode="lines+markers", name=f"picked by {verifier}",
                             line=dict(color=PICK_COLOR, width=4, dash="dash"), marker=dict(size=8, color=PICK_COLOR),
                             hovertemplate=f"picked: candidate {chosen}<extra></extra>"))
    if colour_by is not None:  # a colour bar: an invisible trace carries it
        traces.append(go.Scatter(x=[dims[0]], y=[cand[chosen][0]], mode="markers", showlegend=False, hoverinfo="skip",
                                 marker=dict(size=0.1, color=[lo], cmin=lo, cmax=hi, colorscale=SCORE_SCALE,
                                             colorbar=dict(title=dict(text=label), thickness=12, len=0.8))))
    return go.Figure(data=traces, layout=dict(
        title=dict(text=f"The {len(cand)} candidates, coloured by {label}", x=0.0, xanchor="left", font=dict(size=15)),
        height=380, margin=dict(l=50, r=20, t=40, b=40),
        yaxis=dict(title="action value", range=[-1.05, 1.05]), xaxis=dict(title="action dimension"),
        legend=dict(orientation="h", yanchor="top", y=-0.18, xanchor="left", x=0.0),
    ))


def score_spread_figure(rec: EpisodeRecord, step: int) -> go.Figure:
    """Over the episode: the pick's score above the candidates' mean (how much the verifier's choice stands out);
    a dashed grey line marks the step on screen (red is the pick on this page)."""
    t = [i for i, s in enumerate(rec.scores) if s is not None]
    gap = [float(rec.scores[i][rec.chosen[i]] - np.mean(rec.scores[i])) for i in t]
    fig = go.Figure(data=[go.Scatter(x=t, y=gap, mode="lines", name="pick above the mean",
                                     hovertemplate="step %{x}: %{y:.3f}<extra></extra>")], layout=dict(
        title=dict(text=f"{rec.verifier}: the pick's score above the candidates' mean", x=0.0, xanchor="left",
                   font=dict(size=15)),
        height=260, margin=dict(l=50, r=20, t=40, b=40), xaxis=dict(title="step"), yaxis=dict(title="score gap"),
        shapes=[dict(type="line", x0=step, x1=step, y0=0, y1=1, yref="paper", line=dict(dash="dash", color="#444"))],
    ))
    return fig
