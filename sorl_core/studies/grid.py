"""`sorl-lab grid`: a grid file's train and evaluate cells on this machine's cores or a Ray cluster (docs/GRIDS.md).

The driver runs every unfinished cell (a rerun skips finished ones), records each result in
`DIR/cells/<cell id>/result.json` as it arrives, and keeps `DIR/cells.csv` (every cell's state) and `DIR/sweep.csv`
(every evaluate row, the `sorl-lab evaluate` columns) up to date. Workers only return results.
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import tyro
from tqdm.auto import tqdm

from ..io import write_atomic
from .evaluate import sweep_csv
from .grid_backends import make_backend
from .grid_file import Cell, read_grid
from .sweep_schema import COLUMN_DEFAULTS, SWEEP_COLUMNS

CELL_COLUMNS = ["cell", "kind", "parameters", "state", "node", "seconds", "error"]


@dataclass
class GridConfig:
    """Run a grid file's train and evaluate cells here or on a Ray cluster; a rerun resumes (docs/GRIDS.md)."""

    grid: Annotated[tyro.conf.Positional[str], tyro.conf.arg(metavar="GRID.toml")]
    """Grid file (TOML) with a [train] and/or an [evaluate] table."""
    backend: Literal["local", "ray"] = "local"
    """local: processes on this machine's cores; ray: one Ray task per cell."""
    address: str | None = None
    """Ray cluster: auto, HOST:PORT or ray://HOST:10001 (none: a Ray instance started and stopped here)."""
    out: str | None = None
    """Grid folder: cells.csv, sweep.csv, cells/, runs/ (default runs/grid-<file name>); shared by every node."""
    dataset_dir: str | None = None
    """OGBench dataset folder for train cells that do not set `dataset_dir` (a shared one is read by every node)."""
    cpus_per_cell: int = 1
    """Cores per cell: torch threads, and Ray's num_cpus; local runs cores / cpus_per_cell cells at once."""
    gpus_per_train_cell: float | None = None
    """Ray's num_gpus for train cells (default: 1 when the cluster has GPUs; cpu-device cells get 0)."""
    retries: int = 0
    """Ray: times a cell whose worker died is started again (a train cell resumes from its checkpoint)."""
    connect_timeout: float = 5.0
    """Seconds to wait for the Ray cluster at --address to answer."""
    stack_seeds: bool = True
    """Train cells that differ only in seed as stacked models (`sorl-lab train --seed 0 1 ...`): locally spread over
    the cores, on Ray one stack per GPU (CPU workers train each alone); --no-stack-seeds trains every cell alone."""
    progress: bool = True
    """Show a progress bar over cells."""


@dataclass
class GridResult:
    out: Path
    cells_csv: Path
    sweep_csv: Path
    states: dict[str, int]  # state -> number of cells


def grid_folder(cfg: GridConfig) -> Path:
    return (Path(cfg.out) if cfg.out else Path("runs") / f"grid-{Path(cfg.grid).stem}").resolve()


def run_grid(cfg: GridConfig) -> GridResult:
    """Run every cell not finished yet; failures are recorded and the others go on."""
    out = grid_folder(cfg)
    cells = read_grid(cfg.grid, out, cfg.dataset_dir)
    results = {cell.id: load_result(out, cell) for cell in cells}
    waiting = {c.id: c for c in cells if results[c.id].get("state") != "done"}
    results.update({cell_id: {"state": "pending"} for cell_id in waiting})  # a failure of an earlier run is retried
    backend = make_backend(cfg.backend, out, cfg.address, cfg.cpus_per_cell, cfg.gpus_per_train_cell, cfg.retries,
                           cfg.connect_timeout) if waiting else None
    try:
        out.mkdir(parents=True, exist_ok=True)
        if Path(cfg.grid).resolve() != out / "grid.toml":
            write_atomic(out / "grid.toml", Path(cfg.grid).read_text(encoding="utf-8"))
        write_summaries(out, cells, results)
        if backend is not None:
            run_cells(cfg, backend, out, cells, results, waiting)
    finally:
        if backend is not None:
            backend.close()
    states: dict[str, int] = {}
    for cell in cells:
        state = results[cell.id].get("state", "pending")
        states[state] = states.get(state, 0) + 1
    return GridResult(out, out / "cells.csv", out / "sweep.csv", states)


