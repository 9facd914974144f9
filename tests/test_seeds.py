"""Several seeds trained as one stacked model (SORLAgent(config, seed=[...])) follow their single-seed runs."""

import json
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from sorl_core.agent import SORLAgent
from sorl_core.checkpoint import read_checkpoint
from sorl_core.config import SORLConfig
from sorl_core.train import ToyTrainConfig, train_toy
from test_agent import random_batch

SEEDS = [3, 5, 7]
NETWORKS = ("actor", "critic", "target_actor", "target_critic")


def config(**overrides) -> SORLConfig:
    cfg = dict(obs_dim=6, action_dim=3, hidden_dims=(32, 32), device="cpu", batch_size=48)
    cfg.update(overrides)
    return SORLConfig(**cfg)


def batch(seed: int, b: int = 48) -> dict:
    """test_agent's random batch for this file's sizes, with some terminal transitions (mask 0)."""
    out = random_batch(SimpleNamespace(config=config()), b, seed)
    out["masks"] = (torch.rand(b, generator=torch.Generator().manual_seed(seed + 1000)) > 0.1).float()
    return out


def stacked_batch(batches: list[dict]) -> dict:
    return {key: torch.stack([b[key] for b in batches]) for key in batches[0]}


def largest_difference(a: SORLAgent, b: SORLAgent) -> float:
    """Largest difference over weights, targets and Adam's moments."""
    worst = 0.0
    for name in NETWORKS:
        for x, y in zip(getattr(a, name).parameters(), getattr(b, name).parameters()):
            worst = max(worst, (x - y).abs().max().item())
    for key, opt in a.optimizers.items():
        other = b.optimizers[key]
        for p, q in zip(opt.param_groups[0]["params"], other.param_groups[0]["params"]):
            for moment in ("exp_avg", "exp_avg_sq"):
                worst = max(worst, (opt.state[p][moment] - other.state[q][moment]).abs().max().item())
    return worst


@pytest.mark.parametrize("mode,precision,discount,grad_clip", [
    ("faithful", "fp32", 0.99, 1.0), ("faithful", "bf16", 0.99, 1.0), ("clean", "fp32", 0.99, 1.0),
    ("faithful", "fp32", 0.0, 1.0),
    # A clip every step binds: each seed must be scaled by its own norm, not the stack's.
    ("faithful", "fp32", 0.99, 0.01), ("faithful", "bf16", 0.99, 0.01), ("clean", "fp32", 0.99, 0.01),
])
def test_each_seed_of_a_stack_follows_its_single_seed_run(mode, precision, discount, grad_clip):
    cfg = config(mode=mode, precision=precision, discount=discount, grad_clip=grad_clip)
    singles = [SORLAgent(cfg, seed=s) for s in SEEDS]
    stack = SORLAgent(cfg, seed=SEEDS)
    for it in range(4):
        batches = [batch(100 * it + j) for j in range(len(SEEDS))]
        single_infos = [agent.update(b) for agent, b in zip(singles, batches)]
        stacked_info = stack.update(stacked_batch(batches))
    for p, single in enumerate(singles):
        member = stack.member(p)
        assert member.step == single.step == 4
        # The noise streams are the same draws in the same order: bit-identical generator states.
        assert torch.equal(member.generator.get_state(), single.generator.get_state())
        assert torch.equal(member.host_generator.get_state(), single.host_generator.get_state())
        # Not bit-identical: a stack runs each layer as one batched matmul over the seeds (baddbmm) where a
        # single seed runs addmm, and it reduces losses per seed; the two round differently in the last bit.
        # Measured after 4 updates: at most 3e-8 (float32 and bf16); one update moves weights by ~1e-3.
        assert largest_difference(member, single) < 1e-6
        for key, value in single_infos[p].items():
            assert float(stacked_info[key][p]) == pytest.approx(float(value), rel=1e-4, abs=1e-5), key


def test_a_stack_differs_from_seed_to_seed():
    """Guard against a stack that trains one seed P times: its members must differ as their seeds do."""
    stack = SORLAgent(config(), seed=SEEDS)
    stack.update(stacked_batch([batch(j) for j in range(len(SEEDS))]))
    first, second = stack.member(0), stack.member(1)
    assert (first.actor.layers[0].weight - second.actor.layers[0].weight).abs().max() > 1e-2


def test_members_restack_and_resume_bit_exactly():
    """Per-seed checkpoints are members; stacking them again continues exactly where the stack was."""
    cfg = config()
    straight = SORLAgent(cfg, seed=SEEDS)
    for it in range(5):
        straight.update(stacked_batch([batch(10 * it + j) for j in range(3)]))

    first = SORLAgent(cfg, seed=SEEDS)
    for it in range(3):
        first.update(stacked_batch([batch(10 * it + j) for j in range(3)]))
    saved = [first.member(p).state_dict() for p in range(3)]
    members = []
    for s, state in zip(SEEDS, saved):
        agent = SORLAgent(cfg, seed=s)
        agent.load_state_dict(state)
        members.append(agent)
    resumed = SORLAgent.stack(members)
    for it in range(3, 5):
        resumed.update(stacked_batch([batch(10 * it + j) for j in range(3)]))
    for p in range(3):
        assert largest_difference(resumed.member(p), straight.member(p)) == 0.0


