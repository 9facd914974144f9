"""`sorl-lab import`: a run folder of the SORL authors' JAX code becomes a lab run folder (docs/IMPORT.md).

Their folder holds flags.json, params_N.pkl (read by sorl_core.authors_pickle, never with a plain unpickler),
train.csv and eval.csv; ours gets checkpoint.pt, config.json, metrics.csv and eval.csv.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import tyro

from .agent import SORLAgent
from .authors_logs import convert_eval_log, convert_train_log
from .authors_pickle import AuthorsRunError, load_params
from .checkpoint import save_checkpoint
from .config import SIZES, SORLConfig
from .ogbench.train import EVAL_COLUMNS, EnvTrainConfig, default_env_config
from .train import TRAIN_COLUMNS, CsvLog

MODULES = ("modules_actor", "modules_critic", "modules_target_actor", "modules_target_critic")
SOURCE = "the SORL authors' official JAX code (github.com/nico-espinosadice/SORL)"


@dataclass
class ImportConfig:
    """Turn a run folder of the SORL authors' JAX code (flags.json, params_N.pkl, train.csv, eval.csv) into a
    lab run folder (checkpoint.pt, config.json, metrics.csv, eval.csv)."""

    run_dir: tyro.conf.Positional[str]
    """The authors' run folder (their --save_dir/.../<experiment name>)."""
    out: str
    """The lab run folder to write (it must not hold a checkpoint.pt already)."""
    epoch: int | None = None
    """Which params_<epoch>.pkl to import (default: the latest)."""


@dataclass
class ImportResult:
    out: Path
    checkpoint: Path
    epoch: int
    notes: list[str] = field(default_factory=list)


def saved_epochs(run_dir: Path) -> list[int]:
    """The N of every params_N.pkl in the folder, ascending."""
    found = (re.fullmatch(r"params_(\d+)\.pkl", p.name) for p in Path(run_dir).iterdir())
    return sorted(int(m.group(1)) for m in found if m)


def read_flags(run_dir: Path) -> dict:
    """flags.json, checked to describe a SORL run on an environment the lab knows."""
    path = run_dir / "flags.json"
    if not path.is_file():
        raise AuthorsRunError(f"{run_dir} has no flags.json: give the folder the authors' main.py wrote")
    try:
        flags = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise AuthorsRunError(f"{path} is not readable JSON") from None
    agent = flags.get("agent") if isinstance(flags, dict) else None
    if not isinstance(agent, dict):
        raise AuthorsRunError(f"{path} has no 'agent' settings: not a flags.json of the authors' main.py")
    if agent.get("agent_name") != "sorl":
        raise AuthorsRunError(f"this run was trained by the authors' {agent.get('agent_name')!r} agent; "
                              "only SORL runs (agent_name 'sorl') can be imported")
    default_env_config(str(flags.get("env_name")))  # ValueError naming the supported environments
    return flags


def hidden_sizes(agent_flags: dict) -> tuple[int, ...]:
    """The hidden widths shared by actor and critic (the lab's networks have one set for both)."""
    if agent_flags.get("actor_layer_norm"):
        raise AuthorsRunError("the run's actor uses LayerNorm (actor_layer_norm), which the lab's actor has not")
    if agent_flags.get("encoder"):
        raise AuthorsRunError(f"the run uses an image encoder ({agent_flags['encoder']}); the lab imports "
                              "state-based runs only")
    actor = (int(agent_flags["actor_layer_size"]),) * int(agent_flags["actor_num_layers"])
    critic = (int(agent_flags["value_layer_size"]),) * int(agent_flags["value_num_layers"])
    if actor != critic:
        raise AuthorsRunError(f"the run's actor ({len(actor)} x {actor[0]}) and critic ({len(critic)} x "
                              f"{critic[0]}) differ in size; the lab's networks share one size")
    return actor


def flatten(tree: dict, prefix: str = "") -> dict[str, np.ndarray]:
    out = {}
    for key, value in tree.items():
        path = f"{prefix}/{key}" if prefix else str(key)
        out.update(flatten(value, path) if isinstance(value, dict) else {path: value})
    return out


