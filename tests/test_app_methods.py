"""The toy page's Method switch: the bundled baselines (assets/toy/<method>/<world>.pt) under the same panels, each
with what its method can and cannot do (fql acts in one call; flow-bc has no critic; only SORL trains self-consistency)."""

from __future__ import annotations

from pathlib import Path

import pytest
from plotly_json import specs

from app import notes as N
from app import toy_page as T
from sorl_core.checkpoint import load_agent
from sorl_core.config import METHODS

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

APP = Path(__file__).resolve().parents[1] / "app" / "Home.py"
TIMEOUT = 90


def clean(at) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


@pytest.mark.parametrize("method", METHODS[1:])
def test_every_world_bundles_every_baseline_as_its_own_method(method):
    for world in ("ring", "moons", "checkerboard", "spiral"):
        path = T.toy_checkpoint_path(world, method)
        assert path.is_file(), f"{path} is missing (scripts/build_toy_assets.py --method {method})"
        agent, extra = load_agent(path, device="cpu")
        assert agent.config.method == method and extra["world"] == world
    assert T.bundled_methods("ring") == list(METHODS)


def test_the_page_switches_method_and_each_panel_says_what_the_method_lacks():
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.run()
    clean(at)
    sorl_reward = metric(at, "True reward")
    assert at.selectbox(key="method").value == "sorl"

    at.selectbox(key="method").set_value("fql").run()  # M_inf 8, N 16 before: fql keeps N, M_inf becomes 1
    clean(at)
    assert any("fql.pt" in c.value or "/fql/" in c.value for c in at.sidebar.caption)
    assert "m" not in [s.key for s in at.select_slider]  # no M_inf slider: one call of the one-step policy
    assert metric(at, "Calls / action") == str(16 + 16)
    assert at.query_params["method"] == "fql" and at.query_params["m_inf"] == "1"
    assert any("acts in one network call" in m.value for m in at.markdown)
    assert any("Self-consistency" in i.value and "fql does not" in i.value for i in at.info)
    assert metric(at, "True reward") != sorl_reward

    at.selectbox(key="method").set_value("flow-bc").run()
    clean(at)
    assert at.selectbox(key="verifier").value == "consensus"
    assert at.selectbox(key="verifier").options == ["consensus"]
    assert any("flow-bc has no critic" in i.value for i in at.info)
    assert at.select_slider(key="m").options == ["1", "2", "4", "8"]
    assert metric(at, "Calls / action") == str(8 * 16)  # no critic calls: consensus needs none

    at.selectbox(key="method").set_value("ifql").run()
    clean(at)
    assert metric(at, "Calls / action") == str(8 * 16 + 16)
    scaling = specs(at)[-1]
    assert scaling["data"], "the scaling panel is drawn"
    assert any("Best-of-64 ranked by its critic" in m.value for m in at.markdown)

    at.selectbox(key="method").set_value("sorl").run()
    clean(at)
    assert metric(at, "True reward") == sorl_reward
    assert "method" not in at.query_params


def test_a_link_opens_on_its_method():
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params.update({"world": "moons", "method": "ifql", "n": "4", "m_inf": "2"})
    at.run()
    clean(at)
    assert at.selectbox(key="method").value == "ifql"
    assert metric(at, "Calls / action") == str(2 * 4 + 4)
    values, warnings = T.parse_query_params({"method": "dqn"})
    assert "method" not in values and warnings == ["method=dqn: expected one of sorl, flow-bc, ifql, fql."]


def test_the_baseline_scaling_note_reads_the_numbers():
    rows = [{"m_inf": m, "n": n, "mean_reward": r, "network_calls": m * n}
            for (m, n), r in {(1, 1): 0.1, (8, 1): 0.5, (1, 4): 0.2, (8, 4): 0.9}.items()]
    text = N.baseline_scaling_note(rows, "ifql")
    assert "rises from 0.10 at M_inf = 1 to 0.50 at M_inf = 8" in text
    assert "Best-of-4 ranked by its critic moves it from 0.50 to 0.90" in text
    assert "M_inf = 8, N = 4 (0.90, 32 calls per action)" in text
