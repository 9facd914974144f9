"""`sorl-lab import`: a run folder of the SORL authors' JAX code becomes a lab run (sorl_core/authors_run.py).

The fixture in tests/fixtures/ was written by the authors' own code (its README.md says how); its
reference-outputs npz holds what their JAX networks compute from it. Synthetic runs are written in the same
pickle format by tests/authors_pickle_writer.py.
"""

from __future__ import annotations

import csv
import io
import json
import pickletools
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from authors_pickle_writer import dumps, write_params  # tests/ is on the path: pytest puts each test's folder there

from sorl_core.authors_pickle import AuthorsRunError, RestrictedUnpickler, load_params
from sorl_core.checkpoint import load_agent
from sorl_core.cli import main

FIXTURE = Path(__file__).parent / "fixtures" / "authors-sorl-run-cube-single-task1-sd5"
REFERENCE = FIXTURE.with_name(FIXTURE.name + ".reference-outputs.npz")
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("imported") / "run"
    assert main(["import", str(FIXTURE), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def file_tree() -> dict:
    return load_params(FIXTURE / "params_100.pkl")


def copy_fixture(tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURE, tmp_path / "authors-run"))


def edit_flags(run: Path, **agent_changes) -> None:
    flags = json.loads((run / "flags.json").read_text())
    for key, value in agent_changes.items():
        if key == "env_name":
            flags[key] = value
        else:
            flags["agent"][key] = value
    (run / "flags.json").write_text(json.dumps(flags))


# --------------------------------------------------------------------------- numerics
def test_imported_networks_reproduce_the_authors_outputs(imported):
    agent, extra = load_agent(imported / "checkpoint.pt", device="cpu")
    ref = np.load(REFERENCE, allow_pickle=False)
    assert (agent.config.obs_dim, agent.config.action_dim, agent.config.q_agg) == (int(ref["obs_dim"]), int(ref["action_dim"]), str(ref["q_agg"]))
    errors = {}
    for m in (1, 2, 4, 8):  # the last Euler state is the action before clipping
        result = agent.sample(ref["obs"], m_inf=m, n=1, noise=ref["noise"][:, None, :], return_trajectory=True)
        errors[f"actions M={m}"] = float(np.abs(result.trajectory[:, 0, -1].numpy() - ref[f"actions_m{m}"]).max())
    for k in (1, 2, 4, 8):
        errors[f"Q k={k}"] = float(np.abs(agent.q_value(ref["obs"], ref["q_actions"], k).numpy() - ref[f"q_k{k}"]).max())
    print("max abs errors against the authors' outputs:", errors)
    assert max(errors.values()) < TOLERANCE, errors
    # the noise is used as given: other noise gives other actions
    other = agent.sample(ref["obs"], m_inf=8, n=1, noise=ref["noise"][:, None, :] + 0.5, return_trajectory=True)
    assert np.abs(other.trajectory[:, 0, -1].numpy() - ref["actions_m8"]).max() > 1e-2
    assert extra["env"] == "cube-single-play-singletask-task1-v0" and extra["kind"] == "ogbench"


def test_targets_and_adam_moments_are_the_files_arrays(imported, file_tree):
    agent, _ = load_agent(imported / "checkpoint.pt", device="cpu")
    network = file_tree["network"]
    params, adam = network["params"], network["opt_state"]["1"]["0"]
    assert agent.step == 100 and int(adam["count"]) == 200  # one shared Adam stepped twice per iteration
    target_kernel = params["modules_target_actor"]["mlp"]["Dense_1"]["kernel"]
    assert np.array_equal(agent.target_actor.layers[1].weight.numpy(), target_kernel.T)
    assert not np.array_equal(target_kernel, params["modules_actor"]["mlp"]["Dense_1"]["kernel"])
    assert np.array_equal(agent.target_critic.ln_scales[2].numpy()[:, 0], params["modules_target_critic"]["value_net"]["LayerNorm_2"]["scale"])
    opt = agent.optimizers["all"]
    state = {id(p): s for p, s in opt.state.items()}
    actor_w = state[id(agent.actor.layers[0].weight)]
    assert float(actor_w["step"]) == 200
    assert np.array_equal(actor_w["exp_avg"].numpy(), adam["mu"]["modules_actor"]["mlp"]["Dense_0"]["kernel"].T)
    assert np.array_equal(actor_w["exp_avg_sq"].numpy(), adam["nu"]["modules_actor"]["mlp"]["Dense_0"]["kernel"].T)
    critic_w = state[id(agent.critic.weights[3])]
    assert np.array_equal(critic_w["exp_avg"].numpy(), adam["mu"]["modules_critic"]["value_net"]["Dense_3"]["kernel"])
    ln = state[id(agent.critic.ln_shifts[0])]
    assert np.array_equal(ln["exp_avg_sq"].numpy()[:, 0], adam["nu"]["modules_critic"]["value_net"]["LayerNorm_0"]["bias"])
    assert len(opt.state) == len(list(agent.actor.parameters())) + len(list(agent.critic.parameters()))


# --------------------------------------------------------------------------- config and logs
def test_config_json_carries_the_flags(imported):
    config = json.loads((imported / "config.json").read_text())
    agent = config["agent"]
    assert (config["env"], config["seed"], config["iterations"]) == ("cube-single-play-singletask-task1-v0", 5, 100)
    assert (agent["discount"], agent["q_agg"], agent["q_loss_coef"], agent["sc_coef"]) == (0.995, "min", 50.0, 10.0)
    assert (agent["hidden_dims"], agent["m_btt"], agent["m_disc"], agent["mode"]) == ([32, 32, 32], 8, 8, "faithful")
    assert config["eval_m_inf"] == [1, 2, 4, 8] and config["eval_episodes"] == 1
    assert config["imported_from"]["params"] == "params_100.pkl" and config["imported_from"]["epoch"] == 100


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_logs_become_the_labs_metrics_and_eval(imported):
    metrics = read_csv(imported / "metrics.csv")
    assert [r["step"] for r in metrics] == ["50", "100"]
    first = metrics[0]
    assert (first["critic_loss"], first["fm_loss"], first["sc_loss"], first["q_loss"]) == ("0.2855774", "1.2311299", "0.007241589", "1.0")
    assert (first["policy_q"], first["q_mean"], first["grad_norm_actor_step"]) == ("-2.478684", "-2.8696337", "")
    rows = read_csv(imported / "eval.csv")
    # evaluation/n=1/... is M_inf = 1; eval_inference_k/n=1/... is M_inf = k
    assert [(r["step"], r["m_inf"], r["n"]) for r in rows] == [(s, m, "1") for s in ("1", "100") for m in ("1", "2", "4", "8")]
    assert all((r["episodes"], r["success_rate"], r["mean_return"], r["mean_length"]) == ("1", "0.0", "-200.0", "200.0") for r in rows)
    assert all(float(r["success_ci_low"]) == 0.0 < float(r["success_ci_high"]) for r in rows)


def test_the_rest_of_the_lab_runs_the_imported_policy(imported, tmp_path, capsys):
    out = tmp_path / "sweep"
    code = main(["evaluate", "--checkpoint", str(imported / "checkpoint.pt"), "--episodes", "2", "--m-inf", "1",
                 "--n", "1", "--workers", "1", "--no-progress", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    (row,) = read_csv(out / "sweep.csv")
    assert (row["env"], row["episodes"], row["m_inf"], row["n"]) == ("cube-single-play-singletask-task1-v0", "2", "1", "1")
    assert 1 <= float(row["mean_length"]) <= 200


def test_render_and_the_verifier_study_run_on_the_imported_policy(imported, tmp_path, capsys, monkeypatch):
    """The two other commands that load a checkpoint: a rollout video pair, and a tiny verifier study (which also
    uses the imported target critic: target-q is among the verifiers)."""
    monkeypatch.setenv("MUJOCO_GL", "egl")
    ckpt = str(imported / "checkpoint.pt")
    code = main(["render", "--checkpoint", ckpt, "--configs", "1x1", "8x4", "--episodes", "1", "--every", "20",
                 "--quality", "fast", "--size", "64", "--out", str(tmp_path / "videos"),
                 "--cache-dir", str(tmp_path / "cache")])
    assert code == 0, capsys.readouterr().err
    videos = sorted(p.name for p in (tmp_path / "videos").glob("*.mp4"))
    assert len(videos) == 3 and all((tmp_path / "videos" / v).stat().st_size > 1000 for v in videos)
    code = main(["verifier", "--checkpoint", ckpt, "--n", "4", "--states", "2", "--episodes", "1", "--horizon", "10",
                 "--repeats", "1", "--workers", "1", "--out", str(tmp_path / "verifier"), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    summary = read_csv(tmp_path / "verifier" / "verifier_summary.csv")
    assert {r["verifier"] for r in summary} >= {"q", "target-q", "consensus"}
    assert not any(r.get("absent") for r in summary)  # the import kept the targets


# --------------------------------------------------------------------------- the pickle reader
def test_a_pickle_that_would_run_code_is_refused_and_nothing_runs(tmp_path, capsys):
    marker = tmp_path / "ran"
    evil = b"cos\nsystem\n(V" + f"touch {marker}".encode() + b"\ntR."
    with pytest.raises(AuthorsRunError, match=r"os\.system"):
        load_params(write_bytes(tmp_path / "evil.pkl", evil))
    run = copy_fixture(tmp_path)
    write_bytes(run / "params_100.pkl", evil)
    assert main(["import", str(run), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sorl-lab: error: params_100.pkl cannot be imported") and "os.system" in err
    assert not marker.exists() and not (tmp_path / "out").exists()


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def globals_of(data: bytes) -> set[tuple[str, str]]:
    """(module, name) of every global the pickle asks for."""
    seen = set()

    class Recorder(RestrictedUnpickler):
        def find_class(self, module, name):
            seen.add((module, name))
            return super().find_class(module, name)

    Recorder(io.BytesIO(data)).load()
    return seen


def test_the_test_writer_writes_the_authors_format(file_tree, tmp_path):
    original = (FIXTURE / "params_100.pkl").read_bytes()
    written = dumps(file_tree)
    expected = {("jax._src.array", "_reconstruct_array"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype")}
    assert globals_of(original) == globals_of(written) == expected
    assert next(pickletools.genops(written))[1] == next(pickletools.genops(original))[1] == 4  # protocol 4
    assert abs(len(written) - len(original)) < 64  # the same layout, up to string memoisation and weak_type flags
    again = load_params(write_bytes(tmp_path / "params_1.pkl", written))
    assert np.array_equal(again["network"]["params"]["modules_actor"]["mlp"]["Dense_2"]["kernel"],
                          file_tree["network"]["params"]["modules_actor"]["mlp"]["Dense_2"]["kernel"])


# --------------------------------------------------------------------------- any size, any epoch
def mlp(rng, dims, lead=(), layer_norm=False) -> dict:
    layers = {}
    for i, (n_in, n_out) in enumerate(zip(dims[:-1], dims[1:])):
        scale = 1 / np.sqrt(n_in)
        layers[f"Dense_{i}"] = {"kernel": (rng.standard_normal((*lead, n_in, n_out)) * scale).astype(np.float32),
                                "bias": (rng.standard_normal((*lead, n_out)) * 0.1).astype(np.float32)}
        if layer_norm and i < len(dims) - 2:
            layers[f"LayerNorm_{i}"] = {"scale": (1 + 0.1 * rng.standard_normal((*lead, n_out))).astype(np.float32),
                                        "bias": (0.1 * rng.standard_normal((*lead, n_out))).astype(np.float32)}
    return layers


def synthetic_run(folder: Path, hidden: tuple[int, ...], epochs: tuple[int, ...], obs_dim: int = 28, action_dim: int = 5) -> Path:
    """An authors' run folder with random networks of the given hidden sizes (no Adam state), one file per epoch."""
    shutil.copytree(FIXTURE, folder)
    (folder / "params_100.pkl").unlink()
    edit_flags(folder, actor_layer_size=hidden[0], actor_num_layers=len(hidden), value_layer_size=hidden[0],
               value_num_layers=len(hidden))
    for epoch in epochs:
        rng = np.random.default_rng(epoch)
        actor = {"mlp": mlp(rng, [obs_dim + action_dim + 2, *hidden, action_dim])}
        critic = {"value_net": mlp(rng, [obs_dim + action_dim + 1, *hidden, 1], lead=(2,), layer_norm=True)}
        params = {"modules_actor": actor, "modules_critic": critic, "modules_target_actor": actor, "modules_target_critic": critic}
        write_params(folder / f"params_{epoch}.pkl", {"network": {"params": params, "step": np.int32(epoch + 1)},
                                                       "step": np.int32(epoch)})
    return folder


def gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def flax_mlp(layers: dict, x: np.ndarray, member: int | None = None) -> np.ndarray:
    """The authors' MLP in numpy float64: Dense -> gelu (tanh) [-> LayerNorm eps 1e-6], linear output."""
    count = sum(k.startswith("Dense_") for k in layers)
    for i in range(count):
        take = (lambda a: a[member]) if member is not None else (lambda a: a)
        x = x @ take(layers[f"Dense_{i}"]["kernel"]).astype(np.float64) + take(layers[f"Dense_{i}"]["bias"])
        if i < count - 1:
            x = gelu_tanh(x)
            if f"LayerNorm_{i}" in layers:
                ln = layers[f"LayerNorm_{i}"]
                x = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-6) * take(ln["scale"]) + take(ln["bias"])
    return x


def test_a_paper_size_run_imports_at_any_saved_epoch(tmp_path, capsys):
    run = synthetic_run(tmp_path / "paper", (512, 512, 512, 512), epochs=(1000, 2000))
    assert main(["import", str(run), "--out", str(tmp_path / "latest")]) == 0
    assert "Adam starts fresh: the file holds no Adam state" in capsys.readouterr().out
    assert main(["import", str(run), "--epoch", "1000", "--out", str(tmp_path / "first")]) == 0
    for out, epoch in (("latest", 2000), ("first", 1000)):
        agent, _ = load_agent(tmp_path / out / "checkpoint.pt", device="cpu")
        assert agent.config.hidden == (512, 512, 512, 512) and agent.config.size == "paper" and agent.step == epoch
        params = load_params(run / f"params_{epoch}.pkl")["network"]["params"]
        rng = np.random.default_rng(0)
        obs, x, a = rng.standard_normal((16, 28)), rng.standard_normal((16, 5)), rng.uniform(-1, 1, (16, 5))
        t, level = np.full((16, 1), 0.25), np.full((16, 1), 2.0)
        with torch.no_grad():
            velocity = agent.actor(*(torch.tensor(v, dtype=torch.float32) for v in (obs, x, t, level))).numpy()
            q = agent.critic(torch.tensor(obs, dtype=torch.float32), torch.tensor(a, dtype=torch.float32), 4.0).numpy()
        assert np.abs(velocity - flax_mlp(params["modules_actor"]["mlp"], np.hstack([obs, x, t, level]))).max() < 1e-4
        for j in range(2):
            expected = flax_mlp(params["modules_critic"]["value_net"], np.hstack([obs, a, np.full((16, 1), 4.0)]), j)[:, 0]
            assert np.abs(q[j] - expected).max() < 1e-4


# --------------------------------------------------------------------------- clear errors
def remove(name):
    return lambda run: (run / name).unlink()


def drop_target_actor(run: Path) -> None:
    tree = load_params(run / "params_100.pkl")
    del tree["network"]["params"]["modules_target_actor"]
    write_params(run / "params_100.pkl", tree)


ERRORS = {
    "missing flags.json": (remove("flags.json"), [], "has no flags.json"),
    "no params": (remove("params_100.pkl"), [], "holds no params_*.pkl"),
    "epoch not saved": (lambda run: None, ["--epoch", "5"], "has no params_5.pkl; saved epochs: 100"),
    "not a pickle": (lambda run: write_bytes(run / "params_100.pkl", b"\x00not a pickle at all"), [],
                     "params_100.pkl is not a checkpoint of the authors' code"),
    "truncated pickle": (lambda run: write_bytes(run / "params_100.pkl", (FIXTURE / "params_100.pkl").read_bytes()[:5000]), [],
                         "params_100.pkl is not a checkpoint of the authors' code"),
    "foreign global": (lambda run: write_bytes(run / "params_100.pkl", b"\x80\x04cbuiltins\neval\n(V1+1\ntR."), [],
                       "refers to builtins.eval"),
    "shapes contradict flags": (lambda run: edit_flags(run, actor_layer_size=64, value_layer_size=64), [],
                                "does not match flags.json (networks 3 x 64, critic LayerNorm): modules_actor/mlp/Dense_0/kernel has shape (35, 32)"),
    "fewer layers than flags": (lambda run: edit_flags(run, actor_num_layers=4, value_num_layers=4), [],
                                "modules_actor/mlp/Dense_3/kernel has shape (32, 5), the flags imply shape (32, 32)"),
    "FQL agent": (lambda run: edit_flags(run, agent_name="fql"), [], "the authors' 'fql' agent"),
    "no target actor": (drop_target_actor, [], "has no modules_target_actor: not a SORL agent"),
    "unknown environment": (lambda run: edit_flags(run, env_name="walker-run-v0"), [], "no SORL preset for 'walker-run-v0'"),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_a_run_that_cannot_be_imported_says_why(case, tmp_path, capsys):
    change, args, message = ERRORS[case]
    run = copy_fixture(tmp_path)
    change(run)
    assert main(["import", str(run), *args, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sorl-lab: error: ") and message in err, err
    assert "\n" not in err and "Error" not in err and "np." not in err
    assert not (tmp_path / "out").exists()


def test_an_existing_run_folder_is_not_overwritten(imported, capsys):
    before = (imported / "checkpoint.pt").stat().st_mtime_ns
    assert main(["import", str(FIXTURE), "--out", str(imported)]) == 2
    assert "already holds a checkpoint.pt" in capsys.readouterr().err
    assert (imported / "checkpoint.pt").stat().st_mtime_ns == before


def test_the_training_runs_page_reads_the_imported_logs(imported):
    from app import runs_page as R

    metrics = R.read_metrics((imported / "metrics.csv").read_bytes())
    evals = R.read_eval((imported / "eval.csv").read_bytes())
    R.read_config((imported / "config.json").read_bytes())
    assert R.eval_metric(evals) == "success_rate"
    assert R.loss_panels({"run": metrics}) == ["critic_loss", "fm_loss", "sc_loss", "policy_q"]
    figure = R.eval_figure({"run": evals}, "success_rate", n=1)
    assert sorted(len(trace.x) for trace in figure.data) == [2, 2, 2, 2]  # M_inf 1, 2, 4, 8 at steps 1 and 100
