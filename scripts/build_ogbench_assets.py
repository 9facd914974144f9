"""Bundle a finished OGBench run: an inference-only policy, its 50-episode sweep and its card.

    .venv/bin/python scripts/build_ogbench_assets.py RUN_DIR NAME [--episodes 50] [--m-inf 1 2 4 8] [--n 1 4 16]

The grid follows the run's method unless given: SORL and flow-bc M_inf 1-8 x N 1, 4, 16; ifql the same with N = 32
(FQL's IFQL ranks 32 samples); fql M_inf 1 (it acts in one call) x N 1, 4, 16, 32. Best-of-N ranks by the method's
critic (flow-bc, which has none: the candidates' consensus). It writes assets/ogbench/NAME/{policy.pt, sweep.csv, card.md} and the run's config.json, metrics.csv, eval.csv. policy.pt keeps actor and critic only
(sampling needs nothing else; ~4x smaller than the run's checkpoint, which can resume training).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sorl_core.baselines import m_inf_values, ranking_verifier
from sorl_core.checkpoint import load_agent, save_checkpoint
from sorl_core.io import write_atomic
from sorl_core.ogbench.environments import environment_for
from sorl_core.studies.evaluate import EvaluateConfig, run_sweep, sweep_csv


def train_command(config: dict, iterations: int) -> str:
    """The command that reproduces the run (iterations: where it was stopped, if it was stopped early)."""
    agent = config["agent"]
    defaults = {"method": "sorl", "precision": "fp32", "m_btt": 8, "lr": 1e-4, "size": "lab"}
    flags = [f"--env {config['env']}", f"--seed {config['seed']}", f"--iterations {iterations}",
             f"--eval-every {config['eval_every']}", f"--eval-episodes {config['eval_episodes']}"]
    if list(config.get("eval_m_inf", [1, 2, 4, 8])) != [1, 2, 4, 8]:
        flags.append("--eval-m-inf " + " ".join(map(str, config["eval_m_inf"])))
    flags += [f"--agent.{k.replace('_', '-')} {agent[k]}" for k in defaults if agent.get(k, defaults[k]) != defaults[k]]
    return "sorl-lab train " + " ".join(flags)


METHOD_TEXT = {"sorl": "SORL", "flow-bc": "flow-bc (baseline: the actor by flow matching alone)",
               "ifql": "ifql (baseline: behaviour flow plus an IQL critic)",
               "fql": "fql (baseline: FQL's one-step policy)"}


NETWORKS = {"sorl": "actor and 2 critics", "flow-bc": "one flow network, no critic",
            "ifql": "behaviour flow, value network and 2 critics",
            "fql": "behaviour flow, one-step policy and 2 critics"}
KEPT = {"sorl": "actor and critic", "flow-bc": "the flow network", "ifql": "behaviour flow and critics",
        "fql": "one-step policy and critics"}  # what sampling needs (the agent's `inference` networks)


def method_row(a) -> str:
    """The card's row of the method's own settings (docs/ALGORITHM.md §9 for the baselines)."""
    if a.method == "sorl":
        return f"| M_disc / M_BTT | {a.m_disc} / {a.m_btt} |"
    if a.method == "flow-bc":
        return "| method | flow-bc: flow matching only, no critic; sampled with 1 ... 8 Euler steps |"
    if a.method == "ifql":
        return f"| method | ifql: expectile {a.expectile}, best-of-N by the lower of the two critics |"
    return f"| method | fql: alpha {a.alpha:g}, behaviour flow of {a.flow_steps} Euler steps distilled into one step |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("name")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--m-inf", type=int, nargs="+", help="default: 1 2 4 8 (fql: 1)")
    parser.add_argument("--n", type=int, nargs="+", help="default: 1 4 16 (ifql and fql: 1 4 16 32)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--note", default="", help="a paragraph for the card (e.g. how this run differs from the paper)")
    args = parser.parse_args()

    out = ROOT / "assets" / "ogbench" / args.name
    out.mkdir(parents=True, exist_ok=True)
    agent, extra = load_agent(args.run_dir / "checkpoint.pt", device="cpu")
    # The budget this policy was trained with: a snapshot or a run stopped early has fewer iterations than planned.
    config = {**extra["train_config"], "iterations": agent.step}
    a = agent.config
    args.m_inf = args.m_inf or list(m_inf_values(a, [1, 2, 4, 8]))
    args.n = args.n or ([1, 4, 16, 32] if a.method in ("ifql", "fql") else [1, 4, 16])
    verifier = ranking_verifier(a)
    with open(args.run_dir / "metrics.csv", newline="") as f:
        train_seconds = float(list(csv.DictReader(f))[-1]["seconds"])
    policy = out / "policy.pt"
    save_checkpoint(policy, agent, {"kind": "ogbench", "env": extra["env"], "train_config": config,
                                    "name": args.name, "train_seconds": train_seconds}, inference_only=True)

    start = time.perf_counter()
    rows = run_sweep(EvaluateConfig(checkpoint=str(policy), m_inf=tuple(args.m_inf), n=tuple(args.n),
                                    verifier=(verifier,), episodes=args.episodes, workers=args.workers, device="cpu"))
    for row in rows:
        row["checkpoint"] = args.name
    write_atomic(out / "sweep.csv", sweep_csv(rows))
    sweep_seconds = time.perf_counter() - start

    cell = {(int(r["m_inf"]), int(r["n"])): r for r in rows}
    lines = [
        f"# {args.name}", "",
        f"{METHOD_TEXT[a.method]} policy for `{extra['env']}`, trained on this machine (2 CPU cores) and bundled with "
        "SORL Lab.", "",
        "| | |", "|---|---|",
        f"| command | `{train_command(config, agent.step)}` |",
        f"| iterations | {agent.step:,} (the paper: 1,000,000) |",
        f"| networks | {NETWORKS[a.method]}, {a.size} size {list(a.hidden)}, {a.precision}"
        + (f", {a.mode} mode |" if a.method == "sorl" else " |"),
        method_row(a),
        f"| preset | discount {a.discount}, AGG {a.q_agg}, q_loss_coef {a.q_loss_coef}, lr {a.lr}; from "
        f"{environment_for(extra['env']).settings_from} |"
        if a.method == "sorl" else f"| preset | discount {a.discount}, lr {a.lr} |",
        f"| dataset | `{config['env'].split('-singletask')[0]}-v0`, 1000 episodes x 1001 rows, regenerated offline with "
        "OGBench's scripted oracles (`sorl-lab data generate`, seed 0) |",
        f"| training wall-clock | {train_seconds / 60:.0f} min |",
        f"| file | `policy.pt`: {KEPT[a.method]} only ({policy.stat().st_size / 1e6:.1f} MB) |", "",
        f"## Success over M_inf x N ({args.episodes} episodes per cell, the same seeded initial states in every cell)", "",
        f"Success rate [95% Wilson interval]; network calls per action in parentheses; best-of-N ranked by `{verifier}`.",
        "",
        "| M_inf | " + " | ".join(f"N={n}" for n in args.n) + " |",
        "|---|" + "---|" * len(args.n),
    ]
    for m in args.m_inf:
        cells = [f"{float(cell[m, n]['success_rate']):.0%} [{float(cell[m, n]['success_ci_low']):.0%}, "
                 f"{float(cell[m, n]['success_ci_high']):.0%}] ({cell[m, n]['network_calls']})" for n in args.n]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    if args.note:
        lines += ["", args.note]
    lines += ["", f"Measured by `scripts/build_ogbench_assets.py` in {sweep_seconds / 60:.1f} min; the rows are in `sweep.csv`.",
              "Re-run: `sorl-lab evaluate --checkpoint " + str(policy.relative_to(ROOT)) + f" --episodes {args.episodes}`.", ""]
    (out / "card.md").write_text("\n".join(lines))
    # The run's logs beside the policy: the lab's Training runs page can browse assets/ogbench/ as a run root.
    (out / "config.json").write_text(json.dumps(config, indent=2))
    for name in ("metrics.csv", "eval.csv"):
        shutil.copyfile(args.run_dir / name, out / name)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
