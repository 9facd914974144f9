"""The methods SORL is measured against (docs/ALGORITHM.md §9), in the same core as SORL: its networks, Euler loop,
sampler (`best_of_n`), verifiers, checkpoints and CLI (`--agent.method flow-bc|ifql|fql`).

- flow-bc: SORL's actor trained by SORL's flow-matching loss alone, sampled as a plain flow (every step at the
  finest level). Test-time scaling by M_inf; best-of-N only with a verifier that needs no critic.
- ifql: a behaviour flow and an IQL critic trained without any policy (expectile value V, Q toward r + gamma V(s'));
  acts by best-of-N over behaviour-flow samples ranked by the lower of its two critics (FQL's IFQL).
- fql: a behaviour flow, a one-step policy distilled from it under a Q term, and a critic whose targets use the
  one-step policy (FQL); best-of-N over one-step samples.

Losses are small pure functions returning (loss, info). A baseline trains one seed per model, in float32.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from . import verifiers
from .agent import (Batch, SampleResult, SORLAgent, _adam, _frozen_copy, best_of_n, clip_and_step, critic_loss,
                    integrate, interpolate, polyak, requires_grad, resolve_device, resolve_precision)
from .config import SORLConfig
from .networks import CriticEnsemble, ShortcutActor


# ----------------------------------------------------------------------------- networks
class FixedStepCritic(nn.Module):
    """SORL's critic ensemble without its step-count input (it always reads 0): the baselines' critics have no
    step count to condition on. The k that verifiers pass is ignored. Q values (E, B) as CriticEnsemble's."""

    def __init__(self, ensemble: CriticEnsemble):
        super().__init__()
        self.ensemble = ensemble

    def forward(self, obs: torch.Tensor, action: torch.Tensor, k=None) -> torch.Tensor:
        return self.ensemble(obs, action, 0.0)


class ValueNet(nn.Module):
    """V(s): a one-member critic ensemble that sees no action (IQL's state value)."""

    def __init__(self, ensemble: CriticEnsemble):
        super().__init__()
        self.ensemble = ensemble

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.ensemble(obs, obs[..., :0], 0.0)[0]


