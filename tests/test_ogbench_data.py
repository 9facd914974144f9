"""OGBench datasets regenerated offline: official file format, OGBench's loader and reward relabelling,
seeding (same seed, any number of workers: same bits), resume after an interruption, and the errors.

Everything runs on a few episodes (2 CPU cores): never a full-size dataset.
"""

import warnings

import numpy as np
import pytest
import tyro

from sorl_core.ogbench.generation import DataGenerateConfig, generate_dataset
from sorl_core.ogbench.datasets import UnsupportedDatasetError, dataset_name_for, dataset_spec, load_dataset_and_env

pytest.importorskip("ogbench")
mujoco = pytest.importorskip("mujoco")
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # glfw "no DISPLAY", gymnasium Box casting

L = 1001  # official rows per episode


def gen(tmp, name, on_chunk=None, **kw):
    kw.setdefault("workers", 1)
    kw.setdefault("progress", False)
    return generate_dataset(DataGenerateConfig(name, dataset_dir=str(tmp), **kw), on_chunk=on_chunk)


def raw(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def cube_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cube")
    gen(d, "cube-single-play-v0", episodes=3)
    return d


@pytest.fixture(scope="module")
def puzzle_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("puzzle")
    gen(d, "puzzle-3x3-play-v0", episodes=1)
    return d


@pytest.fixture(scope="module")
def maze_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("maze")
    gen(d, "pointmaze-medium-navigate-v0", episodes=3)
    return d


def check_official_format(path, episodes, length, buttons):
    data = raw(path)
    keys = {"observations", "actions", "terminals", "qpos", "qvel"} | ({"button_states"} if buttons else set())
    assert set(data) == keys
    n = episodes * length
    for k in ("observations", "actions", "qpos", "qvel"):
        assert data[k].dtype == np.float32 and data[k].shape[0] == n and np.isfinite(data[k]).all()
    assert data["terminals"].dtype == np.bool_ and data["terminals"].shape == (n,)
    assert np.flatnonzero(data["terminals"]).tolist() == [length * (e + 1) - 1 for e in range(episodes)]
    assert np.abs(data["actions"]).max() <= 1.0
    if buttons:
        assert data["button_states"].dtype == np.int64 and data["button_states"].shape[0] == n
    return data


@pytest.mark.parametrize(
    "fixture, name, episodes, buttons, act_dim",
    [
        ("cube_dir", "cube-single-play-v0", 3, False, 5),
        ("puzzle_dir", "puzzle-3x3-play-v0", 1, True, 5),
        ("maze_dir", "pointmaze-medium-navigate-v0", 3, False, 2),
    ],
)
def test_files_have_the_official_format(request, fixture, name, episodes, buttons, act_dim):
    d = request.getfixturevalue(fixture)
    train = check_official_format(d / f"{name}.npz", episodes, L, buttons)
    val = check_official_format(d / f"{name}-val.npz", 1, L, buttons)  # a tenth, at least one
    assert train["actions"].shape[1] == act_dim
    assert not np.array_equal(val["qpos"][:L], train["qpos"][:L])  # separate seed stream
    assert not any(p.name.startswith(".") for p in d.iterdir())  # no partial folder or temp file left
    # Actions really act: the state moves within episodes.
    assert np.abs(np.diff(train["qpos"][:L], axis=0)).max() > 1e-3


def set_manip_state(u, qpos, qvel, buttons=None):
    qpos, qvel = qpos.astype(np.float64), qvel.astype(np.float64)
    if buttons is None:
        u.set_state(qpos, qvel)
    else:
        u.set_state(qpos, qvel, buttons)
    mujoco.mj_rnePostConstraint(u._model, u._data)


def test_cube_loads_through_ogbench_and_singletask_rewards_match_the_env(cube_dir):
    env, train, val = load_dataset_and_env("cube-single-play-singletask-task2-v0", cube_dir, add_info=True)
    n = 3 * (L - 1)  # OGBench drops each episode's last row (it has no next observation)
    assert train["observations"].shape == (n, 28) and train["next_observations"].shape == (n, 28)
    assert train["actions"].shape == (n, 5) and val["observations"].shape == (L - 1, 28)
    assert train["terminals"].dtype == np.float32
    assert np.flatnonzero(train["terminals"]).tolist() == [(L - 1) * (e + 1) - 1 for e in range(3)]
    f = raw(cube_dir / "cube-single-play-v0.npz")
    assert np.array_equal(train["next_observations"][: L - 1], f["observations"][1:L])

    u = env.unwrapped
    env.reset()  # task2's goal
    rows = np.arange(0, n, 7)
    env_rewards = []
    for i in rows:
        set_manip_state(u, train["qpos"][i], train["qvel"][i])
        env_rewards.append(u.compute_reward())  # the env's own single-task reward: #satisfied - #subgoals
        if i % 49 == 0:  # qpos/qvel are the state of the same row's observation (arm joints, cube)
            ob = u.compute_observation()
            cols = list(range(12)) + list(range(19, 28))
            np.testing.assert_allclose(ob[cols], train["observations"][i][cols], atol=1e-5)
    env_rewards = np.array(env_rewards, dtype=np.float32)
    np.testing.assert_array_equal(env_rewards, train["rewards"][rows])
    np.testing.assert_array_equal(train["masks"][rows], (env_rewards != 0).astype(np.float32))
    assert set(np.unique(train["rewards"])) <= {-1.0, 0.0}
    env.close()

    # The plain goal-conditioned name loads the same file, without the state keys.
    env2, train2, _ = load_dataset_and_env("cube-single-play-v0", cube_dir)
    assert "qpos" not in train2 and "rewards" not in train2
    np.testing.assert_array_equal(train2["observations"], train["observations"])
    env2.close()


def test_puzzle_singletask_rewards_match_the_env(puzzle_dir):
    env, train, _ = load_dataset_and_env("puzzle-3x3-play-singletask-task4-v0", puzzle_dir, add_info=True)
    assert train["observations"].shape[0] == L - 1 and train["button_states"].shape[1] == 9
    u = env.unwrapped
    env.reset()
    rows = np.arange(0, train["observations"].shape[0], 11)
    env_rewards = []
    for i in rows:
        set_manip_state(u, train["qpos"][i], train["qvel"][i], train["button_states"][i])
        env_rewards.append(u.compute_reward())
    np.testing.assert_array_equal(np.array(env_rewards, dtype=np.float32), train["rewards"][rows])
    # Button states change during play (buttons are pressed).
    assert len({tuple(b) for b in train["button_states"]}) > 1
    env.close()


def test_pointmaze_singletask_success_matches_the_env(maze_dir):
    env, train, _ = load_dataset_and_env("pointmaze-medium-navigate-singletask-task1-v0", maze_dir, add_info=True)
    assert train["observations"].shape == (3 * (L - 1), 2)
    np.testing.assert_array_equal(train["observations"], train["qpos"])  # the point's observation is its xy
    u = env.unwrapped
    env.reset()
    success = []
    for xy in train["qpos"][::5]:
        u.set_xy(xy.astype(np.float64))
        success.append(float(u.compute_success()))
    np.testing.assert_array_equal(np.array(success, np.float32) - 1.0, train["rewards"][::5])
    # Navigate: the point travels between goals across the maze.
    assert np.ptp(train["qpos"], axis=0).min() > 5.0
    env.close()


@pytest.mark.parametrize(
    "name", ["cube-double-noisy-v0", "scene-noisy-v0", "puzzle-3x3-noisy-v0", "pointmaze-medium-stitch-v0"]
)
def test_other_recipes_run(tmp_path, name):
    r = gen(tmp_path, name, episodes=1, episode_length=30, val=False)
    assert r.episodes == 1 and r.env_steps >= 30 and not (tmp_path / f"{name}-val.npz").exists()
    check_official_format(tmp_path / f"{name}.npz", 1, 30, buttons=name.split("-")[0] in ("scene", "puzzle"))


SMALL = dict(episodes=4, episode_length=40, chunk_episodes=1)  # 4 train chunks + 1 val chunk


@pytest.fixture(scope="module")
def small_ref(tmp_path_factory):
    d = tmp_path_factory.mktemp("ref")
    gen(d, "cube-single-play-v0", **SMALL)
    return raw(d / "cube-single-play-v0.npz"), raw(d / "cube-single-play-v0-val.npz")


def assert_same(a, b):
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_same_seed_same_bits_with_one_or_two_workers(tmp_path, small_ref):
    state = np.random.get_state()
    r = gen(tmp_path / "two", "cube-single-play-v0", workers=2, **SMALL)
    assert r.episodes == 5 and r.env_steps == 5 * 40
    assert_same(small_ref[0], raw(tmp_path / "two" / "cube-single-play-v0.npz"))
    assert_same(small_ref[1], raw(tmp_path / "two" / "cube-single-play-v0-val.npz"))
    gen(tmp_path / "other", "cube-single-play-v0", seed=1, val=False, **{**SMALL, "episodes": 1})
    other = raw(tmp_path / "other" / "cube-single-play-v0.npz")
    assert not np.array_equal(small_ref[0]["qpos"][:40], other["qpos"])
    # Chunking does not matter either, and the caller's global NumPy state is left alone.
    gen(tmp_path / "chunks", "cube-single-play-v0", **{**SMALL, "chunk_episodes": 3})
    assert_same(small_ref[0], raw(tmp_path / "chunks" / "cube-single-play-v0.npz"))
    assert np.array_equal(np.random.get_state()[1], state[1])


class Interrupt(Exception):
    pass


def test_resume_after_interruption(tmp_path, small_ref, capsys):
    def stop(index):
        raise Interrupt(index)

    with pytest.raises(Interrupt):  # interrupted after its first chunk
        gen(tmp_path, "cube-single-play-v0", on_chunk=stop, **SMALL)
    partial = tmp_path / ".partial-cube-single-play-v0-s0"
    assert sorted(p.name for p in partial.iterdir()) == ["chunk-0000.npz", "meta.json"]
    assert not (tmp_path / "cube-single-play-v0.npz").exists()
    (partial / "chunk-0002.npz").write_bytes(b"half a file")  # unreadable chunks are redone

    with pytest.raises(ValueError, match="no-resume"):  # other settings do not mix with these chunks
        gen(tmp_path, "cube-single-play-v0", **{**SMALL, "episodes": 5})
    r = gen(tmp_path, "cube-single-play-v0", progress=True, workers=2, **SMALL)  # resumed in the worker pool
    assert "resuming, 1 of 5 chunks" in capsys.readouterr().out
    assert r.episodes == 4 and not partial.exists()
    assert_same(small_ref[0], raw(tmp_path / "cube-single-play-v0.npz"))
    assert_same(small_ref[1], raw(tmp_path / "cube-single-play-v0-val.npz"))

    r = gen(tmp_path, "cube-single-play-v0", progress=True, **SMALL)
    assert r.skipped and r.episodes == 0 and "already exist" in capsys.readouterr().out
    (tmp_path / "cube-single-play-v0-val.npz").unlink()  # only the missing file is made
    r = gen(tmp_path, "cube-single-play-v0", **SMALL)
    assert r.episodes == 1
    assert_same(small_ref[1], raw(tmp_path / "cube-single-play-v0-val.npz"))
    r = gen(tmp_path, "cube-single-play-v0", force=True, **{**SMALL, "episodes": 2})  # --force replaces
    assert r.episodes == 3 and raw(tmp_path / "cube-single-play-v0.npz")["terminals"].sum() == 2


def test_unsupported_and_unknown_names(tmp_path):
    with pytest.raises(UnsupportedDatasetError) as exc:
        gen(tmp_path, "antmaze-large-navigate-v0")
    msg = str(exc.value)
    assert "expert" in msg
    assert "https://rail.eecs.berkeley.edu/datasets/ogbench/antmaze-large-navigate-v0.npz" in msg
    assert "antmaze-large-navigate-v0-val.npz" in msg and "--dataset-dir" in msg and "~/.ogbench/data" in msg
    for name in ("humanoidmaze-medium-stitch-v0", "antsoccer-arena-navigate-v0", "visual-cube-single-play-v0"):
        with pytest.raises(UnsupportedDatasetError):
            dataset_spec(name)
    with pytest.raises(ValueError, match="cube-single-play-v0") as exc:
        dataset_spec("cube-single-play-v7")
    assert not isinstance(exc.value, UnsupportedDatasetError)
    assert not any(tmp_path.iterdir())


def test_missing_files_say_how_to_get_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="sorl-lab data generate scene-play-v0"):
        load_dataset_and_env("scene-play-singletask-task2-v0", tmp_path)
    with pytest.raises(FileNotFoundError, match="antmaze-large-navigate-v0-val.npz") as exc:
        load_dataset_and_env("antmaze-large-navigate-v0", tmp_path)
    assert "data generate" not in str(exc.value)


