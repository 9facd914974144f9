"""Sampling budgets: how much test-time compute one action gets, as one kind of object `SORLAgent.sample` runs.

A budget is either **fixed**, ``Fixed(m_inf, n)``: M_inf Euler steps for each of N candidates, best-of-N by the
verifier (the paper's grid), or an **adaptive rule** that decides state by state (the paper leaves "adaptive step
selection" open):

- **Sequential** ``seq:eps=0.05`` — the model's own self-consistency used at test time. Start at M = 1 Euler step
  and double M while the actions at M and 2M, drawn from the *same* noise, differ by more than eps; stop at the
  cap (default the trained M_disc). The distance is the max-abs difference over action dimensions of the clipped
  actions (an L-infinity distance: every action dimension must agree within eps). The state keeps the finer of
  the last two actions (2M, already paid for). Calls per state: 1 + 2 + ... + M_final actor calls, no critic calls
  (eps huge: 1 + 2 = 3; eps = 0 with M_disc = 8: 1 + 2 + 4 + 8 = 15).
- **Jump** ``jump:eps=0.05`` — the sequential rule's first test decides the whole step count. The actions at
  M = 1 and M = 2 from the same noise (3 calls) are compared as above: within eps, the state keeps the M = 2 action;
  otherwise it jumps straight to the cap's M Euler steps (default M_disc) from the same noise: 3 + M_cap calls
  (11 with M_disc = 8, against the sequential rule's 15), and no step count in between is paid for.
- **Parallel** ``par:delta=1.0`` — best-of-N that stops early. Candidates are drawn in rounds of 4 at a fixed M_inf
  (default the trained M_disc; ``m=`` sets it) and scored by the verifier; a state stops when the verifier's margin
  between its top candidate and the runner-up, in units of the sample standard deviation of all its candidates'
  scores so far, exceeds delta, or when it has N_max candidates (default 64; ``nmax=`` sets it, a multiple of 4).
  Calls per state: M_inf * N_drawn actor calls + N_drawn critic calls (each candidate is scored once; a verifier
  that uses no critic costs no critic calls).

Every budget reports the calls each state actually used (`BudgetResult`): `agent.sample(obs, budget=...)` returns
them, `rollouts.run_episodes(budget=...)` plays them, and sweeps write their mean per action. The rules reuse the
project's one Euler loop (`agent.integrate`) and the verifier registry.
"""

from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass

import numpy as np
import torch

from . import verifiers
from .agent import integrate
from .config import is_power_of_two

ROUND = 4  # candidates per round of the parallel rule
DEFAULT_NMAX = 64
RULE_FORMS = ("seq:eps=<number >= 0>[,mmax=<power of two>], jump:eps=<number >= 0>[,mmax=<power of two>] or "
              "par:delta=<number >= 0>[,m=<power of two>][,nmax=<multiple of 4>]")


class RuleError(ValueError):
    """A malformed adaptive rule string; the message names the expected form."""


@dataclass(frozen=True)
class Rule:
    """A parsed rule. kind: "seq", "jump" or "par"; knob: eps (seq, jump) or delta (par); m: the cap on M (seq, jump)
    or the fixed M_inf (par), None for the agent's M_disc; nmax: the parallel rule's cap on candidates."""

    kind: str
    knob: float
    m: int | None = None
    nmax: int = DEFAULT_NMAX
    text: str = ""

    @property
    def label(self) -> str:
        return self.text or (f"par:delta={self.knob:g}" if self.kind == "par" else f"{self.kind}:eps={self.knob:g}")

    @property
    def ranks(self) -> bool:
        """Whether the rule ranks candidates by a verifier (par); seq and jump draw one candidate per state."""
        return self.kind == "par"

    def steps(self, agent) -> int:
        return int(self.m or agent.config.m_disc)

    def caps(self, agent) -> tuple[int, int]:
        """(m_inf, n) written in a sweep row: the most Euler steps and candidates one action may use."""
        return (self.steps(agent), self.nmax) if self.ranks else (self.steps(agent), 1)

    def seed_offset(self) -> int:
        """A stable number that tells rules' sampling noise apart (sweep rows are reproducible)."""
        return zlib.crc32(self.label.encode()) % 100_003

    def sample(self, agent, obs, generator=None, verifier: str = verifiers.DEFAULT_VERIFIER,
               beta: float = verifiers.DEFAULT_BETA, extrapolate: bool = False) -> BudgetResult:
        """One action per state by this rule."""
        if self.kind == "seq":
            return sequential(agent, obs, self.knob, self.m, generator, extrapolate)
        if self.kind == "jump":
            return jump(agent, obs, self.knob, self.m, generator, extrapolate)
        return parallel(agent, obs, self.knob, self.m, self.nmax, generator, verifier, beta, extrapolate)


