"""Verifier: does best-of-N pick what is truly best? Visual debugging of a learned verifier on a real episode.

Play one seeded episode of an OGBench policy, scrub through it step by step (frame, the N candidates coloured by the
verifier's score, the pick), and on request score that step's candidates by their counterfactual return. Below, the
calibration of a whole `sorl-lab verifier` study. The logic lives in app/verifier_page.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import streamlit as st
from streamlit.runtime import Runtime
from streamlit.runtime.scriptrunner import get_script_run_ctx

# Streamlit runs this file as a script (app/ on the import path, not the repository): put the repository root on the
# path, so the logic imports as the package `app`, the same modules the tests import.
if str(Path(__file__).resolve().parents[2]) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from app import jobs, policies  # noqa: E402
from app import notes as N  # noqa: E402
from app import paths as P  # noqa: E402
from app import uploads as U  # noqa: E402
from app import verifier_page as V  # noqa: E402
from app.messages import plain_message  # noqa: E402
from app.paths import page_off_message  # noqa: E402
from sorl_core.studies import verifier_report  # noqa: E402
from sorl_core.verifiers import VERIFIERS  # noqa: E402
from sorl_core.verifiers import get as get_verifier  # noqa: E402

st.set_page_config(page_title="SORL Lab — verifier", page_icon="🔍", layout="wide")
if page_off_message("verifier"):  # SORL_LAB_PAGES_OFF (app/paths.py)
    st.info(page_off_message("verifier"))
    st.stop()

HELP = {
    "policy": "A bundled OGBench policy (assets/ogbench/<name>/policy.pt), a checkpoint you upload, or the path of "
              "one written by `sorl-lab train --env ...` inside runs/, assets/ or a folder the lab's host allowed "
              "(SORL_LAB_PATHS).",
    "verifier": "How best-of-N ranks its candidates. " + " ".join(f"{k}: {v.description}." for k, v in VERIFIERS.items()),
    "episode": "Which episode of K to play. Episode i of K starts from the same state, with the same sampling noise, "
               "as row i of the rollouts page's table with the same K, seed and configuration.",
    "step": "Move through the episode: the frame, the candidates and the pick at that step.",
    "truth": "Restore the environment exactly at this step, apply each candidate, and let the same policy (M_inf = 8, "
             "N = 1) continue for the horizon: the discounted return each candidate truly leads to.",
    "study": "A folder written by `sorl-lab verifier` (verifier_candidates.csv, verifier_states.csv): bundled ones "
             "under assets/ogbench/*/verifier, your own under runs/.",
}
K_EPISODES = 5
FRAME_SIZE = 240


# --------------------------------------------------------------------------- heavy jobs (app/jobs.py), from this session
def heavy() -> tuple[jobs.JobBoard, str]:
    """The server's heavy-job board (sessions that closed are known to Streamlit's runtime) and this session's id.
    Heavy work goes through it: board.submit(key, label, work, me), jobs.follow(board, job, what, st.progress)."""
    alive = lambda sid: not Runtime.exists() or Runtime.instance().is_active_session(sid)  # noqa: E731
    return jobs.board(is_alive=alive), get_script_run_ctx().session_id




@st.cache_resource(max_entries=4, show_spinner="Loading and checking the checkpoint…")
def load(path: str, name: str) -> policies.Loaded:
    return policies.load_checkpoint(path, name)


st.title("Verifier · does best-of-N pick what is truly best?")
st.markdown(
    "Best-of-N keeps the candidate its **verifier** scores highest. A learned verifier can be wrong in a way that "
    "best-of-N amplifies: the more candidates, the more likely the top score is one the critic overrates. Play an "
    "episode, step through it, and ask for each candidate's **true** return to see where the ranking fails."
)

# ---- policy and configuration
bundled = policies.bundled_checkpoints()
choices = {b.name: b.policy for b in bundled}
with st.container(border=True):
    c1, c2 = st.columns([2, 1], vertical_alignment="bottom")
    name = c1.selectbox("Policy", [*choices, "upload…", "a path…"], key="vf_policy", help=HELP["policy"])
    verifier = c2.selectbox("Verifier", list(VERIFIERS), key="vf_verifier", help=HELP["verifier"])
    c3, c4, c5, c6 = st.columns(4, vertical_alignment="bottom")
    m = c3.select_slider("M_inf", options=[1, 2, 4, 8], value=8, key="vf_m", help="Euler steps of every candidate.")
    n = c4.number_input("N", min_value=2, max_value=64, value=16, step=1, key="vf_n", help="Candidates per step.")
    seed = c5.number_input("Seed", min_value=0, max_value=1_000_000, value=0, step=1, key="vf_seed")
    episode = c6.selectbox("Episode", list(range(K_EPISODES)), key="vf_episode", help=HELP["episode"])
    path = choices.get(name)
    if name == "upload…":
        files = st.file_uploader(U.LABEL, accept_multiple_files=True, key="vf_upload", help=U.HELP)
        if files:
            try:
                path, uploaded_name = U.checkpoint_from_upload([(f.name, f.getvalue()) for f in files])
            except ValueError as exc:  # an authors' run that cannot be converted: the message says why
                st.error(f"Cannot use this upload: {plain_message(exc)}")
            except OSError:
                st.error("The upload could not be stored on the server; try again.")
    elif path is None:
        typed = st.text_input("Checkpoint path", key="vf_path", help=HELP["policy"])
        if typed.strip():
            try:
                path = P.resolve_allowed(typed)
            except P.PathNotAllowed as exc:
                st.error(str(exc))
loaded = None
if path is not None:
    try:
        loaded = load(str(path), name if name in choices else (uploaded_name if name == "upload…" else Path(path).name))
    except ValueError as exc:  # CheckpointError is one: its message is written for people
        st.error(f"Cannot use this checkpoint: {plain_message(exc)}")
    except OSError:
        st.error(f"The file {Path(path).name} could not be read.")
refusal = None if loaded is None else get_verifier(verifier).unavailable(loaded.agent.has_target_critic)
if loaded is not None and refusal is None:  # a baseline does what its method can: fql one step, flow-bc no critic
    m_offered, v_offered, _ = policies.settings_for(loaded.agent.config, [1, 2, 4, 8], verifier)
    if int(m) not in m_offered:
        refusal = f"{loaded.describe()}: set M_inf to {m_offered[0]}"
    elif verifier not in v_offered:
        refusal = f"{loaded.describe()}: choose a verifier that needs no critic ({', '.join(v_offered)})"
if refusal:
    st.warning(refusal[0].upper() + refusal[1:] + ".")
    loaded = None

settings = (str(path), int(m), int(n), verifier, int(seed), int(episode))


def play_job(loaded: policies.Loaded, m: int, n: int, verifier: str, seed: int, episode: int) -> jobs.Job:
    """Recording an episode is a heavy job of the server's board (app/jobs.py): queued, shared by content."""
    agent, env_name, steps = loaded.agent, loaded.env_name, loaded.max_episode_steps or 200

    def work(report):
        report(0.0, "Playing and rendering…")
        return V.record_episode(agent, env_name, m, n, verifier, seed, episode, K_EPISODES, size=FRAME_SIZE,
                                on_progress=lambda k: report(min(k / (steps + 1), 1.0), f"Playing and rendering: frame {k}"))

    key = ("verifier-play", loaded.digest, env_name, m, n, verifier, seed, episode, K_EPISODES, FRAME_SIZE)
    return heavy()[0].submit(key, f"episode {episode} of {loaded.name}", work, heavy()[1])


