"""Heavy jobs shared by every session of one lab server: a queue, a few at once, identical requests computed once.

A rollouts Run takes about a minute of both cores and a Verifier Play about half a minute; thirty students pressing
them together cannot all run at once on a small machine. Pages hand such work to the board instead of running it
in their own script thread:

- at most `slots` jobs run at once (SORL_LAB_HEAVY_JOBS, default: the machine's usable cores); the rest wait in
  order and every waiting page shows its place in the queue;
- a job is keyed by its content (checkpoint digest, settings, seeds), not by session: a second request for the same
  key joins the job in flight or gets the finished result from a bounded cache (SORL_LAB_JOB_CACHE entries,
  default 32, least recently used dropped first);
- a job nobody waits for any more (every session that asked has closed, or left it) is cancelled: dropped from the
  queue, or stopped at its next progress report if it runs.

Results are shared between sessions: treat them as read-only.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

from sorl_core.cpu import release_freed_memory

SLOTS_ENV, CACHE_ENV = "SORL_LAB_HEAVY_JOBS", "SORL_LAB_JOB_CACHE"
QUEUE_MARK = "In the queue"  # the first words of a waiting page's status (benchmarks/classroom.py reads them)


class Cancelled(Exception):
    """Raised inside a job's work at its next progress report once nobody waits for it."""


class JobFailed(Exception):
    """The job's work raised; the message is the work's own."""


@dataclass(eq=False)
class Job:
    key: tuple
    label: str
    work: Callable[[Callable[[float, str], None]], Any]
    waiters: set[str] = field(default_factory=set)
    state: str = "queued"  # queued -> running -> done | failed | cancelled
    fraction: float = 0.0
    text: str = ""
    result: Any = None
    error: str = ""
    submitted: float = field(default_factory=time.monotonic)
    started: float | None = None
    number: int = 0
    cancel: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)

    def report(self, fraction: float, text: str) -> None:
        """The work's progress callback: records progress, and stops the work once the job is cancelled."""
        if self.cancel.is_set():
            raise Cancelled(self.label)
        self.fraction, self.text = min(max(float(fraction), 0.0), 1.0), text


def default_slots() -> int:
    from sorl_core.processes import usable_cores

    return positive_int(SLOTS_ENV, usable_cores())


def positive_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a whole number; set it to how many to allow, e.g. {default}.") from None
    if value < 1:
        raise ValueError(f"{name}={raw} must be at least 1.")
    return value


