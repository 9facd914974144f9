"""The snapshot sweeps of the training-budget runs (scripts/train_budget_runs.sh), across as many sittings as they need.

Every snapshot a run kept (10k, 20k, 40k, ... iterations) is swept over M_inf {1, 2, 4, 8} x N {1, 4, 16} x verifier
{q, consensus} on 50 seeded episodes (the N = 1 cells once), the longest-trained snapshot first and seed by seed
within a snapshot, so a sitting that ends early leaves every seed measured at the same budgets:

    .venv/bin/python scripts/sweep_budget_runs.py [--minutes 60] [--jobs cube-single] [--budgets 80000]

Each snapshot's sweep goes to runs/budget/sweeps/<run>@<iterations>/sweep.csv through `sorl-lab evaluate --resume`
(rewritten after every cell; Ctrl-C or the deadline loses at most the cell in progress). After each snapshot the
finished ones are merged, in training order, into assets/ogbench/<job bundle>/sweep_budget.csv, the file the Scaling
page's training-budget view and RESULTS.md read. Snapshots come from runs/budget/<run>/snapshots, or from the run's
archive in assets/training/<run>.tar when this machine has no run folder. On a machine without the sweep folders
(a fresh clone), the cells already published in sweep_budget.csv come back into them first: a sitting measures
only what is missing (a wider grid adds cells to a published snapshot), and no published snapshot is dropped.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import tyro

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from sorl_core.checkpoint import SNAPSHOTS, checkpoint_label, read_checkpoint  # noqa: E402
from sorl_core.io import write_atomic  # noqa: E402
from sorl_core.studies.evaluate import sweep_csv, with_earlier  # noqa: E402

# job -> (run folders under runs/budget, the bundled folder its merged sweep goes to)
JOBS = {
    "cube-single": (("cube-single-s0", "cube-single-s1", "cube-single-s2"), "cube-single-task2-budget"),
    "scene": (("scene",), "scene-task2-budget"),
    "cube-double": (("cube-double",), "cube-double-task2-budget"),
    "puzzle-3x3": (("puzzle-3x3",), "puzzle-3x3-task4-budget"),
}


@dataclass
class SweepBudgetConfig:
    """Sweep the snapshots of the training-budget runs, resumably."""

    jobs: tuple[str, ...] = ("cube-single",)
    """Which runs: cube-single (three seeds), scene, cube-double, puzzle-3x3."""
    minutes: float = 170.0
    """Stop after this many minutes (the cell in progress is lost; the next sitting resumes)."""
    episodes: int = 50
    """Episodes per cell."""
    m_inf: tuple[int, ...] = (1, 2, 4, 8)
    """Euler step counts."""
    n: tuple[int, ...] = (1, 4, 16)
    """Best-of-N candidate counts."""
    verifier: tuple[str, ...] = ("q", "consensus")
    """How best-of-N ranks its candidates."""
    budgets: tuple[int, ...] = ()
    """Sweep only the snapshots kept after these many training iterations (empty: every snapshot). The card and
    sweep_budget.csv still show every budget measured before."""
    workers: int = 2
    """Processes stepping the environments per sweep (1 when another job shares a 2-core machine)."""
    runs: Path = REPO / "runs" / "budget"
    """The runs' folder (scripts/train_budget_runs.sh)."""
    archive: Path = REPO / "assets" / "training"
    """Where the runs are archived, for snapshots this machine lacks."""
    bundle: Path = REPO / "assets" / "ogbench"
    """Where the merged sweep_budget.csv files go."""


def snapshots_of(cfg: SweepBudgetConfig, run: str) -> list[Path]:
    """The run's snapshot files in training order, extracted from its archive when the run folder lacks them."""
    folder = cfg.runs / run / SNAPSHOTS
    tar = cfg.archive / f"{run}.tar"
    if not any(folder.glob("iteration-*.pt")) and tar.is_file():
        with tarfile.open(tar) as t:
            members = [m for m in t.getmembers() if m.name.startswith(f"{SNAPSHOTS}/") and m.isfile()]
            t.extractall(cfg.runs / run, members=members, filter="data")
    return sorted(folder.glob("iteration-*.pt"))


def snapshot_iterations(name: str) -> int:
    """iteration-0080000.pt -> 80000."""
    return int(Path(name).stem.removeprefix("iteration-"))


