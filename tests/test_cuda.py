"""The CUDA path: sampling, an update, a checkpoint round trip CUDA -> CPU, and CPU/CUDA agreement.

Marked `cuda`: `make test` deselects them (pyproject's addopts), `make gpu-check` (scripts/gpu_check.sh) runs them
on a machine with a GPU. Without one they are skipped with that reason, so `pytest -m cuda` here says so.
"""

import pytest
import torch

from sorl_core import agent as agent_module
from sorl_core.agent import SORLAgent
from sorl_core.checkpoint import load_agent, save_checkpoint
from sorl_core.config import SORLConfig

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine"),
]


def make_agent(device: str, **overrides) -> SORLAgent:
    cfg = dict(obs_dim=28, action_dim=5, size="lab", device=device, batch_size=64)
    cfg.update(overrides)
    return SORLAgent(SORLConfig(**cfg), seed=0)


def random_batch(b: int = 64, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "observations": torch.randn(b, 28, generator=g),
        "actions": torch.rand(b, 5, generator=g) * 2 - 1,
        "rewards": -torch.rand(b, generator=g),
        "next_observations": torch.randn(b, 28, generator=g),
        "masks": torch.ones(b),
    }


def test_sampling_on_cuda():
    agent = make_agent("cuda")
    obs = torch.randn(7, 28)
    result = agent.sample(obs, m_inf=8, n=4, generator=0, return_trajectory=True)
    assert result.actions.device.type == "cuda" and result.actions.shape == (7, 5)
    assert result.actions.abs().max() <= 1 and result.trajectory.shape == (7, 4, 9, 5)
    assert torch.equal(result.actions, agent.sample(obs, m_inf=8, n=4, generator=0).actions)  # seeded


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_update_on_cuda(precision):
    agent = make_agent("cuda", precision=precision)
    before = [p.detach().clone() for p in agent.actor.parameters()]
    for step in range(3):
        info = agent.update(random_batch(seed=step))
    assert all(torch.isfinite(v).all() for v in info.values())
    assert any(not torch.equal(b, p) for b, p in zip(before, agent.actor.parameters()))


def test_checkpoint_round_trip_cuda_to_cpu(tmp_path):
    agent = make_agent("cuda")
    agent.update(random_batch())
    path = save_checkpoint(tmp_path / "checkpoint.pt", agent, extra={"note": "cuda"})
    loaded, extra = load_agent(path, device="cpu")
    assert extra == {"note": "cuda"} and loaded.device.type == "cpu" and loaded.step == agent.step
    for name in ("actor", "critic", "target_actor", "target_critic"):
        for a, b in zip(getattr(agent, name).state_dict().values(), getattr(loaded, name).state_dict().values()):
            assert torch.equal(a.cpu(), b)
    obs = torch.randn(5, 28)
    q_cuda = agent.critic(obs.cuda(), torch.zeros(5, 5, device="cuda"), 1).cpu()
    assert torch.allclose(q_cuda, loaded.critic(obs, torch.zeros(5, 5), 1), atol=1e-5)
    loaded.update(random_batch())  # and it trains on, on the CPU


def test_the_same_update_on_cpu_and_cuda(monkeypatch):
    """Both agents start from the same weights and draw the same noise (the CUDA agent's draws are made on a
    CPU generator and moved), so after a few float32 updates their weights agree within float tolerance."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    cpu, gpu = make_agent("cpu"), make_agent("cuda")
    gpu.generator = torch.Generator().manual_seed(0)  # the CPU agent's stream

    def on_host(fn):
        def draw(*args, generator=None, device=None, **kwargs):
            out = fn(*args, generator=generator, **kwargs)
            return out.to(device) if device is not None else out
        return draw

    for name in ("randn", "rand", "randint"):
        monkeypatch.setattr(agent_module.torch, name, on_host(getattr(torch, name)))
    for step in range(3):
        info_cpu = cpu.update(random_batch(seed=step), k=4)
        info_gpu = gpu.update(random_batch(seed=step), k=4)
    for key in ("critic_loss", "actor_loss"):
        assert abs(float(info_cpu[key]) - float(info_gpu[key])) <= 1e-3 * (1 + abs(float(info_cpu[key])))
    for a, b in zip(cpu._params, gpu._params):
        assert torch.allclose(a, b.cpu(), atol=1e-4, rtol=1e-3)


def test_stacked_seeds_on_cuda_follow_their_single_seed_runs():
    """`sorl-lab train --seed 0 1 2` on a GPU: one stacked model (no per-core split), each seed its own run."""
    from sorl_core.train import stack_seeds

    cfg = SORLConfig(obs_dim=28, action_dim=5, size="lab", device="cuda", batch_size=64)
    seeds = [0, 1, 2]
    stack = stack_seeds([SORLAgent(cfg, seed=s) for s in seeds])
    assert isinstance(stack, SORLAgent) and stack.stacked and stack.seeds == seeds
    singles = [SORLAgent(cfg, seed=s) for s in seeds]
    for it in range(3):
        batches = [random_batch(seed=10 * it + j) for j in range(3)]
        stack.update({k: torch.stack([b[k] for b in batches]) for k in batches[0]})
        for agent, b in zip(singles, batches):
            agent.update(b)
    for p, single in enumerate(singles):
        member = stack.member(p)
        for x, y in zip(member.actor.parameters(), single.actor.parameters()):
            assert (x - y).abs().max().item() < 1e-5  # batched and single matmuls round differently (TF32 off)
        assert torch.equal(member.generator.get_state(), single.generator.get_state())
