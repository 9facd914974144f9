"""SORL Lab — the toy 2-D lab: drag M_inf and N and watch test-time scaling of a shortcut policy.

Opens on the bundled policy of the ring world (assets/toy/ring.pt): no training, no network.
Run it with `make app`, or `python -m streamlit run app/Home.py`.
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import streamlit as st
import torch

# Streamlit runs this file as a script (app/ on the import path, not the repository): put the repository root on the
# path, so the logic imports as the package `app`, the same modules the tests import.
if str(Path(__file__).resolve().parents[1]) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from app import notes as N  # noqa: E402
from app import toy_page as T  # noqa: E402
from app import uploads as U  # noqa: E402
from app.paths import REPO_ROOT  # noqa: E402
from app.policies import digest_bytes  # noqa: E402

from sorl_core import toy, viz  # noqa: E402
from sorl_core.verifiers import VERIFIERS  # noqa: E402

# The toy networks are 64 wide: torch's intra-op threads buy nothing there, and on a small machine they compete
# with the browser drawing the page (first-time slider moves: median 0.54-0.69 s on one thread against
# 0.62-0.67 s on two, four alternating runs on 2 cores; docs/PERFORMANCE.md). Process-wide: other pages too.
torch.set_num_threads(1)
# No cpu.keep_freed_memory() here: a server that many sessions share should hand freed memory back when they leave
# (benchmarks/classroom.py); `make app` limits glibc's per-thread arenas instead (MALLOC_ARENA_MAX).

st.set_page_config(page_title="SORL Lab — toy 2D", page_icon="🎯", layout="wide")

HELP = {
    "world": "The offline dataset. Behaviour actions come from a multimodal 2-D distribution that ignores the "
             "state; the true reward is r(a, c) = 1 − ‖a − g(c)‖² − 4·(distance of a off the data support), so the "
             "best actions are data modes near the goal g(c), and leaving the data is punished.",
    "tseed": "Training seed: the dataset, the network initialisation and all training noise.",
    "titers": "Training budget: SORL iterations (one critic and one actor update each). "
              f"The bundled policies used {T.BUNDLED_ITERATIONS:,}; 1,500 take about 15 s.",
    "m": "M_inf: Euler steps of the shortcut model at inference (sequential test-time scaling). "
         "The model was trained with step sizes 1, 1/2, …, 1/M_disc (M_disc = 8) — flow matching at the finest "
         "level, self-consistency between levels — so each power of two up to M_disc is in distribution. "
         "Each candidate costs M_inf actor calls.",
    "ext": "Also offer M_inf = 2·M_disc and 4·M_disc (16, 32): step sizes finer than any seen in training. "
           "This is the paper's extrapolation experiment: the step-size input leaves its training range.",
    "n": "N: best-of-N candidates (parallel test-time scaling). The policy draws N actions from independent "
         "noise, the learned critic Q(s, a) scores them and the argmax is taken. N = 1 calls no critic. "
         "Compute per action: M_inf·N actor calls + N critic calls (when N > 1).",
    "seed": "Sampling seed: the noise x₀ ~ N(0, I) every Euler path starts from. With the same seed, what changes "
            "when you move M_inf or N is the method, not luck.",
    "c": "The state s: a context c ∈ [−1, 1] that swings the rewarded goal g(c) = 0.75·(cos θ, sin θ), "
         "θ = π/2 + c·π/4, around the ring. The single-state panels use this c; the metrics row uses "
         f"{T.EVAL_STATES} fixed random contexts.",
    "verifier": "How best-of-N ranks its N candidates. " + " ".join(f"**{k}**: {v.description}." for k, v in VERIFIERS.items()),
    "method": "The algorithm behind the bundled policy, on the same data, networks, seed and training budget. SORL: a "
              "shortcut model trained with a Q term and self-consistency. flow-bc: the same actor trained by flow "
              "matching alone (no critic: best-of-N ranks by consensus). ifql: a behaviour flow, best-of-N ranked by "
              "a critic trained without the policy. fql: a one-step policy distilled from a behaviour flow under a Q "
              "term (M_inf is 1). docs/ALGORITHM.md §9 has the details.",
    "group": "Sequential scaling: one line per N, M_inf grows along it. Parallel scaling: one line per M_inf, "
             "N grows along it. Both against the same compute axis.",
}


# --------------------------------------------------------------------------- cached resources and data
@st.cache_resource(show_spinner="Loading the bundled policy…")
def load_bundled(path: str, mtime: float):
    from sorl_core.checkpoint import load_agent

    agent, extra = load_agent(path, device="cpu")
    T.warm_up(agent)
    return agent, extra


def bundled_iterations(world: str) -> int:
    """The training budget of the world's bundled policy, as its checkpoint records it."""
    path = T.toy_checkpoint_path(world)
    if not path.is_file():
        return T.BUNDLED_ITERATIONS
    try:
        return int(load_bundled(str(path), path.stat().st_mtime)[1]["train_config"]["iterations"])
    except (KeyError, TypeError, ValueError):
        return T.BUNDLED_ITERATIONS


