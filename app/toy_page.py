"""Logic of the toy lab page (app/Home.py) that does not need Streamlit: paths, URL parsing, sampling, CSV,
training in the background.

Everything that touches the model calls ``SORLAgent`` (sample, q_value, consistency_probe):
nothing here integrates the flow itself. Kept apart from Home.py so tests can call it directly.
"""

from __future__ import annotations

import io
import math
import os
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from app.paths import REPO_ROOT
from app.policies import METHOD_NAMES, settings_for  # noqa: F401  (the toy page's vocabulary too)
from sorl_core import toy
from sorl_core.baselines import m_inf_values, ranking_verifier
from sorl_core.config import METHODS, TOY_BUNDLED_ITERATIONS
from sorl_core.verifiers import VERIFIERS

DEFAULT_WORLD = "ring"
BUNDLED_SEED = 0
BUNDLED_ITERATIONS = TOY_BUNDLED_ITERATIONS  # what the bundled files were trained for (assets/toy/README.md)
SHORT_RUN_ITERATIONS = 1500  # "train your own" default: about 15 s on two cores
TRAIN_ITERATION_CHOICES = (100, 250, 500, 1000, 1500, 3000, 6000, 9000)
N_MAX = 64
EVAL_STATES = 256  # contexts of the metrics row and of the scaling panel
EVAL_CONTEXT_SEED = 20_240  # fixed: every setting is scored on the same states
CLOUD_SIZE = 256  # policy actions drawn at the chosen context for the reward map
Q_GRID_RESOLUTION = 61
PROBE_SAMPLES = 64
SCALING_M = (1, 2, 4, 8)
SCALING_N = (1, 4, 16, 64)
DATASET_SIZE = 10_000

DEFAULTS = {"world": DEFAULT_WORLD, "method": "sorl", "m": 8, "ext": False, "n": 16, "seed": 0, "c": 0.0,
            "verifier": "q", "beta": 1.0}
METHOD_NOTES = {  # what a student should know before reading a baseline's panels
    "flow-bc": "**flow-bc**: the same actor network as SORL, trained by flow matching alone: it imitates the data and "
               "knows nothing of the reward. More Euler steps make its samples follow the data more closely; with no "
               "critic, best-of-N can only pick the candidate closest to the others (consensus).",
    "ifql": "**ifql**: a behaviour flow (imitating the data) and a critic trained without any policy. Its actions are "
            "best-of-N over flow samples ranked by the lower of its two critics: with N = 1 it is plain imitation, so "
            "watch what N adds.",
    "fql": "**fql**: a one-step policy pulled toward a behaviour flow's actions and toward high Q. It acts in one "
           "network call, so M_inf is 1; best-of-N over its samples, ranked by its critic, is its test-time scaling.",
}


def toy_checkpoint_path(world: str, method: str = "sorl") -> Path:
    """The bundled checkpoint of a world: <repo>/assets/toy/<world>.pt for SORL, <repo>/assets/toy/<method>/<world>.pt
    for a baseline (SORL_LAB_TOY_DIR overrides the folder)."""
    folder = Path(os.environ.get("SORL_LAB_TOY_DIR") or (REPO_ROOT / "assets" / "toy"))
    return folder / f"{world}.pt" if method == "sorl" else folder / method / f"{world}.pt"


def bundled_methods(world: str) -> list[str]:
    """The methods with a bundled policy for `world`, SORL first (it is always offered: trained here when missing)."""
    return ["sorl"] + [m for m in METHODS[1:] if toy_checkpoint_path(world, m).is_file()]


def m_options(m_disc: int, extrapolate: bool) -> list[int]:
    """Euler step counts offered: 1, 2, ..., m_disc (the trained levels), then 2x and 4x m_disc when extrapolating."""
    base = [2**i for i in range(int(m_disc).bit_length())]
    return base + ([2 * m_disc, 4 * m_disc] if extrapolate else [])


def warm_up(agent) -> None:
    """One tiny sample and critic call, so the first timed call does not pay torch's one-off start-up."""
    agent.sample(np.zeros((4, 1), dtype=np.float32), m_inf=m_inf_values(agent.config, (2,))[0], n=2, generator=0,
                 verifier=ranking_verifier(agent.config))


