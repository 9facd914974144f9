"""Train the bundled toy policies (assets/toy/<world>.pt) and write their card (assets/toy/README.md).

    .venv/bin/python scripts/build_toy_assets.py            # all worlds, default config, seed 0

Each checkpoint is the run's own checkpoint.pt (weights, optimiser and RNG state: a user can resume it).
The card records the command, the wall-clock and the measured metrics over M_inf x N.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sorl_core import toy  # noqa: E402
from sorl_core.train import ToyTrainConfig, train_toy  # noqa: E402

OUT = ROOT / "assets" / "toy"
M_VALUES, N_VALUES = (1, 2, 4, 8), (1, 4, 16)


def main(worlds=toy.WORLDS) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    lines = ["# Bundled toy policies", "",
             "One SORL policy per toy world, trained with the defaults (`TOY_DEFAULTS`, size `tiny` 3 x 64, faithful",
             "mode, seed 0, 1500 iterations) by `scripts/build_toy_assets.py`, i.e. for each world:", "",
             "```bash", "sorl-lab train --world WORLD --seed 0 --iterations 1500", "```", "",
             "Metrics on 1024 held-out contexts (sampling seed 0): mean true reward R (best possible ≈ 1),",
             "fraction of actions inside the data support, and the gap to the optimal reward.", ""]
    for world_name in worlds:
        cfg = ToyTrainConfig(world=world_name, seed=0, out=str(ROOT / "runs" / "toy-assets" / world_name),
                             progress=False, eval_every=0, checkpoint_every=1500)
        start = time.perf_counter()
        agent, run_dir = train_toy(cfg)
        seconds = time.perf_counter() - start
        shutil.copyfile(run_dir / "checkpoint.pt", OUT / f"{world_name}.pt")
        world = toy.make_world(world_name)
        data = toy.make_dataset(world, 10_000, seed=0)["actions"]
        contexts = world.sample_contexts(1024, np.random.default_rng(123))
        bc = toy.action_metrics(world, data[:1024], contexts, data)
        lines += [f"## {world_name} (`{world_name}.pt`, {seconds:.0f} s to train here)", "",
                  f"Behaviour data itself: R = {bc['mean_reward']:.2f}, in support {bc['frac_in_support']:.2f}.", "",
                  "| M_inf | " + " | ".join(f"N={n}: R / support / gap" for n in N_VALUES) + " |",
                  "|---|" + "---|" * len(N_VALUES)]
        for m in M_VALUES:
            cells = []
            for n in N_VALUES:
                actions = agent.sample(contexts, m_inf=m, n=n, generator=0).actions.numpy()
                r = toy.action_metrics(world, actions, contexts, data)
                cells.append(f"{r['mean_reward']:.2f} / {r['frac_in_support']:.2f} / {r['reward_gap']:.2f}")
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines.append("")
        print(f"{world_name}: {seconds:.1f} s", flush=True)
    (OUT / "README.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:] or toy.WORLDS)
