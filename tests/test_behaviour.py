"""Behaviour on the ring world with fixed seeds and the ~15 s budget (1,500 iterations).

Thresholds sit well inside what the defaults reach (assets/toy/README.md) and well outside what a broken
loss, a sign error or a mis-paired best-of-N gives.
"""

import numpy as np
import pytest

from sorl_core import toy
from sorl_core.agent import SORLAgent
from sorl_core.config import TOY_DEFAULTS, SORLConfig
from sorl_core.data import OfflineDataset
from sorl_core.train import fit

ITERATIONS = 1500


def train(world: str, seed: int = 0, **overrides) -> SORLAgent:
    data = toy.make_dataset(world, size=10_000, seed=seed)
    agent = SORLAgent(SORLConfig(**{**TOY_DEFAULTS, "obs_dim": 1, "action_dim": 2, **overrides}), seed=seed)
    return fit(agent, OfflineDataset(data, seed=seed), ITERATIONS, progress=False)


@pytest.fixture(scope="module")
def ring():
    world = toy.make_world("ring")
    data = toy.make_dataset(world, size=10_000, seed=0)
    contexts = world.sample_contexts(1024, np.random.default_rng(123))
    return world, data["actions"], contexts


@pytest.fixture(scope="module")
def flow_only():
    """Flow matching alone (no self-consistency, no Q): sampled as a plain flow policy."""
    return train("ring", q_loss_coef=0.0, sc_coef=0.0)


@pytest.fixture(scope="module")
def behaviour_only():
    """Flow matching + self-consistency, no Q loss: a shortcut model of the data."""
    return train("ring", q_loss_coef=0.0)


@pytest.fixture(scope="module")
def sorl():
    """alpha = 10 for 1,500 iterations: early training, where the finest step still copies the data and best-of-N
    has the most to fix, so each mechanism shows clearly. (The bundled policies' converged picture, with the toy
    default alpha, is pinned in test_bundled_toy.py.)"""
    return train("ring", q_loss_coef=10.0)


def metrics(agent, ring, m, n, as_flow=False):
    world, data, contexts = ring
    actions = agent.sample(contexts, m_inf=m, n=n, generator=0, as_flow=as_flow).actions.numpy()
    return toy.action_metrics(world, actions, contexts, data)


def test_flow_matching_alone_reproduces_every_ring_mode(flow_only, ring):
    world, _, contexts = ring
    actions = flow_only.sample(contexts, m_inf=8, generator=1, as_flow=True).actions.numpy()
    inside = actions[world.in_support(actions)]
    assert len(inside) >= 0.5 * len(actions)
    angles = np.round(np.arctan2(inside[:, 1], inside[:, 0]) / (2 * np.pi / 8)) % 8
    shares = np.bincount(angles.astype(int), minlength=8) / len(inside)
    assert shares.min() >= 0.05, f"a mode is missing: {shares}"  # data: 1/8 each
    assert shares.max() <= 0.25


def test_sorl_moves_mass_to_rewarded_modes_and_stays_in_support(sorl, behaviour_only, ring):
    for m in (2, 4):
        ours, bc = metrics(sorl, ring, m, 1), metrics(behaviour_only, ring, m, 1)
        assert ours["mean_reward"] >= bc["mean_reward"] + 0.4
        assert ours["frac_in_support"] >= 0.4
    world, data, contexts = ring
    behaviour = toy.action_metrics(world, data[:1024], contexts, data)
    best = metrics(sorl, ring, 8, 16)
    assert best["mean_reward"] >= behaviour["mean_reward"] + 0.6
    assert best["reward_gap"] <= 0.25 and best["frac_in_support"] >= 0.45


def test_more_euler_steps_reduce_self_consistency_error_and_distance(flow_only, behaviour_only, sorl, ring):
    # A plain flow policy: few big Euler steps blur the modes (one step lands on the mean)...
    flow = [metrics(flow_only, ring, m, 1, as_flow=True)["sliced_wasserstein"] for m in (1, 2, 4, 8)]
    assert flow[3] < flow[2] < flow[1] < flow[0] and flow[3] < 0.5 * flow[0]
    probe = flow_only.consistency_probe(ring[2][:16], samples=32, generator=0, as_flow=True)
    by_step = np.nanmean(probe.error, axis=1)  # rows: step size 1, 1/2, 1/4
    assert by_step[2] < by_step[1] < by_step[0] and by_step[2] < 0.5 * by_step[0]
    # ...and the self-consistency objective fixes that: one shortcut step is nearly as good as eight.
    shortcut = [metrics(behaviour_only, ring, m, 1)["sliced_wasserstein"] for m in (1, 8)]
    assert shortcut[0] < 0.5 * flow[0] and shortcut[1] <= shortcut[0]
    shortcut_probe = behaviour_only.consistency_probe(ring[2][:16], samples=32, generator=0)
    assert np.nanmean(shortcut_probe.error[0]) < 0.5 * by_step[0]
    # SORL: the Q loss pulls the coarse levels hardest, so the finest steps stay nearest the data.
    distances = [metrics(sorl, ring, m, 1)["sliced_wasserstein"] for m in (1, 2, 4, 8)]
    assert distances[3] < distances[1] and distances[3] < 0.5 * distances[0]


def test_best_of_n_raises_true_reward(sorl, ring):
    for m in (4, 8):
        assert metrics(sorl, ring, m, 16)["mean_reward"] >= metrics(sorl, ring, m, 1)["mean_reward"] + 0.15
    assert metrics(sorl, ring, 8, 16)["mean_reward"] >= metrics(sorl, ring, 8, 1)["mean_reward"] + 0.5


def test_bf16_training_reaches_the_same_quality_bar(ring):
    agent = train("ring", precision="bf16")
    best = metrics(agent, ring, 8, 16)
    assert best["reward_gap"] <= 0.25 and best["frac_in_support"] >= 0.45
