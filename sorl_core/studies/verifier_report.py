"""The verifier study's report, built once: reading a study folder, its per-verifier summary and its figures.

`sorl-lab verifier` writes verifier_summary.csv and verifier.html with these functions, the Verifier page draws the
same figures from the same summary, and notebook 04 reads studies through `read_study`. (Running the study is
sorl_core/studies/verifier_study.py.)

One rule for states whose candidates all have the same true return (e.g. every candidate fails within the
horizon): they rank nothing, so they are left out of the rank correlation (undefined there) and of the
score-against-truth figure; they still count in regret, success and distances, where a tie is a fact.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

METRICS = ("spearman", "top1_regret", "winners_curse_score", "winners_curse_return", "pick_distance",
           "mean_distance", "pick_return", "pick_success")
SUMMARY_COLUMNS = (["verifier", "absent", "states", "spearman_states"] + [f"mean_{m}" for m in METRICS]
                   + ["mean_candidate_success"])
# The summary's columns in words a student knows (tables on the page and in the notebook).
SUMMARY_LABELS = {
    "mean_spearman": "rank correlation with the truth", "spearman_states": "states ranked",
    "mean_top1_regret": "top-1 regret", "mean_winners_curse_score": "pick's score above the mean",
    "mean_winners_curse_return": "pick's true return above the mean", "mean_pick_distance": "pick's distance to the median",
    "mean_mean_distance": "a candidate's distance to the median", "mean_pick_return": "pick's true return",
    "mean_pick_success": "pick's success", "mean_candidate_success": "a candidate's success",
}
NOTES = ("Each candidate's truth is its counterfactual discounted return: the environment restored exactly at the "
         "state, the candidate applied, then the continuation policy to the episode's end or the horizon, averaged "
         "over repeats. The rank correlation (Spearman) is taken over the candidates of one state and left out where "
         "all their returns tie; top-1 regret is the best candidate's return minus the pick's; the winner's curse "
         "compares the pick's score above the candidates' mean with its true return above the mean (Q verifiers: "
         "both in return units); distances are to the candidates' coordinate-wise median.")
PICK, CANDIDATE, TRUTH = "#d62728", "#9aa5b1", "#1f77b4"  # one colour per thing across the figures


@dataclass
class Study:
    """A study folder as read: its rows, its present verifiers and the ones a checkpoint could not run."""

    folder: Path
    candidates: list[dict]
    states: list[dict]
    verifiers: list[str]
    absent: dict[str, str]

    @property
    def summary(self) -> list[dict]:
        return summary_rows(self.states, self.verifiers, self.absent)


def _float(x) -> float:
    try:
        return float(x) if x not in ("", None) else float("nan")
    except (TypeError, ValueError):
        return float("nan")


def _num(x: float) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else repr(float(x))


def _read(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def read_study(folder: str | Path) -> Study:
    """A `sorl-lab verifier` output folder (finished or still running); ValueError when it holds no state yet."""
    folder = Path(folder)
    cand, states = _read(folder / "verifier_candidates.csv"), _read(folder / "verifier_states.csv")
    if not cand or not states:
        raise ValueError(f"{folder.name} holds no finished states yet")
    verifiers = [c.removeprefix("score_") for c in cand[0] if c.startswith("score_")
                 and any(r[c] not in ("", None) for r in cand)]
    absent = {r["verifier"]: r["absent"] for r in _read(folder / "verifier_summary.csv") if r.get("absent")}
    return Study(folder, cand, states, verifiers, absent)


def summary_rows(state_rows: list[dict], verifiers, absent: dict[str, str]) -> list[dict]:
    """Per verifier (in SUMMARY_COLUMNS): means over states, each over the states where it is defined, and the
    pick's success against the mean candidate's."""
    rows = []
    mean_success = np.array([_float(r.get("mean_success")) for r in state_rows])
    for v in [*verifiers, *(a for a in absent if a not in verifiers)]:
        if v in absent:
            rows.append({"verifier": v, "absent": absent[v]})
            continue
        col = {m: np.array([_float(r.get(f"{m}_{v}")) for r in state_rows]) for m in METRICS}
        rows.append({
            "verifier": v, "absent": "", "states": len(state_rows),
            "spearman_states": int((~np.isnan(col["spearman"])).sum()),
            **{f"mean_{m}": _num(np.nanmean(col[m])) if not np.isnan(col[m]).all() else "" for m in METRICS},
            "mean_candidate_success": _num(np.nanmean(mean_success)) if not np.isnan(mean_success).all() else "",
        })
    return rows


def summary_csv(summary: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, SUMMARY_COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(summary)
    return out.getvalue()


def summary_table(summary: list[dict]) -> list[dict]:
    """The summary of the present verifiers with labelled columns, numbers rounded to 3 places (for tables)."""
    out = []
    for r in summary:
        if r.get("absent"):
            continue
        row = {"verifier": r["verifier"]}
        for key, label in SUMMARY_LABELS.items():
            value = _float(r.get(key))
            row[label] = int(value) if key == "spearman_states" and not math.isnan(value) else round(value, 3)
        out.append(row)
    return out


def _by_state(cand_rows: list[dict]) -> dict[str, list[dict]]:
    by_state: dict[str, list[dict]] = {}
    for r in cand_rows:
        by_state.setdefault(r["state"], []).append(r)
    return {s: sorted(rows, key=lambda r: int(r["candidate"])) for s, rows in by_state.items()}


def regret_by_n(cand_rows: list[dict], verifiers) -> dict[str, dict[int, float]]:
    """Per verifier: mean over states of the top-1 regret among the first N candidates, N = 2, 4, ... up to all.
    The candidates of a state are independent draws, so their first N are a best-of-N draw of its own."""
    by_state = _by_state(cand_rows)
    total = min((len(rows) for rows in by_state.values()), default=0)
    out = {v: {} for v in verifiers}
    for v in verifiers:
        for n in (2, 4, 8, 16, 32, 64):
            if n > total:
                break
            regrets = []
            for rows in by_state.values():
                score = np.array([_float(r[f"score_{v}"]) for r in rows[:n]])
                truth = np.array([_float(r["return_mean"]) for r in rows[:n]])
                if np.isfinite(score).all() and np.isfinite(truth).all():
                    regrets.append(truth.max() - truth[int(np.argmax(score))])
            out[v][n] = float(np.mean(regrets)) if regrets else float("nan")
    return out




def pick_profile(study: Study, verifier: str = "q") -> dict:
    """How a verifier's pick differs from the candidates it was picked from, over a study's states: per action
    dimension, the pick's mean |a - median| against a typical candidate's; the pick's distance to the median against
    the mean candidate's; its true return and success against the candidates' mean; and the same for the states
    where the candidates' success differs (the ones that decide an episode)."""
    by_state = list(_by_state(study.candidates).values())
    dims = sorted(int(k[1:]) for k in study.candidates[0] if re.fullmatch(r"a\d+", k))
    pick_dev, cand_dev, offsets, deciding = [], [], [], []
    gains = {"return": [], "success": []}
    for rows in by_state:
        actions = np.array([[_float(r[f"a{d}"]) for d in dims] for r in rows])
        scores = np.array([_float(r[f"score_{verifier}"]) for r in rows])
        if not np.isfinite(scores).all():
            continue
        pick = int(np.argmax(scores))
        offset = actions - np.median(actions, axis=0)
        deviation = np.abs(offset)
        offsets.append(offset[pick])
        pick_dev.append(deviation[pick])
        cand_dev.append(deviation.mean(axis=0))
        returns = np.array([_float(r["return_mean"]) for r in rows])
        success = np.array([_float(r.get("success_mean")) for r in rows])
        gains["return"].append(returns[pick] - returns.mean())
        gains["success"].append(success[pick] - success.mean())
        if np.isfinite(success).all() and success.max() > success.min():
            deciding.append(success[pick] - success.mean())
    pick_dev, cand_dev, offsets = np.array(pick_dev), np.array(cand_dev), np.array(offsets)
    return {"states": len(pick_dev), "pick_deviation": pick_dev.mean(axis=0), "candidate_deviation": cand_dev.mean(axis=0),
            "pick_offset": offsets.mean(axis=0), "share_below": (offsets < 0).mean(axis=0),
            "return_gain": float(np.mean(gains["return"])), "success_gain": float(np.nanmean(gains["success"])),
            "deciding_states": len(deciding), "deciding_gain": float(np.mean(deciding)) if deciding else float("nan")}


