"""Logic of the OGBench rollouts page (app/pages/1_OGBench_rollouts.py) that does not need Streamlit.

Checkpoints are loaded and checked by app/policies.py. Episodes run through ``sorl_core.ogbench.rollouts`` (one
``EnvBatch`` for all configurations, so every configuration faces the same seeded initial states), videos through
``sorl_core.ogbench.render`` (cached on disk by checkpoint digest). Kept apart from the page so tests can call it directly.
"""

from __future__ import annotations

import math

import tempfile
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from app.policies import M_OPTIONS
from sorl_core.ogbench import rollouts as rollout  # light: torch is imported only when episodes run

N_MAX = 64
MAX_CONFIGS = 4
DEFAULT_CONFIGS = ((1, 1), (8, 1), (8, 16), (4, 4))
DEFAULT_COUNT = 3  # the first three of DEFAULT_CONFIGS are shown at first
ONE_STEP_N = (1, 4, 16, 32)  # the configurations' N for a policy that acts in one step (fql): its only knob
EPISODES_DEFAULT = 5
EPISODES_MAX = 50
WORKERS = 2  # environment processes (the policy runs batched in the page's process)
VIDEO_QUALITY, VIDEO_EVERY, VIDEO_SIZE = "fast", 2, 240


# --------------------------------------------------------------------------- configurations
def config_label(m: int, n: int) -> str:
    return f"M_inf={m}, N={n}"


def clean_configs(pairs: Iterable[tuple[int, int]], m_disc: int = 8) -> tuple[list[tuple[int, int]], list[str]]:
    """Valid, distinct (M_inf, N) pairs in the order given, and a message for each one dropped."""
    out, notes = [], []
    for m, n in pairs:
        m, n = int(m), int(n)
        if m not in M_OPTIONS or m > m_disc:
            notes.append(f"{config_label(m, n)} dropped: M_inf must be a power of two up to the trained M_disc = {m_disc}.")
        elif not 1 <= n <= N_MAX:
            notes.append(f"{config_label(m, n)} dropped: N must be between 1 and {N_MAX}.")
        elif (m, n) in out:
            notes.append(f"{config_label(m, n)} appears twice; it runs once.")
        else:
            out.append((m, n))
    return out, notes


sample_seed = rollout.sample_seed  # the same noise seed as `sorl-lab evaluate` and `sorl-lab render`


# --------------------------------------------------------------------------- episodes
def run_configs(agent, env_name: str, configs: Sequence[tuple[int, int]], episodes: int, seed: int,
                workers: int = WORKERS, on_progress: Callable[[int, int, str], None] | None = None,
                verifier: str = "q", beta: float = 1.0, **env_kwargs) -> list[dict]:
    """K episodes of every configuration from the same seeded initial states; one row (dict) per configuration.

    One EnvBatch of K environments (in `workers` processes) serves every configuration. Each row is
    ``EpisodeResults.summary()`` plus the label, the per-episode outcomes and the mean Q of the executed
    actions. `on_progress(done, total, label)` counts finished episodes over all configurations.
    """
    from sorl_core.ogbench.rollouts import EnvBatch, episode_seeds, run_episodes

    seeds = episode_seeds(seed, episodes)
    total = len(configs) * episodes
    rows = []
    with EnvBatch(env_name, episodes, workers=workers, **env_kwargs) as envs:
        for i, (m, n) in enumerate(configs):
            label = config_label(m, n)
            if on_progress is not None:
                on_progress(i * episodes, total, label)

            def step(done: int, count: int, base: int = i * episodes, label: str = label) -> None:
                if on_progress is not None:
                    on_progress(base + done, total, label)

            res = run_episodes(agent, envs, m, n, seeds, sample_seed=sample_seed(seed, m, n), record_q=True,
                               on_step=step, verifier=verifier, beta=beta)
            filled = [q for q in res.q_traces if len(q)]  # none for a policy without a critic
            q_all = np.concatenate(filled) if filled else np.zeros(0)
            rows.append({
                "label": label, **res.summary(), "seed": seed,
                "mean_q": round(float(q_all.mean()), 4) if len(q_all) else float("nan"),
                "episode_seeds": list(res.seeds),
                "episode_success": [bool(s) for s in res.success],
                "episode_return": [float(r) for r in res.returns],
                "episode_length": [int(x) for x in res.lengths],
            })
    return rows


MEASURES = ("M_inf", "N", "episodes", "success rate", "95% CI", "mean return", "mean length",
            "network calls / action", "ms / action", "mean Q")


def results_table(rows: Sequence[dict]):
    """The page's table: one column per configuration, one row per measure (narrow enough for a 1024 px screen
    with the sidebar open), values formatted for readers."""
    import pandas as pd

    def column(r: dict) -> list[str]:
        return [str(r["m_inf"]), str(r["n"]), str(r["episodes"]), f"{r['success_rate']:.0%}",
                f"[{r['success_ci_low']:.0%}, {r['success_ci_high']:.0%}]", f"{r['mean_return']:.1f}",
                f"{r['mean_length']:.1f}", str(r["network_calls"]), f"{r['ms_per_action']:.3f}",
                 f"{r['mean_q']:.3f}" if math.isfinite(r["mean_q"]) else "no critic"]

    return pd.DataFrame({"measure": list(MEASURES), **{r["label"]: column(r) for r in rows}})


