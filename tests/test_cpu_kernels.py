"""The fused CPU kernels (sorl_core/csrc/kernels.cpp) against the eager PyTorch functions they replace."""

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from sorl_core import cpu


@pytest.fixture(autouse=True)
def kernels():
    # The README's test command installs g++ and ninja and builds the kernels: here they must load.
    assert cpu.load(), "the fused CPU kernels did not build (they need g++ and ninja: make setup installs both)"


def _eager_gelu_layer_norm(z, scale, shift, eps=1e-6):
    return F.layer_norm(F.gelu(z, approximate="tanh"), z.shape[-1:], eps=eps) * scale + shift


def _grads(fn, *tensors, seed=0):
    leaves = [t.detach().clone().requires_grad_() for t in tensors]
    out = fn(*leaves)
    out.backward(torch.randn(out.shape, generator=torch.Generator().manual_seed(seed)).to(out.dtype))
    return out.detach(), [leaf.grad for leaf in leaves]


@pytest.mark.parametrize("shape", [(256, 512), (3, 37, 45), (5,)])  # sizes off the vector width test the tails
def test_gelu_matches_eager_in_float32(shape):
    z = torch.randn(shape, generator=torch.Generator().manual_seed(1)) * 4
    y, (dz,) = _grads(cpu.gelu_tanh, z)
    y_ref, (dz_ref,) = _grads(lambda t: F.gelu(t, approximate="tanh"), z)
    assert torch.allclose(y, y_ref, atol=2e-6, rtol=1e-5)
    assert torch.allclose(dz, dz_ref, atol=2e-5, rtol=1e-4)


def test_gelu_in_bf16_rounds_like_eager():
    z = (torch.randn(64, 300, generator=torch.Generator().manual_seed(2)) * 4).bfloat16()
    y, (dz,) = _grads(cpu.gelu_tanh, z)
    y_ref, (dz_ref,) = _grads(lambda t: F.gelu(t.float(), approximate="tanh"), z)
    assert y.dtype == dz.dtype == torch.bfloat16
    # one bf16 rounding of the exact value: relative error below 2^-8
    assert ((y.float() - y_ref).abs() <= 2**-8 * y_ref.abs() + 1e-6).all()
    # the gradient goes through two roundings (the stored slope, then the product): a few bf16 ulps
    assert ((dz.float() - dz_ref.float()).abs() <= 2**-6 * dz_ref.float().abs() + 1e-3).all()


def test_gelu_without_grad_builds_no_graph():
    z = torch.randn(8, 16, requires_grad=True)
    with torch.no_grad():
        assert not cpu.gelu_tanh(z).requires_grad
    assert cpu.gelu_tanh(z).grad_fn is not None


@pytest.mark.parametrize("shape", [(2, 256, 512), (3, 7, 45)])
def test_gelu_layer_norm_matches_eager_in_float32(shape):
    g = torch.Generator().manual_seed(3)
    e, _, h = shape
    z = torch.randn(shape, generator=g) * 3
    scale, shift = 1 + 0.3 * torch.randn(e, 1, h, generator=g), 0.2 * torch.randn(e, 1, h, generator=g)
    out, grads = _grads(cpu.gelu_layer_norm, z, scale, shift)
    out_ref, grads_ref = _grads(_eager_gelu_layer_norm, z, scale, shift)
    assert torch.allclose(out, out_ref, atol=1e-5, rtol=1e-5)
    for name, got, want in zip(("z", "scale", "shift"), grads, grads_ref):
        assert torch.allclose(got, want, atol=1e-4, rtol=1e-4), name


def test_gelu_layer_norm_in_bf16_is_closer_to_float32_than_eager_bf16():
    """One rounding at the end instead of three: the fused bf16 result is at least as accurate."""
    g = torch.Generator().manual_seed(4)
    z = torch.randn(2, 64, 512, generator=g) * 3
    scale, shift = 1 + 0.3 * torch.randn(2, 1, 512, generator=g), 0.2 * torch.randn(2, 1, 512, generator=g)
    exact = _eager_gelu_layer_norm(z, scale, shift)
    fused = cpu.gelu_layer_norm(z.bfloat16(), scale, shift)
    zb = z.bfloat16()
    eager = torch.addcmul(shift.bfloat16(), F.layer_norm(F.gelu(zb, approximate="tanh"), (512,), eps=1e-6), scale.bfloat16())
    assert fused.dtype == torch.bfloat16
    fused_err, eager_err = (fused.float() - exact).abs().mean(), (eager.float() - exact).abs().mean()
    assert fused_err <= eager_err
    assert fused_err < 0.01


def test_critic_gradients_match_with_and_without_kernels():
    """The whole critic (batched members, GELU, LayerNorm, affine) gives the same gradients either way."""
    from sorl_core.networks import CriticEnsemble

    torch.manual_seed(0)
    critic = CriticEnsemble(6, 3, (32, 32), num=2)
    obs, act = torch.randn(16, 6), torch.randn(16, 3)
    grads = []
    for use in (True, False):
        critic.zero_grad()
        saved = cpu._loaded
        cpu._loaded = use
        try:
            critic(obs, act, 4).square().mean().backward()
        finally:
            cpu._loaded = saved
        grads.append([p.grad.clone() for p in critic.parameters()])
    for fused, eager in zip(*grads):
        assert torch.allclose(fused, eager, atol=1e-5, rtol=1e-4)