@st.cache_resource
def train_store() -> dict:
    """Background training jobs keyed (world, seed, iterations), shared by all sessions of this server."""
    return {"lock": threading.Lock(), "jobs": {}}


@st.cache_data(show_spinner=False)
def data_actions(world: str, seed: int) -> np.ndarray:
    return toy.make_dataset(world, size=T.DATASET_SIZE, seed=seed)["actions"]


@st.cache_data(show_spinner=False, max_entries=512)
def batch_result(_agent, key: str, world: str, data_seed: int, m: int, n: int, seed: int, ext: bool,
                 verifier: str = "q", beta: float = 1.0) -> dict:
    return T.sample_batch(_agent, world, data_actions(world, data_seed), m, n, seed, ext, verifier, beta)


@st.cache_data(show_spinner=False, max_entries=256)
def cloud_result(_agent, key: str, world: str, c: float, m: int, n: int, seed: int, ext: bool,
                 verifier: str = "q", beta: float = 1.0) -> dict:
    return T.sample_cloud(_agent, world, c, m, n, seed, ext, verifier=verifier, beta=beta)


@st.cache_data(show_spinner=False, max_entries=256)
def state_result(_agent, key: str, c: float, m: int, n: int, seed: int, ext: bool, verifier: str = "q",
                 beta: float = 1.0) -> dict:
    return T.sample_state(_agent, c, m, n, seed, ext, verifier, beta)


@st.cache_data(show_spinner=False, max_entries=128)
def q_grid_result(_agent, key: str, c: float, k: int):
    return T.q_grid(_agent, c, k)


@st.cache_data(show_spinner=False, max_entries=128)
def probe_result(_agent, key: str, c: float, seed: int):
    return _agent.consistency_probe(np.array([[c]], dtype=np.float32), samples=T.PROBE_SAMPLES, generator=seed)


@st.cache_resource(show_spinner=False)
def figure_store() -> dict:
    """Figures already built, shared by every session: a class drags through the same few settings, and building
    a Plotly figure (validation included) is much of what a slider move costs the server."""
    return {"lock": threading.Lock(), "figures": OrderedDict()}


def figure(kind: str, key: tuple, build):
    """The figure `kind` for `key` (everything it is drawn from), built once; Streamlit copies it when it sends it,
    so sessions never share a mutable object."""
    store = figure_store()
    with store["lock"]:
        fig = store["figures"].get((kind, key))
        if fig is not None:
            store["figures"].move_to_end((kind, key))
            return fig
    fig = build()
    with store["lock"]:
        store["figures"][(kind, key)] = fig
        while len(store["figures"]) > FIGURES_KEPT:
            store["figures"].popitem(last=False)
    return fig


FIGURES_KEPT = 512  # about 60 kB each on average: some 30 MB at most


@contextmanager
def guarded(what: str):
    """Any failure inside becomes an error box on the page; the rest of the page still renders."""
    try:
        yield
    except Exception as exc:  # Streamlit's own stop/rerun signals are BaseExceptions and pass through
        st.error(f"Could not show {what}: {exc}")


# --------------------------------------------------------------------------- state: URL -> widgets, once
VIEW_KEYS = ("world", "method", "m", "ext", "n", "seed", "c", "verifier", "beta", "tseed", "titers", "group")


def init_state() -> None:
    if st.session_state.get("_init_done"):
        # Streamlit drops the state of widgets a run did not draw: after a visit to another page of the app,
        # put this page's view back (from the copy kept at the end of the controls below).
        for key, value in st.session_state.get("_home_view", {}).items():
            if key not in st.session_state:
                st.session_state[key] = value
        return
    values, warnings = T.parse_query_params(st.query_params.to_dict())
    for key, default in T.DEFAULTS.items():
        st.session_state[key] = values.get(key, default)
    st.session_state.tseed = values.get("tseed", T.BUNDLED_SEED)
    st.session_state.titers = values.get("titers", T.SHORT_RUN_ITERATIONS)
    if "tseed" in values:
        st.session_state.policy = {"kind": "trained", "world": st.session_state.world,
                                   "seed": values["tseed"], "iterations": values["titers"]}
    else:
        st.session_state.policy = {"kind": "bundled"}
    if "upload" in values:
        restored = restore_upload(values["upload"])
        if restored:
            warnings.append(restored)
    st.session_state._qp_warnings = warnings
    st.session_state._first_visit = True  # "How to read this page" opens for this session
    st.session_state._init_done = True


