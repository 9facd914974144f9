"""Logic of the OGBench rollouts page (app/pages/1_OGBench_rollouts.py) that does not need Streamlit.

Checkpoints are read only through ``sorl_core.checkpoint`` (``torch.load(weights_only=True)``: never
unpickled) and checked against the environment they name. Episodes run through ``sorl_core.rollout``
(one ``EnvBatch`` for all configurations, so every configuration faces the same seeded initial states),
videos through ``sorl_core.render`` (cached on disk by checkpoint digest). Kept apart from the page so
tests can call it directly.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from sorl_core import rollout  # light: torch is imported only when episodes run

REPO_ROOT = Path(__file__).resolve().parents[1]
M_OPTIONS = (1, 2, 4, 8)  # Euler steps offered (powers of two up to the usual M_disc = 8)
N_MAX = 64
MAX_CONFIGS = 4
DEFAULT_CONFIGS = ((1, 1), (8, 1), (8, 16), (4, 4))
DEFAULT_COUNT = 3  # the first three of DEFAULT_CONFIGS are shown at first
EPISODES_DEFAULT = 5
EPISODES_MAX = 50
WORKERS = 2  # environment processes (the policy runs batched in the page's process)
VIDEO_QUALITY, VIDEO_EVERY, VIDEO_SIZE = "fast", 2, 240


# --------------------------------------------------------------------------- bundled checkpoints
def ogbench_dir() -> Path:
    """Folder of the bundled OGBench policies: <repo>/assets/ogbench (SORL_LAB_OGBENCH_DIR overrides it)."""
    return Path(os.environ.get("SORL_LAB_OGBENCH_DIR") or (REPO_ROOT / "assets" / "ogbench"))


@dataclass(frozen=True)
class Bundled:
    """One bundled policy: <root>/<name>/policy.pt, with its card.md and sweep.csv when present."""

    name: str
    policy: Path
    card: Path | None
    sweep: Path | None


# The policy the README and notebook 3 teach with: the pages open on it (the others are barely trained or variants).
HEADLINE_POLICY = "cube-single-task2"


def bundled_checkpoints(root: Path | None = None) -> list[Bundled]:
    """Every <root>/*/policy.pt with its card and sweep: HEADLINE_POLICY first, then by name."""
    root = Path(root) if root is not None else ogbench_dir()
    if not root.is_dir():
        return []
    out = []
    for policy in sorted(root.glob("*/policy.pt"), key=lambda p: (p.parent.name != HEADLINE_POLICY, p.parent.name)):
        folder = policy.parent
        card, sweep = folder / "card.md", folder / "sweep.csv"
        out.append(Bundled(folder.name, policy, card if card.is_file() else None, sweep if sweep.is_file() else None))
    return out


def card_text(bundled: Bundled) -> str | None:
    if bundled.card is None:
        return None
    try:
        return bundled.card.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def card_markdown(text: str) -> str:
    """A card for st.markdown inside an expander. Key-value tables written with an empty header row (`| | |`) would
    show that empty row first: they become bullet lists (`- **key**: value`); headings go two levels down."""
    lines, out, i, fenced = text.splitlines(), [], 0, False
    while i < len(lines):
        if lines[i].lstrip().startswith("```"):
            fenced = not fenced
        if fenced:
            out.append(lines[i])
            i += 1
            continue
        cells = _cells(lines[i])
        if (cells is not None and not any(cells) and i + 1 < len(lines)
                and re.fullmatch(r"\s*\|?(\s*:?-+:?\s*\|)+\s*:?-*:?\s*\|?\s*", lines[i + 1])):
            i += 2
            while i < len(lines) and (row := _cells(lines[i])) is not None:
                key, *rest = row
                out.append(f"- **{key}**: {' · '.join(c for c in rest if c)}" if key else f"- {' · '.join(rest)}")
                i += 1
            continue
        heading = re.match(r"(#{1,4}) ", lines[i])  # inside an expander: page-sized headings would dwarf it
        out.append("##" + lines[i] if heading else lines[i])
        i += 1
    return "\n".join(out)


def _cells(line: str) -> list[str] | None:
    """Cells of a markdown table row, or None if the line is not one."""
    line = line.strip()
    if not (line.startswith("|") and line.endswith("|") and len(line) > 1):
        return None
    return [c.strip() for c in line[1:-1].split("|")]


