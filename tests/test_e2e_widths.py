"""Every page at a projector's 1024x768 and a laptop's 1280x800, in the real browser.

Checks what a class would see go wrong: a chart legend over its title, Play/Pause over the step slider, a chart
title, metric, delta or widget label cut off, the M_inf and N sliders on different heights. Full-page screenshots
go to test-artifacts/width-<page>-<width>.png (look at them).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from browser_support import CHROMIUM, REPO, chromium, slider, streamlit_server, wait_ready

ARTIFACTS = REPO / "test-artifacts"
SIZES = [(1024, 768), (1280, 800)]
PAGES = {"home": "", "rollouts": "OGBench_rollouts", "scaling": "Scaling_study", "runs": "Training_runs",
         "verifier": "Verifier"}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"needs chromium at {CHROMIUM} (apt-get install chromium)"),
]
pytest.importorskip("playwright.sync_api")

# Boxes in page coordinates; a problem is one readable line.
LAYOUT_PROBLEMS = """() => {
  const overlap = (a, b) => !(a.right <= b.left + 1 || b.right <= a.left + 1 || a.bottom <= b.top + 1 || b.bottom <= a.top + 1);
  const visible = r => r.width > 0 && r.height > 0;
  const problems = [];
  document.querySelectorAll('.js-plotly-plot').forEach((gd, i) => {
    const name = ((gd.layout || {}).title || {}).text || `chart ${i}`;
    const title = gd.querySelector('.gtitle'), legend = gd.querySelector('.legend');
    const svg = gd.querySelector('.main-svg');
    const tb = title && title.getBoundingClientRect(), lb = legend && legend.getBoundingClientRect();
    if (tb && lb && visible(tb) && visible(lb) && overlap(tb, lb)) problems.push(`${name}: the legend covers the title`);
    gd.querySelectorAll('.g-xtitle, .g-x2title').forEach(xt => {
      const xb = xt.getBoundingClientRect();
      if (lb && visible(xb) && visible(lb) && overlap(xb, lb)) problems.push(`${name}: the legend covers the x-axis title`);
    });
    if (tb && svg && visible(tb) && tb.right > svg.getBoundingClientRect().right + 1) problems.push(`${name}: the title is cut off`);
    const menu = gd.querySelector('.updatemenu-container'), steps = gd.querySelector('.slider-container');
    if (menu && steps) {
      const mb = menu.getBoundingClientRect(), sb = steps.getBoundingClientRect();
      if (visible(mb) && visible(sb) && overlap(mb, sb)) problems.push(`${name}: Play/Pause cover the step slider`);
    }
  });
  const texts = '[data-testid=stMetricLabel] p, [data-testid=stMetricDelta] div, [data-testid=stWidgetLabel] p, [data-testid=stCheckbox] p';
  document.querySelectorAll(texts).forEach(el => {
    if (el.offsetParent !== null && el.scrollWidth > el.clientWidth + 1) problems.push(`cut off: "${el.innerText}"`);
  });
  // anything the browser shortens with an ellipsis ("Steps ...") is cut off too
  document.querySelectorAll('[data-testid=stMain] *').forEach(el => {
    if (el.offsetParent !== null && (el.innerText || '').trim() && getComputedStyle(el).textOverflow === 'ellipsis'
        && el.scrollWidth > el.clientWidth + 1) problems.push(`cut off: "${el.innerText.trim()}"`);
  });
  return problems;
}"""


@pytest.fixture(scope="module")
def server():
    ARTIFACTS.mkdir(exist_ok=True)
    with open(ARTIFACTS / "streamlit-server-widths.log", "w") as log:
        with streamlit_server(log=log) as url:
            yield url


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
@pytest.mark.parametrize("name", list(PAGES))
def test_page_fits(server, browser, name, size):
    width, height = size
    page = browser.new_page(viewport={"width": width, "height": height})
    try:
        page.goto(f"{server}/{PAGES[name]}")
        wait_ready(page, 180_000)
        page.wait_for_timeout(800)  # Plotly lays out legends after the script run ends
        assert page.locator("[data-testid=stException]").count() == 0
        problems = page.evaluate(LAYOUT_PROBLEMS)
        if name == "home":
            m_box, n_box = slider(page, "M_inf").bounding_box(), slider(page, "N (best-of-N)").bounding_box()
            if abs(m_box["y"] - n_box["y"]) > 3:
                problems.append(f"the M_inf and N sliders are {abs(m_box['y'] - n_box['y']):.0f} px apart in height")
        # the whole page in one picture: a viewport as tall as the page (Streamlit scrolls inside its own container)
        full = page.evaluate("() => document.querySelector('[data-testid=stMain]').scrollHeight")
        page.set_viewport_size({"width": width, "height": min(int(full) + 50, 8000)})
        page.wait_for_timeout(800)
        page.screenshot(path=str(ARTIFACTS / f"width-{name}-{width}.png"))
        assert problems == []
    finally:
        page.close()