if st.button("Play the episode", type="primary", disabled=loaded is None, key="vf_play",
             help="Plays episode i of K = 5 at these settings and keeps every step (about half a minute; when the "
                  "server is busy it waits its turn and shows its place in the queue)."):
    if st.session_state.get("vf_pending"):
        heavy()[0].leave(st.session_state.vf_pending["job"], heavy()[1])
    st.session_state.vf_pending = {"job": play_job(loaded, int(m), int(n), verifier, int(seed), int(episode)),
                                   "settings": settings, "agent": loaded.agent}
pending = st.session_state.get("vf_pending")
if pending:  # followed again on every run until it ends: moving a widget meanwhile does not lose it
    try:
        rec = jobs.follow(heavy()[0], pending["job"], "The episode", st.progress)
        st.session_state.vf_record, st.session_state.vf_settings = rec, pending["settings"]
        st.session_state.vf_agent = pending["agent"]  # the truth of a step is computed with the policy that played it
        st.session_state.vf_record_key = pending["job"].key  # names the recording by content (its truth jobs too)
        st.session_state.vf_truth = {}
        st.session_state.vf_step = 0
    except jobs.JobFailed as exc:
        st.error(f"The episode could not be played: {plain_message(exc)}")
    st.session_state.pop("vf_pending", None)

rec = st.session_state.get("vf_record")


def rec_agent():
    return st.session_state.vf_agent
if rec is None:
    st.caption("Press **Play the episode** to record one (the bundled cube-single policy: about 30 s on two cores).")