def parse_rule(text: str) -> Rule:
    """`seq:eps=0.05`, `jump:eps=0.05`, `par:delta=1.0`, `par:delta=1.0,nmax=32`, `par:delta=0.5,m=4`, `seq:eps=0.1,mmax=4`."""
    raw = str(text).strip()

    def fail(why: str) -> RuleError:
        return RuleError(f"adaptive rule {raw!r} {why}; expected {RULE_FORMS}, e.g. seq:eps=0.05 or par:delta=1.0.")

    kind, sep, rest = raw.partition(":")
    kind = kind.strip().lower()
    if not sep or kind not in ("seq", "jump", "par"):
        raise fail("does not start with seq:, jump: or par:")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        key, eq, value = part.partition("=")
        key = key.strip().lower()
        if not eq or not key or key in fields:
            raise fail(f"has a malformed or repeated setting {part.strip()!r}")
        fields[key] = value.strip()
    knob_name = "delta" if kind == "par" else "eps"
    allowed = {knob_name, "m", "nmax"} if kind == "par" else {knob_name, "mmax"}
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise fail(f"has the unknown setting(s) {', '.join(unknown)}")
    if knob_name not in fields:
        raise fail(f"lacks {knob_name}=")
    try:
        knob = float(fields[knob_name])
    except ValueError:
        raise fail(f"has {knob_name}={fields[knob_name]!r}, not a number") from None
    if not (knob >= 0 and math.isfinite(knob)) and knob != math.inf:
        raise fail(f"has {knob_name}={fields[knob_name]!r}, not a number >= 0")
    m = None
    m_key = "m" if kind == "par" else "mmax"
    if m_key in fields:
        try:
            m = int(fields[m_key])
        except ValueError:
            m = -1
        if not is_power_of_two(m):
            raise fail(f"has {m_key}={fields[m_key]!r}, not a power of two")
    nmax = DEFAULT_NMAX
    if "nmax" in fields:
        try:
            nmax = int(fields["nmax"])
        except ValueError:
            nmax = -1
        if nmax < ROUND or nmax % ROUND:
            raise fail(f"has nmax={fields['nmax']!r}, not a multiple of {ROUND}")
    return Rule(kind, knob, m, nmax, raw)


@dataclass
class BudgetResult:
    """What a budget returns for S states: the actions and what each state spent."""

    actions: torch.Tensor  # (S, A) clipped
    actor_calls: np.ndarray  # (S,) actor network calls of each state's action
    critic_calls: np.ndarray  # (S,) critic network calls of each state's action
    m_used: np.ndarray  # (S,) Euler steps of the chosen action
    n_used: np.ndarray  # (S,) candidates drawn

    @property
    def network_calls(self) -> np.ndarray:
        return self.actor_calls + self.critic_calls


def _generator(agent, generator):
    if isinstance(generator, (int, np.integer)):
        return torch.Generator(agent.device).manual_seed(int(generator))
    return generator


def _max_abs(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).abs().amax(dim=-1)


