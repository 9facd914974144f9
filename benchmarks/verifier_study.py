"""Speed of the verifier study (sorl_core/studies/verifier_study.py): environment steps/s and policy calls/s.

Runs a fresh study of the bundled cube-single policy into a temporary folder and prints what it did per second:
environment steps of the counterfactual rollouts, batched continuation-policy calls, and the time of the whole call
(set-up: the seeded rollouts the states come from, the worker processes). With --target-states it also extrapolates
the rollouts' time linearly in states to a study of that size (labelled as an extrapolation).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/verifier_study.py --states 10
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/verifier_study.py --states 50 --json
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import tyro

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sorl_core.studies.verifier_study import VerifierStudyConfig, run_study  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class VerifierBenchConfig:
    """Time one verifier study."""

    checkpoint: str = str(ROOT / "assets/ogbench/cube-single-task2/policy.pt")
    """Policy to study (default: the bundled cube-single task2 policy)."""
    states: int = 10
    """States of the timed study."""
    n: int = 16
    """Candidates per state."""
    repeats: int = 2
    """Rollouts per candidate."""
    horizon: int = 200
    """Most steps per rollout."""
    batch_states: int = 10
    """States stepped together."""
    workers: int = 2
    """Environment worker processes."""
    target_states: int = 50
    """Extrapolate the rollouts' time to a study of this many states (0: no extrapolation)."""
    json: bool = False
    """Print one JSON object instead of lines."""


def main(cfg: VerifierBenchConfig) -> dict:
    with tempfile.TemporaryDirectory() as out:
        study = VerifierStudyConfig(cfg.checkpoint, n=cfg.n, states=cfg.states, horizon=cfg.horizon,
                                    repeats=cfg.repeats, batch_states=cfg.batch_states, workers=cfg.workers,
                                    out=out, progress=not cfg.json)
        r = run_study(study)
    setup = r.seconds - r.rollout_seconds
    report = {
        "states": cfg.states, "n": cfg.n, "repeats": cfg.repeats, "horizon": cfg.horizon,
        "batch_states": cfg.batch_states, "workers": cfg.workers, "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "seconds": round(r.seconds, 2), "rollout_seconds": round(r.rollout_seconds, 2),
        "setup_seconds": round(setup, 2), "policy_seconds": round(r.policy_seconds, 2),
        "env_steps": r.env_steps, "policy_calls": r.policy_calls,
        "env_steps_per_s": round(r.env_steps / max(r.rollout_seconds, 1e-9), 1),
        "policy_calls_per_s": round(r.policy_calls / max(r.rollout_seconds, 1e-9), 2),
        "policy_rows_per_call": round(r.env_steps / max(r.policy_calls, 1), 1),
    }
    if cfg.target_states:
        report["extrapolated_seconds"] = round(setup + r.rollout_seconds * cfg.target_states / cfg.states, 1)
    if cfg.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            label = (f"extrapolated to {cfg.target_states} states (rollout time x {cfg.target_states}/{cfg.states}, "
                     "plus this run's set-up)") if key == "extrapolated_seconds" else key
            print(f"{label:>34}: {value}")
    return report


if __name__ == "__main__":
    main(tyro.cli(VerifierBenchConfig))
