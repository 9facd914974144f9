"""Scaling study: success rate of a shortcut policy over the M_inf x N grid of a test-time-scaling sweep.

Reads sweep CSVs (sorl_core/studies/sweep_schema.py): bundled ones under assets/ogbench/**/sweep*.csv, or uploaded.
The logic lives in app/scaling_page.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

# Streamlit runs this file as a script (app/ on the import path, not the repository): put the repository root on the
# path, so the logic imports as the package `app`, the same modules the tests import.
if str(Path(__file__).resolve().parents[2]) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from app import paths as P  # noqa: E402
from app import policies  # noqa: E402
from app import scaling_page as S  # noqa: E402
from app.paths import page_off_message  # noqa: E402
from sorl_core import viz  # noqa: E402
from sorl_core.verifiers import VERIFIERS, calls_text  # noqa: E402
from sorl_core.verifiers import get as get_verifier  # noqa: E402

st.set_page_config(page_title="SORL Lab — scaling study", page_icon="📈", layout="wide")
if page_off_message("scaling"):  # SORL_LAB_PAGES_OFF (app/paths.py)
    st.info(page_off_message("scaling"))
    st.stop()

# The figure's line modes -> compute_figure's group_by.
LINES = {"one per N (sequential)": "n", "one per M_inf (parallel)": "m", "best within each budget": "frontier"}
HELP = {
    "bundled": "Sweeps shipped with the lab (assets/ogbench/**/sweep*.csv): each holds one checkpoint's success "
               "rate at every (M_inf, N) cell, measured in the environment with a 95% Wilson interval.",
    "grids": "The sweep.csv of each `sorl-lab grid` folder under {folder}: every evaluation of the grid, with the "
             "seed each checkpoint was trained with, so several seeds of one recipe show as their mean and spread.",
    "upload": "One or more sweep CSVs written by the evaluator (columns in sorl_core/studies/sweep_schema.py). Load two "
              "checkpoints, e.g. trained with M_BTT = 8 and M_BTT = 1, to compare how they scale.",
    "series": "Checkpoints to compare. A checkpoint is named with the M_BTT it was trained with: the number of "
              "Euler steps back-propagated through in the Q loss; a sweep ranked by another verifier than the "
              "paper's q adds the verifier to the name (· q-min, · consensus, ...).",
    "group": "Sequential scaling: one line per N, M_inf (Euler steps) grows along it. Parallel scaling: one line "
             "per M_inf, N (best-of-N candidates ranked by the learned Q) grows along it. Best within each budget: "
             "one line per series through its best cell at each number of calls (the fair view when the series "
             "have different grids, such as methods). Same compute axis.",
    "sweep_ckpt": "An OGBench policy to measure: a bundled one, or the path of a checkpoint from `sorl-lab train --env` "
                  "inside runs/, assets/ or a folder the lab's host listed in SORL_LAB_PATHS.",
    "sweep_m": "Euler steps of the shortcut policy to try (sequential test-time scaling).",
    "sweep_n": "Best-of-N candidates to try, ranked by the learned Q at k = M_inf (parallel test-time scaling).",
    "sweep_verifiers": "How best-of-N ranks its candidates; each verifier is its own series. "
                       + " ".join(f"{k}: {v.description}." for k, v in VERIFIERS.items()),
    "sweep_episodes": "Episodes per (M_inf, N) cell; episode i starts from the same seeded state in every cell. "
                      "Few episodes give wide 95% intervals: `sorl-lab evaluate --episodes 50` for real figures.",
    "sweep_seed": "Seed of the initial states and the sampling noise (same as `sorl-lab evaluate --seed`).",
    "sweep_run": "Run every cell in the environment now (both cores) and add the result to the sweeps below.",
    "compare": "Several training seeds of one recipe are loaded. Choose what tells series apart; every other "
               "difference (usually the seed) is pooled: each line is then all its members' episodes together, with "
               "a 95% interval, and a thin line per member. The recipe is a checkpoint's name without its seed tag "
               "(cube-single-task2-s1 -> cube-single-task2).",
    "compare_methods": "Load every training seed of SORL and of each baseline trained with the same recipe (flow-bc, "
                       "ifql, fql; docs/ALGORITHM.md §9) and draw one line per method, its seeds pooled: at equal "
                       "network calls per action, the budget's sentence names the best (method, M_inf, N).",
    "budget_run": "Runs measured after several numbers of training iterations (the snapshots `sorl-lab train "
                  "--snapshots` keeps, swept by `sorl-lab evaluate RUN`); seeds of one recipe are pooled.",
    "budget_lines": "Which (M_inf, N, verifier) settings get a line in the figure below; it opens on the four that "
                    "answer the page's questions (one step against eight, best-of-16 by q and by consensus). The "
                    "plane and the sentences use every setting.",
    "budget_target": "A success rate to reach: the sentence below gives, for each training budget, the fewest network "
                     "calls per action whose measured success reaches it. It opens on the lab's target for the task "
                     "(cube-single 80%, scene 40%, cube-double 10%, at M_inf = 8, N = 1).",
    "budget": "Test-time compute per action, in network calls: M_inf·N actor calls plus N critic calls when N > 1. "
              "The compute-optimal cell is the (M_inf, N) with the highest success rate among those that fit; "
              "ties go to fewer calls.",
}


@st.cache_data(show_spinner=False, max_entries=64)
def parse(data: bytes, name: str):
    """(frame, None) or (None, message): parsing is cached on the file's bytes."""
    try:
        return S.parse_sweep(data, name), None
    except S.SweepError as exc:
        return None, str(exc)