def restore_upload(digest: str) -> str | None:
    """Put a shared link's uploaded checkpoint back in use; returns a message when that is not possible."""
    path = U.uploads_dir() / f"{digest}.pt"
    if not path.is_file():
        return ("upload: that uploaded checkpoint is no longer on this server, so the bundled policy is shown; "
                "upload the file again to restore the view.")
    try:
        agent, extra = T.read_upload(path.read_bytes(), f"{digest}.pt")
    except ValueError as exc:
        return f"upload: {exc}"
    keep_upload(agent, extra, f"uploaded checkpoint {digest[:8]}", digest)
    return None


def keep_upload(agent, extra: dict, name: str, digest: str) -> None:
    T.warm_up(agent)
    st.session_state._uploaded = {"agent": agent, "extra": extra, "name": name, "digest": digest}
    st.session_state.world = extra["world"]
    st.session_state.policy = {"kind": "upload", "world": extra["world"], "digest": digest}


def on_world_change() -> None:
    st.session_state.policy = {"kind": "bundled"}  # a policy belongs to one world


def on_method_change() -> None:
    st.session_state.verifier = "q"  # each method starts on its own default ranking (flow-bc: consensus)


def on_train_click() -> None:
    st.session_state.policy = {"kind": "trained", "world": st.session_state.world,
                               "seed": int(st.session_state.tseed), "iterations": int(st.session_state.titers)}


def on_bundled_click() -> None:
    st.session_state.policy = {"kind": "bundled"}


def on_upload() -> None:
    file = st.session_state.get("upload")
    st.session_state.pop("_upload_error", None)
    if file is None:
        if st.session_state.policy.get("kind") == "upload":
            st.session_state.policy = {"kind": "bundled"}
        return
    # Any file is accepted by the uploader (a browser-side type filter shows a red icon without a reason): say here.
    if not file.name.lower().endswith(".pt"):
        st.session_state._upload_error = (f"{file.name} is not a checkpoint: upload a .pt file written by "
                                          "`sorl-lab train --world ...`.")
        return
    data = file.getvalue()
    try:
        agent, extra = T.read_upload(data, file.name)
    except ValueError as exc:  # CheckpointError is one: its message is written for people
        st.session_state._upload_error = str(exc)
        return
    except Exception:  # anything else torch raises on a foreign file
        st.session_state._upload_error = f"{file.name} could not be read as a SORL Lab toy checkpoint."
        return
    try:
        U.store_upload(data)  # kept by digest: the page's shared link can bring it back
    except OSError:
        pass  # the policy still works in this session; only a shared link cannot restore it
    keep_upload(agent, extra, file.name, digest_bytes(data))


# --------------------------------------------------------------------------- policy
def trained_agent(world: str, seed: int, iterations: int, why: str):
    """Train (in the background, shared across reruns and sessions) with a progress bar; None on failure."""
    store = train_store()
    key = (world, int(seed), int(iterations))
    with store["lock"]:
        job = store["jobs"].get(key)
        if job is None:
            job = store["jobs"][key] = T.TrainJob(world, int(seed), int(iterations)).start()
    if not job.done.is_set():
        note = st.empty()  # the "Training ..." note goes with the progress bar once training ends
        if why:
            note.info(why)
        bar = st.progress(0.0, text=f"Training {world} (seed {seed}): starting…")
        while not job.done.wait(0.3):
            bar.progress(min(job.step / job.total, 1.0),
                         text=f"Training {world} (seed {seed}): iteration {job.step} / {job.total}")
        bar.empty()
        note.empty()
    if job.error:
        with store["lock"]:
            store["jobs"].pop(key, None)  # the next click retries
        st.error(f"Training {world} (seed {seed}, {iterations} iterations) failed: {job.error}")
        return None
    return job.agent


