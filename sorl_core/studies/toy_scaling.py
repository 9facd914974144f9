"""Test-time scaling of a toy policy measured against the closed-form reward, and the paper's converged picture
as yes/no checks. Used by the bundled policies' card (scripts/build_toy_assets.py), their behaviour test and
notebook 2, so all three report the same numbers."""

from __future__ import annotations

import numpy as np

from .. import toy
from ..baselines import m_inf_values, ranking_verifier

M_VALUES, N_VALUES = (1, 2, 4, 8), (1, 4, 16)
CONTEXT_SEED, CONTEXTS = 123, 1024  # held-out contexts: not the training evaluation's
# Every figure is the mean over these sampling seeds: on a converged policy M_inf = 1 and 8 differ by less than one
# seed's sampling noise (checkerboard: 0.006 standard error), so a single seed could flip the comparison.
SAMPLING_SEEDS = (0, 1, 2, 3, 4)
# How far below both ends (M_inf = 1 and 8) an intermediate M_inf may score before it counts as a collapse.
COLLAPSE = 0.15


def held_out_contexts(world: toy.ToyWorld, count: int = CONTEXTS) -> np.ndarray:
    return world.sample_contexts(count, np.random.default_rng(CONTEXT_SEED))


def scaling_table(agent, world_name: str, m_values=M_VALUES, n_values=N_VALUES, contexts: int = CONTEXTS,
                  sampling_seeds=SAMPLING_SEEDS) -> dict[tuple[int, int], dict[str, float]]:
    """(M_inf, N) -> true-reward metrics (toy.action_metrics) of best-of-N with M_inf Euler steps, each the mean
    over the sampling seeds, and the network calls per action. Only the M_inf a method samples with (fql: 1); best-of-N
    ranks with the method's own verifier (flow-bc, which has no critic: consensus)."""
    world = toy.make_world(world_name)
    data = toy.make_dataset(world, 10_000, seed=0)["actions"]
    ctx = held_out_contexts(world, contexts)
    verifier = ranking_verifier(agent.config)
    table = {}
    for m in m_inf_values(agent.config, m_values):
        for n in n_values:
            results = [agent.sample(ctx, m_inf=m, n=n, generator=s, verifier=verifier) for s in sampling_seeds]
            runs = [toy.action_metrics(world, r.actions.numpy(), ctx, data) for r in results]
            table[(m, n)] = {**{key: float(np.mean([r[key] for r in runs])) for key in runs[0]},
                             "network_calls": float(results[0].network_calls)}
    return table


def critic_at_actions(agent, world_name: str, m_values=M_VALUES, contexts: int = CONTEXTS,
                      sampling_seed: int = SAMPLING_SEEDS[0]) -> dict[int, dict[str, float]]:
    """Per M_inf (N = 1): the critic's mean Q at the policy's actions against their mean true reward, and the
    share of actions on the data. A critic far above the truth where actions leave the data is the diagnosis of
    a policy that follows the critic's extrapolation."""
    world = toy.make_world(world_name)
    ctx = held_out_contexts(world, contexts)
    out = {}
    for m in m_values:
        actions = agent.sample(ctx, m_inf=m, n=1, generator=sampling_seed).actions
        q = agent.q_value(ctx, actions, k=m).numpy().reshape(-1)
        a = actions.numpy()
        out[m] = {"q": float(q.mean()), "reward": float(world.reward(a, ctx).mean()),
                  "on_data": float(world.in_support(a).mean())}
    return out


def converged_checks(table: dict[tuple[int, int], dict[str, float]]) -> dict[str, bool]:
    """The paper's converged picture at the bundled settings: more Euler steps do not hurt, the intermediate step
    counts do not collapse, and best-of-N with the learned Q does not lower the reward."""
    r = {key: v["mean_reward"] for key, v in table.items()}
    return {
        "M_inf = 8 at least M_inf = 1 (N = 1)": r[(8, 1)] >= r[(1, 1)],
        "no collapse at M_inf = 2 or 4 (N = 1)": min(r[(2, 1)], r[(4, 1)]) >= min(r[(1, 1)], r[(8, 1)]) - COLLAPSE,
        "best-of-16 at least N = 1 (M_inf = 8)": r[(8, 16)] >= r[(8, 1)],
    }
