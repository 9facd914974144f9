"""Train the bundled toy policies (assets/toy/<world>.pt) and write their card (assets/toy/README.md).

    .venv/bin/python scripts/build_toy_assets.py                 # all worlds
    .venv/bin/python scripts/build_toy_assets.py ring spiral     # some worlds (the card keeps the others)
    .venv/bin/python scripts/build_toy_assets.py --card-only     # re-measure the bundled files, no training
    .venv/bin/python scripts/build_toy_assets.py --method ifql   # a baseline (flow-bc, ifql, fql) for every world

Baselines train with the same toy defaults, seed and iterations (assets/toy/<method>/<world>.pt, runs in
runs/toy-assets/<method>/<world>); their card, assets/toy/BASELINES.md, sets every method beside SORL at equal
network calls per action.

Each world trains with the toy defaults (`TOY_DEFAULTS`) for `TOY_BUNDLED_ITERATIONS`, seed 0, in
runs/toy-assets/<world>; an interrupted build resumes from that run's last checkpoint. Each bundled file is the
run's own checkpoint.pt (weights, optimiser and RNG state: a user can resume it). Per world the card records the
command, the measured table over M_inf x N on 1,024 held-out contexts, whether the converged picture holds (the
checks below, also pinned by tests/test_behaviour.py), and diagnostics of the critic at the chosen actions.
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sorl_core import toy  # noqa: E402
from sorl_core.checkpoint import load_agent  # noqa: E402
from sorl_core.config import METHODS, TOY_BUNDLED_ITERATIONS, TOY_DEFAULTS, SORLConfig  # noqa: E402
from sorl_core.studies.sweep_schema import best_within_budget  # noqa: E402
from sorl_core.studies.toy_scaling import (CONTEXTS, N_VALUES, M_VALUES, SAMPLING_SEEDS, converged_checks,  # noqa: E402
                                           critic_at_actions, held_out_contexts, scaling_table)
from sorl_core.train import ToyTrainConfig, train_toy  # noqa: E402

OUT = ROOT / "assets" / "toy"
RUNS = ROOT / "runs" / "toy-assets"


def bundled_path(world_name: str, method: str = "sorl") -> Path:
    """assets/toy/<world>.pt for SORL, assets/toy/<method>/<world>.pt for a baseline."""
    return OUT / f"{world_name}.pt" if method == "sorl" else OUT / method / f"{world_name}.pt"


def train_world(world_name: str, method: str = "sorl") -> float:
    """Train (or resume) the world's bundled run of `method`; returns its training seconds."""
    run = RUNS / world_name if method == "sorl" else RUNS / method / world_name
    cfg = ToyTrainConfig(world=world_name, seed=0, iterations=TOY_BUNDLED_ITERATIONS, out=str(run),
                         resume=(run / "checkpoint.pt").is_file(), progress=True, eval_every=1500,
                         checkpoint_every=1500, agent=SORLConfig(**TOY_DEFAULTS, method=method))
    _, run_dir = train_toy(cfg)
    bundled_path(world_name, method).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run_dir / "checkpoint.pt", bundled_path(world_name, method))
    with (run_dir / "metrics.csv").open(newline="") as f:
        return float(list(csv.DictReader(f))[-1]["seconds"])


def card_section(world_name: str, seconds: float | None) -> list[str]:
    agent, extra = load_agent(OUT / f"{world_name}.pt", device="cpu")
    iterations = extra.get("train_config", {}).get("iterations", "?")
    table, critic = scaling_table(agent, world_name), critic_at_actions(agent, world_name)
    world = toy.make_world(world_name)
    data = toy.make_dataset(world, 10_000, seed=0)["actions"]
    bc = toy.action_metrics(world, data[:CONTEXTS], held_out_contexts(world), data)
    timing = f", {seconds:.0f} s to train here" if seconds else ""
    lines = [f"## {world_name} (`{world_name}.pt`, {iterations} iterations{timing})", "",
             f"Behaviour data itself: R = {bc['mean_reward']:.2f}, on the data {bc['frac_in_support']:.2f}.", "",
             "| M_inf | " + " | ".join(f"N={n}: R / on data / gap" for n in N_VALUES) + " |",
             "|---|" + "---|" * len(N_VALUES)]
    for m in M_VALUES:
        cells = [f"{table[(m, n)]['mean_reward']:.2f} / {table[(m, n)]['frac_in_support']:.2f} / "
                 f"{table[(m, n)]['reward_gap']:.2f}" for n in N_VALUES]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += ["", "Checks: " + "; ".join(f"{name}: **{'yes' if ok else 'no'}**"
                                          for name, ok in converged_checks(table).items()) + ".", "",
              "The critic at the N = 1 actions (mean learned Q, mean true reward, share on the data): " + "; ".join(
                  f"M_inf = {m}: Q {c['q']:.2f}, R {c['reward']:.2f}, {c['on_data']:.2f}" for m, c in critic.items())
              + ".", ""]
    return lines


