"""A grid file (TOML) read into cells: keys checked against the `train` / `evaluate` options, lists expanded into a
cartesian product, every error naming its line and key (docs/GRIDS.md)."""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import re
import sys
import typing
from dataclasses import dataclass, replace
from pathlib import Path

from ..ogbench.train import EnvTrainConfig, default_env_config
from ..train import ToyTrainConfig
from ..checkpoint import checkpoint_label
from .evaluate import EvaluateConfig
from .grid_options import convert, fails, is_tuple, option_types, shown

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

# Options a grid sets itself: each cell runs quietly under the grid's progress bar and resumes on its own.
GRID_OWNED = {"progress": "the grid shows one progress bar over cells",
              "resume": "a rerun of the grid resumes every unfinished cell by itself"}
EVALUATE_OWNED = {**GRID_OWNED, "out": "evaluate cells' rows are merged into the grid's sweep.csv"}


class GridError(ValueError):
    """A grid that cannot run: the message names the file, line and key, and what to change."""


@dataclass(frozen=True)
class Cell:
    """One pure job: train a run or evaluate a checkpoint; `options` build its config, `params` name it."""

    id: str
    kind: str  # "train" or "evaluate"
    params: dict  # the grid-file values of this cell (dotted keys), plus `train_cell` for the grid's own runs
    options: dict  # the same with paths made absolute and the run folder filled in
    needs: str = ""  # the train cell whose checkpoint this evaluate cell reads
    train_seed: int | str = ""  # the training seed when known
    members: tuple = ()  # a stack job: train cells that differ only in seed, trained as one stacked model

    @property
    def toy(self) -> bool:
        return "world" in self.options


class Lines:
    """Line numbers of a TOML file's tables and keys, to point an error at the text."""

    def __init__(self, text: str):
        self.where: dict[str, int] = {}
        table = ""
        for number, line in enumerate(text.splitlines(), 1):
            line = line.split("#")[0].strip()
            if header := re.fullmatch(r"\[\s*([^\[\]]+?)\s*\]", line):
                table = _norm(header.group(1))
                self.where.setdefault(table, number)
            elif key := re.match(r"([A-Za-z0-9_\-.\"' ]+?)\s*=", line):
                self.where.setdefault(".".join(p for p in (table, _norm(key.group(1))) if p), number)

    def of(self, path: str) -> int:
        parts = path.split(".")
        for end in range(len(parts), 0, -1):  # the key, else the table that holds it
            if (found := self.where.get(".".join(parts[:end]))) is not None:
                return found
        return 1


def _norm(key: str) -> str:
    return ".".join(p.strip().strip("\"'") for p in key.split("."))


class GridFile:
    """The parsed file, and errors that say where: `fail(table, key, problem)`."""

    def __init__(self, path: Path):
        self.path = path
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise GridError(f"cannot read the grid file {path}: {exc.strerror or exc}") from None
        try:
            self.data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise GridError(f"{path} is not valid TOML: {exc}") from None
        self.lines = Lines(text)

    def fail(self, table: str, key: str, problem: str) -> typing.NoReturn:
        where = f"{table}.{key}" if key else table
        label = f"[{table}] {key}" if key else f"[{table}]"
        raise GridError(f"{self.path}, line {self.lines.of(where)}, {label}: {problem}")


def flatten(table: dict, prefix: str = "") -> dict:
    """{'agent': {'m_btt': 8}} -> {'agent.m_btt': 8}."""
    out = {}
    for key, value in table.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def axes(grid: GridFile, table: str, values: dict, types_: dict) -> dict[str, list]:
    """Each key's list of values (one for a scalar), type-checked; unknown keys and empty lists are errors."""
    out = {}
    for key, value in values.items():
        owned = EVALUATE_OWNED if table == "evaluate" else GRID_OWNED
        if key in owned:
            grid.fail(table, key, f"not a grid option: {owned[key]}")
        if key not in types_:
            close = difflib.get_close_matches(key, list(types_), n=1)
            hint = f"; did you mean `{close[0]}`?" if close else ""
            grid.fail(table, key, f"unknown key for `sorl-lab {table}` cells{hint}")
        hint = types_[key]
        listed = isinstance(value, list) and (not is_tuple(hint) or any(isinstance(v, list) for v in value))
        choices = value if listed else [value]
        if not choices:
            grid.fail(table, key, "an empty list gives an empty product: the grid would have no cells")
        try:
            out[key] = [convert(v, hint) for v in choices]
        except TypeError as exc:
            bad = next(v for v in choices if fails(v, hint))
            alternative = "a list of such lists, one per cell" if is_tuple(hint) else "a list of them"
            grid.fail(table, key, f"must be {exc} (or {alternative}), not {shown(bad)}")
        if len(set(map(shown, out[key]))) < len(out[key]):
            grid.fail(table, key, "lists a value twice, which would give two identical cells")
    return out


def product(values: dict[str, list]) -> list[dict]:
    return [dict(zip(values, combo)) for combo in itertools.product(*values.values())]


def cell_id(kind: str, params: dict, readable: dict) -> str:
    """A readable name from the values that vary over the grid, then a stable hash of every parameter."""
    digest = hashlib.sha1(json.dumps({"kind": kind, **params}, sort_keys=True, default=list).encode()).hexdigest()[:8]
    parts = [kind] + [f"{k.split('.')[-1]}={_label(k, v)}" for k, v in readable.items()]
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "_", "-".join(parts))[:80] + f"-{digest}"


def _label(key: str, value) -> str:
    if key == "checkpoint":
        return checkpoint_label(value)
    return "x".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)


def absolute(path: str) -> str:
    return str(Path(path).expanduser().resolve())