def resolve_policy(world: str):
    """(agent, cache key, description, dataset seed) of the policy in use, or None (an error is shown)."""
    policy = st.session_state.policy
    if policy.get("kind") == "upload":
        up = st.session_state.get("_uploaded")
        if up and up["extra"].get("world") == world:
            cfg = up["extra"].get("train_config", {})
            return up["agent"], f"upload:{up['digest']}", f"uploaded checkpoint **{up['name']}**", int(cfg.get("seed", 0))
        st.session_state.policy = policy = {"kind": "bundled"}
    if policy.get("kind") == "trained" and policy.get("world", world) == world:
        seed, iters = int(policy["seed"]), int(policy["iterations"])
        agent = trained_agent(world, seed, iters, f"Training a {world} policy (seed {seed}, {iters} iterations) "
                                                  "with the progress bar below; it is cached for this server.")
        if agent is None:
            return None
        return agent, f"trained:{world}:{seed}:{iters}", f"trained here: seed {seed}, {iters} iterations", seed
    method = st.session_state.get("method", "sorl")
    path = T.toy_checkpoint_path(world, method)
    if method != "sorl" and not path.is_file():
        st.session_state.method, method = "sorl", "sorl"
        path = T.toy_checkpoint_path(world)
    if not path.is_file():
        agent = trained_agent(world, T.BUNDLED_SEED, T.BUNDLED_ITERATIONS,
                              f"No bundled checkpoint at `{path}`: training the default {world} policy "
                              f"(seed {T.BUNDLED_SEED}, {T.BUNDLED_ITERATIONS} iterations) once for this server.")
        if agent is None:
            return None
        return (agent, f"trained:{world}:{T.BUNDLED_SEED}:{T.BUNDLED_ITERATIONS}",
                f"trained here (no bundled file): seed {T.BUNDLED_SEED}, {T.BUNDLED_ITERATIONS} iterations", T.BUNDLED_SEED)
    try:
        agent, extra = load_bundled(str(path), path.stat().st_mtime)
    except Exception as exc:
        st.error(f"The bundled checkpoint {path} could not be loaded: {exc}")
        return None
    if extra.get("world", world) != world:
        st.error(f"{path} holds a policy for world {extra.get('world')!r}, not {world!r}.")
        return None
    cfg = extra.get("train_config", {})
    seed = int(cfg.get("seed", T.BUNDLED_SEED))
    try:
        shown = path.resolve().relative_to(REPO_ROOT)
    except ValueError:
        shown = path
    desc = f"bundled `{shown}` (seed {seed}, {cfg.get('iterations', '?')} iterations)"
    return agent, f"bundled:{world}:{method}:{path.stat().st_mtime_ns}", desc, seed


# --------------------------------------------------------------------------- page
init_state()
st.title("SORL Lab · toy 2-D worlds")
st.markdown(
    "A **shortcut-model policy** turns noise into an action in **M_inf** Euler steps; **best-of-N** draws N such "
    "actions and keeps the one the learned critic likes best. Move the two knobs and watch reward, compute and "
    "the action distribution change (SORL, [arXiv 2505.22866](https://arxiv.org/abs/2505.22866))."
)
url_warnings = st.session_state.pop("_qp_warnings", [])
if url_warnings:  # one box for the whole address, one line per ignored setting
    st.warning("Some settings in the address were ignored:\n" + "\n".join(f"- {w}" for w in url_warnings))

with st.sidebar:
    st.header("Policy")
    st.selectbox("World", toy.WORLDS, key="world", help=HELP["world"], on_change=on_world_change)
    methods = T.bundled_methods(st.session_state.world)
    if st.session_state.get("method") not in methods:
        st.session_state.method = "sorl"
    if len(methods) > 1 and st.session_state.policy.get("kind") == "bundled":
        st.selectbox("Method", methods, key="method", format_func=T.METHOD_NAMES.get, help=HELP["method"],
                     on_change=on_method_change)
    with st.expander("Train your own (SORL)", expanded=False):
        st.number_input("Training seed", min_value=0, max_value=1_000_000, step=1, key="tseed", help=HELP["tseed"])
        st.select_slider("Training budget (iterations)", options=T.TRAIN_ITERATION_CHOICES, key="titers",
                         help=HELP["titers"])
        st.button("Train", on_click=on_train_click, type="primary", width="stretch",
                  help="Train SORL on this world with the seed and budget above (about 15–25 s for 1500 iterations "
                       "on an idle two-core CPU). Trained policies are cached for as long as the server runs.")
    with st.expander("Load a checkpoint", expanded=False):
        st.file_uploader("SORL Lab toy checkpoint (.pt)", key="upload", on_change=on_upload,
                         help="A checkpoint written by `sorl-lab train` on a toy world.")
        if st.session_state.get("_upload_error"):
            st.error(st.session_state._upload_error)
    if st.session_state.policy.get("kind") != "bundled":
        st.button("Back to the bundled policy", on_click=on_bundled_click, width="stretch")

world = st.session_state.world
resolved = resolve_policy(world)
if resolved is None:
    st.stop()