def eval_contexts(n: int = EVAL_STATES) -> np.ndarray:
    """The fixed (n, 1) batch of contexts every setting is scored on."""
    return toy.make_world(DEFAULT_WORLD).sample_contexts(n, np.random.default_rng(EVAL_CONTEXT_SEED))


# --------------------------------------------------------------------------- URL state
def _flag(text: str) -> bool:
    t = text.strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected 1 or 0")


def parse_query_params(qp: Mapping[str, str]) -> tuple[dict, list[str]]:
    """Validate URL parameters into widget values; returns (values, warnings about ignored ones).

    Keys: world, m (Euler steps), ext (extrapolate), n (candidates), seed (sampling seed), c (context),
    tseed / titers (a policy trained in the app with that seed and iteration budget), upload (the digest of a
    checkpoint uploaded on this server).
    """
    values, warnings = {}, []

    def take(key, convert, check, why):
        if key not in qp:
            return
        raw = qp[key]
        try:
            v = convert(raw)
            if not check(v):
                raise ValueError(why)
        except (ValueError, TypeError, OverflowError):
            warnings.append(f"{key}={str(raw)[:40]}: expected {why}.")
            return
        values[key] = v

    take("world", str, lambda v: v in toy.WORLDS, f"one of {', '.join(toy.WORLDS)}")
    take("method", str, lambda v: v in METHODS, f"one of {', '.join(METHODS)}")
    m_key = "m_inf" if "m_inf" in qp else "m"  # m_inf as on screen; m in links shared before it was renamed
    take(m_key, int, lambda v: v in (1, 2, 4, 8, 16, 32), "a power of two from 1 to 32")
    if m_key in values:
        values["m"] = values.pop(m_key)
    take("ext", _flag, lambda v: True, "1 or 0")
    take("n", int, lambda v: 1 <= v <= N_MAX, f"an integer from 1 to {N_MAX}")
    take("seed", int, lambda v: 0 <= v <= 1_000_000, "an integer from 0 to 1000000")
    take("c", float, lambda v: math.isfinite(v) and -1.0 <= v <= 1.0, "a number in [-1, 1]")
    take("verifier", str, lambda v: v in VERIFIERS, f"one of {', '.join(VERIFIERS)}")
    take("beta", float, lambda v: math.isfinite(v) and 0 <= v <= 10, "a number from 0 to 10")
    take("tseed", int, lambda v: 0 <= v <= 1_000_000, "an integer from 0 to 1000000")
    take("titers", int, lambda v: v in TRAIN_ITERATION_CHOICES, f"one of {', '.join(map(str, TRAIN_ITERATION_CHOICES))}")
    take("upload", str, lambda v: re.fullmatch(r"[0-9a-f]{16}", v) is not None, "the digest of an uploaded checkpoint")
    if "c" in values:
        values["c"] = round(values["c"] / 0.05) * 0.05  # the slider's grid
        values["c"] = round(values["c"], 2)
    if values.get("m", 0) > 8:
        values["ext"] = True  # 16 and 32 Euler steps only exist as an extrapolation experiment
    if ("tseed" in values) != ("titers" in values):
        for k in ("tseed", "titers"):
            if k in values:
                warnings.append(f"{k}: tseed and titers must be given together.")
                values.pop(k)
    return values, warnings


def delta_text(delta: float, fmt: str, unit: str = "") -> tuple[str, str]:
    """(text, colour) of a metric's change: a change that rounds to zero is shown as 0 in grey, not as a red
    "-0.000" arrow."""
    text = fmt.format(delta)
    if float(text.rstrip()) == 0:
        return fmt.format(0.0).lstrip("+") + unit, "off"
    return text + unit, "normal"


