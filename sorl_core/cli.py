"""`sorl-lab` console script: train (toy worlds or OGBench), evaluate, render, bench, data generate, data info,
verifier (counterfactual returns of best-of-N candidates), import (a run of the SORL authors' JAX code), grid (many
train and evaluate cells from a TOML file, on local processes or a Ray cluster)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Annotated, Union

import tyro

from . import cpu
from .authors_run import ImportConfig, import_run
from .studies.bench import BenchConfig, print_report, run_bench
from .checkpoint import CheckpointError
from .studies.evaluate import EvaluateConfig, SweepInterrupted, evaluate
from .studies.grid import GridConfig, run_grid, summary
from .ogbench.datasets import DEFAULT_DATASET_DIR, dataset_name_for, dataset_paths, dataset_spec, official_files_help
from .ogbench.generation import DataGenerateConfig, generate_dataset
from .ogbench.train import EnvTrainConfig, default_env_config, train_env
from .ogbench.render import RenderConfig, render
from .train import ToyTrainConfig, train_toy
from .studies.verifier_study import VerifierStudyConfig, run_study


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
    Annotated[ToyTrainConfig, tyro.conf.subcommand("train", description=(
        "Train SORL on a toy 2D world, or with --env NAME on an OGBench singletask environment "
        "(`sorl-lab train --env cube-single-play-singletask-task2-v0 --help` shows its options and preset)."))],
    Annotated[EvaluateConfig, tyro.conf.subcommand("evaluate", description="Test-time-scaling sweep over M_inf x N: CSV + HTML report.")],
    Annotated[RenderConfig, tyro.conf.subcommand("render", description="Rollout videos of (M_inf, N) configurations, side by side.")],
    Annotated[BenchConfig, tyro.conf.subcommand("bench", description="Time training iterations and sampling.")],
    Annotated[DataCommand, tyro.conf.subcommand("data", description="OGBench datasets offline.")],
    Annotated[GridConfig, tyro.conf.subcommand("grid", description=(
        "A grid of train and evaluate cells from a TOML file, on this machine's cores or a Ray cluster "
        "(resumable; docs/GRIDS.md)."))],
    Annotated[VerifierStudyConfig, tyro.conf.subcommand("verifier", description=(
        "Ground truth for best-of-N: every candidate's counterfactual return from exactly restored states, "
        "against every verifier's score (CSV + HTML; resumable)."))],
    Annotated[ImportConfig, tyro.conf.subcommand("import", description=(
        "Turn a run folder of the SORL authors' JAX code (flags.json, params_N.pkl, train.csv, eval.csv) into a lab "
        "run folder (checkpoint.pt, config.json, metrics.csv, eval.csv); see docs/IMPORT.md."))],
]


def data_info(cfg: DataInfoConfig) -> None:
    name = dataset_name_for(cfg.dataset)  # a singletask environment reads its dataset's files
    if name != cfg.dataset:
        print(f"{cfg.dataset} trains on the files of the dataset {name}:")
    train_path, val_path = dataset_paths(name, cfg.dataset_dir)
    for path in (train_path, val_path):
        print(f"{'found  ' if path.exists() else 'missing'} {path.resolve()}")
    if not (train_path.exists() and val_path.exists()):
        try:
            dataset_spec(name, cfg.dataset_dir)
        except ValueError as exc:  # needs expert policies (the message says how to supply it), or unknown
            print(exc)
            return
        print(f"Generate it here: sorl-lab data generate {name} --dataset-dir {cfg.dataset_dir}")
        print(f"Or use the official files. {official_files_help(name, cfg.dataset_dir)}")


def verifier_summary_line(row: dict) -> str:
    """One line per verifier of a verifier study's summary."""
    if row.get("absent"):
        return f"{row['verifier']:>9}: absent ({row['absent']})"

    def f(key: str) -> str:
        return f"{float(row[key]):.3f}" if row.get(key) not in ("", None) else "-"

    return (f"{row['verifier']:>9}: spearman {f('mean_spearman')} ({row['spearman_states']}/{row['states']} states), "
            f"top-1 regret {f('mean_top1_regret')}, pick/mean distance {f('mean_pick_distance')}/"
            f"{f('mean_mean_distance')}, pick/mean success {f('mean_pick_success')}/{f('mean_candidate_success')}")


def print_run_folders(run_dirs) -> None:
    """The folder of a training, or one per seed."""
    for run_dir in run_dirs if isinstance(run_dirs, list) else [run_dirs]:
        print(f"run folder: {run_dir} (metrics.csv, eval.csv, config.json, checkpoint.pt)")


def _env_flag(args: list[str]) -> str | None:
    """The value of `--env` in `sorl-lab train` arguments, if any."""
    for i, arg in enumerate(args):
        if arg == "--env":
            return args[i + 1] if i + 1 < len(args) else ""
        if arg.startswith("--env="):
            return arg.split("=", 1)[1]
    return None


def parse(argv: list[str]):
    """`train --env NAME` parses against that environment's preset, so --help shows its real defaults."""
    if argv[:1] == ["train"] and (env := _env_flag(argv[1:])) is not None:
        return tyro.cli(EnvTrainConfig, args=argv[1:], default=default_env_config(env), prog="sorl-lab train")
    return tyro.cli(Command, args=argv, prog="sorl-lab")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    cpu.keep_freed_memory()  # process-wide, so set here, by the program that owns the process (sorl_core/cpu.py)
    try:
        cmd = parse(argv)
    except ValueError as exc:  # an unknown environment: the message lists the supported ones
        print(f"sorl-lab: error: {exc}", file=sys.stderr)
        return 2
    try:
        if isinstance(cmd, EnvTrainConfig):
            _, run_dirs = train_env(cmd)
            print_run_folders(run_dirs)
        elif isinstance(cmd, EvaluateConfig):
            csv_path, html_path = evaluate(cmd)
            print(f"{csv_path}\n{html_path}")
        elif isinstance(cmd, RenderConfig):
            videos, combined = render(cmd, on_progress=print)
            print(f"side by side: {combined}")
        elif isinstance(cmd, ToyTrainConfig):
            _, run_dirs = train_toy(cmd)
            print_run_folders(run_dirs)
        elif isinstance(cmd, VerifierStudyConfig):
            result = run_study(cmd)
            print(f"{result.candidates_csv}\n{result.states_csv}\n{result.summary_csv}\n{result.html}")
            for row in result.summary:
                print(verifier_summary_line(row))
        elif isinstance(cmd, ImportConfig):
            result = import_run(cmd)
            print("\n".join(result.notes))
            print(f"run folder: {result.out} (checkpoint.pt, config.json, metrics.csv, eval.csv)")
        elif isinstance(cmd, GridConfig):
            result = run_grid(cmd)
            print(summary(result))
            if result.states.get("failed") or result.states.get("blocked"):
                print("sorl-lab: some cells did not finish (their errors are in cells.csv); "
                      "run the same command again to retry them", file=sys.stderr)
                return 1
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
    except SweepInterrupted as exc:
        print(f"sorl-lab: {exc}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
