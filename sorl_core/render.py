"""Rollout videos: MuJoCo rendered headless on the CPU, H.264 mp4 that browsers play, cached.

CPU rendering is slow (a few frames per second at default quality, ~30-40 with shadows and
multisampling off), so we render every k-th step and cache each video by (checkpoint, config, seed,
rendering settings). Set MUJOCO_GL (egl or osmesa) before mujoco is imported; sorl_core does so.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from .checkpoint import CheckpointError, load_agent
from .rollout import EnvBatch, episode_seeds, run_episodes, sample_seed

RENDER_VERSION = 1  # bump when the picture changes, so old cache entries are not reused
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
    """Episode seed: every configuration starts from the same initial state (and the evaluation's episode 0 of this seed)."""
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
    cached: bool = False

    @property
    def label(self) -> str:
        return f"M={self.m_inf} N={self.n}"

    @property
    def outcome(self) -> str:
        return f"success at step {self.length}" if self.success else f"failed ({self.length} steps)"


def parse_config(text: str) -> tuple[int, int]:
    """'8x16' -> (8, 16), with a clear error for anything else."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(text))
    if not match:
        raise ValueError(f"configuration {text!r} is not M_INFxN (e.g. 8x16)")
    return int(match.group(1)), int(match.group(2))


def checkpoint_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


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

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".mp4")
    os.close(fd)
    try:
        with imageio.get_writer(tmp, fps=fps, codec="libx264", pixelformat="yuv420p", macro_block_size=16,
                                quality=7, ffmpeg_log_level="error") as writer:
            for frame in frames:
                writer.append_data(frame)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def render_rollout(agent, env_name: str, m_inf: int, n: int, seed: int, cache_key: str, *, every: int = 2,
                   quality: str = "fast", size: int = 240, cache_dir: str | Path = DEFAULT_CACHE_DIR,
                   extrapolate: bool = False, on_frame: Callable[[int], None] | None = None) -> RolloutVideo:
    """One episode of (m_inf, n) from the seed's initial state, rendered every `every` steps; cached."""
    if every < 1:
        raise ValueError("every must be >= 1")
    agent.check_m_inf(m_inf, extrapolate)
    size = _round16(size)
    cache = Path(os.environ.get("SORL_LAB_CACHE") or cache_dir).expanduser()
    stem = f"{cache_key}-{env_name}-s{seed}-M{m_inf}xN{n}-k{every}-{quality}-{size}px-v{RENDER_VERSION}"
    video, meta_path = cache / f"{stem}.mp4", cache / f"{stem}.json"
    if video.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        return RolloutVideo(path=video, cached=True, **meta)

    frames: list[np.ndarray] = []
    with EnvBatch(env_name, 1, workers=1, width=size, height=size) as envs:
        env = envs.local.envs[0].unwrapped
        options = {"scene_callback": _fast_scene} if quality == "fast" else {}

        def grab(t: int, running: np.ndarray) -> None:
            if t % every == 0:
                if not frames and quality == "fast":
                    env._model.vis.quality.offsamples = 0  # before the renderer exists
                frames.append(env.render(**options))
                if on_frame is not None:
                    on_frame(len(frames))

        result = run_episodes(agent, envs, m_inf, n, episode_seeds(seed, 1), sample_seed=sample_seed(seed, m_inf, n),
                              extrapolate=extrapolate, record_q=True, on_env_step=grab)
        frames.append(env.render(**options))  # the final state (success is judged here)

    success, length = bool(result.success[0]), int(result.lengths[0])
    outcome = f"success at step {length}" if success else f"failed ({length} steps)"
    labelled = [_label(f, [f"M_inf={m_inf}  N={n}", f"step {min(i * every, length)}"]) for i, f in enumerate(frames[:-1])]
    labelled.append(_label(frames[-1], [f"M_inf={m_inf}  N={n}", outcome], (120, 255, 120) if success else (255, 140, 140)))
    labelled += [labelled[-1]] * int(CONTROL_HZ / every)  # hold the outcome for a second
    write_mp4(video, labelled, fps=CONTROL_HZ / every)
    meta = {"m_inf": m_inf, "n": n, "success": success, "length": length,
            "episode_return": float(result.returns[0]), "q": [float(v) for v in result.q_traces[0]], "frames": len(labelled)}
    meta_path.write_text(json.dumps(meta))
    return RolloutVideo(path=video, **meta)


def side_by_side(videos: list[RolloutVideo], path: Path) -> Path:
    """All configurations in one video, panels in the order given, shorter ones holding their last frame."""
    clips = [_read_frames(v.path) for v in videos]
    length = max(len(c) for c in clips)
    frames = [np.concatenate([c[min(i, len(c) - 1)] for c in clips], axis=1) for i in range(length)]
    fps = _read_fps(videos[0].path)
    return write_mp4(path, frames, fps)


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
    videos = []
    for m, n in configs:
        video = render_rollout(agent, env_name, m, n, cfg.seed, key, every=cfg.every, quality=cfg.quality, size=cfg.size,
                               cache_dir=cfg.cache_dir, extrapolate=cfg.extrapolate)
        target = out / f"{Path(cfg.checkpoint).stem}-s{cfg.seed}-M{m}xN{n}.mp4"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(video.path.read_bytes())
        videos.append(video)
        if on_progress is not None:
            on_progress(f"{video.label}: {video.outcome}{' (cached)' if video.cached else ''} -> {target}")
    combined = side_by_side(videos, out / f"{Path(cfg.checkpoint).stem}-s{cfg.seed}-side-by-side.mp4")
    return videos, combined