@st.cache_data(show_spinner=False, max_entries=16)
def small_sweep(path: str, digest: str, label: str, ms: tuple, ns: tuple, episodes: int, seed: int,
                verifiers: tuple = ("q",)) -> bytes:
    """Cached on the checkpoint's digest and the grid: a repeat (or another session) costs nothing."""
    bar = st.progress(0.0, text=f"{label}: running episodes")
    csv_bytes = S.run_small_sweep(path, label, ms, ns, episodes, seed,
                                  on_progress=lambda done, total: bar.progress(done / total, text=f"{label}: {done}/{total} episodes"),
                                  verifiers=verifiers)
    bar.empty()
    return csv_bytes


def episodes_text(table) -> str:
    """'50 episodes' or '5–50 episodes': how many episodes each cell ran."""
    lo, hi = int(table.episodes.min()), int(table.episodes.max())
    return f"{lo} episodes" if lo == hi else f"{lo}–{hi} episodes"


def small_sweep_section() -> list[tuple[str, str, bytes]]:
    """Run a small sweep of a bundled policy (or a checkpoint path) here; returns the sweeps run this session
    as (source, key, CSV bytes)."""
    with st.expander("Run a small sweep", expanded=False):
        bundled = policies.bundled_checkpoints()
        choices = {b.name: str(b.policy) for b in bundled}
        c1, c2, c3, c4 = st.columns([2, 2, 2, 1])
        with c1:
            name = st.selectbox("Checkpoint", [*choices, "a path…"], key="sweep_ckpt", help=HELP["sweep_ckpt"])
            typed = None if name in choices else st.text_input("Checkpoint path", key="sweep_path", help=HELP["sweep_ckpt"])
        with c2:
            ms = st.multiselect("M_inf values", [1, 2, 4, 8], default=[1, 2, 4, 8], key="sweep_m", help=HELP["sweep_m"])
        with c3:
            ns = st.multiselect("N values", [1, 2, 4, 8, 16, 32, 64], default=[1, 4, 16], key="sweep_n", help=HELP["sweep_n"])
            vs = st.multiselect("Verifiers", list(VERIFIERS), default=["q"], key="sweep_verifiers",
                                help=HELP["sweep_verifiers"])
        with c4:
            episodes = st.number_input("Episodes per cell", 1, 50, 5, key="sweep_episodes", help=HELP["sweep_episodes"])
            seed = st.number_input("Seed", 0, 1_000_000, 0, key="sweep_seed", help=HELP["sweep_seed"])
        path, refused = choices.get(name), None
        if typed and typed.strip():
            try:  # a typed path is read only inside the allow-listed folders (app/paths.py)
                path = str(P.resolve_allowed(typed))
            except P.PathNotAllowed as exc:
                refused = str(exc)
                st.error(refused)
        if st.button("Run sweep", key="sweep_run", disabled=not (path and ms and ns and vs), help=HELP["sweep_run"]):
            run_one(path, name if name in choices else None, tuple(sorted(ms)), tuple(sorted(ns)), int(episodes),
                    int(seed), tuple(v for v in VERIFIERS if v in vs))
    runs = st.session_state.get("small_sweeps", {})
    return [(label, f"run:{grid_key}", data) for grid_key, (label, data) in runs.items()]


