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

from app.paths import REPO_ROOT
from app.policies import ogbench_dir

RUN_FILES = ("config.json", "metrics.csv")
LOSSES = {  # the columns metrics.csv must have: subplot title, short enough for half of a 1024 px page
    "critic_loss": "Critic loss (TD error)",
    "fm_loss": "Flow-matching loss (BC)",
    "sc_loss": "Self-consistency loss",
    "q_loss": "Q loss (−mean Q / mean |Q|)",
}
POLICY_Q = "policy_q"  # the critic's mean Q of the policy's actions (sorl_core/agent.py, q_loss)
DATASET_Q = "q_mean"  # the critic's mean Q of the dataset's actions (sorl_core/agent.py, critic_loss)
PANEL_TITLES = {**LOSSES, POLICY_Q: "Mean Q (policy; dataset dotted)"}
# q_loss = −mean Q / mean |Q| lies in [−1, 1] and is exactly 1 whenever every Q is negative (OGBench's rewards
# are ≤ 0): its panel is drawn only when it moves by more than this over the plotted rows.
Q_LOSS_MIN_RANGE = 0.05
EVAL_REQUIRED = ("step", "m_inf", "n")
EVAL_METRICS = ("success_rate", "mean_reward")  # the first present is plotted
STRICT_NUMERIC = {"step", "seconds", *LOSSES, "policy_q", "q_mean", "m_inf", "n", *EVAL_METRICS, "success_ci_low",
                  "success_ci_high", "mean_return", "frac_in_support", "network_calls"}
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
DASHES = ("dot", "dashdot", "dash", "solid", "longdash", "longdashdot")  # M_inf 1, 2, 4, 8, ...: solid at 8
SYMBOLS = ("circle-open", "square-open", "diamond", "circle", "x", "star")
MAX_DEPTH = 3
# The bundled runs the page opens on: the same recipe trained with M_BTT = 8 (the paper's) and M_BTT = 1.
FIRST_COMPARISON = ("cube-single-task2", "cube-single-task2-mbtt1")


def bundled_runs_dir() -> Path:
    """The training logs shipped with the bundled OGBench policies: in their folders (app/policies.py, ogbench_dir:
    <repo>/assets/ogbench, or SORL_LAB_OGBENCH_DIR)."""
    return ogbench_dir()


def user_runs_dir() -> Path:
    """Where `sorl-lab train` writes runs by default: <repo>/runs (absent on a fresh clone)."""
    return REPO_ROOT / "runs"


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
        raise RunError(f"{name} is not valid JSON ({exc.msg if hasattr(exc, 'msg') else 'not UTF-8 text'}).") from None
    if not isinstance(cfg, dict):
        raise RunError(f"{name} holds a JSON {'list' if isinstance(cfg, list) else 'value'}, not an object of settings.")
    return cfg


def flatten(cfg: Mapping, prefix: str = "") -> dict:
    """{'agent.m_btt': 8, ...}: nested settings as dotted keys."""
    out = {}
    for k, v in cfg.items():
        key = f"{prefix}{k}"
        out.update(flatten(v, key + ".") if isinstance(v, Mapping) else {key: v})
    return out


# How a run was carried out, not what it learned: never a difference worth a row in the settings table.
NOT_SETTINGS = {"out", "progress", "resume", "checkpoint_every", "log_every", "eval_workers", "dataset_dir",
                "snapshots", "eval_every", "eval_episodes"}


def config_differences(configs: Mapping[str, Mapping]) -> pd.DataFrame:
    """Settings that change what a run learns and differ between runs: one row per dotted key, one column per run
    (where and how often it wrote files, its progress bar and the like are left out: NOT_SETTINGS)."""
    flat = {label: flatten(c) for label, c in configs.items()}
    keys = sorted(k for k in {k for f in flat.values() for k in f} if k.split(".")[-1] not in NOT_SETTINGS)
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
def _q_loss_values(metrics: Mapping[str, pd.DataFrame]) -> np.ndarray:
    values = np.concatenate([df["q_loss"].to_numpy(dtype=float) for df in metrics.values() if "q_loss" in df]
                            or [np.array([])])
    return values[np.isfinite(values)]


