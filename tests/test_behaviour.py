"""Behaviour on the ring world with fixed seeds and the ~15 s budget (1,500 iterations).

Thresholds sit well inside what the defaults reach (assets/toy/README.md) and well outside what a broken
loss, a sign error or a mis-paired best-of-N gives.

Each run is deterministic on one machine, but another CPU's kernels move a training run about as far as another
seed does, so every bar sits outside the spread over training seeds, written beside it as min/mean/max (measured
on a 2-core AMD EPYC; the tests train with seed 0). "Broken" figures: a bf16 agent that was never trained, one
trained without the Q loss or without the flow-matching (BC) loss, and uniformly random actions.
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
    assert len(inside) >= 0.5 * len(actions)  # seeds 0-7: 0.646/0.686/0.747 of the actions
    angles = np.round(np.arctan2(inside[:, 1], inside[:, 0]) / (2 * np.pi / 8)) % 8
    shares = np.bincount(angles.astype(int), minlength=8) / len(inside)
    assert shares.min() >= 0.05, f"a mode is missing: {shares}"  # data: 1/8 each; seeds 0-7: 0.075/0.087/0.102
    assert shares.max() <= 0.25  # seeds 0-7: 0.144/0.157/0.174


def test_sorl_moves_mass_to_rewarded_modes_and_stays_in_support(sorl, behaviour_only, ring):
    for m in (2, 4):
        ours, bc = metrics(sorl, ring, m, 1), metrics(behaviour_only, ring, m, 1)
        # seeds 0-7 (sorl and behaviour_only trained with the same seed): M=2 0.847/0.986/1.086, M=4 0.746/0.887/0.986
        assert ours["mean_reward"] >= bc["mean_reward"] + 0.4
        # seeds 0-7: M=2 0.478/0.588/0.691, M=4 0.485/0.602/0.657 (the old 0.4 sat 0.08 under the lowest);
        # broken: BC loss off 0.00, untrained 0.14, random actions 0.27-0.29
        assert ours["frac_in_support"] >= 0.35
    world, data, contexts = ring
    behaviour = toy.action_metrics(world, data[:1024], contexts, data)
    best = metrics(sorl, ring, 8, 16)
    assert best["mean_reward"] >= behaviour["mean_reward"] + 0.6  # seeds 0-7: +0.982/+1.008/+1.033
    assert best["reward_gap"] <= 0.25  # seeds 0-7: 0.056/0.081/0.107; broken: 0.88 (BC loss off) to 3.85 (untrained)
    assert best["frac_in_support"] >= 0.45  # seeds 0-7: 0.614/0.658/0.727; broken: 0.00-0.29


def test_more_euler_steps_reduce_self_consistency_error_and_distance(flow_only, behaviour_only, sorl, ring):
    # A plain flow policy: few big Euler steps blur the modes (one step lands on the mean)...
    flow = [metrics(flow_only, ring, m, 1, as_flow=True)["sliced_wasserstein"] for m in (1, 2, 4, 8)]
    # ratios over seeds 0-7: flow[1]/flow[0] 0.635/0.677/0.729, flow[2]/flow[1] 0.317/0.386/0.463,
    # flow[3]/flow[2] 0.464/0.532/0.632, flow[3]/flow[0] 0.116/0.140/0.210
    assert flow[3] < flow[2] < flow[1] < flow[0] and flow[3] < 0.5 * flow[0]
    probe = flow_only.consistency_probe(ring[2][:16], samples=32, generator=0, as_flow=True)
    by_step = np.nanmean(probe.error, axis=1)  # rows: step size 1, 1/2, 1/4
    # by_step[2]/by_step[1] 0.330/0.394/0.452, by_step[2]/by_step[0] 0.218/0.296/0.357; step 1/2 against step 1 is
    # not asserted: 0.585/0.756/1.043 (seed 3 reverses it)
    assert by_step[2] < by_step[1] and by_step[2] < 0.5 * by_step[0]
    # ...and the self-consistency objective fixes that: one shortcut step is nearly as good as eight.
    shortcut = [metrics(behaviour_only, ring, m, 1)["sliced_wasserstein"] for m in (1, 8)]
    # shortcut[0]/flow[0] 0.128/0.140/0.158; shortcut[1]/shortcut[0] 0.850/0.944/1.171 (both about 0.05, near the
    # data's own 0.025: <= 1 failed seeds 1 and 5)
    assert shortcut[0] < 0.5 * flow[0] and shortcut[1] <= 1.35 * shortcut[0]
    shortcut_probe = behaviour_only.consistency_probe(ring[2][:16], samples=32, generator=0)
    assert np.nanmean(shortcut_probe.error[0]) < 0.5 * by_step[0]  # ratio 0.017/0.027/0.036
    # SORL: the Q loss pulls the coarse levels hardest, so the finest steps stay nearest the data.
    distances = [metrics(sorl, ring, m, 1)["sliced_wasserstein"] for m in (1, 2, 4, 8)]
    # distances[3]/distances[1] 0.238/0.450/0.675; distances[3]/distances[0] 0.218/0.432/0.611 (< 0.5 failed seeds
    # 6 and 7; without the Q loss the ratio is 0.850/0.944/1.171, no level pulled harder)
    assert distances[3] < distances[1] and distances[3] < 0.8 * distances[0]


def test_best_of_n_raises_true_reward(sorl, ring):
    gain = {m: metrics(sorl, ring, m, 16)["mean_reward"] - metrics(sorl, ring, m, 1)["mean_reward"] for m in (4, 8)}
    # Seeds 0-7: M=4 +0.084/+0.146/+0.313, M=8 +0.444/+0.634/+0.841 (the old bars, +0.15 at M=4 and +0.5 at M=8,
    # failed seeds 1-6 and 6-7; seed 0 is the most favourable of the eight). A mis-paired best-of-N, a random
    # candidate, gives -0.064 to +0.040 at either M (seeds 0, 5 and 6, sampling generators 1-7 against 0): M=8
    # separates the two, M=4 is too close to sampling noise for more than "never lower".
    assert gain[4] >= 0.0  # best-of-16 never lowers the reward
    assert gain[8] >= 0.25


def test_bf16_training_reaches_the_same_quality_bar(ring):
    """bf16 training with the fp32 `sorl` fixture's settings (alpha = 10) clears the bars fp32 clears in
    test_sorl_moves_mass_to_rewarded_modes_and_stays_in_support. Not the toy default alpha = 1000: after 1,500
    iterations it is too early to bear a bar in either precision. Over seeds 0-9 it gives frac_in_support
    0.000/0.375/0.544 in bf16 (fp32: 0.000/0.468/0.687; uniformly random actions: 0.27-0.29) and reward_gap
    0.105/0.269/0.865 (fp32: 0.061/0.191/0.723), seed 6 collapsing off the data in both; seed 0 gave 0.4229 against a
    bar of 0.45 here and on the machine that reported it."""
    agent = train("ring", precision="bf16", q_loss_coef=10.0)
    world, data, contexts = ring
    behaviour = toy.action_metrics(world, data[:1024], contexts, data)
    for m in (2, 4):  # the Q loss works in bf16 (best-of-16 alone would hide a missing Q loss: its critic still learns)
        ours = metrics(agent, ring, m, 1)
        # bf16 seeds 0-9: M=2 +0.842/+0.949/+1.017, M=4 +0.686/+0.855/+0.937; broken: Q loss off -0.047 to +0.057,
        # BC loss off -0.030 to +0.260, untrained -1.2
        assert ours["mean_reward"] >= behaviour["mean_reward"] + 0.4
        # bf16 seeds 0-9: M=2 0.466/0.582/0.693, M=4 0.510/0.599/0.663; broken: BC loss off 0.00, untrained 0.14,
        # random actions 0.27-0.29
        assert ours["frac_in_support"] >= 0.35
    best = metrics(agent, ring, 8, 16)
    # bf16 seeds 0-9: 0.052/0.082/0.103; broken: untrained 3.85, BC loss off 0.88-1.41, random actions 1.64-1.69
    # (Q loss off: 0.08-0.10, best-of-16 with the learned critic makes up for it; the N = 1 bar above catches it)
    assert best["reward_gap"] <= 0.25
    # bf16 seeds 0-9: 0.635/0.670/0.726; broken: untrained 0.009, BC loss off 0.00, random actions 0.27-0.29
    assert best["frac_in_support"] >= 0.45