def pick_profile_note(study: Study, verifier: str = "q", names: list[str] | None = None) -> str:
    """pick_profile in words: where the pick stands out, and what the truth says of it."""
    p = pick_profile(study, verifier)
    if not p["states"]:
        return ""
    names = names or [f"a{d}" for d in range(len(p["pick_deviation"]))]
    ratio = p["pick_deviation"] / np.maximum(p["candidate_deviation"], 1e-12)
    order = np.argsort(-ratio)
    dims = ", ".join(f"{names[d]} {ratio[d]:.1f}x ({p['pick_deviation'][d]:.3f} against {p['candidate_deviation'][d]:.3f})"
                     for d in order)
    top = int(order[0])
    below = p["share_below"][top]
    side = (f"below the median at {below:.0%} of the states" if below >= 0.5 else f"above the median at {1 - below:.0%} of the states")
    dims += f"; in {names[top]} the pick lies {side} (mean offset {p['pick_offset'][top]:+.3f})"
    text = (f"Over {p['states']} states, the {verifier} pick's distance from the candidates' median against a typical "
            f"candidate's, by action dimension: {dims}. Its true return is {p['return_gain']:+.2f} against the candidates' "
            f"mean, its success {100 * p['success_gain']:+.1f} points")
    if p["deciding_states"]:
        text += (f"; at the {p['deciding_states']} states where the candidates' success differs, "
                 f"{100 * p['deciding_gain']:+.1f} points")
    return text + "."

