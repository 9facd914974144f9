"""The CSV logs of the SORL authors' code as the lab's metrics.csv and eval.csv rows (docs/IMPORT.md)."""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

from .stats import wilson_interval

# metrics.csv column <- the authors' train.csv column (their actor loss is 10 FM + alpha SC + q_loss_coef Q loss).
TRAIN_MAP = {"step": "step", "seconds": "time/total_time", "critic_loss": "critic_loss", "fm_loss": "bc_flow_loss",
             "sc_loss": "consistency_loss", "q_loss": "q_loss", "policy_q": "q", "q_mean": "q_mean"}
# Their main.py logs M_inf = k = 1 under `evaluation/n=N/...` and k = 2, 4, 8, ... under `eval_inference_k/n=N/...`.
EVAL_KEY = re.compile(r"(?:evaluation|eval_inference_(\d+))/n=(\d+)/(.+)")
EVAL_MAP = {"success_rate": "success", "mean_return": "episode.return", "mean_length": "episode.length"}


def _rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _number(text) -> float | str:
    """A finite number, or "" for what is not one (a missing cell, nan, a list)."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return ""
    return value if math.isfinite(value) else ""


def convert_train_log(path: Path) -> list[dict]:
    """metrics.csv rows from train.csv; columns the authors do not log (per-step grad norms) stay empty."""
    rows = []
    for row in _rows(path):
        out = {ours: _number(row.get(theirs)) for ours, theirs in TRAIN_MAP.items()}
        if out["step"] != "":
            rows.append({**out, "step": int(out["step"])})
    return rows


def convert_eval_log(path: Path, episodes: int) -> list[dict]:
    """eval.csv rows (one per step, M_inf and N) from the authors' eval.csv; the 95% interval is Wilson's."""
    rows = []
    for row in _rows(path):
        step = _number(row.get("step"))
        if step == "":
            continue
        cells: dict[tuple[int, int], dict] = {}
        for key, value in row.items():
            if key and (match := EVAL_KEY.fullmatch(key)):
                m_inf, n = int(match.group(1) or 1), int(match.group(2))
                cells.setdefault((m_inf, n), {})[match.group(3)] = _number(value)
        for (m_inf, n), metrics in sorted(cells.items()):
            out = {"step": int(step), "m_inf": m_inf, "n": n, "episodes": episodes or "",
                   **{ours: metrics.get(theirs, "") for ours, theirs in EVAL_MAP.items()},
                   "success_ci_low": "", "success_ci_high": ""}
            successes = out["success_rate"] * episodes if out["success_rate"] != "" else math.nan
            if episodes and abs(successes - round(successes)) < 1e-6:
                out["success_ci_low"], out["success_ci_high"] = (round(v, 4) for v in wilson_interval(round(successes), episodes))
            rows.append(out)
    return rows
