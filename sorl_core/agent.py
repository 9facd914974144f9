"""SORL in PyTorch: losses as small pure functions, one update, one sampler (docs/ALGORITHM.md §1-5)."""

from __future__ import annotations

import dataclasses

import contextlib
import copy
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from . import verifiers
from .verifiers import aggregate
from .config import SORLConfig, is_power_of_two
from . import cpu
from .networks import CriticEnsemble, ShortcutActor, StackedActor

Batch = dict[str, torch.Tensor]  # observations, actions, rewards, next_observations, masks


# ----------------------------------------------------------------------------- flow basics
def interpolate(x0: torch.Tensor, actions: torch.Tensor, t: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """x_t = (1 - (1 - eps) t) x0 + t a and the flow's target velocity a - (1 - eps) x0."""
    return (1 - (1 - eps) * t) * x0 + t * actions, actions - (1 - eps) * x0


def level_of(steps: int) -> int:
    """Step count M -> level log2(M) (level 0 is one jump of size 1)."""
    return steps.bit_length() - 1


def integrate(actor: nn.Module, obs: torch.Tensor, x: torch.Tensor, steps: int, keep_path: bool = False,
              level: int | None = None):
    """Euler integration from noise x (t=0) to t=1 in `steps` steps of size 1/steps.

    The one Euler loop of the project: training (critic target, Q loss) and `SORLAgent.sample` use it.
    `level` defaults to log2(steps), the shortcut model's step-size input; fixing it to the finest level
    runs the network as a plain flow-matching policy. Returns the unclipped end point and, with
    keep_path, the list of all steps + 1 states.
    """
    level = obs.new_full((obs.shape[0], 1), float(level_of(steps) if level is None else level))
    path = [x] if keep_path else None
    for i in range(steps):
        t = obs.new_full((obs.shape[0], 1), i / steps)
        x = torch.add(x, actor(obs, x, t, level), alpha=1.0 / steps)
        if keep_path:
            path.append(x)
    return x, path


def integrate_seeds(actor: StackedActor, obs: torch.Tensor, x: torch.Tensor, steps: Sequence[int]) -> torch.Tensor:
    """`integrate` for seed-stacked actors, where seed p takes its own steps[p] Euler steps of size 1/steps[p].

    obs (P, B, O), x (P, B, A). A step evaluates only the seeds still moving, so P rollouts cost what they
    cost one by one (in batched matmuls), not P times the longest. Step sizes and times are powers of two
    and their multiples, exact in float32: seed p follows the arithmetic of `integrate` with steps[p].
    """
    p_count, b = x.shape[0], x.shape[1]
    counts = x.new_tensor([float(k) for k in steps]).view(p_count, 1, 1)
    level, size = torch.log2(counts).expand(p_count, b, 1), 1.0 / counts
    for i in range(max(steps)):
        t = (i / counts).expand(p_count, b, 1)
        moving = [p for p, k in enumerate(steps) if k > i]
        if len(moving) == p_count:
            x = torch.addcmul(x, actor(obs, x, t, level), size)
        else:
            idx = torch.tensor(moving, device=x.device)
            v = actor(obs[idx], x[idx], t[idx], level[idx], members=idx)
            x = x.index_copy(0, idx, torch.addcmul(x[idx], v, size[idx]))
    return x


# ----------------------------------------------------------------------------- losses
def mean_per_seed(x: torch.Tensor, seed_axis: int | None) -> torch.Tensor:
    """Mean over every axis but the seed axis: one value per seed; a plain mean for one seed (seed_axis None).

    Seeds stacked in one model keep separate losses: their sum's gradient is each seed's own gradient.
    """
    if seed_axis is None:
        return x.mean()
    keep = seed_axis % x.ndim
    return x.mean(dim=[d for d in range(x.ndim) if d != keep])


def _seed_axis(obs: torch.Tensor, axis: int) -> int | None:
    """`axis` when obs carries a leading seed axis (P, B, O), else None."""
    return axis if obs.ndim == 3 else None


def critic_loss(critic, target_critic, batch: Batch, next_actions: torch.Tensor, k, discount: float, q_agg: str):
    """TD loss of every ensemble member against r + gamma * mask * AGG_j Qtarget_j(s', a', k)."""
    next_q = aggregate(target_critic(batch["next_observations"], next_actions, k), q_agg)
    target = batch["rewards"] + discount * batch["masks"] * next_q
    q = critic(batch["observations"], batch["actions"], k)
    axis = _seed_axis(batch["observations"], -2)  # Q (E, P, B), targets (P, B)
    loss = mean_per_seed((q - target).square(), axis)
    return loss, {"critic_loss": loss.detach(), "q_mean": mean_per_seed(q.detach(), axis),
                  "target_mean": mean_per_seed(target.detach(), axis)}


def self_consistency_target(target_actor, obs, x_t, t, level, step):
    """Two half steps of the target actor at level+1: their mean velocity is the target of one full step."""
    with torch.no_grad():
        v1 = target_actor(obs, x_t, t, level + 1)
        v2 = target_actor(obs, x_t + (step / 2) * v1, t + step / 2, level + 1)
    return (v1 + v2) / 2


def q_loss(critic, obs: torch.Tensor, policy_actions: torch.Tensor, k):
    """-mean Q / stopgrad(mean |Q|) with the ensemble mean; normalising makes q_loss_coef scale-free."""
    q = critic(obs, policy_actions, k).mean(dim=0)
    axis = _seed_axis(obs, -2)  # Q (P, B)
    loss = -mean_per_seed(q, axis) / mean_per_seed(q.abs(), axis).detach()
    return loss, {"q_loss": loss.detach(), "policy_q": mean_per_seed(q.detach(), axis)}


def velocity_losses(actor, obs: torch.Tensor, problems: list[tuple[torch.Tensor, ...]]) -> list[torch.Tensor]:
    """Mean squared error of the actor on several (x, t, level, target) problems of the same states.

    They share weights, so they are stacked into one forward pass (faster than one pass each).
    """
    n = obs.shape[-2]
    x, t, level, target = (torch.cat(parts, dim=-2) for parts in zip(*problems))
    pred = actor(obs.repeat(*[1] * (obs.ndim - 2), len(problems), 1), x, t, level)
    axis = _seed_axis(obs, -3)  # errors (P, B, A)
    return [mean_per_seed(((pred - target)[..., i * n:(i + 1) * n, :]).square(), axis) for i in range(len(problems))]


# ----------------------------------------------------------------------------- sampling result
@dataclass
class SampleResult:
    """What `SORLAgent.sample` returns for S states and N candidates each."""

    actions: torch.Tensor  # (S, A) chosen actions, clipped to [-1, 1]
    candidates: torch.Tensor  # (S, N, A) all candidates, clipped
    q: torch.Tensor | None  # (S, N) the verifier's scores (default: AGG of the online critic at k = m_inf; None when not scored)
    chosen: torch.Tensor  # (S,) index of the chosen candidate
    m_inf: int
    n: int
    actor_calls: int  # per state: m_inf * n
    critic_calls: int  # per state: n when scored, else 0
    trajectory: torch.Tensor | None = None  # (S, N, m_inf + 1, A) unclipped Euler states

    @property
    def network_calls(self) -> int:
        return self.actor_calls + self.critic_calls


@dataclass
class ConsistencyProbe:
    """Self-consistency error of the trained model: one step of size d vs two steps of size d/2."""

    t: np.ndarray  # (T,) flow times
    step_sizes: np.ndarray  # (L,) the big step d = 2^-level
    levels: np.ndarray  # (L,) level of the big step
    error: np.ndarray  # (L, T) mean squared velocity difference (NaN where t + d > 1)
    per_state: np.ndarray  # (S, L, T)


def best_of_n(agent, obs, m_inf: int, n: int, propose: Callable, return_trajectory: bool = False, generator=None,
              score: bool | None = None, verifier: str = verifiers.DEFAULT_VERIFIER, beta: float = verifiers.DEFAULT_BETA,
              noise=None) -> SampleResult:
    """The part of sampling every method shares: draw N noises per state, let `propose(obs_rep, noise, keep_path)`
    turn them into candidates with m_inf actor calls each (SORL and the flows: Euler steps; FQL: its one step),
    clip, score them with `agent.verifier_scores` when there is a choice, keep the best. Returns a SampleResult."""
    verifiers.check_verifier(verifier, beta)
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n (candidates per state) must be an integer >= 1, got {n!r}")
    n = int(n)
    obs = agent.as_obs(obs)
    s, a_dim, device = obs.shape[0], agent.config.action_dim, agent.device
    if isinstance(generator, (int, np.integer)):
        generator = torch.Generator(device).manual_seed(int(generator))
    if noise is None:
        noise = torch.randn(s, n, a_dim, generator=generator, device=device)
    else:
        noise = torch.as_tensor(noise, dtype=torch.float32, device=device)
        if tuple(noise.shape) != (s, n, a_dim):
            raise ValueError(f"noise must have shape (states, n, action_dim) = {(s, n, a_dim)}; got {tuple(noise.shape)}")
    obs_rep = obs.repeat_interleave(n, dim=0)  # row s*n + j is candidate j of state s
    x, path = propose(obs_rep, noise.reshape(s * n, a_dim), return_trajectory)
    candidates = x.clamp(-1, 1).reshape(s, n, a_dim)
    score = n > 1 if score is None else score
    q = None
    chosen = torch.zeros(s, dtype=torch.long, device=device)
    if score:
        q = agent.verifier_scores(obs_rep, candidates, m_inf, verifier, beta)
        chosen = q.argmax(dim=1)
    actions = candidates[torch.arange(s, device=device), chosen]
    trajectory = torch.stack(path, dim=1).reshape(s, n, m_inf + 1, a_dim) if return_trajectory else None
    actor_calls, critic_calls = verifiers.calls_per_action(m_inf, n, verifier, scored=score)
    return SampleResult(actions, candidates, q, chosen, m_inf, n, actor_calls, critic_calls, trajectory)


# ----------------------------------------------------------------------------- the agent
class SORLAgent:
    """Shortcut-model actor + critic ensemble with targets. `update(batch)` is one SORL iteration.

    seed: one seed, or several (`[0, 1, 2, 3]`) to train as one seed-stacked model: every weight gets a
    leading seed axis, each seed keeps its own noise, step-count draws, losses, clipping and Adam step, and
    `update` takes batches stacked (P, B, ...). Seed p then follows the run a single-seed agent of that seed
    would make, to float rounding (tests/test_seeds.py). A stacked agent trains only; `member(p)` gives
    seed p as an ordinary agent (to sample, evaluate or save) and `SORLAgent.stack` rebuilds one from those.
    """

    stackable = True  # several seeds train as one model (`SORLAgent(config, seed=[0, 1, 2])`)
    has_critic = True

    def __init__(self, config: SORLConfig, seed: int | Sequence[int] = 0):
        self.device = resolve_device(config.device)
        self.config = cfg = resolve_precision(config, self.device)
        self.seeds = [int(s) for s in seed] if isinstance(seed, (list, tuple)) else [int(seed)]
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be one or more different numbers, got {list(self.seeds)}")
        self.stacked = len(self.seeds) > 1
        # Initial weights come from a generator of their own: building an agent leaves torch's global random
        # stream (which other users of the process, e.g. other sessions of the lab, draw from) untouched.
        init = torch.Generator().manual_seed(self.seeds[0])
        if self.stacked:  # weights are filled from single-seed agents below: the same initialisation
            self.actor = StackedActor(len(self.seeds), cfg.obs_dim, cfg.action_dim, cfg.hidden).to(self.device)
            self.critic = CriticEnsemble(cfg.obs_dim, cfg.action_dim, cfg.hidden, cfg.num_critics, cfg.critic_layer_norm,
                                         seeds=len(self.seeds), generator=init).to(self.device)
        else:
            self.actor = ShortcutActor(cfg.obs_dim, cfg.action_dim, cfg.hidden, generator=init).to(self.device)
            self.critic = CriticEnsemble(cfg.obs_dim, cfg.action_dim, cfg.hidden, cfg.num_critics, cfg.critic_layer_norm,
                                         generator=init).to(self.device)
        self.target_actor = _frozen_copy(self.actor)
        self.target_critic = _frozen_copy(self.critic)
        # Training noise comes from one device generator per seed; step counts k from a host generator so
        # that reading k as a Python int never syncs with the device.
        self.generators = [torch.Generator(self.device).manual_seed(s) for s in self.seeds]
        self.host_generators = [torch.Generator().manual_seed(s + 1) for s in self.seeds]
        self.generator, self.host_generator = self.generators[0], self.host_generators[0]
        self.step = 0
        # Replays recorded draws instead of drawing (name -> value); set only by scripts/check_update_parity.py,
        # which feeds the authors' own random draws through this update. None: draw from the generators.
        self.replay_draws: Callable[[str], torch.Tensor | int] | None = None
        self.has_target_critic = True  # False after loading an inference-only export (its targets are copies)
        self._params = list(self.actor.parameters()) + list(self.critic.parameters())
        # The networks the losses run on. In bf16 these are working copies: each forward and backward
        # of an update runs on them, and Adam, Polyak and checkpoints keep the float32 weights. One cast
        # per network and step replaces autocast's casts at every call (and its per-op dispatch).
        self.work = _Networks(self.actor, self.critic, self.target_actor, self.target_critic)
        if cfg.precision == "bf16":
            self.work = _Networks(*(_bf16_copy(net) for net in (self.actor, self.critic, self.target_actor, self.target_critic)))
        # On the CPU with the fused kernels, Adam reads the copies' bf16 gradients and writes the new
        # weights straight back into the copies (cpu.adam_from_copies): no float32 gradients, no recasts.
        self._adam_writes_copies = cfg.precision == "bf16" and self.device.type == "cpu" and cpu.load()
        if cfg.mode == "faithful":
            # Pre-iteration critic for the actor's Q term. In bf16 the working copy is exactly that: it is
            # refreshed at the start of each iteration and Adam steps only the float32 weights.
            self.critic_before = self.work.critic if cfg.precision == "bf16" else _frozen_copy(self.critic)
            self.optimizers = {"all": _adam(self._params, cfg.lr)}
        else:
            self.optimizers = {"critic": _adam(self.critic.parameters(), cfg.lr), "actor": _adam(self.actor.parameters(), cfg.lr)}
        if self.stacked:
            self._take_members([SORLAgent(cfg, s) for s in self.seeds])

    # ------------------------------------------------------------------ helpers
    def _refresh(self, *names: str) -> None:
        """Cast the float32 weights into the bf16 working copies (nothing to do in float32)."""
        with torch.no_grad():
            for name in names:
                work, master = getattr(self.work, name), getattr(self, name)
                if work is not master:
                    torch._foreach_copy_(list(work.parameters()), list(master.parameters()))

    def _grads_to_masters(self, *names: str) -> None:
        """Hand the working copies' gradients to the float32 weights (as float32)."""
        for name in names:
            work, master = getattr(self.work, name), getattr(self, name)
            if work is not master:
                for w, m in zip(work.parameters(), master.parameters()):
                    m.grad = None if w.grad is None else w.grad.float()
                    w.grad = None

    def _clip_and_step(self, opt: torch.optim.Adam, names: tuple[str, ...], write: tuple[str, ...]) -> torch.Tensor:
        """Clip and Adam-step the float32 weights of `names` (all of `opt`'s) from the gradients the loss
        left on the networks the losses run on; then the working copies of `write` hold the new weights.
        Returns the pre-clip gradient norm."""
        seeds = len(self.seeds)
        if self._adam_writes_copies:  # one fused pass a tensor (cpu.adam_from_copies)
            params, grads, copies = [], [], []
            for name in names:
                for w, m in zip(getattr(self.work, name).parameters(), getattr(self, name).parameters()):
                    params.append(m)
                    grads.append(w.grad)
                    copies.append(w if name in write else None)
                    w.grad = None
            return cpu.adam_from_copies(opt, params, grads, copies, self.config.grad_clip, seeds)
        self._grads_to_masters(*names)
        params = [p for name in names for p in getattr(self, name).parameters()]
        if self.config.mode == "faithful":
            self._fill_missing_grads()
        norm = clip_and_step(opt, params, self.config.grad_clip, seeds)
        self._refresh(*write)
        return norm

    def _draw(self, name: str, draw: Callable[[], torch.Tensor | int]):
        """Every random draw of an update passes here by name, so a recorded one can stand in for it."""
        return draw() if self.replay_draws is None else self.replay_draws(name)

    def _draw_k(self, name: str):
        """A step count k: an int, or one per seed (a list) when seeds are stacked."""
        ks = self.config.step_counts
        one = lambda g: ks[int(torch.randint(len(ks), (1,), generator=g))]  # noqa: E731
        if self.stacked:
            return self._draw(name, lambda: [one(g) for g in self.host_generators])
        return self._draw(name, lambda: one(self.host_generator))

    def _per_seed(self, name: str, draw: Callable[[torch.Generator], torch.Tensor]) -> torch.Tensor:
        """A draw from the training noise: one from each seed's generator, stacked, when seeds are stacked."""
        if self.stacked:
            return self._draw(name, lambda: torch.stack([draw(g) for g in self.generators]))
        return self._draw(name, lambda: draw(self.generator))

    def _k_input(self, k, obs: torch.Tensor):
        """The critic's step-count input: the number itself, or a (P, B, 1) column of each seed's k."""
        if not self.stacked:
            return k
        return obs.new_tensor([float(v) for v in k]).view(-1, 1, 1).expand(*obs.shape[:-1], 1)

    def _fill_missing_grads(self) -> None:
        """Adam skips weights whose grad is None; a loss that leaves some weights without gradient hands
        them zeros, so the shared optimiser still moves them on momentum. (Made on first use: the
        fused bf16 Adam treats a missing gradient as zero itself and never needs them.)"""
        if not hasattr(self, "_zero_grads"):
            self._zero_grads = [torch.zeros_like(p) for p in self._params]
        for p, zero in zip(self._params, self._zero_grads):
            if p.grad is None:
                p.grad = zero

    def _randn(self, name: str, *shape) -> torch.Tensor:
        return self._per_seed(name, lambda g: torch.randn(*shape, generator=g, device=self.device))

    def _policy_actions(self, obs: torch.Tensor, k, noise_name: str) -> torch.Tensor:
        noise = self._randn(noise_name, obs.shape[-2], self.config.action_dim)
        if self.stacked:
            return integrate_seeds(self.work.actor, obs, noise, k).clamp(-1, 1)
        x, _ = integrate(self.work.actor, obs, noise, k)
        return x.clamp(-1, 1)

    # ------------------------------------------------------------------ losses of one iteration
    def compute_critic_loss(self, batch: Batch, k):
        cfg = self.config
        if cfg.discount == 0:  # one-step problems (toy bandits): the target is r, no a' rollout needed
            q = self.work.critic(batch["observations"], batch["actions"], self._k_input(k, batch["observations"]))
            axis = _seed_axis(batch["observations"], -2)
            loss = mean_per_seed((q - batch["rewards"]).square(), axis)
            return loss, {"critic_loss": loss.detach(), "q_mean": mean_per_seed(q.detach(), axis),
                          "target_mean": mean_per_seed(batch["rewards"], axis)}
        # Faithful: the authors sample a' with gradients on, so this loss also moves the actor.
        with contextlib.nullcontext() if cfg.mode == "faithful" else torch.no_grad():
            next_actions = self._policy_actions(batch["next_observations"], k, "critic_noise")
        return critic_loss(self.work.critic, self.work.target_critic, batch, next_actions,
                           self._k_input(k, batch["observations"]), cfg.discount, cfg.q_agg)

    def self_consistency_problem(self, batch: Batch):
        """(x_t, t, level, target) of the self-consistency loss, targets from the target actor.

        Near-equal parts of the batch at levels max_level-1 .. 0 (85/85/86 for 256); t on each level's grid.
        None when m_disc is 1 (a single level: nothing to be consistent with).
        """
        cfg = self.config
        if cfg.max_level == 0:
            return None
        obs, actions = batch["observations"], batch["actions"]
        *lead, b, a_dim = actions.shape
        level = self.sc_levels(b).unsqueeze(1)
        index = self._per_seed("sc_time_index", lambda g: torch.floor(
            torch.rand(b, 1, generator=g, device=self.device) * 2**level))  # n in {0 .. 2^level - 1}
        level = level.expand(*lead, b, 1)
        step = 2.0 ** -level
        t = index * step
        x_t, _ = interpolate(self._randn("sc_noise", b, a_dim), actions, t, cfg.flow_eps)
        target = self_consistency_target(self.work.target_actor, obs, x_t, t, level, step)
        return x_t, t, level, target.float()

    def compute_actor_loss(self, batch: Batch, k, critic: nn.Module, sc_problem=None):
        """10 FM + 10 SC + q_loss_coef * Q loss. sc_problem: precomputed (faithful mode), else built here."""
        cfg = self.config
        obs, actions = batch["observations"], batch["actions"]
        b, a_dim = actions.shape[-2:]
        # Flow matching at the finest level, t on the grid {0, 1/M_disc, ...}.
        t_fm = self._per_seed("fm_time_index", lambda g: torch.randint(
            cfg.m_disc, (b, 1), generator=g, device=self.device)) / cfg.m_disc
        x_fm, v_fm = interpolate(self._randn("fm_noise", b, a_dim), actions, t_fm, cfg.flow_eps)
        problems = [(x_fm, t_fm, torch.full_like(t_fm, cfg.max_level), v_fm)]
        sc_problem = self.self_consistency_problem(batch) if sc_problem is None else sc_problem
        if sc_problem is not None:
            problems.append(sc_problem)
        losses = velocity_losses(self.work.actor, obs, problems)
        fm = losses[0]
        sc = losses[1] if len(losses) > 1 else torch.zeros_like(fm)
        ql, q_info = q_loss(critic, obs, self._policy_actions(obs, k, "q_noise"), self._k_input(k, obs))
        total = cfg.fm_coef * fm + cfg.sc_coef * sc + cfg.q_loss_coef * ql
        return total, {"actor_loss": total.detach(), "fm_loss": fm.detach(), "sc_loss": sc.detach(), **q_info}

    def sc_levels(self, batch_size: int) -> torch.Tensor:
        """Level of each batch row in the self-consistency loss: equal blocks, remainder to level 0."""
        levels = torch.arange(self.config.max_level - 1, -1, -1, device=self.device, dtype=torch.float32)
        block = batch_size // self.config.max_level
        out = levels.repeat_interleave(block)
        return torch.cat([out, out.new_zeros(batch_size - out.numel())])

    # ------------------------------------------------------------------ one iteration
    def update(self, batch: Batch, k: int | None = None) -> dict[str, torch.Tensor]:
        """One SORL iteration: critic step, actor step, Polyak. Metrics stay tensors (no host sync).

        k: use this step count for both the critic target and the Q loss instead of drawing them (the
        benchmark times each k separately); None draws them as docs/ALGORITHM.md §3 says.
        Stacked seeds: every batch tensor has a leading seed axis (P, B, ...), and every metric one value per seed.
        """
        batch = {key: value.to(self.device, non_blocking=True) for key, value in batch.items()}
        if self.stacked and batch["observations"].shape[0] != len(self.seeds):
            raise ValueError(f"a stack of {len(self.seeds)} seeds trains on batches shaped (seeds, batch, ...); "
                             f"got observations {tuple(batch['observations'].shape)}")
        if k is not None and self.stacked:
            k = [k] * len(self.seeds)
        k_critic, k_actor = (self._draw_k("k_critic"), self._draw_k("k_actor")) if k is None else (k, k)
        info = self._update_faithful(batch, k_critic, k_actor) if self.config.mode == "faithful" else self._update_clean(batch, k_critic, k_actor)
        self.step += 1
        return info

    def _backward(self, loss: torch.Tensor) -> None:
        """Backward of one seed's loss, or of the stacked seeds' sum (each seed's weights get its own gradient)."""
        (loss.sum() if self.stacked else loss).backward()

    def _update_faithful(self, batch, k_critic, k_actor):
        cfg, opt = self.config, self.optimizers["all"]
        # Everything that must see pre-iteration weights is taken first: a copy of the critic for the
        # actor's Q term, the self-consistency targets from the old target actor, and the target actor's
        # Polyak step toward the actor as it is now.
        self._refresh("target_actor", "target_critic")  # the actor's and critic's copies are current
        if self.critic_before is not self.work.critic:
            with torch.no_grad():
                torch._foreach_copy_(list(self.critic_before.parameters()), list(self.critic.parameters()))
        sc_problem = self.self_consistency_problem(batch)
        polyak(self.target_actor, self.actor, cfg.tau)
        # 1) critic loss over all parameters (a' carries gradient into the actor), one shared Adam.
        # Grads are set to None, not zeroed: backward then hands over its buffers instead of adding
        # into zeros, and weights the loss does not reach get zeros after it.
        opt.zero_grad(set_to_none=True)
        loss, info = self.compute_critic_loss(batch, k_critic)
        self._backward(loss)
        polyak(self.target_critic, self.critic, cfg.tau)  # after its use in the backward, before the step
        # Only the actor's copy takes the new weights: the critic's stays the pre-iteration critic for step 2.
        info["grad_norm_critic_step"] = self._clip_and_step(opt, ("actor", "critic"), write=("actor",))
        # 2) actor loss against the pre-iteration critic; the critic's zero grads still step it on momentum.
        opt.zero_grad(set_to_none=True)
        with requires_grad(self.critic_before, False):  # gradients flow through it to the actions only
            loss, actor_info = self.compute_actor_loss(batch, k_actor, self.critic_before, sc_problem)
        self._backward(loss)
        info["grad_norm_actor_step"] = self._clip_and_step(opt, ("actor", "critic"), write=("actor", "critic"))
        return {**info, **actor_info}

    def _update_clean(self, batch, k_critic, k_actor):
        cfg = self.config
        opt_c, opt_a = self.optimizers["critic"], self.optimizers["actor"]
        opt_c.zero_grad(set_to_none=True)
        self._refresh("target_actor", "target_critic")
        loss, info = self.compute_critic_loss(batch, k_critic)
        self._backward(loss)
        info["grad_norm_critic_step"] = self._clip_and_step(opt_c, ("critic",), write=("critic",))
        opt_a.zero_grad(set_to_none=True)
        with requires_grad(self.work.critic, False):
            loss, actor_info = self.compute_actor_loss(batch, k_actor, self.work.critic)
        self._backward(loss)
        info["grad_norm_actor_step"] = self._clip_and_step(opt_a, ("actor",), write=("actor",))
        polyak(self.target_actor, self.actor, cfg.tau)
        polyak(self.target_critic, self.critic, cfg.tau)
        return {**info, **actor_info}

    # ------------------------------------------------------------------ inference
    def as_obs(self, obs) -> torch.Tensor:
        """Array-like (S, obs_dim) or (obs_dim,) -> float32 tensor (S, obs_dim) on the agent's device."""
        obs = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        if obs.ndim == 1:
            obs = obs.unsqueeze(0)
        if obs.ndim != 2 or obs.shape[1] != self.config.obs_dim:
            raise ValueError(f"observations must have shape (states, {self.config.obs_dim}); got {tuple(obs.shape)}")
        return obs

    def check_m_inf(self, m_inf: int, extrapolate: bool = False) -> None:
        if not isinstance(m_inf, (int, np.integer)) or not is_power_of_two(int(m_inf)):
            raise ValueError(f"m_inf must be a power of two (1, 2, 4, 8, ...), got {m_inf!r}")
        if m_inf > self.config.m_disc and not extrapolate:
            raise ValueError(
                f"m_inf={m_inf} needs levels beyond the trained m_disc={self.config.m_disc}; "
                "pass extrapolate=True to run it as an extrapolation experiment"
            )

    @torch.no_grad()
    def sample(self, obs, m_inf: int = 8, n: int = 1, return_trajectory: bool = False, generator=None,
               extrapolate: bool = False, score: bool | None = None, as_flow: bool = False,
               verifier: str = verifiers.DEFAULT_VERIFIER, beta: float = verifiers.DEFAULT_BETA,
               noise=None, budget=None) -> SampleResult:
        """Sequential (m_inf Euler steps) and parallel (best-of-n ranked by a verifier) test-time scaling.

        obs: (S, obs_dim). Each state gets its own n candidates; candidate j of state s is scored with
        state s only. generator: a torch.Generator on the agent's device, an int seed, or None (global RNG).
        score: compute the verifier's scores of the candidates (default: only when n > 1, as docs/ALGORITHM.md §5 counts
        compute). verifier: how candidates are ranked (sorl_core.verifiers.VERIFIERS; default `q`, the paper's
        online critic); beta: the q-lcb penalty. as_flow: give every step the finest level, i.e. sample as a
        plain flow-matching policy that ignores the step size (for comparisons; not SORL's sampler).
        noise: the initial noise (S, N, A) instead of drawing it (e.g. to compare with another implementation).
        budget: a sampling budget of sorl_core.budgets (`Fixed(m_inf, n)` or an adaptive rule) to run instead of the
        fixed (m_inf, n); it returns a `budgets.BudgetResult`: the actions and each state's actor and critic calls.
        """
        self._check_single("sample")
        if budget is not None:
            return budget.sample(self, obs, generator=generator, verifier=verifier, beta=beta, extrapolate=extrapolate)
        self.check_m_inf(m_inf, extrapolate)
        m_inf, level = int(m_inf), self.config.max_level if as_flow else None
        return best_of_n(self, obs, m_inf, n, lambda o, x, keep: integrate(self.actor, o, x, m_inf, keep, level),
                         return_trajectory, generator, score, verifier, beta, noise)

    @torch.no_grad()
    def verifier_scores(self, obs_rep: torch.Tensor, candidates: torch.Tensor, m_inf: int,
                        verifier: str = verifiers.DEFAULT_VERIFIER, beta: float = verifiers.DEFAULT_BETA) -> torch.Tensor:
        """(S, N) scores of candidates (S, N, A) for states obs_rep (row s*N + j is state s), by `verifier`."""
        self._check_single("score candidates")
        return verifiers.scores(verifier, candidates, obs_rep, int(m_inf), critic=self.critic,
                                target_critic=self.target_critic if self.has_target_critic else None,
                                q_agg=self.config.q_agg, m_btt=self.config.m_btt, beta=beta)

    @torch.no_grad()
    def q_value(self, obs, actions, k: int = 8) -> torch.Tensor:
        """AGG of the online critic for paired (obs, action) rows, or one obs against many actions."""
        self._check_single("compute Q values")
        obs = self.as_obs(obs)
        actions = torch.as_tensor(actions, dtype=torch.float32, device=self.device).reshape(-1, self.config.action_dim)
        if obs.shape[0] == 1 and actions.shape[0] > 1:
            obs = obs.expand(actions.shape[0], -1)
        return aggregate(self.critic(obs, actions, k), self.config.q_agg)

    @torch.no_grad()
    def consistency_probe(self, obs, samples: int = 64, generator=None, as_flow: bool = False) -> ConsistencyProbe:
        """Self-consistency error on the model's own sampling paths.

        For every big step d = 2^-level (level 0 .. max_level-1) and flow time t on the finest grid
        with t + d <= 1: || s(x_t, t, level) - (v1 + v2) / 2 ||^2 / action_dim, where v1, v2 are the two
        half steps at level+1 and x_t is reached from noise with the finest steps. as_flow: every
        velocity at the finest level, i.e. the error of a plain flow-matching policy taking big steps.
        """
        self._check_single("probe self-consistency")
        cfg = self.config
        obs = self.as_obs(obs)
        s, a_dim, m = obs.shape[0], cfg.action_dim, cfg.m_disc
        if isinstance(generator, (int, np.integer)):
            generator = torch.Generator(self.device).manual_seed(int(generator))
        obs_rep = obs.repeat_interleave(samples, dim=0)
        noise = torch.randn(s * samples, a_dim, generator=generator, device=self.device)
        _, path = integrate(self.actor, obs_rep, noise, m, keep_path=True)
        levels = np.arange(cfg.max_level)
        t_grid = np.arange(m) / m
        err = np.full((s, len(levels), m), np.nan)
        for li, level in enumerate(levels):
            d = 2.0 ** -level
            big = obs_rep.new_full((obs_rep.shape[0], 1), float(cfg.max_level if as_flow else level))
            half = big if as_flow else big + 1  # self_consistency_target adds 1 for the half steps
            for ti, t in enumerate(t_grid):
                if t + d > 1 + 1e-9:
                    continue
                x_t, tt = path[ti], obs_rep.new_full((obs_rep.shape[0], 1), float(t))
                target = self_consistency_target(self.actor, obs_rep, x_t, tt, half - 1, d)
                diff = (self.actor(obs_rep, x_t, tt, big) - target).square().mean(dim=1)
                err[:, li, ti] = diff.reshape(s, samples).mean(dim=1).cpu().numpy()
        return ConsistencyProbe(t_grid, 2.0 ** -levels, levels, err.mean(axis=0), err)  # NaN cells are the same for every state

    # ------------------------------------------------------------------ stacked seeds
    def _check_single(self, what: str) -> None:
        if self.stacked:
            raise ValueError(f"this agent trains seeds {self.seeds} together and cannot {what} itself; "
                             "take one seed with agent.member(p)")

    def member(self, p: int) -> "SORLAgent":
        """Seed p of a stacked agent as an ordinary single-seed agent: a copy of its weights, targets, Adam
        state, noise generators and step (what a single-seed run of that seed would hold). Itself when single."""
        if not self.stacked:
            return self
        one = SORLAgent(self.config, self.seeds[p])
        with torch.no_grad():
            for name in ("actor", "critic", "target_actor", "target_critic"):
                mine, theirs = getattr(self, name), getattr(one, name)
                torch._foreach_copy_(list(theirs.parameters()), mine.split(list(mine.parameters()), p))
            for key, opt in self.optimizers.items():
                for name in _OPTIMIZED[key]:
                    net = getattr(self, name)
                    states = [opt.state[q] for q in net.parameters()]
                    if not states[0]:  # Adam makes its state at the first step
                        continue
                    moments = {m: net.split([st[m] for st in states], p) for m in ("exp_avg", "exp_avg_sq")}
                    for i, (q, st) in enumerate(zip(getattr(one, name).parameters(), states)):
                        one.optimizers[key].state[q] = {"step": st["step"].clone(), "exp_avg": moments["exp_avg"][i],
                                                        "exp_avg_sq": moments["exp_avg_sq"][i]}
        one.generator.set_state(self.generators[p].get_state())
        one.host_generator.set_state(self.host_generators[p].get_state())
        one.step, one.has_target_critic = self.step, self.has_target_critic
        one._refresh("actor", "critic", "target_actor", "target_critic")
        return one

    @classmethod
    def stack(cls, members: Sequence["SORLAgent"]) -> "SORLAgent":
        """One stacked agent from single-seed agents of one configuration at one step (e.g. resumed checkpoints)."""
        if any(m.config != members[0].config for m in members) or any(m.stacked for m in members):
            raise ValueError("only agents of one configuration can be trained as one stack")
        if len({m.step for m in members}) != 1:
            raise ValueError(f"agents to stack must be at the same step, got {[m.step for m in members]}")
        stacked = cls(members[0].config, [m.seeds[0] for m in members])
        stacked._take_members(members)
        return stacked

    def _take_members(self, members: Sequence["SORLAgent"]) -> None:
        """Fill this stack with the members' weights, targets, Adam state, noise state and step."""
        with torch.no_grad():
            for name in ("actor", "critic", "target_actor", "target_critic"):
                net = getattr(self, name)
                joined = net.join([[q.detach() for q in getattr(m, name).parameters()] for m in members])
                torch._foreach_copy_(list(net.parameters()), joined)
            for key, opt in self.optimizers.items():
                for name in _OPTIMIZED[key]:
                    per_member = [[m.optimizers[key].state[q] for q in getattr(m, name).parameters()] for m in members]
                    if not per_member[0][0]:
                        continue
                    net = getattr(self, name)
                    moments = {m: net.join([[st[m] for st in states] for states in per_member]) for m in ("exp_avg", "exp_avg_sq")}
                    for i, q in enumerate(net.parameters()):
                        opt.state[q] = {"step": per_member[0][i]["step"].clone(), "exp_avg": moments["exp_avg"][i],
                                        "exp_avg_sq": moments["exp_avg_sq"][i]}
        for g, h, m in zip(self.generators, self.host_generators, members):
            g.set_state(m.generator.get_state())
            h.set_state(m.host_generator.get_state())
        self.step = members[0].step
        self._refresh("actor", "critic", "target_actor", "target_critic")

    # ------------------------------------------------------------------ persistence
    def state_dict(self, inference_only: bool = False, dtype: torch.dtype | None = None) -> dict:
        """Everything needed to resume bit-exactly; `inference_only` keeps just actor and critic (~4x smaller),
        in `dtype` if given (bf16 snapshots: half again; loading casts them back to float32)."""
        self._check_single("be saved as one checkpoint (each seed is saved on its own)")
        if inference_only:
            cast = (lambda sd: {k: v.to(dtype) for k, v in sd.items()}) if dtype is not None else (lambda sd: sd)
            return {"method": "sorl", "actor": cast(self.actor.state_dict()), "critic": cast(self.critic.state_dict()),
                    "step": self.step, "inference_only": True}
        return {
            "method": "sorl",
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "target_actor": self.target_actor.state_dict(),
            "target_critic": self.target_critic.state_dict(),
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "generator": self.generator.get_state(),
            "host_generator": self.host_generator.get_state(),
            "step": self.step,
            "seed": self.seeds[0],
        }

    def load_state_dict(self, state: dict) -> None:
        self._check_single("load a checkpoint (stack single-seed agents with SORLAgent.stack)")
        if state.get("method", "sorl") != "sorl":
            raise ValueError(f"the weights are those of a {state['method']} agent, not of sorl")
        if state.get("inference_only"):  # targets start as copies; the optimiser starts fresh
            self.actor.load_state_dict(state["actor"])
            self.critic.load_state_dict(state["critic"])
            self.target_actor.load_state_dict(state["actor"])
            self.target_critic.load_state_dict(state["critic"])
            self.step = int(state["step"])
            self.has_target_critic = False
            self._refresh("actor", "critic", "target_actor", "target_critic")
            return
        for name in ("actor", "critic", "target_actor", "target_critic"):
            getattr(self, name).load_state_dict(state[name])
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        self.host_generator.set_state(state["host_generator"])
        self.step = int(state["step"])
        self.seeds = [int(state.get("seed", self.seeds[0]))]  # older checkpoints do not say; their run's config does
        self._refresh("actor", "critic", "target_actor", "target_critic")  # the bf16 working copies follow
        try:
            self.generator.set_state(state["generator"])
        except (RuntimeError, ValueError):
            # Saved on another device type (CUDA <-> CPU): its noise stream cannot continue here, so
            # reseed deterministically from the step. Inference is unaffected; resume is no longer bit-exact.
            self.generator.manual_seed(self.step)


# ----------------------------------------------------------------------------- small utilities
def resolve_precision(config: SORLConfig, device: torch.device, bf16_allowed: bool = True) -> SORLConfig:
    """`config` with precision auto made concrete for `device`: bf16 where it multiplies bf16 at full speed."""
    if config.precision != "auto":
        return config
    fast = bf16_allowed and cpu.bf16_matmul_native(device)
    return dataclasses.replace(config, precision="bf16" if fast else "fp32")


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# The networks each optimiser steps, in its parameter order.
_OPTIMIZED = {"all": ("actor", "critic"), "critic": ("critic",), "actor": ("actor",)}


@dataclass
class _Networks:
    actor: nn.Module
    critic: nn.Module
    target_actor: nn.Module
    target_critic: nn.Module


def _bf16_copy(module: nn.Module) -> nn.Module:
    """A bf16 copy of a network, same requires_grad. LayerNorm scales and shifts stay float32: they are
    tiny, and so their gradients keep full precision."""
    clone = copy.deepcopy(module)
    for name, p in clone.named_parameters():
        if not name.startswith("ln_"):
            p.data = p.data.to(torch.bfloat16)
    return clone


def _frozen_copy(module: nn.Module) -> nn.Module:
    clone = copy.deepcopy(module)
    clone.requires_grad_(False)
    return clone


def _adam(params, lr: float) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), eps=1e-8, fused=True)


