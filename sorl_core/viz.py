"""Plotly figures shared by the Streamlit app and the notebooks.

Every builder is a small pure function: arrays in, ``go.Figure`` out. Nothing here
samples, trains or integrates: callers get actions, trajectories, Q values and probes
from ``SORLAgent`` and hand the arrays over. Action-space figures have fixed axis
ranges and a square aspect, so two figures side by side (or two settings of a slider)
compare point for point.
"""

from __future__ import annotations

import base64
from typing import Iterable, Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from . import toy

LIM = 1.0  # actions live in [-1, 1]^2
TRAJECTORY_LIM = 2.0  # the flow starts from N(0, I) noise: most starting points lie in [-2, 2]^2
FIG_HEIGHT = 500

# Colours that read on both a dark and a light heatmap.
DATA_ALPHA, DATA_ALPHA_LOW = 0.55, 0.12  # white over the plot: the densest data cell, a cell with one point
DATA_COLOR, DATA_COLOR_LOW = (f"rgba(255, 255, 255, {a})" for a in (DATA_ALPHA, DATA_ALPHA_LOW))
SAMPLE_COLOR = "#ff4b4b"
CHOSEN_COLOR = "#ffd700"
GOAL_COLOR = "#00e5ff"
PATH_COLOR = "rgba(255, 110, 110, 0.5)"