def sweep_folder(cfg: SweepBudgetConfig, snapshot: Path) -> Path:
    return cfg.runs / "sweeps" / checkpoint_label(snapshot)


def complete(path: Path, cells: int) -> bool:
    if not path.is_file():
        return False
    with open(path, newline="") as f:
        return sum(1 for _ in csv.DictReader(f)) >= cells


def published(cfg: SweepBudgetConfig, job: str) -> dict[str, list[dict]]:
    """The rows of the job's bundled sweep_budget.csv, by snapshot label (run@iterations)."""
    path = cfg.bundle / JOBS[job][1] / "sweep_budget.csv"
    by_label: dict[str, list[dict]] = {}
    if path.is_file():
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                by_label.setdefault(row["checkpoint"], []).append(row)
    return by_label


def restore_published(cfg: SweepBudgetConfig, job: str) -> None:
    """Published cells back into sweep folders this machine lacks, for `evaluate --resume` to reuse."""
    for label, rows in published(cfg, job).items():
        path = cfg.runs / "sweeps" / label / "sweep.csv"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, sweep_csv(rows))


def merge(cfg: SweepBudgetConfig, job: str, cells: int) -> Path | None:
    """Every finished snapshot sweep of the job, and every one published before (perhaps over a smaller grid), in
    (iterations, seed) order, into its bundled sweep_budget.csv."""
    runs, bundle = JOBS[job]
    done = [sweep_folder(cfg, s) / "sweep.csv" for run in runs for s in snapshots_of(cfg, run)]
    before = published(cfg, job)
    rows = []
    for path in done:
        if complete(path, cells) or path.parent.name in before:
            with open(path, newline="") as f:
                here = list(csv.DictReader(f))
            rows += with_earlier(here, before.get(path.parent.name, []))  # a published cell the folder lacks stays
    if not rows:
        return None
    rows.sort(key=lambda r: (int(r["train_iterations"]), r["checkpoint"]))  # stable: cell order kept within a sweep
    out = cfg.bundle / bundle / "sweep_budget.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, sweep_csv(rows))
    return out


def seed_of(run: str) -> str:
    """A run folder's training seed: cube-single-s2 -> 2; a single-seed run (scene) -> 0."""
    return run.rsplit("-s", 1)[-1] if "-s" in run else "0"


def run_file(cfg: SweepBudgetConfig, run: str, name: str) -> str | None:
    """The text of one of a run's logs (eval.csv, metrics.csv): from its folder, else from its archive; None if absent."""
    path, tar = cfg.runs / run / name, cfg.archive / f"{run}.tar"
    if path.is_file():
        return path.read_text()
    if tar.is_file():
        with tarfile.open(tar) as t:
            if name in t.getnames():
                return t.extractfile(name).read().decode()
    return None


def evaluations_during_training(cfg: SweepBudgetConfig, job: str) -> list[str]:
    """The card's table of each seed's own evaluations during training at M_inf = 8, N = 1: denser than the snapshots
    (every --eval-every iterations, past the last snapshot too) but rougher (20 episodes each by default, not 50)."""
    from sorl_core.ogbench.train import training_curve
    from sorl_core.stats import wilson_interval

    rows, sizes = [], set()
    for run in JOBS[job][0]:
        text = run_file(cfg, run, "eval.csv")
        if not text:
            continue
        episodes = {int(r["step"]): int(r["episodes"]) for r in csv.DictReader(text.splitlines())}
        cells = []
        for step, rate in training_curve(text):
            k = episodes[step]
            lo, hi = wilson_interval(round(rate * k), k)
            cells.append(f"{step // 1000}k: {rate:.0%} [{lo:.0%}, {hi:.0%}]")
            sizes.add(k)
        if cells:
            rows.append(f"| {seed_of(run)} | {', '.join(cells)} |")
    if not rows:
        return []
    return ["## Evaluations during training", "",
            f"Each seed's own evaluations while it trained, at M_inf = 8, N = 1: {' or '.join(map(str, sorted(sizes)))} "
            "episodes each (`eval.csv` in the run's archive), so rougher than the 50-episode sweeps above, but more of "
            "them, and past the last snapshot (95% Wilson interval):", "",
            "| seed | iterations: success |", "|---|---|", *rows, ""]