def build_config(kind: str, options: dict):
    """The ToyTrainConfig, EnvTrainConfig or EvaluateConfig of a cell (what `sorl-lab train/evaluate` would run)."""
    top = {k: v for k, v in options.items() if not k.startswith("agent.")}
    agent = {k.removeprefix("agent."): v for k, v in options.items() if k.startswith("agent.")}
    if kind == "evaluate":
        return EvaluateConfig(**top, progress=False)
    base = ToyTrainConfig() if "world" in top else default_env_config(top["env"])
    return replace(base, **top, progress=False, agent=replace(base.agent, **agent))


def train_cells(grid: GridFile, table: dict, out_dir: Path, dataset_dir: str | None) -> list[Cell]:
    if ("world" in table) == ("env" in table):
        grid.fail("train", "", "needs `world` (toy worlds) or `env` (OGBench environments), not both or neither")
    toy = "world" in table
    # One cell per seed: `seed = [0, 1, 2]` is an axis here, not the command line's several seeds of one run
    # (the grid stacks cells that differ only in seed itself; docs/GRIDS.md).
    values = axes(grid, "train", table, {**option_types(ToyTrainConfig if toy else EnvTrainConfig), "seed": int})
    if not toy:
        for env in values["env"]:
            try:
                default_env_config(env)
            except ValueError as exc:
                grid.fail("train", "env", str(exc))
    varying = [k for k, v in values.items() if len(v) > 1]
    cells, folders = [], {}
    for params in product(values):
        cid = cell_id("train", params, {k: params[k] for k in varying})
        options = {**params, "out": absolute(params["out"]) if "out" in params else str(out_dir / "runs" / cid)}
        if not toy and (folder := params.get("dataset_dir", dataset_dir)):  # where the data is: not part of the id
            options["dataset_dir"] = absolute(folder)
        _check_builds(grid, "train", options, params, varying)
        if options["out"] in folders:
            grid.fail("train", "out", f"cells {folders[options['out']]} and {cid} would both write to "
                                      f"{options['out']}; give one folder per cell, or leave `out` out "
                                      "(each cell then gets DIR/runs/<cell id>)")
        folders[options["out"]] = cid
        cells.append(Cell(cid, "train", params, options, train_seed=params.get("seed", 0)))
    return cells


def evaluate_cells(grid: GridFile, table: dict, trained: list[Cell]) -> list[Cell]:
    # One cell per checkpoint: a list of checkpoints is an axis here (the command line sweeps several in one file).
    values = axes(grid, "evaluate", table, {**option_types(EvaluateConfig), "checkpoint": str})
    if "checkpoint" not in values:
        if not trained:
            grid.fail("evaluate", "", "names no `checkpoint` and the file has no [train] table to take runs from")
        if trained[0].toy:
            grid.fail("evaluate", "", "names no `checkpoint`, so it would evaluate the [train] table's toy runs, "
                                      "which `sorl-lab evaluate` cannot (toy runs are scored while they train, in "
                                      "their eval.csv); name OGBench checkpoints or train with `env = [...]`")
    varying = [k for k, v in values.items() if len(v) > 1]
    train_varying = sorted({k for k in (trained[0].params if trained else {}) if len({shown(c.params[k]) for c in trained}) > 1})
    cells = []
    for source, params in itertools.product([None] if "checkpoint" in values else trained, product(values)):
        options = dict(params)
        readable = {k: params[k] for k in varying}
        if source is None:
            options["checkpoint"] = absolute(params["checkpoint"])
            if not Path(options["checkpoint"]).is_file():
                grid.fail("evaluate", "checkpoint", f"no checkpoint at {options['checkpoint']}")
        else:
            params = {"train_cell": source.id, **params}
            options["checkpoint"] = str(Path(source.options["out"]) / "checkpoint.pt")
            readable = {**{k: source.params[k] for k in train_varying}, **readable}
        cid = cell_id("evaluate", params, readable)
        _check_builds(grid, "evaluate", options, params, varying)
        cells.append(Cell(cid, "evaluate", params, options, needs=source.id if source else "",
                          train_seed=source.train_seed if source else ""))
    return cells


def _check_builds(grid: GridFile, kind: str, options: dict, params: dict, varying: list[str]) -> None:
    """Values the config itself refuses (e.g. agent.m_btt = 3) fail here, before anything runs."""
    try:
        build_config(kind, options)
    except (ValueError, TypeError) as exc:
        key = next((k for k in params if k.split(".")[-1] in str(exc)), "")
        cell = ", ".join(f"{k} = {shown(params[k])}" for k in varying) or "every cell"
        grid.fail(kind, key, f"{exc} (cell {cell})")


def read_grid(path: str | Path, out_dir: Path, dataset_dir: str | None = None) -> list[Cell]:
    """Every cell of a grid file, train cells first; raises GridError naming the line and key of a problem."""
    grid = GridFile(Path(path))
    for key in grid.data:
        if key not in ("train", "evaluate") or not isinstance(grid.data[key], dict):
            grid.fail(key, "", "unknown table: a grid file has a [train] table and/or an [evaluate] table")
    if not grid.data:
        raise GridError(f"{path} has neither a [train] nor an [evaluate] table, so the grid has no cells")
    trained = train_cells(grid, flatten(grid.data["train"]), out_dir, dataset_dir) if "train" in grid.data else []
    evaluated = evaluate_cells(grid, flatten(grid.data["evaluate"]), trained) if "evaluate" in grid.data else []
    cells = trained + evaluated
    seen: dict[str, Cell] = {}
    for cell in cells:
        if cell.id in seen:  # only identical parameters hash alike
            grid.fail(cell.kind, "", f"two cells have the same parameters ({cell.id})")
        seen[cell.id] = cell
    return cells
