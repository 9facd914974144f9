"""OGBench rollouts: run a shortcut policy in its OGBench environment at up to four (M_inf, N) settings.

Pick a bundled checkpoint (assets/ogbench/*/policy.pt), upload one, or give a path (also as the URL
parameter ?checkpoint=PATH); run K episodes of each configuration from the same seeded initial states,
read success (95% interval), return, length and compute per action, then pick an episode from the
per-episode outcomes and watch it replayed exactly (same reset seed, same sampling noise) in every
configuration side by side, with the learned Q along it. Typed paths are read only inside the folders
app/paths.py allows. The logic lives in app/rollouts_page.py (checkpoints: app/policies.py, uploads: app/uploads.py).
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import streamlit as st
from streamlit.runtime import Runtime
from streamlit.runtime.scriptrunner import get_script_run_ctx

# Streamlit runs this file as a script (app/ on the import path, not the repository): put the repository root on the
# path, so the logic imports as the package `app`, the same modules the tests import.
if str(Path(__file__).resolve().parents[2]) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from app import jobs, policies  # noqa: E402
from app import rollouts_page as R  # noqa: E402
from app import uploads as U  # noqa: E402
from app.messages import plain_message  # noqa: E402
from app.paths import PathNotAllowed, page_off_message, resolve_allowed  # noqa: E402
from sorl_core.verifiers import VERIFIERS, calls_per_action  # noqa: E402
from sorl_core.verifiers import get as get_verifier  # noqa: E402

st.set_page_config(page_title="SORL Lab — OGBench rollouts", page_icon="🎬", layout="wide")
if page_off_message("rollouts"):  # SORL_LAB_PAGES_OFF (app/paths.py)
    st.info(page_off_message("rollouts"))
    st.stop()

HELP = {
    "verifier": "How best-of-N ranks the N candidates of every configuration with N > 1. "
                + " ".join(f"{k}: {v.description}." for k, v in VERIFIERS.items()),
    "source": "Where the policy comes from: a checkpoint bundled with the lab (assets/ogbench/<name>/policy.pt), "
              "a .pt file or a run of the authors' code you upload, or a path on the machine running the lab. "
              "Checkpoints are read as tensors only (torch weights_only), authors' pickles as arrays only: "
              "nothing in them is executed.",
    "bundled": "Policies shipped with the lab, trained with `sorl-lab train --env ...`. Each has a card (how it was "
               "trained) and a sweep (its success over the M_inf × N grid, on the Scaling study page).",
    "path": "Path of a checkpoint on the machine running the lab, inside its runs/ or assets/ folder or a folder "
            "named in SORL_LAB_PATHS (the URL parameter ?checkpoint=PATH fills it in).",
    "count": "How many (M_inf, N) configurations to compare, up to four. Every configuration plays the same K "
             "episodes from the same seeded initial states, so differences come from the test-time compute.",
    "m": "M_inf: Euler steps of the shortcut policy at inference (sequential test-time scaling). The policy turns "
         "noise into an action in M_inf steps of size 1/M_inf; it was trained at step sizes 1, 1/2, …, 1/M_disc, so "
         "every power of two up to M_disc is in distribution. Each candidate costs M_inf actor calls.",
    "n": "N: best-of-N candidates (parallel test-time scaling). The policy draws N actions from independent noise, "
         "the learned Q — the critic evaluated at k = M_inf — ranks them, and the best one is executed. N = 1 calls "
         "no critic. Compute per action = M_inf·N actor calls + N critic calls (when N > 1).",
    "episodes": "K: episodes per configuration. Episode i starts from the same seeded initial state in every "
                "configuration. Success rates come with 95% Wilson intervals, which are wide for small K.",
    "seed": "Seed of the initial states (episode i resets with seed·100003 + i) and of the sampling noise. The same "
            "seed and K give the numbers `sorl-lab evaluate` reports for those cells.",
    "run": "Play K episodes of every configuration (one batch of environments in two worker processes, the policy "
           "batched over episodes), then render the episode you pick below. Results are shared by everyone on this "
           "server: the same checkpoint, configurations, K and seed come back at once. When the server is busy the "
           "run waits its turn and shows its place in the queue.",
    "episode": "Which episode to watch. The video replays exactly that episode of the table (the same initial state "
               "and the same sampling noise), so its outcome is the one in the per-episode table.",
}
VIEW_KEYS = ("ro_source", "ro_bundled", "ro_path", "ro_count", "ro_episodes", "ro_seed", "ro_verifier",
             *(f"ro_m{i}" for i in range(R.MAX_CONFIGS)), *(f"ro_n{i}" for i in range(R.MAX_CONFIGS)))
SRC_BUNDLED, SRC_UPLOAD, SRC_PATH = "Bundled", "Upload", "Path on this machine"


# --------------------------------------------------------------------------- heavy jobs (app/jobs.py), from this session
def heavy() -> tuple[jobs.JobBoard, str]:
    """The server's heavy-job board (sessions that closed are known to Streamlit's runtime) and this session's id.
    Heavy work goes through it: board.submit(key, label, work, me), jobs.follow(board, job, what, st.progress)."""
    alive = lambda sid: not Runtime.exists() or Runtime.instance().is_active_session(sid)  # noqa: E731
    return jobs.board(is_alive=alive), get_script_run_ctx().session_id




# --------------------------------------------------------------------------- cached resources and data
@st.cache_resource(max_entries=8, show_spinner="Loading and checking the checkpoint…")
def load_checkpoint(digest: str, _path: str, _name: str) -> policies.Loaded:
    """One loaded agent per checkpoint content, shared by every session (sampling never changes it)."""
    return policies.load_checkpoint(_path, _name, digest=digest)


def episode_job(loaded: policies.Loaded, configs: tuple, episodes: int, seed: int, verifier: str) -> jobs.Job:
    """The episodes of R.run_configs as a job of the server's heavy-job board (app/jobs.py): queued behind the jobs
    already running, keyed by content, so identical requests from any session are computed once."""
    agent, env_name = loaded.agent, loaded.env_name

    def work(report) -> list[dict]:
        report(0.0, "Starting the environments…")
        return R.run_configs(agent, env_name, list(configs), episodes, seed, workers=R.WORKERS, verifier=verifier,
                             on_progress=lambda done, total, label: report(
                                 done / total, f"Episodes: {done} / {total} finished — now {label}"))

    return heavy()[0].submit(("rollouts", loaded.digest, env_name, configs, episodes, seed, verifier),
                       f"episodes of {loaded.name}", work, heavy()[1])


# --------------------------------------------------------------------------- state
def init_state() -> None:
    if st.session_state.get("_ro_init"):
        # Streamlit drops the state of widgets a run did not draw: after a visit to another page, restore ours.
        for key, value in st.session_state.get("_ro_view", {}).items():
            if key not in st.session_state:
                st.session_state[key] = value
        return
    for i in range(R.MAX_CONFIGS):
        st.session_state[f"ro_m{i}"], st.session_state[f"ro_n{i}"] = R.DEFAULT_CONFIGS[i]
    st.session_state.ro_count = R.DEFAULT_COUNT
    st.session_state.ro_episodes = R.EPISODES_DEFAULT
    st.session_state.ro_seed = 0
    st.session_state.ro_verifier = "q"
    path = st.query_params.get("checkpoint")
    if path:
        st.session_state.ro_source = SRC_PATH
        st.session_state.ro_path = path
    st.session_state._ro_init = True


def resolve_checkpoint(bundled: list[policies.Bundled]) -> tuple[policies.Loaded | None, policies.Bundled | None]:
    """The chosen checkpoint, loaded and checked; (None, ...) after showing why not."""
    sources = ([SRC_BUNDLED] if bundled else []) + [SRC_UPLOAD, SRC_PATH]
    if st.session_state.get("ro_source") not in sources:
        st.session_state.ro_source = sources[0]
    source = st.radio("Checkpoint", sources, key="ro_source", horizontal=True, help=HELP["source"])
    chosen = None
    if source == SRC_BUNDLED:
        names = [b.name for b in bundled]
        name = st.selectbox("Bundled policy", names, key="ro_bundled", help=HELP["bundled"])
        chosen = next(b for b in bundled if b.name == name)
        path, shown = chosen.policy, f"{chosen.name}/policy.pt"
    elif source == SRC_UPLOAD:
        files = st.file_uploader(U.LABEL, accept_multiple_files=True, key="ro_upload", help=U.HELP)
        if not files:
            st.info("Upload a checkpoint written by `sorl-lab train --env ...`, or a run of the authors' code, to run it.")
            return None, None
        try:
            path, shown = U.checkpoint_from_upload([(f.name, f.getvalue()) for f in files])
        except ValueError as exc:  # an authors' run that cannot be converted: the message says why
            st.error(f"Cannot use this upload: {plain_message(exc)}")
            return None, None
        except OSError as exc:
            st.error(f"Could not store the upload: {plain_message(exc)}")
            return None, None
    else:
        text = st.text_input("Checkpoint path", key="ro_path", help=HELP["path"],
                             placeholder="runs/cube-single-.../checkpoint.pt").strip()
        if not text:
            st.info("Type the path of a checkpoint written by `sorl-lab train --env ...`.")
            return None, None
        try:
            path = resolve_allowed(text)  # before anything touches the file: no probing of the server's files
        except PathNotAllowed as exc:
            st.error(str(exc))
            return None, None
        shown = text
        if not path.is_file():
            st.error(f"No file at `{text}`.")
            return None, None
    try:
        digest = policies.digest_bytes(Path(path).read_bytes())
        loaded = load_checkpoint(digest, str(path), shown)  # shared by content: name it as this session chose it
        return dataclasses.replace(loaded, name=shown, path=Path(path)), chosen
    except ValueError as exc:  # CheckpointError is one
        st.error(f"Cannot use this checkpoint: {plain_message(exc)}")
    except Exception as exc:  # anything else torch or the environment raises: still no crash
        st.error(f"Cannot use this checkpoint: {plain_message(exc)}")
    return None, None


def run(loaded: policies.Loaded, configs: list[tuple[int, int]], episodes: int, seed: int, verifier: str) -> None:
    """Ask the board for the episodes; the page follows the job (follow_pending) on this and later runs."""
    pending = st.session_state.get("ro_pending")
    job = episode_job(loaded, tuple(configs), episodes, seed, verifier)
    if pending is not None and pending["job"] is not job:
        heavy()[0].leave(pending["job"], heavy()[1])  # settings changed since: the older request is not wanted
    st.session_state.ro_pending = {
        "job": job, "key": (loaded.digest, tuple(configs), episodes, seed, verifier), "name": loaded.name,
        "env": loaded.env_name, "digest": loaded.digest, "configs": list(configs), "episodes": episodes,
        "seed": seed, "verifier": verifier, "agent": loaded.agent, "steps": loaded.max_episode_steps}


def follow_pending() -> None:
    """Wait for the requested episodes (place in the queue, then progress) and keep them as the session's results.
    A widget moved meanwhile reruns the page: the job goes on, and the next run follows it again."""
    pending = st.session_state.get("ro_pending")
    if pending is None:
        return
    try:
        rows = jobs.follow(heavy()[0], pending["job"], "The episodes", st.progress)
    except jobs.JobFailed as exc:
        st.session_state.pop("ro_pending", None)
        st.error(f"The episodes could not run: {plain_message(exc)}")
        return
    st.session_state.pop("ro_pending", None)
    st.session_state.ro_results = {**{k: v for k, v in pending.items() if k != "job"}, "rows": rows, "renders": {}}
    st.session_state.ro_episode = 0


def render(res: dict, episode: int) -> dict | None:
    """Videos of one episode of the last run, kept in res["renders"]; None after showing why not. Rendering is a
    heavy job of the board too: students watching the same episode of the same run share one rendering."""
    if episode in res["renders"]:
        return res["renders"][episode]
    agent, env, configs, seed, digest = res["agent"], res["env"], res["configs"], res["seed"], res["digest"]
    stem = (f"{policies.checkpoint_label(res['name'])}-{digest}-s{seed}-K{res['episodes']}-e{episode}-"
            + ("" if res["verifier"] == "q" else f"{res['verifier']}-") + "_".join(f"M{m}xN{n}" for m, n in configs))

    def work(report) -> dict:
        report(0.0, f"Replaying episode {episode} of each configuration…")
        videos = R.render_videos(agent, env, configs, seed, digest, episode=episode, episodes=res["episodes"],
                                 expected_steps=res["steps"], on_progress=report, verifier=res["verifier"])
        return {"videos": [R.video_record(v) for v in videos], "side_by_side": R.side_by_side_bytes(videos, stem)}

    job = heavy()[0].submit(("render", digest, env, tuple(configs), seed, res["episodes"], episode, res["verifier"]),
                      f"the videos of episode {episode}", work, heavy()[1])
    try:
        done = jobs.follow(heavy()[0], job, f"The videos of episode {episode}", st.progress)
    except jobs.JobFailed as exc:  # the tables still show
        st.error(f"The video could not be rendered: {plain_message(exc)}")
        return None
    if len(res["renders"]) >= 8:  # a few hundred kB each: keep the session small
        res["renders"].pop(next(iter(res["renders"])))
    res["renders"][episode] = done
    return done


# --------------------------------------------------------------------------- page
init_state()
st.title("OGBench rollouts · test-time scaling in the environment")
st.markdown(
    "Run a shortcut policy in its OGBench environment at up to four settings of **M_inf** (Euler steps, sequential "
    "scaling) and **N** (best-of-N candidates ranked by the learned Q, parallel scaling). Every setting plays the "
    "same seeded episodes; pick one and watch it in every setting side by side (SORL, "
    "[arXiv 2505.22866](https://arxiv.org/abs/2505.22866))."
)

with st.container(border=True):
    bundled = policies.bundled_checkpoints()
    if not bundled:
        st.info(f"No bundled OGBench checkpoints yet: nothing matches `policy.pt` in a folder under "
                f"`{policies.ogbench_dir()}`. Upload a checkpoint written by `sorl-lab train --env ...`, or give its path.")
    loaded, chosen = resolve_checkpoint(bundled)
    if loaded is not None:
        steps = loaded.max_episode_steps or "?"
        st.caption(f"**{loaded.name}** · environment `{loaded.env_name}` (observations {loaded.obs_dim}, actions "
                   f"{loaded.action_dim}, {steps} steps per episode) · {loaded.describe()} · digest `{loaded.digest}`")
        if chosen is not None:
            card = policies.card_text(chosen)
            with st.expander(f"Model card — {chosen.name}", expanded=False):
                st.markdown(policies.card_markdown(card) if card else f"_No card.md in `{chosen.policy.parent}`._")

# ---- configurations
m_options = loaded.m_options() if loaded is not None else list(policies.M_OPTIONS)
with st.container(border=True):
    top = st.columns([1, 1, 1, 1])
    count = top[0].number_input("Configurations", min_value=1, max_value=R.MAX_CONFIGS, step=1, key="ro_count",
                                help=HELP["count"])
    episodes = top[1].number_input("K episodes", min_value=1, max_value=R.EPISODES_MAX, step=1,
                                   key="ro_episodes", help=HELP["episodes"])
    seed = top[2].number_input("Seed", min_value=0, max_value=1_000_000, step=1, key="ro_seed", help=HELP["seed"])
    # A baseline offers what its method can do: fql one Euler step, flow-bc no verifier that needs a critic.
    m_options, offered, in_use = (policies.settings_for(loaded.agent.config, m_options, st.session_state.ro_verifier)
                                  if loaded is not None else (m_options, list(VERIFIERS), st.session_state.ro_verifier))
    st.session_state.ro_verifier = in_use
    verifier = top[3].selectbox("Verifier", offered, key="ro_verifier", help=HELP["verifier"])
    refusal = None if loaded is None else get_verifier(verifier).unavailable(loaded.agent.has_target_critic)
    if refusal:
        st.warning(refusal[0].upper() + refusal[1:] + ".")
    if len(m_options) == 1 and loaded is not None and st.session_state.get("_ro_one_step") != loaded.digest:
        # A one-step policy (fql) has only N to vary: on its first load, spread the configurations over N instead
        # of leaving them as copies of M_inf = 1, N = 1.
        for i in range(R.MAX_CONFIGS):
            st.session_state[f"ro_n{i}"] = R.ONE_STEP_N[i]
        st.session_state._ro_one_step = loaded.digest
    cols = st.columns(R.MAX_CONFIGS)
    pairs = []
    for i in range(int(count)):
        key_m, key_n = f"ro_m{i}", f"ro_n{i}"
        if st.session_state.get(key_m) not in m_options:
            below = [o for o in m_options if o <= (st.session_state.get(key_m) or 1)]
            st.session_state[key_m] = below[-1] if below else m_options[0]
        with cols[i]:
            st.markdown(f"**Configuration {i + 1}**")
            if len(m_options) > 1:
                m = st.select_slider("M_inf — Euler steps", options=m_options, key=key_m, help=HELP["m"])
            else:  # fql: one call of its one-step policy, nothing to slide
                m = m_options[0]
                st.caption(f"M_inf = {m}: this policy acts in one network call")
            n = st.number_input("N — best-of-N candidates", min_value=1, max_value=R.N_MAX, step=1, key=key_n,
                                help=HELP["n"])
            calls = sum(calls_per_action(int(m), int(n), verifier))
            st.caption(f"{calls} network call{'' if calls == 1 else 's'} per action")
            pairs.append((int(m), int(n)))
    st.session_state._ro_view = {k: st.session_state[k] for k in VIEW_KEYS if k in st.session_state}
    configs, notes = R.clean_configs(pairs, loaded.m_disc if loaded is not None else max(policies.M_OPTIONS))
    for note in notes:
        st.warning(note)
    unusable = refusal is not None
    clicked = st.button("Run", type="primary", icon=":material/play_arrow:", disabled=loaded is None or not configs or unusable,
                        help=HELP["run"] if loaded is not None else "Choose a usable checkpoint first.")

if clicked and loaded is not None:
    run(loaded, configs, int(episodes), int(seed), verifier)
follow_pending()

# ---- results (kept in the session: changing a widget does not wipe them)
res = st.session_state.get("ro_results")
if res is None:
    st.caption("Press **Run** to play the episodes.")
    st.stop()
current = (loaded.digest, tuple(configs), int(episodes), int(seed), verifier) if loaded is not None else None
if res["key"] != current:
    st.info(f"Showing the last run: {res['name']}, {', '.join(R.config_label(m, n) for m, n in res['configs'])}, "
            f"K = {res['episodes']}, seed {res['seed']}, verifier {res['verifier']}. Press **Run** for the settings above.")

st.subheader("Results")
st.dataframe(R.results_table(res["rows"]), hide_index=True,
             column_config={"measure": st.column_config.TextColumn(pinned=True)})
st.caption(f"{res['episodes']} episodes per configuration from the same initial states (seed {res['seed']}) in "
           f"`{res['env']}`. Success rate: episodes that ended in success, with its 95% Wilson interval. Network "
           "calls: M_inf·N actor calls plus N critic calls when N > 1, per action. ms / action: time inside the "
           "policy on this machine. Mean Q: the learned Q of the executed actions.")

st.subheader("Episodes")
st.dataframe(R.episode_table(res["rows"]), hide_index=True, height=min(400, 38 + 35 * res["episodes"] * len(res["rows"])),
             column_config={"success": st.column_config.CheckboxColumn(help="info['success'] at the episode's end."),
                            "steps": st.column_config.NumberColumn(help="Steps until success or the time limit."),
                            "return": st.column_config.NumberColumn(format="%.0f", help="Undiscounted return.")})
if st.session_state.get("ro_episode") not in range(res["episodes"]):
    st.session_state.ro_episode = 0
episode = st.selectbox("Episode to watch", range(res["episodes"]), key="ro_episode", help=HELP["episode"],
                       format_func=lambda i: R.episode_choice(res["rows"], i))
shown = render(res, int(episode))
if shown:
    videos = shown["videos"]
    st.subheader(f"Episode {episode}, side by side")
    # One video for all configurations: one clock, so the panels play in step.
    with st.container(width=min(R.VIDEO_SIZE * 4 // 3 * len(videos), 1100)):
        st.video(shown["side_by_side"], format="video/mp4", autoplay=True, loop=True, muted=True,
                 alt=f"Episode {episode} of " + "; ".join(f"{v['label']}: {v['outcome']}" for v in videos))
        for col, v in zip(st.columns(len(videos)), videos):
            col.caption(f"**M_inf = {v['m_inf']}, N = {v['n']}** · {v['outcome']} · return {v['episode_return']:.0f}")
    st.caption(f"Episode {episode} replayed exactly as in the tables (the same initial state and sampling noise), "
               f"rendered every {R.VIDEO_EVERY} steps; every panel shows the same step, and a panel whose episode "
               "ended early holds its last frame.")
    st.plotly_chart(R.q_figure(videos), key="ro_q_fig", theme=None, config={"displaylogo": False})

d1, d2 = st.columns(2)
stem = f"sorl-lab-{policies.checkpoint_label(res['name'])}-s{res['seed']}-K{res['episodes']}"
d1.download_button("Results (CSV)", R.results_csv(res["rows"], policies.checkpoint_label(res["name"]), res["env"]),
                   file_name=f"{stem}.csv", mime="text/csv", on_click="ignore", icon=":material/download:",
                   help="One line per configuration: success rate and 95% interval, return, length, calls and ms "
                        "per action, mean Q.")
if shown:
    d2.download_button("Side-by-side video (mp4)", shown["side_by_side"], file_name=f"{stem}-e{episode}-side-by-side.mp4",
                       mime="video/mp4", on_click="ignore", icon=":material/download:",
                       help=f"Episode {episode} of every configuration in one H.264 video, panels in the order above.")
