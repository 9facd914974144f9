"""A test-time-scaling sweep as a report, built once: reading and checking a sweep CSV, naming its series, the
M_inf x N grid, the compute-optimal cell under a budget, several training seeds, and the two figures.

`sorl-lab evaluate` writes sweep.html with these figures and the Scaling page draws the same ones (app/scaling_page.py
adds only where sweeps are found and how a small sweep is run from the page).

A sweep CSV has one row per (checkpoint, m_inf, n) cell, with the columns of
``sorl_core.studies.sweep_schema.SWEEP_COLUMNS`` (written by the evaluator), and one per adaptive rule (column `adaptive`
not empty; its calls are means, not whole numbers): those are points on the compute plot, not grid cells.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..stats import wilson_interval
from ..config import METHODS
from ..verifiers import VERIFIERS, calls_text
from .sweep_schema import COLUMN_DEFAULTS, SWEEP_COLUMNS, best_within_budget, recipe

TEXT_COLUMNS = ("checkpoint", "env", "verifier", "adaptive", "train_seed", "train_iterations", "success_timing",
                "method")
MEAN_COLUMNS = ("actor_calls", "critic_calls", "network_calls")  # whole numbers except in adaptive rows
NUMERIC_COLUMNS = tuple(c for c in SWEEP_COLUMNS if c not in TEXT_COLUMNS)
INTEGER_COLUMNS = ("m_btt", "m_inf", "n", "episodes", "successes", "actor_calls", "critic_calls", "network_calls", "seed")
FRACTION_COLUMNS = ("success_rate", "success_ci_low", "success_ci_high")
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
DASHES = ("solid", "dash", "dot", "dashdot")
SYMBOLS = ("circle", "square", "diamond", "triangle-up")
OPTIMAL_COLOR = "#ffd700"
STAR = dict(symbol="star", size=18, color=OPTIMAL_COLOR, line=dict(width=1, color="black"))  # compute-optimal


class SweepError(ValueError):
    """A sweep CSV that cannot be used; the message says what is wrong, for the user."""


def _value(v) -> str:
    """A cell as a person reads it: text quoted ('abc'), numbers plain (0, 1.5), never numpy's np.int64(0)."""
    if isinstance(v, str):
        return repr(v)
    return f"{float(v):g}" if isinstance(v, (float, np.floating)) else str(v)


def _rows(mask: pd.Series, values: pd.Series | None = None, limit: int = 3) -> str:
    """'line 3 ('abc'), line 7 (0)' for the first bad rows; line numbers count the header as line 1."""
    idx = list(mask[mask].index[:limit])
    parts = [f"line {i + 2}" + ("" if values is None else f" ({_value(values[i])})") for i in idx]
    more = int(mask.sum()) - len(idx)
    return ", ".join(parts) + (f" and {more} more" if more > 0 else "")


def parse_sweep(data: bytes, name: str = "sweep.csv") -> pd.DataFrame:
    """Read and check a sweep CSV; raises SweepError naming every problem found (columns, values, duplicates)."""
    try:
        raw = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise SweepError(f"{name} is empty: expected a sweep written by `sorl-lab evaluate`.") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise SweepError(f"{name} is not a readable CSV file: {exc}") from None
    raw.columns = [str(c).strip() for c in raw.columns]
    for col, default in COLUMN_DEFAULTS.items():  # older files: the column did not exist yet
        if col not in raw.columns and not raw.empty:
            raw[col] = default
    missing = [c for c in SWEEP_COLUMNS if c not in raw.columns]
    if missing:
        shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
        raise SweepError(f"{name} is not a sweep written by `sorl-lab evaluate`: it lacks the column(s) {shown}.")
    if raw.empty:
        raise SweepError(f"{name} has the right header but no rows.")
    df = raw[list(SWEEP_COLUMNS)].copy()
    df["adaptive"] = df["adaptive"].str.strip()
    fixed_rows = df["adaptive"] == ""
    problems = []
    for col in NUMERIC_COLUMNS:
        text = df[col].str.strip()
        num = pd.to_numeric(text, errors="coerce")
        bad = num.isna() | ~np.isfinite(num.astype(float))
        if bad.any():
            problems.append(f"column {col} must hold finite numbers: {_rows(bad, text)}")
            continue
        fraction = num != num.round()
        if col in MEAN_COLUMNS:
            fraction &= fixed_rows
        if col in INTEGER_COLUMNS and fraction.any():
            problems.append(f"column {col} must hold whole numbers: {_rows(fraction, text)}")
            continue
        whole = col in INTEGER_COLUMNS and not (col in MEAN_COLUMNS and (num != num.round()).any())
        df[col] = num.astype("int64") if whole else num.astype(float)
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
    for col in ("train_seed", "train_iterations"):
        df[col] = df[col].str.strip()
        not_whole = (df[col] != "") & ~df[col].str.fullmatch(r"\d+")
        if not_whole.any():
            problems.append(f"column {col} must be empty or a whole number: {_rows(not_whole, df[col])}")
    df["success_timing"] = df["success_timing"].str.strip()
    timing = ~df["success_timing"].isin(["", "pre", "post"])
    if timing.any():
        problems.append(f"column success_timing must be empty, pre or post: {_rows(timing, df['success_timing'])}")
    df["method"] = df["method"].str.strip().replace("", COLUMN_DEFAULTS["method"])
    foreign = ~df["method"].isin(list(METHODS))
    if foreign.any():
        problems.append(f"column method must name one of {', '.join(METHODS)}: {_rows(foreign, df['method'])}")
    df["verifier"] = df["verifier"].str.strip().replace("", COLUMN_DEFAULTS["verifier"])  # blank: the default
    unknown = ~df["verifier"].isin(list(VERIFIERS))
    if unknown.any():
        problems.append(f"column verifier must name one of {', '.join(VERIFIERS)}: {_rows(unknown, df['verifier'])}")
    dup = df.duplicated(["checkpoint", "m_btt", "m_inf", "n", "verifier", "adaptive", "train_seed", "train_iterations",
                         "success_timing"], keep="first")
    if dup.any():
        problems.append("the same (checkpoint, m_btt, m_inf, n, verifier, train_seed) cell appears twice: " + _rows(dup)
                        + " (one row per cell; sweeps with other evaluation seeds belong in separate files)")
    if problems:
        raise SweepError(f"{name}: " + "; ".join(problems) + ".")
    df["checkpoint"] = df["checkpoint"].str.strip()
    return df