def expected_shapes(obs_dim: int, action_dim: int, hidden: tuple[int, ...], members: int, layer_norm: bool) -> dict:
    """Shape of every parameter the four networks must have, by its path in the authors' file."""
    shapes = {}
    actor_dims = [obs_dim + action_dim + 2, *hidden, action_dim]
    critic_dims = [obs_dim + action_dim + 1, *hidden, 1]
    for module in MODULES:
        critic = "critic" in module
        dims, base = (critic_dims, f"{module}/value_net") if critic else (actor_dims, f"{module}/mlp")
        lead = (members,) if critic else ()
        for i, (n_in, n_out) in enumerate(zip(dims[:-1], dims[1:])):
            shapes[f"{base}/Dense_{i}/kernel"] = (*lead, n_in, n_out)
            shapes[f"{base}/Dense_{i}/bias"] = (*lead, n_out)
            if critic and layer_norm and i < len(hidden):
                shapes[f"{base}/LayerNorm_{i}/scale"] = shapes[f"{base}/LayerNorm_{i}/bias"] = (*lead, n_out)
    return shapes


def check_shapes(params: dict, hidden: tuple[int, ...], layer_norm: bool, file: str) -> tuple[int, int, int]:
    """(obs_dim, action_dim, ensemble members) read from the arrays, after checking every shape against flags."""
    missing = [m for m in MODULES if not isinstance(params.get(m), dict)]
    if missing:
        raise AuthorsRunError(f"{file} has no {', '.join(missing)}: not a SORL agent (an FQL run has no target "
                              "actor), so it cannot be imported")
    actual = {path: tuple(np.shape(a)) for path, a in flatten({m: params[m] for m in MODULES}).items()}
    dense = sorted(int(m.group(1)) for p in actual if (m := re.fullmatch(r"modules_actor/mlp/Dense_(\d+)/bias", p)))
    first_actor, first_critic = actual.get("modules_actor/mlp/Dense_0/kernel"), actual.get("modules_critic/value_net/Dense_0/kernel")
    if not dense or not first_actor or not first_critic:
        raise AuthorsRunError(f"{file} lacks the first or last layer of its actor or critic")
    action_dim = (actual[f"modules_actor/mlp/Dense_{dense[-1]}/bias"] or (0,))[-1]
    obs_dim = first_actor[0] - action_dim - 2
    if action_dim < 1 or obs_dim < 1:
        raise AuthorsRunError(f"{file} has an actor whose layer sizes fit no observation and action sizes")
    members = first_critic[0] if len(first_critic) == 3 else 1
    expected = expected_shapes(obs_dim, action_dim, hidden, members, layer_norm)
    described = f"{len(hidden)} x {hidden[0]}" + (", critic LayerNorm" if layer_norm else "")
    for path in [*expected, *sorted(set(actual) - set(expected))]:  # layer by layer, then any extra array
        if expected.get(path) != actual.get(path):
            found = f"has shape {actual[path]}" if path in actual else "is missing"
            wanted = f"shape {expected[path]}" if path in expected else "no such array"
            raise AuthorsRunError(f"{file} does not match flags.json (networks {described}): {path} {found}, "
                                  f"the flags imply {wanted}")
    return obs_dim, action_dim, members


def _tensor(array) -> torch.Tensor:
    return torch.from_numpy(np.array(array, dtype=np.float32))


def actor_state(module: dict) -> dict[str, torch.Tensor]:
    """Flax `mlp/Dense_i` (kernel (in, out)) -> ShortcutActor `layers.i` (weight (out, in))."""
    layers = module["mlp"]
    return {name: tensor for i in range(len(layers)) for name, tensor in (
        (f"layers.{i}.weight", _tensor(layers[f"Dense_{i}"]["kernel"]).T.contiguous()),
        (f"layers.{i}.bias", _tensor(layers[f"Dense_{i}"]["bias"])))}


