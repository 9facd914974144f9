"""Sampling budgets: the fixed grid and the adaptive rules are one kind of object that the one sampler runs."""

import numpy as np
import pytest
import torch

from sorl_core import budgets
from sorl_core.agent import SORLAgent
from sorl_core.config import SORLConfig
from sorl_core.verifiers import calls_per_action

OBS = np.random.default_rng(2).normal(size=(5, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def agent():
    return SORLAgent(SORLConfig(size="tiny", obs_dim=3, action_dim=2), seed=0)


@pytest.mark.parametrize("verifier", ["q", "consensus"])
def test_a_fixed_budget_is_the_fixed_sampler_and_counts_like_it(agent, verifier):
    res = agent.sample(OBS, budget=budgets.Fixed(4, 3), generator=7, verifier=verifier)
    plain = agent.sample(OBS, 4, 3, generator=7, verifier=verifier)
    assert torch.equal(res.actions, plain.actions)
    actor, critic = calls_per_action(4, 3, verifier)
    assert res.actor_calls.tolist() == [actor] * 5 and res.critic_calls.tolist() == [critic] * 5
    assert res.network_calls.tolist() == [actor + critic] * 5


def test_every_budget_reports_what_each_state_spent(agent):
    for text in ("8x1", "2x4", "seq:eps=0.1", "jump:eps=0.1", "par:delta=1.0,nmax=8"):
        budget = budgets.parse_budget(text)
        res = agent.sample(OBS, budget=budget, generator=1)
        assert res.actions.shape == (5, 2) and res.actor_calls.shape == res.critic_calls.shape == (5,)
        m_cap, n_cap = budget.caps(agent)
        assert np.all(res.m_used <= m_cap) and np.all(res.n_used <= n_cap)


@pytest.mark.parametrize("text, message", [("3x4", "power of two"), ("8x0", "N at least 1"), ("fast", "seq:, jump: or par:")])
def test_a_malformed_budget_is_one_clear_sentence(text, message):
    with pytest.raises(budgets.RuleError, match=message):
        budgets.parse_budget(text)
