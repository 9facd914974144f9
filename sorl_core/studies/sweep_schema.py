"""The columns of a test-time-scaling sweep CSV (`sorl-lab evaluate`): one row per (m_inf, n) cell, and one per
adaptive rule (`--adaptive`).

Shared by the evaluator that writes the file, the app's scaling page and the notebooks that read it.
"""

from __future__ import annotations

import re

SWEEP_COLUMNS: tuple[str, ...] = (
    "checkpoint",  # label of the checkpoint (file stem, or the bundled name)
    "env",  # OGBench environment, e.g. cube-single-play-singletask-task2-v0
    "m_btt",  # M_BTT the checkpoint was trained with (for comparing checkpoints)
    "m_inf",  # Euler steps at inference
    "n",  # best-of-N candidates
    "verifier",  # how best-of-N ranks its candidates (sorl_core/verifiers.py; `q` is the paper's learned Q)
    "episodes",  # episodes in the cell
    "successes",  # episodes whose last step reported info['success']
    "success_rate",  # successes / episodes
    "success_ci_low",  # 95% Wilson interval of the success rate
    "success_ci_high",
    "mean_return",  # mean undiscounted episode return
    "mean_length",  # mean episode length in steps (episodes end on success)
    "actor_calls",  # actor network calls per action: m_inf * n
    "critic_calls",  # critic calls per action: n when n > 1, else 0
    "network_calls",  # actor_calls + critic_calls: the compute axis of the scaling plots
    "ms_per_action",  # policy wall-clock per action, batched over all episodes of the cell
    "seed",  # seed of the initial states and of the sampling noise
    "adaptive",  # empty for the fixed (m_inf, n) grid; else the adaptive rule (sorl_core/studies/adaptive.py), e.g.
    # seq:eps=0.05: its m_inf and n are the rule's caps, and actor/critic/network calls are the MEAN calls
    # per action over all actions taken (not whole numbers)
    "train_seed",  # seed the checkpoint was trained with (`sorl-lab grid` and the bundled seeds); empty when unknown.
    # Rows that differ only in it are seeds of one recipe: the scaling page shows their mean and spread
    "train_iterations",  # training iterations of the checkpoint (a snapshot's, or the run's when it ended); empty when unknown
    "success_timing",  # when the environment judged success: pre (before the action, OGBench 1.2's singletask
    # default) or post (after it, as OGBench 1.1, which the paper's code used); empty when not recorded
    "method",  # the algorithm of the checkpoint: sorl, or a baseline (flow-bc, ifql, fql; docs/ALGORITHM.md §9)
)
# Files written before a column existed: the verifier was the paper's, every row was a fixed grid cell, the
# training seed, the training iterations and the success timing were not recorded, and every checkpoint was SORL's.
COLUMN_DEFAULTS: dict[str, str] = {"verifier": "q", "adaptive": "", "train_seed": "", "train_iterations": "",
                                   "success_timing": "", "method": "sorl"}


# A seed tag at the end of a checkpoint's name, or before a snapshot's "@<iterations>" (cube-s1@10000).
SEED_TAG = re.compile(r"[-_ ](?:s|sd|seed)\d+(?=(?:@\d+)?$)")
GRID_CELL = re.compile(r"^train-(?P<params>.*?)-[0-9a-f]{8}$")  # `sorl-lab grid` run folders: train-<params>-<hash>


def recipe(checkpoint: str) -> str:
    """A checkpoint's name without its seed: cube-single-task2-s1 -> cube-single-task2, and a grid's run folder
    train-seed=1-m_btt=8-<hash> -> m_btt=8 (seeds of one recipe share it)."""
    cell = GRID_CELL.match(checkpoint)
    if cell:
        params = [p for p in cell["params"].split("-") if not re.fullmatch(r"seed=\d+", p)]
        return "-".join(params) or "grid runs"
    return SEED_TAG.sub("", checkpoint)


def best_within_budget(cells, budget: float, value: str = "success_rate") -> dict | None:
    """The cell with the highest `value` among those whose `network_calls` fit the budget; None when none fits.

    The one rule for "compute-optimal under a budget" (the Scaling page, notebook 03, the adaptive-rule
    comparisons): ties go to fewer network calls, then fewer Euler steps, then fewer candidates.
    cells: dicts (sweep.csv rows, or any with `network_calls` and `value`; `m_inf` and `n` optional).
    """
    fit = [c for c in cells if float(c["network_calls"]) <= budget + 1e-9]
    if not fit:
        return None
    return dict(min(fit, key=lambda c: (-float(c[value]), float(c["network_calls"]), c.get("m_inf", 0), c.get("n", 0))))


def pool_rows(rows) -> dict:
    """One cell's rows from several sweeps (e.g. one per training seed) as one measurement: all their episodes pooled,
    the 95% Wilson interval of the pooled rate, and the mean network calls per action weighted by the actions each
    took (episodes x mean length; for a fixed cell every row has the same calls)."""
    from ..stats import wilson_interval

    rows = list(rows)
    successes, episodes = sum(int(r["successes"]) for r in rows), sum(int(r["episodes"]) for r in rows)
    actions = [int(r["episodes"]) * float(r["mean_length"]) for r in rows]
    calls = sum(a * float(r["network_calls"]) for a, r in zip(actions, rows)) / sum(actions)
    low, high = wilson_interval(successes, episodes)
    return {"successes": successes, "episodes": episodes, "success_rate": successes / episodes,
            "success_ci_low": low, "success_ci_high": high, "network_calls": calls, "files": len(rows)}


def intervals_apart(a: dict, b: dict) -> bool:
    """Whether two cells' 95% intervals do not overlap."""
    return a["success_ci_low"] > b["success_ci_high"] or b["success_ci_low"] > a["success_ci_high"]


def widest_recipe_per_method(members) -> dict:
    """method -> the members of its recipe with the most members (the first such on a tie), in order of appearance.
    members: (method, recipe, member) triples, e.g. one per bundled policy or sweep (its training seed)."""
    recipes: dict[tuple, list] = {}
    for method, name, member in members:
        recipes.setdefault((method, name), []).append(member)
    best: dict = {}
    for (method, _), found in recipes.items():
        if len(found) > len(best.get(method, [])):
            best[method] = found
    return best