def run_cells(cfg: GridConfig, backend, out: Path, cells: list[Cell], results: dict, waiting: dict[str, Cell]) -> None:
    """Submit cells as their training cells finish; record each result as it arrives."""
    bar = tqdm(total=len(cells), initial=len(cells) - len(waiting), desc=f"grid ({cfg.backend})", unit="cell",
               disable=not cfg.progress, dynamic_ncols=True)

    def submit_ready() -> None:
        for cell in list(waiting.values()):
            if cell.id not in waiting:  # went with a stack job
                continue
            needed = results.get(cell.needs, {}).get("state") if cell.needs else "done"
            if needed == "done":
                job = jobs.get(cell.id, waiting[cell.id])
                for member in job.members or [cell]:
                    waiting.pop(member.id)
                    results[member.id] = {"state": "running"}
                backend.submit(job)
            elif needed in ("failed", "blocked"):
                waiting.pop(cell.id)
                results[cell.id] = {"state": "blocked", "node": "", "seconds": "",
                                    "error": f"its training cell {cell.needs} did not finish"}
                bar.update(1)

    jobs = stack_jobs(list(waiting.values()), backend) if cfg.stack_seeds else {}
    try:
        submit_ready()
        while backend.busy:
            job, result = backend.next_result()
            for cell in job.members or [job]:  # a stack job's result is each member's
                results[cell.id] = record(out, cell, member_result(job, cell, result))
                bar.update(1)
            bar.set_postfix(failed=sum(r.get("state") == "failed" for r in results.values()), refresh=False)
            submit_ready()
            write_summaries(out, cells, results)
    finally:
        bar.close()
        write_summaries(out, cells, results)


def member_result(job: Cell, cell: Cell, result: dict) -> dict:
    """What a job's result says of one of its cells (itself, or a member of a stack job)."""
    if not job.members:
        return result
    own = {k: v for k, v in result.items() if k != "members"}
    return {**own, **result.get("members", {}).get(cell.id, {}), "stacked_with": [m.id for m in job.members if m is not cell]}


def stack_jobs(cells: list[Cell], backend) -> dict[str, Cell]:
    """Train cells that differ only in seed, as stack jobs of the backend's size: member cell id -> its job.

    Cells whose checkpoints disagree (some resumable, some not) are left alone: a stack resumes all or none.
    """
    recipes: dict[str, list[Cell]] = {}
    for cell in cells:
        if cell.kind == "train":
            recipe = {k: v for k, v in cell.options.items() if k not in ("seed", "out")}
            resumable = (Path(cell.options["out"]) / "checkpoint.pt").is_file()
            recipes.setdefault(json.dumps([recipe, resumable], sort_keys=True, default=list), []).append(cell)
    jobs = {}
    for group in recipes.values():
        size = backend.stack_size(group) if len(group) > 1 else 1
        for start in range(0, len(group), size):
            members = tuple(group[start:start + size])
            if len(members) > 1:
                job = Cell("stack-" + members[0].id, "train", members[0].params, members[0].options, members=members)
                jobs.update({m.id: job for m in members})
    return jobs


def summary(result: GridResult) -> str:
    """One line of counts, then the two tables."""
    counts = ", ".join(f"{n} {state}" for state, n in sorted(result.states.items()))
    return f"grid cells: {counts}\n{result.cells_csv}\n{result.sweep_csv}"


def result_path(out: Path, cell: Cell) -> Path:
    return out / "cells" / cell.id / "result.json"


def load_result(out: Path, cell: Cell) -> dict:
    """The recorded result of a cell (empty when it never finished or the file is unreadable)."""
    try:
        return json.loads(result_path(out, cell).read_text())
    except (OSError, ValueError):
        return {}


def record(out: Path, cell: Cell, result: dict) -> dict:
    """Write a finished cell's result atomically; a dead worker's node and time come from its started.json."""
    try:
        started = json.loads((result_path(out, cell).parent / "started.json").read_text())
    except (OSError, ValueError):
        started = {}
    if not result.get("node"):
        result["node"] = started.get("node", "")
    if result.get("seconds") in ("", None) and "time" in started:
        result["seconds"] = round(time.time() - started["time"], 3)
    result = {"cell": cell.id, "kind": cell.kind, "parameters": cell.params, **result, "finished": time.time()}
    result_path(out, cell).parent.mkdir(parents=True, exist_ok=True)
    write_atomic(result_path(out, cell), json.dumps(result, indent=1, default=list))
    return result


def write_summaries(out: Path, cells: list[Cell], results: dict) -> None:
    """cells.csv (one row per cell of the grid) and sweep.csv (every finished evaluate cell's rows)."""
    table = io.StringIO()
    writer = csv.DictWriter(table, CELL_COLUMNS, lineterminator="\n")
    writer.writeheader()
    rows = []
    for cell in cells:
        result = results.get(cell.id, {})
        writer.writerow({"cell": cell.id, "kind": cell.kind, "parameters": json.dumps(cell.params, default=list),
                         "state": result.get("state", "pending"), "node": result.get("node", ""),
                         "seconds": result.get("seconds", ""), "error": result.get("error", "")})
        if cell.kind == "evaluate" and result.get("state") == "done":
            rows += [{k: row.get(k, COLUMN_DEFAULTS.get(k, "")) for k in SWEEP_COLUMNS} for row in result["rows"]]
    write_atomic(out / "cells.csv", table.getvalue())
    write_atomic(out / "sweep.csv", sweep_csv(rows))
