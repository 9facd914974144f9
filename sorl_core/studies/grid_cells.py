"""What a worker does with one grid cell: train a run or evaluate a checkpoint, and return what it measured.

A worker writes only the cell's run folder (train) and a `started.json` note (node, pid) in the cell's folder; the
results go back to the driver, which writes every shared file.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
import traceback
from dataclasses import replace
from pathlib import Path

from ..io import write_atomic
from .grid_file import Cell, build_config


def run_cell(cell: Cell, cell_dir: str, threads: int = 1) -> dict:
    """Run one cell; an exception comes back as state `failed` with a one-sentence error (and its traceback)."""
    started = time.time()
    node = socket.gethostname()
    try:
        Path(cell_dir).mkdir(parents=True, exist_ok=True)
        write_atomic(Path(cell_dir) / "started.json", json.dumps({"node": node, "pid": os.getpid(), "time": started}))
        import torch

        torch.set_num_threads(max(1, threads))
        result = train_cell(cell) if cell.kind == "train" else evaluate_cell(cell)
        return {"state": "done", "node": node, "seconds": round(time.time() - started, 3), "error": "", **result}
    except Exception as exc:  # a cell's failure is data for cells.csv, not the end of the grid
        return {"state": "failed", "node": node, "seconds": round(time.time() - started, 3),
                "error": error_sentence(exc), "traceback": traceback.format_exc(), "rows": []}


def error_sentence(exc: BaseException) -> str:
    """The exception's own message on one line (the lab's errors are sentences already)."""
    text = " ".join(str(exc).split())
    return text or "it failed without a message (its traceback is in cells/<cell id>/result.json)"


def train_cell(cell: Cell) -> dict:
    """Train a cell's run, or a stack job's runs (one per member cell) as one stacked model."""
    from ..ogbench.train import train_env
    from ..train import train_toy

    cells = list(cell.members) or [cell]
    cfg = build_config("train", cells[0].options)
    folders = {c.options.get("seed", 0): c.options["out"] for c in cells}
    # An attempt that died: continue it (the grid stacks only cells whose checkpoints all exist or none does).
    cfg = replace(cfg, seed=tuple(folders) if cell.members else cfg.seed,
                  resume=(Path(cfg.out) / "checkpoint.pt").is_file())
    if not cell.toy and cfg.generate_missing:
        ensure_dataset(cfg.env, cfg.dataset_dir)
    _, run_dirs = (train_toy if cell.toy else train_env)(cfg, folders=folders if cell.members else None)
    if not cell.members:
        return {"run_dir": str(run_dirs), "rows": []}
    return {"rows": [], "members": {c.id: {"run_dir": str(d)} for c, d in zip(cells, run_dirs)}}


def evaluate_cell(cell: Cell) -> dict:
    from .evaluate import run_sweep

    rows = run_sweep(build_config("evaluate", cell.options))
    for row in rows:
        row["train_seed"] = cell.train_seed if cell.train_seed != "" else row.get("train_seed", "")
    return {"rows": rows}


def ensure_dataset(env: str, dataset_dir: str) -> None:
    """Generate a missing dataset once per node: cells that need it meanwhile wait on a lock file beside it."""
    from ..ogbench.generation import DataGenerateConfig, generate_dataset
    from ..ogbench.datasets import dataset_name_for, dataset_paths

    name = dataset_name_for(env)
    if all(p.is_file() for p in dataset_paths(name, dataset_dir)):
        return
    Path(dataset_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(dataset_dir) / f".{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
        if not all(p.is_file() for p in dataset_paths(name, dataset_dir)):
            generate_dataset(DataGenerateConfig(dataset=name, dataset_dir=dataset_dir, progress=False))