def base_name(checkpoint: str, m_btt, verifier: str = "q", success_timing: str = "", method: str = "sorl") -> str:
    """What a series is called when no other loaded series has the same checkpoint, M_BTT (SORL) or method (a
    baseline), verifier and timing."""
    return (f"{checkpoint} ({f'M_BTT={int(m_btt)}' if method == 'sorl' else method})"
            + ("" if verifier == "q" else f" · {verifier}")
            + (" · success after the action" if success_timing == "post" else ""))


def name_series(keys: Sequence[tuple], registry: dict) -> dict:
    """Stable, unique names for series; `registry` ({key: name}, kept by the caller across reruns) is updated.

    A key is (source key, checkpoint, m_btt, verifier, success timing, method). A name never changes while its series stays loaded: a newcomer
    whose base name is taken gets "base (2)", "base (3)", ... (the smallest free one). Keys no longer loaded
    are dropped, so their names are free again.
    """
    for gone in [k for k in registry if k not in keys]:
        del registry[gone]
    for key in keys:
        if key in registry:
            continue
        taken, base = set(registry.values()), base_name(*key[1:])
        name, i = base, 2
        while name in taken:
            name, i = f"{base} ({i})", i + 1
        registry[key] = name
    return registry


def combine(frames: Sequence[tuple], registry: dict | None = None) -> pd.DataFrame:
    """Stack checked sweeps; adds `source` (the file) and `series` (what a line is: checkpoint and its M_BTT).

    frames: (source, df) or (source, key, df); `key` tells loaded files apart across reruns (a bundled path, an
    upload's id), by default the source and how often it occurred. Series names come from name_series, so two
    loaded files never merge into one line, and a name once shown does not change when another file arrives.
    """
    registry = {} if registry is None else registry
    parts, seen = [], {}
    for item in frames:
        name, key, df = (item[0], None, item[1]) if len(item) == 2 else item
        seen[name] = seen.get(name, 0) + 1
        key = key if key is not None else f"{name}#{seen[name]}"
        d = df.copy()
        d.insert(0, "source", name)
        d.insert(1, "series", [(key, c, int(m), v, t, a) for c, m, v, t, a in
                               zip(d["checkpoint"], d["m_btt"], d["verifier"], d["success_timing"], d["method"])])
        parts.append(d)
    if not parts:
        registry.clear()
        return pd.DataFrame(columns=["source", "series", *SWEEP_COLUMNS])
    out = pd.concat(parts, ignore_index=True)
    name_series(list(dict.fromkeys(out["series"])), registry)
    out["series"] = [registry[k] for k in out["series"]]  # (Series.map would read tuple keys as a MultiIndex)
    return out


def series_order(df: pd.DataFrame) -> list[str]:
    """Series in order of first appearance."""
    return list(dict.fromkeys(df["series"]))


def fixed(df: pd.DataFrame) -> pd.DataFrame:
    """The fixed (M_inf, N) grid cells: rows of no adaptive rule (every row of a file without the column)."""
    return df[df["adaptive"] == ""] if "adaptive" in df else df


def grid(df: pd.DataFrame, value: str = "success_rate") -> tuple[list[int], list[int], np.ndarray]:
    """(m values, n values, z) for one series: z[i, j] is `value` at M_inf = m[i], N = n[j] (NaN: not measured)."""
    df = fixed(df)
    ms, ns = sorted(df.m_inf.unique().tolist()), sorted(df.n.unique().tolist())
    z = np.full((len(ms), len(ns)), np.nan)
    for r in df.itertuples(index=False):
        z[ms.index(r.m_inf), ns.index(r.n)] = getattr(r, value)
    return ms, ns, z


def budget_options(df: pd.DataFrame) -> list[int]:
    """The network-call counts that occur in the sweep: the budgets worth offering."""
    return sorted(int(v) for v in fixed(df).network_calls.unique())


def compute_optimal(df: pd.DataFrame, budget: float) -> dict | None:
    """The cell with the highest success rate among those with network_calls <= budget.

    Ties go to fewer network calls, then fewer Euler steps. None when no cell fits the budget.
    """
    return best_within_budget(fixed(df).to_dict("records"), budget)


# --------------------------------------------------------------------------- several training seeds
# What series can be told apart by: the name the page shows -> the column (`recipe` is added by across_seeds).
AXES = {"recipe": "recipe", "method": "method", "M_BTT": "m_btt", "verifier": "verifier", "environment": "env",
        "training seed": "train_seed"}


