"""Verifiers: how best-of-N ranks its N candidates.

The paper ranks them with the online critic (`q`); a learned verifier can be over-optimised, so the lab offers
others to compare. Each verifier maps the candidates of every state to one score per candidate; best-of-N keeps
the argmax. Pure functions of the networks handed in, so any study can call them on stored candidates.
"""

from __future__ import annotations

import torch
from torch import nn

VERIFIERS: dict[str, str] = {
    "q": "the paper's verifier: the online critic at k = M_inf, ensemble aggregated with the preset's AGG",
    "q-min": "the minimum over the critic ensemble at k = M_inf (pessimistic)",
    "q-lcb": "a lower confidence bound: ensemble mean minus beta times the members' spread |q1 - q2|",
    "q-kbtt": "the critic at k = min(M_inf, M_BTT): a critic trained with M_BTT = 1 has only ever seen k = 1",
    "target-q": "the target (Polyak-averaged) critic at k = M_inf, with the preset's AGG",
    "consensus": "no Q at all: the candidate closest to the others (the medoid), like a majority vote",
}
DEFAULT_VERIFIER = "q"
DEFAULT_BETA = 1.0


def check_verifier(verifier: str, beta: float = DEFAULT_BETA) -> None:
    """A clear error for an unknown verifier or a negative beta."""
    if verifier not in VERIFIERS:
        raise ValueError(f"unknown verifier {verifier!r}; choose one of {', '.join(VERIFIERS)}")
    if not beta >= 0:  # also refuses NaN
        raise ValueError(f"beta (the q-lcb penalty on the critics' disagreement) must be 0 or more, got {beta}")


def uses_critic(verifier: str) -> bool:
    return verifier != "consensus"


def medoid_scores(candidates: torch.Tensor) -> torch.Tensor:
    """(S, N, A) -> (S, N): minus the summed distance of each candidate to the other candidates of its state."""
    return -torch.cdist(candidates, candidates).sum(dim=-1)


def scores(verifier: str, candidates: torch.Tensor, obs_rep: torch.Tensor, m_inf: int, *, critic: nn.Module,
           target_critic: nn.Module | None, q_agg: str, m_btt: int, beta: float = DEFAULT_BETA) -> torch.Tensor:
    """(S, N) scores of the candidates (S, N, A); obs_rep holds row s*N + j for candidate j of state s.

    target_critic: None when the checkpoint has none (an inference-only export): `target-q` then refuses.
    """
    check_verifier(verifier, beta)
    s, n, a_dim = candidates.shape
    if verifier == "consensus":
        return medoid_scores(candidates)
    flat = candidates.reshape(s * n, a_dim)
    if verifier == "target-q":
        if target_critic is None:
            raise ValueError("this checkpoint holds no target critic (an inference-only export), so the target-q "
                             "verifier cannot run; use a checkpoint written by training, or another verifier")
        return aggregate(target_critic(obs_rep, flat, m_inf), q_agg).reshape(s, n)
    k = min(m_inf, m_btt) if verifier == "q-kbtt" else m_inf
    qs = critic(obs_rep, flat, k)  # (members, rows)
    if verifier == "q-min":
        return qs.min(dim=0).values.reshape(s, n)
    if verifier == "q-lcb":  # max - min is |q1 - q2| for the paper's two members
        spread = qs.max(dim=0).values - qs.min(dim=0).values
        return (qs.mean(dim=0) - beta * spread).reshape(s, n)
    return aggregate(qs, q_agg).reshape(s, n)


def aggregate(qs: torch.Tensor, how: str) -> torch.Tensor:
    """Ensemble (E, ...) -> (...) by min or mean (the environment's AGG)."""
    return qs.min(dim=0).values if how == "min" else qs.mean(dim=0)