def episode_table(rows: Sequence[dict]):
    """One row per episode and configuration (grouped by episode): success, steps and return."""
    import pandas as pd

    episodes = len(rows[0]["episode_success"]) if rows else 0
    return pd.DataFrame([{
        "episode": i, "configuration": r["label"], "success": bool(r["episode_success"][i]),
        "steps": int(r["episode_length"][i]), "return": round(float(r["episode_return"][i]), 1),
    } for i in range(episodes) for r in rows])


def episode_choice(rows: Sequence[dict], episode: int) -> str:
    """How the episode picker names an episode: its index and which configurations succeeded in it."""
    won = sum(bool(r["episode_success"][episode]) for r in rows)
    return f"Episode {episode}: {won} of {len(rows)} configurations succeed"


CSV_COLUMNS = ("checkpoint", "env", "m_inf", "n", "episodes", "successes", "success_rate", "success_ci_low",
               "success_ci_high", "mean_return", "mean_length", "actor_calls", "critic_calls", "network_calls",
               "ms_per_action", "mean_q", "seed")


def results_csv(rows: Sequence[dict], checkpoint: str, env_name: str) -> str:
    """One line per configuration (the evaluator's columns where they overlap) for the download."""
    import pandas as pd

    df = pd.DataFrame([{**r, "checkpoint": checkpoint, "env": env_name} for r in rows])
    return df[list(CSV_COLUMNS)].to_csv(index=False, float_format="%.6g")


# --------------------------------------------------------------------------- videos
_RENDER_LOCK = threading.Lock()  # one MuJoCo renderer at a time per server (GL contexts, shared cache files)


def render_videos(agent, env_name: str, configs: Sequence[tuple[int, int]], seed: int, digest: str,
                  episode: int = 0, episodes: int = 1, expected_steps: int | None = None,
                  cache_dir: str | Path | None = None, on_progress: Callable[[float, str], None] | None = None,
                  every: int = VIDEO_EVERY, size: int = VIDEO_SIZE, verifier: str = "q", beta: float = 1.0) -> list:
    """Episode `episode` of the table's K = `episodes` from `seed`, for every configuration (fast quality, every 2nd
    step, 240 px), cached on disk. The same reset seed and sampling noise as the table: the same outcome."""
    from sorl_core.ogbench.render import DEFAULT_CACHE_DIR, render_episode

    frames_expected = max(1, (expected_steps or 200) // every + 1)

    def frame(i: int, count: int) -> None:
        if on_progress is not None and count % 10 == 0:
            label = config_label(*configs[i])
            on_progress((i + min(count / frames_expected, 1.0)) / len(configs), f"Rendering {label}: frame {count}")

    if on_progress is not None:
        on_progress(0.0, f"Replaying episode {episode} of every configuration…")
    with _RENDER_LOCK:
        videos = render_episode(agent, env_name, list(configs), seed, digest, episode=episode, episodes=episodes,
                                every=every, quality=VIDEO_QUALITY, size=size,
                                cache_dir=cache_dir or DEFAULT_CACHE_DIR, on_frame=frame, verifier=verifier, beta=beta)
    if on_progress is not None:
        on_progress(1.0, "Rendered")
    return videos


def video_record(video) -> dict:
    """What the page keeps of a RolloutVideo in the session: plain data and the mp4 bytes."""
    return {"m_inf": video.m_inf, "n": video.n, "label": config_label(video.m_inf, video.n), "episode": video.episode,
            "success": video.success,
            "length": video.length, "episode_return": video.episode_return, "q": list(video.q),
            "outcome": video.outcome, "cached": video.cached, "frames": video.frames, "path": str(video.path),
            "bytes": Path(video.path).read_bytes()}


def side_by_side_bytes(videos: Sequence, name: str, folder: str | Path | None = None) -> bytes:
    """All videos in one mp4 (sorl_core.ogbench.render.side_by_side), panels in the order given."""
    from sorl_core.ogbench.render import side_by_side

    folder = Path(folder) if folder is not None else Path(tempfile.gettempdir()) / "sorl-lab-side-by-side"
    folder.mkdir(parents=True, exist_ok=True)
    return side_by_side(list(videos), folder / f"{name}.mp4").read_bytes()


def q_figure(videos: Sequence[dict]):
    """Q of the executed action at every step of each rendered episode: one line per configuration."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for v in videos:
        q = np.asarray(v["q"], dtype=float)
        fig.add_trace(go.Scatter(
            x=np.arange(1, len(q) + 1), y=q, mode="lines", name=f"{v['label']} · {v['outcome']}",
            hovertemplate="step %{x}: Q = %{y:.3f}<extra>%{fullData.name}</extra>"))
    fig.update_layout(
        title=f"Learned Q of the executed action along episode {videos[0].get('episode', 0) if videos else 0}",
        xaxis_title="environment step", yaxis_title="Q(s, a): online critic at k = M_inf",
        # Legend under the axis title: above the plot it wraps over the title on narrow screens.
        legend={"orientation": "h", "yanchor": "top", "y": -0.22, "xanchor": "left", "x": 0}, height=480,
        margin={"t": 50, "b": 150, "l": 70, "r": 20})
    return fig
