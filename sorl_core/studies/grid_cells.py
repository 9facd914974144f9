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
    from ..ogbench.train import train_env
    from ..train import train_toy

    cfg = build_config("train", cell.options)
    if (Path(cfg.out) / "checkpoint.pt").is_file():  # an attempt that died: continue it
        cfg = replace(cfg, resume=True)
    if cell.toy:
        _, run_dir = train_toy(cfg)
    else:
        if cfg.generate_missing:
            ensure_dataset(cfg.env, cfg.dataset_dir)
        _, run_dir = train_env(cfg)
    return {"run_dir": str(run_dir), "rows": []}


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
