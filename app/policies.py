"""OGBench policies as the pages use them: the bundled ones with their cards, and any checkpoint loaded and checked.

Checkpoints are read only through ``sorl_core.checkpoint`` (``torch.load(weights_only=True)``: never unpickled) and
checked against the environment they name. Shared by the rollouts, scaling and verifier pages; the pages cache what
``load_checkpoint`` returns (``st.cache_resource``).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from app.paths import REPO_ROOT
from sorl_core.baselines import m_inf_values, ranking_verifier
from sorl_core.verifiers import VERIFIERS

M_OPTIONS = (1, 2, 4, 8)  # Euler steps offered (powers of two up to the usual M_disc = 8)


# --------------------------------------------------------------------------- methods (SORL and its baselines)
METHOD_NAMES = {"sorl": "SORL (shortcut model)", "flow-bc": "flow-bc (flow matching only)",
                "ifql": "ifql (behaviour flow + critic)", "fql": "fql (one-step policy)"}


def settings_for(config, m_options: list[int], verifier: str) -> tuple[list[int], list[str], str]:
    """(M_inf offered, verifiers offered, the verifier to use) for a policy's method: fql acts in one step, and flow-bc
    has no critic, so its best-of-N ranks by consensus only."""
    offered = [v for v in VERIFIERS if config.method != "flow-bc" or not VERIFIERS[v].uses_critic]
    return (list(m_inf_values(config, m_options)), offered,
            verifier if verifier in offered else ranking_verifier(config))


# --------------------------------------------------------------------------- bundled checkpoints
def ogbench_dir() -> Path:
    """Folder of the bundled OGBench policies: <repo>/assets/ogbench (SORL_LAB_OGBENCH_DIR overrides it)."""
    return Path(os.environ.get("SORL_LAB_OGBENCH_DIR") or (REPO_ROOT / "assets" / "ogbench"))


@dataclass(frozen=True)
class Bundled:
    """One bundled policy: <root>/<name>/policy.pt, with its card.md and sweep.csv when present."""

    name: str
    policy: Path
    card: Path | None
    sweep: Path | None


# The policy the README and notebook 3 teach with: the pages open on it (the others are barely trained or variants).
HEADLINE_POLICY = "cube-single-task2"


def bundled_checkpoints(root: Path | None = None) -> list[Bundled]:
    """Every <root>/*/policy.pt with its card and sweep: HEADLINE_POLICY first, then by name."""
    root = Path(root) if root is not None else ogbench_dir()
    if not root.is_dir():
        return []
    out = []
    for policy in sorted(root.glob("*/policy.pt"), key=lambda p: (p.parent.name != HEADLINE_POLICY, p.parent.name)):
        folder = policy.parent
        card, sweep = folder / "card.md", folder / "sweep.csv"
        out.append(Bundled(folder.name, policy, card if card.is_file() else None, sweep if sweep.is_file() else None))
    return out


def card_text(bundled: Bundled) -> str | None:
    if bundled.card is None:
        return None
    try:
        return bundled.card.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def card_markdown(text: str) -> str:
    """A card for st.markdown inside an expander. Key-value tables written with an empty header row (`| | |`) would
    show that empty row first: they become bullet lists (`- **key**: value`); headings go two levels down."""
    lines, out, i, fenced = text.splitlines(), [], 0, False
    while i < len(lines):
        if lines[i].lstrip().startswith("```"):
            fenced = not fenced
        if fenced:
            out.append(lines[i])
            i += 1
            continue
        cells = _cells(lines[i])
        if (cells is not None and not any(cells) and i + 1 < len(lines)
                and re.fullmatch(r"\s*\|?(\s*:?-+:?\s*\|)+\s*:?-*:?\s*\|?\s*", lines[i + 1])):
            i += 2
            while i < len(lines) and (row := _cells(lines[i])) is not None:
                key, *rest = row
                out.append(f"- **{key}**: {' · '.join(c for c in rest if c)}" if key else f"- {' · '.join(rest)}")
                i += 1
            continue
        heading = re.match(r"(#{1,4}) ", lines[i])  # inside an expander: page-sized headings would dwarf it
        out.append("##" + lines[i] if heading else lines[i])
        i += 1
    return "\n".join(out)


def _cells(line: str) -> list[str] | None:
    """Cells of a markdown table row, or None if the line is not one."""
    line = line.strip()
    if not (line.startswith("|") and line.endswith("|") and len(line) > 1):
        return None
    return [c.strip() for c in line[1:-1].split("|")]



