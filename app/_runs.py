"""Logic of the "Training runs" page that needs no Streamlit: find run folders, read their CSVs and
config.json with clear errors, smooth, and build the figures.

A run folder (written by `sorl-lab train`) holds config.json, metrics.csv (step, seconds, critic_loss,
fm_loss, sc_loss, q_loss, policy_q, q_mean, ...) and, when evaluation is on, eval.csv (step, m_inf, n and
mean_reward for toy runs or success_rate [+ success_ci_low/high, mean_return] for OGBench runs).
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

RUN_FILES = ("config.json", "metrics.csv")
LOSSES = {  # column: subplot title, in the paper's terms
    "critic_loss": "Critic loss (TD error)",
    "fm_loss": "Flow-matching loss (finest step, BC)",
    "sc_loss": "Self-consistency loss (2 steps of d vs 1 of 2d)",
    "q_loss": "Q loss (−Q of the sampled action, normalised)",
}
EVAL_REQUIRED = ("step", "m_inf", "n")
EVAL_METRICS = ("success_rate", "mean_reward")  # the first present is plotted
STRICT_NUMERIC = {"step", "seconds", *LOSSES, "policy_q", "q_mean", "m_inf", "n", *EVAL_METRICS, "success_ci_low",
                  "success_ci_high", "mean_return", "frac_in_support", "network_calls"}
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
DASHES = ("solid", "dash", "dot", "dashdot")
MAX_DEPTH = 3


class RunError(ValueError):
    """A run file that cannot be used; the message says which file and what is wrong."""


def find_runs(root: Path, max_depth: int = MAX_DEPTH) -> list[Path]:
    """Folders under `root` (itself included, down to `max_depth` levels) holding config.json or metrics.csv."""
    root = Path(root)
    if not root.is_dir():
        return []
    found, level = [], [root]
    for _ in range(max_depth + 1):
        nxt = []
        for d in level:
            if any((d / f).is_file() for f in RUN_FILES):
                found.append(d)
            try:
                nxt += sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))
            except OSError:
                continue
        level = nxt
    return sorted(found)


def run_label(run: Path, root: Path) -> str:
    try:
        rel = run.relative_to(root)
    except ValueError:
        return str(run)
    return str(rel) if str(rel) != "." else run.name


def file_key(path: Path) -> tuple[str, int, int]:
    """(path, mtime_ns, size): the cache key of a file that a running job may still be appending to."""
    try:
        st = path.stat()
        return str(path), st.st_mtime_ns, st.st_size
    except OSError:
        return str(path), 0, -1


def _numeric(df: pd.DataFrame, name: str, columns) -> pd.DataFrame:
    """Convert `columns` (those present) to float; RunError naming the first bad lines otherwise."""
    problems = []
    for col in columns:
        if col not in df.columns:
            continue
        text = df[col].astype(str).str.strip()
        num = pd.to_numeric(text.where(text != "", "nan"), errors="coerce")
        bad = num.isna() & ~text.str.lower().isin(["nan", ""])
        if bad.any():
            lines = ", ".join(f"line {i + 2} ({text[i]!r})" for i in list(bad[bad].index[:3]))
            problems.append(f"column {col} holds non-numbers: {lines}")
        df[col] = num
    if problems:
        raise RunError(f"{name}: " + "; ".join(problems) + ".")
    return df


def read_csv(data: bytes, name: str, required) -> pd.DataFrame:
    """Read a run CSV (bytes); all columns numeric where they can be. RunError if unreadable or incomplete."""
    if not data.strip():
        raise RunError(f"{name} is empty (the run may not have logged anything yet).")
    try:
        df = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise RunError(f"{name} is not a readable CSV file: {exc}") from None
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise RunError(f"{name} lacks the column(s) {', '.join(missing)} (it has: {', '.join(df.columns) or 'none'}).")
    df = _numeric(df, name, [c for c in df.columns if c in STRICT_NUMERIC or c in required])
    for col in df.columns:  # other columns: numbers when every cell is one, text otherwise
        if df[col].dtype == object:
            num = pd.to_numeric(df[col], errors="coerce")
            if num.notna().all():
                df[col] = num
    if df["step"].isna().any():
        raise RunError(f"{name}: column step has empty cells.")
    return df.sort_values("step", kind="mergesort").reset_index(drop=True)


def read_metrics(data: bytes, name: str = "metrics.csv") -> pd.DataFrame:
    return read_csv(data, name, ("step", *LOSSES))


def read_eval(data: bytes, name: str = "eval.csv") -> pd.DataFrame:
    df = read_csv(data, name, EVAL_REQUIRED)
    if eval_metric(df) is None:
        raise RunError(f"{name} has neither a success_rate nor a mean_reward column (it has: {', '.join(df.columns)}).")
    return df


def eval_metric(df: pd.DataFrame) -> str | None:
    """success_rate for OGBench runs, mean_reward for toy runs."""
    return next((m for m in EVAL_METRICS if m in df.columns), None)


def read_config(data: bytes, name: str = "config.json") -> dict:
    try:
        cfg = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunError(f"{name} is not valid JSON: {exc}") from None
    if not isinstance(cfg, dict):
        raise RunError(f"{name} holds a {type(cfg).__name__}, not an object of settings.")
    return cfg


def flatten(cfg: Mapping, prefix: str = "") -> dict:
    """{'agent.m_btt': 8, ...}: nested settings as dotted keys."""
    out = {}
    for k, v in cfg.items():
        key = f"{prefix}{k}"
        out.update(flatten(v, key + ".") if isinstance(v, Mapping) else {key: v})
    return out


def config_differences(configs: Mapping[str, Mapping]) -> pd.DataFrame:
    """Settings that differ between runs: one row per dotted key, one column per run (`out` left out)."""
    flat = {label: flatten(c) for label, c in configs.items()}
    keys = sorted({k for f in flat.values() for k in f} - {"out"})
    rows = [{"setting": k, **{label: str(f.get(k, "—")) for label, f in flat.items()}} for k in keys]
    return pd.DataFrame([r for r in rows if len(set(list(r.values())[1:])) > 1])


def smooth(y, weight: float) -> np.ndarray:
    """Debiased exponential moving average (TensorBoard's smoothing); weight 0 returns y unchanged. NaNs are skipped."""
    y = np.asarray(y, dtype=float)
    if weight <= 0:
        return y.copy()
    out, acc, norm = np.full_like(y, np.nan), 0.0, 0.0
    for i, v in enumerate(y):
        if np.isfinite(v):
            acc, norm = weight * acc + (1 - weight) * v, weight * norm + (1 - weight)
        out[i] = acc / norm if norm > 0 else np.nan
    return out


# --------------------------------------------------------------------------- figures
def loss_figure(metrics: Mapping[str, pd.DataFrame], smoothing: float = 0.0) -> go.Figure:
    """One subplot per loss (critic, flow matching, self-consistency, Q) against iterations; one colour per run.

    With smoothing > 0 the raw curve stays as a faint line under the smoothed one.
    """
    fig = make_subplots(rows=2, cols=2, subplot_titles=list(LOSSES.values()), horizontal_spacing=0.08,
                        vertical_spacing=0.14)
    for ri, (label, df) in enumerate(metrics.items()):
        color = PALETTE[ri % len(PALETTE)]
        for li, col in enumerate(LOSSES):
            pos = dict(row=li // 2 + 1, col=li % 2 + 1)
            x, y = df["step"].tolist(), df[col].to_numpy(dtype=float)
            if smoothing > 0:
                fig.add_trace(go.Scatter(x=x, y=y.tolist(), mode="lines", name=f"{label} · raw", legendgroup=label,
                                         showlegend=False, opacity=0.25, line=dict(color=color, width=1),
                                         meta=[label, col, "raw"], hoverinfo="skip"), **pos)
            fig.add_trace(go.Scatter(x=x, y=smooth(y, smoothing).tolist(), mode="lines", name=label, legendgroup=label,
                                     showlegend=li == 0, line=dict(color=color, width=2), meta=[label, col, "shown"],
                                     hovertemplate=f"{label}<br>iteration %{{x}}<br>{col}=%{{y:.4g}}<extra></extra>"),
                          **pos)
    fig.update_xaxes(title_text="iteration", row=2)
    fig.update_layout(height=620, margin=dict(l=50, r=20, t=60, b=50),
                      legend=dict(orientation="h", yanchor="bottom", y=1.06, x=0.0))
    return fig


def eval_figure(evals: Mapping[str, pd.DataFrame], metric: str, n: int | None = None,
                name_runs: bool | None = None) -> go.Figure:
    """The evaluation metric against iterations: one line per M_inf (colour), one dash per run.

    n: plot only rows with that N (runs evaluated at several N); None takes every row.
    name_runs: put the run in every legend entry (default: when there are several runs).
    success_rate is drawn with its 95% interval when success_ci_low/high are present.
    """
    fig = go.Figure()
    m_values = sorted({int(m) for df in evals.values() for m in df["m_inf"].dropna().unique()})
    for ri, (label, df) in enumerate(evals.items()):
        if metric not in df.columns:
            continue
        d = df if n is None else df[df["n"] == n]
        for m in sorted(d["m_inf"].dropna().unique()):
            line = d[d["m_inf"] == m].sort_values("step")
            err = None
            if metric == "success_rate" and {"success_ci_low", "success_ci_high"} <= set(line.columns):
                err = dict(type="data", symmetric=False, array=(line.success_ci_high - line.success_rate).tolist(),
                           arrayminus=(line.success_rate - line.success_ci_low).tolist(), thickness=1, width=3)
            name = f"{label} · M_inf = {int(m)}" if (len(evals) > 1 if name_runs is None else name_runs) else f"M_inf = {int(m)}"
            fig.add_trace(go.Scatter(
                x=line["step"].tolist(), y=line[metric].tolist(), mode="lines+markers", name=name, error_y=err,
                line=dict(color=PALETTE[m_values.index(int(m)) % len(PALETTE)], dash=DASHES[ri % len(DASHES)]),
                meta=[label, int(m)],
                hovertemplate=f"{label}<br>M_inf={int(m)}<br>iteration %{{x}}<br>{metric}=%{{y:.3f}}<extra></extra>"))
    title = "Success rate" if metric == "success_rate" else "Mean true reward"
    fig.update_layout(
        title=dict(text=f"{title} by M_inf (Euler steps) over training" + ("" if n is None else f", N = {n}"),
                   x=0.0, xanchor="left", font=dict(size=15)),
        height=440, margin=dict(l=60, r=20, t=50, b=50), xaxis=dict(title="iteration"),
        yaxis=dict(title=metric.replace("_", " "), **({"range": [-0.03, 1.03]} if metric == "success_rate" else {})),
    )
    return fig