def test_dataset_names():
    assert dataset_name_for("cube-single-play-singletask-task2-v0") == "cube-single-play-v0"
    assert dataset_name_for("puzzle-4x4-noisy-singletask-v0") == "puzzle-4x4-noisy-v0"
    assert dataset_name_for("pointmaze-giant-stitch-singletask-task5-v0") == "pointmaze-giant-stitch-v0"
    assert dataset_name_for("scene-play-oraclerep-v0") == "scene-play-v0"
    assert dataset_name_for("cube-double-play-v0") == "cube-double-play-v0"
    with pytest.raises(ValueError, match="dataset type"):
        dataset_name_for("cube-single-singletask-task2-v0")
    spec = dataset_spec("puzzle-4x6-noisy-v0")
    assert (spec.env_id, spec.episodes, spec.episode_length, spec.p_random_action) == ("puzzle-4x6-v0", 5000, 1001, 0.2)
    assert dataset_spec("cube-triple-play-v0").episodes == 3000
    assert (dataset_spec("pointmaze-giant-navigate-v0").episodes, dataset_spec("pointmaze-giant-navigate-v0").episode_length) == (500, 2001)
    assert (dataset_spec("pointmaze-large-stitch-v0").episodes, dataset_spec("pointmaze-large-stitch-v0").episode_length) == (5000, 201)


def test_config_is_a_cli():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = tyro.cli(DataGenerateConfig, args=["scene-play-v0", "--episodes", "5", "--workers", "1", "--no-val"])
    assert (cfg.dataset, cfg.episodes, cfg.workers, cfg.val, cfg.seed) == ("scene-play-v0", 5, 1, False, 0)
    assert DataGenerateConfig().episodes is None and DataGenerateConfig().episode_length is None


def test_scene_health_check_is_the_scripts():
    from sorl_core.ogbench.generation import _Collector

    qpos = np.zeros((5, 25))
    qpos[:, 14:17] = [0.4, 0.0, 0.02]
    assert _Collector._scene_healthy(qpos)
    far_right = qpos.copy()
    far_right[3, 15] = 0.29
    assert not _Collector._scene_healthy(far_right)
    in_drawer = qpos.copy()
    in_drawer[2, 15:17] = [-0.31, 0.07]  # far left but at drawer height: fine
    assert _Collector._scene_healthy(in_drawer)
    in_drawer[2, 16] = 0.02  # far left on the table: out of view
    assert not _Collector._scene_healthy(in_drawer)