def run_one(path: str, bundled_name: str | None, ms: tuple, ns: tuple, episodes: int, seed: int,
            verifiers: tuple = ("q",)) -> None:
    """Run one small sweep and keep it for this session; says where the result went, or why there is none."""
    from sorl_core.checkpoint import CheckpointError

    try:
        loaded = policies.load_checkpoint(path, name=bundled_name)
    except CheckpointError as exc:  # a wrong file or environment: the checker's own sentence
        st.error(f"The sweep could not run: {str(exc).rstrip('.')}.")
        return
    except OSError:
        st.error(f"The sweep could not run: the file {Path(path).name} could not be read.")
        return
    label = f"{bundled_name or policies.checkpoint_label(str(loaded.path))} · s{seed}"
    runs = st.session_state.setdefault("small_sweeps", {})
    grid_key = f"{loaded.digest}|{ms}|{ns}|{episodes}|{seed}|{verifiers}"
    if grid_key in runs:  # the same checkpoint, grid and seed: the same numbers, already on the page
        st.info(f"This sweep is already loaded (source `{runs[grid_key][0]}`).")
        return
    try:
        refusals = [r for v in verifiers if (r := get_verifier(v).unavailable(loaded.agent.has_target_critic))]
        if refusals:
            st.error(refusals[0][0].upper() + refusals[0][1:] + ".")
            return
        data = small_sweep(str(loaded.path), loaded.digest, label, ms, ns, episodes, seed, verifiers)
    except Exception:  # the evaluator failing mid-way: a sentence here, the details in the server log
        import logging

        logging.getLogger(__name__).exception("small sweep failed")
        st.error("The sweep stopped with an unexpected error; the server log has the details.")
        return
    runs[grid_key] = (label, data)
    st.session_state["_sweep_added"] = label  # the notice is shown next to the plots, after the rerun's parse


st.title("Scaling study · success against compute")
st.markdown(
    "How does a shortcut policy trade **Euler steps M_inf** (sequential scaling) against **best-of-N candidates** "
    "ranked by the learned Q (parallel scaling)? Load a sweep: the success rate of one or more checkpoints at every "
    "(M_inf, N) cell, with episodes, 95% intervals and compute per action (SORL, "
    "[arXiv 2505.22866](https://arxiv.org/abs/2505.22866))."
)

# ---- sources: (file name shown, key that tells loaded files apart across reruns, bytes)
sources: list[tuple[str, str, bytes]] = []
with st.container(border=True):
    # The bundled picker takes the whole width: with the three seeds open its chips stay whole at 1024 px.
    root = S.sweep_dir()
    bundled = S.bundled_sweeps(root)
    if bundled:
        # A folder's sweep.csv is named by its folder alone: short chips.
        labels = {(p.parent.name if p.name == "sweep.csv" and p.parent != root else str(p.relative_to(root))): p
                  for p in bundled}
        against = S.method_sweeps(labels)
        if against:  # SORL and its baselines bundled for one environment: one click loads them, compared by method
            def compare_methods(names=tuple(against)):
                st.session_state["bundled"] = list(names)
                st.session_state["compare_axes"] = ["method"]
                st.session_state["_compare_seen"] = list(S.AXES)
                st.session_state["group"] = "best within each budget"
            st.button("Compare SORL with the baselines", key="compare_methods", on_click=compare_methods,
                      help=HELP["compare_methods"])
        if "bundled" not in st.session_state:  # set here, not as default: the button above may set it too
            st.session_state["bundled"] = S.opening_sweeps(list(labels))
        picked = st.multiselect("Bundled sweeps", list(labels), key="bundled", help=HELP["bundled"])
        sources += [(name, f"bundled:{name}", labels[name].read_bytes()) for name in picked]
    grids = S.grid_sweeps()
    # Grid sweeps or the no-bundled note beside the uploader; otherwise the uploader alone, full width.
    left, right = st.columns(2) if grids or not bundled else (st.container(), st.container())
    with left:
        if not bundled:
            st.info(f"No bundled sweeps yet: nothing matches `sweep*.csv` under `{root}`, so upload a sweep CSV "
                    "on the right.")
        if grids:  # the sweeps of `sorl-lab grid` runs on this machine
            home = S.grid_dir()
            grid_labels = {str(p.parent.relative_to(home)): p for p in grids}
            picked_grids = st.multiselect("Grid sweeps", list(grid_labels), default=[], key="grids",
                                          help=HELP["grids"].format(folder=home))
            sources += [(name, f"grid:{name}", grid_labels[name].read_bytes()) for name in picked_grids]
    with right:
        files = st.file_uploader("Upload sweep CSV(s)", accept_multiple_files=True, key="upload",
                                 help=HELP["upload"])
        sources += [(f.name, f"upload:{f.file_id}", f.getvalue()) for f in files or []]