CEILING_NS = (1, 2, 4, 8, 16, 32, 64)
CLOSE_TO_BEST = 0.05  # without success data, a candidate is "good" within this share of its state's return range of the best


def _good(rows: list[dict]) -> np.ndarray:
    """Which candidates of a state are good: succeeding in at least half their repeats when the study records success,
    else (toy worlds) within CLOSE_TO_BEST of the state's return range from its best return."""
    success = np.array([_float(r.get("success_mean")) for r in rows])
    if np.isfinite(success).all():
        return success >= 0.5
    truth = np.array([_float(r["return_mean"]) for r in rows])
    return truth >= truth.max() - CLOSE_TO_BEST * (truth.max() - truth.min())


@dataclass
class Ceiling:
    """What a perfect verifier would reach with the first N candidates of each state, against each verifier's pick."""

    ns: list[int]
    measure: str  # "success" (share of states whose pick succeeds) or "near best" (toy: within CLOSE_TO_BEST)
    coverage: list[float]  # share of states where some candidate of the first N is good: the oracle pick's rate
    oracle_return: list[float]  # mean over states of the best true return among the first N
    pick_rate: dict[str, list[float]]  # per verifier: share of states whose pick among the first N is good
    pick_return: dict[str, list[float]]  # per verifier: mean true return of its pick among the first N
    fit: dict | None  # log(1 - coverage) = a + b log N: {"a", "b", "r2", "points"}, or None when it cannot be fitted


def ceiling_by_n(cand_rows: list[dict], verifiers) -> Ceiling:
    """The oracle pick (the candidate with the best true return) and coverage for N = 1, 2, 4, ... up to the study's N,
    beside every verifier's pick; the first N candidates of a state are a best-of-N draw of their own."""
    by_state = list(_by_state(cand_rows).values())
    total = min((len(rows) for rows in by_state), default=0)
    ns = [n for n in CEILING_NS if n <= total]
    measure = "success" if all(np.isfinite(_float(r.get("success_mean"))) for r in cand_rows) else "near best"
    good = [_good(rows) for rows in by_state]
    truth = [np.array([_float(r["return_mean"]) for r in rows]) for rows in by_state]
    coverage, oracle, pick_rate, pick_return = [], [], {v: [] for v in verifiers}, {v: [] for v in verifiers}
    for n in ns:
        coverage.append(float(np.mean([g[:n].any() for g in good])))
        oracle.append(float(np.mean([t[:n].max() for t in truth])))
        for v in verifiers:
            picks = [(g, t, int(np.argmax([_float(r[f"score_{v}"]) for r in rows[:n]])))
                     for rows, g, t in zip(by_state, good, truth) if np.isfinite([_float(r[f"score_{v}"]) for r in rows[:n]]).all()]
            pick_rate[v].append(float(np.mean([g[i] for g, _, i in picks])) if picks else float("nan"))
            pick_return[v].append(float(np.mean([t[i] for _, t, i in picks])) if picks else float("nan"))
    return Ceiling(ns, measure, coverage, oracle, pick_rate, pick_return, power_law_fit(ns, coverage))