agent, agent_key, policy_desc, data_seed = resolved
method = agent.config.method
is_sorl = method == "sorl"
m_disc = int(agent.config.m_disc)
st.sidebar.caption(f"In use: {policy_desc}. " + (f"Trained step counts: 1 … {m_disc} (M_disc)." if is_sorl else
                   "One call per action (M_inf = 1)." if method == "fql" else "A plain flow: any number of Euler steps."))
if st.session_state.policy.get("kind") == "trained":
    policy = st.session_state.policy
    job = train_store()["jobs"].get((world, int(policy["seed"]), int(policy["iterations"])))
    if job is not None and job.checkpoint:
        st.sidebar.download_button(
            "Download this policy (.pt)", job.checkpoint, file_name=f"{world}-s{policy['seed']}-{policy['iterations']}it.pt",
            mime="application/octet-stream", on_click="ignore", icon=":material/download:", width="stretch",
            help="The run's checkpoint: load it here (Load a checkpoint), with sorl_core.checkpoint.load_agent in a "
                 "notebook, or resume it with `sorl-lab train --world WORLD --out FOLDER --resume` after saving it "
                 "as FOLDER/checkpoint.pt.")
    short = N.short_run_note(int(policy["iterations"]), bundled_iterations(world))
    if short:
        st.info(short)

if N.world_note(world) and st.session_state.policy.get("kind") == "bundled" and is_sorl:
    st.info(N.world_note(world))
if not is_sorl:
    st.info(T.METHOD_NOTES[method])

# ---- the guide: open on a session's first visit (a constant per session, so a reader's own toggle sticks)
with st.expander("How to read this page", expanded=bool(st.session_state.get("_first_visit"))):
    st.markdown(
        f"""
- **Sequential scaling (M_inf).** The actor is a shortcut model s(x, t, d | s): a velocity that also knows the step
  size d. Sampling starts from noise x₀ ~ N(0, I) and takes M_inf Euler steps of size d = 1/M_inf. Training taught it
  d = 1, 1/2, …, 1/{m_disc}: flow matching at the finest step, and self-consistency (one step of size 2d ≈ two of d).
- **Parallel scaling (N).** N candidates from independent noise, scored by the learned critic Q(s, a); the argmax is
  executed. The critic is only reliable near the data, which is why the reward also punishes leaving the support.
- **Compute** counts network evaluations per action: M_inf·N actor calls plus N critic calls when N > 1.
- **What to look for.** Under each figure a sentence says what it shows at the current settings. The paper's claims
  are about trained policies: with enough training, more Euler steps do not hurt and best-of-N does not lower the
  reward. A policy trained for only a few seconds (Train your own) shows the early picture, where the finest step
  still copies the data; the comparison at the bottom puts the two side by side.
- **Share** this view: the address bar holds every setting (world, M_inf, N, seed, c); opening it restores the page.
        """
    )

# ---- controls: the two knobs side by side on one row (short labels, so they line up at a projector's
# 1024 px), the state and the seed on a second row.
with st.container(border=True):
    c1, c2 = st.columns(2)
    with c1:
        m_slot = st.container()
    with c2:
        n = st.slider("N (best-of-N)", min_value=1, max_value=T.N_MAX, key="n", help=HELP["n"])
    c3, c4, c5, c6 = st.columns([1.5, 0.8, 1.0, 1.3], vertical_alignment="bottom")
    with c3:
        c = st.slider("State: context c", min_value=-1.0, max_value=1.0, step=0.05, key="c", help=HELP["c"],
                      format="%.2f")
    with c4:
        seed = st.number_input("Seed", min_value=0, max_value=1_000_000, step=1, key="seed", help=HELP["seed"])
    options, verifiers_offered, verifier_in_use = T.settings_for(agent.config, T.m_options(m_disc, st.session_state.ext),
                                                                 st.session_state.get("verifier", "q"))
    st.session_state.verifier = verifier_in_use
    with c5:
        verifier = st.selectbox("Verifier", verifiers_offered, key="verifier", help=HELP["verifier"])
    with c6:
        ext = st.checkbox("Extrapolate", key="ext", help=HELP["ext"], disabled=len(options) == 1)
    beta = 1.0
    if verifier == "q-lcb":
        beta = float(st.slider("β: the q-lcb penalty on the critics' disagreement", 0.0, 5.0, step=0.25, key="beta",
                               help="q-lcb ranks by mean Q − β·|Q₁ − Q₂|: the larger β, the more it avoids candidates "
                                    "the two critics disagree on."))
    options = T.settings_for(agent.config, T.m_options(m_disc, ext), verifier)[0]
    if len(options) > 1 and st.session_state.get("m") not in options:  # (fql's single M_inf leaves the choice as it is)
        smaller = [o for o in options if o <= (st.session_state.get("m") or 1)]
        st.session_state.m = smaller[-1] if smaller else options[0]
    with m_slot:
        if len(options) > 1:
            m = st.select_slider("M_inf (Euler steps)", options=options, key="m", help=HELP["m"],
                                 format_func=lambda v: f"{v}*" if v > m_disc else str(v))
        else:  # fql: one call of its one-step policy
            m = options[0]
            st.markdown(f"**M_inf:** {m}  \n{method} acts in one network call; its test-time scaling is N.")