def test_a_stack_says_what_it_cannot_do():
    stack = SORLAgent(config(), seed=[0, 1])
    with pytest.raises(ValueError, match=r"agent.member\(p\)"):
        stack.sample(torch.zeros(1, 6))
    with pytest.raises(ValueError, match="each seed is saved on its own"):
        stack.state_dict()
    with pytest.raises(ValueError, match=r"\(seeds, batch, ...\)"):
        stack.update(batch(0))
    with pytest.raises(ValueError, match="different numbers"):
        SORLAgent(config(), seed=[1, 1])
    one, other = SORLAgent(config(), seed=0), SORLAgent(config(q_loss_coef=2.0), seed=1)
    with pytest.raises(ValueError, match="one configuration"):
        SORLAgent.stack([one, other])
    one.update(batch(0))
    with pytest.raises(ValueError, match="same step"):
        SORLAgent.stack([one, SORLAgent(config(), seed=1)])


# ----------------------------------------------------------------------------- the CLI, several seeds
def test_cli_trains_several_seeds_into_ordinary_run_folders(tmp_path):
    """`sorl-lab train --seed 0 1` writes one ordinary folder per seed; each is the single-seed run of its seed
    (to float rounding, see above), resumes like one, and loads like one."""
    from test_cli import TINY, rows, run_cli, weights

    # Three seeds: on a 2-core machine seeds 0 and 2 share a stack on one core and seed 1 trains beside them.
    base = tmp_path / "ring"
    run_cli("train", "--world", "ring", "--seed", "0", "1", "2", "--iterations", "20", "--out", str(base), *TINY)
    run_cli("train", "--world", "ring", "--seed", "2", "--iterations", "20", "--out", str(tmp_path / "alone"), *TINY)
    stacked, alone = tmp_path / "ring-s2", tmp_path / "alone"
    assert json.loads((stacked / "config.json").read_text())["seed"] == 2
    assert [int(r["step"]) for r in rows(stacked / "metrics.csv")] == [5, 10, 15, 20]
    for a, b in zip(weights(stacked / "checkpoint.pt"), weights(alone / "checkpoint.pt")):
        assert (a - b).abs().max() < 1e-5  # 20 updates of last-bit differences
    for r, s in zip(rows(stacked / "eval.csv"), rows(alone / "eval.csv"), strict=True):
        assert float(r["mean_reward"]) == pytest.approx(float(s["mean_reward"]), abs=1e-4)
    # the two seeds are two runs, not one run twice
    assert not torch.equal(weights(tmp_path / "ring-s0" / "checkpoint.pt")[0], weights(stacked / "checkpoint.pt")[0])


def test_an_interrupted_stack_resumes_every_seed_exactly(tmp_path):
    from test_cli import TINY, rows, run_cli, weights

    run_cli("train", "--world", "moons", "--seed", "2", "3", "4", "--iterations", "20", "--out", str(tmp_path / "straight"), *TINY)
    out = tmp_path / "cut"
    cfg = ToyTrainConfig(world="moons", seed=(2, 3, 4), iterations=20, out=str(out), log_every=5, eval_every=10,
                         checkpoint_every=10, eval_contexts=32, progress=False, agent=replace(ToyTrainConfig().agent, size="tiny"))

    def interrupt(step, total):
        if step == 13:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_toy(cfg, on_progress=interrupt)
    for seed in (2, 3, 4):
        assert read_checkpoint(tmp_path / f"cut-s{seed}" / "checkpoint.pt")["agent"]["step"] == 13
    run_cli("train", "--world", "moons", "--seed", "2", "3", "4", "--iterations", "20", "--out", str(out), "--resume", *TINY)
    for seed in (2, 3, 4):
        done, straight = tmp_path / f"cut-s{seed}", tmp_path / f"straight-s{seed}"
        for a, b in zip(weights(done / "checkpoint.pt"), weights(straight / "checkpoint.pt")):
            assert torch.equal(a, b)
        assert rows(done / "eval.csv") == rows(straight / "eval.csv")


