"""Slider-to-update time of the lab's front page, in a real browser.

Starts the real Streamlit server on the bundled ring policy, opens it in Debian's chromium (Playwright) and
moves the M_inf and N sliders with the keyboard. For every move it reads the browser's own clock:

  metrics_ms   key press -> the metric values on the page changed
  run_ms       key press -> Streamlit's script run finished
  settled_ms   key press -> the last change anywhere in the page (all figures redrawn)

Moves are labelled `first` (this (M_inf, N) was not on screen before in this session: sampling, the Q
grid and the figures are computed) or `revisit` (cached results; the page still redraws every figure).

    .venv/bin/python benchmarks/app_latency.py            # a table
    .venv/bin/python benchmarks/app_latency.py --json     # one JSON object
    make bench-app
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import tyro

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from browser_support import CHROMIUM, chromium, slider, streamlit_server, timed_key, wait_ready  # noqa: E402

M_LABEL, N_LABEL = "M_inf", "N (best-of-N)"
# (slider, key, repeats): down the M_inf levels and back, then N down by one four times and back.
SCRIPT = [(M_LABEL, "ArrowLeft", 3), (M_LABEL, "ArrowRight", 3), (N_LABEL, "ArrowLeft", 4), (N_LABEL, "ArrowRight", 4)]


@dataclass
class AppLatencyConfig:
    """Time slider moves on the toy front page in a real browser."""

    rounds: int = 1
    """Times the move script is played (later rounds are all revisits)."""
    json: bool = False
    """Print one JSON object instead of a table."""
    out: Path | None = None
    """Also write the JSON report to this file."""
    width: int = 1400
    """Browser viewport width in pixels (the page lays out two figures side by side at 1400)."""


def _setting(page) -> tuple[str, str]:
    return slider(page, M_LABEL).get_attribute("aria-valuetext"), slider(page, N_LABEL).get_attribute("aria-valuetext")


def run(cfg: AppLatencyConfig) -> dict:
    moves = []
    with streamlit_server() as url, chromium() as browser:
        page = browser.new_page(viewport={"width": cfg.width, "height": 1000})
        page.goto(url, wait_until="domcontentloaded")
        wait_ready(page, timeout_ms=180_000)
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 5", timeout=120_000)
        # One untimed move there and back: the browser's first Plotly redraws include compiling its code.
        seen = {_setting(page)}
        timed_key(page, slider(page, N_LABEL), "ArrowRight")
        seen.add(_setting(page))
        timed_key(page, slider(page, N_LABEL), "ArrowLeft")
        for _ in range(cfg.rounds):
            for label, key, repeats in SCRIPT:
                for _ in range(repeats):
                    before = _setting(page)
                    times = timed_key(page, slider(page, label), key)
                    after = _setting(page)
                    kind = "revisit" if after in seen else "first"
                    seen.add(after)
                    i = 0 if label == M_LABEL else 1
                    moves.append({"move": f"{label.split()[0]} {before[i]}->{after[i]}",
                                  "m_inf": int(after[0]), "n": int(after[1]), "kind": kind,
                                  **{k: round(v) for k, v in times.items()}})
        version = browser.version
    summary = {}
    for kind in ("first", "revisit", "all"):
        rows = [m for m in moves if kind in ("all", m["kind"])]
        if rows:
            summary[kind] = {"moves": len(rows), **{
                f"{k}_{stat}": round(fn([m[k] for m in rows]))
                for k in ("metrics_ms", "run_ms", "settled_ms")
                for stat, fn in (("median", statistics.median), ("max", max))}}
    return {"page": "app/Home.py (bundled ring policy)", "browser": f"chromium {version} (headless)",
            "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
            "viewport": [cfg.width, 1000], "moves": moves, "summary": summary}


def print_table(report: dict) -> None:
    print(f"Slider-to-update time, {report['page']}, {report['browser']}, {report['cpus']} CPUs")
    print(f"{'move':>12} {'M':>3} {'N':>3} {'kind':>8} {'metrics ms':>11} {'run ms':>7} {'settled ms':>11}")
    for m in report["moves"]:
        print(f"{m['move']:>12} {m['m_inf']:>3} {m['n']:>3} {m['kind']:>8} {m['metrics_ms']:>11} {m['run_ms']:>7} "
              f"{m['settled_ms']:>11}")
    print("median (max):")
    for kind, s in report["summary"].items():
        print(f"  {kind:>8}, {s['moves']:>2} moves: metrics {s['metrics_ms_median']} ({s['metrics_ms_max']}) ms, "
              f"run {s['run_ms_median']} ({s['run_ms_max']}) ms, settled {s['settled_ms_median']} ({s['settled_ms_max']}) ms")


def main() -> None:
    cfg = tyro.cli(AppLatencyConfig)
    if not Path(CHROMIUM).exists():
        sys.exit(f"app_latency needs a chromium at {CHROMIUM} (Debian: apt-get install chromium; scripts/bootstrap.sh "
                 "installs it). Point SORL_LAB_CHROMIUM at another chromium or chrome binary to use that one.")
    report = run(cfg)
    if cfg.out:
        cfg.out.write_text(json.dumps(report, indent=2))
    if cfg.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)


if __name__ == "__main__":
    main()
