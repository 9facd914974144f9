"""The toy lab page (app/Home.py) under Streamlit's AppTest: what a user reads and relies on.

Charts have no AppTest accessor: each test reads the Plotly JSON from
``at.get("plotly_chart")[i].proto.spec`` (arrays may come as {"dtype", "bdata"} base64).
Order of the charts on the page: reward map, trajectories, Q landscape, self-consistency, the verifier panel
(N > 1 only), scaling.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from plotly_json import arr, specs

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "app" / "Home.py"
from app import toy_page as T  # the page's own logic: the same module object the page imports

pytest.importorskip("streamlit")
pytest.importorskip("plotly")
from streamlit.testing.v1 import AppTest  # noqa: E402

from sorl_core import toy, viz  # noqa: E402
from sorl_core.checkpoint import load_agent  # noqa: E402
from sorl_core.verifiers import calls_per_action  # noqa: E402

REWARD, TRAJ, QMAP, CONSIST = range(4)
VERIFIER, SCALING = 4, -1  # the verifier panel is drawn only when N > 1; the scaling panel is last
slow = pytest.mark.slow  # drives the page: seconds each (the first one loads torch and fills the caches)
TIMEOUT = 60


# --------------------------------------------------------------------------- helpers


def trace(spec: dict, name_prefix: str) -> dict | None:
    return next((t for t in spec["data"] if str(t.get("name", "")).startswith(name_prefix)), None)


def metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def assert_clean(at) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


@pytest.fixture(scope="module")
def bundled():
    path = T.toy_checkpoint_path("ring")
    if not path.is_file():
        pytest.fail(f"{path} is missing: the page would train a policy on first load instead of opening at once")
    return path


@pytest.fixture
def at(bundled):
    app = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    app.run()
    assert_clean(app)
    return app


# --------------------------------------------------------------------------- tests
@slow
def test_page_opens_ready_on_the_bundled_policy(at):
    assert [m.label for m in at.metric] == ["True reward", "On the data", "Calls / action", "ms / action"]
    assert metric(at, "Calls / action") == "144"  # defaults M = 8, N = 16: 8*16 actor + 16 critic
    assert len(at.get("plotly_chart")) == 6  # N = 16: the verifier panel too
    assert any("bundled" in c.value for c in at.sidebar.caption)
    assert at.select_slider(key="m").value == 8 and at.slider(key="n").value == 16
    # Every control explains itself in the paper's terms.
    for w in (at.select_slider(key="m"), at.slider(key="n"), at.slider(key="c"), at.number_input(key="seed"),
              at.checkbox(key="ext"), at.selectbox(key="world")):
        assert w.help and len(w.help) > 40
    assert "sequential test-time scaling" in at.select_slider(key="m").help
    assert "parallel test-time scaling" in at.slider(key="n").help
    # The URL holds the view from the first run on.
    assert at.query_params["m_inf"] == "8" and at.query_params["n"] == "16" and at.query_params["world"] == "ring"
    assert len(at.get("download_button")) == 3


@slow
def test_m_inf_and_n_change_the_numbers_and_the_figures(at):
    before_metrics = [m.value for m in at.metric]
    before = specs(at)
    assert len(before[TRAJ]["frames"]) == 9  # one frame per Euler state, M + 1

    at.select_slider(key="m").set_value(2).run()
    assert_clean(at)
    after = specs(at)
    assert metric(at, "Calls / action") == str(2 * 16 + 16)
    assert [m.value for m in at.metric][0] != before_metrics[0]
    assert len(after[TRAJ]["frames"]) == 3
    paths = trace(after[TRAJ], "Euler paths")
    assert len(arr(paths["x"])) == 16 * (3 + 1)  # 16 paths of 3 states, NaN-separated
    assert at.query_params["m_inf"] == "2"
    # The reward map's policy actions moved.
    a0, a1 = (arr(trace(s[REWARD], "policy actions")["x"]) for s in (before, after))
    assert a0.shape == a1.shape == (T.CLOUD_SIZE,) and not np.allclose(a0, a1)

    at.slider(key="n").set_value(4).run()
    assert_clean(at)
    q = specs(at)[QMAP]
    assert metric(at, "Calls / action") == str(2 * 4 + 4)
    assert len(arr(trace(q, "candidates")["x"])) == 4
    star = trace(q, "chosen: argmax Q")
    cands = trace(q, "candidates")
    qs = arr(cands["customdata"])[:, 0]
    best = int(np.argmax(qs))
    # The star is the candidate with the highest Q.
    assert star["x"][0] == pytest.approx(arr(cands["x"])[best]) and star["y"][0] == pytest.approx(arr(cands["y"])[best])
    assert at.query_params["n"] == "4"


@slow
def test_metrics_are_the_model_s_true_numbers(at, bundled):
    at.select_slider(key="m").set_value(4).run()
    at.slider(key="n").set_value(4).run()
    at.number_input(key="seed").set_value(3).run()
    assert_clean(at)
    agent, extra = load_agent(bundled, device="cpu")
    contexts = T.eval_contexts()
    res = agent.sample(contexts, m_inf=4, n=4, generator=3)
    data = toy.make_dataset("ring", size=T.DATASET_SIZE, seed=extra.get("train_config", {}).get("seed", 0))["actions"]
    expected = toy.action_metrics("ring", res.actions.numpy(), contexts, data)
    assert float(metric(at, "True reward")) == pytest.approx(expected["mean_reward"], abs=1e-3)
    assert float(metric(at, "On the data").rstrip(" %")) == pytest.approx(100 * expected["frac_in_support"], abs=0.06)
    assert metric(at, "Calls / action") == str(res.network_calls)


@slow
def test_n_equal_1_ranks_nothing(at):
    at.slider(key="n").set_value(1).run()
    assert_clean(at)
    s = specs(at)
    assert metric(at, "Calls / action") == "8"  # M_inf actor calls, no critic
    assert s[QMAP]["layout"]["title"]["text"].startswith("N = 1")
    assert trace(s[QMAP], "chosen: argmax Q") is None
    assert trace(s[QMAP], "candidates") is None and trace(s[QMAP], "the only candidate") is not None
    assert trace(s[TRAJ], "chosen candidate") is None
    assert any("critic is not called" in c.value for c in at.caption)


@slow
def test_query_params_restore_the_view(bundled):
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params.update({"m_inf": "2", "n": "4", "c": "0.5", "seed": "3", "world": "ring"})
    at.run()
    assert_clean(at)
    assert at.select_slider(key="m").value == 2
    assert at.slider(key="n").value == 4
    assert at.slider(key="c").value == pytest.approx(0.5)
    assert at.number_input(key="seed").value == 3
    assert metric(at, "Calls / action") == "12"
    assert "c = +0.50" in specs(at)[REWARD]["layout"]["title"]["text"]
    # The URL is rewritten in full, so the link is complete after the first change.
    assert at.query_params["c"] == "0.50" and at.query_params["ext"] == "0"


def test_links_with_the_old_m_key_still_open_their_view():
    values, warnings = T.parse_query_params({"m": "4"})
    assert values["m"] == 4 and not warnings
    values, warnings = T.parse_query_params({"m_inf": "3"})
    assert "m" not in values and warnings == ["m_inf=3: expected a power of two from 1 to 32."]


@slow
def test_bad_query_params_are_ignored_with_a_warning(bundled):
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params.update({"m_inf": "3", "n": "999", "c": "abc", "world": "nowhere"})
    at.run()
    assert_clean(at)
    warnings = " ".join(w.value for w in at.warning)
    for key in ("m_inf=", "n=", "c=", "world="):
        assert key in warnings
    assert at.select_slider(key="m").value == T.DEFAULTS["m"] and at.slider(key="n").value == T.DEFAULTS["n"]


@slow
def test_extrapolation_offers_16_and_32_and_unchecking_clamps(at):
    assert 16 not in at.select_slider(key="m").options and "16" not in at.select_slider(key="m").options
    at.checkbox(key="ext").check().run()
    assert_clean(at)
    at.select_slider(key="m").set_value(32).run()
    assert_clean(at)
    assert metric(at, "Calls / action") == str(32 * 16 + 16)
    assert len(specs(at)[TRAJ]["frames"]) == 33
    assert any("extrapolated" in c.value for c in at.caption)
    assert at.query_params["m_inf"] == "32" and at.query_params["ext"] == "1"
    at.checkbox(key="ext").uncheck().run()
    assert_clean(at)
    assert at.select_slider(key="m").value == 8


@slow
def test_scaling_panel_is_consistent_with_the_metrics(at):
    s = specs(at)[SCALING]
    lines = [t for t in s["data"] if str(t["name"]).startswith("N = ")]
    assert [t["name"] for t in lines] == ["N = 1", "N = 4", "N = 16", "N = 64"]
    assert all(len(arr(t["x"])) == 4 for t in lines)
    # x is compute: M*N + N for N > 1.
    assert list(arr(lines[2]["x"])) == [sum(calls_per_action(mm, 16)) for mm in T.SCALING_M]
    # The on-screen star (M = 8, N = 16) sits on the N = 16 line and shows the metric above.
    star = trace(s, "on screen")
    assert star["x"][0] == 144 and star["y"][0] == pytest.approx(arr(lines[2]["y"])[-1])
    assert star["y"][0] == pytest.approx(float(metric(at, "True reward")), abs=5e-4)
    assert s["layout"]["xaxis"]["type"] == "log"
    at.radio(key="group").set_value("one per M_inf (parallel scaling)").run()
    assert_clean(at)
    names = [t["name"] for t in specs(at)[SCALING]["data"]]
    assert names[:4] == ["M = 1", "M = 2", "M = 4", "M = 8"]


@slow
def test_self_consistency_heatmap_axes(at):
    s = specs(at)[CONSIST]
    heat = s["data"][0]
    assert heat["type"] == "heatmap"
    assert heat["y"] == ["1", "1/2", "1/4"]
    z = arr(heat["z"])
    # Undefined cells (t + d > 1) are empty; every defined cell holds a finite error.
    assert np.isnan(z[0, 1:]).all() and np.isfinite(z[0, 0]) and np.isfinite(z[2, :7]).all()


@slow
def test_a_broken_bundled_checkpoint_shows_an_error_not_a_traceback(tmp_path, monkeypatch):
    (tmp_path / "ring.pt").write_bytes(b"not a checkpoint")
    monkeypatch.setenv("SORL_LAB_TOY_DIR", str(tmp_path))
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    assert any("could not be loaded" in e.value for e in at.error)


@slow
def test_missing_checkpoint_falls_back_to_training_with_progress(tmp_path, monkeypatch):
    monkeypatch.setenv("SORL_LAB_TOY_DIR", str(tmp_path))  # empty: no bundled file
    monkeypatch.setattr(T, "BUNDLED_ITERATIONS", 20)  # a short run; the page reads it from this module
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.query_params.update({"m": "1", "n": "1"})
    at.run()
    assert_clean(at)
    # The "training ..." note went with the progress bar when training ended; the sidebar says where the policy is from.
    assert not any("No bundled checkpoint" in i.value for i in at.info)
    assert any("trained here (no bundled file)" in c.value for c in at.sidebar.caption)
    assert metric(at, "Calls / action") == "1"


def test_upload_of_a_foreign_file_is_a_clear_error():
    with pytest.raises(ValueError, match="not a readable SORL Lab checkpoint"):
        T.read_upload(b"\x00garbage", "mine.pt")


def test_parse_query_params_validates_and_links_m_with_ext():
    values, warnings = T.parse_query_params({"m": "16", "ext": "0", "n": "5", "c": "0.33", "tseed": "2"})
    assert values["m"] == 16 and values["ext"] is True  # 16 steps only exist as extrapolation
    assert values["n"] == 5 and values["c"] == pytest.approx(0.35)
    assert "tseed" not in values and any("tseed" in w for w in warnings)


@slow
def test_downloads_hold_the_sampled_actions_and_the_figures(bundled):
    agent, _ = load_agent(bundled, device="cpu")
    data = toy.make_dataset("ring", size=2000, seed=0)["actions"]
    batch = T.sample_batch(agent, "ring", data, 2, 4, 0, False)
    csv = T.actions_csv(batch, {"world": "ring", "m_inf": 2, "n": 4})
    lines = csv.strip().splitlines()
    assert lines[0].split(",")[:5] == ["world", "m_inf", "n", "context", "action_1"]
    assert len(lines) == 1 + T.EVAL_STATES
    rewards = np.array([float(r.split(",")[6]) for r in lines[1:]])
    assert rewards.mean() == pytest.approx(batch["mean_reward"], abs=1e-4)
    st_ = T.sample_state(agent, 0.0, 2, 4, 0, False)
    html = viz.figures_html([("map", viz.reward_map_figure("ring", 0.0, samples=batch["actions"][:10])),
                             ("flow", viz.trajectory_figure(st_["trajectory"]))], notes="test")
    assert html.count("Plotly.newPlot") == 2 and "<h2>flow</h2>" in html
    assert html.count("plotly.js v") <= 2  # plotly.js inlined once: the file opens offline


# --------------------------------------------------------------------------- the figure builders themselves
def test_trajectory_figure_follows_the_animation_recipe():
    traj = np.random.default_rng(0).normal(size=(3, 5, 2))  # N = 3 candidates, M = 4 steps
    fig = viz.trajectory_figure(traj, chosen=1)
    paths = next(t for t in fig.data if t.name == "Euler paths")
    x = np.asarray(paths.x, dtype=float)
    assert len(x) == 3 * 6 and np.isnan(x[[5, 11, 17]]).all()  # one line trace, NaN between paths
    np.testing.assert_allclose(x[:5], traj[0, :, 0])
    idx = [i for i, t in enumerate(fig.data) if t.name == "particles"]
    assert len(idx) == 1 and len(fig.frames) == 5
    for k, frame in enumerate(fig.frames):
        assert list(frame.traces) == idx  # only the particles move
        np.testing.assert_allclose(frame.data[0].x, traj[:, k, 0])
    np.testing.assert_allclose(fig.data[idx[0]].x, traj[:, -1, 0])  # opens on the final step
    play, pause = fig.layout.updatemenus[0].buttons
    assert play.args[0] is None and list(pause.args[0]) == [None]  # play all frames; pause = empty jump
    assert len(fig.layout.sliders[0].steps) == 5 and fig.layout.sliders[0].active == 4
    assert tuple(fig.layout.xaxis.range) == (-2, 2) and fig.layout.yaxis.scaleanchor == "x"


def test_action_figures_have_fixed_square_axes():
    fig = viz.reward_map_figure("ring", 0.3, samples=np.zeros((4, 2)), data=np.zeros((10, 2)), chosen=np.zeros(2))
    assert tuple(fig.layout.xaxis.range) == tuple(fig.layout.yaxis.range) == (-1, 1)
    assert fig.layout.yaxis.scaleanchor == "x" and fig.layout.xaxis.autorange is False
    names = [t.name for t in fig.data]
    assert names[0] == "true reward" and "goal g(c)" in names and "chosen action" in names
    q = viz.q_landscape_figure(np.linspace(-1, 1, 5), np.linspace(-1, 1, 5), np.zeros((5, 5)),
                               np.array([[0.1, 0.2], [0.3, 0.4]]), np.array([0.5, 0.9]), 1)
    star = next(t for t in q.data if t.name == "chosen: argmax Q")
    assert (star.x[0], star.y[0]) == (0.3, 0.4)
    with pytest.raises(ValueError):
        viz.q_landscape_figure([0], [0], [[0]], np.zeros((3, 2)), np.zeros(2), 0)


def test_data_is_one_density_layer_not_a_marker_per_point():
    """10,000 data points become one image whose drawn cells are exactly the occupied bins (the browser then
    redraws one image per slider move, not 10,000 SVG markers): a heatmap trace on the reward map, a layout
    image under the animated trajectory figure (Plotly's animation erases heatmap traces)."""
    import base64

    import imageio.v3 as iio

    data = np.random.default_rng(0).uniform(-0.5, 0.5, size=(10_000, 2))
    data[:5000] = (0.91, 0.31)  # half the data on one spot (inside a bin, not on an edge)
    counts, _, _ = np.histogram2d(data[:, 0], data[:, 1], bins=80, range=[[-1, 1], [-1, 1]])
    occupied = counts.T > 0  # rows: a2 from -1 up
    col, row = int((0.91 + 1) / 0.025), int((0.31 + 1) / 0.025)

    fig = viz.reward_map_figure("ring", 0.0, data=data)
    heat = next(t for t in fig.data if t.name == "offline data (density)" and t.type == "heatmap")
    z = np.asarray(heat.z, dtype=float)
    np.testing.assert_array_equal(~np.isnan(z), occupied)
    assert np.nanargmax(z) == row * 80 + col  # the spot is the densest cell

    traj = viz.trajectory_figure(np.zeros((2, 3, 2)), data=data)
    assert not [t for t in traj.data if t.type == "heatmap"]
    (image,) = traj.layout.images
    assert (image.x, image.y, image.sizex, image.sizey, image.layer) == (-1, 1, 2, 2, "below")
    alpha = iio.imread(base64.b64decode(image.source.split(",", 1)[1]))[..., 3][::-1]  # back to rows a2 from -1
    np.testing.assert_array_equal(alpha > 0, occupied)
    assert alpha.max() == alpha[row, col]
    for f in (fig, traj):
        assert any(t.name == "offline data (density)" and t.type == "scatter" for t in f.data)  # legend entry
        assert sum(len(t.x) for t in f.data if t.type == "scatter" and t.mode == "markers") < 50


def test_step_size_labels_and_scaling_grouping():
    assert [viz.fraction_label(d) for d in (1.0, 0.5, 0.25, 0.125)] == ["1", "1/2", "1/4", "1/8"]
    rows = [{"m_inf": m, "n": n, "network_calls": sum(calls_per_action(m, n)), "mean_reward": m + n / 100}
            for m in (1, 2) for n in (1, 4)]
    by_n = viz.scaling_figure(rows, group_by="n")
    assert [t.name for t in by_n.data] == ["N = 1", "N = 4"] and list(by_n.data[1].x) == [8, 12]
    by_m = viz.scaling_figure(rows, group_by="m")
    assert [t.name for t in by_m.data] == ["M = 1", "M = 2"] and list(by_m.data[0].x) == [1, 8]
    with pytest.raises(ValueError):
        viz.scaling_figure(rows, group_by="k")


@slow
def test_switching_world_loads_that_world_s_bundled_policy(at):
    if not T.toy_checkpoint_path("moons").is_file():
        pytest.fail(f"{T.toy_checkpoint_path('moons')} is missing")
    before = arr(specs(at)[REWARD]["data"][0]["z"])
    at.selectbox(key="world").set_value("moons").run()
    assert_clean(at)
    assert any("moons.pt" in c.value for c in at.sidebar.caption)
    assert at.query_params["world"] == "moons"
    assert not np.allclose(arr(specs(at)[REWARD]["data"][0]["z"]), before)  # the true reward of the new world