def power_law_fit(ns: list[int], coverage: list[float]) -> dict | None:
    """Least squares of log(1 - coverage) = a + b log N over the N where 0 < 1 - coverage < 1; None with fewer than
    three such points (nothing to fit: coverage already 1, or never above 0)."""
    points = [(n, 1 - c) for n, c in zip(ns, coverage) if 0 < 1 - c < 1]
    if len(points) < 3:
        return None
    x, y = np.log([n for n, _ in points]), np.log([e for _, e in points])
    b, a = np.polyfit(x, y, 1)
    residual = y - (a + b * x)
    total = ((y - y.mean()) ** 2).sum()
    r2 = float(1 - (residual ** 2).sum() / total) if total > 0 else 1.0
    return {"a": float(a), "b": float(b), "r2": r2, "points": len(points)}


FIT_R2 = 0.9  # below this the power law is said not to fit


def ceiling_note(study: Study) -> str:
    """The gap between each verifier's pick and a perfect one at the study's largest N, in words and numbers."""
    c = ceiling_by_n(study.candidates, study.verifiers)
    if not c.ns:
        return ""
    n, good = c.ns[-1], ("succeeds" if c.measure == "success" else f"is within {CLOSE_TO_BEST:.0%} of the best return")
    base = c.coverage[0]
    text = (f"A perfect verifier (the oracle: the candidate with the best true return) picks a candidate that {good} in "
            f"{c.coverage[-1]:.0%} of the {len(_by_state(study.candidates))} states with N = {n}, against {base:.0%} with "
            f"N = 1 (coverage).")
    rates: dict[float, list[str]] = {}  # verifiers with the same rate are named together
    for v in study.verifiers:
        if np.isfinite(c.pick_rate[v][-1]):
            rates.setdefault(round(c.pick_rate[v][-1], 6), []).append(v)
    groups = [(rate, " and ".join(names) if len(names) < 3 else ", ".join(names[:-1]) + " and " + names[-1])
              for rate, names in sorted(rates.items(), reverse=True)]
    if groups and c.coverage[-1] > base:
        parts = [f"{who} {rate:.0%} ({(rate - base) / (c.coverage[-1] - base):.0%} of the possible gain)" for rate, who in groups]
        text += f" The verifiers' picks at N = {n}: " + "; ".join(parts) + "."
    elif groups:
        text += " No candidate set does better than N = 1 here, so no verifier can gain: " + "; ".join(
            f"{who} {rate:.0%}" for rate, who in groups) + "."
    if c.fit is None:
        text += " Coverage has too few points strictly between 0 and 1 for a power law in N."
    elif c.fit["r2"] >= FIT_R2:
        text += (f" Coverage follows a power law: 1 - coverage ≈ {np.exp(c.fit['a']):.2f} · N^{c.fit['b']:.2f} "
                 f"(R² {c.fit['r2']:.2f} over {c.fit['points']} values of N).")
    else:
        text += (f" A power law 1 - coverage = e^a · N^b does not fit (R² {c.fit['r2']:.2f} over {c.fit['points']} values "
                 "of N): coverage does not fall off as a straight line on log axes here.")
    return text