def critic_state(module: dict) -> dict[str, torch.Tensor]:
    """Flax ensemble `value_net` (leading member axis) -> CriticEnsemble's stacked (E, in, out) weights."""
    net, state = module["value_net"], {}
    for i in range(sum(k.startswith("Dense_") for k in net)):
        state[f"weights.{i}"] = _tensor(net[f"Dense_{i}"]["kernel"])
        state[f"biases.{i}"] = _tensor(net[f"Dense_{i}"]["bias"]).unsqueeze(1)
        if f"LayerNorm_{i}" in net:
            state[f"ln_scales.{i}"] = _tensor(net[f"LayerNorm_{i}"]["scale"]).unsqueeze(1)
            state[f"ln_shifts.{i}"] = _tensor(net[f"LayerNorm_{i}"]["bias"]).unsqueeze(1)
    return state


def find_adam(tree) -> dict | None:
    """optax's Adam state (count, mu, nu) wherever the optimiser chain put it."""
    if not isinstance(tree, dict):
        return None
    if {"count", "mu", "nu"} <= set(tree):
        return tree
    return next((found for value in tree.values() if (found := find_adam(value)) is not None), None)


def adam_state(agent: SORLAgent, adam: dict) -> dict:
    """optax mu/nu/count as the state of the agent's one shared Adam (faithful mode, docs/ALGORITHM.md §4)."""
    opt = agent.optimizers["all"]
    index = {id(p): i for i, p in enumerate(opt.param_groups[0]["params"])}
    step = torch.tensor(float(np.asarray(adam["count"])))
    state = {}
    for module, net, convert in (("modules_actor", agent.actor, actor_state), ("modules_critic", agent.critic, critic_state)):
        mu, nu = convert(adam["mu"][module]), convert(adam["nu"][module])
        for name, p in net.named_parameters():
            state[index[id(p)]] = {"step": step.clone(), "exp_avg": mu[name], "exp_avg_sq": nu[name]}
    return {"state": state, "param_groups": opt.state_dict()["param_groups"]}


