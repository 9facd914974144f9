"""`sorl-lab` console script: train, bench, data generate, data info."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Annotated, Union

import tyro

from .bench import BenchConfig, print_report, run_bench
from .checkpoint import CheckpointError
from .ogbench_data import DEFAULT_DATASET_DIR, DataGenerateConfig, dataset_paths, dataset_spec, generate_dataset, official_files_help
from .train import ToyTrainConfig, train_toy


@dataclass
class DataInfoConfig:
    """Say where a dataset's files are looked for, whether they are there, and how to get them."""

    dataset: tyro.conf.Positional[str] = "cube-single-play-v0"
    """Dataset name, e.g. cube-single-play-v0."""
    dataset_dir: str = DEFAULT_DATASET_DIR
    """Folder of `<name>.npz` and `<name>-val.npz`."""


@dataclass
class DataCommand:
    """OGBench datasets: generate them offline with OGBench's oracles, or point at the official files."""

    action: tyro.conf.OmitSubcommandPrefixes[Union[
        Annotated[DataGenerateConfig, tyro.conf.subcommand("generate")],
        Annotated[DataInfoConfig, tyro.conf.subcommand("info")],
    ]]


Command = Union[
    Annotated[ToyTrainConfig, tyro.conf.subcommand("train", description="Train SORL on a toy 2D world.")],
    Annotated[BenchConfig, tyro.conf.subcommand("bench", description="Time training iterations and sampling.")],
    Annotated[DataCommand, tyro.conf.subcommand("data", description="OGBench datasets offline.")],
]


def data_info(cfg: DataInfoConfig) -> None:
    train_path, val_path = dataset_paths(cfg.dataset, cfg.dataset_dir)
    for path in (train_path, val_path):
        print(f"{'found  ' if path.exists() else 'missing'} {path}")
    if not (train_path.exists() and val_path.exists()):
        try:
            dataset_spec(cfg.dataset)
        except ValueError as exc:  # needs expert policies (the message says how to supply it), or unknown
            print(exc)
            return
        print(f"Generate it here: sorl-lab data generate {cfg.dataset} --dataset-dir {cfg.dataset_dir}")
        print(f"Or use the official files. {official_files_help(cfg.dataset, cfg.dataset_dir)}")


def main(argv: list[str] | None = None) -> int:
    cmd = tyro.cli(Command, args=argv, prog="sorl-lab")
    try:
        if isinstance(cmd, ToyTrainConfig):
            _, run_dir = train_toy(cmd)
            print(f"run folder: {run_dir} (metrics.csv, eval.csv, config.json, checkpoint.pt)")
        elif isinstance(cmd, BenchConfig):
            print_report(run_bench(cmd), cmd.json)
        elif isinstance(cmd.action, DataGenerateConfig):
            result = generate_dataset(cmd.action)
            print("\n".join(result.paths))
        else:
            data_info(cmd.action)
    except (CheckpointError, ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"sorl-lab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