sources += small_sweep_section()

frames = []
for name, key, data in sources:
    df, error = parse(data, name)
    if error:
        st.error(error)
    else:
        frames.append((name, key, df))
if not frames:
    if not sources:
        st.info("Pick a bundled sweep or upload one to see the grid, the scaling curves and the compute-optimal cell.")
    st.stop()

# Series names live in the session: a name once shown never changes when another file arrives.
table = S.combine(frames, st.session_state.setdefault("_series_names", {}))
ranked_by = list(dict.fromkeys(v for v in VERIFIERS if v in set(table.verifier)))
if len(ranked_by) > 1:  # sweeps ranked by several verifiers: choose which to compare (each is its own series)
    shown_verifiers = st.multiselect("Verifiers", ranked_by, default=ranked_by, key="verifiers_shown",
                                     help=HELP["sweep_verifiers"])
    table = table[table.verifier.isin(shown_verifiers or ranked_by)]
all_series = S.series_order(table)
# The Checkpoints filter: keep what the user chose, and select every series that is new since the last run
# (a multiselect with a key keeps its old selection when its options grow, which hid new sweeps).
known = st.session_state.get("_series_known", [])
chosen = st.session_state["series"] if "series" in st.session_state else st.session_state.get("_series_chosen", [])
wanted = [s for s in all_series if s in chosen or s not in known]
st.session_state["_series_known"] = all_series
added = st.session_state.pop("_sweep_added", None)
if added:
    new_names = [s for s in all_series if s in set(table.series[table.source == added])]
    st.success(f"The sweep you ran is loaded as {', '.join(new_names)} and drawn below.")
if len(all_series) > 1:
    st.session_state["series"] = wanted
    shown = st.multiselect("Checkpoints", all_series, key="series", help=HELP["series"])
    st.session_state["_series_chosen"] = shown
    table = table[table.series.isin(shown)]
    if table.empty:
        st.info("Select at least one checkpoint.")
        st.stop()
else:
    st.session_state["_series_chosen"] = all_series
loaded = table  # every chosen row, before several seeds are pooled into one series
series = S.series_order(table)
# Same checkpoint and M_BTT from two files: "name" and "name (2)"; say which file each one is.
twins = table.groupby(["checkpoint", "m_btt"])["series"].transform("nunique") > 1
if twins.any():
    origin = table[twins].drop_duplicates("series")
    st.caption("Same checkpoint in several files: " + " · ".join(
        f"{s} is from {src}" for s, src in zip(origin.series, origin.source)) + ".")
