"""Shared test set-up.

The app's logic is the package `app` at the repository root, which pytest puts on the import path (pyproject.toml,
`pythonpath`); helper modules of the tests (plotly_json, browser_support, ...) are found in tests/ itself.

Skips that hide a missing dependency: test files skip (`pytest.importorskip`, or a `skipif` on chromium) when
something the set-up installs is absent, so a partial install still runs the rest. With SORL_LAB_REQUIRE_ALL=1
(`make test` and CI set it) such a skip fails the run instead: scripts/bootstrap.sh installs every one of them
(the pip extras, and chromium through apt), so a skip there means a broken set-up, not an optional feature.
Skips for other reasons stay skips: the CUDA tests without a GPU, the CLI test that a GPU replaces.
"""

from __future__ import annotations

import os
import re

import pytest
import torch

REQUIRE_ALL = "SORL_LAB_REQUIRE_ALL"


def _share_the_cores() -> None:
    """`make test` runs pytest-xdist workers, one per core: each takes its share of the cores for torch, here and in
    the processes its tests start (servers, CLI runs), instead of every worker spinning a thread on every core."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers < 2:
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    share = max(1, cores // workers)
    torch.set_num_threads(share)
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, str(share))


_share_the_cores()
# Skip reasons that name a missing dependency, and the dependency each names.
MISSING_DEPENDENCY = (
    re.compile(r"could not import '(?P<name>[^']+)'"),  # pytest.importorskip("module")
    re.compile(r"module '(?P<name>[^']+)' has __version__ .*, required is"),  # importorskip(..., minversion=...)
    re.compile(r"needs (?P<name>chromium) at"),  # the browser tests' skipif (tests/browser_support.py: CHROMIUM)
)


def missing_dependency(reason: str) -> str | None:
    """The dependency a skip reason says is missing, or None when the skip is for something else."""
    for pattern in MISSING_DEPENDENCY:
        found = pattern.search(reason)
        if found:
            return found.group("name")
    return None


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # (path, line, "Skipped: reason")
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


_missing: dict[str, list[str]] = {}  # dependency -> the tests (or test files) it skipped


def _note_skip(report) -> None:
    if report.skipped and os.environ.get(REQUIRE_ALL) == "1":
        name = missing_dependency(_skip_reason(report))
        if name is not None:
            _missing.setdefault(name, []).append(report.nodeid or str(report.fspath))


def pytest_collectreport(report):
    """A test file that importorskips at the top is skipped while it is collected."""
    _note_skip(report)


def pytest_runtest_logreport(report):
    _note_skip(report)


def pytest_terminal_summary(terminalreporter):
    if not _missing:
        return
    tr = terminalreporter
    tr.write_sep("=", f"{REQUIRE_ALL}=1: tests skipped for want of what the set-up installs", red=True, bold=True)
    for name, tests in sorted(_missing.items()):
        shown = ", ".join(tests[:3]) + (f" and {len(tests) - 3} more" if len(tests) > 3 else "")
        tr.write_line(f"missing dependency {name!r}: {len(tests)} skipped ({shown})", red=True)
    tr.write_line("Run scripts/bootstrap.sh (make setup) to install it, or set SORL_LAB_REQUIRE_ALL=0 to accept the "
                  "skips.", red=True)


def pytest_sessionfinish(session, exitstatus):
    if _missing and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """AppTest runs page scripts in this process, and the toy page sets torch to one thread for the server:
    give every test the thread count it started with."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
