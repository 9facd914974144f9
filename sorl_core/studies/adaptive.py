"""Adaptive compute as a study: how the adaptive rules of `sorl_core.budgets` compare with the fixed grid.

The rules themselves (sequential ``seq:eps=...`` and parallel ``par:delta=...``) are sampling budgets that
`SORLAgent.sample(obs, budget=...)` runs (sorl_core/budgets.py says how each decides). Here: the fixed grid's
frontier at a rule's mean calls (`fixed_frontier`, and the stricter `mixture_frontier`), and `toy_table`, which
evaluates rules on a toy world's held-out contexts.
"""

from __future__ import annotations

import numpy as np

from .. import verifiers
from ..budgets import check_rules
from .sweep_schema import best_within_budget, intervals_apart, pool_rows


# ----------------------------------------------------------------------------- frontier comparisons
def fixed_frontier(points, calls: float) -> tuple[float, float] | None:
    """(calls, value) of the best fixed-grid point whose calls are <= `calls`; None when none fits.

    points: (network_calls, value) of the fixed (M_inf, N) cells. Ties go to fewer calls (best_within_budget).
    """
    best = best_within_budget([{"network_calls": c, "value": v} for c, v in points], calls, value="value")
    return None if best is None else (best["network_calls"], best["value"])


def mixture_frontier(points, calls: float) -> float | None:
    """The best value a per-state random mixture of two fixed cells reaches at mean `calls` (the upper concave
    envelope of the fixed points, linear in calls between them): a stricter baseline than `fixed_frontier`,
    since mixing two fixed cells is itself an adaptive rule that spends `calls` on average. None below the
    cheapest cell; the best value beyond the dearest."""
    pts = sorted(points)
    if not pts or calls < pts[0][0] - 1e-9:
        return None
    best = max(v for c, v in pts if c <= calls + 1e-9)
    for c1, v1 in pts:
        for c2, v2 in pts:
            if c1 <= calls <= c2 and c2 > c1:
                best = max(best, v1 + (v2 - v1) * (calls - c1) / (c2 - c1))
    return best


# ----------------------------------------------------------------------------- toy worlds
def toy_table(agent, world_name: str, rules, contexts: int | None = None, sampling_seeds=None,
              verifier: str = verifiers.DEFAULT_VERIFIER) -> dict[str, dict[str, float]]:
    """rule label -> true-reward metrics (toy.action_metrics) on the held-out contexts, with the mean actor,
    critic and network calls per action; each the mean over the sampling seeds (as toy_scaling.scaling_table)."""
    from .. import toy
    from . import toy_scaling

    contexts = toy_scaling.CONTEXTS if contexts is None else contexts
    sampling_seeds = toy_scaling.SAMPLING_SEEDS if sampling_seeds is None else sampling_seeds
    world = toy.make_world(world_name)
    data = toy.make_dataset(world, 10_000, seed=0)["actions"]
    ctx = toy_scaling.held_out_contexts(world, contexts)
    out = {}
    for rule in check_rules(agent, rules):
        runs = []
        for s in sampling_seeds:
            res = rule.sample(agent, ctx, generator=s, verifier=verifier)
            metrics = toy.action_metrics(world, res.actions.cpu().numpy(), ctx, data)
            metrics.update(actor_calls=float(res.actor_calls.mean()), critic_calls=float(res.critic_calls.mean()),
                           network_calls=float(res.network_calls.mean()), mean_m=float(res.m_used.mean()),
                           mean_n=float(res.n_used.mean()))
            runs.append(metrics)
        out[rule.label] = {key: float(np.mean([r[key] for r in runs])) for key in runs[0]}
    return out


def fixed_calls(m_inf: int, n: int, verifier: str = verifiers.DEFAULT_VERIFIER) -> int:
    """Network calls of one action of the fixed grid (verifiers.calls_per_action, docs/ALGORITHM.md §5)."""
    return sum(verifiers.calls_per_action(m_inf, n, verifier))


# ----------------------------------------------------------------------------- OGBench sweeps over training seeds
def pooled_comparison(rows: list[dict]) -> list[dict]:
    """Adaptive rules against the fixed grid, the episodes of several sweeps (e.g. one per training seed) pooled.

    rows: sweep.csv rows (`sorl-lab evaluate --adaptive`, one verifier), every file with the same cells. Per rule:
    its pooled success with the 95% Wilson interval, its mean network calls per action (each file's mean weighted
    by the actions it took: episodes x mean length), and the best fixed cell that costs no more, pooled the same way
    (`best_within_budget`: ties to fewer calls). `apart` says whether the two intervals do not overlap.
    """
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        key = (r.get("adaptive") or "", int(r["m_inf"]), int(r["n"]))
        groups.setdefault(key if key[0] == "" else (key[0], 0, 0), []).append(r)
    fixed = [{**pool_rows(g), "m_inf": m, "n": n} for (rule, m, n), g in groups.items() if rule == ""]
    out = []
    for (rule, _, _), group in groups.items():
        if rule == "":
            continue
        mine = pool_rows(group)
        best = best_within_budget(fixed, mine["network_calls"])
        apart = best is not None and intervals_apart(mine, best)
        out.append({"rule": rule, **mine, "fixed": best, "apart": apart})
    return out