def _one_candidate_each(agent, obs, m_max: int | None, generator, extrapolate: bool):
    """What the one-candidate rules (seq, jump) start from: the checked cap on M, the states as a tensor, and one
    noise draw per state (drawn as agent.sample draws N = 1)."""
    m_max = int(m_max or agent.config.m_disc)
    agent.check_m_inf(m_max, extrapolate)
    obs = agent.as_obs(obs)
    noise = torch.randn(obs.shape[0], agent.config.action_dim, generator=_generator(agent, generator), device=agent.device)
    return m_max, obs, noise


@torch.no_grad()
def sequential(agent, obs, eps: float, m_max: int | None = None, generator=None, extrapolate: bool = False) -> BudgetResult:
    """The sequential rule (module docstring): per state, double M from 1 while max-abs(a_M - a_2M) > eps."""
    m_max, obs, noise = _one_candidate_each(agent, obs, m_max, generator, extrapolate)
    s = obs.shape[0]
    actions = integrate(agent.actor, obs, noise, 1)[0].clamp(-1, 1)
    actor_calls = np.ones(s, dtype=np.int64)
    m_used = np.ones(s, dtype=np.int64)
    active = torch.arange(s, device=agent.device)
    m = 1
    while m < m_max and active.numel():
        m *= 2
        finer = integrate(agent.actor, obs[active], noise[active], m)[0].clamp(-1, 1)
        idx = active.cpu().numpy()
        actor_calls[idx] += m
        m_used[idx] = m
        agreed = _max_abs(finer, actions[active]) <= eps
        actions[active] = finer
        active = active[~agreed]
    zeros = np.zeros(s, dtype=np.int64)
    return BudgetResult(actions, actor_calls, zeros, m_used, np.ones(s, dtype=np.int64))


@torch.no_grad()
def jump(agent, obs, eps: float, m_max: int | None = None, generator=None, extrapolate: bool = False) -> BudgetResult:
    """The jump rule (module docstring): the M = 2 action where M = 1 and 2 agree within eps, else the cap's M."""
    m_max, obs, noise = _one_candidate_each(agent, obs, m_max, generator, extrapolate)
    s = obs.shape[0]
    one = integrate(agent.actor, obs, noise, 1)[0].clamp(-1, 1)
    actions = integrate(agent.actor, obs, noise, 2)[0].clamp(-1, 1)
    actor_calls = np.full(s, 1 + 2, dtype=np.int64)
    m_used = np.full(s, 2, dtype=np.int64)
    hard = torch.nonzero(_max_abs(actions, one) > eps).flatten()
    if hard.numel() and m_max > 2:
        actions[hard] = integrate(agent.actor, obs[hard], noise[hard], m_max)[0].clamp(-1, 1)
        idx = hard.cpu().numpy()
        actor_calls[idx] += m_max
        m_used[idx] = m_max
    zeros = np.zeros(s, dtype=np.int64)
    return BudgetResult(actions, actor_calls, zeros, m_used, np.ones(s, dtype=np.int64))


