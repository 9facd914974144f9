"""The OGBench rollouts page (app/pages/1_OGBench_rollouts.py) and its logic (app/rollouts_page.py,
the shared app/policies.py, app/uploads.py, app/messages.py).

The policy is an untrained tiny SORL agent saved as a cube-single checkpoint (no training needed):
its episodes fail and run the full 200 steps, so the tests check plumbing, validation, caching and
what the page shows, never success rates. Real environments, real MuJoCo rendering (EGL on the CPU).
Charts and videos have no AppTest accessor: ``at.get("plotly_chart")[0].proto.spec`` is the figure
JSON and ``at.get("video")`` the video protos.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
from plotly_json import arr

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "app" / "pages" / "1_OGBench_rollouts.py"

pytest.importorskip("ogbench")
pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest

from app import policies
from app import rollouts_page as R
from app.messages import plain_message
from app.paths import PathNotAllowed, resolve_allowed
from app.uploads import store_upload
from sorl_core.agent import SORLAgent
from sorl_core.checkpoint import CheckpointError, save_checkpoint
from sorl_core.config import SORLConfig
from sorl_core.verifiers import calls_per_action
from sorl_core.ogbench.render import checkpoint_digest

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning")]
ENV = "cube-single-play-singletask-task2-v0"  # observations 28, actions 5, 200 steps
TIMEOUT = 120
CONFIGS = [(1, 1), (2, 2)]
EPISODES = 2


def save_policy(path: Path, obs_dim: int = 28, action_dim: int = 5, env: str | None = ENV, **extra) -> Path:
    agent = SORLAgent(SORLConfig(obs_dim=obs_dim, action_dim=action_dim, size="tiny"), seed=0)
    payload = {"kind": "ogbench", **extra}
    if env is not None:
        payload["env"] = env
    return save_checkpoint(path, agent, extra=payload)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """Checkpoints, an empty bundled folder and a private render cache, for the whole module."""
    d = tmp_path_factory.mktemp("rollouts")
    env = {"SORL_LAB_OGBENCH_DIR": str(d / "no-bundled"), "SORL_LAB_CACHE": str(d / "render-cache"),
           "SORL_LAB_PATHS": str(d)}  # typed paths are read only in allow-listed folders
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        yield d


@pytest.fixture(scope="module")
def policy(workdir) -> Path:
    return save_policy(workdir / "cube-tiny.pt")


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def page(checkpoint: Path | None = None) -> AppTest:
    at = AppTest.from_file(str(PAGE), default_timeout=TIMEOUT)
    if checkpoint is not None:
        at.query_params["checkpoint"] = str(checkpoint)
    return at


def assert_clean(at) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def set_configs(at, configs, episodes: int, seed: int = 0) -> None:
    at.number_input(key="ro_count").set_value(len(configs))
    at.number_input(key="ro_episodes").set_value(episodes)
    at.number_input(key="ro_seed").set_value(seed)
    at.run()
    for i, (m, n) in enumerate(configs):
        at.select_slider(key=f"ro_m{i}").set_value(m)
        at.number_input(key=f"ro_n{i}").set_value(n)
    at.run()


def run_button(at):
    return next(b for b in at.button if b.label == "Run")


def shown(at) -> dict:
    """The rendered videos of the episode the picker shows."""
    res = at.session_state["ro_results"]
    return res["renders"][at.session_state["ro_episode"]]



@pytest.fixture(scope="module")
def ran(policy):
    """The page pointed at the policy (URL parameter), two configurations, K = 2, then Run."""
    at = page(policy)
    at.run()
    assert_clean(at)
    set_configs(at, CONFIGS, EPISODES)
    t0 = time.perf_counter()
    run_button(at).click().run()
    seconds = time.perf_counter() - t0
    assert_clean(at)
    print(f"\nfirst Run (2 configurations x 2 episodes, 2 videos): {seconds:.1f} s")
    return at


# --------------------------------------------------------------------------- the logic module
def test_configurations_are_validated_and_priced():
    configs, notes = R.clean_configs([(8, 16), (16, 1), (2, 0), (2, 65), (8, 16), (1, 1)], m_disc=8)
    assert configs == [(8, 16), (1, 1)]
    assert len(notes) == 4
    assert "M_disc = 8" in notes[0] and "between 1 and 64" in notes[1] and "twice" in notes[3]
    assert R.clean_configs([(8, 1)], m_disc=4)[0] == []  # beyond the trained levels
    assert [sum(calls_per_action(m, n)) for m, n in [(1, 1), (8, 1), (8, 16), (4, 4)]] == [1, 8, 144, 20]
    assert R.sample_seed(3, 8, 16) == 3 * 7919 + 31 * 8 + 16  # what `sorl-lab evaluate` uses
    assert [policies.checkpoint_label(p) for p in ["runs/cube-a/checkpoint.pt", "assets/ogbench/cube-b/policy.pt",
                                                   "/tmp/x/mine.pt", "policy.pt"]] == ["cube-a", "cube-b", "mine", "policy"]


def test_uploads_are_stored_by_content(tmp_path, policy):
    data = policy.read_bytes()
    a = store_upload(data, tmp_path)
    assert a.read_bytes() == data and a.name == f"{checkpoint_digest(policy)}.pt"
    assert store_upload(data, tmp_path) == a
    b = store_upload(data + b"x", tmp_path)
    assert b != a and len(list(tmp_path.iterdir())) == 2  # no temporary files left


def test_bundled_checkpoints_are_found_with_their_cards(tmp_path, policy):
    (tmp_path / "cube-a").mkdir()
    (tmp_path / "cube-a" / "policy.pt").write_bytes(policy.read_bytes())
    (tmp_path / "cube-a" / "card.md").write_text("# Cube A\ntrained for the test")
    (tmp_path / "cube-a" / "sweep.csv").write_text("checkpoint\n")
    (tmp_path / "cube-b").mkdir()
    (tmp_path / "cube-b" / "policy.pt").write_bytes(policy.read_bytes())
    (tmp_path / "empty").mkdir()
    found = policies.bundled_checkpoints(tmp_path)
    assert [b.name for b in found] == ["cube-a", "cube-b"]
    (tmp_path / policies.HEADLINE_POLICY).mkdir()  # the policy the pages open on comes first, whatever its name
    (tmp_path / policies.HEADLINE_POLICY / "policy.pt").write_bytes(policy.read_bytes())
    assert [b.name for b in policies.bundled_checkpoints(tmp_path)] == [policies.HEADLINE_POLICY, "cube-a", "cube-b"]
    assert policies.card_text(found[0]).startswith("# Cube A") and found[0].sweep is not None
    assert policies.card_text(found[1]) is None and found[1].sweep is None
    assert policies.bundled_checkpoints(tmp_path / "missing") == []


def test_a_good_checkpoint_loads_with_its_environment(policy):
    loaded = policies.load_checkpoint(policy)
    assert (loaded.env_name, loaded.obs_dim, loaded.action_dim, loaded.max_episode_steps) == (ENV, 28, 5, 200)
    assert loaded.digest == checkpoint_digest(policy)
    assert loaded.m_options() == [1, 2, 4, 8]


@pytest.mark.parametrize("case, expected", [
    ("corrupt", "not a readable SORL Lab checkpoint"),
    ("toy", "toy 2-D world 'ring'"),
    ("mismatch", "observations of size 10"),
    ("goal", "goal-conditioned"),
    ("unknown", "cannot be made here"),
    ("missing", "no checkpoint at"),
])
def test_bad_checkpoints_are_refused_with_a_reason(tmp_path, case, expected):
    path = {
        "corrupt": lambda: write(tmp_path / "c.pt", os.urandom(3000)),
        "toy": lambda: REPO / "assets" / "toy" / "ring.pt",
        "mismatch": lambda: save_policy(tmp_path / "m.pt", obs_dim=10),
        "goal": lambda: save_policy(tmp_path / "g.pt", env="cube-single-play-v0"),
        "unknown": lambda: save_policy(tmp_path / "u.pt", env="cube-nonuple-play-singletask-task1-v0"),
        "missing": lambda: tmp_path / "nothing.pt",
    }[case]()
    with pytest.raises(CheckpointError, match=expected.replace("(", r"\(")):
        policies.load_checkpoint(path)


def test_table_csv_and_q_figure_from_rows():
    rows = [{"label": "M_inf=8, N=16", "m_inf": 8, "n": 16, "episodes": 4, "successes": 1, "success_rate": 0.25,
             "success_ci_low": 0.0456, "success_ci_high": 0.6994, "mean_return": -150.0, "mean_length": 180.0,
             "actor_calls": 128, "critic_calls": 16, "network_calls": 144, "ms_per_action": 1.5, "mean_q": -2.0,
             "seed": 3}]
    df = R.results_table(rows).set_index("measure")["M_inf=8, N=16"]
    assert (df["success rate"], df["95% CI"], df["network calls / action"]) == ("25%", "[5%, 70%]", "144")
    assert (df["mean return"], df["ms / action"], df["mean Q"]) == ("-150.0", "1.500", "-2.000")
    csv = R.results_csv(rows, "cube.pt", ENV).splitlines()
    assert csv[0].split(",") == list(R.CSV_COLUMNS)
    assert csv[1].startswith(f"cube.pt,{ENV},8,16,4,1,0.25,")
    fig = R.q_figure([{"label": "A", "outcome": "failed (3 steps)", "q": [1.0, 2.0, 3.0]},
                      {"label": "B", "outcome": "success at step 2", "q": [0.5, 0.25]}])
    assert [len(t.y) for t in fig.data] == [3, 2] and list(fig.data[1].x) == [1, 2]
    assert fig.data[0].name == "A · failed (3 steps)"


# --------------------------------------------------------------------------- the page
def test_no_bundled_checkpoints_is_said_plainly_and_upload_still_works(workdir):
    at = page()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("No bundled OGBench checkpoints yet" in i.value for i in at.info)
    assert at.radio(key="ro_source").options == ["Upload", "Path on this machine"]
    assert len(at.get("file_uploader")) == 1
    assert run_button(at).disabled
    assert all(w.help for w in [*at.number_input, *at.select_slider, at.radio(key="ro_source"), run_button(at)])


def test_results_table_shows_every_configuration(ran):
    df = ran.dataframe[0].value
    assert list(df.columns) == ["measure", "M_inf=1, N=1", "M_inf=2, N=2"]  # one column per configuration
    df = df.set_index("measure")
    assert list(df.loc["M_inf"]) == ["1", "2"] and list(df.loc["N"]) == ["1", "2"]
    assert list(df.loc["episodes"]) == [str(EPISODES)] * 2
    assert list(df.loc["network calls / action"]) == ["1", str(2 * 2 + 2)]
    assert all(0 < float(v) for v in df.loc["ms / action"])
    assert all(1 <= float(v) <= 200 for v in df.loc["mean length"])
    rows = ran.session_state["ro_results"]["rows"]
    assert [r["episode_seeds"] for r in rows] == [[0, 1], [0, 1]]  # same initial states in every configuration
    for r in rows:
        assert r["success_ci_low"] <= r["success_rate"] <= r["success_ci_high"]


def test_one_side_by_side_video_of_episode_0_with_a_caption_per_configuration(ran):
    (video,) = ran.get("video")  # one player: every configuration on one clock
    assert video.proto.autoplay and video.proto.loop and video.proto.muted
    assert ran.session_state["ro_episode"] == 0
    records = shown(ran)["videos"]
    assert [(v["m_inf"], v["n"], v["episode"]) for v in records] == [(m, n, 0) for m, n in CONFIGS]
    assert all(v["label"] in video.proto.alt and v["outcome"] in video.proto.alt for v in records)
    for v in records:
        assert v["bytes"][4:8] == b"ftyp"  # an mp4 file
    captions = [c.value for c in ran.caption]
    for v in records:
        assert any(f"M_inf = {v['m_inf']}, N = {v['n']}" in c and v["outcome"] in c for c in captions)
    assert any("replayed exactly as in the tables" in c for c in captions)


def test_episode_table_and_picker_show_each_episode_and_its_video_matches(ran):
    """Per episode and configuration: success, steps and return; picking episode 1 renders episode 1."""
    rows = ran.session_state["ro_results"]["rows"]
    table = ran.dataframe[1].value
    assert list(table.columns) == ["episode", "configuration", "success", "steps", "return"]
    expected = [(i, r["label"], r["episode_success"][i], r["episode_length"][i], round(r["episode_return"][i], 1))
                for i in range(EPISODES) for r in rows]  # grouped by episode: compare configurations at a glance
    assert [tuple(t) for t in table.itertuples(index=False)] == expected
    picker = ran.selectbox(key="ro_episode")
    assert picker.options == [f"Episode {i}: {sum(r['episode_success'][i] for r in rows)} of {len(rows)} configurations "
                              "succeed" for i in range(EPISODES)]
    picker.set_value(1).run()
    assert_clean(ran)
    records = shown(ran)["videos"]
    for r, v in zip(rows, records):
        assert (v["episode"], v["success"], v["length"]) == (1, r["episode_success"][1], r["episode_length"][1])
        assert v["episode_return"] == pytest.approx(r["episode_return"][1])
    assert any(h.value == "Episode 1, side by side" for h in ran.subheader)
    assert len(ran.get("video")) == 1
    ran.selectbox(key="ro_episode").set_value(0).run()
    assert_clean(ran)


def test_q_figure_has_one_trace_per_configuration_along_the_episode(ran):
    (spec,) = [json.loads(c.proto.spec) for c in ran.get("plotly_chart")]
    records = shown(ran)["videos"]
    assert spec["layout"]["title"]["text"].endswith("along episode 0")
    assert len(spec["data"]) == len(CONFIGS)
    for trace, v in zip(spec["data"], records):
        y = arr(trace["y"])
        assert trace["name"].startswith(v["label"])
        assert len(y) == v["length"] and 1 <= v["length"] <= 200
        assert np.all(np.isfinite(y)) and np.allclose(y, v["q"])


def test_downloads_and_side_by_side_video(ran, tmp_path):
    labels = [d.proto.label for d in ran.get("download_button")]
    assert labels == ["Results (CSV)", "Side-by-side video (mp4)"]
    import imageio.v2 as imageio

    res = ran.session_state["ro_results"]
    path = tmp_path / "sbs.mp4"
    path.write_bytes(shown(ran)["side_by_side"])
    with imageio.get_reader(path, format="FFMPEG") as reader:
        first = reader.get_data(0)
        frames = reader.count_frames()
    assert first.shape[:2] == (240, 240 * len(CONFIGS))
    videos = shown(ran)["videos"]
    for v in videos:  # steps 0, 2, ..., the final state (frame j = step min(2j, length)), then 1 s (10 frames) held
        assert v["frames"] == -(-v["length"] // 2) + 1 + 10
    assert frames == max(v["frames"] for v in videos)  # the shorter panels hold their last frame
    csv = R.results_csv(res["rows"], policies.checkpoint_label(res["name"]), res["env"]).splitlines()
    assert len(csv) == 1 + len(CONFIGS) and csv[1].startswith(f"cube-tiny,{ENV},1,1,{EPISODES},")


def test_results_survive_widget_changes(ran, policy):
    at = ran
    at.number_input(key="ro_episodes").set_value(EPISODES + 1).run()
    assert_clean(at)
    assert list(at.dataframe[0].value.columns[1:]) == ["M_inf=1, N=1", "M_inf=2, N=2"]
    assert len(at.get("video")) == 1
    assert any("Showing the last run" in i.value for i in at.info)
    at.number_input(key="ro_episodes").set_value(EPISODES).run()
    assert not any("Showing the last run" in i.value for i in at.info)


def test_same_settings_come_from_the_caches(ran, policy, monkeypatch):
    """A second session with the same checkpoint, configurations, K and seed runs no episode and renders nothing:
    the server's heavy-job board (app/jobs.py) hands it the first session's results."""
    def boom(*a, **k):
        raise AssertionError("episodes ran again")

    def no_render(*a, **k):
        raise AssertionError("the videos were rendered again")

    monkeypatch.setattr(R, "run_configs", boom)
    monkeypatch.setattr(R, "render_videos", no_render)
    at = page(policy)
    at.run()
    set_configs(at, CONFIGS, EPISODES)
    t0 = time.perf_counter()
    run_button(at).click().run()
    seconds = time.perf_counter() - t0
    assert_clean(at)
    assert shown(at)["side_by_side"] == shown(ran)["side_by_side"]
    assert len(at.get("video")) == 1 and not at.get("progress")
    assert at.session_state["ro_results"]["rows"] == ran.session_state["ro_results"]["rows"]
    print(f"\ncached Run: {seconds:.1f} s")
    # Another seed is not in the cache: the episodes must run (and hit the patched function).
    at.number_input(key="ro_seed").set_value(1).run()
    run_button(at).click().run()
    assert any("episodes ran again" in e.value for e in at.error)


@pytest.mark.parametrize("case, expected", [
    ("corrupt", "not a readable SORL Lab checkpoint"),
    ("toy", "toy 2-D world 'ring'"),
    ("mismatch", "observations of size 10"),
    ("missing", "No file at"),
])
def test_bad_checkpoints_give_an_error_on_the_page(workdir, case, expected):
    path = {
        "corrupt": lambda: write(workdir / "corrupt.pt", b"PK\x03\x04 not really a zip" * 50),
        "toy": lambda: REPO / "assets" / "toy" / "ring.pt",
        "mismatch": lambda: save_policy(workdir / "mismatch.pt", obs_dim=10),
        "missing": lambda: workdir / "nothing-here.pt",
    }[case]()
    at = page()
    at.run()
    at.radio(key="ro_source").set_value("Path on this machine").run()
    at.text_input(key="ro_path").input(str(path)).run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.error) == 1 and expected in at.error[0].value, [e.value for e in at.error]
    assert not re.search(r"\b[A-Z]\w*(Error|Exception)\b|np\.float", at.error[0].value)  # words for people
    assert run_button(at).disabled


def test_a_path_outside_the_allowed_folders_is_refused_and_never_read(workdir, monkeypatch):
    """/etc/passwd: one sentence naming the allowed folders; the file is not opened, tested or hashed (resolving
    the path to follow symlinks is all that happens to it)."""
    touched = []
    for name in ("read_bytes", "read_text", "is_file", "exists", "open"):
        original = getattr(Path, name)

        def spy(self, *a, _original=original, _name=name, **k):
            if "passwd" in str(self):
                touched.append(_name)
            return _original(self, *a, **k)

        monkeypatch.setattr(Path, name, spy)
    real_open = open

    def open_spy(file, *a, **k):
        if "passwd" in str(file):
            touched.append("open()")
        return real_open(file, *a, **k)

    monkeypatch.setattr("builtins.open", open_spy)
    at = page()
    at.run()
    at.radio(key="ro_source").set_value("Path on this machine").run()
    at.text_input(key="ro_path").input("/etc/passwd").run()
    assert not at.exception, [e.value for e in at.exception]
    (error,) = at.error
    with pytest.raises(PathNotAllowed) as refusal:
        resolve_allowed("/etc/passwd")
    assert error.value == str(refusal.value)  # the allow-list's own sentence, nothing added
    assert "runs/" in error.value and "SORL_LAB_PATHS" in error.value and "passwd" not in error.value
    assert error.value.count(". ") == 0 and error.value.endswith(".")  # one sentence
    assert touched == [] and run_button(at).disabled
    for text in ("../../etc/passwd", "runs/../../../etc/passwd"):  # relative escapes too
        at.text_input(key="ro_path").input(text).run()
        assert len(at.error) == 1 and at.error[0].value == str(refusal.value)
    assert touched == []


def test_a_checkpoint_in_an_allowed_folder_loads_and_elsewhere_is_refused(tmp_path, policy, monkeypatch):
    allowed, other = tmp_path / "allowed", tmp_path / "other"
    allowed.mkdir(), other.mkdir()
    for folder in (allowed, other):
        (folder / "mine.pt").write_bytes(policy.read_bytes())
    monkeypatch.setenv("SORL_LAB_PATHS", str(allowed))
    at = page()
    at.run()
    at.radio(key="ro_source").set_value("Path on this machine").run()
    at.text_input(key="ro_path").input(str(allowed / "mine.pt")).run()
    assert_clean(at)
    assert any(ENV in c.value for c in at.caption) and not run_button(at).disabled
    at.text_input(key="ro_path").input(str(other / "mine.pt")).run()
    assert len(at.error) == 1 and "only reads inside" in at.error[0].value and run_button(at).disabled


def test_messages_name_no_exception_classes_or_numpy_reprs():
    from sorl_core.checkpoint import CheckpointError

    assert plain_message(CheckpointError("x.pt is not a readable SORL Lab checkpoint (corrupt, truncated or foreign "
                                         "file: UnpicklingError). Use a .pt file.")) == (
        "x.pt is not a readable SORL Lab checkpoint (corrupt, truncated or foreign file). Use a .pt file.")
    assert plain_message(RuntimeError("ValueError: worker failed at np.float64(0.25)\nTraceback ...")) == (
        "worker failed at 0.25")
    assert plain_message(KeyError()) == "an unexpected problem"


def test_card_key_value_tables_render_without_an_empty_row():
    card = (REPO / "assets" / "ogbench" / "cube-single-task2" / "card.md").read_text()
    assert "| | |" in card  # the card as written: a key-value table with an empty header row
    out = policies.card_markdown(card)
    assert "| | |" not in out and "|---|---|" not in out.splitlines()
    assert "- **iterations**: 80,000 (the paper: 1,000,000)" in out
    assert out.startswith("### cube-single-task2\n")  # headings two levels down: the card sits in an expander
    assert "| M_inf | N=1 | N=4 | N=16 |" in out  # real tables with a header stay tables
    assert policies.card_markdown("| a | b |\n|---|---|\n| 1 | 2 |") == "| a | b |\n|---|---|\n| 1 | 2 |"


def test_bundled_checkpoint_is_offered_with_its_card(workdir, policy, monkeypatch):
    root = workdir / "bundled"
    (root / "cube-single-tiny").mkdir(parents=True, exist_ok=True)
    (root / "cube-single-tiny" / "policy.pt").write_bytes(policy.read_bytes())
    (root / "cube-single-tiny" / "card.md").write_text("# cube-single tiny\n\nAn untrained policy for the tests.\n\n"
                                                       "| | |\n|---|---|\n| iterations | 10 |\n")
    monkeypatch.setenv("SORL_LAB_OGBENCH_DIR", str(root))
    at = page()
    at.run()
    assert_clean(at)
    assert not any("No bundled" in i.value for i in at.info)
    assert at.radio(key="ro_source").value == "Bundled"
    assert at.selectbox(key="ro_bundled").options == ["cube-single-tiny"]
    (exp,) = at.expander
    assert exp.label == "Model card — cube-single-tiny"
    assert any("An untrained policy for the tests." in m.value for m in exp.markdown)
    assert any("- **iterations**: 10" in m.value for m in exp.markdown)
    assert not any("| | |" in m.value for m in exp.markdown)
    assert not run_button(at).disabled
    assert any("cube-single-tiny/policy.pt" in c.value and ENV in c.value for c in at.caption)


def test_the_verifier_choice_ranks_the_candidates_of_every_configuration(policy):
    """consensus needs no critic: the N = 2 configuration's compute drops to its actor calls; the run's key and
    its videos carry the verifier, so switching it asks for a new Run instead of showing stale numbers."""
    at = page(policy)
    at.run()
    set_configs(at, CONFIGS, EPISODES)
    at.selectbox(key="ro_verifier").set_value("consensus").run()
    run_button(at).click().run()
    assert_clean(at)
    res = at.session_state["ro_results"]
    assert res["verifier"] == "consensus"
    calls = {(r["m_inf"], r["n"]): r["critic_calls"] for r in res["rows"]}
    assert calls == {(1, 1): 0, (2, 2): 0}
    at.selectbox(key="ro_verifier").set_value("q").run()
    assert any("verifier consensus" in i.value for i in at.info)  # the table shown is the last run's


def test_target_q_is_refused_for_a_file_without_target_critic(workdir):
    agent = SORLAgent(SORLConfig(obs_dim=28, action_dim=5, size="tiny"), seed=0)
    path = save_checkpoint(workdir / "export.pt", agent, extra={"kind": "ogbench", "env": ENV}, inference_only=True)
    at = page(path)
    at.run()
    at.selectbox(key="ro_verifier").set_value("target-q").run()
    assert not at.exception and run_button(at).disabled
    assert any("no target critic" in w.value for w in at.warning)


def test_the_page_opens_on_the_headline_policy_among_the_real_bundled_ones(monkeypatch):
    """With the repository's own assets (six policies, cube-double sorting first), the page opens on cube-single-task2."""
    monkeypatch.delenv("SORL_LAB_OGBENCH_DIR")  # the page's default folder: the repository's assets/ogbench
    at = page()
    at.run()
    assert_clean(at)
    names = at.selectbox(key="ro_bundled").options
    assert "cube-double-task2" in names and names[0] == policies.HEADLINE_POLICY == at.selectbox(key="ro_bundled").value


