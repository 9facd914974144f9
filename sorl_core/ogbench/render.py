"""Rollout videos: MuJoCo rendered headless on the CPU, H.264 mp4 that browsers play, cached.

A video replays one episode of an evaluation exactly: episode i of K from seed s is played in a batch of
K environments with the evaluation's reset seeds and sampling-noise generator (the noise of a step is drawn
for all running episodes at once, so episode i's noise depends on K), and only environment i is rendered.
Its outcome is therefore the table's (`sorl-lab evaluate`, the rollouts page) for the same K and seed.

CPU rendering is slow (a few frames per second at default quality, ~30-40 with shadows and
multisampling off), so we render every k-th step and cache each video by (checkpoint, config, seed, K,
episode, rendering settings). Set MUJOCO_GL (egl or osmesa) before mujoco is imported; sorl_core does so.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ..budgets import parse_config
from ..checkpoint import CheckpointError, checkpoint_digest, checkpoint_label, load_agent
from ..io import atomic_path
from .rollouts import EnvBatch, episode_seeds, run_episodes, sample_seed

RENDER_VERSION = 2  # bump when the picture changes, so old cache entries are not reused
DEFAULT_CACHE_DIR = "~/.cache/sorl-lab/renders"
CONTROL_HZ = 20  # OGBench manipulation: control_timestep 0.05 s


@dataclass
class RenderConfig:
    """Render rollouts of several (M_inf, N) configurations from the same initial state."""

    checkpoint: str
    """Checkpoint of an OGBench policy (`sorl-lab train --env ...`, or a bundled one)."""
    configs: tuple[str, ...] = ("1x1", "8x1", "8x16")
    """Configurations as M_INFxN, e.g. 8x16 = 8 Euler steps, best of 16 candidates."""
    seed: int = 0
    """Seed of the evaluation whose episode is replayed (initial states and sampling noise)."""
    episode: int = 0
    """Which episode to replay: 0 .. episodes-1 (the same initial state in every configuration)."""
    episodes: int = 1
    """K of the evaluation to replay (`sorl-lab evaluate --episodes K`): the noise depends on it."""
    every: int = 2
    """Render every k-th environment step (the video still plays in real time)."""
    quality: Literal["fast", "default"] = "fast"
    """fast: no shadows, no multisampling (flatter, ~5x quicker on a CPU); default: OGBench's look."""
    size: int = 240
    """Frame width and height in pixels (rounded up to a multiple of 16 for H.264)."""
    out: str = "runs/videos"
    """Folder for the mp4 files."""
    cache_dir: str = DEFAULT_CACHE_DIR
    """Cache of rendered rollouts (env SORL_LAB_CACHE overrides)."""
    extrapolate: bool = False
    """Allow M_inf above the trained M_disc."""
    device: str = "auto"
    """Where the policy runs: auto, cpu or cuda."""


@dataclass
class RolloutVideo:
    """One rendered episode and what happened in it."""

    path: Path
    m_inf: int
    n: int
    success: bool
    length: int
    episode_return: float
    q: list[float]  # Q of each chosen action (online critic at k = m_inf)
    frames: int
    episode: int = 0
    episodes: int = 1
    cached: bool = False

    @property
    def label(self) -> str:
        return f"M={self.m_inf} N={self.n}"

    @property
    def outcome(self) -> str:
        return outcome_text(self.success, self.length)