def test_two_signals_during_an_update_on_several_cores_leave_every_seed_at_one_step(tmp_path, monkeypatch):
    """Seeds trained on two threads (one stack per core): SIGTERM twice while one stack is halfway through its update,
    as GNU timeout sends it, lets every stack finish that iteration before the checkpoints are written. Cutting it
    short left seeds an iteration apart (seen: 256,576 against 256,577 after a sitting's deadline)."""
    import time

    from test_cli import TINY, run_cli, signal_main_thread, weights

    from sorl_core import train

    run_cli("train", "--world", "moons", "--seed", "2", "3", "4", "--iterations", "20", "--out", str(tmp_path / "straight"), *TINY)
    monkeypatch.setattr(train, "usable_cores", lambda: 2)
    actor_loss = SORLAgent.compute_actor_loss

    def signal_halfway(self, *args, **kwargs):
        if self.step == 12 and self.seeds[0] == 3:  # seed 3 trains alone on the second thread
            signal_main_thread(2)
            time.sleep(0.3)  # the main thread could save now, with this update still running
        return actor_loss(self, *args, **kwargs)

    monkeypatch.setattr(SORLAgent, "compute_actor_loss", signal_halfway)
    out = tmp_path / "cut"
    cfg = ToyTrainConfig(world="moons", seed=(2, 3, 4), iterations=20, out=str(out), log_every=5, eval_every=10,
                         checkpoint_every=10, eval_contexts=32, progress=False, agent=replace(ToyTrainConfig().agent, size="tiny"))
    with pytest.raises(KeyboardInterrupt):
        train_toy(cfg)
    assert [read_checkpoint(tmp_path / f"cut-s{seed}" / "checkpoint.pt")["agent"]["step"] for seed in (2, 3, 4)] == [13] * 3
    monkeypatch.undo()
    run_cli("train", "--world", "moons", "--seed", "2", "3", "4", "--iterations", "20", "--out", str(out), "--resume", *TINY)
    for seed in (2, 3, 4):
        for a, b in zip(weights(tmp_path / f"cut-s{seed}" / "checkpoint.pt"), weights(tmp_path / f"straight-s{seed}" / "checkpoint.pt")):
            assert (a - b).abs().max() < 1e-5  # one thread per stack here, two in the CLI's: last-bit differences


def test_seeds_resumed_from_different_steps_catch_up_then_train_as_one_stack(tmp_path, monkeypatch):
    """A stop between two seeds' checkpoints leaves them at different steps: the one behind trains alone until it
    reaches the other, then both go on as one stack (not one seed to the end, then the other), each its own run."""
    from test_cli import TINY, run_cli, weights

    from sorl_core import train

    for seed, steps in ((4, 10), (5, 15)):
        run_cli("train", "--world", "ring", "--seed", str(seed), "--iterations", str(steps), "--out",
                str(tmp_path / f"mixed-s{seed}"), *TINY)
        run_cli("train", "--world", "ring", "--seed", str(seed), "--iterations", "20", "--out",
                str(tmp_path / f"alone-s{seed}"), *TINY)
    stacked = []
    stack_seeds = train.stack_seeds
    monkeypatch.setattr(train, "stack_seeds", lambda agents: stacked.append([(a.seeds[0], a.step) for a in agents])
                        or stack_seeds(agents))
    train_toy(ToyTrainConfig(world="ring", seed=(4, 5), iterations=20, out=str(tmp_path / "mixed"), resume=True,
                             log_every=5, eval_every=10, checkpoint_every=10, eval_contexts=32, progress=False,
                             agent=replace(ToyTrainConfig().agent, size="tiny")))
    assert stacked == [[(4, 10)], [(4, 15), (5, 15)]]
    for seed in (4, 5):
        assert read_checkpoint(tmp_path / f"mixed-s{seed}" / "checkpoint.pt")["agent"]["step"] == 20
        for a, b in zip(weights(tmp_path / f"mixed-s{seed}" / "checkpoint.pt"), weights(tmp_path / f"alone-s{seed}" / "checkpoint.pt")):
            assert (a - b).abs().max() < 1e-5  # the last five updates in a stack: last-bit differences


def test_seed_groups_spread_a_stack_over_the_cores_and_keep_seed_order(monkeypatch):
    """On a CPU `stack_seeds` makes one stack per core, each on its own thread; metrics and members come back
    in the order the seeds were given, each seed still its own run."""
    from sorl_core import train

    monkeypatch.setattr(train, "usable_cores", lambda: 2)
    cfg = config()
    seeds = [9, 8, 7, 6, 5]
    threads = torch.get_num_threads()
    groups = train.stack_seeds([SORLAgent(cfg, seed=s) for s in seeds])
    try:
        assert isinstance(groups, train.SeedGroups) and len(groups.parts) == 2 and groups.seeds == seeds
        singles = [SORLAgent(cfg, seed=s) for s in seeds]
        for it in range(3):
            batches = [batch(7 * it + j) for j in range(len(seeds))]
            info = groups.update(stacked_batch(batches))
            single_infos = [a.update(b) for a, b in zip(singles, batches)]
        for p, single in enumerate(singles):
            assert groups.member(p).seeds == [seeds[p]]
            assert largest_difference(groups.member(p), single) < 1e-6
            assert float(info["critic_loss"][p]) == pytest.approx(float(single_infos[p]["critic_loss"]), rel=1e-4)
    finally:
        groups.close()
    assert torch.get_num_threads() == threads


def test_cli_refuses_repeated_seeds(tmp_path):
    from test_cli import TINY, run_cli

    proc = run_cli("train", "--world", "ring", "--seed", "1", "1", "--out", str(tmp_path / "x"), *TINY, check=False)
    assert proc.returncode == 2 and "different numbers" in proc.stderr
