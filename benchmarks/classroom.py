"""A class of students against one lab server: latency, errors, queue waits, memory and CPU.

Starts the lab as the README does (`make app`, here on 127.0.0.1 and a free port), then lets K simulated students
use it at once. Each student is one websocket session speaking Streamlit's own protocol (app/session_client.py),
so dozens fit on two cores; a few real chromium tabs (Playwright) move sliders beside them as a check that a
browser sees the same. Behaviour is scripted with think times drawn from a seeded generator:

  toy       open the toy page, then every 2-6 s move M_inf or N, now and then the context c, switch world, or
            visit the Scaling and Verifier pages and come back
  rollouts  open the OGBench rollouts page and press Run within the same minute (the bundled policy, the page's
            default settings, seeds 0 .. --distinct - 1: a few different requests, the rest identical)
  mixed     toy students, of whom a share (--heavy-share) also press Run on the rollouts page or Play on the
            Verifier page once

Every interaction is timed from the message leaving the student to the page's script run finishing. Reported: p50,
p95 and max per kind of interaction, errors (exception boxes, disconnects, timeouts), queue waits of heavy jobs
(from the queue place shown to the job starting), and the server's memory and CPU every second, as a table, a JSON
report and an interactive plot (classroom.html).

    .venv/bin/python benchmarks/classroom.py --students 30 --minutes 3
    .venv/bin/python benchmarks/classroom.py --scenario rollouts --students 10
    make bench-class                              # the two runs the README's class limits come from
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import psutil
import tyro

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
from app.session_client import SessionClient  # noqa: E402
from app.warm import wait_for  # noqa: E402
from browser_support import free_port  # noqa: E402

WORLDS = ("ring", "moons", "checkerboard", "spiral")
M_OPTIONS = ("1", "2", "4", "8")
N_MAX = 16
QUEUE_MARK = "In the queue"  # how the lab's heavy-job board words a waiting place (app/jobs.py)


@dataclass
class ClassroomConfig:
    """Simulate a class of students using one lab server."""

    students: int = 30
    """Simulated students (websocket sessions), all on 127.0.0.1."""
    minutes: float = 3.0
    """How long the students keep working (toy and mixed scenarios)."""
    scenario: Literal["toy", "rollouts", "mixed"] = "toy"
    """What the students do (see the module docstring)."""
    distinct: int = 3
    """rollouts: students ask for this many different requests (seeds 0, 1, ...); the rest are identical."""
    heavy_share: float = 0.2
    """mixed: the share of students who also press Run (rollouts) or Play (Verifier) once."""
    think_min: float = 2.0
    """Shortest pause between two moves of a student, in seconds."""
    think_max: float = 6.0
    """Longest pause between two moves of a student, in seconds."""
    arrive_over: float = 20.0
    """Students open the lab at random moments within this many seconds."""
    browsers: int = 2
    """Real chromium tabs beside the simulated students, moving the M_inf slider (0: none)."""
    heavy_jobs: int | None = None
    """Heavy jobs the server runs at once (SORL_LAB_HEAVY_JOBS); default: the server's own (its cores)."""
    warm_wait: float = 600.0
    """Seconds to wait for make app's warm-up to finish before the students start (0: do not wait)."""
    url: str | None = None
    """Use a lab already running at this address (127.0.0.1 only) instead of starting one."""
    watch_after: float = 60.0
    """Seconds to keep watching the server's memory after the students have left."""
    timeout: float = 600.0
    """An interaction that takes longer than this counts as a timeout."""
    seed: int = 0
    """Seeds the students' choices and think times."""
    out: Path = Path("test-artifacts/classroom")
    """Folder for report.json and classroom.html."""
    json: bool = False
    """Print the JSON report instead of the table."""