def one_step(policy: nn.Module, obs: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """FQL's one-step policy: SORL's actor network read once at t = 0, level 0; its output is the action itself."""
    zero = obs.new_zeros(obs.shape[0], 1)
    return policy(obs, noise, zero, zero)


# ----------------------------------------------------------------------------- losses
def flow_matching_loss(flow: nn.Module, obs: torch.Tensor, actions: torch.Tensor, noise: torch.Tensor,
                       t: torch.Tensor, level: float, eps: float):
    """Mean squared error of the flow's velocity at x_t against the straight-line target a - (1 - eps) x0."""
    x_t, velocity = interpolate(noise, actions, t, eps)
    loss = (flow(obs, x_t, t, torch.full_like(t, level)) - velocity).square().mean()
    return loss, {"fm_loss": loss.detach()}


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """Asymmetric squares: weight `expectile` where diff >= 0, 1 - expectile below (IQL)."""
    return torch.where(diff >= 0, expectile, 1 - expectile) * diff.square()


def value_loss(value: nn.Module, target_critic: nn.Module, batch: Batch, expectile: float):
    """V(s) toward an upper expectile of min_j Qtarget_j(s, a) over the data's actions."""
    with torch.no_grad():
        q = target_critic(batch["observations"], batch["actions"]).min(dim=0).values
    v = value(batch["observations"])
    loss = expectile_loss(q - v, expectile).mean()
    return loss, {"value_loss": loss.detach(), "v_mean": v.detach().mean()}


def iql_critic_loss(critic: nn.Module, value: nn.Module, batch: Batch, discount: float):
    """Each critic member toward r + gamma * mask * V(s'), squared errors summed over members (FQL's IFQL)."""
    with torch.no_grad():
        target = batch["rewards"] + discount * batch["masks"] * value(batch["next_observations"])
    q = critic(batch["observations"], batch["actions"])
    loss = (q - target).square().sum(dim=0).mean()
    return loss, {"critic_loss": loss.detach(), "q_mean": q.detach().mean(), "target_mean": target.mean()}


def distill_loss(policy_actions: torch.Tensor, flow_actions: torch.Tensor):
    """The one-step policy's actions for noises z against the behaviour flow's actions for the same z."""
    loss = (policy_actions - flow_actions).square().mean()
    return loss, {"distill_loss": loss.detach()}


def one_step_q_loss(critic: nn.Module, obs: torch.Tensor, actions: torch.Tensor, normalize: bool):
    """-mean Q of the policy's actions (ensemble mean); with `normalize`, divided by stopgrad(mean |Q|)."""
    q = critic(obs, actions).mean(dim=0)
    loss = -q.mean()
    if normalize:
        loss = loss / q.abs().mean().detach()
    return loss, {"q_loss": loss.detach(), "policy_q": q.detach().mean()}


# ----------------------------------------------------------------------------- the agents
class BaselineAgent:
    """What the baselines share: the behaviour flow `actor` (SORL's actor network), one Adam over everything
    trained, one noise generator, checkpoints, and the sampler's interface (`sample(obs, m_inf, n, ...)`)."""

    method = ""
    stackable = False  # seeds train one after the other (only SORL stacks seeds in one model)
    inference = ("actor",)  # the networks sampling needs: what an inference-only export keeps
    q_agg_at_selection: str | None = None  # how the critics are aggregated when ranking (None: the config's q_agg)

    def __init__(self, config: SORLConfig, seed: int | Sequence[int] = 0):
        if isinstance(seed, (list, tuple)):
            if len(seed) != 1:
                raise ValueError(f"{config.method} trains one seed per model; train seeds {list(seed)} one after the other")
            seed = seed[0]
        if config.method != self.method:
            raise ValueError(f"this is the {self.method} agent; a {config.method} configuration needs its own")
        self.device = resolve_device(config.device)
        config = resolve_precision(config, self.device, bf16_allowed=False)  # auto: float32
        if config.precision != "fp32":
            raise ValueError(f"{self.method} trains in float32 (bf16 is SORL's speed-up); drop --agent.precision bf16")
        self.config = cfg = config
        self.seeds, self.stacked = [int(seed)], False
        init = torch.Generator().manual_seed(int(seed))  # initial weights from a generator of their own
        self.networks: dict[str, nn.Module] = {"actor": ShortcutActor(cfg.obs_dim, cfg.action_dim, cfg.hidden, generator=init)}
        self.networks.update(self.build(init))
        if "critic" in self.networks:
            self.networks["target_critic"] = _frozen_copy(self.networks["critic"])
        for name, net in self.networks.items():
            setattr(self, name, net.to(self.device))
        self.optimizer = _adam([p for net in self.networks.values() for p in net.parameters() if p.requires_grad], cfg.lr)
        self.generator = torch.Generator(self.device).manual_seed(int(seed))
        self.step = 0
        self.has_target_critic = "target_critic" in self.networks

    @property
    def has_critic(self) -> bool:
        return "critic" in self.networks

    def build(self, init: torch.Generator) -> dict[str, nn.Module]:
        """The networks beside the behaviour flow."""
        return {}

    def critic_ensemble(self, init: torch.Generator) -> nn.Module:
        cfg = self.config
        return FixedStepCritic(CriticEnsemble(cfg.obs_dim, cfg.action_dim, cfg.hidden, cfg.num_critics,
                                              cfg.critic_layer_norm, generator=init))

    def randn(self, *shape) -> torch.Tensor:
        return torch.randn(*shape, generator=self.generator, device=self.device)

    def rand(self, *shape) -> torch.Tensor:
        return torch.rand(*shape, generator=self.generator, device=self.device)

    # ------------------------------------------------------------------ one iteration
    def losses(self, batch: Batch) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    def update(self, batch: Batch, k: int | None = None) -> dict[str, torch.Tensor]:
        """One iteration: the method's summed loss, one Adam step over every network it trains, then the targets."""
        batch = {key: value.to(self.device, non_blocking=True) for key, value in batch.items()}
        self.optimizer.zero_grad(set_to_none=True)
        loss, info = self.losses(batch)
        loss.backward()
        info.update(self.optimizer_step())
        if "target_critic" in self.networks:  # (also after an inference-only load, whose target starts as a copy)
            polyak(self.target_critic, self.critic, self.config.tau)
        self.step += 1
        return info

    def optimizer_step(self) -> dict:
        """One Adam step over everything trained (FQL clips no gradients); returns metrics to log."""
        self.optimizer.step()
        return {}

    # ------------------------------------------------------------------ inference
    as_obs = SORLAgent.as_obs

    def check_m_inf(self, m_inf: int, extrapolate: bool = False) -> None:
        if isinstance(m_inf, bool) or not isinstance(m_inf, int) or m_inf < 1:
            raise ValueError(f"m_inf (Euler steps) must be a whole number of at least 1, got {m_inf!r}")

    def propose(self, m_inf: int):
        """(obs_rep, noise, keep_path) -> (candidates before clipping, path): the behaviour flow, m_inf Euler steps."""
        level = self.config.max_level
        return lambda obs, x, keep: integrate(self.actor, obs, x, m_inf, keep, level)

    @torch.no_grad()
    def sample(self, obs, m_inf: int = 8, n: int = 1, return_trajectory: bool = False, generator=None,
               extrapolate: bool = False, score: bool | None = None, as_flow: bool = False,
               verifier: str = verifiers.DEFAULT_VERIFIER, beta: float = verifiers.DEFAULT_BETA,
               noise=None, budget=None) -> SampleResult:
        """The same call as `SORLAgent.sample`: m_inf actor calls per candidate, best-of-n ranked by `verifier`."""
        if budget is not None:
            raise ValueError(f"adaptive budgets are SORL's; sample {self.method} with a fixed m_inf and n")
        m_inf = int(m_inf) if isinstance(m_inf, np.integer) else m_inf
        self.check_m_inf(m_inf, extrapolate)
        found = verifiers.check_verifier(verifier, beta)
        if (n > 1 if score is None else score) and found.uses_critic and not self.has_critic:
            raise ValueError(f"{self.method} has no critic to rank candidates with; use n = 1 or the consensus verifier")
        return best_of_n(self, obs, m_inf, n, self.propose(m_inf), return_trajectory, generator, score, verifier,
                         beta, noise)

    @torch.no_grad()
    def verifier_scores(self, obs_rep: torch.Tensor, candidates: torch.Tensor, m_inf: int,
                        verifier: str = verifiers.DEFAULT_VERIFIER, beta: float = verifiers.DEFAULT_BETA) -> torch.Tensor:
        return verifiers.scores(verifier, candidates, obs_rep, int(m_inf), critic=self.networks.get("critic"),
                                target_critic=self.networks.get("target_critic") if self.has_target_critic else None,
                                q_agg=self.q_agg_at_selection or self.config.q_agg, m_btt=self.config.m_btt, beta=beta)

    @torch.no_grad()
    def q_value(self, obs, actions, k: int = 8) -> torch.Tensor:
        """Q of paired (obs, action) rows, or of one obs against many actions, aggregated as when ranking."""
        if not self.has_critic:
            raise ValueError(f"{self.method} has no critic")
        obs = self.as_obs(obs)
        actions = torch.as_tensor(actions, dtype=torch.float32, device=self.device).reshape(-1, self.config.action_dim)
        if obs.shape[0] == 1 and actions.shape[0] > 1:
            obs = obs.expand(actions.shape[0], -1)
        return verifiers.aggregate(self.critic(obs, actions), self.q_agg_at_selection or self.config.q_agg)

    # ------------------------------------------------------------------ seeds and persistence
    def member(self, p: int) -> "BaselineAgent":
        return self

    def state_dict(self, inference_only: bool = False, dtype: torch.dtype | None = None) -> dict:
        """Everything needed to resume bit-exactly, or (inference_only) the networks sampling needs, in `dtype`."""
        if inference_only:
            cast = (lambda sd: {k: v.to(dtype) for k, v in sd.items()}) if dtype is not None else (lambda sd: sd)
            return {"method": self.method, "step": self.step, "inference_only": True,
                    **{name: cast(self.networks[name].state_dict()) for name in self.inference}}
        return {"method": self.method, "step": self.step, "seed": self.seeds[0],
                **{name: net.state_dict() for name, net in self.networks.items()},
                "optimizer": self.optimizer.state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        method = state.get("method", "sorl")
        if method != self.method:
            raise ValueError(f"the weights are those of a {method} agent, not of {self.method}")
        names = self.inference if state.get("inference_only") else tuple(self.networks)
        for name in names:
            self.networks[name].load_state_dict(state[name])
        self.step = int(state["step"])
        if state.get("inference_only"):  # targets start as copies; the optimiser starts fresh
            if self.has_critic:
                self.target_critic.load_state_dict(self.critic.state_dict())
            self.has_target_critic = False
            return
        self.optimizer.load_state_dict(state["optimizer"])
        self.seeds = [int(state["seed"])]
        self.generator.set_state(state["generator"])


class FlowBCAgent(BaselineAgent):
    """SORL's actor trained by flow matching alone: SORL's flow-matching loss (t on the M_disc grid, the finest
    level), its weight, Adam and gradient clipping; no critic, no Q term, no self-consistency."""

    method = "flow-bc"

    def losses(self, batch: Batch):
        cfg = self.config
        b = batch["actions"].shape[0]
        t = torch.randint(cfg.m_disc, (b, 1), generator=self.generator, device=self.device) / cfg.m_disc
        fm, info = flow_matching_loss(self.actor, batch["observations"], batch["actions"],
                                      self.randn(b, cfg.action_dim), t, cfg.max_level, cfg.flow_eps)
        return cfg.fm_coef * fm, info

    def optimizer_step(self) -> dict:
        """SORL's gradient clipping, as SORL's actor gets it."""
        return {"grad_norm_actor_step": clip_and_step(self.optimizer, list(self.actor.parameters()), self.config.grad_clip)}

    def check_m_inf(self, m_inf: int, extrapolate: bool = False) -> None:
        SORLAgent.check_m_inf(self, m_inf, extrapolate)  # the flow was trained on SORL's grid of step sizes


class IFQLAgent(BaselineAgent):
    """FQL's IFQL: behaviour flow (t uniform on [0, 1]), IQL value and critic; value, critic and flow losses summed
    into one Adam step; the target critic follows by Polyak. Best-of-N ranks by the lower of the two critics."""

    method = "ifql"
    inference = ("actor", "critic")
    q_agg_at_selection = "min"

    def build(self, init):
        cfg = self.config
        return {"critic": self.critic_ensemble(init),
                "value": ValueNet(CriticEnsemble(cfg.obs_dim, 0, cfg.hidden, 1, cfg.critic_layer_norm, generator=init))}

    def losses(self, batch: Batch):
        cfg = self.config
        b = batch["actions"].shape[0]
        v_loss, info = value_loss(self.value, self.target_critic, batch, cfg.expectile)
        c_loss, c_info = iql_critic_loss(self.critic, self.value, batch, cfg.discount)
        fm, fm_info = flow_matching_loss(self.actor, batch["observations"], batch["actions"],
                                         self.randn(b, cfg.action_dim), self.rand(b, 1), cfg.max_level, cfg.flow_eps)
        return v_loss + c_loss + fm, {**info, **c_info, **fm_info}


class FQLAgent(BaselineAgent):
    """FQL: behaviour flow (t uniform on [0, 1]); one-step policy = flow loss + alpha * distillation + Q term;
    critic toward r + gamma * mask * AGG Qtarget(s', policy(s', z)). All summed into one Adam step; the Q term
    moves only the policy (the critic is frozen in it) and the critic target only the critic."""

    method = "fql"
    inference = ("policy", "critic")

    def build(self, init):
        cfg = self.config
        return {"policy": ShortcutActor(cfg.obs_dim, cfg.action_dim, cfg.hidden, generator=init),
                "critic": self.critic_ensemble(init)}

    def losses(self, batch: Batch):
        cfg = self.config
        obs, b, a_dim = batch["observations"], batch["actions"].shape[0], cfg.action_dim
        with torch.no_grad():
            next_actions = one_step(self.policy, batch["next_observations"], self.randn(b, a_dim)).clamp(-1, 1)
        c_loss, info = critic_loss(self.critic, self.target_critic, batch, next_actions, 0, cfg.discount, cfg.q_agg)
        fm, fm_info = flow_matching_loss(self.actor, obs, batch["actions"], self.randn(b, a_dim), self.rand(b, 1),
                                         cfg.max_level, cfg.flow_eps)
        noise = self.randn(b, a_dim)
        with torch.no_grad():
            flow_actions, _ = integrate(self.actor, obs, noise, cfg.flow_steps, level=cfg.max_level)
        policy_actions = one_step(self.policy, obs, noise)
        d_loss, d_info = distill_loss(policy_actions, flow_actions.clamp(-1, 1))
        with requires_grad(self.critic, False):  # the Q term's gradient reaches the policy through the actions only
            q_loss, q_info = one_step_q_loss(self.critic, obs, policy_actions.clamp(-1, 1), cfg.normalize_q_loss)
        return c_loss + fm + cfg.alpha * d_loss + q_loss, {**info, **fm_info, **d_info, **q_info}

    def check_m_inf(self, m_inf: int, extrapolate: bool = False) -> None:
        if m_inf != 1:
            raise ValueError(f"fql acts with one call of its one-step policy, so m_inf must be 1, got {m_inf!r}; "
                             "its test-time scaling is n (best-of-N)")

    def propose(self, m_inf: int):
        def run(obs, x, keep):
            action = one_step(self.policy, obs, x)
            return action, ([x, action] if keep else None)
        return run


BASELINES: dict[str, type[BaselineAgent]] = {a.method: a for a in (FlowBCAgent, IFQLAgent, FQLAgent)}


def m_inf_values(config: SORLConfig, wanted: Sequence[int]) -> tuple[int, ...]:
    """The step counts of `wanted` a method samples with: fql acts in one call (1 only); the others take them all."""
    return (1,) if config.method == "fql" else tuple(wanted)


def ranking_verifier(config: SORLConfig) -> str:
    """The verifier a method's best-of-N uses by default: its critic (`q`), or for flow-bc, which has none, the
    candidates' consensus."""
    return "consensus" if config.method == "flow-bc" else verifiers.DEFAULT_VERIFIER


def make_agent(config: SORLConfig, seed: int | Sequence[int] = 0):
    """The agent of `config.method`: SORLAgent for sorl, else the baseline's agent (same interface)."""
    return SORLAgent(config, seed) if config.method == "sorl" else BASELINES[config.method](config, seed)

