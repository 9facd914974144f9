"""Tests for the toy 2-D offline bandit worlds (sorl_core.toy)."""

import numpy as np
import pytest

from sorl_core.toy import (
    RING_RADIUS,
    WORLDS,
    ToyWorld,
    action_metrics,
    make_dataset,
    make_world,
    reward_grid,
    sliced_wasserstein,
)

N = 4000  # small enough to keep the whole file fast on a shared 2-core box


@pytest.fixture(scope="module")
def datasets():
    return {name: make_dataset(name, size=N, seed=0) for name in WORLDS}


def ring_modes():
    angles = 2 * np.pi * np.arange(8) / 8
    return angles, RING_RADIUS * np.stack([np.cos(angles), np.sin(angles)], axis=1)


# --------------------------------------------------------------------------- datasets
@pytest.mark.parametrize("name", WORLDS)
def test_dataset_shapes_dtypes_and_bounds(name, datasets):
    d = datasets[name]
    expected = {
        "observations": (N, 1),
        "actions": (N, 2),
        "rewards": (N,),
        "next_observations": (N, 1),
        "masks": (N,),
        "terminals": (N,),
    }
    assert set(d) == set(expected)
    for key, shape in expected.items():
        assert d[key].shape == shape, key
        assert d[key].dtype == np.float32, key
    assert np.all(np.abs(d["actions"]) <= 1.0)
    assert np.all(np.abs(d["observations"]) <= 1.0)
    np.testing.assert_array_equal(d["next_observations"], d["observations"])
    assert np.all(d["masks"] == 0.0) and np.all(d["terminals"] == 1.0)
    # The stored rewards are the closed-form reward of the stored pairs.
    expected_rewards = make_world(name).reward(d["actions"], d["observations"])
    np.testing.assert_allclose(d["rewards"], expected_rewards, atol=1e-6)


@pytest.mark.parametrize("name", WORLDS)
def test_dataset_deterministic_per_seed(name, datasets):
    again = make_dataset(make_world(name), size=N, seed=0)
    for key, value in datasets[name].items():
        np.testing.assert_array_equal(again[key], value)
    other = make_dataset(name, size=N, seed=1)
    assert not np.array_equal(other["actions"], datasets[name]["actions"])
    assert not np.array_equal(other["observations"], datasets[name]["observations"])


# --------------------------------------------------------------------------- support
@pytest.mark.parametrize("name", WORLDS)
def test_behaviour_is_mostly_in_support(name, datasets):
    world = make_world(name)
    acts = datasets[name]["actions"]
    inside = world.in_support(acts)
    assert inside.dtype == bool and inside.shape == (N,)
    assert inside.mean() >= 0.97
    dist = world.support_distance(acts)
    np.testing.assert_array_equal(dist == 0, inside)
    assert np.all(dist >= 0)


FAR_POINTS = {
    "ring": [[0.0, 0.0], [1.0, 1.0], [-1.0, -1.0]],
    "moons": [[0.0, 0.0], [1.0, 1.0], [-1.0, -1.0], [0.9, 0.9]],
    "checkerboard": [[1.0, 1.0], [-1.0, -1.0], [0.9, -0.9], [-0.675, -0.225]],  # last: a white cell's centre
    "spiral": [[1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]],
}


@pytest.mark.parametrize("name", WORLDS)
def test_far_points_are_out_of_support(name):
    world = make_world(name)
    pts = np.array(FAR_POINTS[name])
    assert not world.in_support(pts).any()
    assert np.all(world.support_distance(pts) > 0.05)


def test_support_distance_closed_form_values():
    ring = make_world("ring")
    # The origin is RING_RADIUS from every mode centre; the support extends 3 std = 0.21 past it.
    assert ring.support_distance(np.zeros(2)) == pytest.approx(RING_RADIUS - 0.21, abs=1e-6)
    board = make_world("checkerboard")
    # A white cell's centre is half a cell (0.225) from its black neighbours.
    assert board.support_distance(np.array([-0.675, -0.225])) == pytest.approx(0.225, abs=1e-5)
    assert board.in_support(np.array([[-0.675, -0.675], [0.0, 0.0]])).all()  # black cell centre, board corner


# --------------------------------------------------------------------------- reward
def test_ring_reward_prefers_modes_along_context_direction():
    ring = make_world("ring")
    angles, modes = ring_modes()
    for c, best_angle in [(0.0, np.pi / 2), (1.0, 3 * np.pi / 4), (-1.0, np.pi / 4)]:
        r = ring.reward(modes, np.full((8, 1), c))
        assert angles[np.argmax(r)] == pytest.approx(best_angle)
        assert r.max() - r.min() > 1.0  # some modes are clearly better than others
    r0 = ring.reward(modes, np.zeros((8, 1)))
    up, down = np.argmin(np.abs(angles - np.pi / 2)), np.argmin(np.abs(angles - 3 * np.pi / 2))
    assert r0[up] > r0[down] + 1.0


def test_reward_broadcasts_and_penalises_off_support():
    ring = make_world("ring")
    _, modes = ring_modes()
    acts = np.broadcast_to(modes, (3, 8, 2))
    ctx = np.array([[-1.0], [0.0], [1.0]])
    r = ring.reward(acts, ctx[:, None, :])
    assert r.shape == (3, 8) and r.dtype == np.float32
    np.testing.assert_allclose(r[1], ring.reward(modes, np.zeros((1,))), atol=1e-6)
    # Off the support the penalty dominates: the origin scores below every mode.
    assert ring.reward(np.zeros(2), 0.0) < ring.reward(modes, 0.0).min()
    with pytest.raises(ValueError):
        ring.reward(modes, np.zeros(8))  # contexts must be (..., 1)


