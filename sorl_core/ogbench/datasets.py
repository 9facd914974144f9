"""OGBench datasets: which ones, the official recipe of each, where their files live, and loading them with
OGBench's own loader (official files a user copies in are read the same way). Regenerating them offline is
sorl_core/ogbench/generation.py.

The official file format: `<dataset_dir>/<name>.npz` and `<name>-val.npz` with `observations` (float32), `actions`
(float32, in [-1, 1]), `terminals` (bool, 1 on the last row of each episode), `qpos`, `qvel` (float32, the simulator
state of the same row's observation) and, for scene and puzzle, `button_states` (int64).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DATASET_DIR = "~/.ogbench/data"
"""Where OGBench itself looks for (and downloads) dataset files."""
OFFICIAL_DATASET_URL = "https://rail.eecs.berkeley.edu/datasets/ogbench"
"""Base URL of the official files: `<URL>/<name>.npz` and `<URL>/<name>-val.npz`."""

DATASET_TYPES = ("play", "noisy", "navigate", "stitch", "explore")
EXPERT_POLICY_PREFIXES = ("antmaze", "humanoidmaze", "antsoccer")


# --------------------------------------------------------------------------------------------------
# Which datasets, and the official recipe of each
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetSpec:
    """The official recipe of one dataset (arguments of OGBench's `data_gen_scripts/commands.sh`)."""

    name: str
    """Dataset name, e.g. `cube-single-play-v0` (the file is `<name>.npz`)."""
    env_id: str
    """Gymnasium id the script collects with, e.g. `cube-single-v0`."""
    family: str
    """`cube`, `scene`, `puzzle` (generate_manipspace.py) or `pointmaze` (generate_locomaze.py)."""
    kind: str
    """Dataset type: `play`/`noisy` (manipulation), `navigate`/`stitch` (mazes)."""
    episodes: int
    """Official number of training episodes (validation: a tenth, at least one)."""
    episode_length: int
    """Rows per episode (`max_episode_steps` of the script)."""
    noise: float
    """`--noise`: plan-oracle noise scale (play), max per-episode noise xi (noisy), Gaussian std (mazes)."""
    p_random_action: float = 0.0
    """`--p_random_action`: probability of a uniformly random action (noisy datasets)."""


# Official sizes (commands.sh): manipulation episodes by environment.
_CUBE_EPISODES = {"single": 1000, "double": 1000, "triple": 3000, "quadruple": 5000}
_PUZZLE_EPISODES = {"3x3": 1000, "4x4": 1000, "4x5": 3000, "4x6": 5000}
_MAZE_SIZES = ("medium", "large", "giant", "teleport")


def _build_specs() -> dict[str, DatasetSpec]:
    specs: dict[str, DatasetSpec] = {}

    def manip(name, env_id, family, kind, episodes):
        if kind == "play":
            specs[name] = DatasetSpec(name, env_id, family, kind, episodes, 1001, noise=0.1)
        else:
            p_random = 0.2 if family == "puzzle" else 0.1
            specs[name] = DatasetSpec(name, env_id, family, kind, episodes, 1001, noise=0.1, p_random_action=p_random)

    for kind in ("play", "noisy"):
        for size, n in _CUBE_EPISODES.items():
            manip(f"cube-{size}-{kind}-v0", f"cube-{size}-v0", "cube", kind, n)
        manip(f"scene-{kind}-v0", "scene-v0", "scene", kind, 1000)
        for size, n in _PUZZLE_EPISODES.items():
            manip(f"puzzle-{size}-{kind}-v0", f"puzzle-{size}-v0", "puzzle", kind, n)
    for maze in _MAZE_SIZES:
        env_id = f"pointmaze-{maze}-v0"
        episodes, length = (500, 2001) if maze == "giant" else (1000, 1001)
        specs[f"pointmaze-{maze}-navigate-v0"] = DatasetSpec(
            f"pointmaze-{maze}-navigate-v0", env_id, "pointmaze", "navigate", episodes, length, noise=0.5
        )
        specs[f"pointmaze-{maze}-stitch-v0"] = DatasetSpec(
            f"pointmaze-{maze}-stitch-v0", env_id, "pointmaze", "stitch", 5000, 201, noise=0.5
        )
    return specs


DATASET_SPECS: dict[str, DatasetSpec] = _build_specs()
SUPPORTED_DATASETS: tuple[str, ...] = tuple(DATASET_SPECS)


class UnsupportedDatasetError(ValueError):
    """A real OGBench dataset that cannot be regenerated here; the message says how to supply it."""


def official_files_help(name: str, dataset_dir: str | os.PathLike | None = None) -> str:
    """How to supply the official files of dataset `name` by hand."""
    train_path, val_path = dataset_paths(name, dataset_dir)
    return (
        f"Download the official files on a machine with network access:\n"
        f"  {OFFICIAL_DATASET_URL}/{name}.npz\n"
        f"  {OFFICIAL_DATASET_URL}/{name}-val.npz\n"
        f"(or `python -c \"import ogbench; ogbench.download_datasets(['{name}'])\"` there), and copy them here as\n"
        f"  {train_path.resolve()}\n"
        f"  {val_path.resolve()}\n"
        f"(that folder is `--dataset-dir`, by default OGBench's usual place {DEFAULT_DATASET_DIR}; any other folder "
        f"works with `--dataset-dir`)."
    )


def dataset_name_for(env_name: str) -> str:
    """Dataset (file) name of an OGBench environment/dataset name.

    `cube-single-play-singletask-task2-v0` and `cube-single-play-singletask-v0` -> `cube-single-play-v0`;
    `...-oraclerep-v0` -> without `oraclerep`; a plain dataset name is returned unchanged.
    Mirrors the renaming inside `ogbench.make_env_and_datasets`.
    """
    splits = env_name.split("-")
    if "singletask" in splits:
        pos = splits.index("singletask")
        name = "-".join(splits[:pos] + splits[-1:])
    elif "oraclerep" in splits:
        name = "-".join(splits[: splits.index("oraclerep")] + splits[-1:])
    else:
        name = env_name
    parts = name.split("-")
    if len(parts) < 3 or parts[-2] not in DATASET_TYPES:
        raise ValueError(
            f"{env_name!r} names no dataset type: OGBench names need one of {DATASET_TYPES} before the "
            f"version (or before `singletask`), e.g. `cube-single-play-singletask-task2-v0`, `cube-single-play-v0`"
        )
    return name


def dataset_spec(name: str, dataset_dir: str | os.PathLike | None = None) -> DatasetSpec:
    """Recipe of a dataset that can be generated; clear errors for everything else (saying where official files
    go in `dataset_dir`).

    Raises `UnsupportedDatasetError` (a ValueError) for real OGBench datasets that need downloaded
    expert policies or pixels, and ValueError listing the supported names for anything unknown.
    """
    if name in DATASET_SPECS:
        return DATASET_SPECS[name]
    words = name.split("-")
    family = words[1] if words[0] == "visual" and len(words) > 1 else words[0]
    if family in EXPERT_POLICY_PREFIXES:
        raise UnsupportedDatasetError(
            f"{name!r} cannot be generated offline: OGBench collects {family} datasets with trained expert "
            f"policies (SAC agents) that are not part of the ogbench package and must be downloaded.\n"
            + official_files_help(name, dataset_dir)
        )
    if words[0] in ("visual", "powderworld"):
        raise UnsupportedDatasetError(
            f"{name!r} is not generated by sorl-lab (only state-based datasets are).\n"
            + official_files_help(name, dataset_dir)
        )
    raise ValueError(
        f"unknown dataset {name!r}. Datasets sorl-lab can generate: {', '.join(SUPPORTED_DATASETS)}. "
        f"antmaze/humanoidmaze/antsoccer datasets can be supplied as official files."
    )


def validation_episodes(train_episodes: int) -> int:
    """A tenth of the training episodes, at least one (the script uses `num_episodes // 10`)."""
    return max(1, train_episodes // 10)


def dataset_paths(name: str, dataset_dir: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """(`<dir>/<name>.npz`, `<dir>/<name>-val.npz`), the names OGBench's loader reads."""
    root = Path(os.path.expanduser(str(dataset_dir if dataset_dir is not None else DEFAULT_DATASET_DIR)))
    return root / f"{name}.npz", root / f"{name}-val.npz"


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------


def load_dataset_and_env(
    env_name: str,
    dataset_dir: str | os.PathLike | None = None,
    *,
    compact_dataset: bool = False,
    add_info: bool = False,
    **env_kwargs,
):
    """(env, train, val) from `ogbench.make_env_and_datasets`, without ever downloading.

    `env_name` is any OGBench name, e.g. `cube-single-play-v0` (goal-conditioned) or
    `cube-single-play-singletask-task2-v0` (rewards relabelled by OGBench from each row's state). The
    files read are `<dataset_dir>/<dataset_name_for(env_name)>.npz` and `-val.npz`; if one is missing
    this raises FileNotFoundError saying how to generate or supply them. `compact_dataset` and
    `add_info` (keep `qpos`, `qvel`, `button_states`) are passed to OGBench, as are `env_kwargs`.
    """
    name = dataset_name_for(env_name)
    train_path, val_path = dataset_paths(name, dataset_dir)
    missing = [p for p in (train_path, val_path) if not p.is_file()]
    if missing:
        where = train_path.parent
        lines = [f"dataset files missing: {', '.join(map(str, missing))}."]
        if name in DATASET_SPECS:
            lines.append(
                f"Generate them with `sorl-lab data generate {name} --dataset-dir {where}` (OGBench's scripted "
                f"oracles, about 15 min for 1M transitions on 2 cores), or supply the official files:"
            )
        lines.append(official_files_help(name, where))
        raise FileNotFoundError("\n".join(lines))

    import ogbench

    return ogbench.make_env_and_datasets(
        env_name, dataset_dir=str(train_path.parent), compact_dataset=compact_dataset, add_info=add_info, **env_kwargs
    )


__all__ = [
    "DATASET_SPECS",
    "DEFAULT_DATASET_DIR",
    "OFFICIAL_DATASET_URL",
    "SUPPORTED_DATASETS",
    "DatasetSpec",
    "UnsupportedDatasetError",
    "dataset_name_for",
    "dataset_paths",
    "dataset_spec",
    "load_dataset_and_env",
    "official_files_help",
    "validation_episodes",
]