else:
    if st.session_state.get("vf_settings") != settings:
        st.info(f"Showing the last episode: {rec.env_name}, M_inf = {rec.m_inf}, N = {rec.n}, verifier {rec.verifier}, "
                f"seed {rec.seed}, episode {rec.episode}. Press **Play the episode** for the settings above.")
    outcome = "succeeded" if rec.success else "failed"
    st.subheader(f"Episode {rec.episode}: {outcome} after {rec.length} steps")
    step = st.slider("Step", 0, max(rec.length - 1, 0), key="vf_step", help=HELP["step"])
    left, right = st.columns([1, 1.6])
    with left:
        st.image(rec.frames[min(step, len(rec.frames) - 1)], caption=f"step {step} of {rec.length}", width=FRAME_SIZE)
    truth = st.session_state.vf_truth.get(step)
    with right:
        scores = rec.scores[step]
        fig = V.candidates_figure(rec.candidates[step], scores, rec.chosen[step], rec.verifier,
                                  None if truth is None else truth["returns"])
        st.plotly_chart(fig, key="vf_candidates", theme=None, config={"displaylogo": False})
    if truth is None:
        if st.button("Score these candidates by their true return", key="vf_truth_button", help=HELP["truth"]):
            agent = rec_agent()

            def work(report, step=step):
                report(0.0, f"Restoring step {step} and rolling out its {rec.n} candidates…")
                return V.counterfactual_at(agent, rec, step, on_progress=lambda t, h: report(
                    t / h, f"Rolling out the candidates: step {t} of at most {h}"))

            key = ("verifier-truth", *st.session_state.vf_record_key, step)
            job = heavy()[0].submit(key, f"the true returns at step {step}", work, heavy()[1])
            st.session_state.vf_truth_pending = (step, job)
        if st.session_state.get("vf_truth_pending"):
            at, job = st.session_state.vf_truth_pending
            try:
                returns = jobs.follow(heavy()[0], job, "The candidates' true returns", st.progress)
                st.session_state.vf_truth[at] = returns
                st.session_state.pop("vf_truth_pending", None)
                st.rerun()
            except jobs.JobFailed as exc:
                st.session_state.pop("vf_truth_pending", None)
                st.error(f"The candidates could not be scored: {plain_message(exc)}")
    else:
        st.markdown(N.score_truth_note(scores, truth["returns"], rec.chosen[step], rec.verifier, "true return")
                    + f" Success of the candidates' rollouts: {100 * float(np.mean(truth['success'])):.0f} % on average, "
                      f"{100 * float(truth['success'][rec.chosen[step]]):.0f} % for the pick.")
    st.plotly_chart(V.score_spread_figure(rec, step), key="vf_spread", theme=None, config={"displaylogo": False})
    st.caption("Large gaps are steps where the verifier's pick stands far above the other candidates: the places to "
               "look for a verifier that overrates an outlier.")

# ---- calibration of a whole study
st.subheader("Calibration of a verifier study")
studies = {"bundled: " + str(p.parent.relative_to(policies.ogbench_dir())).replace("/verifier", ""): p.parent
           for p in sorted(policies.ogbench_dir().glob("*/verifier/**/verifier_states.csv"), key=lambda p: (len(p.parts), p))}
runs = P.REPO_ROOT / "runs"
studies.update({f"runs/{p.parent.name}": p.parent for p in sorted(runs.glob("*/verifier_states.csv"))} if runs.is_dir() else {})
if not studies:
    st.caption("No study yet: run `sorl-lab verifier --checkpoint C --out runs/verifier-NAME` and reload.")
else:
    chosen_study = st.selectbox("Study", list(studies), key="vf_study", help=HELP["study"])
    try:
        study = verifier_report.read_study(studies[chosen_study])
    except (OSError, ValueError, KeyError) as exc:
        st.error(f"The study could not be read: {plain_message(exc)}")
    else:
        st.dataframe(verifier_report.summary_table(study.summary), hide_index=True)
        st.caption(f"{len(study.states)} states, {len(study.candidates)} candidates. "
                   + verifier_report.NOTES + verifier_report.truth_noise_note(study))
        figs = verifier_report.figures(study)
        # One a row: in half a projector-width row their legends wrap over the axis titles.
        for i, (key, fig) in enumerate(figs):
            st.plotly_chart(fig, key=f"vf_cal_{i}", theme=None, config={"displaylogo": False})
        st.markdown("**The ceiling** (the black line). " + verifier_report.ceiling_note(study))
        picker = "q" if "q" in study.verifiers else study.verifiers[0]
        dims = sum(1 for key in study.candidates[0] if key[:1] == "a" and key[1:].isdigit()) if study.candidates else 0
        st.markdown(f"**What the {picker} pick does differently.** "
                    + verifier_report.pick_profile_note(study, picker, V.action_names(dims)))
