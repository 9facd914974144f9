"""The real Streamlit server and Debian's chromium, shared by the end-to-end tests and benchmarks/app_latency.py.

Nothing here asserts: helpers start the server, open the browser, wait the way Streamlit's own e2e tests
do, and time a slider move from the browser's own clock.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("SORL_LAB_CHROMIUM", "/usr/bin/chromium")  # Debian's; override for another build
CHROMIUM_ARGS = ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SLIDER = "[data-testid=stSlider]"
METRIC_VALUE = "[data-testid=stMetricValue]"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def streamlit_server(page: str = "app/Home.py", log: IO | None = None, timeout_s: float = 60) -> Iterator[str]:
    """`streamlit run` on a free localhost port; yields its URL once /_stcore/health answers."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / page), "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none"],
        cwd=REPO, stdout=log or subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {proc.returncode} before answering")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not answer /_stcore/health within {timeout_s:.0f} s")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def chromium() -> Iterator[object]:
    """Headless Debian chromium driven by Playwright (Playwright cannot download its own browser here)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def wait_ready(page, timeout_ms: int = 90_000) -> None:
    """Streamlit's own e2e rule: debounce, connected, script finished, no skeletons left."""
    page.wait_for_timeout(200)
    page.wait_for_selector("[data-testid=stApp][data-test-connection-state=CONNECTED]", timeout=timeout_ms)
    page.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]", timeout=timeout_ms)
    page.wait_for_function("!document.querySelector('[data-testid=stSkeleton]')", timeout=timeout_ms)


def metrics(page) -> list[str]:
    return page.locator(METRIC_VALUE).all_inner_texts()


def slider(page, label: str):
    """The slider's thumb: Streamlit >= 1.5x renders an <input type=range> (implicit role slider), older ones a div."""
    return page.locator(SLIDER).filter(has_text=label).locator("input[type=range], [role=slider]").first


# In-page clock: the key press as the page received it, the first change of the metric values, the end of
# the script run, and the last change anywhere in the page (figures are drawn after the run's deltas arrive).
_RECORDER = """() => {
  if (window.__lab) return;
  const lab = window.__lab = {t0: null, metrics: null, running: false, done: null, last: null, before: null};
  const values = () => Array.from(document.querySelectorAll('[data-testid=stMetricValue]')).map(e => e.innerText).join('|');
  document.addEventListener('keydown', () => {
    Object.assign(lab, {t0: performance.now(), metrics: null, running: false, done: null, last: null, before: values()});
  }, true);
  new MutationObserver(() => {
    if (lab.t0 === null) return;
    const now = performance.now();
    lab.last = now;
    if (lab.metrics === null && values() !== lab.before) lab.metrics = now;
    const state = (document.querySelector('[data-testid=stApp]') || {getAttribute: () => null}).getAttribute('data-test-script-state');
    if (state === 'running') lab.running = true;
    else if (lab.running && lab.done === null && state === 'notRunning') lab.done = now;
  }).observe(document.body, {subtree: true, childList: true, attributes: true, characterData: true});
}"""


def timed_key(page, handle, key: str, quiet_ms: int = 400, timeout_ms: int = 120_000) -> dict:
    """Press `key` on a slider; milliseconds from the key press until the metrics changed (`metrics_ms`), the
    script run ended (`run_ms`) and the page stopped changing (`settled_ms`: the last DOM change, after
    `quiet_ms` without any)."""
    page.evaluate(_RECORDER)
    handle.focus()
    handle.press(key)
    page.wait_for_function(
        """(quiet) => { const l = window.__lab; return l.t0 !== null && l.done !== null && l.metrics !== null
                        && performance.now() - l.last > quiet; }""", arg=quiet_ms, timeout=timeout_ms, polling=50)
    lab = page.evaluate("() => window.__lab")
    return {"metrics_ms": lab["metrics"] - lab["t0"], "run_ms": lab["done"] - lab["t0"], "settled_ms": lab["last"] - lab["t0"]}
