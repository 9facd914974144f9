"""Training runs: the losses, the evaluations by M_inf and the resolved config of `sorl-lab train` runs.

Shows the bundled OGBench policies' training logs (assets/ogbench) or your run folders (default runs/);
select several runs to overlay them. The logic lives in app/runs_page.py.
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
from app import runs_page as R  # noqa: E402
from app.paths import page_off_message  # noqa: E402
from sorl_core import viz  # noqa: E402

st.set_page_config(page_title="SORL Lab — training runs", page_icon="📉", layout="wide")
if page_off_message("runs"):  # SORL_LAB_PAGES_OFF (app/paths.py)
    st.info(page_off_message("runs"))
    st.stop()

BUNDLED, MINE = "Bundled runs (assets/ogbench)", "Your runs folder"
HELP = {
    "source": "Bundled: the training logs of the OGBench policies shipped with the lab (M_BTT = 8 and M_BTT = 1). "
              "Your runs folder: runs written by `sorl-lab train`.",
    "root": "Folder holding run folders (each with config.json, metrics.csv and, when evaluation was on, "
            "eval.csv), as written by `sorl-lab train --out ...`. Relative paths start at the repository; the lab "
            "reads only inside runs/, assets/ and the folders its host listed in SORL_LAB_PATHS.",
    "runs": "Runs to show; several are overlaid, one colour each, to compare e.g. M_BTT = 8 with M_BTT = 1, "
            "or the faithful and clean modes.",
    "smoothing": "Exponential moving average of the loss curves (0 = raw). SORL's losses are noisy: each "
                 "iteration draws a new batch, a new flow time t and a new shortcut step size d.",
    "n": "Best-of-N setting of the evaluations to plot: N candidates ranked by the learned Q.",
}


@st.cache_data(show_spinner=False, max_entries=256)
def load(kind: str, path: str, mtime_ns: int, size: int):
    """(value, None) or (None, message). Keyed on mtime and size, so a run still writing shows its new rows."""
    p = Path(path)
    name = f"{p.parent.name}/{p.name}"
    try:
        data = p.read_bytes()
        reader = {"metrics": R.read_metrics, "eval": R.read_eval, "config": R.read_config}[kind]
        return reader(data, name), None
    except R.RunError as exc:
        return None, str(exc)
    except OSError as exc:
        return None, f"{name} could not be read: {exc}"


def load_file(kind: str, path: Path):
    return load(kind, *R.file_key(path))


st.title("Training runs")
st.markdown("The losses SORL minimises, and the policy's evaluations at each number of Euler steps M_inf, "
            "over the iterations of `sorl-lab train` runs.")

# A fresh clone has no runs/ yet: open on the bundled logs, so the page shows plots at once.
if "runs_source" not in st.session_state:
    st.session_state.runs_source = MINE if R.find_runs(R.user_runs_dir()) else BUNDLED
source = st.radio("Runs from", [BUNDLED, MINE], key="runs_source", horizontal=True, help=HELP["source"])
if source == BUNDLED:
    root = R.bundled_runs_dir()
else:
    mine = R.user_runs_dir()
    shown = str(mine.relative_to(P.REPO_ROOT)) if mine.is_relative_to(P.REPO_ROOT) else str(mine)
    root_text = st.text_input("Runs folder", value=shown, key="runs_root", help=HELP["root"])
    try:  # a typed folder is read only inside the allow-listed folders (app/paths.py)
        root = P.resolve_allowed(root_text)
    except P.PathNotAllowed as exc:
        st.error(str(exc))
        st.stop()
if not root.is_dir():
    st.warning(f"There is no folder `{root}` yet: train a run first (e.g. `sorl-lab train --world ring` writes "
               "runs/ring-faithful-s0/), or type the folder that holds your runs.")
    st.stop()
runs = R.find_runs(root)
if not runs:
    st.info(f"No run folders in `{root}`: a run folder holds config.json and metrics.csv, as "
            "`sorl-lab train --out <folder>` writes them.")
    st.stop()
labels = {R.run_label(r, root): r for r in runs}
latest = max(runs, key=lambda r: R.file_key(r / "metrics.csv")[1])
kept = [s for s in st.session_state.get("runs_selected", []) if s in labels]  # another folder: its own runs
if st.session_state.get("_runs_root") != str(root) or kept != st.session_state.get("runs_selected"):
    # Nothing left: the bundled comparison a teacher shows first (R.FIRST_COMPARISON: M_BTT = 8 against 1), or every
    # bundled run when those are not there, or the latest of your runs.
    first = [label for label in R.FIRST_COMPARISON if label in labels]
    st.session_state.runs_selected = kept or ((first if len(first) > 1 else list(labels)) if source == BUNDLED
                                              else [R.run_label(latest, root)])
    st.session_state._runs_root = str(root)
c1, c2 = st.columns([3, 1])
selected = c1.multiselect("Runs", list(labels), key="runs_selected", help=HELP["runs"])
smoothing = c2.slider("Smoothing", 0.0, 0.95, 0.0, 0.05, key="smoothing", help=HELP["smoothing"])
if not selected:
    st.info("Select at least one run.")
    st.stop()

metrics, evals, configs = {}, {}, {}
for label in selected:
    run = labels[label]
    for kind, fname, store in (("config", "config.json", configs), ("metrics", "metrics.csv", metrics),
                               ("eval", "eval.csv", evals)):
        path = run / fname
        if not path.is_file():
            if kind == "eval":
                st.caption(f"`{label}` has no eval.csv: evaluation was off (`--eval-every 0`) or not reached yet.")
            else:
                st.warning(f"`{label}` has no {fname}.")
            continue
        value, error = load_file(kind, path)
        if error:
            st.error(error)
        elif kind == "eval" and value.empty:
            st.caption(f"`{label}` has no evaluations in eval.csv: evaluation was off (`--eval-every 0`) "
                       "or not reached yet.")
        else:
            store[label] = value

figures = []
st.subheader("Losses")
if metrics:
    empty = [k for k, v in metrics.items() if v.empty]
    if empty:
        st.info(f"No rows logged yet in metrics.csv of {', '.join(empty)}.")
    plotted = {k: v for k, v in metrics.items() if not v.empty}
    panels = R.loss_panels(plotted)
    fig = R.loss_figure(plotted, smoothing, panels, colors=R.run_colors(selected))
    st.plotly_chart(fig, key="fig_losses", theme=None, config={"displaylogo": False})
    figures.append(("Losses", fig))
    q_note = ("Q loss: −mean Q / mean |Q| of the policy's actions, drawn because it varies here." if "q_loss" in panels
              else "The Q loss (−mean Q / mean |Q|) is left out: it stays at about "
                   f"{R.q_loss_level(plotted)} here, as it does whenever every Q is negative, so it tells nothing.")
    st.caption("Critic: TD error of the Q ensemble. Flow matching: the velocity at the finest step size 1/M_disc "
               "(the behaviour-cloning regulariser). Self-consistency: one step of size 2d against two of size d. "
               "Mean Q: what the critic expects of the policy's actions (solid) and of the dataset's (dotted); "
               "the policy improves on the data where solid lies above dotted. " + q_note)
else:
    st.info("None of the selected runs has a readable metrics.csv.")

st.subheader("Evaluation by M_inf")
if evals:
    metric = next(m for m in R.EVAL_METRICS if any(m in v.columns for v in evals.values()))
    ns = sorted({int(x) for v in evals.values() for x in v["n"].dropna().unique()})
    n = st.selectbox("N", ns, key="eval_n", help=HELP["n"]) if len(ns) > 1 else None
    fig = R.eval_figure(evals, metric, n, name_runs=len(selected) > 1, colors=R.run_colors(selected))
    st.plotly_chart(fig, key="fig_eval", theme=None, config={"displaylogo": False})
    figures.append(("Evaluation", fig))
    if len({R.eval_metric(v) for v in evals.values()}) > 1:
        st.warning("The selected runs report different metrics (success rate vs mean reward): "
                   f"only those with {metric} are drawn.")
else:
    st.info("No evaluations to show for the selected runs.")

st.subheader("Resolved config")
if len(configs) > 1:
    diff = R.config_differences(configs)
    st.caption("Settings that differ between the selected runs:" if len(diff) else "The selected runs share every setting.")
    if len(diff):
        # A static table wraps long values (an environment's name was cut in a dataframe's fixed-width column).
        st.table(diff.set_index("setting"))
for label, cfg in configs.items():
    with st.expander(f"{label}/config.json", expanded=len(configs) == 1):
        st.json(cfg)

if figures:
    st.download_button("Figures (HTML)", lambda: viz.figures_html(figures, "SORL Lab — training runs",
                                                                  ", ".join(selected)).encode(),
                       file_name="sorl-lab-runs.html", mime="text/html", on_click="ignore", icon=":material/download:",
                       help="The figures of this page in one interactive HTML file (opens offline).")
