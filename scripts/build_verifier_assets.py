"""Bundle the cube-single verifier study, its best-of-N-continuation twin and the verifier sweep.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/build_verifier_assets.py [--only study contN16 sweep compare]
    OMP_NUM_THREADS=1 .venv/bin/python scripts/build_verifier_assets.py --policy cube-single-task2-mbtt1 --only study sweep

Each step runs the exact `sorl-lab` command below (printed before it runs), then copies the small outputs into
assets/ogbench/cube-single-task2/:

* study: `sorl-lab verifier` at M_inf 8, N 16, 50 states, horizon 200, 2 repeats, seed 0, continuation N = 1, into
  runs/verifier-cube-single (resumable: a rerun skips the states already there), then its CSVs and config into
  verifier/ (not verifier.html: it inlines plotly.js, ~4 MB; the app's Verifier page draws the calibration itself).
* contN16: the same study with a best-of-16 continuation ranked by q (`--continuation-n 16`), into
  runs/verifier-cube-single-contN16 (resumable), then into verifier/continuation-n16/. Same states and candidates;
  the continuation's noise row 0 is the N = 1 study's (see sorl_core/studies/verifier_study.py).
* early: the study on each episode's first 21 decision points (`--early-steps 21`, steps 0-20, where the harm of
  best-of-N by q lies), with N = 64 candidates so the ceiling (coverage) runs to N = 64, into
  runs/verifier-cube-single-early-n64 (resumable), then into verifier/early-steps-n64/. About an hour on 2 cores.
* sweep: `sorl-lab evaluate` at M_inf 8, N 1 4 16, verifiers q q-min q-lcb consensus and two adaptive rules, 50
  episodes, into runs/sweep-verifiers-cube-single, then sweep_verifiers.csv (the Scaling page's bundled sweeps).
  Not resumable (evaluate writes once at the end); skipped when sweep_verifiers.csv exists, unless --force.
* compare: the continuation experiment on the states both studies hold (printed; figures for card.md).
* switch: where the harm of best-of-16 q lies in time. The 50 seeded episodes of the sweep, played at N = 1 (the
  sweep's N = 1 cell, same seeds and noise) for their first k steps, then best-of-16 by q to the end (a generator
  seeded by k); k = 0 is plain best-of-16 q. Success and return per k into verifier/switch.csv.

q-kbtt equals q at M_BTT = 8 (the sweep adds it for the M_BTT = 1 policy, whose critic has only seen k = 1), and
target-q is absent from these inference-only files.
Checkpoint paths in the copied verifier_config.json are made relative to the repository.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _policy_from_argv(default: str = "cube-single-task2") -> str:
    """--policy NAME (a folder of assets/ogbench), read before argparse: the commands below depend on it."""
    return sys.argv[sys.argv.index("--policy") + 1] if "--policy" in sys.argv[:-1] else default


NAME = _policy_from_argv()
RUN = "cube-single" if NAME == "cube-single-task2" else NAME  # run folders: runs/verifier-<RUN>, runs/sweep-verifiers-<RUN>
ASSET = ROOT / "assets" / "ogbench" / NAME
CHECKPOINT = f"assets/ogbench/{NAME}/policy.pt"
SORL = str(ROOT / ".venv" / "bin" / "sorl-lab")
STUDY = ["verifier", "--checkpoint", CHECKPOINT, "--m-inf", "8", "--n", "16", "--states", "50", "--horizon", "200",
         "--repeats", "2", "--seed", "0"]
STUDIES = {
    "study": (STUDY + ["--out", f"runs/verifier-{RUN}"], ASSET / "verifier"),
    "contN16": (STUDY + ["--continuation-n", "16", "--continuation-verifier", "q", "--batch-states", "5",
                         "--out", f"runs/verifier-{RUN}-contN16"], ASSET / "verifier" / "continuation-n16"),
    "early": (["verifier", "--checkpoint", CHECKPOINT, "--m-inf", "8", "--n", "64", "--states", "50", "--horizon", "200",
               "--repeats", "2", "--seed", "0", "--early-steps", "21", "--batch-states", "3",
               "--out", f"runs/verifier-{RUN}-early-n64"], ASSET / "verifier" / "early-steps-n64"),
}
SWEEP = ["evaluate", "--checkpoint", CHECKPOINT, "--m-inf", "8", "--n", "1", "4", "16",
         "--verifier", "q", "q-min", "q-lcb", *(["q-kbtt"] if NAME.endswith("mbtt1") else []), "consensus", "--adaptive", "seq:eps=0.05", "par:delta=1.0",
         "--episodes", "50", "--seed", "0", "--out", f"runs/sweep-verifiers-{RUN}"]
FILES = ("verifier_candidates.csv", "verifier_states.csv", "verifier_summary.csv", "verifier_config.json")


def run(args: list[str]) -> float:
    print("$ sorl-lab " + " ".join(args), flush=True)
    start = time.perf_counter()
    subprocess.run([SORL, *args, "--no-progress"], cwd=ROOT, check=True)
    seconds = time.perf_counter() - start
    print(f"  {seconds / 60:.1f} min", flush=True)
    return seconds


def relative(path: str | None) -> str | None:
    """A checkpoint path inside the repository, written relative to it."""
    if not path:
        return path
    p = Path(path)
    return str(p.resolve().relative_to(ROOT)) if p.is_absolute() and p.resolve().is_relative_to(ROOT) else path


def bundle_study(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        shutil.copyfile(src / name, dst / name)
    config = json.loads((dst / FILES[-1]).read_text())
    for key in ("checkpoint", "continuation_checkpoint"):
        config[key] = relative(config.get(key))
        if config[key] and Path(config[key]).is_absolute():
            raise SystemExit(f"{key} {config[key]} lies outside the repository; bundle a study of a bundled policy")
    (dst / FILES[-1]).write_text(json.dumps(config, indent=2) + "\n")
    print(f"  -> {dst.relative_to(ROOT)} ({sum((dst / n).stat().st_size for n in FILES) / 1e3:.0f} kB)")


def read(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def mean_se(x: list[float]) -> tuple[float, float]:
    x = [v for v in x if not math.isnan(v)]
    m = sum(x) / len(x)
    sd = math.sqrt(sum((v - m) ** 2 for v in x) / (len(x) - 1)) if len(x) > 1 else float("nan")
    return m, sd / math.sqrt(len(x))


def compare(one: Path, many: Path, verifier: str = "q") -> list[dict]:
    """Per quantity: mean over the states both studies hold at continuation N = 1 and N > 1, and the paired
    difference (mean, standard error over states)."""
    f = lambda r, k: float(r[k]) if r[k] != "" else float("nan")  # noqa: E731
    a = {r["state"]: r for r in read(one / "verifier_states.csv")}
    b = {r["state"]: r for r in read(many / "verifier_states.csv")}
    common = sorted(set(a) & set(b), key=int)
    if not common:
        raise SystemExit(f"{one} and {many} share no finished state yet")
    rows = []
    for key, label in (("mean_return", "mean candidate return"), ("mean_success", "mean candidate success"),
                       ("best_return", "best candidate return"), (f"pick_return_{verifier}", f"{verifier} pick's return"),
                       (f"pick_success_{verifier}", f"{verifier} pick's success"),
                       (f"spearman_{verifier}", f"{verifier} spearman"),
                       (f"top1_regret_{verifier}", f"{verifier} top-1 regret")):
        x, y = [f(a[s], key) for s in common], [f(b[s], key) for s in common]
        pairs = [(u, v) for u, v in zip(x, y) if not (math.isnan(u) or math.isnan(v))]
        d, se = mean_se([v - u for u, v in pairs])
        rows.append({"quantity": label, "states": len(pairs), "n1": mean_se([u for u, _ in pairs])[0],
                     "nN": mean_se([v for _, v in pairs])[0], "diff": d, "se": se})
    return rows


SWITCH_STEPS = (0, 5, 10, 20, 40)


def switch(episodes: int = 50, n: int = 16, m_inf: int = 8, verifier: str = "q", workers: int = 2) -> list[dict]:
    """Success and return when best-of-n starts at step k of the seeded N = 1 episodes (see the docstring)."""
    import numpy as np
    import torch

    sys.path.insert(0, str(ROOT))
    from sorl_core.checkpoint import load_agent
    from sorl_core.ogbench.rollouts import EnvBatch, episode_seeds, sample_seed
    from sorl_core.stats import wilson_interval
    from sorl_core.studies.verifier_study import record_episodes

    agent, extra = load_agent(ROOT / CHECKPOINT, device="cpu")
    seeds = episode_seeds(0, episodes)
    rows = []
    with EnvBatch(extra["env"], episodes, workers=workers) as envs:
        rec = record_episodes(agent, envs, m_inf, seeds, sample_seed(0, m_inf, 1))
        for k in SWITCH_STEPS:
            start = time.perf_counter()
            obs = envs.reset(seeds)
            running = np.ones(episodes, dtype=bool)
            success, returns = np.zeros(episodes, dtype=bool), np.zeros(episodes)
            generator = torch.Generator().manual_seed(1000 + k)
            t = 0
            while running.any():
                index = np.nonzero(running)[0]
                if t < k:
                    actions = np.stack([rec.actions[e][t] for e in index])
                else:
                    actions = agent.sample(obs[index], m_inf=m_inf, n=n, generator=generator,
                                           verifier=verifier).actions.float().cpu().numpy()
                next_obs, reward, terminated, truncated, succ = envs.step(index, actions)
                returns[index] += reward
                obs[index] = next_obs
                ended = terminated | truncated
                success[index[ended]] = succ[ended]
                running[index[ended]] = False
                t += 1
            low, high = wilson_interval(int(success.sum()), episodes)
            rows.append({"switch_step": k, "n": n, "verifier": verifier, "episodes": episodes,
                         "successes": int(success.sum()), "success_rate": success.mean(),
                         "success_ci_low": round(low, 4), "success_ci_high": round(high, 4),
                         "mean_return": round(float(returns.mean()), 2),
                         "ended_before_switch": int(sum(len(a) <= k for a in rec.actions))})
            print(f"  switch at step {k:>3}: {rows[-1]['successes']}/{episodes} "
                  f"[{low:.0%}, {high:.0%}], return {rows[-1]['mean_return']} ({time.perf_counter() - start:.0f} s)",
                  flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=("study", "contN16", "early", "sweep", "compare", "switch"),
                        default=["study", "contN16", "early", "sweep", "compare", "switch"])
    parser.add_argument("--force", action="store_true", help="rerun the sweep even when sweep_verifiers.csv exists")
    parser.add_argument("--policy", default="cube-single-task2",
                        help="the bundled policy (a folder of assets/ogbench) to study, e.g. cube-single-task2-mbtt1")
    args = parser.parse_args()
    for step in ("study", "contN16", "early"):
        if step in args.only:
            command, dst = STUDIES[step]
            run(command)
            bundle_study(ROOT / command[command.index("--out") + 1], dst)
    if "sweep" in args.only:
        target = ASSET / "sweep_verifiers.csv"
        if target.exists() and not args.force:
            print(f"{target.relative_to(ROOT)} exists; --force reruns the sweep")
        else:
            run(SWEEP)
            # named like sweep.csv's rows (evaluate labels a file policy.pt "policy"): one series on the Scaling page
            text = (ROOT / SWEEP[SWEEP.index("--out") + 1] / "sweep.csv").read_text()
            target.write_text(text.replace("\npolicy,", f"\n{ASSET.name},"))
            print(f"  -> {target.relative_to(ROOT)}")
    if "compare" in args.only:
        rows = compare(ASSET / "verifier", ASSET / "verifier" / "continuation-n16")
        print(f"continuation N = 1 vs N = 16 (q), {rows[0]['states']} common states: mean over states, paired diff ± se")
        for r in rows:
            print(f"  {r['quantity']:>24}: {r['n1']:9.3f} -> {r['nN']:9.3f}  diff {r['diff']:+.3f} ± {r['se']:.3f}"
                  f"  ({r['states']} states)")
    if "switch" in args.only:
        print("$ best-of-16 q from step k of the seeded N = 1 episodes (the sweep's seeds)", flush=True)
        rows = switch()
        with open(ASSET / "verifier" / "switch.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, list(rows[0]), lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        print(f"  -> {(ASSET / 'verifier' / 'switch.csv').relative_to(ROOT)}")


if __name__ == "__main__":
    main()
