"""End to end: the real Streamlit server, driven by Debian's chromium through Playwright.

Moves the M_inf and N sliders with the keyboard, checks that the numbers and the figures change,
that the URL records the view and that opening it restores the view. Screenshots go to
test-artifacts/ (gitignored); the slider-to-update time is printed (run with -s to see it).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from browser_support import CHROMIUM, METRIC_VALUE, REPO, chromium, metrics, slider, streamlit_server, timed_key, wait_ready

ARTIFACTS = REPO / "test-artifacts"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"needs chromium at {CHROMIUM} (apt-get install chromium, or set SORL_LAB_CHROMIUM)"),
]
pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def server():
    ARTIFACTS.mkdir(exist_ok=True)
    with open(ARTIFACTS / "streamlit-server.log", "w") as log:
        try:
            with streamlit_server(log=log) as url:
                yield url
        except RuntimeError as exc:  # the server never answered: say so with the log's name
            pytest.fail(f"{exc}; see {log.name}")


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def plot_titles(page) -> list[str]:
    return page.evaluate("""() => Array.from(document.querySelectorAll('.js-plotly-plot'))
                              .map(gd => (gd.layout && gd.layout.title && gd.layout.title.text) || '')""")


def figure_state(page) -> list:
    """Per chart: title, trace names, frame count: what a reader sees change."""
    return page.evaluate("""() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(gd => ({
        title: (gd.layout && gd.layout.title && gd.layout.title.text) || '',
        traces: (gd.data || []).map(t => t.name),
        frames: ((gd._transitionData || {})._frames || []).length,
    }))""")


def press_and_time(page, handle, key: str) -> float:
    """Press a key on a slider; seconds from the key press until the metrics changed, the rerun ended and the
    page stopped changing (the browser's own clock; `make bench-app` records the same time over many moves)."""
    times = timed_key(page, handle, key)
    wait_ready(page)
    return times["settled_ms"] / 1000


def shoot(page, name: str) -> Path:
    path = ARTIFACTS / name
    page.screenshot(path=str(path))
    return path


def shoot_chart(page, index: int, name: str) -> Path:
    """One chart, centred first: Streamlit's sticky header would hide the top of an element at the edge."""
    chart = page.locator("[data-testid=stPlotlyChart]").nth(index)
    chart.evaluate("e => e.scrollIntoView({block: 'center'})")
    page.wait_for_timeout(150)
    path = ARTIFACTS / name
    chart.screenshot(path=str(path))
    return path


def test_sliders_drive_metrics_figures_and_url(server, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(server, wait_until="domcontentloaded")
    page.wait_for_selector(METRIC_VALUE, timeout=120_000)
    wait_ready(page, timeout_ms=120_000)
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 5", timeout=60_000)
    assert page.locator("[data-testid=stException]").count() == 0
    assert page.locator("[data-testid=stAlert]").filter(has_text="Could not").count() == 0

    m_slider, n_slider = slider(page, "M_inf"), slider(page, "N (best-of-N)")
    assert m_slider.get_attribute("aria-valuetext") == "8"
    assert n_slider.get_attribute("aria-valuetext") == "16"
    shoot(page, "e2e-01-default.png")
    shoot_chart(page, 0, "e2e-02-reward-map-M8-N16.png")
    shoot_chart(page, 1, "e2e-02-trajectory-M8.png")
    m0, f0 = metrics(page), figure_state(page)
    assert m0[2] == "144"  # network calls: 8 * 16 actor + 16 critic

    # M_inf 8 -> 4 with the keyboard.
    dt_m = press_and_time(page, m_slider, "ArrowLeft")
    assert m_slider.get_attribute("aria-valuetext") == "4"
    m1, f1 = metrics(page), figure_state(page)
    assert m1[2] == "80" and m1[0] != m0[0]
    assert f1[1]["frames"] == 5 and f0[1]["frames"] == 9  # one frame per Euler state: M + 1
    assert f1[1]["title"].endswith("M = 4") and f0[1]["title"].endswith("M = 8")
    shoot_chart(page, 1, "e2e-03-trajectory-M4.png")

    # Play animates the particles through the Euler steps and ends on the final actions.
    particles = """() => { const gd = document.querySelectorAll('.js-plotly-plot')[1];
                           const t = gd._fullData.find(d => d.name === 'particles'); return Array.from(t.x); }"""
    final = page.evaluate(particles)  # _fullData: the decoded arrays (the spec ships them as base64)
    assert len(final) == 16
    page.locator("[data-testid=stPlotlyChart]").nth(1).locator(".updatemenu-button").filter(has_text="Play").click()
    seen = []
    for i in range(30):
        page.wait_for_timeout(100)
        seen.append(page.evaluate(particles))
        if i == 8:  # mid-flight
            page.locator("[data-testid=stPlotlyChart]").nth(1).screenshot(path=str(ARTIFACTS / "e2e-03b-trajectory-playing.png"))
    assert any(x != final for x in seen), "the particles never moved after Play"
    page.wait_for_function(f"({particles})().every((v, i) => Math.abs(v - {final}[i]) < 1e-9)", timeout=10_000)
    # The data density (a layout image) is still drawn under the particles: an animation erases heatmap traces.
    assert page.locator("[data-testid=stPlotlyChart]").nth(1).locator(".layer-subplot .imagelayer image").count() == 1

    # N 16 -> 1 (Home key): no ranking left in the Q panel.
    dt_n = press_and_time(page, n_slider, "Home")
    assert n_slider.get_attribute("aria-valuetext") == "1"
    m2, f2 = metrics(page), figure_state(page)
    assert m2[2] == "4"  # 4 actor calls, no critic call
    assert f2[2]["title"].startswith("N = 1") and "chosen: argmax Q" not in f2[2]["traces"]
    assert "chosen: argmax Q" in f1[2]["traces"]
    page.get_by_text("Test-time scaling: true reward against compute").scroll_into_view_if_needed()
    shoot(page, "e2e-04-after-M4-N1.png")
    shoot_chart(page, 2, "e2e-05-q-landscape-N1.png")
    shoot_chart(page, 3, "e2e-06-self-consistency.png")
    shoot_chart(page, 4, "e2e-07-scaling.png")

    # One step of N up (1 -> 2): the critic is back.
    dt_n2 = press_and_time(page, n_slider, "ArrowRight")
    m3 = metrics(page)
    assert m3[2] == str(4 * 2 + 2)
    # And back to N = 1: every number is cached now, so this is the page's own render time.
    dt_cached = press_and_time(page, n_slider, "ArrowLeft")
    assert metrics(page) == m2
    dt_n2_again = press_and_time(page, n_slider, "ArrowRight")
    print(f"\nslider-to-update time: M_inf 8->4 {dt_m:.2f} s, N 16->1 {dt_n:.2f} s, N 1->2 {dt_n2:.2f} s "
          "(key press until the page stopped changing; each setting computed for the first time, though its "
          "256-state metrics may already be cached by the scaling grid); "
          f"cached settings: N 2->1 {dt_cached:.2f} s, N 1->2 {dt_n2_again:.2f} s")

    # The address bar holds the view; a fresh page opened on it restores it.
    page.wait_for_function("location.search.includes('n=2') && location.search.includes('m_inf=4')", timeout=10_000)
    shared = page.url
    page.close()
    page2 = browser.new_page(viewport={"width": 1400, "height": 3000})  # tall: the whole page in one shot
    t0 = time.perf_counter()
    page2.goto(shared, wait_until="domcontentloaded")
    page2.wait_for_selector(METRIC_VALUE, timeout=60_000)
    wait_ready(page2)
    print(f"shared link {shared} restored in {time.perf_counter() - t0:.2f} s (cached)")
    assert slider(page2, "M_inf").get_attribute("aria-valuetext") == "4"
    assert slider(page2, "N (best-of-N)").get_attribute("aria-valuetext") == "2"
    assert metrics(page2)[2] == "10"
    shoot(page2, "e2e-08-restored-from-url-full-page.png")
    page2.close()


def test_ogbench_rollouts_page_runs_and_plays_videos(server, browser, tmp_path):
    """The OGBench rollouts page: point it at a checkpoint by URL, run K = 2 episodes of the three default
    configurations, and check that the side-by-side video of episode 0 actually plays (decoded frames, time
    advancing). Typed paths are read only inside runs/, assets/ and SORL_LAB_PATHS: the checkpoint goes in runs/."""
    import shutil

    from sorl_core.agent import SORLAgent
    from sorl_core.checkpoint import save_checkpoint
    from sorl_core.config import SORLConfig

    pytest.importorskip("ogbench")
    folder = REPO / "runs" / "e2e-rollouts"  # a fixed name: a failed run leaves one small file, the next replaces it
    ckpt = save_checkpoint(folder / "cube-tiny.pt", SORLAgent(SORLConfig(obs_dim=28, action_dim=5, size="tiny"), seed=0),
                           extra={"env": "cube-single-play-singletask-task2-v0", "kind": "ogbench"})
    page = browser.new_page(viewport={"width": 1400, "height": 2400})  # tall: the whole page in one shot
    page.goto(f"{server}/OGBench_rollouts?checkpoint={ckpt}", wait_until="domcontentloaded")
    page.locator("[data-testid=stCaptionContainer]").filter(has_text="cube-single-play-singletask-task2-v0").first.wait_for(
        timeout=120_000)
    wait_ready(page, timeout_ms=120_000)
    assert page.locator("[data-testid=stException]").count() == 0
    assert page.locator("[data-testid=stAlertContentError]").count() == 0
    k = page.locator("[data-testid=stNumberInput]").filter(has_text="K episodes").locator("input")
    k.fill("2")
    k.press("Enter")
    wait_ready(page)
    assert k.input_value() == "2"
    t0 = time.perf_counter()
    page.get_by_role("button", name="Run", exact=True).click()
    page.wait_for_selector("[data-testid=stVideo]", timeout=300_000)
    wait_ready(page, timeout_ms=300_000)
    seconds = time.perf_counter() - t0
    assert page.locator("[data-testid=stException]").count() == 0
    assert page.locator("[data-testid=stAlertContentError]").count() == 0

    shutil.rmtree(folder)  # loaded and run: nothing reads it again
    assert page.locator("[data-testid=stDataFrame]").count() == 2  # results, then one row per episode
    videos = page.locator("video")
    assert videos.count() == 1  # all configurations in one player: one clock
    # Loaded and autoplaying: on loaded cores playback can start a moment after the frames are ready.
    page.wait_for_function("Array.from(document.querySelectorAll('video')).every(v => v.readyState >= 2 && !v.paused)",
                           timeout=30_000)
    before = page.evaluate("Array.from(document.querySelectorAll('video')).map(v => v.currentTime)")
    page.wait_for_timeout(1500)
    after = page.evaluate("Array.from(document.querySelectorAll('video')).map(v => v.currentTime)")
    state = page.evaluate("""Array.from(document.querySelectorAll('video')).map(v => ({
        paused: v.paused, muted: v.muted, loop: v.loop, w: v.videoWidth, h: v.videoHeight, d: v.duration}))""")
    assert all(s["muted"] and not s["paused"] and s["w"] == 3 * 240 and s["h"] == 240 for s in state), state
    assert all(a != b for a, b in zip(after, before)), (before, after)  # playing (or looped round)
    # Streamlit loops in script (on 'ended'), not with the loop attribute: jump near the end, see it start over.
    page.evaluate("Array.from(document.querySelectorAll('video')).forEach(v => { v.currentTime = v.duration - 0.3; })")
    page.wait_for_timeout(2000)
    looped = page.evaluate("Array.from(document.querySelectorAll('video')).map(v => [v.currentTime, v.paused, v.duration])")
    assert all(t < 2.0 and not paused for t, paused, _ in looped), looped
    traces = page.evaluate("""() => { const gd = document.querySelector('.js-plotly-plot');
                                      return gd ? gd._fullData.map(t => [t.name, t.x.length]) : []; }""")
    assert len(traces) == 3 and all(n == 200 for _, n in traces), traces  # untrained: all 200 steps fail
    page.locator("video").first.evaluate("e => e.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(300)
    page.evaluate("window.scrollTo(0, 0)")
    shoot(page, "rollouts_page.png")
    print(f"\nOGBench rollouts: Run to rendered videos {seconds:.1f} s; video times {before} -> {after}")
    page.close()


def test_ogbench_rollouts_uploads_are_validated(server, browser, tmp_path):
    """Uploads through the real file picker: a corrupt file and a toy-world checkpoint each get an error box,
    an OGBench checkpoint is accepted (and the Run button comes alive)."""
    from sorl_core.agent import SORLAgent
    from sorl_core.checkpoint import save_checkpoint
    from sorl_core.config import SORLConfig

    pytest.importorskip("ogbench")
    good = save_checkpoint(tmp_path / "cube-upload.pt", SORLAgent(SORLConfig(obs_dim=28, action_dim=5, size="tiny"), seed=1),
                           extra={"env": "cube-single-play-singletask-task2-v0", "kind": "ogbench"})
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x80\x04 definitely not a checkpoint" * 40)
    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    page.goto(f"{server}/OGBench_rollouts", wait_until="domcontentloaded")
    page.wait_for_selector("[data-testid=stRadio]", timeout=120_000)
    wait_ready(page, timeout_ms=120_000)
    page.locator("[data-testid=stRadio] label").filter(has_text="Upload").click()  # bundled policies are the default
    page.wait_for_selector("[data-testid=stFileUploader]", timeout=120_000)
    wait_ready(page)
    run = page.get_by_role("button", name="Run", exact=True)
    assert run.is_disabled()
    errors = page.locator("[data-testid=stAlertContentError]")
    for path, expected in [(corrupt, "not a readable SORL Lab checkpoint"), (REPO / "assets" / "toy" / "ring.pt", "toy 2-D world 'ring'"),
                           (good, "")]:
        page.locator("[data-testid=stFileUploader] input[type=file]").set_input_files(str(path))
        if expected:
            errors.filter(has_text=expected).first.wait_for(timeout=120_000)
            wait_ready(page)
            assert errors.count() == 1 and run.is_disabled()
        else:
            page.locator("[data-testid=stCaptionContainer]").filter(has_text="cube-upload.pt").first.wait_for(timeout=120_000)
            wait_ready(page)
            assert errors.count() == 0 and run.is_enabled()
        assert page.locator("[data-testid=stException]").count() == 0
    page.close()


def test_latency_benchmark_reports_every_move(tmp_path):
    """`make bench-app` end to end with one round: every move is timed, labelled and summarised (the figures
    themselves are printed by the benchmark, never asserted)."""
    import json
    import subprocess
    import sys

    out = tmp_path / "latency.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "app_latency.py"), "--rounds", "1", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Slider-to-update time" in proc.stdout and "median (max)" in proc.stdout
    report = json.loads(out.read_text())
    moves = report["moves"]
    assert [m["move"] for m in moves[:3]] == ["M_inf 8->4", "M_inf 4->2", "M_inf 2->1"] and len(moves) == 14
    assert [m["kind"] for m in moves[:6]] == ["first"] * 3 + ["revisit"] * 3  # down the levels, then back
    assert (moves[-1]["m_inf"], moves[-1]["n"]) == (8, 16)  # the script ends where it started
    for m in moves:
        assert 0 < m["metrics_ms"] <= m["settled_ms"] and 0 < m["run_ms"] <= m["settled_ms"], m
    s = report["summary"]["all"]
    assert s["moves"] == 14 and s["settled_ms_median"] <= s["settled_ms_max"] == max(m["settled_ms"] for m in moves)
