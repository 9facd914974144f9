"""The baselines (flow-bc, ifql, fql): losses against direct computations, the sampler's call counts, bit-exact
resume, checkpoints that know their method, and tiny trainings through the real CLI."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from sorl_core.agent import SORLAgent, requires_grad
from sorl_core.baselines import (BASELINES, FlowBCAgent, FQLAgent, IFQLAgent, expectile_loss, make_agent,
                                 m_inf_values, one_step, one_step_q_loss)
from sorl_core.checkpoint import CheckpointError, load_agent, read_checkpoint, save_checkpoint
from sorl_core.config import SORLConfig

CLI = str(Path(sys.executable).parent / "sorl-lab")


def agent_of(method: str, seed: int = 0, **overrides):
    cfg = dict(obs_dim=3, action_dim=2, hidden_dims=(16, 16), device="cpu", batch_size=32, method=method)
    cfg.update(overrides)
    return make_agent(SORLConfig(**cfg), seed=seed)


def batch_of(b: int = 32, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"observations": torch.randn(b, 3, generator=g), "actions": torch.rand(b, 2, generator=g) * 2 - 1,
            "rewards": -torch.rand(b, generator=g), "next_observations": torch.randn(b, 3, generator=g),
            "masks": (torch.rand(b, generator=g) > 0.1).float()}


# ----------------------------------------------------------------------------- direct computations
def mlp_q(critic, j: int, obs, actions):
    """Member j of a baseline's critic, layer by layer (CriticEnsemble.member), step-count input 0."""
    return critic.ensemble.member(j, obs, actions, 0.0)


def actor_mlp(actor, obs, x, t, level):
    """The actor network written out: GELU (tanh) MLP over [obs, x, t, level]."""
    h = torch.cat([obs, x, t, level], dim=-1)
    for layer in actor.layers[:-1]:
        h = F.gelu(h @ layer.weight.T + layer.bias, approximate="tanh")
    return actor.layers[-1](h)


def test_expectile_loss_weighs_errors_above_and_below():
    diff = torch.tensor([2.0, -2.0, 0.0])
    assert torch.allclose(expectile_loss(diff, 0.9), torch.tensor([0.9 * 4, 0.1 * 4, 0.0]))


def test_ifql_losses_match_a_direct_computation():
    agent, batch = agent_of("ifql", discount=0.9, expectile=0.8), batch_of()
    for _ in range(3):  # targets apart from the critic
        agent.update(batch_of(seed=7))
    state = agent.generator.get_state()
    total, info = agent.losses(batch)
    obs, act, nobs = batch["observations"], batch["actions"], batch["next_observations"]
    with torch.no_grad():
        q_target = torch.minimum(mlp_q(agent.target_critic, 0, obs, act), mlp_q(agent.target_critic, 1, obs, act))
        v = agent.value.ensemble.member(0, obs, obs[:, :0], 0.0)
        diff = q_target - v
        value = (torch.where(diff >= 0, 0.8, 0.2) * diff**2).mean()
        y = batch["rewards"] + 0.9 * batch["masks"] * agent.value.ensemble.member(0, nobs, nobs[:, :0], 0.0)
        critic = sum(((mlp_q(agent.critic, j, obs, act) - y) ** 2) for j in range(2)).mean()
        g = torch.Generator().set_state(state)
        noise, t = torch.randn(32, 2, generator=g), torch.rand(32, 1, generator=g)
        x_t = (1 - (1 - 1e-5) * t) * noise + t * act
        flow = ((actor_mlp(agent.actor, obs, x_t, t, torch.full_like(t, 3.0)) - (act - (1 - 1e-5) * noise)) ** 2).mean()
    assert torch.allclose(info["value_loss"], value, atol=1e-6)
    assert torch.allclose(info["critic_loss"], critic, atol=1e-6)
    assert torch.allclose(info["fm_loss"], flow, atol=1e-6)
    assert torch.allclose(total, value + critic + flow, atol=1e-6)