def agent_config(agent_flags: dict, obs_dim: int, action_dim: int, hidden: tuple[int, ...], members: int) -> SORLConfig:
    named = next((name for name, sizes in SIZES.items() if sizes == hidden), "paper")
    try:
        return SORLConfig(
            obs_dim=obs_dim, action_dim=action_dim, size=named, hidden_dims=hidden, mode="faithful",
            lr=float(agent_flags["lr"]), batch_size=int(agent_flags["batch_size"]),
            discount=float(agent_flags["discount"]), tau=float(agent_flags["tau"]), q_agg=agent_flags["q_agg"],
            q_loss_coef=float(agent_flags["q_loss_coef"]), fm_coef=float(agent_flags["bc_flow_loss_coef"]),
            sc_coef=float(agent_flags["alpha"]), m_disc=int(agent_flags["denoise_timesteps"]),
            m_btt=int(agent_flags["max_k_backprop"]), num_critics=members,
            grad_clip=float(agent_flags["grad_clip_norm"]), flow_eps=float(agent_flags["t_epsilon"]),
            critic_layer_norm=bool(agent_flags["layer_norm"]), device="cpu")
    except KeyError as exc:
        raise AuthorsRunError(f"flags.json has no agent setting {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise AuthorsRunError(f"flags.json: {exc}") from None


def adam_note(agent_flags: dict, adam: dict | None) -> str | None:
    """Why the run's Adam state cannot become the lab's (None when it can)."""
    if adam is None:
        return "the file holds no Adam state"
    same = (agent_flags.get("optimizer", "adam") == "adam" and float(agent_flags.get("optimizer_beta1", 0.9)) == 0.9
            and float(agent_flags.get("optimizer_beta2", 0.999)) == 0.999
            and float(agent_flags.get("optimizer_weight_decay", 0.0)) == 0.0)
    return None if same else "the run's optimiser differs from the lab's Adam (betas 0.9/0.999, no weight decay)"


def choose_epoch(run_dir: Path, epoch: int | None) -> int:
    epochs = saved_epochs(run_dir)
    if not epochs:
        raise AuthorsRunError(f"{run_dir} holds no params_*.pkl: the run saved no checkpoint (see --save_interval)")
    if epoch is None:
        return epochs[-1]
    if epoch not in epochs:
        raise AuthorsRunError(f"{run_dir} has no params_{epoch}.pkl; saved epochs: {', '.join(map(str, epochs))}")
    return epoch


def agent_from_tree(tree: dict, agent_flags: dict, seed: int, file: str, step: int) -> tuple[SORLAgent, list[str]]:
    """The lab's agent holding a saved state of the authors' agent (`flax.serialization.to_state_dict`: network
    params, both targets, Adam's state when it maps, the agent's step), and notes on what was mapped."""
    network = tree.get("network") if isinstance(tree.get("network"), dict) else {}
    params = network.get("params") if isinstance(network.get("params"), dict) else {}
    hidden = hidden_sizes(agent_flags)
    layer_norm = bool(agent_flags.get("layer_norm", True))
    obs_dim, action_dim, members = check_shapes(params, hidden, layer_norm, file)
    config = agent_config(agent_flags, obs_dim, action_dim, hidden, members)
    agent = SORLAgent(config, seed=seed)
    state = agent.state_dict()
    for name, module in zip(("actor", "critic", "target_actor", "target_critic"), MODULES):
        state[name] = (critic_state if "critic" in name else actor_state)(params[module])
    adam = find_adam(network.get("opt_state"))
    if (reason := adam_note(agent_flags, adam)) is None:
        state["optimizers"] = {"all": adam_state(agent, adam)}
        notes = [f"Adam state mapped (count {int(np.asarray(adam['count']))})"]
    else:
        notes = [f"Adam starts fresh: {reason}"]
    state["step"] = int(np.asarray(tree.get("step", step)))
    agent.load_state_dict(state)
    return agent, notes


def import_run(cfg: ImportConfig) -> ImportResult:
    """Convert the run; AuthorsRunError (a ValueError) with a message for people when it cannot be."""
    src, out = Path(cfg.run_dir), Path(cfg.out)
    if not src.is_dir():
        raise AuthorsRunError(f"no folder at {src}")
    if (out / "checkpoint.pt").exists():
        raise AuthorsRunError(f"{out} already holds a checkpoint.pt; choose another --out")
    flags = read_flags(src)
    agent_flags, env = flags["agent"], flags["env_name"]
    epoch = choose_epoch(src, cfg.epoch)
    file = f"params_{epoch}.pkl"
    tree = load_params(src / file)
    agent, notes = agent_from_tree(tree, agent_flags, seed=int(flags.get("seed", 0)), file=file, step=epoch)
    seed, config, hidden = int(flags.get("seed", 0)), agent.config, agent.config.hidden
    notes.insert(0, f"imported {file} of {src} ({env}, seed {seed}, networks {len(hidden)} x {hidden[0]})")

    run = EnvTrainConfig(
        env=env, seed=seed, iterations=agent.step, out=str(out), log_every=int(flags.get("log_interval", 0)),
        eval_every=int(flags.get("eval_interval", 0)), eval_m_inf=tuple(2**i for i in range(config.max_level + 1)),
        eval_episodes=int(flags.get("eval_episodes", 0)), checkpoint_every=int(flags.get("save_interval", 0)),
        agent=config)
    origin = {"source": SOURCE, "run_dir": str(src.resolve()), "params": file, "epoch": epoch}
    resolved = {**asdict(run), "agent": config.to_dict(), "out": str(out), "imported_from": origin}
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(resolved, indent=2))
    for name, columns, rows in (
            ("metrics.csv", TRAIN_COLUMNS, convert_train_log(src / "train.csv")),
            ("eval.csv", EVAL_COLUMNS, convert_eval_log(src / "eval.csv", run.eval_episodes))):
        log = CsvLog(out / name, columns)
        log.reset()
        log.append(rows)
    extra = {"kind": "ogbench", "env": env, "train_config": resolved, "imported_from": origin,
             "dataset_generator": torch.Generator().manual_seed(seed).get_state()}
    checkpoint = save_checkpoint(out / "checkpoint.pt", agent, extra)
    return ImportResult(out, checkpoint, epoch, notes)
