"""Bundle a finished OGBench run: an inference-only policy, its 50-episode sweep and its card.

    .venv/bin/python scripts/build_ogbench_assets.py RUN_DIR NAME [--episodes 50] [--m-inf 1 2 4 8] [--n 1 4 16]

writes assets/ogbench/NAME/{policy.pt, sweep.csv, card.md} and the run's config.json, metrics.csv, eval.csv. policy.pt keeps actor and critic only
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

from sorl_core.checkpoint import load_agent, save_checkpoint
from sorl_core.io import write_atomic
from sorl_core.studies.evaluate import EvaluateConfig, run_sweep, sweep_csv


def train_command(config: dict, iterations: int) -> str:
    """The command that reproduces the run (iterations: where it was stopped, if it was stopped early)."""
    agent, defaults = config["agent"], {"precision": "fp32", "m_btt": 8, "lr": 1e-4, "size": "lab"}
    flags = [f"--env {config['env']}", f"--seed {config['seed']}", f"--iterations {iterations}",
             f"--eval-every {config['eval_every']}", f"--eval-episodes {config['eval_episodes']}"]
    flags += [f"--agent.{k.replace('_', '-')} {agent[k]}" for k in ("size", "precision", "m_btt", "lr") if agent[k] != defaults[k]]
    return "sorl-lab train " + " ".join(flags)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("name")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--m-inf", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--n", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--note", default="", help="a paragraph for the card (e.g. how this run differs from the paper)")
    args = parser.parse_args()

    out = ROOT / "assets" / "ogbench" / args.name
    out.mkdir(parents=True, exist_ok=True)
    agent, extra = load_agent(args.run_dir / "checkpoint.pt", device="cpu")
    config = extra["train_config"]
    with open(args.run_dir / "metrics.csv", newline="") as f:
        train_seconds = float(list(csv.DictReader(f))[-1]["seconds"])
    policy = out / "policy.pt"
    save_checkpoint(policy, agent, {"kind": "ogbench", "env": extra["env"], "train_config": config,
                                    "name": args.name, "train_seconds": train_seconds}, inference_only=True)

    start = time.perf_counter()
    rows = run_sweep(EvaluateConfig(checkpoint=str(policy), m_inf=tuple(args.m_inf), n=tuple(args.n),
                                    episodes=args.episodes, workers=args.workers, device="cpu"))
    for row in rows:
        row["checkpoint"] = args.name
    write_atomic(out / "sweep.csv", sweep_csv(rows))
    sweep_seconds = time.perf_counter() - start

    cell = {(int(r["m_inf"]), int(r["n"])): r for r in rows}
    a = agent.config
    lines = [
        f"# {args.name}", "",
        f"SORL policy for `{extra['env']}`, trained on this machine (2 CPU cores) and bundled with SORL Lab.", "",
        "| | |", "|---|---|",
        f"| command | `{train_command(config, agent.step)}` |",
        f"| iterations | {agent.step:,} (the paper: 1,000,000) |",
        f"| networks | actor and 2 critics, {a.size} size {list(a.hidden)}, {a.precision}, {a.mode} mode |",
        f"| M_disc / M_BTT | {a.m_disc} / {a.m_btt} |",
        f"| preset | discount {a.discount}, AGG {a.q_agg}, q_loss_coef {a.q_loss_coef}, lr {a.lr} |",
        f"| dataset | `{config['env'].split('-singletask')[0]}-v0`, 1000 episodes x 1001 rows, regenerated offline with "
        "OGBench's scripted oracles (`sorl-lab data generate`, seed 0) |",
        f"| training wall-clock | {train_seconds / 60:.0f} min |",
        f"| file | `policy.pt`: actor and critic only ({policy.stat().st_size / 1e6:.1f} MB) |", "",
        f"## Success over M_inf x N ({args.episodes} episodes per cell, the same seeded initial states in every cell)", "",
        "Success rate [95% Wilson interval]; network calls per action in parentheses.", "",
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
