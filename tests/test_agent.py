"""Unit tests of the SORL core: flow basics, losses, sampler, update variants."""

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sorl_core.agent import (
    SORLAgent,
    integrate,
    interpolate,
    level_of,
    polyak,
    q_loss,
    self_consistency_target,
)
from sorl_core.config import SORLConfig
from sorl_core.ogbench.environments import preset_for


def small_agent(**overrides) -> SORLAgent:
    cfg = dict(obs_dim=3, action_dim=2, hidden_dims=(16, 16), device="cpu", batch_size=32)
    cfg.update(overrides)
    return SORLAgent(SORLConfig(**cfg), seed=0)


def random_batch(agent: SORLAgent, b: int = 32, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    o, a = agent.config.obs_dim, agent.config.action_dim
    return {
        "observations": torch.randn(b, o, generator=g),
        "actions": torch.rand(b, a, generator=g) * 2 - 1,
        "rewards": -torch.rand(b, generator=g),
        "next_observations": torch.randn(b, o, generator=g),
        "masks": torch.ones(b),
    }


# ----------------------------------------------------------------------------- flow basics
def test_interpolation_endpoints_and_target_velocity():
    g = torch.Generator().manual_seed(0)
    x0, a = torch.randn(5, 2, generator=g), torch.rand(5, 2, generator=g)
    eps = 1e-5
    x_start, v = interpolate(x0, a, torch.zeros(5, 1), eps)
    x_end, _ = interpolate(x0, a, torch.ones(5, 1), eps)
    assert torch.allclose(x_start, x0)
    assert torch.allclose(x_end, a + eps * x0)
    assert torch.allclose(v, a - (1 - eps) * x0)
    # The path is linear in t and its derivative is the target velocity.
    x_half, _ = interpolate(x0, a, torch.full((5, 1), 0.5), eps)
    assert torch.allclose((x_end - x_half) / 0.5, v, atol=1e-6)


def test_levels_and_step_sizes():
    assert [level_of(m) for m in (1, 2, 4, 8, 16)] == [0, 1, 2, 3, 4]
    cfg = SORLConfig(m_disc=8, m_btt=4)
    assert cfg.max_level == 3 and cfg.step_counts == (1, 2, 4)
    with pytest.raises(ValueError, match="power of two"):
        SORLConfig(m_disc=6)
    with pytest.raises(ValueError, match="exceed"):
        SORLConfig(m_disc=4, m_btt=8)


def test_self_consistency_split_matches_spec():
    agent = small_agent()
    levels = agent.sc_levels(256)
    counts = {lvl: int((levels == lvl).sum()) for lvl in (2.0, 1.0, 0.0)}
    assert counts == {2.0: 85, 1.0: 85, 0.0: 86}
    assert list(levels[:85].unique()) == [2.0] and levels[-1] == 0.0


def test_integrate_uses_step_size_and_level():
    calls = []

    class Recorder(nn.Module):
        def forward(self, obs, x, t, level):
            calls.append((float(t[0]), float(level[0])))
            return torch.ones_like(x)

    obs = torch.zeros(3, 1)
    x, path = integrate(Recorder(), obs, torch.zeros(3, 2), 4, keep_path=True)
    assert calls == [(0.0, 2.0), (0.25, 2.0), (0.5, 2.0), (0.75, 2.0)]
    assert torch.allclose(x, torch.ones(3, 2)) and len(path) == 5  # 4 steps of 1/4 at velocity 1


# ----------------------------------------------------------------------------- losses
class LinearActor(nn.Module):
    """s(x, t, level | obs) = W [obs, x, t, level] + b: small enough to check by hand."""

    def __init__(self, obs_dim=1, action_dim=2):
        super().__init__()
        self.lin = nn.Linear(obs_dim + action_dim + 2, action_dim)
        with torch.no_grad():
            self.lin.weight.copy_(torch.arange(self.lin.weight.numel(), dtype=torch.float32).reshape(self.lin.weight.shape) / 10)
            self.lin.bias.copy_(torch.tensor([0.3, -0.2]))

    def forward(self, obs, x, t, level):
        return self.lin(torch.cat([obs, x, t, level], -1))


def test_self_consistency_target_by_hand():
    actor = LinearActor()
    W, b = actor.lin.weight.detach().numpy().astype(np.float64), actor.lin.bias.detach().numpy()
    obs, x = np.array([[0.5]]), np.array([[0.1, -0.4]])
    t, level = 0.25, 1.0  # step h = 1/2 at level 1; the two half steps use level 2
    h = 2.0 ** -level

    def s(x, t, lvl):
        return W @ np.concatenate([obs[0], x, [t, lvl]]) + b

    v1 = s(x[0], t, level + 1)
    v2 = s(x[0] + h / 2 * v1, t + h / 2, level + 1)
    expected = (v1 + v2) / 2
    got = self_consistency_target(
        actor, torch.tensor(obs, dtype=torch.float32), torch.tensor(x, dtype=torch.float32),
        torch.tensor([[t]]), torch.tensor([[level]]), torch.tensor([[h]]),
    )
    assert np.allclose(got.numpy()[0], expected, atol=1e-5)
    assert not got.requires_grad  # the target carries no gradient


class ConstantCritic(nn.Module):
    """Q_j(obs, a, k) = scale * sum(a) for two members."""

    def __init__(self, scale):
        super().__init__()
        self.scale = scale

    def forward(self, obs, action, k):
        q = self.scale * action.sum(-1)
        return torch.stack([q, q])


def test_q_loss_normalisation_is_scale_free():
    a1 = torch.tensor([[0.2, 0.1], [-0.5, 0.3]], requires_grad=True)
    a2 = a1.detach().clone().requires_grad_(True)
    loss1, _ = q_loss(ConstantCritic(1.0), torch.zeros(2, 1), a1, 8)
    loss2, _ = q_loss(ConstantCritic(100.0), torch.zeros(2, 1), a2, 8)
    loss1.backward()
    loss2.backward()
    assert math.isclose(float(loss1.detach()), float(loss2.detach()), rel_tol=1e-6)
    q = a1.detach().sum(-1)
    assert math.isclose(float(loss1.detach()), float(-q.mean() / q.abs().mean()), rel_tol=1e-6)
    assert torch.allclose(a1.grad, a2.grad)  # stopgrad(mean|q|): gradient independent of Q's scale
    assert (a1.grad < 0).all()  # minimising the loss raises Q


def test_clip_folded_into_adam_matches_clip_then_step():
    from sorl_core.agent import _adam, clip_and_step

    for scale in (0.01, 100.0):  # below and above the clip threshold
        a, b = nn.Linear(4, 3), nn.Linear(4, 3)
        b.load_state_dict(a.state_dict())
        opt_a, opt_b = _adam(a.parameters(), 1e-2), _adam(b.parameters(), 1e-2)
        for step in range(3):
            x = torch.randn(8, 4, generator=torch.Generator().manual_seed(step))
            for net, opt in ((a, opt_a), (b, opt_b)):
                opt.zero_grad()
                (scale * net(x).square().sum()).backward()
            torch.nn.utils.clip_grad_norm_(a.parameters(), 1.0)
            opt_a.step()
            clip_and_step(opt_b, list(b.parameters()), 1.0)
            for pa, pb in zip(a.parameters(), b.parameters()):
                assert torch.allclose(pa, pb, atol=1e-6)


def test_polyak_update():
    target, source = nn.Linear(2, 2), nn.Linear(2, 2)
    before = [p.detach().clone() for p in target.parameters()]
    polyak(target, source, 0.1)
    for p, b0, s in zip(target.parameters(), before, source.parameters()):
        assert torch.allclose(p, 0.9 * b0 + 0.1 * s)


def test_fused_ensemble_matches_members():
    agent = small_agent()
    obs, act = torch.randn(7, 3), torch.rand(7, 2)
    fused = agent.critic(obs, act, 4.0)
    assert fused.shape == (2, 7)
    for j in range(2):
        assert torch.allclose(fused[j], agent.critic.member(j, obs, act, 4.0), atol=1e-5)
    assert not torch.allclose(fused[0], fused[1])  # members are initialised independently


# ----------------------------------------------------------------------------- sampler
class TargetCritic(nn.Module):
    """Q(obs, a) = -||a - obs||^2: each state prefers the candidate closest to its own obs."""

    def forward(self, obs, action, k):
        q = -(action - obs).square().sum(-1)
        return torch.stack([q, q])


def test_best_of_n_picks_highest_q_per_state_with_batched_states():
    agent = small_agent(obs_dim=2)
    agent.critic = TargetCritic()
    obs = torch.tensor([[0.9, 0.9], [-0.9, -0.9], [0.9, -0.9]])
    res = agent.sample(obs, m_inf=2, n=16, generator=3)
    assert res.candidates.shape == (3, 16, 2) and res.q.shape == (3, 16) and res.chosen.shape == (3,)
    for s in range(3):
        own_q = -(res.candidates[s] - obs[s]).square().sum(-1)
        assert torch.allclose(res.q[s], own_q)  # each candidate scored with its own state
        assert int(res.chosen[s]) == int(own_q.argmax())
        assert torch.equal(res.actions[s], res.candidates[s, own_q.argmax()])
    # Pairing matters: the chosen actions differ from what a single state's ranking would give.
    assert len({tuple(np.round(a, 4)) for a in res.actions.numpy()}) == 3


def test_sample_shapes_trajectory_calls_and_seed():
    agent = small_agent()
    obs = torch.randn(4, 3)
    res = agent.sample(obs, m_inf=4, n=3, return_trajectory=True, generator=7)
    assert res.actions.shape == (4, 2) and res.trajectory.shape == (4, 3, 5, 2)
    assert torch.allclose(res.trajectory[:, :, -1].clamp(-1, 1), res.candidates)
    assert res.actor_calls == 12 and res.critic_calls == 3 and res.network_calls == 15
    assert (res.candidates.abs() <= 1).all()
    again = agent.sample(obs, m_inf=4, n=3, return_trajectory=True, generator=7)
    assert torch.equal(res.candidates, again.candidates)
    # The first state is the noise, which the seed fixes.
    noise = torch.randn(4, 3, 2, generator=torch.Generator().manual_seed(7))
    assert torch.allclose(res.trajectory[:, :, 0], noise)
    plain = agent.sample(obs, m_inf=1, n=1)
    assert plain.q is None and plain.network_calls == 1 and plain.trajectory is None
    single = agent.sample(np.zeros(3), m_inf=8, n=2)  # one state given as a vector
    assert single.actions.shape == (1, 2)


@pytest.mark.parametrize("m_inf", [0, 3, 6, 2.0, "8"])
def test_sample_rejects_bad_m_inf(m_inf):
    with pytest.raises(ValueError, match="power of two"):
        small_agent().sample(torch.zeros(1, 3), m_inf=m_inf)


def test_sample_rejects_bad_n_obs_and_unrequested_extrapolation():
    agent = small_agent()
    with pytest.raises(ValueError, match="n"):
        agent.sample(torch.zeros(1, 3), m_inf=2, n=0)
    with pytest.raises(ValueError, match=r"shape \(states, 3\)"):
        agent.sample(torch.zeros(2, 4), m_inf=2)
    with pytest.raises(ValueError, match="extrapolate=True"):
        agent.sample(torch.zeros(1, 3), m_inf=16)
    res = agent.sample(torch.zeros(1, 3), m_inf=16, extrapolate=True)
    assert res.actor_calls == 16


def test_consistency_probe_shapes():
    agent = small_agent()
    probe = agent.consistency_probe(torch.zeros(2, 3), samples=8, generator=0)
    assert probe.error.shape == (3, 8) and probe.per_state.shape == (2, 3, 8)
    assert list(probe.step_sizes) == [1.0, 0.5, 0.25]
    assert np.isnan(probe.error[0, 1:]).all() and np.isfinite(probe.error[0, 0])  # d=1 only fits at t=0
    assert np.isfinite(probe.error[2, :7]).all() and np.isnan(probe.error[2, 7])  # t + 1/4 <= 1


# ----------------------------------------------------------------------------- update variants
def _grads_after_critic_loss(mode):
    agent = small_agent(mode=mode)
    loss, _ = agent.compute_critic_loss(random_batch(agent), 4)
    agent.actor.zero_grad(set_to_none=True)
    loss.backward()
    return [p.grad for p in agent.actor.parameters()]


def test_faithful_critic_loss_moves_the_actor_clean_does_not():
    faithful = _grads_after_critic_loss("faithful")
    assert all(g is not None for g in faithful) and sum(float(g.abs().sum()) for g in faithful) > 0
    clean = _grads_after_critic_loss("clean")
    assert all(g is None for g in clean)


def test_faithful_steps_adam_twice_and_targets_move_toward_pre_iteration_weights():
    for mode in ("faithful", "clean"):
        agent = small_agent(mode=mode, tau=1.0)  # tau 1: the targets become exactly their source
        actor0 = [p.detach().clone() for p in agent.actor.parameters()]
        agent.update(random_batch(agent))
        actor1 = list(agent.actor.parameters())
        target = list(agent.target_actor.parameters())
        if mode == "faithful":
            assert all(torch.equal(t, p) for t, p in zip(target, actor0))
            state = agent.optimizers["all"].state
            assert {int(s["step"]) for s in state.values()} == {2}  # one Adam, two steps per iteration
        else:
            assert all(torch.equal(t, p) for t, p in zip(target, actor1))
            assert {int(s["step"]) for s in agent.optimizers["critic"].state.values()} == {1}
        assert not all(torch.equal(a, b) for a, b in zip(actor0, actor1))


def test_faithful_actor_step_moves_critic_on_momentum():
    agent = small_agent(mode="faithful")
    batch = random_batch(agent)
    agent.update(batch)  # builds momentum
    critic_before = [p.detach().clone() for p in agent.critic.parameters()]
    opt = agent.optimizers["all"]
    opt.zero_grad(set_to_none=False)
    loss, _ = agent.compute_actor_loss(batch, 2, agent.critic_before)
    loss.backward()
    assert all(float(p.grad.abs().sum()) == 0 for p in agent.critic.parameters())  # the Q term's critic is a frozen copy
    opt.step()
    assert not all(torch.equal(a, b) for a, b in zip(critic_before, agent.critic.parameters()))


def test_clean_actor_step_leaves_critic_alone():
    agent = small_agent(mode="clean")
    batch = random_batch(agent)
    agent.update(batch)
    critic_before = [p.detach().clone() for p in agent.critic.parameters()]
    agent.optimizers["actor"].zero_grad()
    loss, _ = agent.compute_actor_loss(batch, 2, agent.critic)
    loss.backward()
    agent.optimizers["actor"].step()
    assert all(torch.equal(a, b) for a, b in zip(critic_before, agent.critic.parameters()))


def test_update_returns_tensors_and_is_reproducible():
    a, b = small_agent(), small_agent()
    for _ in range(3):
        ia = a.update(random_batch(a))
        b.update(random_batch(b))
    assert all(torch.is_tensor(v) for v in ia.values())
    assert {"critic_loss", "fm_loss", "sc_loss", "q_loss", "actor_loss"} <= set(ia)
    assert all(torch.equal(x, y) for x, y in zip(a.actor.parameters(), b.actor.parameters()))


def test_bf16_precision_updates():
    agent = small_agent(precision="bf16")
    info = agent.update(random_batch(agent))
    assert all(torch.isfinite(v) for v in info.values())
    assert agent.actor.layers[0].weight.dtype == torch.float32  # weights stay float32


@pytest.mark.parametrize("mode", ["faithful", "clean"])
def test_bf16_update_takes_the_float32_step(mode):
    """bf16 runs forward and backward on bf16 copies, refreshed from the float32 weights every step;
    the float32 weights then take (nearly) the step a float32 update takes."""
    agents = {p: small_agent(mode=mode, precision=p, hidden_dims=(64, 64)) for p in ("fp32", "bf16")}
    deltas = {}
    for precision, agent in agents.items():
        before = torch.cat([p.detach().flatten().clone() for p in agent._params])
        for step in range(3):
            agent.update(random_batch(agent, seed=step), k=4)
        deltas[precision] = torch.cat([p.detach().flatten() for p in agent._params]) - before
    cosine = F.cosine_similarity(deltas["fp32"], deltas["bf16"], dim=0)
    assert cosine > 0.99, float(cosine)
    bf16 = agents["bf16"]
    assert bf16.actor.layers[0].weight.dtype == torch.float32 and bf16.work.actor.layers[0].weight.dtype == torch.bfloat16
    assert bf16.work.critic.ln_scales[0].dtype == torch.float32  # LayerNorm affine stays float32
    bf16._refresh("actor")
    assert torch.equal(bf16.work.actor.layers[1].weight, bf16.actor.layers[1].weight.bfloat16())


@pytest.mark.parametrize("mode", ["faithful", "clean"])
def test_bf16_resume_is_bit_exact(mode):
    """The bf16 working copies are rebuilt from the float32 weights on load: a resumed agent goes on
    exactly as the uninterrupted one."""
    a = small_agent(mode=mode, precision="bf16")
    for step in range(3):
        a.update(random_batch(a, seed=step))
    b = small_agent(mode=mode, precision="bf16")
    # deepcopy, as a checkpoint file is: torch's Optimizer.load_state_dict keeps the very state tensors
    # it is given, so two live agents would otherwise share Adam's moments and step counts
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    for step in range(3, 5):
        a.update(random_batch(a, seed=step))
        b.update(random_batch(b, seed=step))
    assert all(torch.equal(x, y) for x, y in zip(a._params, b._params))


def test_state_dict_round_trip():
    a = small_agent()
    a.update(random_batch(a))
    b = small_agent()
    b.load_state_dict(a.state_dict())
    obs = torch.randn(2, 3)
    assert torch.equal(a.sample(obs, 4, 2, generator=1).candidates, b.sample(obs, 4, 2, generator=1).candidates)
    assert b.step == 1


def test_env_presets():
    p = preset_for("cube-single-play-singletask-task2-v0")
    assert (p.discount, p.q_agg, p.q_loss_coef) == (0.99, "mean", 10)
    assert preset_for("antmaze-large-navigate-v0").q_agg == "min"
    with pytest.raises(ValueError, match="supported environments"):
        preset_for("nope-v0")


def test_building_an_agent_leaves_the_global_random_stream_and_process_settings_alone(monkeypatch):
    """In the lab's server every session shares one process: loading a policy in one session must not reseed the
    random stream of the others, nor change process-wide settings (issue: a whole class on one server)."""
    from sorl_core import cpu
    from sorl_core.networks import CriticEnsemble, ShortcutActor

    changed = []
    monkeypatch.setattr(cpu, "keep_freed_memory", lambda: changed.append("malloc"))
    torch.manual_seed(1234)
    before = torch.random.get_rng_state()
    agent = small_agent()
    SORLAgent(agent.config, seed=[1, 2])
    assert torch.equal(torch.random.get_rng_state(), before) and not changed
    # A seed still gives the weights it gave when agents seeded torch's global generator.
    torch.manual_seed(0)
    actor, critic = ShortcutActor(3, 2, (16, 16)), CriticEnsemble(3, 2, (16, 16))
    for old, new in zip([*actor.parameters(), *critic.parameters()], [*agent.actor.parameters(), *agent.critic.parameters()]):
        assert torch.equal(old, new)