def q_loss_level(metrics: Mapping[str, pd.DataFrame]) -> str:
    """The Q loss's typical value, for a caption: "1.00" (its median over the runs' rows), "–" when none."""
    values = _q_loss_values(metrics)
    return f"{float(np.median(values)):.2f}" if values.size else "–"


def q_loss_informative(metrics: Mapping[str, pd.DataFrame], min_range: float = Q_LOSS_MIN_RANGE) -> bool:
    """Whether the Q loss moves enough over the runs' rows to be worth a panel (it is ≈ 1 when every Q < 0)."""
    values = _q_loss_values(metrics)
    return values.size > 1 and float(values.max() - values.min()) > min_range


def loss_panels(metrics: Mapping[str, pd.DataFrame]) -> list[str]:
    """The columns to draw, one panel each: the three losses, the policy's mean Q when logged, and the Q loss
    only when it says something (q_loss_informative)."""
    cols = ["critic_loss", "fm_loss", "sc_loss"]
    if any(POLICY_Q in df for df in metrics.values()):
        cols.append(POLICY_Q)
    if q_loss_informative(metrics):
        cols.append("q_loss")
    return cols


def loss_figure(metrics: Mapping[str, pd.DataFrame], smoothing: float = 0.0,
                panels: list[str] | None = None, colors: Mapping[str, str] | None = None) -> go.Figure:
    """One subplot per column of `panels` (default loss_panels) against iterations; one colour per run (`colors`,
    default run_colors: pass the page's, so a run has its colour in every chart).

    The policy's mean Q panel also draws the critic's mean Q of the dataset's actions, dotted, for comparison.
    With smoothing > 0 the raw curve stays as a faint line under the smoothed one.
    """
    panels = loss_panels(metrics) if panels is None else panels
    rows = (len(panels) + 1) // 2
    fig = make_subplots(rows=rows, cols=2, subplot_titles=[PANEL_TITLES[c] for c in panels], horizontal_spacing=0.08,
                        vertical_spacing=0.28 / rows)
    colors = colors or run_colors(metrics)
    for label, df in metrics.items():
        color = colors[label]
        for li, col in enumerate(panels):
            pos = dict(row=li // 2 + 1, col=li % 2 + 1)
            curves = [(col, "shown", dict(color=color, width=2))]
            if col == POLICY_Q and DATASET_Q in df:
                curves.append((DATASET_Q, "dataset", dict(color=color, width=1.5, dash="dot")))
            for column, kind, line in curves:
                if column not in df:
                    continue
                x, y = df["step"].tolist(), df[column].to_numpy(dtype=float)
                if smoothing > 0:
                    fig.add_trace(go.Scatter(x=x, y=y.tolist(), mode="lines", name=f"{label} · raw", legendgroup=label,
                                             showlegend=False, opacity=0.25, line=dict(color=color, width=1),
                                             meta=[label, column, "raw"], hoverinfo="skip"), **pos)
                what = "dataset actions' Q" if kind == "dataset" else column
                fig.add_trace(go.Scatter(x=x, y=smooth(y, smoothing).tolist(), mode="lines",
                                         name=label if kind == "shown" else f"{label} · {what}", legendgroup=label,
                                         showlegend=li == 0 and kind == "shown", line=line, meta=[label, column, kind],
                                         hovertemplate=f"{label}<br>iteration %{{x}}<br>{what}=%{{y:.4g}}<extra></extra>"),
                              **pos)
    for li in range(len(panels)):  # every panel's bottom row names its x axis
        if li + 2 >= len(panels):
            fig.update_xaxes(title_text="iteration", row=li // 2 + 1, col=li % 2 + 1)
    # The legend sits at the foot of the figure, under the x-axis titles (above, several runs wrap into the
    # subplot titles); the bottom margin grows with the rows it may wrap to.
    legend_rows = (len(metrics) + 1) // 2
    fig.update_annotations(font_size=13)
    fig.update_layout(height=300 * rows + 60 + 22 * legend_rows, margin=dict(l=50, r=20, t=40, b=60 + 22 * legend_rows),
                      legend=dict(orientation="h", x=0.0, xanchor="left", yref="container", y=0.0, yanchor="bottom"))
    return fig


def run_colors(labels) -> dict[str, str]:
    """One colour per run, the same in every chart of the page."""
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(labels)}


def eval_figure(evals: Mapping[str, pd.DataFrame], metric: str, n: int | None = None,
                name_runs: bool | None = None, colors: Mapping[str, str] | None = None) -> go.Figure:
    """The evaluation metric against iterations: one colour per run (as in the losses), one dash and marker per
    M_inf.

    n: plot only rows with that N (runs evaluated at several N); None takes every row.
    name_runs: put the run in every legend entry (default: when there are several runs).
    success_rate is drawn with its 95% interval when success_ci_low/high are present.
    """
    fig = go.Figure()
    m_values = sorted({int(m) for df in evals.values() for m in df["m_inf"].dropna().unique()})
    several = len(evals) > 1 if name_runs is None else name_runs
    colors = colors or run_colors(evals)
    for label, df in evals.items():
        if metric not in df.columns:
            continue
        d = df if n is None else df[df["n"] == n]
        for m in sorted(d["m_inf"].dropna().unique()):
            line = d[d["m_inf"] == m].sort_values("step")
            err = None
            if metric == "success_rate" and {"success_ci_low", "success_ci_high"} <= set(line.columns):
                err = dict(type="data", symmetric=False, array=(line.success_ci_high - line.success_rate).tolist(),
                           arrayminus=(line.success_rate - line.success_ci_low).tolist(), thickness=1, width=3)
            name = f"{label} · M_inf = {int(m)}" if several else f"M_inf = {int(m)}"
            fig.add_trace(go.Scatter(
                x=line["step"].tolist(), y=line[metric].tolist(), mode="lines+markers", name=name, error_y=err,
                legendgroup=label if several else None, showlegend=not several,
                line=dict(color=colors[label], dash=DASHES[m_values.index(int(m)) % len(DASHES)]),
                marker=dict(symbol=SYMBOLS[m_values.index(int(m)) % len(SYMBOLS)], size=7),
                meta=[label, int(m)],
                hovertemplate=f"{label}<br>M_inf={int(m)}<br>iteration %{{x}}<br>{metric}=%{{y:.3f}}<extra></extra>"))
    if several:  # a key instead of runs x M_inf entries: one per run (its colour; click to hide it), one per dash
        for label in evals:
            fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=label, legendgroup=label, hoverinfo="skip",
                                     line=dict(color=colors[label], width=3)))
        for m in m_values:
            fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines+markers", name=f"M_inf = {m}",
                                     legendgroup=f"key M_inf = {m}", hoverinfo="skip",
                                     marker=dict(symbol=SYMBOLS[m_values.index(m) % len(SYMBOLS)], color="#555"),
                                     line=dict(color="#555", dash=DASHES[m_values.index(m) % len(DASHES)])))
    title = "Success rate" if metric == "success_rate" else "Mean true reward"
    # The legend sits under the plot and wraps as runs are added; grow the figure with it, so that the plot keeps
    # its height and the legend stays clear of the x-axis title (four bundled runs: 8 entries at 1024 px).
    entries = sum(1 for t in fig.data if t.showlegend is not False)
    fig.update_layout(
        title=dict(text=f"{title} by M_inf (Euler steps) over training" + ("" if n is None else f", N = {n}"),
                   x=0.0, xanchor="left", font=dict(size=15)),
        height=470 + 28 * max(0, entries - 5), margin=dict(l=60, r=20, t=50, b=50), xaxis=dict(title="iteration"),
        legend=dict(orientation="h", x=0.0, xanchor="left", y=-0.22, yanchor="top"),  # below: the plot keeps its width
        yaxis=dict(title=metric.replace("_", " "), **({"range": [-0.03, 1.03]} if metric == "success_rate" else {})),
    )
    return fig
