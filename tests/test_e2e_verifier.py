"""End to end: the Verifier page in Debian's chromium. Play an episode, scrub the step slider with the keyboard,
and see the frame and the candidate figure change; screenshots go to test-artifacts/."""

from __future__ import annotations

from pathlib import Path

import pytest
from browser_support import CHROMIUM, REPO, chromium, slider, streamlit_server, wait_ready

ARTIFACTS = REPO / "test-artifacts"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"needs chromium at {CHROMIUM} (apt-get install chromium)"),
]
pytest.importorskip("playwright.sync_api")

STATE = """() => {
  const img = document.querySelector('[data-testid=stImage] img, [data-testid=stImageContainer] img, img[alt]');
  const gd = document.querySelector('.js-plotly-plot');
  return {frame: img ? img.src : null, pick: gd ? JSON.stringify(gd.data[gd.data.length - 2].y) : null};
}"""


def test_scrubbing_changes_the_frame_and_the_candidates():
    ARTIFACTS.mkdir(exist_ok=True)
    with open(ARTIFACTS / "streamlit-server-verifier.log", "w") as log, streamlit_server(log=log) as url, \
            chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.goto(f"{url}/Verifier")
        wait_ready(page, 180_000)
        n_box = page.get_by_label("N", exact=True)
        n_box.fill("4")
        n_box.press("Enter")
        wait_ready(page)
        page.get_by_role("button", name="Play the episode").click()
        wait_ready(page, 300_000)
        page.wait_for_timeout(800)
        first = page.evaluate(STATE)
        assert first["frame"] and first["pick"]
        page.screenshot(path=str(ARTIFACTS / "e2e-verifier-step0.png"))
        handle = slider(page, "Step")
        handle.focus()
        for _ in range(5):
            handle.press("ArrowRight")
        wait_ready(page)
        page.wait_for_timeout(800)
        later = page.evaluate(STATE)
        page.screenshot(path=str(ARTIFACTS / "e2e-verifier-step5.png"))
        assert later["frame"] != first["frame"] and later["pick"] != first["pick"]