def test_fql_losses_match_a_direct_computation():
    agent, batch = agent_of("fql", discount=0.9, alpha=30.0, flow_steps=3, q_agg="min"), batch_of()
    state = agent.generator.get_state()
    total, info = agent.losses(batch)
    obs, act, nobs = batch["observations"], batch["actions"], batch["next_observations"]
    zero = torch.zeros(32, 1)
    with torch.no_grad():
        g = torch.Generator().set_state(state)
        z_next = torch.randn(32, 2, generator=g)
        a_next = actor_mlp(agent.policy, nobs, z_next, zero, zero).clamp(-1, 1)
        q_next = torch.minimum(mlp_q(agent.target_critic, 0, nobs, a_next), mlp_q(agent.target_critic, 1, nobs, a_next))
        y = batch["rewards"] + 0.9 * batch["masks"] * q_next
        critic = torch.stack([(mlp_q(agent.critic, j, obs, act) - y) ** 2 for j in range(2)]).mean()
        noise, t = torch.randn(32, 2, generator=g), torch.rand(32, 1, generator=g)
        x_t = (1 - (1 - 1e-5) * t) * noise + t * act
        flow = ((actor_mlp(agent.actor, obs, x_t, t, torch.full_like(t, 3.0)) - (act - (1 - 1e-5) * noise)) ** 2).mean()
        z = torch.randn(32, 2, generator=g)
        x = z
        for i in range(3):  # the behaviour flow's 3 Euler steps, at the finest level
            x = x + actor_mlp(agent.actor, obs, x, torch.full_like(t, i / 3), torch.full_like(t, 3.0)) / 3
        mu = actor_mlp(agent.policy, obs, z, zero, zero)
        distill = ((mu - x.clamp(-1, 1)) ** 2).mean()
        a = mu.clamp(-1, 1)
        q = -((mlp_q(agent.critic, 0, obs, a) + mlp_q(agent.critic, 1, obs, a)) / 2).mean()
    assert torch.allclose(info["critic_loss"], critic, atol=1e-6)
    assert torch.allclose(info["fm_loss"], flow, atol=1e-6)
    assert torch.allclose(info["distill_loss"], distill, atol=1e-6)
    assert torch.allclose(info["q_loss"], q, atol=1e-6)
    assert torch.allclose(total, critic + flow + 30.0 * distill + q, atol=1e-5)


def test_fql_q_term_moves_the_policy_not_the_critic():
    agent, obs = agent_of("fql"), batch_of()["observations"]
    with requires_grad(agent.critic, False):
        loss, _ = one_step_q_loss(agent.critic, obs, one_step(agent.policy, obs, torch.randn(32, 2)), False)
    loss.backward()
    assert all(p.grad is None for p in agent.critic.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in agent.policy.parameters())


def test_flow_bc_trains_the_flow_matching_loss_only():
    agent, batch = agent_of("flow-bc"), batch_of()
    state = agent.generator.get_state()
    total, info = agent.losses(batch)
    g = torch.Generator().set_state(state)
    t = torch.randint(8, (32, 1), generator=g) / 8  # SORL's grid of M_disc = 8
    noise = torch.randn(32, 2, generator=g)
    obs, act = batch["observations"], batch["actions"]
    x_t = (1 - (1 - 1e-5) * t) * noise + t * act
    with torch.no_grad():
        flow = ((actor_mlp(agent.actor, obs, x_t, t, torch.full_like(t, 3.0)) - (act - (1 - 1e-5) * noise)) ** 2).mean()
    assert torch.allclose(info["fm_loss"], flow, atol=1e-6)
    assert torch.allclose(total, 10 * flow, atol=1e-5)
    assert set(agent.networks) == {"actor"}


# ----------------------------------------------------------------------------- the sampler
def count_rows(module):
    """A forward hook that counts the rows a network is called on."""
    seen = []
    handle = module.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[0]))
    return seen, handle