m, n, seed, c = int(m), int(n), int(seed), round(float(c), 2)
st.session_state._home_view = {k: st.session_state[k] for k in VIEW_KEYS if k in st.session_state}
ext_used = bool(m > m_disc)  # the flag only matters past M_disc: keep cache keys canonical

# ---- shareable URL: written back whenever the view changes
wanted = T.query_params_for({"world": world, "method": method, "m": m, "ext": ext, "n": n, "seed": seed, "c": c, "verifier": verifier,
                             "beta": beta}, st.session_state.policy)
vb = (verifier, beta)  # how best-of-N ranks: every sampling call below uses it
view = (agent_key, world, data_seed, c, m, n, seed, ext_used, vb)  # everything a single-state figure is drawn from
if st.query_params.to_dict() != wanted:
    st.query_params.from_dict(wanted)

# ---- metrics on a batch of states
batch = None
with guarded("the metrics"):
    batch = batch_result(agent, agent_key, world, data_seed, m, n, seed, ext_used, *vb)
    base = batch_result(agent, agent_key, world, data_seed, 1, 1, seed, False)
    is_base = m == 1 and n == 1
    k1, k2, k3, k4 = st.columns(4)
    # Short labels and bare deltas: longer ones are cut off in a 1024 px window; the caption says what the
    # deltas compare with.
    reward_delta = T.delta_text(batch["mean_reward"] - base["mean_reward"], "{:+.3f}")
    support_delta = T.delta_text(100 * (batch["frac_in_support"] - base["frac_in_support"]), "{:+.1f}", " pts")
    k1.metric("True reward", f"{batch['mean_reward']:.3f}", delta=None if is_base else reward_delta[0],
              delta_color=reward_delta[1],
              help=f"Average of the known reward r(a, c) of the chosen action over {T.EVAL_STATES} fixed random "
                   "states (the best possible is ≈ 1).")
    k2.metric("On the data", f"{100 * batch['frac_in_support']:.1f} %",
              delta=None if is_base else support_delta[0], delta_color=support_delta[1],
              help="Share of chosen actions inside the support of the offline data (where the critic was trained).")
    k3.metric("Calls / action", f"{batch['network_calls']}",
              help="Test-time compute: M_inf·N actor calls + N critic calls when N > 1.")
    k4.metric("ms / action", f"{batch['ms_per_action']:.3f}",
              help=f"Wall time of one batched call for {T.EVAL_STATES} states on this machine's CPU, divided by "
                   f"{T.EVAL_STATES}; measured when this setting was first computed.")
    star = "  (* = extrapolated beyond the trained M_disc)" if ext_used else ""
    versus = "" if is_base else " Arrows compare with M_inf = 1, N = 1."
    st.caption(f"M_inf = {m}, N = {n}, sampling seed {seed}, {T.EVAL_STATES} states; gap to the best possible "
               f"reward {batch['reward_gap']:.3f}; sliced Wasserstein distance to the data "
               f"{batch['sliced_wasserstein']:.3f}.{versus}{star}")

# ---- single-state panels
data = data_actions(world, data_seed)
figures: list[tuple[str, object]] = []
state = None
left, right = st.columns(2)
with left:
    with guarded("the reward map"):
        cloud = cloud_result(agent, agent_key, world, c, m, n, seed, ext_used, *vb)
        state = state_result(agent, agent_key, c, m, n, seed, ext_used, *vb)
        fig = figure("reward", view, lambda: viz.reward_map_figure(
            world, c, samples=cloud["actions"], data=data, chosen=state["action"], title=f"True reward, c = {c:+.2f}"))
        st.plotly_chart(fig, key="fig_reward", theme=None, config={"displaylogo": False})
        figures.append(("True reward and policy actions", fig))
        st.caption(f"{T.CLOUD_SIZE} actions of the policy at this state (M_inf = {m}, N = {n}); ✕ is the goal g(c), "
                   "★ the action chosen in the panels on the right and below.")
        st.markdown(N.reward_map_note(world, c, cloud, state["action"]))