def query_params_for(state: Mapping, policy: Mapping) -> dict[str, str]:
    """The URL parameters of the current view (a trained policy adds tseed/titers)."""
    out = {
        "world": str(state["world"]),
        "m_inf": str(int(state["m"])),
        "ext": "1" if state["ext"] else "0",
        "n": str(int(state["n"])),
        "seed": str(int(state["seed"])),
        "c": f"{float(state['c']):.2f}",
    }
    if state.get("method", "sorl") != "sorl" and policy.get("kind", "bundled") == "bundled":
        out["method"] = str(state["method"])
    if state.get("verifier", "q") != "q":  # the paper's verifier is the default: keep plain links short
        out["verifier"] = str(state["verifier"])
        if state["verifier"] == "q-lcb":
            out["beta"] = f"{float(state.get('beta', 1.0)):g}"
    if policy.get("kind") == "trained":
        out["tseed"] = str(int(policy["seed"]))
        out["titers"] = str(int(policy["iterations"]))
    elif policy.get("kind") == "upload":
        out["upload"] = str(policy["digest"])
    return out


# --------------------------------------------------------------------------- model calls
def sample_batch(agent, world: str, data_actions: np.ndarray, m: int, n: int, seed: int, extrapolate: bool,
                 verifier: str = "q", beta: float = 1.0) -> dict:
    """Best-of-N with M Euler steps on the fixed evaluation states: metrics, actions and timing."""
    contexts = eval_contexts()
    t0 = time.perf_counter()
    res = agent.sample(contexts, m_inf=m, n=n, generator=seed, extrapolate=extrapolate, verifier=verifier, beta=beta)
    seconds = time.perf_counter() - t0
    actions = res.actions.cpu().numpy()
    w = toy.make_world(world)
    metrics = toy.action_metrics(w, actions, contexts, data_actions)
    q_chosen = None if res.q is None else res.q.gather(1, res.chosen[:, None])[:, 0].cpu().numpy()
    return {
        "m_inf": m, "n": n, **metrics,
        "network_calls": res.network_calls,
        "ms_per_action": 1000.0 * seconds / len(contexts),
        "contexts": contexts[:, 0], "actions": actions,
        "rewards": w.reward(actions, contexts), "in_support": w.in_support(actions),
        "chosen": res.chosen.cpu().numpy(), "q_chosen": q_chosen,
    }


def sample_cloud(agent, world: str, c: float, m: int, n: int, seed: int, extrapolate: bool, count: int = CLOUD_SIZE,
                 verifier: str = "q", beta: float = 1.0) -> dict:
    """`count` independent best-of-N actions at one context: the policy's action distribution there."""
    contexts = np.full((count, 1), c, dtype=np.float32)
    res = agent.sample(contexts, m_inf=m, n=n, generator=seed, extrapolate=extrapolate, verifier=verifier, beta=beta)
    actions = res.actions.cpu().numpy()
    w = toy.make_world(world)
    r = w.reward(actions, contexts)
    return {"actions": actions, "mean_reward": float(r.mean()), "frac_in_support": float(w.in_support(actions).mean())}


def sample_state(agent, c: float, m: int, n: int, seed: int, extrapolate: bool, verifier: str = "q",
                 beta: float = 1.0) -> dict:
    """One state's N candidates with their Euler paths, verifier scores and the chosen index."""
    res = agent.sample(np.array([[c]], dtype=np.float32), m_inf=m, n=n, generator=seed,
                       extrapolate=extrapolate, return_trajectory=True, verifier=verifier, beta=beta)
    critic_q = None  # the learned Q of the candidates (what the Q landscape shows), whatever ranked them
    if res.q is not None and agent.has_critic:
        critic_q = res.q[0] if verifier == "q" else agent.q_value(np.array([[c]], dtype=np.float32), res.candidates[0], k=m)
    return {
        "trajectory": res.trajectory[0].cpu().numpy(),  # (N, M+1, 2)
        "candidates": res.candidates[0].cpu().numpy(),
        "q": None if res.q is None else res.q[0].cpu().numpy(),  # the verifier's scores
        "critic_q": None if critic_q is None else critic_q.cpu().numpy(),
        "chosen": int(res.chosen[0]),
        "action": res.actions[0].cpu().numpy(),
    }