# --------------------------------------------------------------------------- baselines (sorl_core/baselines.py)
def save_baseline(path: Path, method: str) -> Path:
    from sorl_core.baselines import make_agent

    agent = make_agent(SORLConfig(obs_dim=28, action_dim=5, size="tiny", method=method, precision="fp32"), seed=0)
    return save_checkpoint(path, agent, extra={"kind": "ogbench", "env": ENV})


def test_an_fql_checkpoint_offers_one_euler_step_and_names_its_method(workdir):
    at = page(save_baseline(workdir / "fql.pt", "fql"))
    at.run()
    assert not at.exception and not at.error
    assert any("baseline fql (one-step policy): acts in one call" in c.value for c in at.caption)
    assert not [s for s in at.select_slider if s.key.startswith("ro_m")]  # nothing to slide: M_inf is 1
    assert any(c.value.startswith("M_inf = 1: this policy acts in one network call") for c in at.caption)
    assert not at.warning  # its configurations spread over N, not three copies of M_inf = 1, N = 1
    assert [at.number_input(key=f"ro_n{i}").value for i in range(3)] == [1, 4, 16]


def test_a_flow_bc_checkpoint_ranks_by_consensus_and_plays_without_a_critic(workdir):
    """flow-bc has no critic: the page loads it, offers only verifiers that need none, and its episodes, table and
    video run with no Q to show."""
    at = page(save_baseline(workdir / "flow-bc.pt", "flow-bc"))
    at.run()
    assert not at.exception and not at.error
    box = at.selectbox(key="ro_verifier")
    assert box.value == "consensus" and "q" not in box.options and "consensus" in box.options
    set_configs(at, [(1, 1), (2, 2)], 1)
    run_button(at).click().run()
    assert_clean(at)
    res = at.session_state["ro_results"]
    assert [r["critic_calls"] for r in res["rows"]] == [0, 0]
    assert [r.strip() for r in at.dataframe[0].value.iloc[-1, 1:]] == ["no critic", "no critic"]
    assert 0 in res["renders"]  # the video of episode 0 was made
