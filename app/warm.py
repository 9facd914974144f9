"""Warm a freshly started lab server, so the first students see pages at once: `python -m app.warm [--url URL]`.

`make app` starts this beside the server. It waits for the server to answer, then opens every page once as a
student would (app/session_client.py), and on the toy page visits every (world, M_inf, N) a class drags through
from the page's defaults (4 worlds x 4 x 16 settings, about a minute): imports, bundled policies and those
computations are then in the server's shared caches. A first visit on a cold server took 10 s and more; other
states (context c), seeds and trained policies are computed when first asked for. The warm-up's own session is
dropped when it closes. Prints a summary and exits 0, or 1 with the reason when the server never answered.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import urllib.request

from app.session_client import SessionClient

PAGES = ("", "OGBench_rollouts", "Scaling_study", "Training_runs", "Verifier")
WORLDS = ("moons", "checkerboard", "spiral", "ring")  # the front page opens on ring: visited last, left as it opens


def wait_for(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            time.sleep(0.5)
    return False


M_OPTIONS, N_MAX = ("1", "2", "4", "8"), 16  # the front page's M_inf choices (up to M_disc) and N slider


async def warm(url: str, grid: bool = True) -> list[str]:
    lines, client = [], SessionClient(url, timeout=600)
    try:
        for page in PAGES:
            result = await client.open(page)
            problem = f" ({'; '.join(result.exceptions)[:200]})" if result.exceptions else ""
            lines.append(f"{page or 'toy page'}: {result.seconds:.1f} s, {result.outcome}{problem}")
        if grid:
            await client.open()
            started, failed = time.monotonic(), 0
            for world in WORLDS:
                failed += (await client.set("World", world)).outcome != "ok"
                for m in M_OPTIONS:
                    failed += (await client.set("M_inf", m)).outcome != "ok"
                    for n in range(1, N_MAX + 1):
                        failed += (await client.set("N (best-of-N)", n)).outcome != "ok"
            lines.append(f"toy page, every world x M_inf x N: {time.monotonic() - started:.0f} s"
                         + (f", {failed} failed" if failed else ""))
    finally:
        await client.close()
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8501", help="the lab's address on this machine")
    parser.add_argument("--wait", type=float, default=180, help="seconds to wait for the server to answer")
    parser.add_argument("--no-grid", dest="grid", action="store_false",
                        help="only open every page; skip the toy page's (world, M_inf, N) grid")
    args = parser.parse_args(argv)
    started = time.monotonic()
    if not wait_for(args.url, args.wait):
        print(f"warm-up: the lab did not answer at {args.url} within {args.wait:.0f} s; pages will warm on first use.",
              flush=True)
        return 1
    lines = asyncio.run(warm(args.url, args.grid))
    print("warm-up: " + "; ".join(line.strip() for line in lines), flush=True)
    print(f"warm-up: the lab is warm ({time.monotonic() - started:.0f} s); the first students' pages come from its "
          "caches.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