def q_grid(agent, c: float, k: int, resolution: int = Q_GRID_RESOLUTION) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Learned Q(c, a, k) on a grid over [-1, 1]^2; Q[i, j] is at (xs[j], ys[i])."""
    xs = np.linspace(-1.0, 1.0, resolution)
    gx, gy = np.meshgrid(xs, xs)
    actions = np.stack([gx.ravel(), gy.ravel()], axis=1)
    q = agent.q_value(np.array([[c]], dtype=np.float32), actions, k=k).cpu().numpy().reshape(resolution, resolution)
    return xs, xs.copy(), q


def actions_csv(batch: Mapping, meta: Mapping) -> str:
    """One row per evaluation state: context, chosen action, its true reward and support, Q; settings as columns."""
    import pandas as pd

    df = pd.DataFrame({
        "context": batch["contexts"],
        "action_1": batch["actions"][:, 0],
        "action_2": batch["actions"][:, 1],
        "true_reward": batch["rewards"],
        "in_support": batch["in_support"].astype(bool),
        "chosen_candidate": batch["chosen"],
        "q_chosen": batch["q_chosen"] if batch["q_chosen"] is not None else np.full(len(batch["contexts"]), np.nan),
    })
    for key, value in reversed(list(meta.items())):
        df.insert(0, key, value)
    return df.to_csv(index=False, float_format="%.6g")


def scaling_csv(rows) -> str:
    import pandas as pd

    cols = ["m_inf", "n", "network_calls", "mean_reward", "frac_in_support", "sliced_wasserstein", "reward_gap", "ms_per_action"]
    return pd.DataFrame([{k: r[k] for k in cols} for r in rows]).to_csv(index=False, float_format="%.6g")


# --------------------------------------------------------------------------- training in the background
@dataclass
class TrainJob:
    """Train a toy policy in a background thread, so a rerun of the page never kills the run.

    The page polls ``step`` / ``total`` for its progress bar; ``agent`` or ``error`` is set at the end.
    """

    world: str
    seed: int
    iterations: int
    step: int = 0
    agent: object = None
    checkpoint: bytes = b""  # the run's checkpoint.pt, for the page's download button
    error: str | None = None
    seconds: float = 0.0
    done: threading.Event = field(default_factory=threading.Event)

    def start(self) -> "TrainJob":
        threading.Thread(target=self._run, name=f"train-{self.world}-s{self.seed}", daemon=True).start()
        return self

    @property
    def total(self) -> int:
        return self.iterations

    def _progress(self, step: int, total: int) -> None:
        self.step = step

    def _run(self) -> None:
        from sorl_core.train import ToyTrainConfig, train_toy

        out = tempfile.mkdtemp(prefix=f"sorl-lab-{self.world}-s{self.seed}-")
        t0 = time.perf_counter()
        try:
            cfg = ToyTrainConfig(world=self.world, seed=self.seed, iterations=self.iterations, out=out,
                                 progress=False, eval_every=0, checkpoint_every=self.iterations)
            agent, run_dir = train_toy(cfg, on_progress=self._progress)
            self.checkpoint = (run_dir / "checkpoint.pt").read_bytes()
            warm_up(agent)
            self.agent = agent
        except Exception as exc:  # shown on the page, never raised into it
            self.error = str(exc) or "training stopped unexpectedly"
        finally:
            self.seconds = time.perf_counter() - t0
            shutil.rmtree(out, ignore_errors=True)
            self.done.set()


def read_upload(data: bytes, name: str):
    """Load an uploaded checkpoint; raises ValueError (CheckpointError is one) with a message for the user."""
    from sorl_core.checkpoint import load_agent

    buf = io.BytesIO(data)
    buf.name = name
    agent, extra = load_agent(buf, device="cpu")
    world = extra.get("world")
    if world not in toy.WORLDS or agent.config.obs_dim != 1 or agent.config.action_dim != 2:
        env = extra.get("env")
        what = f"a policy for the OGBench environment {env}" if env else "not a policy of one of the toy 2-D worlds"
        raise ValueError(f"{name} is a SORL Lab checkpoint, but {what}; this page runs toy-world policies "
                         "(open OGBench policies on the OGBench rollouts page).")
    return agent, extra