def clip_and_step(opt: torch.optim.Adam, params: list[torch.Tensor], max_norm: float, seeds: int = 1) -> torch.Tensor:
    """Global-norm gradient clipping folded into the fused Adam step; returns the pre-clip norm.

    Same result as clip_grad_norm_ then step(): fused Adam divides every gradient by `grad_scale`
    (the hook AMP's GradScaler uses), which spares a separate read-and-write pass over all gradients.
    seeds > 1: seed-stacked weights; each seed's gradients are divided by its own scale first (one norm per seed).
    """
    grads = [p.grad for p in params if p.grad is not None]
    if seeds == 1:
        norm = nn.utils.get_total_norm(grads, foreach=True)
        opt.grad_scale = torch.clamp((norm + 1e-6) / max_norm, min=1.0)
    else:
        norm = cpu.grad_norms(grads, seeds)
        scale = torch.clamp((norm + 1e-6) / max_norm, min=1.0)
        with torch.no_grad():
            for g in grads:
                g.view(seeds, -1).div_(scale.view(seeds, 1).to(g.dtype))
        opt.grad_scale = None
    opt.step()
    return norm


@torch.no_grad()
def polyak(target: nn.Module, source: nn.Module, tau: float) -> None:
    """target <- (1 - tau) target + tau source."""
    torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)


@contextlib.contextmanager
def requires_grad(module: nn.Module, flag: bool) -> Iterator[None]:
    """Temporarily freeze a module: gradients still flow through it to its inputs."""
    saved = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(flag)
    try:
        yield
    finally:
        for p, r in zip(module.parameters(), saved):
            p.requires_grad_(r)
