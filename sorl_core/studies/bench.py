"""Speed benchmark: seconds per training iteration, analytic FLOPs, matmul roofline, sampling latency."""

from __future__ import annotations

import json
import platform
import statistics
import time
from dataclasses import dataclass
from typing import Literal

import torch

from .. import cpu
from ..agent import SORLAgent, resolve_device
from ..train import SeedGroups, stack_seeds
from ..config import SIZES, SORLConfig


@dataclass
class BenchConfig:
    """Time SORL iterations on random data shaped like cube-single (observation 28, action 5)."""

    size: Literal["paper", "lab", "tiny"] = "paper"
    """Network size to time."""
    seeds: int = 1
    """Seeds trained as one stacked model (`sorl-lab train --seed 0 1 ...`). Above 1 it times the stack against
    one seed, alternating blocks of drawn-k iterations, and reports seed-iterations per second."""
    mode: Literal["faithful", "clean"] = "faithful"
    """Update variant to time."""
    precision: Literal["fp32", "bf16", "both"] = "both"
    """Matrix precision; `both` prints float32 and bf16 side by side."""
    obs_dim: int = 28
    """Observation size (cube-single: 28)."""
    action_dim: int = 5
    """Action size (cube-single: 5)."""
    batch_size: int = 256
    """Transitions per iteration."""
    iterations: int = 10
    """Timed iterations at each step count k (after warm-up)."""
    warmup: int = 2
    """Untimed iterations at each k first."""
    threads: int = 0
    """torch threads (0: torch's default, one per core)."""
    device: str = "cpu"
    """Where to time: cpu, cuda, or auto (CUDA when available)."""
    json: bool = False
    """Print one JSON object instead of a table."""


def _mlp_macs(dims: list[int]) -> int:
    return sum(i * o for i, o in zip(dims[:-1], dims[1:]))


def iteration_flops(cfg: SORLConfig, batch: int) -> dict[str, float]:
    """Analytic FLOPs (2 per multiply-add, matmuls only) of one iteration, averaged over the k draws.

    Backward through a layer costs 2x its forward when weights get gradients, 1x when only the input
    does (frozen or target networks). The actor sees obs+action+2 inputs, each critic obs+action+1.
    """
    h = list(cfg.hidden)
    actor = 2 * _mlp_macs([cfg.obs_dim + cfg.action_dim + 2, *h, cfg.action_dim])
    critic = 2 * _mlp_macs([cfg.obs_dim + cfg.action_dim + 1, *h, 1]) * cfg.num_critics
    k = sum(cfg.step_counts) / len(cfg.step_counts)  # mean Euler steps of a uniform k draw
    faithful = cfg.mode == "faithful"
    critic_step = (
        k * actor * (3 if faithful else 1)  # a' from the online actor (with its backward in faithful mode)
        + critic * (2 if faithful else 1)  # target critic; input-gradient to a' in faithful mode
        + 3 * critic  # online critic forward + backward
    )
    sc = 1 if cfg.max_level > 0 else 0
    actor_step = (
        3 * actor * (1 + sc)  # flow matching and self-consistency online passes
        + 2 * actor * sc  # the two target half steps
        + 3 * k * actor  # backprop through time
        + 2 * critic  # frozen critic, input gradient only
    )
    return {"critic_step": critic_step * batch, "actor_step": actor_step * batch, "total": (critic_step + actor_step) * batch}