def checkpoint_label(name: str) -> str:
    """Short name of a checkpoint (sorl_core.checkpoint.checkpoint_label), imported late: it brings torch."""
    from sorl_core.checkpoint import checkpoint_label as label

    return label(name)


def digest_bytes(data: bytes) -> str:
    """The same key as ``sorl_core.checkpoint.checkpoint_digest`` of a file holding these bytes."""
    return hashlib.sha256(data).hexdigest()[:16]



@lru_cache(maxsize=32)
def env_spaces(env_name: str) -> tuple[int, int, int | None]:
    """(observation size, action size, episode step limit) of an OGBench environment; ValueError if unknown."""
    from sorl_core.ogbench.rollouts import make_env

    env = make_env(env_name)
    try:
        steps = env.spec.max_episode_steps if env.spec else None
        return int(env.observation_space.shape[0]), int(env.action_space.shape[0]), steps
    finally:
        env.close()


@dataclass
class Loaded:
    """A checked OGBench checkpoint, ready to run."""

    agent: object
    extra: dict
    env_name: str
    digest: str
    path: Path
    name: str
    obs_dim: int
    action_dim: int
    max_episode_steps: int | None

    @property
    def m_disc(self) -> int:
        return int(self.agent.config.m_disc)

    @property
    def m_btt(self) -> int:
        return int(self.agent.config.m_btt)

    @property
    def method(self) -> str:
        return str(self.agent.config.method)

    def m_options(self) -> list[int]:
        """The Euler step counts this policy samples with: up to its M_disc (fql: 1 only)."""
        return list(m_inf_values(self.agent.config, [m for m in M_OPTIONS if m <= self.m_disc]))

    def describe(self) -> str:
        """What the policy is, in one line for a caption: SORL's trained levels and M_BTT, or the baseline's method."""
        if self.method == "sorl":
            return f"trained Euler levels 1 … {self.m_disc} (M_disc), M_BTT = {self.m_btt}"
        what = {"fql": "acts in one call", "flow-bc": "no critic: best-of-N by consensus only",
                "ifql": f"flow sampled with 1 … {self.m_disc} Euler steps, best-of-N by its lower critic"}[self.method]
        return f"baseline {METHOD_NAMES[self.method]}: {what}"


def load_checkpoint(path: str | Path, name: str | None = None, digest: str | None = None) -> Loaded:
    """Load and check an OGBench policy; raises CheckpointError with a message for the user.

    Refused: unreadable, corrupt or foreign files (read_checkpoint), checkpoints without an OGBench
    environment (toy-world policies), goal-conditioned environments, and policies whose observation or
    action size differs from the environment's.
    """
    from sorl_core.checkpoint import CheckpointError, load_agent

    path = Path(path)
    name = name or path.name
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    with open(path, "rb") as f:
        data = f.read()
    buf = io.BytesIO(data)
    buf.name = name  # read_checkpoint names the file in its messages
    agent, extra = load_agent(buf, device="cpu")
    env_name = extra.get("env") if isinstance(extra, dict) else None
    if not env_name:
        world = extra.get("world") if isinstance(extra, dict) else None
        what = f"a policy of the toy 2-D world {world!r}" if world else "not tied to any OGBench environment"
        raise CheckpointError(
            f"{name} is a SORL Lab checkpoint, but {what}. This page runs OGBench policies: a checkpoint written by "
            "`sorl-lab train --env ...`. Toy policies belong on the Home page.")
    env_name = str(env_name)
    if "-singletask" not in env_name:
        raise CheckpointError(f"{name} names {env_name!r}, a goal-conditioned environment; this page runs "
                              "single-task policies (e.g. cube-single-play-singletask-task2-v0).")
    try:
        obs_dim, action_dim, steps = env_spaces(env_name)
    except ValueError as exc:
        raise CheckpointError(f"{name} names environment {env_name!r}, which cannot be made here: {exc}") from None
    cfg = agent.config
    if (cfg.obs_dim, cfg.action_dim) != (obs_dim, action_dim):
        raise CheckpointError(
            f"{name} does not fit {env_name}: the policy takes observations of size {cfg.obs_dim} and gives actions "
            f"of size {cfg.action_dim}, the environment has observations of size {obs_dim} and actions of size "
            f"{action_dim}.")
    agent.sample(np.zeros((2, obs_dim), dtype=np.float32), m_inf=1, n=2, generator=0,  # torch's one-off start-up
                 verifier=ranking_verifier(cfg))
    return Loaded(agent, dict(extra), env_name, digest or digest_bytes(data), path, name, obs_dim, action_dim, steps)
