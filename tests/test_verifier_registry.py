"""The verifier registry: what each verifier needs, how many calls it costs, and its refusals, asked in one place."""

import pytest
import torch

from sorl_core import verifiers
from sorl_core.agent import SORLAgent
from sorl_core.config import SORLConfig
from sorl_core.verifiers import VERIFIERS, calls_per_action


def test_every_verifier_says_what_it_needs():
    needs = {name: v.needs for name, v in VERIFIERS.items()}
    assert needs == {"q": "critic", "q-min": "critic", "q-lcb": "critic", "q-kbtt": "critic",
                     "target-q": "target critic", "consensus": "nothing"}
    assert all(v.description and v.name == name for name, v in VERIFIERS.items())


@pytest.mark.parametrize("m, n, verifier, expected", [
    (8, 1, "q", (8, 0)),  # nothing to rank: no critic call
    (8, 4, "q", (32, 4)),  # one critic call per candidate
    (1, 16, "target-q", (16, 16)),
    (8, 16, "consensus", (128, 0)),  # the medoid needs no network
])
def test_calls_per_action_follow_the_verifier(m, n, verifier, expected):
    assert calls_per_action(m, n, verifier) == expected


@pytest.mark.parametrize("verifier", list(VERIFIERS))
def test_the_sampler_reports_the_registry_s_count(verifier):
    agent = SORLAgent(SORLConfig(size="tiny", obs_dim=3, action_dim=2), seed=0)
    for n in (1, 4):
        result = agent.sample(torch.zeros(2, 3), m_inf=2, n=n, generator=0, verifier=verifier)
        assert (result.actor_calls, result.critic_calls) == calls_per_action(2, n, verifier)


def test_only_the_target_verifier_refuses_a_file_without_target_critic():
    refusals = {name: v.unavailable(has_target_critic=False) for name, v in VERIFIERS.items()}
    assert [name for name, r in refusals.items() if r] == ["target-q"]
    assert refusals["target-q"].startswith("this checkpoint holds no target critic")
    assert all(v.unavailable(has_target_critic=True) is None for v in VERIFIERS.values())


def test_an_unknown_verifier_is_one_clear_sentence():
    with pytest.raises(ValueError, match="unknown verifier 'oracle'; choose one of q, q-min"):
        verifiers.get("oracle")
    with pytest.raises(ValueError, match="unknown verifier"):
        calls_per_action(8, 4, "oracle")


def test_call_counts_read_as_words():
    from sorl_core.verifiers import calls_text

    assert [calls_text(c) for c in (1, 8, 13.5)] == ["1 call", "8 calls", "13.5 calls"]
    assert calls_text(1, "network call") == "1 network call"
