"""The heavy-job board a class shares (app/jobs.py): a few at once, identical requests once, stale work cancelled."""

from __future__ import annotations

import threading
import time

import pytest

from app.jobs import SLOTS_ENV, JobBoard, default_slots


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


class Gate:
    """Work that reports progress until released, counting how many of its kind run at once."""

    def __init__(self):
        self.release, self.lock = threading.Event(), threading.Lock()
        self.running = self.most = self.calls = 0

    def work(self, value):
        def run(report):
            with self.lock:
                self.calls += 1
                self.running += 1
                self.most = max(self.most, self.running)
            try:
                while not self.release.wait(0.01):
                    report(0.5, "working")
                return value
            finally:
                with self.lock:
                    self.running -= 1
        return run


def test_at_most_slots_jobs_run_and_the_rest_wait_in_order():
    gate, board = Gate(), JobBoard(slots=2, sweep_every=0)
    jobs = [board.submit((i,), f"job {i}", gate.work(i), waiter=f"s{i}") for i in range(5)]
    wait_until(lambda: gate.running == 2)
    assert [board.place(j) for j in jobs] == [0, 0, 1, 2, 3]
    assert board.status()["queued"] == 3
    gate.release.set()
    for job in jobs:
        assert job.finished.wait(10)
    assert [j.result for j in jobs] == [0, 1, 2, 3, 4] and gate.most == 2 and gate.calls == 5


def test_identical_requests_from_several_sessions_are_computed_once():
    gate, board = Gate(), JobBoard(slots=1, sweep_every=0)
    first = board.submit(("same",), "a", gate.work([1, 2]), waiter="alice")
    second = board.submit(("same",), "a", gate.work([1, 2]), waiter="bob")  # in flight: joined
    assert second is first and first.waiters == {"alice", "bob"}
    gate.release.set()
    assert first.finished.wait(10)
    third = board.submit(("same",), "a", gate.work([1, 2]), waiter="carol")  # finished: from the cache
    assert third is first and third.result == [1, 2] and gate.calls == 1


def test_the_board_hands_memory_back_once_when_its_last_job_ends():
    idle, gate = [], Gate()
    board = JobBoard(slots=2, sweep_every=0, on_idle=lambda: idle.append(board.status()))
    jobs = [board.submit((i,), f"job {i}", gate.work(i), waiter=f"s{i}") for i in range(3)]
    wait_until(lambda: gate.running == 2)
    assert idle == []
    gate.release.set()
    for job in jobs:
        assert job.finished.wait(10)
    wait_until(lambda: len(idle) == 1)
    time.sleep(0.1)
    assert len(idle) == 1 and idle[0]["running"] == 0 and idle[0]["queued"] == 0


def test_the_result_cache_is_bounded_and_drops_the_least_recently_used():
    board = JobBoard(slots=1, cache_size=2, sweep_every=0)
    calls = []

    def work(key):
        return lambda report: calls.append(key) or key

    for key in ("a", "b", "a", "c", "a", "b"):
        assert board.submit((key,), key, work(key), "s").finished.wait(10)
    assert calls == ["a", "b", "c", "b"]  # "b" was dropped when "c" came ("a" had been asked for since)
    assert board.status()["cached"] == 2


def test_a_failed_job_says_why_and_is_not_cached():
    board = JobBoard(slots=1, sweep_every=0)

    def broken(report):
        raise ValueError("the environment could not start")

    job = board.submit(("x",), "x", broken, "s")
    assert job.finished.wait(10)
    assert job.state == "failed" and job.error == "the environment could not start"
    again = board.submit(("x",), "x", lambda report: 7, "s")
    assert again is not job and again.finished.wait(10) and again.result == 7


def test_work_for_sessions_that_have_closed_is_cancelled_queued_or_running():
    alive = {"alice", "bob"}
    gate = Gate()
    board = JobBoard(slots=1, is_alive=lambda s: s in alive, sweep_every=0.05)
    running = board.submit(("run",), "run", gate.work(1), "alice")
    queued = board.submit(("wait",), "wait", gate.work(2), "bob")
    wait_until(lambda: gate.running == 1)
    alive.clear()  # both tabs closed (their sessions expired)
    assert running.finished.wait(10) and queued.finished.wait(10)
    assert running.state == "cancelled" and queued.state == "cancelled"
    assert gate.calls == 1  # the queued one never started
    assert board.status() == {"slots": 1, "running": 0, "queued": 0, "cached": 0, "cancelled": 2}


def test_a_job_is_cancelled_only_when_its_last_waiter_leaves():
    gate, board = Gate(), JobBoard(slots=1, sweep_every=0)
    job = board.submit(("k",), "k", gate.work(1), "alice")
    board.submit(("k",), "k", gate.work(1), "bob")
    wait_until(lambda: gate.running == 1)
    board.leave(job, "alice")
    time.sleep(0.05)
    assert not job.cancel.is_set()
    board.leave(job, "bob")
    assert job.finished.wait(10) and job.state == "cancelled"


def test_the_number_of_heavy_jobs_at_once_is_a_setting_with_a_plain_error(monkeypatch):
    monkeypatch.setenv(SLOTS_ENV, "3")
    assert default_slots() == 3
    monkeypatch.setenv(SLOTS_ENV, "two")
    with pytest.raises(ValueError, match="SORL_LAB_HEAVY_JOBS='two' is not a whole number"):
        default_slots()
    monkeypatch.setenv(SLOTS_ENV, "0")
    with pytest.raises(ValueError, match="must be at least 1"):
        default_slots()
