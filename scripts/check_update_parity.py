"""Check our faithful update against two updates recorded from the SORL authors' own JAX code.

    python scripts/check_update_parity.py FIXTURE_DIR [--tolerance 1e-5]

FIXTURE_DIR (tests/fixtures/authors-sorl-update) holds the authors' agent before the updates, a batch, every
random draw their update made, and their agent after the critic step and after each update (its README says
how it was made). This loads the starting state into our agent, runs our update (fp32, faithful mode) on the
batch with the recorded draws fed in place of ours (`SORLAgent.replay_draws`), and prints the largest
difference per group after the critic step, after update 1 and after update 2. Exit status 1 when a group is
off by more than the tolerance.

How each group is measured (the output says it again):
- online weights and targets: absolute difference (the weights are of order 0.1-1, so 1e-5 is a strict bar;
  one update moves them by up to about 4e-4);
- Adam's moments: difference relative to the largest moment of the group (nu is about 1e-9: an absolute bar
  would pass anything);
- losses and gradient norms: relative difference.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from sorl_core.authors_run import actor_state, agent_from_tree, critic_state, find_adam

NETWORKS = {"actor": "modules_actor", "critic": "modules_critic",
            "target_actor": "modules_target_actor", "target_critic": "modules_target_critic"}
# The authors' draw (function and sampler in sorl.py, by its recorded name) -> the name our update asks for.
DRAW_NAMES = {"critic_loss_randint": "k_critic", "sample_k_step_actions_for_critic_normal": "critic_noise",
              "get_consistency_loss_randint": "sc_time_index", "get_consistency_loss_normal": "sc_noise",
              "get_fm_loss_randint": "fm_time_index", "get_fm_loss_normal": "fm_noise",
              "get_q_loss_randint": "k_actor", "sample_k_step_actions_for_q_normal": "q_noise"}
# Their info key -> ours.
LOSSES = {"critic_loss": "critic_loss", "bc_flow_loss": "fm_loss", "consistency_loss": "sc_loss",
          "q_loss": "q_loss", "actor_loss": "actor_loss", "grad/global_norm": "grad_norm_actor_step"}


def nested(flat: dict[str, np.ndarray]) -> dict:
    """'a/b/c' keys of an .npz -> the nested dict flax's to_state_dict wrote."""
    tree: dict = {}
    for key, value in flat.items():
        *parents, leaf = key.split("/")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def load_state(path: Path) -> dict:
    with np.load(path) as f:
        return nested({key: f[key] for key in f.files})


def recorded_draws(fixture: Path, update: int):
    """name -> value of the authors' draws in update `update`, as our update takes them."""
    with np.load(fixture / "draws.npz") as f:
        raw = {key: f[key] for key in f.files if key.startswith(f"u{update}_")}
    draws = {}
    for key, value in raw.items():
        ours = DRAW_NAMES[key.split("_", 2)[2]]
        if ours in ("k_critic", "k_actor"):
            draws[ours] = 2 ** int(value)  # their branch index i; k = 2**i
        elif ours in ("sc_time_index", "fm_time_index"):
            draws[ours] = torch.from_numpy(value.astype(np.float32)).unsqueeze(1)  # n per row, (B, 1)
        else:
            draws[ours] = torch.from_numpy(value)
    missing = set(DRAW_NAMES.values()) - set(draws)
    if missing:
        raise SystemExit(f"{fixture / 'draws.npz'} lacks the draws {sorted(missing)} of update {update}")
    taken = set()

    def replay(name: str):
        if name in taken:
            raise RuntimeError(f"our update asked twice for the draw {name!r}; the recorded update made it once")
        taken.add(name)
        return draws[name]
    return replay, taken, set(draws)


def ours_as_theirs(agent) -> dict[str, dict[str, torch.Tensor]]:
    """Our agent's weights and Adam moments, keyed like the authors' state (actor_state/critic_state names)."""
    out = {name: {k: v.detach().clone() for k, v in getattr(agent, name).state_dict().items()} for name in NETWORKS}
    opt = agent.optimizers["all"]
    for moment, key in (("mu", "exp_avg"), ("nu", "exp_avg_sq")):
        for name in ("actor", "critic"):
            net = getattr(agent, name)
            out[f"{moment}/{name}"] = {k: opt.state[p][key].detach().clone() for k, p in net.named_parameters()}
    return out