@torch.no_grad()
def parallel(agent, obs, delta: float, m_inf: int | None = None, nmax: int = DEFAULT_NMAX, generator=None,
             verifier: str = verifiers.DEFAULT_VERIFIER, beta: float = verifiers.DEFAULT_BETA,
             extrapolate: bool = False) -> BudgetResult:
    """The parallel rule (module docstring): rounds of 4 candidates until (top - second) / std > delta or nmax."""
    m_inf = int(m_inf or agent.config.m_disc)
    agent.check_m_inf(m_inf, extrapolate)
    verifiers.check_verifier(verifier, beta)
    if nmax < ROUND or nmax % ROUND:
        raise ValueError(f"nmax must be a multiple of {ROUND}, got {nmax}")
    gen = _generator(agent, generator)
    obs = agent.as_obs(obs)
    s, a_dim = obs.shape[0], agent.config.action_dim
    per_candidate = verifiers.get(verifier).per_candidate  # else scores depend on all candidates: recomputed each round
    cands = obs.new_zeros(s, nmax, a_dim)
    scores = obs.new_full((s, nmax), -math.inf)
    drawn = np.zeros(s, dtype=np.int64)
    active = torch.arange(s, device=agent.device)
    n = 0
    while active.numel() and n < nmax:
        k = active.numel()
        # Same draw order as agent.sample: (states, candidates, action dims) from the generator.
        noise = torch.randn(k, ROUND, a_dim, generator=gen, device=agent.device)
        obs_rep = obs[active].repeat_interleave(ROUND, dim=0)
        x = integrate(agent.actor, obs_rep, noise.reshape(k * ROUND, a_dim), m_inf)[0].clamp(-1, 1)
        cands[active, n:n + ROUND] = x.reshape(k, ROUND, a_dim)
        n += ROUND
        drawn[active.cpu().numpy()] = n
        if per_candidate:
            scores[active, n - ROUND:n] = agent.verifier_scores(obs_rep, x.reshape(k, ROUND, a_dim), m_inf, verifier, beta)
        else:
            scores[active, :n] = agent.verifier_scores(obs[active].repeat_interleave(n, dim=0), cands[active, :n],
                                                       m_inf, verifier, beta)
        mine = scores[active, :n]
        top2 = mine.topk(2, dim=1).values
        spread = mine.std(dim=1)  # sample standard deviation (n - 1 in the denominator)
        margin = (top2[:, 0] - top2[:, 1]) / spread.clamp_min(1e-12)
        active = active[~(margin > delta)]
    chosen = scores.argmax(dim=1)
    actions = cands[torch.arange(s, device=agent.device), chosen]
    critic = drawn if verifiers.get(verifier).uses_critic else np.zeros(s, dtype=np.int64)
    return BudgetResult(actions, m_inf * drawn, critic.copy(), np.full(s, m_inf, dtype=np.int64), drawn)


@dataclass(frozen=True)
class Fixed:
    """The fixed budget of the paper's grid: M_inf Euler steps for each of N candidates, best-of-N by the verifier."""

    m_inf: int
    n: int = 1
    kind: str = "fixed"

    @property
    def label(self) -> str:
        return f"{self.m_inf}x{self.n}"

    def steps(self, agent) -> int:
        return self.m_inf

    def caps(self, agent) -> tuple[int, int]:
        return self.m_inf, self.n

    def seed_offset(self) -> int:
        return 0

    def sample(self, agent, obs, generator=None, verifier: str = verifiers.DEFAULT_VERIFIER,
               beta: float = verifiers.DEFAULT_BETA, extrapolate: bool = False) -> BudgetResult:
        res = agent.sample(obs, self.m_inf, self.n, generator=generator, verifier=verifier, beta=beta,
                           extrapolate=extrapolate)
        s = res.actions.shape[0]
        return BudgetResult(res.actions, np.full(s, res.actor_calls), np.full(s, res.critic_calls),
                            np.full(s, self.m_inf), np.full(s, self.n))


def parse_config(text: str) -> tuple[int, int]:
    """'8x16' -> (8, 16), with a clear error for anything else (the form `sorl-lab render` and budgets take)."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(text))
    if not match:
        raise ValueError(f"configuration {text!r} is not M_INFxN (e.g. 8x16)")
    return int(match.group(1)), int(match.group(2))


def parse_budget(text: str) -> Fixed | Rule:
    """`8x4` (M_inf x N) -> Fixed; `seq:...` / `par:...` -> Rule (parse_rule)."""
    try:
        m_inf, n = parse_config(text)
    except ValueError:
        return parse_rule(text)
    if not is_power_of_two(m_inf) or n < 1:
        raise RuleError(f"budget {text!r}: M_inf must be a power of two and N at least 1")
    return Fixed(m_inf, n)


def check_rules(agent, rules, extrapolate: bool = False) -> list[Rule]:
    """Parse every rule and check its step count against the agent, before any episode runs."""
    parsed = [parse_rule(r) if isinstance(r, str) else r for r in rules]
    for rule in parsed:
        agent.check_m_inf(rule.steps(agent), extrapolate)
    return parsed
