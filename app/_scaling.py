"""Logic of the "Scaling study" page that needs no Streamlit: read and check a test-time-scaling sweep,
the M_inf x N grid, the compute-optimal cell under a budget, and the figures.

A sweep CSV has one row per (checkpoint, m_inf, n) cell, with the columns of
``sorl_core.sweep_schema.SWEEP_COLUMNS`` (written by the evaluator). Tests call these functions directly.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from sorl_core.sweep_schema import SWEEP_COLUMNS

REPO_ROOT = Path(__file__).resolve().parents[1]
TEXT_COLUMNS = ("checkpoint", "env")
NUMERIC_COLUMNS = tuple(c for c in SWEEP_COLUMNS if c not in TEXT_COLUMNS)
INTEGER_COLUMNS = ("m_btt", "m_inf", "n", "episodes", "successes", "actor_calls", "critic_calls", "network_calls", "seed")
FRACTION_COLUMNS = ("success_rate", "success_ci_low", "success_ci_high")
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
DASHES = ("solid", "dash", "dot", "dashdot")
SYMBOLS = ("circle", "square", "diamond", "triangle-up")
OPTIMAL_COLOR = "#ffd700"


class SweepError(ValueError):
    """A sweep CSV that cannot be used; the message says what is wrong, for the user."""


def sweep_dir() -> Path:
    """Where bundled sweeps live: <repo>/assets/ogbench (SORL_LAB_SWEEP_DIR overrides the folder)."""
    return Path(os.environ.get("SORL_LAB_SWEEP_DIR") or (REPO_ROOT / "assets" / "ogbench"))


def bundled_sweeps(root: Path | None = None) -> list[Path]:
    """Every sweep*.csv under the bundled folder (any depth), sorted."""
    root = sweep_dir() if root is None else Path(root)
    return sorted(p for p in root.glob("**/sweep*.csv") if p.is_file()) if root.is_dir() else []


def _rows(mask: pd.Series, values: pd.Series | None = None, limit: int = 3) -> str:
    """'line 3 ('abc'), line 7 ('')' for the first bad rows; line numbers count the header as line 1."""
    idx = list(mask[mask].index[:limit])
    parts = [f"line {i + 2}" + ("" if values is None else f" ({values[i]!r})") for i in idx]
    more = int(mask.sum()) - len(idx)
    return ", ".join(parts) + (f" and {more} more" if more > 0 else "")


def parse_sweep(data: bytes, name: str = "sweep.csv") -> pd.DataFrame:
    """Read and check a sweep CSV; raises SweepError naming every problem found (columns, values, duplicates)."""
    try:
        raw = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise SweepError(f"{name} is empty: expected a header with the columns {', '.join(SWEEP_COLUMNS)}.") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise SweepError(f"{name} is not a readable CSV file: {exc}") from None
    raw.columns = [str(c).strip() for c in raw.columns]
    missing = [c for c in SWEEP_COLUMNS if c not in raw.columns]
    if missing:
        raise SweepError(f"{name} lacks the column(s) {', '.join(missing)}. A sweep CSV has the columns "
                         f"{', '.join(SWEEP_COLUMNS)} (sorl_core/sweep_schema.py).")
    if raw.empty:
        raise SweepError(f"{name} has the right header but no rows.")
    df = raw[list(SWEEP_COLUMNS)].copy()
    problems = []
    for col in NUMERIC_COLUMNS:
        text = df[col].str.strip()
        num = pd.to_numeric(text, errors="coerce")
        bad = num.isna() | ~np.isfinite(num.astype(float))
        if bad.any():
            problems.append(f"column {col} must hold finite numbers: {_rows(bad, text)}")
            continue
        if col in INTEGER_COLUMNS and (num != num.round()).any():
            problems.append(f"column {col} must hold whole numbers: {_rows(num != num.round(), text)}")
            continue
        df[col] = num.astype("int64") if col in INTEGER_COLUMNS else num.astype(float)
    if problems:
        raise SweepError(f"{name}: " + "; ".join(problems) + ".")
    for col in ("m_inf", "n", "episodes"):
        if (df[col] < 1).any():
            problems.append(f"{col} must be at least 1: {_rows(df[col] < 1, df[col])}")
    for col in FRACTION_COLUMNS:
        out = (df[col] < 0) | (df[col] > 1)
        if out.any():
            problems.append(f"{col} must lie in [0, 1]: {_rows(out, df[col])}")
    outside = (df.success_ci_low > df.success_rate + 1e-6) | (df.success_ci_high < df.success_rate - 1e-6)
    if outside.any():
        problems.append(f"success_rate lies outside [success_ci_low, success_ci_high]: {_rows(outside)}")
    if (df.network_calls < 1).any():
        problems.append(f"network_calls must be at least 1: {_rows(df.network_calls < 1, df.network_calls)}")
    dup = df.duplicated(["checkpoint", "m_btt", "m_inf", "n"], keep="first")
    if dup.any():
        problems.append("the same (checkpoint, m_btt, m_inf, n) cell appears twice: " + _rows(dup)
                        + " (one row per cell; several seeds belong in separate files)")
    if problems:
        raise SweepError(f"{name}: " + "; ".join(problems) + ".")
    df["checkpoint"] = df["checkpoint"].str.strip()
    return df


def combine(frames: Sequence[tuple[str, pd.DataFrame]]) -> pd.DataFrame:
    """Stack checked sweeps; adds `source` (the file) and `series` (what a line is: checkpoint and its M_BTT).

    A label that two files share gets the file name appended, so two loaded files never merge into one line.
    """
    parts, seen = [], {}
    for name, df in frames:
        seen[name] = seen.get(name, 0) + 1
        name = name if seen[name] == 1 else f"{name} #{seen[name]}"  # the same file name uploaded twice
        d = df.copy()
        d.insert(0, "source", name)
        d.insert(1, "series", d["checkpoint"] + " (M_BTT=" + d["m_btt"].astype(str) + ")")
        parts.append(d)
    if not parts:
        return pd.DataFrame(columns=["source", "series", *SWEEP_COLUMNS])
    out = pd.concat(parts, ignore_index=True)
    shared = out.groupby("series")["source"].nunique()
    clash = out["series"].isin(shared[shared > 1].index)
    out.loc[clash, "series"] = out.loc[clash, "series"] + " [" + out.loc[clash, "source"] + "]"
    return out


def series_order(df: pd.DataFrame) -> list[str]:
    """Series in order of first appearance."""
    return list(dict.fromkeys(df["series"]))


def grid(df: pd.DataFrame, value: str = "success_rate") -> tuple[list[int], list[int], np.ndarray]:
    """(m values, n values, z) for one series: z[i, j] is `value` at M_inf = m[i], N = n[j] (NaN: not measured)."""
    ms, ns = sorted(df.m_inf.unique().tolist()), sorted(df.n.unique().tolist())
    z = np.full((len(ms), len(ns)), np.nan)
    for r in df.itertuples(index=False):
        z[ms.index(r.m_inf), ns.index(r.n)] = getattr(r, value)
    return ms, ns, z


def budget_options(df: pd.DataFrame) -> list[int]:
    """The network-call counts that occur in the sweep: the budgets worth offering."""
    return sorted(int(v) for v in df.network_calls.unique())


def compute_optimal(df: pd.DataFrame, budget: float) -> dict | None:
    """The cell with the highest success rate among those with network_calls <= budget.

    Ties go to fewer network calls, then fewer Euler steps. None when no cell fits the budget.
    """
    fit = df[df.network_calls <= budget]
    if fit.empty:
        return None
    best = fit.sort_values(["success_rate", "network_calls", "m_inf", "n"],
                           ascending=[False, True, True, True], kind="mergesort").iloc[0]
    return best.to_dict()


# --------------------------------------------------------------------------- figures
def _pow2_ticks(values) -> list[int]:
    hi = max([float(v) for v in values] + [1.0])
    return [2**i for i in range(int(np.ceil(np.log2(hi))) + 1)]


def compute_figure(df: pd.DataFrame, group_by: str = "n", budget: float | None = None,
                   picks: dict | None = None) -> go.Figure:
    """Success rate against network calls per action (log x), 95% CI as error bars.

    One line per N (group_by="n": M_inf grows along it) or per M_inf ("m"), for every series (checkpoint):
    colour = the N or M value, dash and marker = the series. `budget` draws a vertical line,
    `picks` ({series: row}) a star on each series' compute-optimal cell.
    """
    if group_by not in ("n", "m"):
        raise ValueError(f"group_by must be 'n' or 'm', not {group_by!r}")
    key, along, short = ("n", "m_inf", "N") if group_by == "n" else ("m_inf", "n", "M_inf")
    series = series_order(df)
    values = sorted(df[key].unique().tolist())
    fig = go.Figure()
    for si, s in enumerate(series):
        for vi, v in enumerate(values):
            line = df[(df.series == s) & (df[key] == v)].sort_values(along)
            if line.empty:
                continue
            name = f"{short} = {v}" if len(series) == 1 else f"{s} · {short} = {v}"
            fig.add_trace(go.Scatter(
                x=line.network_calls.tolist(), y=line.success_rate.tolist(), mode="lines+markers", name=name,
                legendgroup=s, line=dict(color=PALETTE[vi % len(PALETTE)], dash=DASHES[si % len(DASHES)]),
                marker=dict(symbol=SYMBOLS[si % len(SYMBOLS)], size=8),
                error_y=dict(type="data", symmetric=False,
                             array=(line.success_ci_high - line.success_rate).tolist(),
                             arrayminus=(line.success_rate - line.success_ci_low).tolist(), thickness=1.2, width=4),
                customdata=line[["m_inf", "n", "episodes", "success_ci_low", "success_ci_high"]].values.tolist(),
                hovertemplate=f"{s}<br>M_inf=%{{customdata[0]}}, N=%{{customdata[1]}}<br>calls/action=%{{x}}<br>"
                              "success=%{y:.3f} [%{customdata[3]:.3f}, %{customdata[4]:.3f}]"
                              "<br>%{customdata[2]} episodes<extra></extra>",
            ))
    if budget is not None:
        fig.add_trace(go.Scatter(x=[budget, budget], y=[0, 1], mode="lines", name=f"budget: {budget:g} calls",
                                 line=dict(color="#888", dash="dash", width=1.5), hoverinfo="skip"))
    for s, row in (picks or {}).items():
        if row is not None:
            fig.add_trace(go.Scatter(
                x=[row["network_calls"]], y=[row["success_rate"]], mode="markers",
                name=f"compute-optimal{'' if len(series) == 1 else ' · ' + s}: M_inf={row['m_inf']}, N={row['n']}",
                marker=dict(symbol="star", size=18, color=OPTIMAL_COLOR, line=dict(width=1, color="black")),
                hovertemplate="compute-optimal under the budget<br>calls/action=%{x}<br>success=%{y:.3f}<extra></extra>",
            ))
    ticks = _pow2_ticks(df.network_calls)
    fig.update_layout(
        title=dict(text=("Sequential scaling: one line per N, more Euler steps along it" if group_by == "n"
                         else "Parallel scaling: one line per M_inf, more candidates along it"),
                   x=0.0, xanchor="left", font=dict(size=15)),
        height=480, margin=dict(l=60, r=20, t=50, b=50),
        xaxis=dict(title="network calls per action (actor M_inf·N + critic N when N > 1), log scale", type="log",
                   tickvals=ticks, ticktext=[str(t) for t in ticks]),
        yaxis=dict(title="success rate (95% Wilson CI)", range=[-0.03, 1.03]),
    )
    return fig


def heatmap_figure(df: pd.DataFrame, title: str, budget: float | None = None, pick: dict | None = None) -> go.Figure:
    """Success rate over the M_inf x N grid of one series, numbers in the cells.

    Cells over `budget` are greyed by a second heatmap trace ("over budget"); `pick` gets a star.
    """
    ms, ns, z = grid(df)
    _, _, calls = grid(df, "network_calls")
    _, _, lo = grid(df, "success_ci_low")
    _, _, hi = grid(df, "success_ci_high")
    xs, ys = [str(v) for v in ns], [str(v) for v in ms]
    fig = go.Figure(go.Heatmap(
        z=z, x=xs, y=ys, name="success rate", zmin=0, zmax=1, colorscale="Viridis",
        colorbar=dict(title=dict(text="success"), thickness=12),
        texttemplate="%{z:.2f}", textfont=dict(size=13),
        customdata=np.dstack([calls, lo, hi]),
        hovertemplate="M_inf=%{y}, N=%{x}<br>success=%{z:.3f} [%{customdata[1]:.3f}, %{customdata[2]:.3f}]"
                      "<br>calls/action=%{customdata[0]}<extra></extra>",
    ))
    if budget is not None:
        over = np.where(np.isfinite(calls) & (calls > budget), 1.0, np.nan)
        fig.add_trace(go.Heatmap(z=over, x=xs, y=ys, name="over budget", zmin=0, zmax=1, showscale=False,
                                 colorscale=[[0, "rgba(70,70,70,0.72)"], [1, "rgba(70,70,70,0.72)"]],
                                 hovertemplate="over the budget of " + f"{budget:g}" + " calls<extra></extra>"))
    if pick is not None:  # a gold frame around the cell (its number stays readable); the trace carries the hover
        i, j = ms.index(pick["m_inf"]), ns.index(pick["n"])
        fig.add_shape(type="rect", x0=j - 0.47, x1=j + 0.47, y0=i - 0.45, y1=i + 0.45, xref="x", yref="y",
                      line=dict(color=OPTIMAL_COLOR, width=4), name="compute-optimal")
        fig.add_trace(go.Scatter(x=[str(pick["n"])], y=[str(pick["m_inf"])], mode="markers", name="compute-optimal",
                                 marker=dict(size=30, opacity=0), showlegend=False,
                                 hovertemplate="compute-optimal under the budget<extra></extra>"))
    fig.update_layout(
        title=dict(text=title, x=0.0, xanchor="left", font=dict(size=14)), height=380,
        margin=dict(l=60, r=20, t=50, b=50),
        xaxis=dict(title="N (best-of-N candidates)", type="category"),
        yaxis=dict(title="M_inf (Euler steps)", type="category"),
    )
    return fig


# --------------------------------------------------------------------------- running a small sweep
def run_small_sweep(checkpoint: str | Path, label: str, m_values, n_values, episodes: int, seed: int,
                    on_progress=None) -> bytes:
    """A sweep through the same evaluator as `sorl-lab evaluate`; returns its CSV bytes (parse with parse_sweep)."""
    from sorl_core.evaluate import EvaluateConfig, run_sweep, sweep_csv

    cfg = EvaluateConfig(checkpoint=str(checkpoint), m_inf=tuple(sorted(m_values)), n=tuple(sorted(n_values)),
                         episodes=int(episodes), seed=int(seed), progress=False)
    rows = run_sweep(cfg, on_progress=on_progress)
    for row in rows:
        row["checkpoint"] = label
    return sweep_csv(rows).encode()
