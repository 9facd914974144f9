"""Our faithful update against two updates of the SORL authors' own JAX code, replayed with their random draws.

The fixture (tests/fixtures/authors-sorl-update, README there) was recorded from the official implementation;
scripts/check_update_parity.py feeds its draws through `SORLAgent.update` and compares every weight, both
targets, Adam's moments and the losses after the critic step and after each of the two updates.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "authors-sorl-update"
SCRIPT = ROOT / "scripts" / "check_update_parity.py"


def check(fixture: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), str(fixture)], capture_output=True, text=True, timeout=300)


def test_our_update_is_the_authors_update_within_float_rounding():
    run = check(FIXTURE)
    print(run.stdout)
    assert run.returncode == 0, run.stdout + run.stderr
    # every group of both updates was compared, and none is off
    assert run.stdout.count(" ok ") == 2 * (4 + 5 + 6) and " OFF " not in run.stdout
    assert "matches the authors'" in run.stdout


def perturbed(tmp_path: Path, key: str, change) -> Path:
    copy = tmp_path / "fixture"
    shutil.copytree(FIXTURE, copy)
    with np.load(FIXTURE / "draws.npz") as f:
        draws = {k: f[k] for k in f.files}
    draws[key] = change(draws[key])
    np.savez(copy / "draws.npz", **draws)
    return copy


@pytest.mark.parametrize("key, change", [
    ("u1_00_critic_loss_randint", lambda i: np.int32(i + 1)),  # another step count k for the critic
    ("u2_07_sample_k_step_actions_for_q_normal", lambda x: (x * 1.02).astype(np.float32)),  # Q-loss noise, 2% off
])
def test_the_check_fails_when_the_update_sees_other_draws(tmp_path, key, change):
    run = check(perturbed(tmp_path, key, change))
    assert run.returncode == 1, run.stdout + run.stderr
    assert " OFF " in run.stdout and "DIFFERS" in run.stdout


def test_a_folder_that_is_not_the_fixture_is_refused_plainly(tmp_path):
    run = check(tmp_path)
    assert run.returncode == 2 and "is not the authors' update fixture" in run.stderr