with right:
    with guarded("the Euler trajectories"):
        if state is None:
            state = state_result(agent, agent_key, c, m, n, seed, ext_used, *vb)
        fig = figure("trajectory", view, lambda: viz.trajectory_figure(
            state["trajectory"], data=data, chosen=state["chosen"] if n > 1 else None))
        st.plotly_chart(fig, key="fig_traj", theme=None, config={"displaylogo": False})
        figures.append(("Euler trajectories", fig))
        st.caption("Each frame is one Euler step of size 1/M_inf from noise (t = 0) to the action (t = 1). "
                   "The dashed square is the action box the final actions are clipped to.")
        st.markdown(N.trajectory_note(m, n))

left, right = st.columns(2)
with left:
    if not agent.has_critic:
        st.info(f"{method} has no critic: there is no learned Q to draw, and best-of-N ranks its candidates by "
                "consensus (the one closest to the others).")
    else:
        with guarded("the Q landscape"):
            qx, qy, qz = q_grid_result(agent, agent_key, c, m)
            fig = figure("q", view, lambda: viz.q_landscape_figure(
                qx, qy, qz, state["candidates"], state["critic_q"], state["chosen"] if n > 1 else None))
            st.plotly_chart(fig, key="fig_q", theme=None, config={"displaylogo": False})
            figures.append(("Learned Q and the candidates", fig))
            if state["q"] is None:
                st.caption("N = 1: the single candidate is taken as is; the critic is not called, nothing is ranked.")
            else:
                if verifier == "q":
                    order = np.sort(state["q"])[::-1]
                    st.caption(f"Best-of-{n}: the critic Q(s, a{f', k = {m}' if is_sorl else ''}) scores every candidate and the argmax (★, "
                               f"Q = {order[0]:.3f}) is taken; the median candidate scores {np.median(state['q']):.3f}.")
                else:
                    st.caption(f"Best-of-{n} ranked by the {verifier} verifier (★ is its pick); the heatmap and the "
                               f"candidates' hover values are the learned Q{f' at k = {m}' if is_sorl else ''}.")
            st.markdown(N.q_landscape_note(world, c, qx, qy, qz))
with right:
    if not is_sorl:
        st.info(f"Self-consistency (one step of size d against two of d/2) is what SORL trains and {method} does not: "
                "switch Method to SORL to see its heatmap.")
    else:
        with guarded("the self-consistency heatmap"):
            probe = probe_result(agent, agent_key, c, seed)
            fig = figure("consistency", (agent_key, c, seed), lambda: viz.consistency_figure(probe))
            st.plotly_chart(fig, key="fig_sc", theme=None, config={"displaylogo": False})
            figures.append(("Self-consistency error", fig))
            st.caption("How far one shortcut step of size d is from two steps of size d/2 along the model's own paths "
                       f"(context c, {T.PROBE_SAMPLES} samples). Small everywhere = the step sizes agree, so fewer "
                       "steps lose little.")
            st.markdown(N.consistency_note(probe, m, m_disc))

# ---- the verifier against the truth at this state
if state is not None and state["q"] is not None:
    left, right = st.columns(2)
    with left:
        with guarded("the verifier panel"):
            truth = toy.make_world(world).reward(state["candidates"], np.full((n, 1), c))
            fig = figure("verifier", view, lambda: viz.score_truth_figure(state["q"], truth, state["chosen"], verifier))
            st.plotly_chart(fig, key="fig_verifier", theme=None, config={"displaylogo": False})
            figures.append(("Verifier score against true reward", fig))
    with right:
        st.markdown(f"**Does the verifier know best?** Each dot is one of the {n} candidates at c = {c:+.2f}: "
                    f"its {verifier} score against its true reward, known here in closed form.")
        st.markdown(N.score_truth_note(state["q"], truth, state["chosen"], verifier))