def _z(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / x.std()


def calibration_figure(study: Study):
    """Score against true return, both standardised within each state, one panel per verifier; the pick in red.
    States whose returns all tie are left out (they rank nothing)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=max(1, len(study.verifiers)), subplot_titles=study.verifiers, shared_yaxes=True)
    for c, v in enumerate(study.verifiers, start=1):
        xs, ys, px, py = [], [], [], []
        for rows in _by_state(study.candidates).values():
            score = np.array([_float(r[f"score_{v}"]) for r in rows])
            truth = np.array([_float(r["return_mean"]) for r in rows])
            if not (np.isfinite(score).all() and np.isfinite(truth).all()) or truth.std() == 0:
                continue
            zx = _z(score) if score.std() > 0 else np.zeros_like(score)
            zy = _z(truth)
            xs += list(zx)
            ys += list(zy)
            k = int(np.argmax(score))
            px.append(zx[k])
            py.append(zy[k])
        fig.add_trace(go.Scattergl(x=xs, y=ys, mode="markers", marker=dict(size=4, color=CANDIDATE, opacity=0.6),
                                   name="a candidate", showlegend=c == 1, legendgroup="c"), row=1, col=c)
        fig.add_trace(go.Scattergl(x=px, y=py, mode="markers", marker=dict(size=7, color=PICK),
                                   name="the verifier's pick", showlegend=c == 1, legendgroup="p"), row=1, col=c)
    fig.update_yaxes(title_text="true return (standardised)", row=1, col=1)
    # One x-axis title for all panels: one per panel overlaps its neighbours at projector width.
    fig.add_annotation(text="verifier score (standardised within its state)", x=0.5, y=-0.16, xref="paper",
                       yref="paper", showarrow=False, font=dict(size=13))
    fig.update_layout(title="Verifier score against true return, within each state", height=420,
                      margin=dict(l=60, r=20, t=70, b=60), legend=dict(orientation="h", yanchor="top", y=-0.25, x=0))
    return fig


def spearman_figure(study: Study):
    """The rank correlation of each verifier's scores with the true returns, one dot per state."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for v in study.verifiers:
        values = [x for x in (_float(r.get(f"spearman_{v}")) for r in study.states) if not math.isnan(x)]
        fig.add_trace(go.Box(y=values, name=v, boxpoints="all", jitter=0.4, pointpos=0, boxmean=True,
                             marker=dict(size=4)))
    fig.add_hline(y=0, line_dash="dot", line_color="grey")
    fig.update_layout(title="Rank correlation of score and true return, per state", height=380, showlegend=False,
                      yaxis=dict(title="Spearman ρ (1 = perfect ranking)", range=[-1.05, 1.05]),
                      margin=dict(l=60, r=20, t=50, b=40))
    return fig


def side_by_side_figure(study: Study):
    """Per verifier: the pick's success against a candidate's, top-1 regret, and how far the pick lies from the
    candidates' median against a candidate (a pick farther out: the verifier favours outliers)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    summary = {r["verifier"]: r for r in study.summary if not r.get("absent")}
    present = [v for v in study.verifiers if v in summary]

    def get(key):
        return [_float(summary[v].get(key)) for v in present]

    fig = make_subplots(rows=1, cols=3, subplot_titles=("success", "top-1 regret", "distance to median"),
                        horizontal_spacing=0.1)
    fig.add_trace(go.Bar(x=present, y=get("mean_pick_success"), name="the pick", marker_color=PICK,
                         legendgroup="pick"), 1, 1)
    fig.add_trace(go.Bar(x=present, y=get("mean_candidate_success"), name="a candidate", marker_color=CANDIDATE,
                         legendgroup="cand"), 1, 1)
    fig.add_trace(go.Bar(x=present, y=get("mean_top1_regret"), name="top-1 regret", marker_color=TRUTH,
                         showlegend=False), 1, 2)
    fig.add_trace(go.Bar(x=present, y=get("mean_pick_distance"), name="the pick", marker_color=PICK,
                         legendgroup="pick", showlegend=False), 1, 3)
    fig.add_trace(go.Bar(x=present, y=get("mean_mean_distance"), name="a candidate", marker_color=CANDIDATE,
                         legendgroup="cand", showlegend=False), 1, 3)
    fig.update_yaxes(range=[0, 1.02], row=1, col=1)
    fig.update_xaxes(tickangle=-45)
    fig.update_layout(title="Verifiers side by side", height=400, barmode="group",
                      margin=dict(l=50, r=40, t=80, b=40), legend=dict(orientation="h", yanchor="top", y=-0.3, x=0))
    return fig


SYMBOLS = ("circle", "square", "diamond", "triangle-up", "x", "star")
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")


def regret_figure(study: Study):
    """Top-1 regret against N: best-of-N over the first N candidates of each state."""
    import plotly.graph_objects as go

    by_n = regret_by_n(study.candidates, study.verifiers)
    fig = go.Figure()
    for i, v in enumerate(study.verifiers):
        # markers of different shapes and sizes and lines of different dashes, so a verifier whose line lies
        # under another's (q under q-kbtt when they rank alike) still shows
        fig.add_trace(go.Scatter(x=list(by_n[v]), y=list(by_n[v].values()), mode="lines+markers", name=v,
                                 marker=dict(size=11 - 1.5 * i, symbol=SYMBOLS[i % len(SYMBOLS)]),
                                 line=dict(width=2, dash=DASHES[i % len(DASHES)])))
    fig.update_layout(title="Top-1 regret against N", height=360, margin=dict(l=60, r=20, t=50, b=40),
                      xaxis=dict(title="N (the first N candidates of each state)", type="log",
                                 tickvals=list(next(iter(by_n.values()), {}))),
                      yaxis_title="mean top-1 regret", legend=dict(orientation="h", yanchor="top", y=-0.3, x=0))
    return fig


def ceiling_figure(study: Study):
    """Coverage (the oracle pick) against N beside each verifier's pick: the ceiling a verifier could reach."""
    import plotly.graph_objects as go

    c = ceiling_by_n(study.candidates, study.verifiers)
    what = "succeeds" if c.measure == "success" else "is near the best"
    import plotly.express as px

    colours = px.colors.qualitative.Plotly  # the other figures' default order: each verifier keeps its colour
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=c.ns, y=c.coverage, mode="lines+markers", name="perfect verifier (coverage)",
                             line=dict(color="black", width=3), marker=dict(size=9)))
    for i, v in enumerate(study.verifiers):
        fig.add_trace(go.Scatter(x=c.ns, y=c.pick_rate[v], mode="lines+markers", name=v,
                                 marker=dict(size=11 - 1.5 * i, symbol=SYMBOLS[i % len(SYMBOLS)], color=colours[i % len(colours)]),
                                 line=dict(width=2, dash=DASHES[i % len(DASHES)], color=colours[i % len(colours)])))
    fig.update_layout(title=f"Share of states whose pick {what}, against N", height=380,
                      margin=dict(l=60, r=20, t=50, b=40),
                      xaxis=dict(title="N (the first N candidates of each state)", type="log", tickvals=c.ns),
                      yaxis=dict(title=f"share of states (pick {what})", range=[0, 1.02], tickformat=".0%"),
                      legend=dict(orientation="h", yanchor="top", y=-0.3, x=0))
    return fig


