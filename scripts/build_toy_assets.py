"""Train the bundled toy policies (assets/toy/<world>.pt) and write their card (assets/toy/README.md).

    .venv/bin/python scripts/build_toy_assets.py                 # all worlds
    .venv/bin/python scripts/build_toy_assets.py ring spiral     # some worlds (the card keeps the others)
    .venv/bin/python scripts/build_toy_assets.py --card-only     # re-measure the bundled files, no training

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
from sorl_core.config import TOY_BUNDLED_ITERATIONS, TOY_DEFAULTS  # noqa: E402
from sorl_core.studies.toy_scaling import (CONTEXTS, N_VALUES, M_VALUES, SAMPLING_SEEDS, converged_checks,  # noqa: E402
                                  critic_at_actions, held_out_contexts, scaling_table)
from sorl_core.train import ToyTrainConfig, train_toy  # noqa: E402

OUT = ROOT / "assets" / "toy"
RUNS = ROOT / "runs" / "toy-assets"


def train_world(world_name: str) -> float:
    """Train (or resume) the world's bundled run; returns its training seconds."""
    run = RUNS / world_name
    cfg = ToyTrainConfig(world=world_name, seed=0, iterations=TOY_BUNDLED_ITERATIONS, out=str(run),
                         resume=(run / "checkpoint.pt").is_file(), progress=True, eval_every=1500,
                         checkpoint_every=1500)
    _, run_dir = train_toy(cfg)
    shutil.copyfile(run_dir / "checkpoint.pt", OUT / f"{world_name}.pt")
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


def main(argv: list[str]) -> None:
    import torch

    torch.set_num_threads(1)  # 64-wide networks: threads only add overhead, and two builds can run side by side
    card_only = "--card-only" in argv
    worlds = [a for a in argv if not a.startswith("--")] or list(toy.WORLDS)
    OUT.mkdir(parents=True, exist_ok=True)
    timings_path = RUNS / "seconds.json"
    timings = json.loads(timings_path.read_text()) if timings_path.is_file() else {}
    if not card_only:
        for world_name in worlds:
            seconds = train_world(world_name)
            # another build may have recorded other worlds meanwhile: read again, add ours
            timings = json.loads(timings_path.read_text()) if timings_path.is_file() else {}
            timings[world_name] = seconds
            timings_path.write_text(json.dumps(timings, indent=2))
            print(f"{world_name}: {timings[world_name]:.0f} s", flush=True)
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
