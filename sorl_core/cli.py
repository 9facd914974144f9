"""`sorl-lab` console script: train, bench."""

from __future__ import annotations

import sys
from typing import Annotated, Union

import tyro

from .bench import BenchConfig, print_report, run_bench
from .checkpoint import CheckpointError
from .train import ToyTrainConfig, train_toy

Command = Union[
    Annotated[ToyTrainConfig, tyro.conf.subcommand("train", description="Train SORL on a toy 2D world.")],
    Annotated[BenchConfig, tyro.conf.subcommand("bench", description="Time training iterations and sampling.")],
]


def main(argv: list[str] | None = None) -> int:
    cmd = tyro.cli(Command, args=argv, prog="sorl-lab")
    try:
        if isinstance(cmd, ToyTrainConfig):
            _, run_dir = train_toy(cmd)
            print(f"run folder: {run_dir} (metrics.csv, eval.csv, config.json, checkpoint.pt)")
        elif isinstance(cmd, BenchConfig):
            print_report(run_bench(cmd), cmd.json)
    except (CheckpointError, ValueError) as exc:
        print(f"sorl-lab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
