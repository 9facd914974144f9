"""Time two revisions of the code against each other, interleaved: `sorl-lab bench` of each, alternately.

This machine's speed drifts by 10-20% (at times 50%) from minute to minute, so a benchmark of the old code
now and of the new code later says little. This script checks both revisions out as git worktrees
(in a temporary folder), then runs `sorl-lab bench ... --json` from each in turn, PAIRS times, each in a fresh
process with the repository's own virtual environment, and prints every pair and the range of the ratios:

    .venv/bin/python benchmarks/compare_revisions.py --old HEAD~3 --new HEAD --pairs 5 -- --size lab --precision bf16

Everything after `--` goes to `sorl-lab bench` as it is. `--new WORKTREE` (the default `.`) times the working
tree, uncommitted changes included. The first run of each revision builds its CPU kernels (about 20 s, not timed).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import tyro

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class CompareConfig:
    """Interleaved `sorl-lab bench` runs of two revisions."""

    old: str = "HEAD"
    """The revision to compare against (any git revision)."""
    new: str = "."
    """The revision to time: a git revision, or `.` for the working tree as it is."""
    pairs: int = 5
    """Runs of each revision, alternating old and new."""
    bench: tuple[str, ...] = field(default_factory=tuple)
    """Arguments for `sorl-lab bench` (after `--`)."""


def checkout(revision: str, into: Path) -> Path:
    if revision == ".":
        return ROOT
    path = into / revision.replace("/", "_").replace("~", "-").replace("^", "-")
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "--force", str(path), revision],
                   check=True, capture_output=True, text=True)
    return path


def bench(tree: Path, args: tuple[str, ...]) -> dict:
    """One `sorl-lab bench --json` in a fresh process that imports sorl_core from `tree`."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.run([sys.executable, "-m", "sorl_core.cli", "bench", *args, "--json"], cwd=tree, env=env,
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout[proc.stdout.index("{"):])


def seconds(report: dict) -> dict[str, float]:
    return {precision: r["seconds_per_iteration"] for precision, r in report["results"].items()}


def main(cfg: CompareConfig) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="sorl-compare-") as tmp:
        trees = {"old": checkout(cfg.old, Path(tmp)), "new": checkout(cfg.new, Path(tmp))}
        try:
            for tree in trees.values():  # build each tree's kernels before any clock starts
                bench(tree, ("--size", "tiny", "--iterations", "1", "--warmup", "0", "--precision", "bf16"))
            pairs = []
            for i in range(cfg.pairs):
                old, new = seconds(bench(trees["old"], cfg.bench)), seconds(bench(trees["new"], cfg.bench))
                pairs.append({"old": old, "new": new})
                print(f"pair {i + 1}: " + ", ".join(f"{p} old {old[p]:.4f} s new {new[p]:.4f} s (new/old {new[p] / old[p]:.2f})"
                                                   for p in old), flush=True)
        finally:
            for name, tree in trees.items():
                if tree != ROOT:
                    subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], capture_output=True)
    for p in pairs[0]["old"]:
        ratios = [pair["new"][p] / pair["old"][p] for pair in pairs]
        print(f"{p}: old {min(x['old'][p] for x in pairs):.4f}-{max(x['old'][p] for x in pairs):.4f} s, "
              f"new {min(x['new'][p] for x in pairs):.4f}-{max(x['new'][p] for x in pairs):.4f} s, "
              f"new/old {min(ratios):.2f}-{max(ratios):.2f} (median {statistics.median(ratios):.2f}) over {len(pairs)} pairs")
    return pairs


if __name__ == "__main__":
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    config = tyro.cli(CompareConfig, args=own)
    main(CompareConfig(config.old, config.new, config.pairs, tuple(extra)))
