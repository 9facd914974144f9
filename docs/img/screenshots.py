"""Retake the README's screenshots of the five pages (docs/img/*.png) in Debian's chromium.

    .venv/bin/python docs/img/screenshots.py            # all five pages
    .venv/bin/python docs/img/screenshots.py home runs  # some of them

Starts the real lab on a free port (tests/browser_support.py), opens each page at 1280 x 800, waits for the
script run to end and the figures to be drawn, and saves the viewport downscaled to 1000 px wide with a
128-colour palette (each file well under 150 KB). The rollouts page first runs the bundled policy (five
episodes of three configurations and the side-by-side video: about a minute on two cores).
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
from browser_support import chromium, streamlit_server, wait_ready  # noqa: E402

OUT = Path(__file__).resolve().parent
PAGES = {"home": "", "rollouts": "OGBench_rollouts", "scaling": "Scaling_study", "runs": "Training_runs",
         "verifier": "Verifier"}
WIDTH, HEIGHT, SAVED_WIDTH = 1280, 800, 1000


def to_top(page, locator, margin: int = 16) -> None:
    """Scroll the main container so that `locator` starts `margin` px below the viewport's top."""
    locator.first.evaluate("(e, m) => { const main = document.querySelector('[data-testid=stMain]');"
                           " main.scrollBy(0, e.getBoundingClientRect().top - m); }", margin)
    page.wait_for_timeout(800)


def prepare(page, name: str) -> None:
    main = page.locator("[data-testid=stMain]")
    if name == "home":  # the guide (open on a first visit) folded; the knobs, the metrics and the first figures
        main.get_by_text("How to read this page").click()
        wait_ready(page)
        to_top(page, main.locator("[data-testid=stWidgetLabel]").filter(has_text="M_inf (Euler steps)"), 24)
    elif name == "scaling":  # the three seeds of M_BTT = 8 (opened) and the M_BTT = 1 policy, at the budget and plot
        page.locator("[data-testid=stMultiSelect]").filter(has_text="Bundled sweeps").locator("input").click()
        page.get_by_role("option", name="cube-single-task2-mbtt1", exact=True).click()
        page.keyboard.press("Escape")
        wait_ready(page)
        page.wait_for_timeout(1500)
        to_top(page, main.locator("[data-testid=stCaptionContainer]").filter(has_text="cells of"))
    elif name == "runs":  # the bundled logs, as on a fresh clone (a local runs/ folder would open instead)
        page.get_by_text("Bundled runs (assets/ogbench)").click()
        wait_ready(page)
        page.wait_for_timeout(1500)
        to_top(page, main.get_by_role("heading", name="Losses"), 110)
    elif name == "verifier":  # one episode of the bundled policy at N = 16, scrubbed to a step with a large score gap
        page.get_by_role("button", name="Play the episode").click()
        wait_ready(page, 600_000)
        handle = page.locator("[data-testid=stSlider]").filter(has_text="Step").locator("input[type=range], [role=slider]").first
        handle.focus()
        for _ in range(18):
            handle.press("ArrowRight")
        wait_ready(page)
        page.wait_for_timeout(1500)
        to_top(page, main.get_by_role("heading").filter(has_text="Episode"), 16)
    elif name == "rollouts":
        page.get_by_role("button", name="Run").click()
        page.wait_for_selector("[data-testid=stVideo]", timeout=600_000)
        wait_ready(page, 600_000)
        page.wait_for_timeout(2500)  # the video's first frames
        # the episode picker, the side-by-side video and the learned Q along the episode
        to_top(page, main.locator("[data-testid=stWidgetLabel]").filter(has_text="Episode to watch"), 16)


def save(png: bytes, path: Path) -> None:
    from PIL import Image

    im = Image.open(io.BytesIO(png)).convert("RGB")
    im = im.resize((SAVED_WIDTH, round(im.height * SAVED_WIDTH / im.width)), Image.LANCZOS)
    im.convert("P", palette=Image.ADAPTIVE, colors=128).save(path, optimize=True)
    print(f"{path.relative_to(REPO)}: {path.stat().st_size / 1024:.0f} KB")


def main(names: list[str]) -> None:
    with streamlit_server() as url, chromium() as browser:
        for name in names:
            page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
            try:
                page.goto(f"{url}/{PAGES[name]}")
                wait_ready(page, 180_000)
                page.wait_for_timeout(1500)  # Plotly lays out after the script run ends
                # Streamlit's toolbar (Deploy, the menu) would cover the top of a scrolled page
                page.add_style_tag(content="[data-testid=stHeader] {display: none}")
                prepare(page, name)
                page.mouse.move(WIDTH - 1, HEIGHT - 1)  # no hover toolbars or tooltips
                page.wait_for_timeout(500)
                save(page.screenshot(), OUT / f"{name}.png")
            finally:
                page.close()


if __name__ == "__main__":
    main(sys.argv[1:] or list(PAGES))