HEADER = [
    "# Bundled toy policies", "",
    "One SORL policy per toy world, built by `scripts/build_toy_assets.py`: the toy defaults (`TOY_DEFAULTS` in",
    f"`sorl_core/config.py`: size `tiny` 3 x 64, faithful mode, lr {TOY_DEFAULTS['lr']:g}, tau {TOY_DEFAULTS['tau']:g}, "
    f"alpha = q_loss_coef {TOY_DEFAULTS['q_loss_coef']:g},",
    f"discount 0), seed 0, {TOY_BUNDLED_ITERATIONS} iterations. The same policy, from the command line:", "",
    "```bash", f"sorl-lab train --world WORLD --seed 0 --iterations {TOY_BUNDLED_ITERATIONS}", "```", "",
    f"Metrics on {CONTEXTS:,} held-out contexts, each the mean over sampling seeds {list(SAMPLING_SEEDS)}: mean true reward R (best possible "
    "about 1), the fraction of actions on the data (inside its support), and the gap to the best reward. The checks "
    "are the paper's converged picture: more Euler steps do not hurt, and best-of-N with the learned Q does not "
    "lower the reward.", "",
]


BUDGETS = (1, 2, 4, 8, 16, 32, 64, 144)  # network calls per action at which the methods are compared


def baselines_card() -> list[str]:
    """assets/toy/BASELINES.md: per world, each method's best mean true reward within each budget of calls."""
    lines = ["# Toy baselines beside SORL, at equal network calls per action", "",
             "Built by `scripts/build_toy_assets.py --method METHOD` (docs/ALGORITHM.md §9 describes each method): the same "
             f"data, toy defaults (`TOY_DEFAULTS`), network size, seed 0 and {TOY_BUNDLED_ITERATIONS} iterations as the "
             "bundled SORL policies; fql with alpha = 300, FQL's published value for cube (no toy value is published).",
             "", f"Each cell: the highest mean true reward (best possible about 1) over {CONTEXTS:,} held-out contexts and "
             f"sampling seeds {list(SAMPLING_SEEDS)} among the method's cells (M_inf in {list(M_VALUES)}, N in "
             f"{list(N_VALUES)}) that cost at most that many network calls per action, with the cell as (M_inf, N); "
             "'-' where every cell costs more. Best-of-N ranks with the method's critic (flow-bc has none: the "
             "candidates' consensus).", ""]
    for world_name in toy.WORLDS:
        methods = [m for m in METHODS if bundled_path(world_name, m).is_file()]
        if len(methods) < 2:
            continue
        lines += [f"## {world_name}", "", "| method | " + " | ".join(f"≤ {b} call{'s' if b > 1 else ''}" for b in BUDGETS) + " |",
                  "|---|" + "---|" * len(BUDGETS)]
        best = {}
        for method in methods:
            agent, _ = load_agent(bundled_path(world_name, method), device="cpu")
            table = [{"m_inf": m, "n": n, **v} for (m, n), v in scaling_table(agent, world_name).items()]
            best[method] = [best_within_budget(table, budget, "mean_reward") for budget in BUDGETS]
            lines.append(f"| {method} | " + " | ".join("-" if b is None else f"{b['mean_reward']:.2f} ({b['m_inf']}, {b['n']})"
                                                       for b in best[method]) + " |")
        lines += ["", verdict(best), ""]
    return lines


def verdict(best: dict[str, list]) -> str:
    """One sentence per budget of 1, 8 and 144 calls: which method is best there, and by how much over the next."""
    parts = []
    for budget in (1, 8, 144):
        i = BUDGETS.index(budget)
        ranked = sorted(((cells[i]["mean_reward"], m) for m, cells in best.items() if cells[i] is not None), reverse=True)
        if len(ranked) > 1:
            (r1, m1), (r2, m2) = ranked[:2]
            parts.append(f"at ≤ {budget} call{'s' if budget > 1 else ''} {m1} leads ({r1:.2f}, {r1 - r2:+.2f} over {m2})")
    return "Best at equal compute: " + "; ".join(parts) + "." if parts else ""


def main(argv: list[str]) -> None:
    import torch

    torch.set_num_threads(1)  # 64-wide networks: threads only add overhead, and two builds can run side by side
    card_only = "--card-only" in argv
    method = argv[argv.index("--method") + 1] if "--method" in argv else "sorl"
    if method not in METHODS:
        sys.exit(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    worlds = [a for a in argv if not a.startswith("--") and a != method] or list(toy.WORLDS)
    OUT.mkdir(parents=True, exist_ok=True)
    timings_path = RUNS / "seconds.json"
    timings = json.loads(timings_path.read_text()) if timings_path.is_file() else {}
    if not card_only:
        for world_name in worlds:
            seconds = train_world(world_name, method)
            # another build may have recorded other worlds meanwhile: read again, add ours
            timings = json.loads(timings_path.read_text()) if timings_path.is_file() else {}
            key = world_name if method == "sorl" else f"{method}/{world_name}"
            timings[key] = seconds
            timings_path.write_text(json.dumps(timings, indent=2))
            print(f"{key}: {seconds:.0f} s", flush=True)
    if method != "sorl" or card_only:
        (OUT / "BASELINES.md").write_text("\n".join(baselines_card()))
        if method != "sorl":
            return
    lines = list(HEADER)
    for world_name in toy.WORLDS:
        if (OUT / f"{world_name}.pt").is_file():
            lines += card_section(world_name, timings.get(world_name))
    notes = OUT / "NOTES.md"  # hand-written findings (counter-examples), kept across rebuilds
    if notes.is_file():
        lines += [notes.read_text().rstrip(), ""]
    (OUT / "README.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