# --------------------------------------------------------------------------- helpers
def _points(a, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1 and a.shape == (2,):
        a = a[None]
    if a.ndim != 2 or a.shape[1] != 2:
        raise ValueError(f"{name} must have shape (K, 2), got {a.shape}")
    return a


def _square_layout(title: str, lim: float = LIM, height: int = FIG_HEIGHT, **extra) -> dict:
    """Fixed ranges, equal aspect, axis titles a₁ / a₂, the legend in a band under the plot.

    A plain dict handed to ``go.Figure`` at construction: plotly validates it once, where
    ``update_layout`` walks it key by key (several times slower, and the app rebuilds figures on every rerun).
    """
    axis = dict(range=[-lim, lim], autorange=False, zeroline=False, constrain="domain", gridcolor="rgba(255,255,255,0.12)")
    return dict(
        title=dict(text=title, x=0.0, xanchor="left", y=0.985, yanchor="top", font=dict(size=15)),
        height=height,
        margin=dict(l=50, r=10, t=40, b=45),
        xaxis=dict(axis, title=dict(text="action a₁", standoff=4)),
        yaxis=dict(axis, title=dict(text="action a₂", standoff=4), scaleanchor="x", scaleratio=1),
        showlegend=True,  # even with one entry: the legend names what the markers are
        # Below the plot: in a narrow column (a projector's 1024 px) a legend above wraps over the title.
        legend=dict(orientation="h", yanchor="top", y=-0.14, xanchor="left", x=0.0, font=dict(size=11)),
        plot_bgcolor="#111",
        **extra,
    )


DATA_NAME = "offline data (density)"


def _data_counts(data, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bin centres (x, y) over the action box [-1, 1]^2 and log(1 + count) per cell, z[i, j] at (x[j], y[i])."""
    d = _points(data, "data")
    counts, xe, ye = np.histogram2d(d[:, 0], d[:, 1], bins=bins, range=[[-LIM, LIM], [-LIM, LIM]])
    return (xe[:-1] + xe[1:]) / 2, (ye[:-1] + ye[1:]) / 2, np.log1p(counts.T)  # histogram2d is (x, y)


def _data_legend() -> go.Scatter:
    """Neither a heatmap nor a layout image draws a legend symbol: an empty marker trace carries the entry."""
    return go.Scatter(x=[None], y=[None], mode="markers", name=DATA_NAME, legendgroup="data", hoverinfo="skip",
                      marker=dict(symbol="square", size=10, color=DATA_COLOR))


def _data_density(data, bins: int = 80) -> list:
    """The offline data as a faint density layer over the action box (empty cells transparent), as traces.

    One image however many points: as SVG markers every data point was a DOM node the browser redrew on
    each slider move, which took most of the app's update time.
    """
    x, y, z = _data_counts(data, bins)
    heatmap = go.Heatmap(x=x, y=y, z=np.where(z > 0, z, np.nan), name=DATA_NAME, legendgroup="data", zmin=0,
                         colorscale=[[0, DATA_COLOR_LOW], [1, DATA_COLOR]], showscale=False, hoverinfo="skip")
    return [heatmap, _data_legend()]


def _data_density_image(data, bins: int = 80) -> dict:
    """The same density as a layout image under the traces: Plotly's animation (redraw=False) erases
    heatmap traces, and the trajectory figure animates. White, alpha DATA_ALPHA_LOW..DATA_ALPHA."""
    import imageio.v3 as iio

    _, _, z = _data_counts(data, bins)
    alpha = np.where(z > 0, DATA_ALPHA_LOW + (DATA_ALPHA - DATA_ALPHA_LOW) * z / max(float(z.max()), 1e-12), 0.0)
    rgba = np.full((bins, bins, 4), 255, dtype=np.uint8)
    rgba[..., 3] = np.round(255 * np.flipud(alpha))  # image rows run top (a2 = 1) to bottom
    png = iio.imwrite("<bytes>", rgba, extension=".png")
    return dict(source="data:image/png;base64," + base64.b64encode(png).decode(), xref="x", yref="y",
                x=-LIM, y=LIM, sizex=2 * LIM, sizey=2 * LIM, sizing="stretch", layer="below")


def _goal_trace(context: float) -> go.Scatter:
    g = toy.goal(np.array([float(context)]))
    return go.Scatter(
        x=[g[0]], y=[g[1]], mode="markers", name="goal g(c)",
        marker=dict(symbol="x", size=13, color=GOAL_COLOR, line=dict(width=1, color="black")),
        hovertemplate="goal g(c)<br>(%{x:.2f}, %{y:.2f})<extra></extra>",
    )


def _nan_separated(paths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, K, 2) polylines -> x and y of one line trace, NaN between paths."""
    n, k, _ = paths.shape
    buf = np.full((n, k + 1, 2), np.nan)
    buf[:, :k] = paths
    flat = buf.reshape(-1, 2)
    return flat[:, 0], flat[:, 1]


def fraction_label(d: float) -> str:
    """Step size 1, 0.5, 0.25 -> '1', '1/2', '1/4'."""
    inv = 1.0 / float(d)
    return "1" if abs(inv - 1) < 1e-9 else f"1/{int(round(inv))}"


# --------------------------------------------------------------------------- figures
def reward_map_figure(world, context: float, samples=None, data=None, chosen=None,
                      resolution: int = 101, title: str | None = None) -> go.Figure:
    """True reward r(a, c) over the action square, the data (a faint density), the policy's actions and the goal.

    world: a ToyWorld or its name; samples: (K, 2) actions of the policy at this context;
    chosen: (2,) or (K, 2) actions to highlight (e.g. the candidate best-of-N picked).
    """
    xs, ys, r = toy.reward_grid(world, context, resolution=resolution, lim=LIM)
    traces = [go.Heatmap(
        x=xs, y=ys, z=r, name="true reward", colorscale="Viridis", zmin=max(float(r.min()), -3.0), zmax=1.0,
        colorbar=dict(title=dict(text="r(a, c)"), thickness=12, len=0.8),
        hovertemplate="a=(%{x:.2f}, %{y:.2f})<br>r=%{z:.3f}<extra>true reward</extra>",
    )]
    if data is not None:
        traces += _data_density(data)
    if samples is not None:
        s = _points(samples, "samples")
        traces.append(go.Scatter(
            x=s[:, 0], y=s[:, 1], mode="markers", name=f"policy actions ({len(s)})",
            marker=dict(size=6, color=SAMPLE_COLOR, line=dict(width=0.5, color="white"), opacity=0.85),
            hovertemplate="(%{x:.2f}, %{y:.2f})<extra>policy action</extra>",
        ))
    if chosen is not None:
        ch = _points(chosen, "chosen")
        traces.append(go.Scatter(
            x=ch[:, 0], y=ch[:, 1], mode="markers", name="chosen action", cliponaxis=False,  # whole on the box's edge
            marker=dict(symbol="star", size=16, color=CHOSEN_COLOR, line=dict(width=1, color="black")),
            hovertemplate="chosen (%{x:.2f}, %{y:.2f})<extra></extra>",
        ))
    traces.append(_goal_trace(context))
    return go.Figure(data=traces, layout=_square_layout(title or f"True reward at context c = {float(context):+.2f}"))


def trajectory_figure(trajectory, data=None, chosen: int | None = None, lim: float = TRAJECTORY_LIM,
                      frame_ms: int = 450, title: str | None = None) -> go.Figure:
    """Euler paths of the shortcut model for one state, with an animated particle per candidate.

    trajectory: (N, M+1, 2), state k of every candidate after k Euler steps of size 1/M (k=0 is noise).
    All paths are one NaN-separated line trace; only the particle trace is animated (one frame per
    Euler step, play/pause buttons and a step slider). The figure opens on the last step (t = 1).
    The axes span [-lim, lim]^2 (default [-2, 2]^2: the noise at t = 0 is N(0, I)); the dashed square
    is the action box [-1, 1]^2 the final actions are clipped to.
    """
    traj = np.asarray(trajectory, dtype=np.float64)
    if traj.ndim != 3 or traj.shape[2] != 2 or traj.shape[1] < 2:
        raise ValueError(f"trajectory must have shape (N, M+1, 2) with M >= 1, got {traj.shape}")
    n, k1, _ = traj.shape
    m = k1 - 1
    traces = [_data_legend()] if data is not None else []
    px, py = _nan_separated(traj)
    traces.append(go.Scatter(x=px, y=py, mode="lines", name="Euler paths", line=dict(width=1.3, color=PATH_COLOR),
                             hoverinfo="skip"))
    if chosen is not None and 0 <= int(chosen) < n:
        c = traj[int(chosen)]
        traces.append(go.Scatter(x=c[:, 0], y=c[:, 1], mode="lines+markers", name="chosen candidate",
                                 line=dict(width=2.5, color=CHOSEN_COLOR), marker=dict(size=5),
                                 hovertemplate="(%{x:.2f}, %{y:.2f})<extra>chosen path</extra>"))
    particle_idx = len(traces)

    def particles(k: int) -> dict:
        return dict(type="scatter", x=traj[:, k, 0], y=traj[:, k, 1], mode="markers", name="particles",
                    marker=dict(size=7, color=SAMPLE_COLOR, line=dict(width=0.5, color="white")),
                    hovertemplate="(%{x:.2f}, %{y:.2f})<extra>particle</extra>")

    traces.append(particles(m))
    frames = [dict(data=[particles(k)], traces=[particle_idx], name=str(k)) for k in range(k1)]
    anim = dict(frame=dict(duration=frame_ms, redraw=False), transition=dict(duration=int(frame_ms * 0.6), easing="linear"),
                mode="immediate")
    still = dict(frame=dict(duration=0, redraw=False), transition=dict(duration=0), mode="immediate")
    layout = _square_layout(
        title or f"Euler paths, M = {m}", lim=lim, height=FIG_HEIGHT + 110,
        images=[_data_density_image(data)] if data is not None else [],
        shapes=[dict(type="rect", x0=-1, y0=-1, x1=1, y1=1, line=dict(color="rgba(255,255,255,0.6)", dash="dash", width=1))],
        updatemenus=[dict(
            type="buttons", direction="left", showactive=False, x=0.0, y=-0.13, xanchor="left", yanchor="top",
            pad=dict(r=4, t=0), bgcolor="#eee", font=dict(size=11),
            buttons=[
                dict(label="▶ Play", method="animate", args=[None, {**anim, "fromcurrent": False}]),
                dict(label="❚❚ Pause", method="animate", args=[[None], still]),
            ],
        )],
        sliders=[dict(
            # A row of its own under Play/Pause: side by side they overlap in a narrow column.
            active=m, x=0.0, len=1.0, y=-0.30, yanchor="top", pad=dict(t=0, b=0),
            currentvalue=dict(prefix="Euler step ", suffix=f" of {m}", xanchor="right", font=dict(size=12)), font=dict(size=10),
            steps=[dict(method="animate", label=str(k), args=[[str(k)], still]) for k in range(k1)],
        )],
    )
    layout["margin"] = dict(layout["margin"], b=150)
    layout["legend"] = dict(layout["legend"], y=-0.62)  # under the step slider
    return go.Figure(data=traces, layout=layout, frames=frames)


def q_landscape_figure(xs, ys, q_grid, candidates, q=None, chosen: int | None = None,
                       title: str | None = None) -> go.Figure:
    """Learned Q over the action square with the N candidates; the chosen (argmax Q) one is a star.

    q_grid[i, j] is Q at (xs[j], ys[i]). q: (N,) Q of each candidate, or None when N = 1 (the single
    candidate is taken without calling the critic, so nothing is ranked).
    """
    cand = _points(candidates, "candidates")
    traces = [go.Heatmap(
        x=np.asarray(xs), y=np.asarray(ys), z=np.asarray(q_grid), name="learned Q", colorscale="Cividis",
        colorbar=dict(title=dict(text="Q(s, a)"), thickness=12, len=0.8),
        hovertemplate="a=(%{x:.2f}, %{y:.2f})<br>Q=%{z:.3f}<extra>learned Q</extra>",
    )]
    if q is None:
        traces.append(go.Scatter(
            x=cand[:, 0], y=cand[:, 1], mode="markers", name="the only candidate (not scored)",
            marker=dict(size=10, color=SAMPLE_COLOR, line=dict(width=1, color="white")),
            hovertemplate="(%{x:.2f}, %{y:.2f})<extra>candidate</extra>",
        ))
        return go.Figure(data=traces, layout=_square_layout(title or "N = 1: no ranking by Q"))
    qv = np.asarray(q, dtype=np.float64).reshape(-1)
    if len(qv) != len(cand):
        raise ValueError(f"q has {len(qv)} values for {len(cand)} candidates")
    rank = np.empty(len(qv), dtype=int)
    rank[np.argsort(-qv)] = np.arange(1, len(qv) + 1)
    traces.append(go.Scatter(
        x=cand[:, 0], y=cand[:, 1], mode="markers", name=f"candidates (N = {len(cand)})",
        customdata=np.stack([qv, rank], axis=1),
        marker=dict(size=8, color=SAMPLE_COLOR, line=dict(width=1, color="white")),
        hovertemplate="(%{x:.2f}, %{y:.2f})<br>Q=%{customdata[0]:.3f}, rank %{customdata[1]}<extra>candidate</extra>",
    ))
    if chosen is not None:
        c = cand[int(chosen)]
        traces.append(go.Scatter(
            x=[c[0]], y=[c[1]], mode="markers", name="chosen: argmax Q",
            marker=dict(symbol="star", size=18, color=CHOSEN_COLOR, line=dict(width=1, color="black")),
            hovertemplate=f"chosen, Q={qv[int(chosen)]:.3f}<extra></extra>",
        ))
    return go.Figure(data=traces, layout=_square_layout(title or f"Learned Q, N = {len(cand)}"))


def consistency_figure(probe, title: str | None = None) -> go.Figure:
    """Self-consistency error: one step of size d against two steps of size d/2, over flow time t.

    probe: a ``ConsistencyProbe`` (t (T,), step_sizes (L,), error (L, T) with NaN where t + d > 1).
    Colour is log10 of the error; hover shows the raw value.
    """
    err = np.asarray(probe.error, dtype=np.float64)
    t = np.asarray(probe.t, dtype=np.float64)
    labels = [fraction_label(d) for d in np.asarray(probe.step_sizes)]
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.log10(np.maximum(err, 1e-12))
    z = np.where(np.isnan(err), np.nan, z)
    text = np.where(np.isnan(err), "t + d > 1: undefined", np.vectorize(lambda v: f"{v:.2e}")(np.nan_to_num(err)))
    annotations = []
    if len(labels) and len(t) >= 4 and np.isnan(err[0, -1]):  # y=0: the first category (d = 1), by index
        annotations.append(dict(x=t[len(t) // 2 + len(t) // 4], y=0, text="t+d>1", showarrow=False,
                                font=dict(size=11, color="#555")))
    heatmap = go.Heatmap(
        x=t, y=labels, z=z, text=text, colorscale="Magma", name="self-consistency error",
        colorbar=dict(title=dict(text="log₁₀ error"), thickness=12, len=0.8),
        hovertemplate="t=%{x:.3f}, d=%{y}<br>error=%{text}<extra></extra>", xgap=2, ygap=2,
    )
    return go.Figure(data=[heatmap], layout=dict(
        title=dict(text=title or "Self-consistency error", x=0.0, xanchor="left", font=dict(size=15)),
        height=FIG_HEIGHT - 60,
        margin=dict(l=60, r=20, t=50, b=50),
        # Every other tick, upright: eight rotated labels collide with the axis title in a narrow column.
        xaxis=dict(title="flow time t", range=[-0.5 / len(t), 1 - 0.5 / len(t)] if len(t) else None, tickvals=t[::2],
                   ticktext=[f"{v:g}" for v in t[::2]], tickangle=0),
        yaxis=dict(title="step size d", type="category", categoryorder="array", categoryarray=labels),
        plot_bgcolor="#ddd",
        annotations=annotations,
    ))


MIN_Y_SPAN = 0.2  # the scaling figure's y axis spans at least this much reward


def scaling_figure(rows: Iterable[Mapping], group_by: str = "n", current: Mapping | None = None,
                   y: str = "mean_reward", title: str | None = None) -> go.Figure:
    """True reward against compute (network calls per action, log2 axis).

    rows: dicts with m_inf, n, network_calls and ``y`` (default mean_reward), one per (M, N) setting.
    group_by="n": one line per N through M = 1, 2, 4, ... (sequential scaling);
    group_by="m": one line per M through the N values (parallel scaling).
    current: an optional row drawn as a star (the setting on screen).
    """
    if group_by not in ("n", "m"):
        raise ValueError(f"group_by must be 'n' or 'm', not {group_by!r}")
    rows = [dict(r) for r in rows]
    key, along = ("n", "m_inf") if group_by == "n" else ("m_inf", "n")
    traces = []
    calls = [float(r["network_calls"]) for r in rows] + ([float(current["network_calls"])] if current else [])
    for value in sorted({int(r[key]) for r in rows}):
        line = sorted((r for r in rows if int(r[key]) == value), key=lambda r: r[along])
        label = f"N = {value}" if group_by == "n" else f"M = {value}"
        traces.append(go.Scatter(
            x=[r["network_calls"] for r in line], y=[r[y] for r in line], mode="lines+markers", name=label,
            customdata=[[r["m_inf"], r["n"]] for r in line],
            hovertemplate="M=%{customdata[0]}, N=%{customdata[1]}<br>calls/action=%{x}<br>"
                          + y.replace("_", " ") + "=%{y:.3f}<extra></extra>",
        ))
    if current is not None:
        traces.append(go.Scatter(
            x=[current["network_calls"]], y=[current[y]], mode="markers", name=f"on screen (M={current['m_inf']}, N={current['n']})",
            marker=dict(symbol="star", size=18, color=CHOSEN_COLOR, line=dict(width=1, color="black")),
            hovertemplate="on screen<br>calls/action=%{x}<br>value=%{y:.3f}<extra></extra>",
        ))
    hi = max(calls) if calls else 1.0
    ticks = [2**i for i in range(0, int(np.ceil(np.log2(max(hi, 1)))) + 1)]
    yaxis = dict(title="true reward (mean)" if y == "mean_reward" else y.replace("_", " "))
    values = [float(r[y]) for r in rows] + ([float(current[y])] if current else [])
    if values and max(values) - min(values) < MIN_Y_SPAN:
        # A flat curve is drawn flat: autoscaling would stretch differences of a few thousandths (noise over the
        # evaluation states) across the whole axis and make them look like zig-zags.
        mid = (max(values) + min(values)) / 2
        yaxis["range"] = [mid - MIN_Y_SPAN / 2, mid + MIN_Y_SPAN / 2]
    return go.Figure(data=traces, layout=dict(
        title=dict(text=title or ("Sequential scaling: a line per N" if group_by == "n"
                                  else "Parallel scaling: a line per M_inf"),
                   x=0.0, xanchor="left", font=dict(size=15)),
        height=FIG_HEIGHT - 40,
        margin=dict(l=60, r=20, t=50, b=50),
        xaxis=dict(title="network calls per action (log₂ scale)", type="log",
                   tickvals=ticks, ticktext=[str(t) for t in ticks]),
        yaxis=yaxis,
        legend=dict(orientation="v"),
    ))


def score_truth_figure(scores, true_rewards, chosen: int, verifier: str = "q", title: str | None = None) -> go.Figure:
    """The N candidates of one state: the verifier's score (x) against the true reward (y); the pick is a star.

    A trustworthy verifier puts the candidates on a rising line, so its argmax is also the best in truth.
    """
    x = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(true_rewards, dtype=np.float64).reshape(-1)
    if len(x) != len(y):
        raise ValueError(f"{len(x)} scores for {len(y)} true rewards")
    traces = [go.Scatter(x=x, y=y, mode="markers", name=f"candidates (N = {len(x)})",
                         marker=dict(size=9, color=SAMPLE_COLOR, line=dict(width=1, color="white")),
                         hovertemplate="score=%{x:.3f}<br>true reward=%{y:.3f}<extra>candidate</extra>"),
              go.Scatter(x=[x[int(chosen)]], y=[y[int(chosen)]], mode="markers", name=f"picked by {verifier}",
                         marker=dict(symbol="star", size=18, color=CHOSEN_COLOR, line=dict(width=1, color="black")),
                         hovertemplate="picked: score=%{x:.3f}, true reward=%{y:.3f}<extra></extra>")]
    return go.Figure(data=traces, layout=dict(
        title=dict(text=title or f"Score ({verifier}) against true reward", x=0.0, xanchor="left", font=dict(size=15)),
        height=FIG_HEIGHT - 120,
        margin=dict(l=60, r=20, t=40, b=40),
        xaxis=dict(title=f"verifier score ({verifier})"),
        yaxis=dict(title="true reward r(a, c)"),
        legend=dict(orientation="h", yanchor="top", y=-0.32, xanchor="left", x=0.0),
    ))


def comparison_figure(series: Mapping[str, Sequence[Mapping]], y: str = "mean_reward",
                      title: str | None = None) -> go.Figure:
    """Two (or more) policies against M_inf: a colour per policy, N = 1 solid, the largest N dashed.

    series: label -> rows with m_inf, n and ``y``, as the scaling panel computes them.
    """
    palette = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")
    traces, ms = [], set()
    for i, (label, rows) in enumerate(series.items()):
        ns = sorted({int(r["n"]) for r in rows})
        for n in (ns[0], ns[-1]) if len(ns) > 1 else ns:
            line = sorted((r for r in rows if int(r["n"]) == n), key=lambda r: r["m_inf"])
            ms.update(int(r["m_inf"]) for r in line)
            traces.append(go.Scatter(
                x=[r["m_inf"] for r in line], y=[r[y] for r in line], mode="lines+markers",
                name=f"{label}, N = {n}", legendgroup=label,
                line=dict(color=palette[i % len(palette)], dash="solid" if n == ns[0] else "dash"),
                hovertemplate=f"{label}<br>M=%{{x}}, N={n}<br>{y.replace('_', ' ')}=%{{y:.3f}}<extra></extra>",
            ))
    ticks = sorted(ms)
    return go.Figure(data=traces, layout=dict(
        title=dict(text=title or "True reward against M_inf", x=0.0, xanchor="left", font=dict(size=15)),
        height=FIG_HEIGHT - 60,
        margin=dict(l=60, r=20, t=40, b=40),
        xaxis=dict(title="M_inf (Euler steps), log₂ scale", type="log", tickvals=ticks, ticktext=[str(t) for t in ticks]),
        yaxis=dict(title="true reward (mean)" if y == "mean_reward" else y.replace("_", " ")),
        legend=dict(orientation="h", yanchor="top", y=-0.2, xanchor="left", x=0.0),
    ))


def figures_html(figures: Sequence[tuple[str, go.Figure]], title: str = "SORL Lab figures", notes: str = "") -> str:
    """One self-contained HTML page with every figure (plotly.js inlined once: opens offline)."""
    parts = []
    for i, (heading, fig) in enumerate(figures):
        body = fig.to_html(full_html=False, include_plotlyjs=(i == 0), auto_play=False)
        parts.append(f"<section><h2>{_escape(heading)}</h2>{body}</section>")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{_escape(title)}</title>"
            "<style>body{font-family:sans-serif;max-width:1000px;margin:auto}</style></head><body>"
            f"<h1>{_escape(title)}</h1><p>{_escape(notes)}</p>{''.join(parts)}</body></html>")


def _escape(s: str) -> str:
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