@pytest.mark.parametrize("name", WORLDS)
def test_best_reward_bounds_every_action(name, datasets):
    world = make_world(name)
    d = datasets[name]
    best = world.best_reward(d["observations"])
    assert best.shape == (N,) and best.dtype == np.float32
    assert np.all(world.reward(d["actions"], d["observations"]) <= best + 1e-5)
    # A dense grid over all actions approaches, but never beats, the optimum.
    for c in (-1.0, 0.3):
        _, _, grid = reward_grid(world, c, resolution=121)
        opt = float(world.best_reward(np.array([c])))
        assert grid.max() <= opt + 1e-5
        assert grid.max() >= opt - 0.03


def test_reward_grid_layout():
    world = make_world("ring")
    xs, ys, r = reward_grid(world, 0.0, resolution=11, lim=0.9)
    assert xs.shape == ys.shape == (11,) and r.shape == (11, 11)
    assert xs[0] == pytest.approx(-0.9) and xs[-1] == pytest.approx(0.9)
    i, j = 3, 7
    expected = world.reward(np.array([xs[j], ys[i]]), 0.0)
    assert r[i, j] == pytest.approx(float(expected))


# --------------------------------------------------------------------------- multimodality
def test_ring_is_multimodal(datasets):
    _, modes = ring_modes()
    acts = datasets["ring"]["actions"]
    nearest = np.argmin(np.linalg.norm(acts[:, None, :] - modes[None], axis=-1), axis=1)
    frac = np.bincount(nearest, minlength=8) / len(acts)
    assert np.all((frac > 0.08) & (frac < 0.17)), frac


# --------------------------------------------------------------------------- sliced Wasserstein
def test_sliced_wasserstein_properties(datasets):
    x = datasets["ring"]["actions"]
    assert sliced_wasserstein(x, x) == pytest.approx(0.0, abs=1e-9)
    shifted = sliced_wasserstein(x, x + np.array([0.3, 0.0], dtype=np.float32))
    assert shifted > 0.1  # E|0.3 cos(theta)| = 0.19 over the projection fan
    assert sliced_wasserstein(x, x[:1000], seed=3) == sliced_wasserstein(x, x[:1000], seed=3)  # deterministic
    same = sliced_wasserstein(x, make_dataset("ring", size=3000, seed=1)["actions"])  # different sizes
    other = sliced_wasserstein(x, datasets["moons"]["actions"])
    assert same < 0.05
    assert same < 0.25 * other


def test_sliced_wasserstein_remembers_large_sets_without_changing_the_value(datasets):
    from sorl_core import toy

    data = datasets["ring"]["actions"]
    policy = np.random.default_rng(0).uniform(-1, 1, size=(256, 2))
    toy._SORTED_PROJECTIONS.clear()
    first = sliced_wasserstein(policy, data)
    assert len(toy._SORTED_PROJECTIONS) == 1  # the data's projections, not the 256 actions'
    assert sliced_wasserstein(policy, data) == first and len(toy._SORTED_PROJECTIONS) == 1
    moved = data.copy()
    moved[0] += 0.5  # one point changed: a different set, sorted anew
    assert sliced_wasserstein(policy, moved) != first and len(toy._SORTED_PROJECTIONS) == 2
    toy._SORTED_PROJECTIONS.clear()
    assert sliced_wasserstein(policy, data) == first
    for seed in range(5):  # the memory stays bounded
        sliced_wasserstein(policy, data, seed=seed)
    assert len(toy._SORTED_PROJECTIONS) == 4


# --------------------------------------------------------------------------- action_metrics
@pytest.mark.parametrize("name", WORLDS)
def test_action_metrics_on_behaviour(name, datasets):
    d = datasets[name]
    m = action_metrics(name, d["actions"], d["observations"], d["actions"])
    assert set(m) == {"mean_reward", "frac_in_support", "sliced_wasserstein", "reward_gap"}
    assert all(isinstance(v, float) for v in m.values())
    assert m["frac_in_support"] >= 0.97
    assert m["sliced_wasserstein"] == pytest.approx(0.0, abs=1e-9)
    assert m["reward_gap"] > 0.1  # behaviour cloning is far from optimal: the lesson of the task


def test_action_metrics_origin_and_leading_dims(datasets):
    ring = make_world("ring")
    data = datasets["ring"]["actions"]
    ctx = np.zeros((5, 1), dtype=np.float32)
    origin = action_metrics(ring, np.zeros((5, 20, 2)), ctx, data)  # (S, N, 2) with (S, 1)
    assert origin["frac_in_support"] == 0.0
    _, modes = ring_modes()
    top = ring.reward(modes, 0.0).max()
    assert origin["mean_reward"] < top - 1.0
    assert origin["sliced_wasserstein"] > 0.3
    # At c=0 the goal is the top mode itself: choosing it is optimal, a gap of exactly 0.
    best = action_metrics(ring, np.broadcast_to(modes[2], (5, 20, 2)), ctx, data)
    assert best["frac_in_support"] == 1.0
    assert best["reward_gap"] == pytest.approx(0.0, abs=1e-5)
    assert best["mean_reward"] > origin["mean_reward"] + 2.0


# --------------------------------------------------------------------------- registry
def test_unknown_world_lists_known_worlds():
    with pytest.raises(ValueError) as err:
        make_world("nope")
    for name in WORLDS:
        assert name in str(err.value)
    assert isinstance(make_world("spiral"), ToyWorld)
    assert make_world("ring").obs_dim == 1 and make_world("ring").action_dim == 2