class JobBoard:
    """The server's heavy jobs. `is_alive(waiter)` says whether a waiting session still exists (Streamlit's runtime
    in the app); waiters that are gone are forgotten when jobs are submitted and every `sweep_every` seconds."""

    def __init__(self, slots: int, cache_size: int = 32, is_alive: Callable[[str], bool] | None = None,
                 sweep_every: float = 5.0, on_idle: Callable[[], Any] | None = None):
        self.slots, self.cache_size = slots, cache_size
        self.is_alive = is_alive or (lambda waiter: True)
        self.on_idle = on_idle  # called once each time the last running job ends with nothing queued
        self.lock = threading.Lock()
        self.queue: list[Job] = []
        self.running: list[Job] = []
        self.done: OrderedDict[tuple, Job] = OrderedDict()
        self.counter = itertools.count(1)
        self.cancelled = 0
        if sweep_every:
            threading.Thread(target=self._sweeper, args=(sweep_every,), daemon=True, name="job-board-sweeper").start()

    # ---- what pages call
    def submit(self, key: tuple, label: str, work: Callable, waiter: str) -> Job:
        """The job for `key`: finished (from the cache), in flight (joined), or new (queued)."""
        with self.lock:
            self._sweep_locked()
            if key in self.done:
                self.done.move_to_end(key)
                return self.done[key]
            job = next((j for j in (*self.running, *self.queue) if j.key == key), None)
            if job is None:
                job = Job(key, label, work, number=next(self.counter))
                self.queue.append(job)
            job.waiters.add(waiter)
            self._dispatch_locked()
            return job

    def leave(self, job: Job, waiter: str) -> None:
        """`waiter` no longer wants `job`; it is cancelled when nobody else does."""
        with self.lock:
            job.waiters.discard(waiter)
            if not job.waiters:
                self._cancel_locked(job)

    def place(self, job: Job) -> int:
        """1 for the next job to start; 0 once it runs or has ended."""
        with self.lock:
            return self.queue.index(job) + 1 if job in self.queue else 0

    def status(self) -> dict:
        with self.lock:
            return {"slots": self.slots, "running": len(self.running), "queued": len(self.queue),
                    "cached": len(self.done), "cancelled": self.cancelled}

    # ---- the machinery
    def _dispatch_locked(self) -> None:
        while self.queue and len(self.running) < self.slots:
            job = self.queue.pop(0)
            job.state, job.started = "running", time.monotonic()
            self.running.append(job)
            threading.Thread(target=self._run, args=(job,), daemon=True, name=f"job-{job.number}").start()

    def _run(self, job: Job) -> None:
        try:
            job.result = job.work(job.report)
            job.state = "done"
        except Cancelled:
            job.state = "cancelled"
        except Exception as exc:  # the page shows the work's own message
            job.state, job.error = "failed", str(exc) or type(exc).__name__
        finally:
            with self.lock:
                self.running.remove(job)
                if job.state == "done":  # failed and cancelled jobs are not kept: asking again retries
                    self.done[job.key] = job
                    while len(self.done) > self.cache_size:
                        self.done.popitem(last=False)
                self._dispatch_locked()
                idle = not self.running and not self.queue
            job.finished.set()
            if idle and self.on_idle is not None:
                self.on_idle()

    def _cancel_locked(self, job: Job) -> None:
        if job in self.queue:
            self.queue.remove(job)
            job.state = "cancelled"
            job.finished.set()
            self.cancelled += 1
        elif job in self.running and not job.cancel.is_set():
            job.cancel.set()  # the work stops at its next progress report
            self.cancelled += 1

    def _sweep_locked(self) -> None:
        for job in (*self.queue, *self.running):
            job.waiters = {w for w in job.waiters if self.is_alive(w)}
            if not job.waiters:
                self._cancel_locked(job)

    def _sweeper(self, every: float) -> None:
        while True:
            time.sleep(every)
            with self.lock:
                self._sweep_locked()


# --------------------------------------------------------------------------- the server's one board, for the pages
_board: JobBoard | None = None
_board_lock = threading.Lock()


def board(is_alive: Callable[[str], bool] | None = None) -> JobBoard:
    """The one board of this server process, shared by every page and session; the first caller says how to tell
    whether a session still exists (the pages pass Streamlit's runtime)."""
    global _board
    with _board_lock:
        if _board is None:
            # Idle again: the work's freed heap goes back to the OS, so a class that ran rollouts does not leave the
            # server holding it (docs/CLASSROOM.md).
            _board = JobBoard(default_slots(), positive_int(CACHE_ENV, 32), is_alive=is_alive,
                              on_idle=release_freed_memory)
        return _board


def status_text(b: JobBoard, job: Job, what: str) -> tuple[float, str]:
    """(fraction done, sentence) of a job as its page shows it: its place in the queue, then its progress."""
    place = b.place(job)
    if place:
        status = b.status()
        places = "the heavy-job place" if status["slots"] == 1 else f"one of the {status['slots']} heavy-job places"
        return 0.0, (f"{QUEUE_MARK}: place {place}. {what} will start when {places} on this server is free "
                     f"({status['running']} running now).")
    return job.fraction, job.text or f"{what}: starting…"


def follow(b: JobBoard, job: Job, what: str, progress: Callable, every: float = 0.4) -> Any:
    """Wait for `job` with its place in the queue, then its progress, in a bar made by `progress(0.0)` (the page
    passes st.progress) and updated every `every` seconds; its result, or JobFailed with a sentence.

    A rerun of the page (the student moved a widget) interrupts the wait, not the job: pages keep the job in their
    session state and follow it again on their next run."""
    if not job.finished.is_set():
        bar = progress(0.0)
        while not job.finished.is_set():
            fraction, text = status_text(b, job, what)
            bar.progress(fraction, text=text)
            job.finished.wait(every)
        bar.empty()
    if job.state == "done":
        return job.result
    if job.state == "cancelled":
        raise JobFailed(f"{what} was cancelled because nobody was waiting for it any more; press the button again.")
    raise JobFailed(job.error)