def plain_message(exc: BaseException) -> str:
    """An exception's message for people: no exception class names or numpy reprs, first line only."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else "an unexpected problem"
    text = re.sub(r"\bnp\.(?:float|int|uint|bool_?)\w*\(([^()]*)\)", r"\1", text)  # np.float64(0.5) -> 0.5
    text = re.sub(r"^(?:[A-Za-z_.]*(?:Error|Exception|Warning):\s*)+", "", text)  # RuntimeError: ... -> ...
    text = re.sub(r"[:,]?\s*\b[A-Z]\w*(?:Error|Exception)\b", "", text)  # (…: UnpicklingError) -> (…)
    return text[:400].rstrip(" :;,") or "an unexpected problem"


# --------------------------------------------------------------------------- checkpoints
def checkpoint_label(name: str) -> str:
    """Short name of a checkpoint (sorl_core.checkpoint.checkpoint_label), imported late: it brings torch."""
    from sorl_core.checkpoint import checkpoint_label as label

    return label(name)


def digest_bytes(data: bytes) -> str:
    """The same key as ``sorl_core.render.checkpoint_digest`` of a file holding these bytes."""
    return hashlib.sha256(data).hexdigest()[:16]


def store_upload(data: bytes, folder: str | Path | None = None) -> Path:
    """Write uploaded bytes to <tmp>/sorl-lab-uploads/<digest>.pt (content-addressed, atomic); return the path.

    Two sessions uploading the same file share one file; a half-written file is never visible.
    """
    folder = Path(folder) if folder is not None else Path(tempfile.gettempdir()) / "sorl-lab-uploads"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{digest_bytes(data)}.pt"
    if path.is_file() and path.stat().st_size == len(data):
        return path
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=path.stem, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@lru_cache(maxsize=32)
def env_spaces(env_name: str) -> tuple[int, int, int | None]:
    """(observation size, action size, episode step limit) of an OGBench environment; ValueError if unknown."""
    from sorl_core.rollout import make_env

    env = make_env(env_name)
    try:
        steps = env.spec.max_episode_steps if env.spec else None
        return int(env.observation_space.shape[0]), int(env.action_space.shape[0]), steps
    finally:
        env.close()


@dataclass
class Loaded:
    """A checked OGBench checkpoint, ready to run."""

    agent: object
    extra: dict
    env_name: str
    digest: str
    path: Path
    name: str
    obs_dim: int
    action_dim: int
    max_episode_steps: int | None

    @property
    def m_disc(self) -> int:
        return int(self.agent.config.m_disc)

    @property
    def m_btt(self) -> int:
        return int(self.agent.config.m_btt)

    def m_options(self) -> list[int]:
        return [m for m in M_OPTIONS if m <= self.m_disc]


def load_checkpoint(path: str | Path, name: str | None = None, digest: str | None = None) -> Loaded:
    """Load and check an OGBench policy; raises CheckpointError with a message for the user.

    Refused: unreadable, corrupt or foreign files (read_checkpoint), checkpoints without an OGBench
    environment (toy-world policies), goal-conditioned environments, and policies whose observation or
    action size differs from the environment's.
    """
    from sorl_core.checkpoint import CheckpointError, load_agent

    path = Path(path)
    name = name or path.name
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    with open(path, "rb") as f:
        data = f.read()
    buf = io.BytesIO(data)
    buf.name = name  # read_checkpoint names the file in its messages
    agent, extra = load_agent(buf, device="cpu")
    env_name = extra.get("env") if isinstance(extra, dict) else None
    if not env_name:
        world = extra.get("world") if isinstance(extra, dict) else None
        what = f"a policy of the toy 2-D world {world!r}" if world else "not tied to any OGBench environment"
        raise CheckpointError(
            f"{name} is a SORL Lab checkpoint, but {what} (its 'extra' names no 'env'). This page runs OGBench "
            "policies: a checkpoint written by `sorl-lab train --env ...`. Toy policies belong on the Home page.")
    env_name = str(env_name)
    if "-singletask" not in env_name:
        raise CheckpointError(f"{name} names {env_name!r}, a goal-conditioned environment; this page runs "
                              "single-task policies (e.g. cube-single-play-singletask-task2-v0).")
    try:
        obs_dim, action_dim, steps = env_spaces(env_name)
    except ValueError as exc:
        raise CheckpointError(f"{name} names environment {env_name!r}, which cannot be made here: {exc}") from None
    cfg = agent.config
    if (cfg.obs_dim, cfg.action_dim) != (obs_dim, action_dim):
        raise CheckpointError(
            f"{name} does not fit {env_name}: the policy takes observations of size {cfg.obs_dim} and gives actions "
            f"of size {cfg.action_dim}, the environment has observations of size {obs_dim} and actions of size "
            f"{action_dim}.")
    agent.sample(np.zeros((2, obs_dim), dtype=np.float32), m_inf=1, n=2, generator=0)  # torch's one-off start-up
    return Loaded(agent, dict(extra), env_name, digest or digest_bytes(data), path, name, obs_dim, action_dim, steps)


# --------------------------------------------------------------------------- configurations
def network_calls(m: int, n: int) -> int:
    """Per action: M_inf Euler steps for each of N candidates, plus N critic calls when there is a choice."""
    return m * n + (n if n > 1 else 0)


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
    from sorl_core.rollout import EnvBatch, episode_seeds, run_episodes

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
            q_all = np.concatenate([q for q in res.q_traces if len(q)]) if res.q_traces else np.zeros(0)
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
                f"{r['mean_length']:.1f}", str(r["network_calls"]), f"{r['ms_per_action']:.3f}", f"{r['mean_q']:.3f}"]

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
    from sorl_core.render import DEFAULT_CACHE_DIR, render_episode

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
    """All videos in one mp4 (sorl_core.render.side_by_side), panels in the order given."""
    from sorl_core.render import side_by_side

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