# ---- several training seeds of one recipe: a series is then the mean over its seeds, each seed a thin line
members, files, per_cell = None, table.source.nunique(), episodes_text(table)
if S.has_seed_spread(table):
    axes = S.varying_axes(table)
    # An axis that starts to vary (another recipe or M_BTT was loaded) is compared, never silently averaged over;
    # what the user chose among the axes seen before stays as it was.
    seen = st.session_state.get("_compare_seen", [])
    kept = [a for a in st.session_state.get("compare_axes", []) if a in axes]
    st.session_state["compare_axes"] = kept + [a for a in axes if a not in seen and a not in kept
                                               and a != "training seed"]
    st.session_state["_compare_seen"] = axes
    compare = st.multiselect("Compare by", axes, key="compare_axes", help=HELP["compare"],
                             placeholder="nothing: one line, the mean of everything loaded")
    table, members = S.across_seeds(table, compare)
    series = S.series_order(table)
    spread = S.fixed(members).groupby("series")["member"].nunique()
    st.caption("Each line pools its members' episodes (" + " · ".join(f"{s}: {k}" for s, k in spread.items())
               + "): bars are the 95% interval of the pooled episodes, and a thin line is drawn per member"
               + ("." if "training seed" in compare else ". Add “training seed” to see each seed as its own series."))
envs = sorted(table.env.unique())
st.caption(f"{len(table)} cells of {len(series)} {'series' if members is not None else 'checkpoint(s)'} from "
           f"{files} file(s) · environment: {', '.join(envs)} · {per_cell} per cell"
           + (" and member" if members is not None else "")
           + (" · ⚠ the checkpoints were evaluated in different environments" if len(envs) > 1 else ""))

# ---- budget and the compute-optimal cell
options = S.budget_options(table)
if st.session_state.get("budget") not in options:  # first load: the whole grid; other files: the nearest below
    below = [o for o in options if o <= (st.session_state.get("budget") or options[-1])]
    st.session_state.budget = below[-1] if below else options[0]
c1, c2 = st.columns([2, 1])
with c1:
    budget = st.select_slider("Compute budget: network calls per action", options=options,
                              key="budget", help=HELP["budget"])
with c2:
    group = st.radio("Lines", LINES, key="group", horizontal=True, help=HELP["group"])
picks = {s: S.compute_optimal(table[table.series == s], budget) for s in series}
# Only a cell that succeeds is an optimum: for a policy that never succeeds, the cheapest failing cell is not one.
starred = {k: v for k, v in picks.items() if v is not None and v["success_rate"] > 0}
if len(series) > 1:  # one heading, and each metric labelled by its checkpoint alone: labels short enough to fit
    st.markdown("**Compute-optimal cell under this budget**")
# At most two metrics a row: three side by side cut their labels and values at 1024 px.
cols = [c for start in range(0, len(series), 2) for c in st.columns(2 if len(series) > 1 else 1)]
for col, s in zip(cols, series):
    p = picks[s]
    label = "Compute-optimal" if len(series) == 1 else s
    if p is None:
        col.metric(label, "nothing fits", help="No cell of this checkpoint costs this few network calls.")
    elif s not in starred:
        col.metric(label, "no cell succeeds", help=f"Every cell within {calls_text(budget, 'network call')} per action failed "
                   "every episode: there is nothing to choose, and more compute does not rescue a policy that has "
                   "not learned its task.")
    else:
        col.metric(label, f"M_inf={p['m_inf']}, N={p['n']}", delta=f"success {p['success_rate']:.3f}",
                   delta_color="off", delta_arrow="off",
                   help=f"{calls_text(p['network_calls'], 'network call')} per action (≤ {budget:g}); "
                        + f"95% interval [{p['success_ci_low']:.3f}, {p['success_ci_high']:.3f}] over {p['episodes']} episodes"
                        + (f" (members pooled; they range from {p['spread_low']:.3f} to {p['spread_high']:.3f})."
                           if members is not None else "."))

if len(starred) > 1:
    st.markdown(S.best_overall(starred, budget))

# ---- figures
figures = []
fig = S.compute_figure(table, LINES[group], budget, starred, members)
st.plotly_chart(fig, key="fig_compute", theme=None, config={"displaylogo": False})
figures.append(("Success against compute", fig))

st.subheader("Success rate over the M_inf × N grid")
for start in range(0, len(series), 2):
    row = st.columns(2)
    for col, s in zip(row, series[start:start + 2]):
        with col:
            hm = S.heatmap_figure(table[table.series == s], s, budget, starred.get(s), spread=members is not None)
            st.plotly_chart(hm, key=f"fig_grid_{start}_{s}", theme=None, config={"displaylogo": False})
            figures.append((f"Grid: {s}", hm))