@pytest.mark.parametrize("method,m_inf,n,verifier,calls", [
    ("flow-bc", 4, 1, "q", (4, 0)),
    ("flow-bc", 2, 4, "consensus", (8, 0)),
    ("ifql", 2, 8, "q", (16, 8)),
    ("ifql", 10, 1, "q", (10, 0)),  # FQL's 10 steps: a plain flow takes any number
    ("fql", 1, 4, "q", (4, 4)),
])
def test_sample_counts_the_calls_it_makes(method, m_inf, n, verifier, calls):
    agent, states = agent_of(method), 5
    policy = agent.policy if method == "fql" else agent.actor
    actor_rows, h1 = count_rows(policy)
    critic_rows, h2 = count_rows(agent.critic) if agent.has_critic else ([], None)
    result = agent.sample(torch.randn(states, 3), m_inf=m_inf, n=n, generator=0, verifier=verifier,
                          return_trajectory=True)
    h1.remove()
    if h2:
        h2.remove()
    assert (result.actor_calls, result.critic_calls) == calls
    assert sum(actor_rows) == calls[0] * states and sum(critic_rows) == calls[1] * states
    assert result.actions.shape == (states, 2) and result.candidates.shape == (states, n, 2)
    assert result.trajectory.shape == (states, n, m_inf + 1, 2)
    assert result.candidates.abs().max() <= 1
    again = agent.sample(torch.randn(states, 3), m_inf=m_inf, n=n, generator=0, verifier=verifier)
    assert again.candidates.shape == result.candidates.shape


def test_ifql_ranks_by_the_lower_critic_and_keeps_its_best():
    agent = agent_of("ifql")
    obs = torch.randn(4, 3)
    result = agent.sample(obs, m_inf=2, n=6, generator=1)
    flat = result.candidates.reshape(-1, 2)
    rep = obs.repeat_interleave(6, dim=0)
    q = torch.minimum(mlp_q(agent.critic, 0, rep, flat), mlp_q(agent.critic, 1, rep, flat)).reshape(4, 6)
    assert torch.allclose(result.q, q, atol=1e-6)
    assert torch.equal(result.chosen, q.argmax(dim=1))


def test_bad_requests_get_one_sentence_each():
    with pytest.raises(ValueError, match="unknown method 'dqn'; choose one of sorl, flow-bc, ifql, fql"):
        SORLConfig(method="dqn")
    with pytest.raises(ValueError, match="flow-bc has no critic to rank candidates with; use n = 1 or the consensus"):
        agent_of("flow-bc").sample(torch.randn(2, 3), m_inf=2, n=4)
    with pytest.raises(ValueError, match="fql acts with one call of its one-step policy, so m_inf must be 1"):
        agent_of("fql").sample(torch.randn(2, 3), m_inf=4)
    with pytest.raises(ValueError, match="m_inf must be a power of two"):
        agent_of("flow-bc").sample(torch.randn(2, 3), m_inf=3)
    with pytest.raises(ValueError, match="trains one seed per model"):
        agent_of("ifql", seed=[0, 1])
    with pytest.raises(ValueError, match="trains in float32"):
        agent_of("fql", precision="bf16")
    assert m_inf_values(SORLConfig(method="fql"), (1, 2, 4, 8)) == (1,)
    assert m_inf_values(SORLConfig(method="ifql"), (1, 2, 4, 8)) == (1, 2, 4, 8)


# ----------------------------------------------------------------------------- checkpoints and resume
@pytest.mark.parametrize("method", sorted(BASELINES))
def test_resume_is_bit_exact(method, tmp_path):
    straight = agent_of(method, seed=3)
    for i in range(6):
        straight.update(batch_of(seed=i))
    first = agent_of(method, seed=3)
    for i in range(3):
        first.update(batch_of(seed=i))
    save_checkpoint(tmp_path / "c.pt", first)
    resumed, _ = load_agent(tmp_path / "c.pt", device="cpu")
    assert type(resumed) is type(first) and resumed.step == 3 and resumed.seeds == [3]
    for i in range(3, 6):
        resumed.update(batch_of(seed=i))
    for name, net in straight.networks.items():
        for a, b in zip(net.state_dict().values(), resumed.networks[name].state_dict().values()):
            assert torch.equal(a, b), name
    obs = torch.randn(3, 3)
    m = 1 if method == "fql" else 2
    assert torch.equal(straight.sample(obs, m_inf=m, generator=5).actions, resumed.sample(obs, m_inf=m, generator=5).actions)