def trained_so_far(cfg: SweepBudgetConfig, run: str) -> int:
    """The last logged training iteration of a run (its metrics.csv), 0 when unknown."""
    metrics = run_file(cfg, run, "metrics.csv")
    if metrics is None:
        return 0
    rows = list(csv.DictReader(metrics.splitlines()))
    return int(rows[-1]["step"]) if rows else 0


def trained_words(cfg: SweepBudgetConfig, runs: tuple[str, ...]) -> str:
    """How far the runs have trained: one number when the seeds are level, else each seed's (a stop can leave them
    apart, and the ones behind catch up first when resumed)."""
    done = {run: d for run in runs if (d := trained_so_far(cfg, run))}  # 0: no log here to read
    if len(set(done.values())) <= 1:
        return f"{max(done.values(), default=0):,}"
    return ", ".join(f"seed {seed_of(run)}: {d:,}" for run, d in done.items())


def precision_history(cfg: SweepBudgetConfig, run: str, now: str) -> str:
    """The matrices' precision in words, by snapshot: a bf16 run resumed with --agent.precision auto on a CPU without
    native bf16 goes on in float32, and its earlier snapshots stay bf16-trained."""
    words = {"bf16": "bf16", "fp32": "float32"}
    by_snapshot = {}
    for snapshot in snapshots_of(cfg, run):
        saved = read_checkpoint(snapshot)
        by_snapshot[int(saved["agent"]["step"])] = saved["config"]["precision"]
    kinds = list(dict.fromkeys(by_snapshot.values()))
    if kinds in ([], [now]):
        return words.get(now, now)
    last = {k: max(i for i, p in by_snapshot.items() if p == k) for k in kinds}
    ordered = sorted(kinds, key=last.get)
    if ordered[-1] == now:  # the run trains on as its latest snapshots did: name that precision once
        ordered.pop()
    return ", then ".join(f"{words.get(k, k)} (snapshots to {last[k]:,})" for k in ordered) + \
        f", {words.get(now, now)} from there on"


def write_card(cfg: SweepBudgetConfig, job: str, merged: Path) -> Path:
    """The bundled folder's card.md: how the run was trained, what was swept, and the numbers with their reading."""
    from sorl_core.ogbench.environments import environment_for
    from sorl_core.studies.sweep_report import (budget_markdown, budget_seed_markdown, parse_sweep, target_sentence,
                                                training_budget)

    runs, bundle = JOBS[job]
    config = json.loads(run_file(cfg, runs[0], "config.json"))
    agent = config["agent"]
    raw = parse_sweep(merged.read_bytes(), merged.name)
    tb = training_budget(raw)
    budgets = sorted({int(r) for r in raw.train_iterations})
    seeds = ", ".join(map(seed_of, runs))
    precision = precision_history(cfg, runs[0], agent["precision"])

    def measured(axis: str) -> str:  # what the published sweep holds, whatever grid this sitting was asked for
        values = list(dict.fromkeys(raw[axis])) if axis == "verifier" else sorted(set(raw[axis]))
        return ", ".join(map(str, values))
    lines = [
        f"# {bundle}", "",
        f"A SORL run on `{config['env']}` measured along its training: snapshots kept after "
        f"{', '.join(f'{b:,}' for b in budgets)} iterations, each swept over M_inf x N x verifier. Trained on this "
        "machine (2 CPU cores) by `scripts/train_budget_runs.sh`, swept by `scripts/sweep_budget_runs.py`; the Scaling "
        "page's training-budget view draws it (and opens on the run with the most seeds).", "",
        "| | |", "|---|---|",
        f"| seeds | {seeds}" + (f" ({len(runs)} seeds stacked in one model: same data, separate weights, optimizers "
                                "and noise) |" if len(runs) > 1 else " |"),
        f"| trained so far | {trained_words(cfg, runs)} iterations of {config['iterations']:,} "
        f"planned; `assets/training/<run>.tar` resumes it |",
        f"| networks | actor and {agent['num_critics']} critics, {agent['size']} size, {precision}, {agent['mode']} mode |",
        f"| M_disc / M_BTT | {agent['m_disc']} / {agent['m_btt']} |",
        f"| preset | discount {agent['discount']}, AGG {agent['q_agg']}, q_loss_coef {agent['q_loss_coef']}, "
        f"lr {agent['lr']}, batch {agent['batch_size']}; from {environment_for(config['env']).settings_from} |",
        f"| sweep | M_inf {measured('m_inf')} x N {measured('n')} x verifier {measured('verifier')}; "
        f"{cfg.episodes} seeded episodes per cell, the same initial states in every cell |",
        "", "## Success at each training budget", "",
        "All seeds' episodes pooled, 95% Wilson interval (every cell is in `sweep_budget.csv`):", "",
        *(budget_markdown(tb) if not tb.empty else ["One budget is measured so far; the table needs two."]), "",
        f"Each seed alone ({cfg.episodes} episodes per cell): pooled figures can hide seeds that disagree.", "",
        *budget_seed_markdown(raw), "",
        *([target_sentence(tb, target), ""] if (target := environment_for(config["env"]).target) and not tb.empty
          else []),
        *evaluations_during_training(cfg, job),
        f"Differences from the paper, for a CPU budget: lab-size networks (3 x 256, not 4 x 512), matrices in {precision}, "
        "learning rate 3e-4 (FQL's value; the spec's is 1e-4) and far fewer iterations than its 1,000,000.",
        "",
    ]
    out = merged.parent / "card.md"
    write_atomic(out, "\n".join(lines))
    return out