def figures(study: Study) -> list[tuple[str, object]]:
    """(name, figure) of the report, in its order."""
    return [("calibration", calibration_figure(study)), ("spearman", spearman_figure(study)),
            ("side by side", side_by_side_figure(study)), ("regret against N", regret_figure(study)),
            ("ceiling against N", ceiling_figure(study))]


def truth_noise_note(study: Study) -> str:
    """How noisy the truth is (repeats), against how much candidates differ."""
    rep_std = np.array([_float(r.get("return_std")) for r in study.candidates])
    spread = np.array([np.std([_float(r["return_mean"]) for r in rows]) for rows in _by_state(study.candidates).values()])
    if not len(rep_std) or np.isnan(rep_std).all():
        return ""
    return (f" Noise in the truth: the mean std of a candidate's return over repeats is {np.nanmean(rep_std):.3g}, "
            f"the mean spread (std) of the candidates' mean returns at a state {np.nanmean(spread):.3g}; when the first "
            "is not small against the second, more --repeats sharpen every correlation here.")


def study_html(study: Study, title: str) -> str:
    """Self-contained report (plotly.js inlined once): the notes, the summary table and the figures."""
    def esc(s) -> str:
        return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    table = summary_table(study.summary)
    head = list(table[0]) if table else ["verifier"]
    rows = ["<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>"]
    rows += ["<tr>" + "".join(f"<td>{esc(r[h])}</td>" for h in head) + "</tr>" for r in table]
    rows += [f"<tr><td>{esc(v)}</td><td colspan='{len(head) - 1}'>absent: {esc(why)}</td></tr>"
             for v, why in study.absent.items()]
    rows.append("</table>")
    body = "".join(f"<section>{fig.to_html(full_html=False, include_plotlyjs=(i == 0))}</section>"
                   for i, (_, fig) in enumerate(figures(study)))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title><style>"
            "body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}</style></head><body>"
            f"<h1>{esc(title)}</h1><p>{esc(NOTES + truth_noise_note(study))}</p>{''.join(rows)}{body}"
            f"<p>{esc(ceiling_note(study))}</p></body></html>")