def _round16(size: int) -> int:
    return max(16, -(-int(size) // 16) * 16)


def _fast_scene(scene) -> None:
    import mujoco

    scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
    scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0


def _label(frame: np.ndarray, lines: list[str], colour=(255, 255, 255)) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    img = Image.fromarray(frame)
    draw = ImageDraw.Draw(img, "RGBA")
    font = ImageFont.load_default(size=max(10, frame.shape[0] // 17))
    height = (font.size + 4) * len(lines) + 4
    draw.rectangle([0, 0, frame.shape[1], height], fill=(0, 0, 0, 150))
    for i, line in enumerate(lines):
        draw.text((6, 3 + i * (font.size + 4)), line, fill=colour, font=font)
    return np.asarray(img)


def write_mp4(path: Path, frames: list[np.ndarray], fps: float) -> Path:
    """H.264 yuv420p (browser-playable), written to a temporary file and renamed."""
    import imageio.v2 as imageio

    with atomic_path(path) as tmp, imageio.get_writer(
            tmp, format="FFMPEG", fps=fps, codec="libx264", pixelformat="yuv420p", macro_block_size=16, quality=7,
            ffmpeg_log_level="error") as writer:
        for frame in frames:
            writer.append_data(frame)
    return path


def outcome_text(success: bool, length: int) -> str:
    return f"success at step {length}" if success else f"failed ({length} steps)"


def grab_frame(env, quality: str = "fast", first: bool = False) -> np.ndarray:
    """One RGB frame of an OGBench environment (its `unwrapped` env). quality "fast" drops anti-aliasing and
    shadows (set before the first frame, when `first`), several times quicker on a CPU."""
    if first and quality == "fast":
        env._model.vis.quality.offsamples = 0  # before the renderer exists
    return env.render(**({"scene_callback": _fast_scene} if quality == "fast" else {}))


def render_episode(agent, env_name: str, configs, seed: int, cache_key: str, *, episode: int = 0, episodes: int = 1,
                   every: int = 2, quality: str = "fast", size: int = 240, cache_dir: str | Path = DEFAULT_CACHE_DIR,
                   extrapolate: bool = False, verifier: str = "q", beta: float = 1.0,
                   on_frame: Callable[[int, int], None] | None = None) -> list[RolloutVideo]:
    """Episode `episode` of a K = `episodes` evaluation from `seed`, for each (m_inf, n) in `configs`; cached.
    `verifier` / `beta`: how best-of-N ranks (as in the evaluation being replayed).

    Frame j shows step min(j * every, length), so clips of different lengths share one time axis; the last
    frame is the final state (where success is judged), held for a second. `on_frame(config_index, count)`.
    """
    if every < 1:
        raise ValueError("every must be >= 1")
    if not 0 <= episode < episodes:
        raise ValueError(f"episode must be between 0 and {episodes - 1}, got {episode}")
    for m, _ in configs:
        agent.check_m_inf(m, extrapolate)
    size = _round16(size)
    cache = Path(os.environ.get("SORL_LAB_CACHE") or cache_dir).expanduser()
    videos: list[RolloutVideo] = []
    envs = None
    try:
        for c, (m_inf, n) in enumerate(configs):
            ranked = "" if n == 1 or verifier == "q" else f"-{verifier}" + (f"{beta:g}" if verifier == "q-lcb" else "")
            stem = (f"{cache_key}-{env_name}-s{seed}-K{episodes}-e{episode}-M{m_inf}xN{n}{ranked}-k{every}-{quality}-{size}px"
                    f"-v{RENDER_VERSION}")
            video, meta_path = cache / f"{stem}.mp4", cache / f"{stem}.json"
            if video.is_file() and meta_path.is_file():
                videos.append(RolloutVideo(path=video, cached=True, **json.loads(meta_path.read_text())))
                continue
            if envs is None:  # all K local (only `episode` is rendered): the batch must match the evaluation's
                envs = EnvBatch(env_name, episodes, workers=1, width=size, height=size)
            videos.append(_render_one(agent, envs, m_inf, n, seed, episode, every, quality, extrapolate, video, meta_path,
                                      None if on_frame is None else (lambda count, c=c: on_frame(c, count)),
                                      verifier, beta))
    finally:
        if envs is not None:
            envs.close()
    return videos


def _render_one(agent, envs: EnvBatch, m_inf: int, n: int, seed: int, episode: int, every: int, quality: str,
                extrapolate: bool, video: Path, meta_path: Path, on_frame, verifier: str = "q",
                beta: float = 1.0) -> RolloutVideo:
    env = envs.local.envs[episode].unwrapped
    frames: list[np.ndarray] = []

    def grab(t: int, stepped: np.ndarray) -> None:
        if t % every == 0 and stepped[episode]:  # stepped: the episode was still running at step t
            frames.append(grab_frame(env, quality, first=not frames))
            if on_frame is not None:
                on_frame(len(frames))

    result = run_episodes(agent, envs, m_inf, n, episode_seeds(seed, envs.count), sample_seed=sample_seed(seed, m_inf, n),
                          extrapolate=extrapolate, record_q=True, on_env_step=grab, stop_after=episode,
                          verifier=verifier, beta=beta)
    success, length = bool(result.success[episode]), int(result.lengths[episode])
    if length % every:
        frames.append(grab_frame(env, quality))  # the final state (success is judged here)
    outcome = outcome_text(success, length)
    head = f"M_inf={m_inf}  N={n}"
    labelled = [_label(f, [head, f"step {min(i * every, length)}"]) for i, f in enumerate(frames[:-1])]
    labelled.append(_label(frames[-1], [head, outcome], (120, 255, 120) if success else (255, 140, 140)))
    labelled += [labelled[-1]] * max(1, round(CONTROL_HZ / every))  # hold the outcome for a second
    write_mp4(video, labelled, fps=CONTROL_HZ / every)
    meta = {"m_inf": m_inf, "n": n, "success": success, "length": length,
            "episode_return": float(result.returns[episode]), "q": [float(v) for v in result.q_traces[episode]],
            "frames": len(labelled), "episode": episode, "episodes": envs.count}
    meta_path.write_text(json.dumps(meta))
    return RolloutVideo(path=video, **meta)


def side_by_side(videos: list[RolloutVideo], path: Path) -> Path:
    """All configurations in one video, panels in the order given, shorter ones holding their last frame."""
    clips = [_read_frames(v.path) for v in videos]
    length = max(len(c) for c in clips)
    frames = [np.concatenate([c[min(i, len(c) - 1)] for c in clips], axis=1) for i in range(length)]
    fps = _read_fps(videos[0].path)
    return write_mp4(path, frames, fps)


def video_html(path: str | Path, width: int) -> str:
    """An mp4 for a notebook: embedded, autoplaying, looping and muted at `width` px, with play/pause, restart and a
    time slider *below* the picture (the browser's own controls would cover the bottom of the panels)."""
    import base64
    import uuid

    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    vid = f"sorl-video-{uuid.uuid4().hex[:8]}"
    get = f"document.getElementById('{vid}')"
    return (
        f'<div style="width:{int(width)}px;max-width:100%"><video id="{vid}" width="{int(width)}" style="max-width:100%;'
        f'display:block" autoplay loop muted playsinline src="data:video/mp4;base64,{data}" '
        f'ontimeupdate="{get}.nextElementSibling.querySelector(\'input\').value = this.currentTime / (this.duration || 1)">'
        f'</video><div style="display:flex;gap:8px;align-items:center;margin-top:4px">'
        f'<button onclick="const v = {get}; v.paused ? v.play() : v.pause()">play / pause</button>'
        f'<button onclick="const v = {get}; v.currentTime = 0; v.play()">restart</button>'
        f'<input type="range" min="0" max="1" step="0.001" value="0" style="flex:1" aria-label="time" '
        f'oninput="const v = {get}; v.pause(); v.currentTime = this.value * (v.duration || 0)"></div></div>'
    )


def _read_frames(path: Path) -> list[np.ndarray]:
    import imageio.v2 as imageio

    with imageio.get_reader(path, format="FFMPEG") as reader:
        return [np.asarray(f) for f in reader]


def _read_fps(path: Path) -> float:
    import imageio.v2 as imageio

    with imageio.get_reader(path, format="FFMPEG") as reader:
        return float(reader.get_meta_data()["fps"])


def render(cfg: RenderConfig, on_progress: Callable[[str], None] | None = None) -> tuple[list[RolloutVideo], Path]:
    """Render every configuration and the side-by-side video; returns (videos, side-by-side path)."""
    configs = [parse_config(c) for c in cfg.configs]
    if not configs:
        raise ValueError("give at least one configuration, e.g. --configs 1x1 8x1 8x16")
    agent, extra = load_agent(cfg.checkpoint, device=cfg.device)
    env_name = extra.get("env")
    if not env_name:
        raise CheckpointError(f"{cfg.checkpoint} is not an OGBench checkpoint; render needs one trained with `sorl-lab train --env ...`")
    for m, n in configs:
        agent.check_m_inf(m, cfg.extrapolate)
        if n < 1:
            raise ValueError(f"N must be >= 1 in {m}x{n}")
    key = checkpoint_digest(cfg.checkpoint)
    out = Path(cfg.out)
    which = f"-s{cfg.seed}" + (f"-K{cfg.episodes}-e{cfg.episode}" if cfg.episodes > 1 else "")
    videos = render_episode(agent, env_name, configs, cfg.seed, key, episode=cfg.episode, episodes=cfg.episodes,
                            every=cfg.every, quality=cfg.quality, size=cfg.size, cache_dir=cfg.cache_dir,
                            extrapolate=cfg.extrapolate)
    for video in videos:
        target = out / f"{checkpoint_label(cfg.checkpoint)}{which}-M{video.m_inf}xN{video.n}.mp4"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(video.path.read_bytes())
        if on_progress is not None:
            on_progress(f"{video.label}: {video.outcome}{' (cached)' if video.cached else ''} -> {target}")
    combined = side_by_side(videos, out / f"{checkpoint_label(cfg.checkpoint)}{which}-side-by-side.mp4")
    return videos, combined