# ---- scaling
st.subheader("Test-time scaling: true reward against compute")
scaling_rows = []
with guarded("the scaling panel"):
    scaling_m = T.settings_for(agent.config, [mm for mm in T.SCALING_M if mm <= m_disc], verifier)[0]
    grid = [(mm, nn) for mm in scaling_m for nn in T.SCALING_N]
    group = "one per M_inf (parallel scaling)"  # one M_inf (fql): its single line runs over N
    if len(scaling_m) > 1:
        group = st.radio("Lines", ["one per N (sequential scaling)", "one per M_inf (parallel scaling)"], key="group",
                         horizontal=True, help=HELP["group"])
    # One status line for the whole grid, not one message per cell: every message costs the shared server a
    # little, and from the cache the grid takes milliseconds.
    with st.spinner(f"Computing the scaling grid ({len(grid)} settings)…", show_time=False):
        scaling_rows = [batch_result(agent, agent_key, world, data_seed, mm, nn, seed, False, *vb) for mm, nn in grid]
    by = "n" if group.startswith("one per N") else "m"
    fig = figure("scaling", (agent_key, world, data_seed, seed, vb, by, m, n, ext_used),
                 lambda: viz.scaling_figure(scaling_rows, group_by=by, current=batch))
    st.plotly_chart(fig, key="fig_scaling", theme=None, config={"displaylogo": False})
    figures.append(("Test-time scaling", fig))
    st.caption(f"Every point is {T.EVAL_STATES} states with sampling seed {seed}, M_inf ∈ {list(T.SCALING_M)} × "
               f"N ∈ {list(T.SCALING_N)}; the ★ is the setting above.")
    st.markdown(N.scaling_note(scaling_rows, m_disc) if is_sorl else N.baseline_scaling_note(scaling_rows, method))

# ---- downloads
with guarded("the downloads"):
    d1, d2, d3 = st.columns(3)
    stem = f"sorl-lab-{world}-M{m}-N{n}-seed{seed}"
    if batch is not None:
        meta = {"world": world, "policy": policy_desc.replace("`", "").replace("**", ""), "m_inf": m, "n": n,
                "sampling_seed": seed}
        d1.download_button("Actions (CSV)", lambda: T.actions_csv(batch, meta).encode(), file_name=f"{stem}-actions.csv",
                           mime="text/csv", on_click="ignore", icon=":material/download:",
                           help=f"One row per evaluation state ({T.EVAL_STATES}): context, chosen action, true "
                                "reward, in-support flag, chosen candidate and its Q.")
    if scaling_rows:
        d2.download_button("Scaling (CSV)", lambda: T.scaling_csv(scaling_rows).encode(), file_name=f"sorl-lab-{world}-seed{seed}-scaling.csv",
                           mime="text/csv", on_click="ignore", icon=":material/download:",
                           help="Metrics for every (M_inf, N) of the scaling panel.")
    if figures:
        figs = list(figures)
        notes = f"world {world}, policy: {policy_desc.replace('`', '').replace('**', '')}, M_inf={m}, N={n}, sampling seed {seed}, context c={c:+.2f}"
        d3.download_button("Figures (HTML)", lambda: viz.figures_html(figs, f"SORL Lab — {world}", notes).encode(),
                           file_name=f"{stem}-figures.html", mime="text/html", on_click="ignore",
                           icon=":material/download:",
                           help="All figures on this page in one interactive HTML file (works offline).")


# ---- two policies side by side: a short run against the bundled, longer-trained one (SORL's lesson)
if not is_sorl:
    st.stop()
st.subheader("Early training against the bundled policy")
in_use = st.session_state.policy.get("kind")
other_label = (f"a {T.SHORT_RUN_ITERATIONS:,}-iteration run (about 15 s)" if in_use == "bundled"
               else "the bundled policy")
with guarded("the comparison"):
    st.caption("Training dynamics as a lesson: the same world, the same sampling seed, true reward against M_inf "
               "at N = 1 (solid) and best-of-16 (dashed).")
    if st.toggle(f"Compare with {other_label}", key="compare",
                 help="Trains the short run once for this server when needed (with a progress bar)."):
        if in_use == "bundled":
            other = trained_agent(world, T.BUNDLED_SEED, T.SHORT_RUN_ITERATIONS, "")
            other_key = f"trained:{world}:{T.BUNDLED_SEED}:{T.SHORT_RUN_ITERATIONS}"
        else:
            path = T.toy_checkpoint_path(world)
            other = load_bundled(str(path), path.stat().st_mtime)[0] if path.is_file() else None
            other_key = f"bundled:{world}:{path.stat().st_mtime_ns}" if other is not None else ""
            if other is None:
                st.info(f"There is no bundled {world} policy to compare with.")
        if other is not None:
            ms = [mm for mm in T.SCALING_M if mm <= m_disc]
            series = {}
            for label, pol, key in ((f"in use: {policy_desc}", agent, agent_key), (other_label, other, other_key)):
                series[label.replace("`", "").replace("**", "")] = [
                    batch_result(pol, key, world, data_seed, mm, nn, seed, False, *vb) for mm in ms for nn in (1, 16)]
            fig = viz.comparison_figure(series)
            st.plotly_chart(fig, key="fig_compare", theme=None, config={"displaylogo": False})
            st.markdown(N.comparison_note(series, m_disc))