st.caption(f"Grey cells cost more than the budget ({calls_text(budget)} per action); the gold frame marks the "
           "compute-optimal cell.")

# ---- the training budget: runs measured after several numbers of training iterations (snapshots); the bundled
# snapshot sweeps are always in it, so the page opens on the bundled run's learning curve
budget_bundled = [df for df, error in (parse(p.read_bytes(), str(p.relative_to(root))) for p in bundled
                                       if S.is_budget_sweep(p)) if error is None]
trained = S.training_budget(S.budget_rows(loaded, budget_bundled))
if not trained.empty:
    st.subheader("Training compute against test-time compute")
    runs = list(dict.fromkeys(f"{r} (M_BTT={m})" for r, m in zip(trained.run, trained.m_btt)))
    seeds_of = [int(trained[[f"{r} (M_BTT={m})" == name for r, m in zip(trained.run, trained.m_btt)]].seeds.max())
                for name in runs]
    run = st.selectbox("Run", runs, index=S.opening_run(runs, seeds_of), key="budget_run",
                       help=HELP["budget_run"]) if len(runs) > 1 else runs[0]
    one = trained[[f"{r} (M_BTT={m})" == run for r, m in zip(trained.run, trained.m_btt)]]
    seeds = int(one.seeds.max())
    st.caption(f"{run}: {one.train_iterations.nunique()} training budgets, "
               f"{one[['m_inf', 'n', 'verifier']].drop_duplicates().shape[0]} test-time settings"
               + (f", {seeds} seeds pooled" if seeds > 1 else "") + ".")
    options = list(dict.fromkeys(S.cell_label(r) for r in one.sort_values(["n", "m_inf"]).itertuples(index=False)))
    lines = st.multiselect("Test-time settings drawn", options, default=S.headline_cells(one), key="budget_lines",
                           help=HELP["budget_lines"])
    drawn = one[[S.cell_label(r) in set(lines or options) for r in one.itertuples(index=False)]]
    curves = S.training_curves_figure(drawn, every=one)
    st.plotly_chart(curves, key="fig_training_curves", theme=None, config={"displaylogo": False})
    plane = S.compute_plane_figure(one)
    st.plotly_chart(plane, key="fig_compute_plane", theme=None, config={"displaylogo": False})
    figures += [("Success against training iterations", curves), ("Training against test-time compute", plane)]
    # Opens on the lab's target for the run's task (cube-single 80%, scene 40%, cube-double 10%), 80% elsewhere.
    env_target = S.success_target(one)
    targets = sorted({0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95} | ({env_target} if env_target else set()))
    if st.session_state.get("budget_target_run") != run:  # another run: back to its own target
        st.session_state["budget_target_run"], st.session_state["budget_target"] = run, env_target or 0.8
    target = st.select_slider("Success target", options=targets, key="budget_target", format_func=lambda v: f"{v:.0%}",
                              help=HELP["budget_target"])
    st.markdown(S.cheapest_for_target(one, target))
    for line in S.budget_findings(one)[:-1]:  # the last is the cheapest pair for 80%, said above for any target
        st.markdown(line)

# ---- table and downloads
with st.expander("Table"):
    st.dataframe(table, hide_index=True)
d1, d2 = st.columns(2)
stem = "sorl-lab-scaling-" + "-vs-".join(str(s).split(" ")[0] for s in series)[:80]
d1.download_button("Figures (HTML)", lambda: viz.figures_html(figures, "SORL Lab — scaling study",
                                                              f"budget {calls_text(budget)} per action").encode(),
                   file_name=f"{stem}.html", mime="text/html", on_click="ignore", icon=":material/download:",
                   help="Every figure of this page in one interactive HTML file (opens offline).")
d2.download_button("Table (CSV)", table.to_csv(index=False), file_name=f"{stem}.csv", mime="text/csv",
                   on_click="ignore", icon=":material/download:",
                   help="The checked cells of every loaded sweep, with the file and checkpoint they belong to.")