def test_module_entry_point_builds_and_checks():
    proc = subprocess.run([sys.executable, "-m", "sorl_core.cpu"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "ready" in proc.stdout


def test_switch_off_runs_eager():
    code = "from sorl_core import cpu; import torch; print(cpu.load(), cpu.gelu_tanh(torch.ones(3)).tolist())"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "SORL_LAB_FUSED": "0"})
    assert proc.returncode == 0 and proc.stdout.startswith("False") and "warn" not in proc.stderr.lower()


def test_without_a_compiler_it_warns_once_and_runs_eager(tmp_path):
    """A machine with no working C++ compiler: one warning saying what is missing, then eager PyTorch."""
    code = (
        "import warnings, torch, torch.nn.functional as F\n"
        "from sorl_core import cpu\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    z = torch.linspace(-3, 3, 50)\n"
        "    same = torch.equal(cpu.gelu_tanh(z), F.gelu(z, approximate='tanh'))\n"
        "    cpu.gelu_tanh(z)\n"
        "print(cpu.load(), same, len(caught))\n"
        "print(caught[0].message if caught else '')\n"
    )
    env = {**__import__("os").environ, "TORCH_EXTENSIONS_DIR": str(tmp_path), "CXX": str(tmp_path / "no-such-compiler")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    first, message = proc.stdout.splitlines()[:2]
    assert first == "False True 1"
    assert "g++" in message and "SORL_LAB_FUSED=0" in message


def test_adam_from_copies_is_torch_adam_with_the_clip():
    """One pass per tensor from bf16 gradients = cast to float32, clip_and_step with torch's fused Adam,
    cast the new weights into the copies; a missing gradient steps like a zero one; same state layout."""
    from sorl_core.agent import _adam, clip_and_step

    g = torch.Generator().manual_seed(5)
    shapes = [(64, 33), (33,), (7,), (2, 1, 45)]
    ours = [torch.nn.Parameter(torch.randn(s, generator=g)) for s in shapes]
    ref = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    opt_ours, opt_ref = _adam(ours, 1e-2), _adam(ref, 1e-2)
    copies = [p.detach().bfloat16() for p in ours[:3]] + [p.detach().clone() for p in ours[3:]]  # last one float32
    for step in range(4):
        grads = [(torch.randn(s, generator=g) * 3).bfloat16() for s in shapes]
        grads[1] = None if step % 2 else grads[1]  # no gradient on some steps: momentum only
        norm = cpu.adam_from_copies(opt_ours, ours, [None if x is None else (x if i < 3 else x.float())
                                                      for i, x in enumerate(grads)], copies, max_norm=1.0)
        for p, x in zip(ref, grads):
            p.grad = torch.zeros_like(p) if x is None else x.float()
        norm_ref = clip_and_step(opt_ref, ref, 1.0)
        assert torch.allclose(norm, norm_ref, rtol=1e-5)
        for a, b in zip(ours, ref):
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)
        for c, p in zip(copies, ours):
            assert torch.equal(c, p.detach().to(c.dtype))
    for a, b in zip(ours, ref):
        sa, sb = opt_ours.state[a], opt_ref.state[b]
        assert float(sa["step"]) == float(sb["step"]) == 4
        assert torch.allclose(sa["exp_avg"], sb["exp_avg"], rtol=1e-5, atol=1e-7)
        assert torch.allclose(sa["exp_avg_sq"], sb["exp_avg_sq"], rtol=1e-5, atol=1e-9)
    opt_ref.load_state_dict(opt_ours.state_dict())  # checkpoints keep torch's own layout


@pytest.mark.parametrize("mode", ["faithful", "clean"])
def test_bf16_agent_trains_the_same_with_the_fused_adam(mode):
    from sorl_core.agent import SORLAgent
    from sorl_core.config import SORLConfig

    agents = []
    for fused in (True, False):
        agent = SORLAgent(SORLConfig(obs_dim=3, action_dim=2, hidden_dims=(32, 32), mode=mode, precision="bf16"), seed=0)
        agent._adam_writes_copies = fused
        g = torch.Generator().manual_seed(0)
        batch = {"observations": torch.randn(32, 3, generator=g), "actions": torch.rand(32, 2, generator=g) * 2 - 1,
                 "rewards": -torch.rand(32, generator=g), "next_observations": torch.randn(32, 3, generator=g),
                 "masks": torch.ones(32)}
        for _ in range(3):
            agent.update(batch, k=2)
        agents.append(agent)
    assert agents[0]._adam_writes_copies and not agents[1]._adam_writes_copies
    for a, b in zip(agents[0]._params, agents[1]._params):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-5)
    for a, b in zip(agents[0].work.actor.parameters(), agents[0].actor.parameters()):
        assert torch.equal(a, b.detach().to(a.dtype))  # the copies hold the new weights