# --------------------------------------------------------------------------- the server
class Server:
    """`make app` on 127.0.0.1 and a free port (or an address given), with its process tree watched each second."""

    def __init__(self, cfg: ClassroomConfig):
        self.cfg, self.proc, self.samples, self.warm_line = cfg, None, [], ""
        self._stop = threading.Event()

    def __enter__(self) -> Server:
        if self.cfg.url:
            self.url = self.cfg.url
            self.root = next(p for p in psutil.process_iter(["cmdline"])
                             if "streamlit" in " ".join(p.info["cmdline"] or []) and "run" in (p.info["cmdline"] or []))
        else:
            port = free_port()
            env = dict(os.environ)
            if self.cfg.heavy_jobs:
                env["SORL_LAB_HEAVY_JOBS"] = str(self.cfg.heavy_jobs)
            self.proc = subprocess.Popen(["make", "--no-print-directory", "app", "APP_HOST=127.0.0.1",
                                          f"APP_PORT={port}"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, text=True, start_new_session=True)
            self.url = f"http://127.0.0.1:{port}"
            self.root = psutil.Process(self.proc.pid)
            self.warmed = threading.Event()
            threading.Thread(target=self._read_log, daemon=True).start()
        try:
            if not wait_for(self.url, 180):
                raise RuntimeError(f"the lab did not answer at {self.url} within 180 s")
            if self.proc is not None and self.cfg.warm_wait and not self.warmed.wait(self.cfg.warm_wait):
                raise RuntimeError(f"make app's warm-up did not finish within {self.cfg.warm_wait:.0f} s")
        except BaseException:
            self.__exit__()
            raise
        self.started = time.monotonic()
        threading.Thread(target=self._watch, daemon=True).start()
        return self

    def _read_log(self) -> None:
        self.log = []
        for line in self.proc.stdout:
            self.log.append(line)
            if line.startswith("warm-up: the lab") and ("is warm" in line or "did not answer" in line):
                self.warm_line = line.strip()
                self.warmed.set()

    def _tree(self) -> list[psutil.Process]:
        try:
            return [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def _watch(self) -> None:
        known: dict[int, psutil.Process] = {}
        while not self._stop.wait(1.0):
            rss, cpu = 0, 0.0
            for p in self._tree():
                p = known.setdefault(p.pid, p)  # the same object keeps cpu_percent's previous reading
                try:
                    rss += p.memory_info().rss
                    cpu += p.cpu_percent(None)
                except psutil.NoSuchProcess:
                    pass
            self.samples.append({"t": time.monotonic() - self.started, "rss_mb": rss / 2**20, "cpu_percent": cpu})

    def memory_now(self) -> float:
        return self.samples[-1]["rss_mb"] if self.samples else float("nan")

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self.proc is not None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)


# --------------------------------------------------------------------------- students
class Recorder:
    def __init__(self, t0: float):
        self.t0, self.rows = t0, []

    def add(self, student: str, action: str, result, started: float) -> None:
        queue_wait = 0.0
        waiting = [t for text, t in zip(result.texts, result.text_times) if text.startswith(QUEUE_MARK)]
        if waiting:
            after = [t for text, t in zip(result.texts, result.text_times) if t > waiting[-1] and not text.startswith(QUEUE_MARK)]
            queue_wait = (after[0] if after else result.seconds) - waiting[0]
        self.rows.append({"student": student, "action": action, "t": round(started - self.t0, 2),
                          "seconds": round(result.seconds, 3), "outcome": result.outcome,
                          "kb": round(result.bytes_received / 1024, 1), "queue_wait": round(queue_wait, 2),
                          "detail": "; ".join(result.exceptions)[:300]})


async def student(name: str, cfg: ClassroomConfig, url: str, rec: Recorder, rng: random.Random, until: float,
                  heavy: str | None) -> None:
    await asyncio.sleep(rng.uniform(0, cfg.arrive_over))
    client = SessionClient(url, timeout=cfg.timeout)

    async def do(action: str, coro) -> bool:
        started = time.monotonic()
        try:
            result = await coro
        except KeyError as exc:  # the widget is not on the page: the page did not render as expected
            from app.session_client import RunResult
            result = RunResult(time.monotonic() - started, "exception", exceptions=[str(exc)])
        rec.add(name, action, result, started)
        return result.outcome == "ok"

    try:
        if cfg.scenario == "rollouts":
            await do("open rollouts", client.open("OGBench_rollouts"))
            await do("set seed", client.set("Seed", int(name.rsplit("-", 1)[1]) % cfg.distinct))
            await asyncio.sleep(rng.uniform(0, 60))
            await do("rollouts Run", client.press("Run"))
            return
        if not await do("open toy page", client.open()):
            return
        while time.monotonic() < until:
            await asyncio.sleep(rng.uniform(cfg.think_min, cfg.think_max))
            if heavy and rng.random() < 0.1:
                page, button = ("OGBench_rollouts", "Run") if heavy == "run" else ("Verifier", "Play the episode")
                await do(f"open {page}", client.open(page))
                await do("rollouts Run" if heavy == "run" else "Verifier Play", client.press(button))
                heavy = None
                await do("open toy page", client.open())
                continue
            roll = rng.random()
            if roll < 0.45:
                await do("move M_inf", client.set("M_inf", rng.choice(M_OPTIONS)))
            elif roll < 0.80:
                await do("move N", client.set("N (best-of-N)", rng.randint(1, N_MAX)))
            elif roll < 0.85:  # a new state: not among the settings the warm-up computed
                await do("move c", client.set("State: context c", round(round(rng.uniform(-1, 1) / 0.05) * 0.05, 2)))
            elif roll < 0.93:
                await do("switch world", client.set("World", rng.choice(WORLDS)))
            else:
                page = rng.choice(["Scaling_study", "Verifier"])
                await do(f"open {page}", client.open(page))
                await asyncio.sleep(rng.uniform(cfg.think_min, cfg.think_max))
                await do("open toy page", client.open())
    finally:
        await client.close()


def browser_tabs(cfg: ClassroomConfig, url: str, rec: Recorder, until: float) -> threading.Thread:
    """Real chromium tabs moving M_inf with the keyboard, timed by the browser's own clock (script run finished)."""

    def work() -> None:
        from browser_support import chromium, slider, timed_key, wait_ready

        class Timed:
            def __init__(self, ms: dict):
                self.seconds, self.outcome = ms["run_ms"] / 1000, "ok"
                self.exceptions, self.texts, self.text_times, self.bytes_received = [], [], [], 0

        rng = random.Random(cfg.seed + 1)
        with chromium() as browser:
            pages = []
            for i in range(cfg.browsers):
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.goto(url, wait_until="domcontentloaded")
                wait_ready(page, timeout_ms=int(cfg.timeout * 1000))
                pages.append(page)
            while time.monotonic() < until:
                for i, page in enumerate(pages):
                    started = time.monotonic()
                    try:
                        handle = slider(page, "M_inf")
                        at_top = handle.get_attribute("aria-valuetext") == M_OPTIONS[-1]
                        key = "ArrowLeft" if at_top or rng.random() < 0.5 and handle.get_attribute(
                            "aria-valuetext") != M_OPTIONS[0] else "ArrowRight"  # always a move that changes M_inf
                        ms = timed_key(page, handle, key, timeout_ms=int(cfg.timeout * 1000))
                        rec.add(f"chromium-{i}", "browser: move M_inf", Timed(ms), started)
                    except Exception as exc:  # a timeout or a lost page is a result here, not a crash
                        rec.rows.append({"student": f"chromium-{i}", "action": "browser: move M_inf",
                                         "t": round(started - rec.t0, 2), "seconds": time.monotonic() - started,
                                         "outcome": "timeout", "kb": 0, "queue_wait": 0, "detail": str(exc)[:300]})
                time.sleep(rng.uniform(cfg.think_min, cfg.think_max))

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


# --------------------------------------------------------------------------- the run and its report
def run(cfg: ClassroomConfig) -> dict:
    rng = random.Random(cfg.seed)
    with Server(cfg) as server:
        time.sleep(2)
        memory_start = server.memory_now()
        t0 = time.monotonic()
        rec = Recorder(t0)
        until = t0 + cfg.arrive_over + cfg.minutes * 60
        heavy_count = round(cfg.heavy_share * cfg.students) if cfg.scenario == "mixed" else 0
        tabs = browser_tabs(cfg, server.url, rec, until) if cfg.browsers and cfg.scenario != "rollouts" else None

        async def everyone() -> None:
            await asyncio.gather(*(
                student(f"student-{i}", cfg, server.url, rec, random.Random(rng.random()), until,
                        ("run" if i % 2 == 0 else "play") if i < heavy_count else None)
                for i in range(cfg.students)))

        asyncio.run(everyone())
        if tabs is not None:
            tabs.join(timeout=cfg.timeout)
        left_at = time.monotonic() - server.started
        memory_left = server.memory_now()
        time.sleep(cfg.watch_after)
        memory_after = server.memory_now()
        samples = list(server.samples)
    rep = report(cfg, rec.rows, samples, memory_start, memory_left, memory_after, left_at)
    rep["warm_up"] = server.warm_line
    return rep


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else float("nan")


def report(cfg, rows, samples, memory_start, memory_left, memory_after, left_at) -> dict:
    kinds = {}
    for row in rows:
        kinds.setdefault(row["action"], []).append(row)
    summary = {}
    for action, group in sorted(kinds.items()):
        ok = [r["seconds"] for r in group if r["outcome"] == "ok"]
        waits = [r["queue_wait"] for r in group if r["queue_wait"] > 0]
        summary[action] = {
            "count": len(group), "p50_s": percentile(ok, 0.5), "p95_s": percentile(ok, 0.95), "max_s": max(ok, default=float("nan")),
            "errors": sum(r["outcome"] != "ok" for r in group), "mean_kb": statistics.fmean(r["kb"] for r in group),
            "queued": len(waits), "max_queue_wait_s": max(waits, default=0.0)}
    moves = [r["seconds"] for r in rows if r["outcome"] == "ok" and r["action"].startswith(("move ", "switch "))]
    peak = max((s["rss_mb"] for s in samples), default=float("nan"))
    busy = [s["cpu_percent"] for s in samples if s["t"] <= left_at]
    errors = [r for r in rows if r["outcome"] != "ok"]
    return {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
        "machine": {"cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0))},
        "interactions": len(rows), "errors": len(errors),
        "error_kinds": {o: sum(r["outcome"] == o for r in errors) for o in ("exception", "timeout", "disconnected")},
        "slider_moves": {"count": len(moves), "p50_s": percentile(moves, 0.5), "p95_s": percentile(moves, 0.95),
                         "max_s": max(moves, default=float("nan"))},
        "by_action": summary,
        "memory_mb": {"start": memory_start, "peak": peak, "when_students_left": memory_left,
                      f"{cfg.watch_after:.0f}_s_later": memory_after, "growth": peak - memory_start},
        "server_cpu_percent": {"mean": statistics.fmean(busy) if busy else float("nan"), "max": max(busy, default=0.0)},
        "first_errors": [r["detail"] or r["outcome"] for r in errors[:5]],
        "rows": rows, "samples": samples,
    }


def print_table(rep: dict) -> None:
    cfg = rep["config"]
    print(f"{cfg['students']} students, scenario {cfg['scenario']}, {cfg['minutes']} min, "
          f"{rep['machine']['usable_cores']} cores: {rep['interactions']} interactions, {rep['errors']} errors "
          f"{rep['error_kinds']}")
    if rep.get("warm_up"):
        print(rep["warm_up"])
    print(f"{'interaction':<24}{'count':>6}{'p50 s':>8}{'p95 s':>8}{'max s':>8}{'errors':>8}{'kB':>8}{'queued':>8}{'wait s':>8}")
    for action, s in rep["by_action"].items():
        print(f"{action:<24}{s['count']:>6}{s['p50_s']:>8.2f}{s['p95_s']:>8.2f}{s['max_s']:>8.2f}{s['errors']:>8}"
              f"{s['mean_kb']:>8.0f}{s['queued']:>8}{s['max_queue_wait_s']:>8.1f}")
    m = rep["slider_moves"]
    print(f"slider moves (M_inf, N, c, world): p50 {m['p50_s']:.2f} s, p95 {m['p95_s']:.2f} s, max {m['max_s']:.2f} s")
    mem = rep["memory_mb"]
    print("server memory (MB, with its worker processes): " + ", ".join(f"{k} {v:.0f}" for k, v in mem.items()))
    print(f"server CPU while students worked: mean {rep['server_cpu_percent']['mean']:.0f}%, "
          f"max {rep['server_cpu_percent']['max']:.0f}% (100% = one core)")
    for detail in rep["first_errors"]:
        print(f"  error: {detail}")


def plot(rep: dict, path: Path) -> None:
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        subplot_titles=("Seconds from a student's action to the page finished", "Server memory (MB)",
                                        "Server CPU (% of one core)"))
    for action in rep["by_action"]:
        rows = [r for r in rep["rows"] if r["action"] == action]
        fig.add_scatter(x=[r["t"] for r in rows], y=[r["seconds"] for r in rows], mode="markers", name=action,
                        marker={"size": 5}, row=1, col=1)
    t = [s["t"] for s in rep["samples"]]
    fig.add_scatter(x=t, y=[s["rss_mb"] for s in rep["samples"]], mode="lines", name="memory", showlegend=False,
                    line={"color": "#444"}, row=2, col=1)
    fig.add_scatter(x=t, y=[s["cpu_percent"] for s in rep["samples"]], mode="lines", name="CPU", showlegend=False,
                    line={"color": "#888"}, row=3, col=1)
    fig.update_yaxes(rangemode="tozero")
    fig.update_xaxes(title_text="seconds since the students started", row=3, col=1)
    cfg = rep["config"]
    fig.update_layout(height=900, title=f"{cfg['students']} simulated students, scenario {cfg['scenario']}",
                      legend={"orientation": "h", "y": -0.08})
    fig.write_html(path, include_plotlyjs=True)


def main() -> None:
    cfg = tyro.cli(ClassroomConfig)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a killed harness still stops the server it started
    rep = run(cfg)
    cfg.out.mkdir(parents=True, exist_ok=True)
    stem = f"{cfg.scenario}-{cfg.students}"
    (cfg.out / f"{stem}.json").write_text(json.dumps(rep, indent=1))
    plot(rep, cfg.out / f"{stem}.html")
    if cfg.json:
        print(json.dumps({k: v for k, v in rep.items() if k not in ("rows", "samples")}, indent=1))
    else:
        print_table(rep)
        print(f"report: {cfg.out / (stem + '.json')}, plot: {cfg.out / (stem + '.html')}")


if __name__ == "__main__":
    main()