@pytest.mark.parametrize("method", sorted(BASELINES))
def test_an_inference_only_export_samples_as_the_trained_agent(method, tmp_path):
    agent = agent_of(method)
    for i in range(2):
        agent.update(batch_of(seed=i))
    save_checkpoint(tmp_path / "s.pt", agent, inference_only=True, dtype=torch.bfloat16)
    loaded, _ = load_agent(tmp_path / "s.pt", device="cpu")
    obs = torch.randn(3, 3)
    m, n = (1, 4) if method == "fql" else (2, 1)
    want = agent.sample(obs, m_inf=m, n=n, generator=2).actions
    got = loaded.sample(obs, m_inf=m, n=n, generator=2).actions
    assert torch.allclose(want, got, atol=0.05)  # bf16 weights
    assert not loaded.has_target_critic


def test_a_checkpoint_loads_only_as_its_own_method(tmp_path):
    ifql = agent_of("ifql")
    save_checkpoint(tmp_path / "ifql.pt", ifql)
    payload = read_checkpoint(tmp_path / "ifql.pt")
    assert payload["agent"]["method"] == "ifql" and payload["config"]["method"] == "ifql"
    for claimed in ("sorl", "fql"):  # a file whose config claims another method than its weights
        payload["config"]["method"] = claimed
        torch.save(payload, tmp_path / "foreign.pt")
        with pytest.raises(CheckpointError, match=f"the weights are those of a ifql agent, not of {claimed}"):
            load_agent(tmp_path / "foreign.pt", device="cpu")
    sorl = SORLAgent(SORLConfig(obs_dim=3, action_dim=2, hidden_dims=(16, 16), device="cpu"))
    save_checkpoint(tmp_path / "sorl.pt", sorl)
    loaded, _ = load_agent(tmp_path / "sorl.pt", device="cpu")
    assert isinstance(loaded, SORLAgent)
    assert isinstance(load_agent(tmp_path / "ifql.pt", device="cpu")[0], IFQLAgent)
    assert FlowBCAgent.method == "flow-bc" and FQLAgent.method == "fql"


# ----------------------------------------------------------------------------- the real CLI
def run_cli(*args):
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("method", sorted(BASELINES))
def test_cli_trains_resumes_and_snapshots_a_baseline(method, tmp_path):
    out = tmp_path / method
    common = ["train", "--world", "ring", "--agent.method", method, "--agent.size", "tiny", "--out", str(out),
              "--log-every", "5", "--eval-every", "10", "--checkpoint-every", "10", "--eval-contexts", "32",
              "--no-progress", "--snapshots", "10"]
    first = run_cli(*common, "--iterations", "10")
    assert first.returncode == 0, first.stderr
    second = run_cli(*common, "--iterations", "20", "--resume")
    assert second.returncode == 0, second.stderr
    agent, extra = load_agent(out / "checkpoint.pt", device="cpu")
    assert agent.config.method == method and agent.step == 20
    assert sorted(p.name for p in (out / "snapshots").iterdir()) == ["iteration-0000010.pt", "iteration-0000020.pt"]
    evals = (out / "eval.csv").read_text().splitlines()
    m_values = {line.split(",")[1] for line in evals[1:]}
    assert m_values == ({"1"} if method == "fql" else {"1", "2", "4", "8"})
    metrics = (out / "metrics.csv").read_text().splitlines()
    assert len(metrics) == 1 + 4  # header, steps 5, 10, 15, 20
    other = run_cli(*common[:4], "sorl", *common[5:], "--iterations", "30", "--resume")
    assert other.returncode != 0
    assert f"was trained with --agent.method {method}; resume it with that method" in other.stderr
    assert "Traceback" not in other.stderr
