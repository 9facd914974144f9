"""Notebook 3's rollout video: panels of a usable size in FAST mode too, and controls that do not cover the picture.

The notebook itself runs in tests/test_notebooks.py; here: what its video cell shows (sorl_core.ogbench.render.video_html
on a real H.264 file) and the sizes its FAST mode uses.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import numpy as np

from sorl_core.ogbench.render import write_mp4, video_html

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "03_ogbench_scaling.ipynb"


def test_fast_mode_renders_usable_panels_with_few_frames():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    (line,) = [ln for c in nb.cells if c.cell_type == "code" for ln in c.source.splitlines()
               if ln.startswith("VIDEO_EVERY, VIDEO_SIZE =")]
    for fast in (True, False):
        scope = {"FAST": fast}
        exec(line, scope)
        assert scope["VIDEO_SIZE"] >= 256, line  # 96 px panels were too small to see the gripper
    exec(line, scope := {"FAST": True})
    assert scope["VIDEO_EVERY"] >= 10  # FAST stays quick: a frame every 10+ steps
    (cell,) = [c.source for c in nb.cells if c.cell_type == "code" and "render(RenderConfig(" in c.source]
    assert "video_html(side_by_side, width=len(videos) * VIDEO_SIZE)" in cell and "html_attributes" not in cell


def test_video_html_plays_at_the_given_width_with_controls_below(tmp_path):
    frames = [np.full((64, 128, 3), 40 * i, dtype=np.uint8) for i in range(5)]
    mp4 = write_mp4(tmp_path / "clip.mp4", frames, fps=5)
    html = video_html(mp4, width=768)
    video = re.search(r"<video [^>]*>", html).group(0)
    assert 'width="768"' in video and " autoplay" in video and " loop" in video and " muted" in video
    assert " controls" not in video  # the browser's controls would lie over the bottom of the panels
    assert html.index("</video>") < html.index("<button") < html.index('type="range"')  # our controls come after
    assert "data:video/mp4;base64," in video and len(video) > mp4.stat().st_size  # embedded: the notebook is portable
