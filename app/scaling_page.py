"""Logic of the "Scaling study" page that needs no Streamlit: where sweeps are found and how the page runs a small
one. Reading, checking, naming, averaging over seeds and drawing a sweep is the sweep report
(sorl_core/studies/sweep_report.py), which `sorl-lab evaluate`'s sweep.html uses too; its names are imported here
as the page's vocabulary. Tests call these functions directly.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from app.paths import REPO_ROOT
from sorl_core.studies.sweep_report import (  # noqa: F401  (the page's vocabulary, used as S.<name>)
    AXES, SweepError, across_seeds, budget_findings, budget_options, cell_label, cheapest_for_target, combine,
    compute_figure, compute_optimal, compute_plane_figure, fixed, grid, has_seed_spread, headline_cells, heatmap_figure,
    name_series, parse_sweep, series_order, success_target, training_budget, training_curves_figure,
    varying_axes)
from sorl_core.studies.sweep_schema import recipe, widest_recipe_per_method


def sweep_dir() -> Path:
    """Where bundled sweeps live: <repo>/assets/ogbench (SORL_LAB_SWEEP_DIR overrides the folder)."""
    return Path(os.environ.get("SORL_LAB_SWEEP_DIR") or (REPO_ROOT / "assets" / "ogbench"))


def bundled_sweeps(root: Path | None = None) -> list[Path]:
    """Every sweep*.csv under the bundled folder (any depth), sorted."""
    root = sweep_dir() if root is None else Path(root)
    return sorted(p for p in root.glob("**/sweep*.csv") if p.is_file()) if root.is_dir() else []


def opening_sweeps(names: Sequence[str]) -> list[str]:
    """The bundled sweeps the page opens on: every training seed of the recipe with the most seeds (the first such
    recipe on a tie), so it opens on a mean over seeds, not on whichever policy sorts first. Names with a "/" (files
    inside a folder) are single sweeps."""
    if not names:
        return []
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(name if "/" in name else recipe(name), []).append(name)
    return max(groups.values(), key=len)  # max keeps the first of equals


def method_sweeps(labels: dict[str, Path]) -> list[str]:
    """The bundled sweeps that set SORL beside its baselines: for the environment of the sweeps the page opens on,
    every seed of each method's recipe with the most seeds (scripts/train_baselines.sh bundles them). Empty when
    only one method is bundled there. labels: the picker's names -> their files (a folder's sweep.csv only)."""
    import csv

    def first_row(path: Path) -> dict:
        with open(path, newline="") as f:
            return next(csv.DictReader(f), {})

    rows = {name: first_row(path) for name, path in labels.items() if "/" not in name}
    opening = opening_sweeps(list(rows))
    if not opening:
        return []
    env = rows[opening[0]].get("env")
    best = widest_recipe_per_method((row.get("method") or "sorl", recipe(name), name)
                                    for name, row in rows.items() if row.get("env") == env)
    return [n for names in best.values() for n in names] if len(best) > 1 else []


def is_budget_sweep(path: Path) -> bool:
    """A bundled sweep of a run's snapshots (scripts/sweep_budget_runs.py writes sweep_budget.csv): the page's
    training-budget view reads it from the start, without it being picked among the sweeps above."""
    return path.name.startswith("sweep_budget")


def budget_rows(loaded: pd.DataFrame, bundled: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The rows the training-budget view pools: the chosen sweeps' and the bundled budget sweeps', each measurement
    once (a bundled budget sweep may also have been picked above)."""
    frames = [loaded, *bundled]
    keys = ["checkpoint", "train_iterations", "m_btt", "method", "m_inf", "n", "verifier", "adaptive", "seed",
            "episodes"]
    both = pd.concat([f[[c for c in f.columns if c not in ("series", "source")]] for f in frames if not f.empty],
                     ignore_index=True) if any(not f.empty for f in frames) else loaded
    return both.drop_duplicates(subset=[k for k in keys if k in both.columns]).reset_index(drop=True)


def opening_run(runs: Sequence[str], seeds: Sequence[int]) -> int:
    """Index of the run the training-budget view opens on: the one pooling the most seeds (the first of equals)."""
    return max(range(len(runs)), key=lambda i: (seeds[i], -i)) if runs else 0


def grid_dir() -> Path:
    """Where `sorl-lab grid` writes its folders by default: <repo>/runs (SORL_LAB_GRID_DIR overrides it)."""
    return Path(os.environ.get("SORL_LAB_GRID_DIR") or (REPO_ROOT / "runs"))


def grid_sweeps(root: Path | None = None) -> list[Path]:
    """The sweep.csv of every grid folder (one holding cells.csv) up to two levels under `root`, sorted."""
    root = grid_dir() if root is None else Path(root)
    found = [p for pattern in ("*/sweep.csv", "*/*/sweep.csv") for p in root.glob(pattern)] if root.is_dir() else []
    return sorted(p for p in found if (p.parent / "cells.csv").is_file())


# --------------------------------------------------------------------------- running a small sweep
def run_small_sweep(checkpoint: str | Path, label: str, m_values, n_values, episodes: int, seed: int,
                    on_progress=None, verifiers=("q",)) -> bytes:
    """A sweep through the same evaluator as `sorl-lab evaluate`; returns its CSV bytes (parse with parse_sweep)."""
    from sorl_core.studies.evaluate import EvaluateConfig, run_sweep, sweep_csv

    cfg = EvaluateConfig(checkpoint=str(checkpoint), m_inf=tuple(sorted(m_values)), n=tuple(sorted(n_values)),
                         verifier=tuple(verifiers), episodes=int(episodes), seed=int(seed), progress=False)
    rows = run_sweep(cfg, on_progress=on_progress)
    for row in rows:
        row["checkpoint"] = label
    return sweep_csv(rows).encode()


def best_overall(picks: dict[str, dict], budget: float) -> str:
    """One sentence on the best of the series' compute-optimal cells under a budget, and which others cannot be told
    from it (their 95% intervals overlap its own). picks: series -> its compute-optimal cell (success > 0 only)."""
    if len(picks) < 2:
        return ""
    name, best = max(picks.items(), key=lambda kv: (kv[1]["success_rate"], -kv[1]["network_calls"]))
    tied = [s for s, p in picks.items() if s != name and p["success_ci_high"] >= best["success_ci_low"]]
    text = (f"Best under {budget:g} calls per action: **{name}** at M_inf = {best['m_inf']}, N = {best['n']}, success "
            f"{best['success_rate']:.0%} [{best['success_ci_low']:.0%}, {best['success_ci_high']:.0%}].")
    if tied:
        return text + f" Its interval overlaps those of {', '.join(tied)}: at this budget the data cannot tell them apart."
    return text + " No other series' interval reaches it."
