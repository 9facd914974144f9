"""Checkpoints: a plain dict of tensors and config, written atomically, read without unpickling."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from .agent import SORLAgent
from .baselines import make_agent
from .config import SORLConfig
from .io import atomic_path

FORMAT = "sorl-lab-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A file that is not a usable SORL Lab checkpoint; the message says why and what to do."""


SNAPSHOTS = "snapshots"  # a run's folder of inference-only snapshots along training (`sorl-lab train --snapshots`)


def snapshot_path(run_dir: str | Path, iterations: int) -> Path:
    """Where a run keeps its snapshot after `iterations` iterations: <run>/snapshots/iteration-0010000.pt."""
    return Path(run_dir) / SNAPSHOTS / f"iteration-{iterations:07d}.pt"


def checkpoint_label(path: str | Path) -> str:
    """Short name of a checkpoint for tables and file names: runs/x/checkpoint.pt and assets/ogbench/x/policy.pt
    -> x (every bundled file is called policy.pt); a snapshot runs/x/snapshots/iteration-0010000.pt -> x@10000;
    any other file -> its stem."""
    path = Path(str(path))
    if path.parent.name == SNAPSHOTS and path.stem.startswith("iteration-") and path.stem[10:].isdigit():
        return f"{path.parent.parent.name}@{int(path.stem[10:])}"
    return path.parent.name if path.stem in ("checkpoint", "policy") and path.parent.name else path.stem


def checkpoint_digest(path: str | Path) -> str:
    """A short content hash of a checkpoint file: the key of caches and study identities (a path can be reused)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def save_checkpoint(path: str | Path, agent: SORLAgent, extra: dict | None = None, inference_only: bool = False,
                    dtype: torch.dtype | None = None) -> Path:
    """Write to a temporary file in the same folder, then rename: a crash never leaves half a file.

    `inference_only` keeps actor and critic only (what sampling needs): for bundling and snapshots (in `dtype`,
    e.g. bf16); it cannot resume training.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "version": VERSION, "config": agent.config.to_dict(),
               "agent": agent.state_dict(inference_only, dtype), "extra": extra or {}}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def read_checkpoint(source) -> dict:
    """Load and validate a checkpoint payload from a path or a binary file object (e.g. an upload)."""
    name = str(source) if isinstance(source, (str, Path)) else getattr(source, "name", "upload")
    if isinstance(source, (str, Path)) and not Path(source).is_file():
        raise CheckpointError(f"no checkpoint at {name}")
    try:
        payload = torch.load(source, map_location="cpu", weights_only=True)
    except Exception:  # truncated zip, random bytes, pickled objects that weights_only refuses...
        raise CheckpointError(
            f"{name} is not a readable SORL Lab checkpoint (a corrupt, truncated or foreign file). "
            "Use a .pt file written by `sorl-lab train`."
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{name} is a PyTorch file but not a SORL Lab checkpoint (no '{FORMAT}' marker).")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{name} has checkpoint version {payload.get('version')}; this SORL Lab reads version {VERSION}.")
    for key in ("config", "agent", "extra"):
        if key not in payload:
            raise CheckpointError(f"{name} is missing its '{key}' section.")
    return payload


def load_agent(source, device: str = "auto", precision: str | None = None) -> tuple[SORLAgent, dict]:
    """Rebuild an agent (weights, optimiser and RNG state) from a checkpoint; returns (agent, extra). `precision`
    replaces the saved training precision (the float32 weights and Adam state carry over unchanged)."""
    payload = read_checkpoint(source)
    name = str(source) if isinstance(source, (str, Path)) else getattr(source, "name", "upload")
    try:
        config = SORLConfig.from_dict({**payload["config"], "device": device, **({"precision": precision} if precision
                                                                                  else {})})
        agent = make_agent(config)
        agent.load_state_dict(payload["agent"])
    except (KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise CheckpointError(f"{name} does not match the agent it describes: {exc}") from None
    return agent, payload["extra"]


def load_for_resume(path: Path, device: str, precision: str | None = None) -> tuple[SORLAgent, dict]:
    """`load_agent` for `--resume`: the full training state must be there."""
    if not Path(path).exists():
        raise CheckpointError(f"--resume: no checkpoint at {path}; start the run without --resume")
    if read_checkpoint(path)["agent"].get("inference_only"):
        raise CheckpointError(f"{path} cannot resume training (an inference-only export?); start a new run")
    return load_agent(path, device=device, precision=precision)