def _wait(device: torch.device) -> None:
    """CUDA runs asynchronously: stop a clock only after the device has finished."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_rate(dtype: torch.dtype, n: int = 512, batch: int = 256, reps: int = 100, device: str | torch.device = "cpu") -> float:
    """Measured GFLOP/s of the iteration's dominant shape, (batch x n) @ (n x n)."""
    device = torch.device(device)
    a, w = torch.randn(batch, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    for _ in range(10):
        a @ w
    _wait(device)
    t = time.perf_counter()
    for _ in range(reps):
        a @ w
    _wait(device)
    return 2 * batch * n * n * reps / (time.perf_counter() - t) / 1e9


def _random_batch(cfg: BenchConfig, g: torch.Generator) -> dict[str, torch.Tensor]:
    b = cfg.batch_size
    return {
        "observations": torch.randn(b, cfg.obs_dim, generator=g),
        "actions": torch.rand(b, cfg.action_dim, generator=g) * 2 - 1,
        "rewards": -torch.rand(b, generator=g),
        "next_observations": torch.randn(b, cfg.obs_dim, generator=g),
        "masks": torch.ones(b),
    }


def time_iterations(agent: SORLAgent, batch: dict, iterations: int, warmup: int) -> dict:
    """Seconds per iteration at each step count k, and their mean over k.

    Each iteration draws k uniformly from {1, 2, 4, .., m_btt}, and k sets most of its cost (k = 8
    costs more than twice k = 1), so the mean of a short run depends on its draws. Timing every k
    equally often and averaging gives the expected cost of an iteration without that noise. The median
    at each k is what a run sees; the minimum is what the code costs (on a shared machine noise only
    adds time).
    """
    per_k = {}
    for k in agent.config.step_counts:
        for _ in range(warmup):
            agent.update(batch, k=k)
        times = []
        for _ in range(iterations):
            t = time.perf_counter()
            info = agent.update(batch, k=k)
            float(info["critic_loss"])  # wait for the device before stopping the clock
            _wait(agent.device)
            times.append(time.perf_counter() - t)
        per_k[k] = {"median": statistics.median(times), "min": min(times)}
    return {
        "median": statistics.mean(v["median"] for v in per_k.values()),
        "best": statistics.mean(v["min"] for v in per_k.values()),
        "per_k": per_k,
    }


def time_stack_against_one(seeds: list[SORLAgent], one: SORLAgent, batch: dict, iterations: int, warmup: int,
                           blocks: int = 4) -> dict:
    """Seconds per iteration of several seeds trained as `sorl-lab train --seed ...` trains them (`stack_seeds`:
    one stack, or on a CPU one stack per core) and of one seed alone, both with drawn step counts.

    Each seed of a stack draws its own k, so the per-k timing above does not apply: both run `iterations`
    updates with their natural draws per block, alternating blocks so that the machine's drift falls on both.
    Returns each one's mean over all blocks, the ratio of the two and how the seeds were laid out.
    """
    stacked = {key: torch.stack([value] * len(seeds)) for key, value in batch.items()}
    trainer = stack_seeds(seeds)
    parts = trainer.parts if isinstance(trainer, SeedGroups) else None
    layout = (f"{len(parts)} stacks of {'/'.join(str(len(p.seeds)) for p in parts)} seeds, one thread each" if parts
              else f"one stack of {len(seeds)} seeds, {torch.get_num_threads()} threads")
    times = {"stack": [], "one": []}
    try:
        for block in range(blocks + 1):  # block 0 warms both up, untimed
            for name in ("one", "stack"):
                if name == "stack" and parts is not None and block > 0:
                    trainer = SeedGroups(parts)  # one torch thread while it runs; `one` gets the default back
                agent, b = (one, batch) if name == "one" else (trainer, stacked)
                t = time.perf_counter()
                for _ in range(iterations if block else warmup):
                    info = agent.update(b)
                float(info["critic_loss"].sum())
                _wait(one.device)
                if name == "stack" and parts is not None:
                    trainer.close()
                if block:
                    times[name].append((time.perf_counter() - t) / iterations)
    finally:
        if parts is not None:
            trainer.close()
    result = {name: statistics.mean(v) for name, v in times.items()}
    return {**result, "ratio": result["stack"] / result["one"], "layout": layout,
            "blocks": {k: [round(x, 4) for x in v] for k, v in times.items()}}


def sample_latency_ms(agent: SORLAgent, obs_dim: int, m_inf: int = 8, n: int = 32, reps: int = 50) -> float:
    obs = torch.randn(1, obs_dim)
    for _ in range(5):
        agent.sample(obs, m_inf=m_inf, n=n, generator=0)
    _wait(agent.device)
    t = time.perf_counter()
    for i in range(reps):
        agent.sample(obs, m_inf=m_inf, n=n, generator=i)
    _wait(agent.device)
    return (time.perf_counter() - t) / reps * 1e3


def run_bench(cfg: BenchConfig) -> dict:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    precisions = ["fp32", "bf16"] if cfg.precision == "both" else [cfg.precision]
    device = resolve_device(cfg.device)
    report = {
        "size": cfg.size, "hidden": list(SIZES[cfg.size]), "mode": cfg.mode, "batch_size": cfg.batch_size,
        "obs_dim": cfg.obs_dim, "action_dim": cfg.action_dim, "threads": torch.get_num_threads(),
        "torch": torch.__version__, "device": str(device),
        "machine": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "gelu": "fused" if cpu.load() else "eager", "results": {},
        # Without native bf16 matrix products (AVX2-only CPUs) bf16 takes a slow generic path: say so beside its times.
        "bf16_matmul": "native" if cpu.bf16_matmul_native(device) else "slow generic path",
    }
    report["seeds"] = cfg.seeds
    for precision in precisions:
        agent_cfg = SORLConfig(obs_dim=cfg.obs_dim, action_dim=cfg.action_dim, size=cfg.size, mode=cfg.mode,
                               precision=precision, batch_size=cfg.batch_size, device=str(device))
        agent = SORLAgent(agent_cfg, seed=0)
        if cfg.seeds > 1:
            report["results"][precision] = _stack_result(cfg, agent_cfg, agent, device)
            continue
        timing = time_iterations(agent, _random_batch(cfg, torch.Generator().manual_seed(0)), cfg.iterations, cfg.warmup)
        seconds = timing["median"]
        flops = iteration_flops(agent_cfg, cfg.batch_size)["total"]
        rate = matmul_rate(torch.float32 if precision == "fp32" else torch.bfloat16, n=max(SIZES[cfg.size]), device=device)
        report["results"][precision] = {
            "seconds_per_iteration": round(seconds, 4),
            "best_seconds_per_iteration": round(timing["best"], 4),
            "seconds_per_iteration_at_k": {str(k): round(v["median"], 4) for k, v in timing["per_k"].items()},
            "iteration_gflop": round(flops / 1e9, 2),
            "achieved_gflops": round(flops / seconds / 1e9, 1),
            "matmul_gflops": round(rate, 1),
            "fraction_of_matmul_rate": round(flops / seconds / 1e9 / rate, 3),
            "sample_ms_m8_n32": round(sample_latency_ms(agent, cfg.obs_dim), 2),
        }
    return report


def _stack_result(cfg: BenchConfig, agent_cfg: SORLConfig, one: SORLAgent, device: torch.device) -> dict:
    seeds = [SORLAgent(agent_cfg, seed=s) for s in range(cfg.seeds)]
    timing = time_stack_against_one(seeds, one, _random_batch(cfg, torch.Generator().manual_seed(0)),
                                    iterations=cfg.iterations * len(agent_cfg.step_counts), warmup=cfg.warmup * 4)
    flops = iteration_flops(agent_cfg, cfg.batch_size)["total"] * cfg.seeds
    rate = matmul_rate(torch.float32 if agent_cfg.precision == "fp32" else torch.bfloat16, n=max(agent_cfg.hidden), device=device)
    return {
        "seconds_per_iteration": round(timing["stack"], 4),
        "seed_iterations_per_second": round(cfg.seeds / timing["stack"], 1),
        "one_seed_seconds_per_iteration": round(timing["one"], 4),
        "stack_over_one_seed": round(timing["ratio"], 2),
        "layout": timing["layout"],
        "blocks": timing["blocks"],
        "iteration_gflop": round(flops / 1e9, 2),
        "achieved_gflops": round(flops / timing["stack"] / 1e9, 1),
        "matmul_gflops": round(rate, 1),
        "fraction_of_matmul_rate": round(flops / timing["stack"] / 1e9 / rate, 3),
    }


def print_report(report: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report, indent=2))
        return
    if report.get("seeds", 1) > 1:
        print(f"SORL iteration of {report['seeds']} seeds as one stack, size={report['size']} {report['hidden']}, "
              f"mode={report['mode']}, batch={report['batch_size']} per seed, drawn k, {report['device']}, "
              f"threads={report['threads']}, torch {report['torch']}, GELU {report['gelu']}")
        print(f"{'precision':>9} {'s/iter':>8} {'seed-it/s':>9} {'1 seed s/iter':>13} {'stack/1 seed':>12} "
              f"{'GFLOP/s':>8} {'matmul':>8} {'frac':>6}  layout")
        for p, r in report["results"].items():
            print(f"{p:>9} {r['seconds_per_iteration']:>8.4f} {r['seed_iterations_per_second']:>9.1f} "
                  f"{r['one_seed_seconds_per_iteration']:>13.4f} {r['stack_over_one_seed']:>12.2f} "
                  f"{r['achieved_gflops']:>8.1f} {r['matmul_gflops']:>8.1f} {r['fraction_of_matmul_rate']:>6.3f}  {r['layout']}")
        return
    print(f"SORL iteration, size={report['size']} {report['hidden']}, mode={report['mode']}, batch={report['batch_size']}, "
          f"obs={report['obs_dim']}, act={report['action_dim']}, {report['device']} ({report['machine']}), "
          f"threads={report['threads']}, torch {report['torch']}, "
          f"GELU {report['gelu']}, bf16 matrix products: {report['bf16_matmul']}")
    print(f"{'precision':>9} {'s/iter':>8} {'best':>8} {'GFLOP/it':>9} {'GFLOP/s':>8} {'matmul':>8} {'frac':>6} {'sample ms (M=8,N=32)':>21}")
    for p, r in report["results"].items():
        print(f"{p:>9} {r['seconds_per_iteration']:>8.4f} {r['best_seconds_per_iteration']:>8.4f} "
              f"{r['iteration_gflop']:>9.2f} {r['achieved_gflops']:>8.1f} "
              f"{r['matmul_gflops']:>8.1f} {r['fraction_of_matmul_rate']:>6.3f} {r['sample_ms_m8_n32']:>21.2f}")
