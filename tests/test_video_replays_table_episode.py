"""The rollouts page's video of episode i is episode i of its results table: same reset seed, same sampling noise.

Real OGBench cube-single with the bundled policy (which succeeds often, so episodes end at different steps),
the page's own functions for the table (`run_configs`) and the videos (`render_videos`), a real mp4. Small budget:
K = 3 episodes, every 10th step rendered at 64 px.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from app import rollouts_page as R
from app.policies import load_checkpoint

REPO = Path(__file__).resolve().parents[1]
pytest.importorskip("ogbench")
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning")]

POLICY = REPO / "assets" / "ogbench" / "cube-single-task2" / "policy.pt"
CONFIGS = [(2, 4), (1, 1)]  # in episode 2 of seed 0 here: success at step 40, failure (200 steps)
EPISODES, EVERY, SIZE = 3, 10, 64


@pytest.fixture(scope="module")
def table():
    loaded = load_checkpoint(POLICY)
    rows = R.run_configs(loaded.agent, loaded.env_name, CONFIGS, EPISODES, seed=0, workers=2)
    return loaded, rows


@pytest.mark.parametrize("episode", [2])  # not episode 0: the one the old videos always replayed
def test_video_outcome_is_the_tables_for_that_episode(table, episode, tmp_path):
    import imageio.v2 as imageio

    loaded, rows = table
    # The side-by-side check below needs panels of different lengths: the configurations must end this episode at
    # different steps in the table (if this fails, the policy or the episodes changed: choose CONFIGS anew).
    table_lengths = [row["episode_length"][episode] for row in rows]
    assert len(set(table_lengths)) > 1, f"episode {episode} has the same length {table_lengths} in every configuration"
    videos = R.render_videos(loaded.agent, loaded.env_name, CONFIGS, 0, loaded.digest, episode=episode,
                             episodes=EPISODES, cache_dir=tmp_path, every=EVERY, size=SIZE)
    for row, video in zip(rows, videos):
        seen = (video.m_inf, video.n, video.episode, video.success, video.length)
        table_row = (row["m_inf"], row["n"], episode, row["episode_success"][episode], row["episode_length"][episode])
        print(f"\n{row['label']}: table {table_row[3:]}, video {seen[3:]}")
        assert seen == table_row
        assert video.episode_return == pytest.approx(row["episode_return"][episode])
        assert len(video.q) == video.length
        with imageio.get_reader(video.path, format="FFMPEG") as reader:
            frames = reader.count_frames()
        # frame j shows step min(j * EVERY, length); the final state is the last; then a 2-frame (1 s) hold
        assert frames == video.frames == math.ceil(video.length / EVERY) + 1 + 2
    print(f"episode {episode} lengths: {[v.length for v in videos]}")

    # Side by side: one clock; the longest clip sets the length, shorter panels hold their last frame.
    sbs = tmp_path / "sbs.mp4"
    sbs.write_bytes(R.side_by_side_bytes(videos, "sbs", tmp_path))
    with imageio.get_reader(sbs, format="FFMPEG") as reader:
        frames = [f for f in reader]
    assert len(frames) == max(v.frames for v in videos)
    assert frames[0].shape[:2] == (SIZE, SIZE * len(CONFIGS))
    # A panel that ended early is frozen over the last frames while another still moves.
    short = min(range(len(videos)), key=lambda i: videos[i].frames)
    long = max(range(len(videos)), key=lambda i: videos[i].frames)
    after = frames[videos[short].frames - 1:]  # from the short clip's last frame to the end
    panel = lambda f, i: f[:, i * SIZE:(i + 1) * SIZE].astype(int)  # noqa: E731
    change = lambda i: max(abs(panel(f, i) - panel(after[0], i)).mean() for f in after)  # noqa: E731
    print(f"over the last {len(after)} frames: the short panel changes by {change(short):.2f}, the long by {change(long):.2f}")
    assert len(after) > 1 and change(short) < 3 <= change(long)
