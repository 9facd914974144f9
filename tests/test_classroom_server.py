"""A class on one real server: students pressing Run together queue on the heavy-job board and share identical work.

Three simulated students (app/session_client.py: Streamlit's own websocket protocol, as the classroom harness uses
it) open the rollouts page of one real `streamlit run` server that allows one heavy job at once. A tiny untrained
cube-single policy keeps the episodes short; environments and rendering are real.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

pytest.importorskip("ogbench")
pytest.importorskip("streamlit")
from browser_support import streamlit_server

from app.jobs import QUEUE_MARK
from app.session_client import SessionClient
from sorl_core.agent import SORLAgent
from sorl_core.checkpoint import save_checkpoint
from sorl_core.config import SORLConfig

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning")]


@pytest.fixture
def server(tmp_path, monkeypatch):
    policy = tmp_path / "cube-tiny.pt"
    save_checkpoint(policy, SORLAgent(SORLConfig(obs_dim=28, action_dim=5, size="tiny"), seed=0),
                    extra={"kind": "ogbench", "env": "cube-single-play-singletask-task2-v0"})
    for key, value in {"SORL_LAB_OGBENCH_DIR": tmp_path / "no-bundled", "SORL_LAB_CACHE": tmp_path / "cache",
                       "SORL_LAB_PATHS": tmp_path, "SORL_LAB_HEAVY_JOBS": 1}.items():
        monkeypatch.setenv(key, str(value))
    with streamlit_server(timeout_s=120) as url:
        yield url, policy


async def student(url: str, policy: Path, seed: int, configurations: int) -> SessionClient:
    """A student on the rollouts page with the page's first `configurations`, K = 1 and `seed`, about to press Run."""
    client = SessionClient(url, timeout=300)
    opened = await client.open("OGBench_rollouts", query=f"checkpoint={policy}")
    assert opened.outcome == "ok" and not opened.errors, (opened.exceptions, opened.errors)
    for label, value in (("Configurations", configurations), ("K episodes", 1), ("Seed", seed)):
        result = await client.set(label, value)
        assert result.outcome == "ok", result.exceptions
    return client


def test_runs_pressed_together_queue_for_one_place_and_identical_ones_are_shared(server):
    url, policy = server

    async def class_of_three():
        # Everyone is ready first; then the presses come in a fixed order: four configurations with seed 0 (four
        # episodes one after the other: seconds), one configuration with seed 1 a second later, while the first still
        # runs, then the first request again.
        clients = await asyncio.gather(*(student(url, policy, seed, count) for seed, count in ((0, 4), (1, 1), (0, 4))))

        async def press(client, delay):
            await asyncio.sleep(delay)
            return await client.press("Run")

        try:
            return await asyncio.gather(*(press(c, d) for c, d in zip(clients, (0.0, 1.0, 1.5))))
        finally:
            for c in clients:
                await c.close()

    first, other, same = asyncio.run(class_of_three())
    for result in (first, other, same):
        assert result.outcome == "ok" and not result.errors, (result.exceptions, result.errors)
    assert any(t.startswith("Episodes: ") for t in first.texts)  # four episodes: progress shown while they ran

    def waits_for_episodes(result) -> list[str]:  # (rendering the videos afterwards queues too)
        return [t for t in result.texts if t.startswith(QUEUE_MARK) and "The episodes will start" in t]

    assert not waits_for_episodes(first)  # the only place was free
    queued = waits_for_episodes(other)
    assert queued and queued[0].startswith(f"{QUEUE_MARK}: place 1. The episodes will start when the heavy-job place "
                                           "on this server is free (1 running now)."), queued[:1]
    # The same request as the first student's joins that job: it never waits behind the other seed's run.
    assert not waits_for_episodes(same), same.texts
    assert "Press **Run** to play the episodes." not in same.texts  # results were shown, not the empty page




def test_the_warm_up_opens_every_page_without_an_error(server):
    from app.warm import PAGES, warm

    url, _ = server
    lines = asyncio.run(warm(url, grid=False))
    assert len(lines) == len(PAGES) and all(", ok" in line for line in lines), lines


def test_simulated_students_only_talk_to_this_machine():
    with pytest.raises(ValueError, match="not on this machine"):
        SessionClient("http://192.0.2.1:8501")


if __name__ == "__main__":
    import sys

    sys.exit(pytest.main([__file__, "-q"]))


def test_make_app_serves_and_warms_every_page_as_the_readme_starts_it():
    """`make app` as the README runs it (here on 127.0.0.1 and a free port): the server answers and its warm-up opens
    every page and the toy page's whole (world, M_inf, N) grid without an error."""
    import os
    import signal
    import subprocess
    import time

    from browser_support import REPO, free_port

    port = free_port()
    proc = subprocess.Popen(["make", "--no-print-directory", "app", "APP_HOST=127.0.0.1", f"APP_PORT={port}"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines = []
    try:
        deadline = time.monotonic() + 420
        for line in proc.stdout:
            lines.append(line.rstrip())
            if line.startswith("warm-up: the lab") or time.monotonic() > deadline:
                break
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    summary = next((line for line in lines if line.startswith("warm-up: ") and "toy page:" in line), "")
    assert any(line.startswith("warm-up: the lab is warm") for line in lines), lines[-20:]
    assert summary.count(", ok") == 5 and "failed" not in summary, summary
    assert "every world x M_inf x N" in summary