def theirs(tree: dict) -> dict[str, dict[str, torch.Tensor]]:
    params = tree["network"]["params"]
    out = {name: (critic_state if "critic" in name else actor_state)(params[module]) for name, module in NETWORKS.items()}
    adam = find_adam(tree["network"]["opt_state"])
    for moment in ("mu", "nu"):
        for name in ("actor", "critic"):
            out[f"{moment}/{name}"] = (critic_state if name == "critic" else actor_state)(adam[moment][NETWORKS[name]])
    return out


def max_abs(a: dict, b: dict) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def max_value(a: dict) -> float:
    return max(float(v.abs().max()) for v in a.values())


def compare(label: str, ours: dict, ref: dict, before: dict, groups: dict[str, tuple[str, ...]], tolerance: float) -> bool:
    """Print one line per group; True when every group is within the tolerance."""
    ok = True
    print(f"\n{label}")
    for group, names in groups.items():
        diff = max(max_abs(ours[n], ref[n]) for n in names)
        change = max(max_abs(ref[n], before[n]) for n in names)
        if group.startswith("Adam"):
            scale = max(max_value(ref[n]) for n in names)
            measure, how = diff / scale, f"relative to its largest moment {scale:.2e}"
        else:
            measure, how = diff, "absolute"
        passed = measure <= tolerance
        ok &= passed
        print(f"  {'ok ' if passed else 'OFF'} {group:<22} {measure:.2e} ({how}; |ours - theirs| {diff:.2e}, "
              f"the update changed it by up to {change:.2e})")
    return ok


def compare_losses(info: dict, ref: dict, tolerance: float) -> bool:
    ok = True
    for theirs_key, ours_key in LOSSES.items():
        ours, want = float(info[ours_key]), float(ref[theirs_key])
        rel = abs(ours - want) / max(abs(want), 1e-12)
        ok &= rel <= tolerance
        print(f"  {'ok ' if rel <= tolerance else 'OFF'} {ours_key:<22} {rel:.2e} (relative; ours {ours:.7g}, theirs {want:.7g})")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("fixture", type=Path, help="the fixture folder (tests/fixtures/authors-sorl-update)")
    parser.add_argument("--tolerance", type=float, default=1e-5)
    args = parser.parse_args(argv)
    fixture, tol = args.fixture, args.tolerance
    if not (fixture / "before_update1.npz").is_file():
        print(f"{fixture} is not the authors' update fixture: it has no before_update1.npz", file=sys.stderr)
        return 2
    torch.set_num_threads(1)  # one thread: reductions in one order, the same on every machine
    flags = json.loads((fixture / "flags.json").read_text())
    start = load_state(fixture / "before_update1.npz")
    agent, notes = agent_from_tree(start, flags["agent"], seed=int(flags["seed"]), file="before_update1.npz", step=0)
    if not any(n.startswith("Adam state mapped") for n in notes):
        print(f"the fixture's Adam state could not be mapped: {notes}", file=sys.stderr)
        return 2
    with np.load(fixture / "batch.npz") as f:
        batch = {k: torch.from_numpy(f[k].astype(np.float32)) for k in f.files}
    print(f"our faithful fp32 update against the authors' ({fixture}); tolerance {tol:g}")

    # The snapshot after the critic step: our update's first optimiser step is the critic step.
    snapshots: list[dict] = []
    step = agent._clip_and_step

    def step_and_snapshot(*a, **kw):
        norm = step(*a, **kw)
        snapshots.append(ours_as_theirs(agent))
        return norm
    agent._clip_and_step = step_and_snapshot

    ok, before = True, theirs(start)
    online = {"online actor": ("actor",), "online critic": ("critic",),
              "Adam mu": ("mu/actor", "mu/critic"), "Adam nu": ("nu/actor", "nu/critic")}
    for update in (1, 2):
        replay, taken, recorded = recorded_draws(fixture, update)
        agent.replay_draws = replay
        snapshots.clear()
        info = agent.update(batch)
        if taken != recorded:
            print(f"update {update}: our update did not use the recorded draws {sorted(recorded - taken)}")
            ok = False
        critic_ref = theirs(load_state(fixture / f"after_update{update}_critic_step.npz"))
        ok &= compare(f"update {update}, after the critic step:", snapshots[0], critic_ref, before, online, tol)
        after = theirs(load_state(fixture / f"after_update{update}.npz"))
        ok &= compare(f"update {update}, after the update:", ours_as_theirs(agent), after, before,
                      {**online, "targets": ("target_actor", "target_critic")}, tol)
        ok &= compare_losses(info, json.loads((fixture / f"info_update{update}.json").read_text()), tol)
        before = after
    print("\nthe update matches the authors' within the tolerance" if ok else "\nTHE UPDATE DIFFERS from the authors'")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