def _with_recipe(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(recipe=[recipe(c) for c in df["checkpoint"]])


def has_seed_spread(df: pd.DataFrame) -> bool:
    """Whether some recipe (same name, environment, M_BTT and verifier) was measured for several training seeds."""
    d = _with_recipe(df[df["train_seed"] != ""]) if "train_seed" in df else df.iloc[:0]
    return not d.empty and bool((d.groupby(["recipe", "env", "method", "m_btt", "verifier"])["train_seed"].nunique() > 1).any())


def varying_axes(df: pd.DataFrame) -> list[str]:
    """The axes (keys of AXES) that take more than one value among the loaded rows."""
    d = _with_recipe(df)
    return [name for name, col in AXES.items() if d[col].astype(str).nunique() > 1]


def _axis_text(name: str, value) -> str:
    return {"M_BTT": f"M_BTT={value}", "training seed": f"seed {value}"}.get(name, str(value))


def across_seeds(df: pd.DataFrame, compare: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One series per value of the `compare` axes; rows that differ only in the other axes (training seeds, mostly)
    are its members, their episodes pooled cell by cell.

    Returns (table, members). `table` has the figures' columns: success_rate is the pooled rate (all members'
    successes over all their episodes: their mean when each played as many), success_ci_low / success_ci_high its 95%
    Wilson interval, spread_low / spread_high the lowest and highest member's rate, episodes their sum, and
    `members` how many were measured at the cell. A series of several members is named so ("... · mean of 3 seeds").
    `members` holds the member rows, with `series` and `member` (e.g. "seed 1") set, for one thin line per member.
    """
    d = _with_recipe(df)
    others = [n for n in varying_axes(df) if n not in compare]
    if compare:
        d["series"] = [" · ".join(_axis_text(n, v) for n, v in zip(compare, vals))
                       for vals in zip(*(d[AXES[n]] for n in compare))]
    else:  # nothing compared: one series, named like a checkpoint when everything but the members agrees
        alike = all(d[c].nunique() == 1 for c in ("recipe", "m_btt", "verifier", "method"))
        d["series"] = (base_name(d.recipe.iloc[0], d.m_btt.iloc[0], d.verifier.iloc[0], method=d.method.iloc[0]) if alike
                       else "all loaded sweeps")
    # An axis that is one value within every series (the recipe when methods are compared) tells no members apart.
    others = [n for n in others if d.groupby("series")[AXES[n]].nunique().max() > 1]
    d["member"] = [" · ".join(_axis_text(n, v) for n, v in zip(others, vals)) or "the only one"
                   for vals in zip(*(d[AXES[n]] for n in others))] if others else "the only one"
    counts = d.groupby("series", sort=False)["member"].nunique()
    what = "seeds" if others == ["training seed"] else "members"
    d["series"] = [f"{s} · mean of {counts[s]} {what}" if counts[s] > 1 else s for s in d["series"]]
    cell = ["series", "m_inf", "n", "adaptive"]
    first = d.groupby(cell, sort=False).first().reset_index()
    stats = d.groupby(cell, sort=False).agg(
        successes=("successes", "sum"), spread_low=("success_rate", "min"), spread_high=("success_rate", "max"),
        episodes=("episodes", "sum"), members=("member", "nunique"), network_calls=("network_calls", "mean")).reset_index()
    stats["success_rate"] = stats.successes / stats.episodes
    bounds = [wilson_interval(int(k), int(e)) for k, e in zip(stats.successes, stats.episodes)]
    stats["success_ci_low"], stats["success_ci_high"] = [b[0] for b in bounds], [b[1] for b in bounds]
    stats["network_calls"] = stats["network_calls"].round(4)  # whole numbers stay whole; adaptive rows are means
    table = first.drop(columns=["success_rate", "success_ci_low", "success_ci_high", "successes", "episodes",
                                "network_calls"])
    table = table.merge(stats, on=cell, sort=False)
    return table, d


# --------------------------------------------------------------------------- figures
def _pow2_ticks(values) -> list[int]:
    hi = max([float(v) for v in values] + [1.0])
    return [2**i for i in range(int(np.ceil(np.log2(hi))) + 1)]


def _key_entry(name: str, group: str, **style) -> go.Scatter:
    """A legend-only entry (no data): says what a colour or a dash means."""
    return go.Scatter(x=[None], y=[None], mode=style.pop("mode", "lines+markers"), name=name, legendgroup=group,
                      showlegend=True, hoverinfo="skip", **style)


def compute_figure(df: pd.DataFrame, group_by: str = "n", budget: float | None = None,
                   picks: dict | None = None, members: pd.DataFrame | None = None) -> go.Figure:
    """Success rate against network calls per action (log x), 95% CI as error bars.

    One line per N (group_by="n": M_inf grows along it) or per M_inf ("m"), for every series (checkpoint); or
    ("frontier") one line per series through its best cell within each budget, a step at each cell that beats the
    cheaper ones: series with different grids (e.g. methods) on one footing.
    One series: colour = the N or M value. Several: colour = the series, dash and marker = the N or M value,
    and the legend (below the plot) names each colour and each dash once instead of every line: with three
    series that is 3 + 3 entries rather than 9. `budget` draws a vertical line, `picks` ({series: row}) a star
    on each series' compute-optimal cell.
    """
    if group_by not in ("n", "m", "frontier"):
        raise ValueError(f"group_by must be 'n', 'm' or 'frontier', not {group_by!r}")
    if group_by == "frontier":
        return _frontier_figure(df, budget, picks)
    key, along, short = ("n", "m_inf", "N") if group_by == "n" else ("m_inf", "n", "M_inf")
    series = series_order(df)
    rules = df[df["adaptive"] != ""] if "adaptive" in df else df.iloc[:0]
    df = fixed(df)
    values = sorted(df[key].unique().tolist())
    several = len(series) > 1
    fig = go.Figure()
    for si, s in enumerate(series):
        for vi, v in enumerate(values):
            line = df[(df.series == s) & (df[key] == v)].sort_values(along)
            if line.empty:
                continue
            color = PALETTE[si % len(PALETTE)] if several else PALETTE[vi % len(PALETTE)]
            fig.add_trace(go.Scatter(
                x=line.network_calls.tolist(), y=line.success_rate.tolist(), mode="lines+markers",
                name=f"{s} · {short} = {v}" if several else f"{short} = {v}", legendgroup=s if several else None,
                showlegend=not several,  # several series: the key entries below name colours and dashes
                line=dict(color=color, dash=DASHES[vi % len(DASHES)] if several else "solid"),
                marker=dict(symbol=SYMBOLS[vi % len(SYMBOLS)] if several else "circle", size=8),
                error_y=dict(type="data", symmetric=False,
                             array=(line.success_ci_high - line.success_rate).tolist(),
                             arrayminus=(line.success_rate - line.success_ci_low).tolist(), thickness=1.2, width=4),
                customdata=line[["m_inf", "n", "episodes", "success_ci_low", "success_ci_high",
                                 *(["spread_low", "spread_high"] if members is not None else [])]].values.tolist(),
                hovertemplate=f"{s}<br>M_inf=%{{customdata[0]}}, N=%{{customdata[1]}}<br>calls/action=%{{x}}<br>"
                              + "success=%{y:.3f} [%{customdata[3]:.3f}, %{customdata[4]:.3f}]"
                              + ("<br>members from %{customdata[5]:.3f} to %{customdata[6]:.3f}" if members is not None else "")
                              + "<br>%{customdata[2]} episodes<extra></extra>",
            ))
            if members is None:
                continue
            own = fixed(members)
            own = own[(own.series == s) & (own[key] == v)]
            for m in dict.fromkeys(own.member):
                one = own[own.member == m].sort_values(along)
                fig.add_trace(go.Scatter(
                    x=one.network_calls.tolist(), y=one.success_rate.tolist(), mode="lines",
                    name=f"{s + ' · ' if several else ''}{short} = {v} · {m}", legendgroup=s if several else None,
                    showlegend=False,
                    line=dict(color=color, width=1, dash=DASHES[vi % len(DASHES)] if several else "solid"),
                    opacity=0.45, hovertemplate=f"{s} · {m}<br>calls/action=%{{x}}<br>success=%{{y:.3f}}<extra></extra>"))
    for r in rules.itertuples(index=False):  # adaptive rules: one point each, at their mean calls
        si = series.index(r.series) if r.series in series else 0
        fig.add_trace(go.Scatter(
            x=[r.network_calls], y=[r.success_rate], mode="markers",
            name=f"{r.series} · {r.adaptive}" if several else f"adaptive {r.adaptive}",
            legendgroup=r.series if several else None,
            marker=dict(symbol="hexagram", size=13, color=PALETTE[si % len(PALETTE)] if several else "#333",
                        line=dict(width=1, color="white")),
            error_y=dict(type="data", symmetric=False, array=[r.success_ci_high - r.success_rate],
                         arrayminus=[r.success_rate - r.success_ci_low], thickness=1.2, width=4),
            hovertemplate=f"{r.series}<br>adaptive {r.adaptive}<br>mean calls/action=%{{x:.2f}}<br>"
                          f"success=%{{y:.3f}} [{r.success_ci_low:.3f}, {r.success_ci_high:.3f}]"
                          f"<br>{r.episodes} episodes<extra></extra>"))
    if several:  # the key: one entry per series (clicking it hides the series), one per dash
        for si, s in enumerate(series):
            fig.add_trace(_key_entry(s, s, line=dict(color=PALETTE[si % len(PALETTE)], width=3), mode="lines"))
        for vi, v in enumerate(values):
            fig.add_trace(_key_entry(f"{short} = {v}", f"key {short} = {v}",
                                     line=dict(color="#555", dash=DASHES[vi % len(DASHES)]),
                                     marker=dict(symbol=SYMBOLS[vi % len(SYMBOLS)], size=8, color="#555")))
    if members is not None and fixed(members).member.nunique() > 1:
        fig.add_trace(_key_entry("thin lines: one per member (seed)", "key members", mode="lines",
                                 line=dict(color="#999", width=1)))
    _budget_line(fig, budget)
    for s, row in (picks or {}).items():
        if row is not None:
            fig.add_trace(go.Scatter(
                x=[row["network_calls"]], y=[row["success_rate"]], mode="markers",
                name=f"compute-optimal{' · ' + s if several else ''}: M_inf={row['m_inf']}, N={row['n']}",
                legendgroup=s if several else None, showlegend=not several, marker=STAR,
                hovertemplate=(f"{s}<br>" if several else "") + "compute-optimal under the budget<br>"
                              "calls/action=%{x}<br>success=%{y:.3f}<extra></extra>",
            ))
    if several and any(row is not None for row in (picks or {}).values()):
        fig.add_trace(_key_entry("compute-optimal", "key compute-optimal", mode="markers", marker=STAR))
    ticks = _pow2_ticks(list(df.network_calls) + list(rules.network_calls))
    # The legend sits under the plot and pushes the bottom margin down as it grows; grow the figure with it, so
    # the plot keeps its height and the legend stays clear of the x-axis title (one entry a row at 1024 px).
    entries = sum(1 for t in fig.data if t.showlegend is not False)
    fig.update_layout(
        title=dict(text=("Sequential scaling: one line per N, more Euler steps along it" if group_by == "n"
                         else "Parallel scaling: one line per M_inf, more candidates along it"),
                   x=0.0, xanchor="left", font=dict(size=15)),
        height=520 + 20 * max(0, entries - 6), margin=dict(l=60, r=20, t=50, b=40),
        # Below the plot, left-aligned and wrapping: never over the title or the curves, at any width.
        legend=dict(orientation="h", x=0.0, xanchor="left", y=-0.22, yanchor="top"),
        # Short enough for 1024 px; the hover and the budget's help give the count (M_inf·N actor calls + the
        # verifier's critic calls).
        xaxis=dict(title="network calls per action (log scale)", type="log",
                   tickvals=ticks, ticktext=[str(t) for t in ticks]),
        yaxis=dict(title="success rate (95% Wilson CI)" if members is None else
                   "success rate (95% CI, seeds pooled)", range=[-0.03, 1.03]),
    )
    return fig


def _budget_line(fig: go.Figure, budget: float | None) -> None:
    """The budget as a dashed vertical line (none without a budget)."""
    if budget is not None:
        fig.add_trace(go.Scatter(x=[budget, budget], y=[0, 1], mode="lines", name=f"budget: {calls_text(budget)}",
                                 line=dict(color="#888", dash="dash", width=1.5), hoverinfo="skip"))


def _frontier_figure(df: pd.DataFrame, budget: float | None, picks: dict | None) -> go.Figure:
    """compute_figure(group_by="frontier"): each series' compute-optimal cell at every budget its own cells set."""
    fig = go.Figure()
    series = series_order(df)
    cells = fixed(df)
    for si, s in enumerate(series):
        mine = cells[cells.series == s]
        budgets = sorted(set(mine.network_calls.tolist()))
        line = pd.DataFrame([{**compute_optimal(mine, b), "budget": b} for b in budgets])
        if line.empty:
            continue
        # A marker and its interval where the best cell changes; the line carries it on to the dearer budgets.
        new = ((line.m_inf != line.m_inf.shift()) | (line.n != line.n.shift())).to_numpy()
        fig.add_trace(go.Scatter(
            x=line.budget.tolist(), y=line.success_rate.tolist(), mode="lines+markers", name=s, line_shape="hv",
            line=dict(color=PALETTE[si % len(PALETTE)], width=2.5), marker=dict(size=np.where(new, 8, 0).tolist()),
            error_y=dict(type="data", symmetric=False,
                         array=np.where(new, line.success_ci_high - line.success_rate, 0).tolist(),
                         arrayminus=np.where(new, line.success_rate - line.success_ci_low, 0).tolist(),
                         thickness=1.2, width=4),
            customdata=line[["m_inf", "n", "network_calls", "episodes", "success_ci_low", "success_ci_high"]].values.tolist(),
            hovertemplate=f"{s}<br>budget %{{x}} calls/action: best cell M_inf=%{{customdata[0]}}, "
                          "N=%{customdata[1]} (%{customdata[2]} calls)<br>success=%{y:.3f} [%{customdata[4]:.3f}, "
                          "%{customdata[5]:.3f}]<br>%{customdata[3]} episodes<extra></extra>"))
    _budget_line(fig, budget)
    for s, row in (picks or {}).items():
        if row is not None:
            fig.add_trace(go.Scatter(x=[row["network_calls"]], y=[row["success_rate"]], mode="markers",
                                     name=f"compute-optimal · {s}", showlegend=False, marker=STAR,
                                     hovertemplate=f"{s}<br>compute-optimal under the budget<extra></extra>"))
    ticks = _pow2_ticks(cells.network_calls)
    fig.update_layout(
        title=dict(text="Best cell within each budget: one line per series", x=0.0, xanchor="left",
                   font=dict(size=15)),
        height=520, margin=dict(l=60, r=20, t=50, b=40),
        legend=dict(orientation="h", x=0.0, xanchor="left", y=-0.22, yanchor="top"),
        xaxis=dict(title="budget: network calls per action (log scale)", type="log",
                   tickvals=ticks, ticktext=[str(t) for t in ticks]),
        yaxis=dict(title="success rate of the best cell (95% CI)", range=[-0.03, 1.03]))
    return fig


def heatmap_figure(df: pd.DataFrame, title: str, budget: float | None = None, pick: dict | None = None,
                   spread: bool = False) -> go.Figure:
    """Success rate over the M_inf x N grid of one series, numbers in the cells (`spread`: means over members,
    whose lowest and highest rates the hover gives).

    Cells over `budget` are greyed by a second heatmap trace ("over budget"); `pick` gets a star.
    """
    ms, ns, z = grid(df)
    _, _, calls = grid(df, "network_calls")
    _, _, lo = grid(df, "spread_low" if spread else "success_ci_low")
    _, _, hi = grid(df, "spread_high" if spread else "success_ci_high")
    xs, ys = [str(v) for v in ns], [str(v) for v in ms]
    fig = go.Figure(go.Heatmap(
        z=z, x=xs, y=ys, name="success rate", zmin=0, zmax=1, colorscale="Viridis",
        colorbar=dict(title=dict(text="success"), thickness=12),
        texttemplate="%{z:.2f}", textfont=dict(size=13),
        customdata=np.dstack([calls, lo, hi]),
        hovertemplate="M_inf=%{y}, N=%{x}<br>"
                      + ("pooled success=%{z:.3f}, members from %{customdata[1]:.3f} to %{customdata[2]:.3f}" if spread
                         else "success=%{z:.3f} [%{customdata[1]:.3f}, %{customdata[2]:.3f}]")
                      + "<br>calls/action=%{customdata[0]}<extra></extra>",
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
    lines = wrap_title(title)
    fig.update_layout(
        title=dict(text="<br>".join(lines), x=0.0, xanchor="left", font=dict(size=14)), height=380 + 18 * (len(lines) - 1),
        margin=dict(l=60, r=20, t=50 + 18 * (len(lines) - 1), b=50),
        xaxis=dict(title="N (best-of-N candidates)", type="category"),
        yaxis=dict(title="M_inf (Euler steps)", type="category"),
    )
    return fig


# --------------------------------------------------------------------------- the training budget as an axis
SNAPSHOT_TAG = re.compile(r"@\d+$")


def training_budget(df: pd.DataFrame) -> pd.DataFrame:
    """The fixed cells of runs measured at two or more training budgets (snapshots of `sorl-lab train --snapshots`,
    or checkpoints with a `train_iterations`), seeds of one recipe pooled.

    One row per (run, M_BTT, verifier, train_iterations, M_inf, N): `run` is the checkpoint's recipe without its
    snapshot tag and seed, success_rate the pooled rate with its 95% Wilson interval, `seeds` how many were pooled.
    Empty when no run was measured at two budgets.
    """
    d = fixed(df)
    d = d[d.train_iterations.astype(str).str.fullmatch(r"\d+")].copy()
    # N = 1 ranks nothing: a sweep over several verifiers repeats its row under each; one line, not one per verifier.
    d = pd.concat([d[d.n > 1], d[d.n == 1].drop_duplicates(["checkpoint", "train_seed", "train_iterations", "m_btt",
                                                              "m_inf", "seed", "episodes"])])
    if d.empty:
        return d.assign(run=[], seeds=[])
    d["run"] = [recipe(SNAPSHOT_TAG.sub("", c)) for c in d.checkpoint]
    d["train_iterations"] = d.train_iterations.astype(int)
    d["seed_key"] = d.train_seed.astype(str) + "|" + d.checkpoint.map(lambda c: SNAPSHOT_TAG.sub("", c))
    keys = ["run", "m_btt", "verifier", "train_iterations", "m_inf", "n"]
    out = d.groupby(keys, sort=True).agg(successes=("successes", "sum"), episodes=("episodes", "sum"),
                                        network_calls=("network_calls", "mean"), seeds=("seed_key", "nunique"),
                                        env=("env", "first")).reset_index()
    out["success_rate"] = out.successes / out.episodes
    bounds = [wilson_interval(int(k), int(e)) for k, e in zip(out.successes, out.episodes)]
    out["success_ci_low"], out["success_ci_high"] = [b[0] for b in bounds], [b[1] for b in bounds]
    budgets = out.groupby(["run", "m_btt"])["train_iterations"].transform("nunique")
    return out[budgets >= 2].reset_index(drop=True)


def rate_with_interval(r) -> str:
    """A pooled cell's success in words: '84% [77%, 89%]' (95% Wilson interval)."""
    return f"{r.success_rate:.0%} [{r.success_ci_low:.0%}, {r.success_ci_high:.0%}]"


def cell_label(r) -> str:
    """A test-time setting in words: M_inf=8, N=16 · q (the verifier only where N > 1 ranks something)."""
    return f"M_inf={r.m_inf}, N={r.n}" + (f" · {r.verifier}" if r.n > 1 else "")


def headline_cells(tb: pd.DataFrame) -> list[str]:
    """The labels of the BUDGET_CELLS a training-budget table holds (the lines the page opens on); all when none."""
    present = list(dict.fromkeys(cell_label(r) for r in tb.itertuples(index=False)))
    wanted = [f"M_inf={m}, N={n}" + (f" · {v}" if n > 1 else "") for m, n, v in BUDGET_CELLS]
    return [w for w in wanted if w in present] or present


def training_curves_figure(tb: pd.DataFrame, every: pd.DataFrame | None = None) -> go.Figure:
    """Success against training iterations (log x), one line per (M_inf, N, verifier), 95% intervals as bars.

    Colour is N, in the order the success-against-compute figure gives it (N = 1 blue, 4 orange, 16 green), dash is
    M_inf and the marker the verifier: twelve lines stay tellable apart.
    """
    fig = go.Figure()
    cells = tb.drop_duplicates(["m_inf", "n", "verifier"]).sort_values(["n", "m_inf", "verifier"])
    every = tb if every is None else every  # styles come from every setting, so a line keeps them when others hide
    ns, ms = sorted(every.n.unique().tolist()), sorted(every.m_inf.unique().tolist())
    verifiers = list(dict.fromkeys(every.drop_duplicates(["m_inf", "n", "verifier"])
                                   .sort_values(["n", "m_inf", "verifier"]).verifier))
    for c in cells.itertuples(index=False):
        line = tb[(tb.m_inf == c.m_inf) & (tb.n == c.n) & (tb.verifier == c.verifier)].sort_values("train_iterations")
        fig.add_trace(go.Scatter(
            x=line.train_iterations.tolist(), y=line.success_rate.tolist(), mode="lines+markers", name=cell_label(c),
            line=dict(color=PALETTE[ns.index(c.n) % len(PALETTE)], dash=DASHES[ms.index(c.m_inf) % len(DASHES)]),
            marker=dict(symbol=SYMBOLS[verifiers.index(c.verifier) % len(SYMBOLS)], size=7),
            error_y=dict(type="data", symmetric=False, array=(line.success_ci_high - line.success_rate).tolist(),
                         arrayminus=(line.success_rate - line.success_ci_low).tolist(), thickness=1.2, width=4),
            customdata=line[["episodes", "success_ci_low", "success_ci_high", "network_calls", "seeds"]].values.tolist(),
            hovertemplate=f"{cell_label(c)}<br>%{{x:,}} training iterations<br>success=%{{y:.3f}} "
                          "[%{customdata[1]:.3f}, %{customdata[2]:.3f}]<br>%{customdata[3]} calls per action<br>"
                          "%{customdata[0]} episodes over %{customdata[4]} seed(s)<extra></extra>"))
    ticks = sorted(tb.train_iterations.unique().tolist())
    fig.update_layout(
        title=dict(text="Success against training iterations, one line per test-time setting", x=0.0, xanchor="left",
                   font=dict(size=15)),
        height=480, margin=dict(l=60, r=20, t=50, b=40),
        legend=dict(orientation="h", x=0.0, xanchor="left", y=-0.22, yanchor="top"),
        xaxis=dict(title="training iterations (log scale)", type="log", tickvals=ticks,
                   ticktext=[f"{t // 1000:,}k" if t >= 1000 else str(t) for t in ticks]),
        yaxis=dict(title="success rate (95% CI)", range=[-0.03, 1.03]))
    return fig


def compute_plane(tb: pd.DataFrame) -> tuple[list[int], list[float], np.ndarray, list[list[dict | None]]]:
    """(training iterations, calls per action, best success, its cell) over the plane of training against test-time
    compute: at each pair, the best (M_inf, N, verifier) cell that costs exactly that many calls."""
    rows, cols = sorted(tb.train_iterations.unique().tolist()), sorted(tb.network_calls.unique().tolist())
    z = np.full((len(rows), len(cols)), np.nan)
    cells: list[list[dict | None]] = [[None] * len(cols) for _ in rows]
    for r in tb.to_dict("records"):
        i, j = rows.index(r["train_iterations"]), cols.index(r["network_calls"])
        if cells[i][j] is None or r["success_rate"] > cells[i][j]["success_rate"]:
            cells[i][j], z[i, j] = r, r["success_rate"]
    return rows, cols, z, cells


def compute_plane_figure(tb: pd.DataFrame) -> go.Figure:
    rows, cols, z, cells = compute_plane(tb)
    text = [[("" if c is None else f"{c['success_rate']:.2f}") for c in line] for line in cells]
    hover = [[("not measured" if c is None else
               f"{cell_label(pd.Series(c))}<br>success {c['success_rate']:.3f} [{c['success_ci_low']:.3f}, "
               f"{c['success_ci_high']:.3f}]<br>{c['episodes']} episodes") for c in line] for line in cells]
    fig = go.Figure(go.Heatmap(
        z=z, x=[f"{c:g}" for c in cols], y=[f"{r:,}" for r in rows], zmin=0, zmax=1, colorscale="Viridis",
        colorbar=dict(title=dict(text="success"), thickness=12), text=text, texttemplate="%{text}",
        customdata=hover, hovertemplate="%{y} training iterations, %{x} calls per action<br>%{customdata}<extra></extra>"))
    fig.update_layout(
        title=dict(text="Training compute against test-time compute (best cell at each cost)", x=0.0, xanchor="left",
                   font=dict(size=15)),
        height=140 + 48 * len(rows), margin=dict(l=90, r=20, t=50, b=50),
        xaxis=dict(title="network calls per action", type="category"),
        yaxis=dict(title="training iterations", type="category"))
    return fig


def success_target(tb: pd.DataFrame) -> float | None:
    """The lab's success target (`Environment.target`, at M_inf = 8, N = 1) for the environment of a run's rows, or
    None for an environment without one (a toy world, puzzle)."""
    from ..ogbench.environments import environment_for

    envs = set(tb.env) if "env" in tb else set()
    if len(envs) != 1:
        return None
    try:
        return environment_for(str(envs.pop())).target
    except ValueError:
        return None


def cheapest_for_target(tb: pd.DataFrame, target: float) -> str:
    """One sentence from the numbers: for each training budget, the fewest calls per action whose success reaches
    `target` (point estimate; its interval in brackets); where no budget reaches it, how close the best came."""
    if tb.empty:
        return "No run measured at two or more training budgets yet."
    parts = []
    for iterations in sorted(tb.train_iterations.unique()):
        at = tb[tb.train_iterations == iterations]
        hits = at[at.success_rate >= target].sort_values(["network_calls", "m_inf"])
        if not hits.empty:
            h = hits.iloc[0]
            parts.append(f"after {iterations:,} iterations, {calls_text(h.network_calls)} per action ({cell_label(h)}: "
                         f"{rate_with_interval(h)})")
    if not parts:  # how close the best cell came, and which it is (ties to fewer iterations, then fewer calls)
        b = tb.sort_values(["success_rate", "train_iterations", "network_calls"],
                           ascending=[False, True, True]).iloc[0]
        where = (f" ({cell_label(b)}, after {b.train_iterations:,} iterations)" if b.success_rate > 0 else "")
        return (f"No measured (training iterations, calls per action) pair reaches {target:.0%} success; the best cell "
                f"reaches {rate_with_interval(b)}{where}.")
    return f"To reach {target:.0%} success: " + "; ".join(parts) + "."


def _pick(tb: pd.DataFrame, iterations: int, m: int, n: int, verifier: str | None = None):
    at = tb[(tb.train_iterations == iterations) & (tb.m_inf == m) & (tb.n == n)]
    if verifier is not None and n > 1:
        at = at[at.verifier == verifier]
    return None if at.empty else at.iloc[0]


def _versus(a, b) -> str:
    """'74% against 88% (-14 points, intervals apart)' for two pooled cells."""
    gap = round(100 * (a.success_rate - b.success_rate))
    apart = a.success_ci_low > b.success_ci_high or b.success_ci_low > a.success_ci_high
    return (f"{a.success_rate:.0%} against {b.success_rate:.0%} ({gap:+d} points, "
            + ("intervals apart)" if apart else "intervals overlap)"))


def budget_findings(tb: pd.DataFrame, m_high: int = 8, n_high: int = 16, target: float | None = None) -> list[str]:
    """The training-budget questions answered from one run's pooled cells (a `training_budget` table), one sentence
    each: does best-of-N by Q stop hurting as the critic trains longer (and, where measured, does the Q-free
    consensus pick); does M_inf = 1 catch up with M_inf = m_high;
    the cheapest (training iterations, calls per action) pair for `target` success (by default the task's own
    target, `success_target`, or 80%)."""
    budgets = sorted(tb.train_iterations.unique().tolist())
    ranked_vs_one = {"q": [], "consensus": []}  # the critic's pick, and the Q-free one beside it where measured
    one_vs_high = []
    for b in budgets:
        base, low = _pick(tb, b, m_high, 1), _pick(tb, b, 1, 1)
        for verifier, found in ranked_vs_one.items():
            ranked = _pick(tb, b, m_high, n_high, verifier)
            if base is not None and ranked is not None:
                found.append(f"{b // 1000:,}k: {_versus(ranked, base)}")
        if base is not None and low is not None:
            one_vs_high.append(f"{b // 1000:,}k: {_versus(low, base)}")
    lines = []
    if ranked_vs_one["q"]:
        lines.append(f"Best-of-{n_high} by Q against one sample, both at M_inf = {m_high}: "
                     + "; ".join(ranked_vs_one["q"]) + ".")
    if ranked_vs_one["consensus"]:
        lines.append(f"Best-of-{n_high} by consensus (no critic: the candidate nearest the others) against one sample, "
                     f"both at M_inf = {m_high}: " + "; ".join(ranked_vs_one["consensus"]) + ".")
    if one_vs_high:
        lines.append(f"M_inf = 1 against M_inf = {m_high}, N = 1: " + "; ".join(one_vs_high) + ".")
    lines.append(cheapest_for_target(tb, target or success_target(tb) or 0.8))
    return lines


def project_to_target(curve: Sequence[tuple[int, float]], target: float) -> dict:
    """Where a learning curve would reach `target` success if it kept rising as it did over its last doubling.

    curve: (training iterations, success) points in order. Success is fitted as a straight line in log2(iterations)
    (least squares) over the points of the last doubling (from half the last point's iterations on; at least two),
    because learning curves flatten: the rate is in points per doubling of the iterations, and the projection is
    where that line crosses `target`, from its fitted value at the last point. A rough guide, given only for a curve
    that rises.
    Returns {"reached": bool, "rate_per_doubling": float | None, "projected": int | None, "best": float}.
    """
    steps = np.array([s for s, _ in curve], dtype=float)
    rates = np.array([r for _, r in curve], dtype=float)
    out = {"reached": bool(len(rates) and rates[-1] >= target), "rate_per_doubling": None, "projected": None,
           "best": float(rates.max()) if len(rates) else 0.0}
    tail = slice(min(int(np.searchsorted(steps, steps[-1] / 2)), len(steps) - 2), None) if len(steps) else slice(0)
    tail_s, tail_r = np.log2(steps[tail]), rates[tail]
    if out["reached"] or len(tail_s) < 2 or not rates.any():
        return out
    slope, intercept = np.polyfit(tail_s, tail_r, 1)
    out["rate_per_doubling"] = float(slope)
    if slope > 0:
        fitted = slope * tail_s[-1] + intercept
        out["projected"] = int(round(2 ** (tail_s[-1] + max(0.0, target - fitted) / slope), -3))
    return out


def target_sentence(tb: pd.DataFrame, target: float, m: int = 8) -> str:
    """One run's success at M_inf = m, N = 1 along its training budgets (a `training_budget` table) against a
    target: reached at which budget, or the rate it last rose at and where a straight line reaches it."""
    cells = tb[(tb.m_inf == m) & (tb.n == 1)].drop_duplicates("train_iterations").sort_values("train_iterations")
    curve = [(int(b), float(r)) for b, r in zip(cells.train_iterations, cells.success_rate)]
    if not curve:
        return f"Success at M_inf = {m}, N = 1 is not measured, so the {target:.0%} target cannot be judged."
    first = next(((b, r) for b, r in curve if r >= target), None)
    if first is not None:
        text = f"The {target:.0%} target at M_inf = {m}, N = 1 is reached after {first[0]:,} iterations ({first[1]:.0%})"
        last = cells.iloc[-1]
        if last.success_rate >= target:
            return text + "."
        # A curve that rises and falls again: the longest-trained budget is what more training has given so far.
        later = f"after {int(last.train_iterations):,} iterations success is {rate_with_interval(last)}"
        if last.success_ci_high >= target:  # below the target by fewer episodes than the interval's width
            return text + f"; {later}, below it, though its interval still holds the target."
        return text + f", but it does not hold: {later}."
    p = project_to_target(curve, target)
    text = (f"The {target:.0%} target at M_inf = {m}, N = 1 is not reached: {curve[-1][1]:.0%} after "
            f"{curve[-1][0]:,} iterations (best {p['best']:.0%}).")
    if p["rate_per_doubling"] is None:
        return text + " It never succeeded, so there is no rate to project from."
    text += f" Over its last doubling it rose {100 * p['rate_per_doubling']:+.1f} points per doubling of the iterations"
    return text + (f"; a straight line from there reaches the target near {p['projected']:,} iterations (a rough "
                   "guide: learning curves bend)." if p["projected"] else ", so no projection can be made.")


BUDGET_CELLS = ((1, 1, "q"), (8, 1, "q"), (8, 16, "q"), (8, 16, "consensus"))  # (M_inf, N, verifier) columns


def budget_markdown(tb: pd.DataFrame) -> list[str]:
    """One run's training budget as markdown lines (RESULTS.md, the run's card): a row per budget with the pooled
    success [95% interval] of the headline cells, then `budget_findings` as bullets."""
    lines = ["| training iterations | seeds | " + " | ".join(
        f"M_inf = {m}, N = {n}" + (f" ({v})" if n > 1 else "") for m, n, v in BUDGET_CELLS) + " |",
        "|---|---|" + "---|" * len(BUDGET_CELLS)]
    for b in sorted(tb.train_iterations.unique()):
        at = tb[tb.train_iterations == b]
        cols = []
        for m, n, v in BUDGET_CELLS:
            cell = at[(at.m_inf == m) & (at.n == n) & ((at.verifier == v) | (n == 1))]
            cols.append("not measured" if cell.empty else
                        f"{cell.success_rate.iloc[0]:.0%} [{cell.success_ci_low.iloc[0]:.0%}, "
                        f"{cell.success_ci_high.iloc[0]:.0%}]")
        lines.append(f"| {b:,} | {int(at.seeds.max())} | " + " | ".join(cols) + " |")
    return lines + [""] + [f"- {line}" for line in budget_findings(tb)]


def budget_seed_markdown(df: pd.DataFrame) -> list[str]:
    """The headline cells of every training seed at every budget (a parsed sweep of snapshots): pooled figures can
    hide seeds that disagree. Success rate per cell, as many episodes as the sweep ran."""
    d = fixed(df)
    d = d[d.train_iterations.astype(str).str.fullmatch(r"\d+")]
    lines = ["| training iterations | seed | " + " | ".join(
        f"M_inf = {m}, N = {n}" + (f" ({v})" if n > 1 else "") for m, n, v in BUDGET_CELLS) + " |",
        "|---|---|" + "---|" * len(BUDGET_CELLS)]
    for (b, seed), at in d.groupby([d.train_iterations.astype(int), d.train_seed.astype(str)], sort=True):
        cols = []
        for m, n, v in BUDGET_CELLS:
            cell = at[(at.m_inf == m) & (at.n == n) & ((at.verifier == v) | (n == 1))]
            cols.append("not measured" if cell.empty else f"{cell.success_rate.iloc[0]:.0%}")
        lines.append(f"| {b:,} | {seed} | " + " | ".join(cols) + " |")
    return lines


def wrap_title(title: str, limit: int = 34) -> list[str]:
    """A series name as title lines of at most about `limit` characters, broken at its " · " separators: two
    heatmaps side by side at 1024 px have room for about that many."""
    lines: list[str] = []
    for part in title.split(" · "):
        if lines and len(lines[-1]) + 3 + len(part) <= limit:
            lines[-1] += " · " + part
        else:
            lines.append(part)
    return lines


def sweep_html(csv_text: str) -> str:
    """`sorl-lab evaluate`'s self-contained report of a sweep (plotly.js inlined, opens offline): the Scaling page's
    grid of every series, its success-against-compute figure, and the table of cells."""
    df = combine([("sweep.csv", parse_sweep(csv_text.encode(), "sweep.csv"))])
    sections = [(f"Success over M_inf x N — {s}", heatmap_figure(df[df.series == s], s)) for s in series_order(df)]
    sections.append(("Success against compute", compute_figure(df, "n")))
    body = "".join(f"<h3>{h}</h3>" + fig.to_html(full_html=False, include_plotlyjs=(i == 0))
                   for i, (h, fig) in enumerate(sections))
    head = ["checkpoint", "adaptive", "M_inf", "N", "verifier", "success", "95% interval", "return", "length",
            "calls per action", "ms per action"]
    cells = "".join(
        f"<tr><td>{r.checkpoint}</td><td>{r.adaptive}</td><td>{r.m_inf}</td><td>{r.n}</td><td>{r.verifier}</td>"
        f"<td>{r.success_rate:.0%}</td><td>[{r.success_ci_low:.0%}, {r.success_ci_high:.0%}]</td>"
        f"<td>{r.mean_return:.1f}</td><td>{r.mean_length:.0f}</td><td>{r.network_calls:g}</td>"
        f"<td>{r.ms_per_action:.2f}</td></tr>" for r in df.itertuples())
    first = df.iloc[0] if len(df) else None
    about = (f"{first.episodes} episodes per cell from the same seeded initial states (seed {first.seed})."
             if first is not None else "")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>SORL Lab sweep</title>"
            "<style>body{font-family:sans-serif;margin:24px} td,th{padding:2px 10px;text-align:right}</style></head><body>"
            f"<h2>Test-time scaling sweep — {first.env if first is not None else ''}</h2><p>{about}</p>{body}"
            f"<table><tr>{''.join(f'<th>{h}</th>' for h in head)}</tr>{cells}</table></body></html>")


def read_sweeps(*paths) -> pd.DataFrame:
    """Checked and combined sweep CSV files (SweepError naming the file and the problem)."""
    return combine([(str(p), parse_sweep(Path(p).read_bytes(), Path(p).name)) for p in paths])


def sweep_figures(df: pd.DataFrame) -> tuple[go.Figure, go.Figure]:
    """(the grid of the first series, success against compute of every series): the Scaling page's two figures."""
    first = series_order(df)[0]
    return heatmap_figure(df[df.series == first], first), compute_figure(df, "n")
