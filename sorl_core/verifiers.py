"""Verifiers: how best-of-N ranks its N candidates, in one registry.

The paper ranks them with the online critic (`q`); a learned verifier can be over-optimised, so the lab offers
others to compare. A `Verifier` says what it needs (the critic, the target critic, or nothing), scores the
candidates of every state (one score per candidate; best-of-N keeps the argmax) and counts its network calls.
The sampler, the studies, the adaptive rules and every page ask the registry instead of special-casing names.

Adding a verifier: write its score function below, add one `Verifier` to `VERIFIERS`, and add its direct
computation to tests/test_verifiers.py (docs/VERIFIERS.md walks through it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch
from torch import nn

DEFAULT_VERIFIER = "q"
DEFAULT_BETA = 1.0


@dataclass(frozen=True)
class ScoringInputs:
    """What a score function may read: candidates (S, N, A), obs_rep (row s*N + j is the state of candidate j of
    state s), the sampler's M_inf, the networks and the agent's settings."""

    candidates: torch.Tensor
    obs_rep: torch.Tensor
    m_inf: int
    critic: nn.Module
    target_critic: nn.Module | None
    q_agg: str
    m_btt: int
    beta: float

    def flat(self) -> torch.Tensor:
        return self.candidates.reshape(-1, self.candidates.shape[-1])


@dataclass(frozen=True)
class Verifier:
    """One way to rank candidates."""

    name: str
    description: str  # one sentence for people: what it scores
    needs: Literal["critic", "target critic", "nothing"]
    score_fn: Callable[[ScoringInputs], torch.Tensor]  # -> (S, N) scores, higher is better
    # True when a candidate's score depends on that candidate alone (so scores of earlier candidates can be kept
    # when more arrive); False when it depends on the whole set (consensus).
    per_candidate: bool = True
    # True when the score is the online critic's Q itself (AGG at k = M_inf): then a chosen candidate's score is
    # its Q and need not be recomputed for displays that show Q.
    score_is_q: bool = False

    @property
    def uses_critic(self) -> bool:
        """Whether scoring costs critic calls (one per candidate)."""
        return self.needs != "nothing"

    @property
    def scores_in_return_units(self) -> bool:
        """Whether the scores are critic values (in the units of return), not some other ranking score."""
        return self.needs != "nothing"

    def critic_calls(self, n: int, scored: bool | None = None) -> int:
        """Critic calls per state for n candidates: one per candidate when they are scored (by default only
        when there is a choice, n > 1) by a verifier that uses a critic."""
        scored = n > 1 if scored is None else scored
        return n if scored and self.uses_critic else 0

    def missing(self, has_target_critic: bool) -> str | None:
        """What a checkpoint lacks for this verifier (a clause, as studies record it), or None."""
        if self.needs == "target critic" and not has_target_critic:
            return "this checkpoint holds no target critic (an inference-only export)"
        return None

    def unavailable(self, has_target_critic: bool) -> str | None:
        """Why this verifier cannot run on a checkpoint (one sentence), or None when it can."""
        lacking = self.missing(has_target_critic)
        return None if lacking is None else (f"{lacking}, so the {self.name} verifier cannot run; use a checkpoint "
                                             "written by training, or another verifier")

    def score(self, inputs: ScoringInputs) -> torch.Tensor:
        if self.needs == "target critic" and inputs.target_critic is None:
            raise ValueError(self.unavailable(False))
        return self.score_fn(inputs)


def aggregate(qs: torch.Tensor, how: str) -> torch.Tensor:
    """Ensemble (E, ...) -> (...) by min or mean (the environment's AGG)."""
    return qs.min(dim=0).values if how == "min" else qs.mean(dim=0)


def medoid_scores(candidates: torch.Tensor) -> torch.Tensor:
    """(S, N, A) -> (S, N): minus the summed distance of each candidate to the other candidates of its state."""
    return -torch.cdist(candidates, candidates).sum(dim=-1)


def _members(x: ScoringInputs, k: int) -> torch.Tensor:
    """Every critic member's Q of every candidate at step-count feature k: (members, S * N)."""
    return x.critic(x.obs_rep, x.flat(), k)


def _q(x: ScoringInputs) -> torch.Tensor:
    return aggregate(_members(x, x.m_inf), x.q_agg)


def _q_min(x: ScoringInputs) -> torch.Tensor:
    return _members(x, x.m_inf).min(dim=0).values


def _q_lcb(x: ScoringInputs) -> torch.Tensor:
    qs = _members(x, x.m_inf)
    spread = qs.max(dim=0).values - qs.min(dim=0).values  # |q1 - q2| for the paper's two members
    return qs.mean(dim=0) - x.beta * spread


def _q_kbtt(x: ScoringInputs) -> torch.Tensor:
    return aggregate(_members(x, min(x.m_inf, x.m_btt)), x.q_agg)


def _target_q(x: ScoringInputs) -> torch.Tensor:
    return aggregate(x.target_critic(x.obs_rep, x.flat(), x.m_inf), x.q_agg)


def _consensus(x: ScoringInputs) -> torch.Tensor:
    return medoid_scores(x.candidates)


VERIFIERS: dict[str, Verifier] = {v.name: v for v in (
    Verifier("q", "the paper's verifier: the online critic at k = M_inf, ensemble aggregated with the preset's AGG",
             "critic", _q, score_is_q=True),
    Verifier("q-min", "the minimum over the critic ensemble at k = M_inf (pessimistic)", "critic", _q_min),
    Verifier("q-lcb", "a lower confidence bound: ensemble mean minus beta times the members' spread |q1 - q2|",
             "critic", _q_lcb),
    Verifier("q-kbtt", "the critic at k = min(M_inf, M_BTT): a critic trained with M_BTT = 1 has only ever seen k = 1",
             "critic", _q_kbtt),
    Verifier("target-q", "the target (Polyak-averaged) critic at k = M_inf, with the preset's AGG", "target critic",
             _target_q),
    Verifier("consensus", "no Q at all: the candidate closest to the others (the medoid), like a majority vote",
             "nothing", _consensus, per_candidate=False),
)}


def get(name: str) -> Verifier:
    """The registered verifier `name`, or a clear error naming the choices."""
    if name not in VERIFIERS:
        raise ValueError(f"unknown verifier {name!r}; choose one of {', '.join(VERIFIERS)}")
    return VERIFIERS[name]


def check_verifier(verifier: str, beta: float = DEFAULT_BETA) -> Verifier:
    """A clear error for an unknown verifier or a negative beta; the verifier when both are fine."""
    found = get(verifier)
    if not beta >= 0:  # also refuses NaN
        raise ValueError(f"beta (the q-lcb penalty on the critics' disagreement) must be 0 or more, got {beta}")
    return found


def calls_per_action(m_inf: int, n: int, verifier: str = DEFAULT_VERIFIER, scored: bool | None = None) -> tuple[int, int]:
    """(actor calls, critic calls) of one action of the fixed sampler: M_inf Euler steps for each of the N candidates,
    then the verifier's calls (docs/ALGORITHM.md §5). The one place the lab counts them."""
    return m_inf * n, get(verifier).critic_calls(n, scored)


def calls_text(count: float, noun: str = "call") -> str:
    """'1 call', '8 calls', '13.5 calls': counts of network calls as a sentence says them."""
    return f"{float(count):g} {noun}{'' if float(count) == 1 else 's'}"


def scores(verifier: str, candidates: torch.Tensor, obs_rep: torch.Tensor, m_inf: int, *, critic: nn.Module,
           target_critic: nn.Module | None, q_agg: str, m_btt: int, beta: float = DEFAULT_BETA) -> torch.Tensor:
    """(S, N) scores of the candidates (S, N, A); obs_rep holds row s*N + j for candidate j of state s.

    target_critic: None when the checkpoint has none (an inference-only export): `target-q` then refuses.
    """
    found = check_verifier(verifier, beta)
    s, n, _ = candidates.shape
    inputs = ScoringInputs(candidates, obs_rep, int(m_inf), critic, target_critic, q_agg, m_btt, beta)
    return found.score(inputs).reshape(s, n)