def publish(cfg: SweepBudgetConfig, job: str, cells: int) -> None:
    """Merge what is finished into the bundled sweep_budget.csv and rewrite the card beside it."""
    merged = merge(cfg, job, cells)
    if merged:
        print(f"{time.strftime('%T')} merged into {merged}; card {write_card(cfg, job, merged)}", flush=True)


def main(cfg: SweepBudgetConfig) -> int:
    deadline = time.monotonic() + cfg.minutes * 60
    # Rows per snapshot: N = 1 once (a row per verifier), every other N once per verifier.
    cells = len(cfg.m_inf) * len(cfg.verifier) * len(cfg.n)
    for job in cfg.jobs:
        if job not in JOBS:
            print(f"unknown job {job!r}: choose from {', '.join(JOBS)}", file=sys.stderr)
            return 2
        runs, _ = JOBS[job]
        restore_published(cfg, job)
        per_run = {run: snapshots_of(cfg, run) for run in runs}
        names = sorted({s.name for snaps in per_run.values() for s in snaps})
        out_of_time = False
        for name in reversed(names):  # the longest-trained first (they answer most); every seed before the next
            if cfg.budgets and snapshot_iterations(name) not in cfg.budgets:
                continue
            for run in runs:
                snapshot = cfg.runs / run / SNAPSHOTS / name
                if not snapshot.is_file():
                    continue
                out = sweep_folder(cfg, snapshot)
                if complete(out / "sweep.csv", cells):
                    continue
                left = deadline - time.monotonic()
                if left < 60:  # out of time: this job and the ones after it are still republished (--minutes 0)
                    print(f"{time.strftime('%T')} {job}: no time left to sweep {checkpoint_label(snapshot)}; run this "
                          "again to go on", flush=True)
                    out_of_time = True
                    break
                print(f"{time.strftime('%T')} sweeping {checkpoint_label(snapshot)}", flush=True)
                cmd = [sys.executable, "-m", "sorl_core.cli", "evaluate", "--checkpoint", str(snapshot),
                       "--m-inf", *map(str, cfg.m_inf), "--n", *map(str, cfg.n), "--verifier", *cfg.verifier,
                       "--episodes", str(cfg.episodes), "--workers", str(cfg.workers), "--out", str(out), "--resume",
                       "--no-progress"]
                # SIGINT at the deadline: evaluate keeps the cells it finished (sweep.csv is rewritten per cell).
                started = time.monotonic()
                rc = subprocess.call(["timeout", "-s", "INT", f"{int(left)}", *cmd], cwd=REPO)
                print(f"{time.strftime('%T')} {checkpoint_label(snapshot)}: exit {rc} after "
                      f"{(time.monotonic() - started) / 60:.1f} min", flush=True)
                if rc not in (0, 124, 130):
                    return rc
            publish(cfg, job, cells)
            if out_of_time:
                break
    return 0


if __name__ == "__main__":
    sys.exit(main(tyro.cli(SweepBudgetConfig)))
