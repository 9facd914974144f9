"""SORL_LAB_REQUIRE_ALL=1 (make test, CI) turns a skip for a missing dependency into a failed run (tests/conftest.py),
and leaves the legitimate skips (no GPU) alone. Checked on throwaway test files run by pytest in a subprocess, with
this suite's own conftest.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

CONFTEST = Path(__file__).with_name("conftest.py")
MISSING = "sorl_lab_no_such_module"

FILES = {
    # a whole file skipped while it is collected, as tests/test_ogbench_data.py is without ogbench
    "test_module_level.py": f"""
import pytest
pytest.importorskip("{MISSING}")

def test_never_runs():
    pass
""",
    # skips inside tests: an importorskip in a test (tests/test_grid.py and ray), the browser tests' chromium
    "test_in_tests.py": f"""
import pytest

def test_imports_inside():
    pytest.importorskip("{MISSING}")

@pytest.mark.skipif(True, reason="needs chromium at /nowhere/chromium (apt-get install chromium)")
def test_browser():
    pass

def test_passes():
    pass
""",
    # the skips that stay skips: the reasons of tests/test_cuda.py and tests/test_cli.py
    "test_legitimate.py": """
import pytest

@pytest.mark.skipif(True, reason="no CUDA device on this machine")
def test_cuda():
    pass

@pytest.mark.skipif(True, reason="with a GPU the script runs the whole check")
def test_without_gpu():
    pass

def test_passes():
    pass
""",
}


def run_pytest(folder: Path, require_all: str | None, *files: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("SORL_LAB_REQUIRE_ALL", "PYTEST_ADDOPTS")}
    if require_all is not None:
        env["SORL_LAB_REQUIRE_ALL"] = require_all
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *files],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=300)


def test_a_skip_for_a_missing_dependency_fails_the_run_only_when_required(tmp_path):
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    for name, text in FILES.items():
        (tmp_path / name).write_text(text)

    required = run_pytest(tmp_path, "1")
    out = required.stdout + required.stderr
    assert required.returncode == 1, out
    assert f"missing dependency '{MISSING}': 2 skipped" in out  # the whole file and the test that imports it
    assert "missing dependency 'chromium': 1 skipped" in out
    assert "test_module_level.py" in out and "test_in_tests.py::test_imports_inside" in out
    assert "Run scripts/bootstrap.sh" in out
    listed = out.split("SORL_LAB_REQUIRE_ALL=1:")[1].split("short test summary info")[0]
    assert "test_legitimate.py" not in listed  # the legitimate skips are not held against the run

    # make test runs the files in pytest-xdist workers: their skips reach the same verdict
    parallel = run_pytest(tmp_path, "1", "-n", "2", "--dist", "loadfile")
    assert parallel.returncode == 1, parallel.stdout + parallel.stderr
    assert f"missing dependency '{MISSING}': 2 skipped" in parallel.stdout
    assert "missing dependency 'chromium': 1 skipped" in parallel.stdout

    accepted = run_pytest(tmp_path, None)  # a developer's partial install: the skips are skips
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert "missing dependency" not in accepted.stdout

    legitimate = run_pytest(tmp_path, "1", "test_legitimate.py")
    assert legitimate.returncode == 0 and "2 skipped" in legitimate.stdout, legitimate.stdout + legitimate.stderr
    assert "missing dependency" not in legitimate.stdout
