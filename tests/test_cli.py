"""The real `sorl-lab` CLI end to end with tiny budgets, resume and bad checkpoints included."""

import csv
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from sorl_core.checkpoint import CheckpointError, load_agent, read_checkpoint
from sorl_core.train import ToyTrainConfig, train_toy

CLI = str(Path(sys.executable).parent / "sorl-lab")
TINY = ["--agent.size", "tiny", "--log-every", "5", "--eval-every", "10", "--checkpoint-every", "10", "--eval-contexts", "32", "--no-progress"]


def run_cli(*args, check=True):
    proc = subprocess.run([CLI, *args], capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"sorl-lab {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def weights(path):
    agent, _ = load_agent(path, device="cpu")
    return [p.detach().clone() for p in list(agent.actor.parameters()) + list(agent.critic.parameters())]


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "straight"
    run_cli("train", "--world", "moons", "--iterations", "20", "--out", str(out), *TINY)
    return out


def test_train_writes_config_metrics_eval_and_checkpoint(straight_run):
    cfg = json.loads((straight_run / "config.json").read_text())
    assert cfg["world"] == "moons" and cfg["agent"]["hidden_dims"] is None and cfg["agent"]["size"] == "tiny"
    assert cfg["agent"]["obs_dim"] == 1 and cfg["agent"]["action_dim"] == 2
    metrics = rows(straight_run / "metrics.csv")
    assert [int(r["step"]) for r in metrics] == [5, 10, 15, 20]
    assert all(float(r["critic_loss"]) >= 0 for r in metrics)
    # each row carries the time its own step finished, though rows are written in batches at checkpoints
    seconds = [float(r["seconds"]) for r in metrics]
    assert all(a < b for a, b in zip(seconds, seconds[1:])), seconds
    evals = rows(straight_run / "eval.csv")
    assert {(int(r["step"]), int(r["m_inf"])) for r in evals} == {(s, m) for s in (10, 20) for m in (1, 2, 4, 8)}
    payload = read_checkpoint(straight_run / "checkpoint.pt")  # weights_only load of a plain dict
    assert payload["agent"]["step"] == 20


def test_resume_reaches_the_same_result_as_an_uninterrupted_run(straight_run, tmp_path):
    out = tmp_path / "resumed"
    run_cli("train", "--world", "moons", "--iterations", "10", "--out", str(out), *TINY)
    run_cli("train", "--world", "moons", "--iterations", "20", "--out", str(out), "--resume", *TINY)
    for a, b in zip(weights(straight_run / "checkpoint.pt"), weights(out / "checkpoint.pt")):
        assert torch.equal(a, b)
    drop_time = lambda rs: [{k: v for k, v in r.items() if k != "seconds"} for r in rs]  # noqa: E731
    assert drop_time(rows(out / "metrics.csv")) == drop_time(rows(straight_run / "metrics.csv"))
    assert rows(out / "eval.csv") == rows(straight_run / "eval.csv")


def test_interrupted_run_saves_and_resumes(straight_run, tmp_path):
    out = tmp_path / "interrupted"
    cfg = ToyTrainConfig(world="moons", iterations=20, out=str(out), log_every=5, eval_every=10, checkpoint_every=10,
                         eval_contexts=32, progress=False)  # the CLI defaults

    def interrupt(step, total):
        if step == 13:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_toy(cfg, on_progress=interrupt)
    assert read_checkpoint(out / "checkpoint.pt")["agent"]["step"] == 13
    run_cli("train", "--world", "moons", "--iterations", "20", "--out", str(out), "--resume", *TINY)
    for a, b in zip(weights(straight_run / "checkpoint.pt"), weights(out / "checkpoint.pt")):
        assert torch.equal(a, b)


def test_sigterm_saves_a_checkpoint_like_ctrl_c(tmp_path):
    """`kill` (or a scheduler stopping the job) must not lose the steps since the last checkpoint."""
    import os
    import signal

    out = tmp_path / "terminated"
    cfg = ToyTrainConfig(world="moons", iterations=20, out=str(out), log_every=5, eval_every=0, checkpoint_every=10,
                         progress=False)

    def terminate(step, total):
        if step == 13:
            os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)  # the default, or one another library set (Ray does)
    with pytest.raises(KeyboardInterrupt):
        train_toy(cfg, on_progress=terminate)
    assert read_checkpoint(out / "checkpoint.pt")["agent"]["step"] == 13
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is put back


def signal_main_thread(times: int) -> None:
    """SIGTERM `times` times to the main thread, whose handler runs at once, as a scheduler's stop would
    (GNU timeout signals twice: the command, then its process group). A pause after each: signals sent closer
    together may merge into one."""
    import signal
    import threading
    import time

    for _ in range(times):
        signal.pthread_kill(threading.main_thread().ident, signal.SIGTERM)
        time.sleep(0.1)


@pytest.mark.parametrize("signals", [1, 2], ids=["one signal", "two signals as timeout sends"])
def test_a_signal_in_the_middle_of_an_update_still_resumes_exactly(straight_run, tmp_path, monkeypatch, signals):
    """SIGTERM arriving halfway through an update (after the critic step) finishes that update before saving:
    a checkpoint of a half-made update would resume into another run. A second signal at once does not cut it."""
    from sorl_core.agent import SORLAgent

    actor_loss = SORLAgent.compute_actor_loss

    def signal_halfway(self, *args, **kwargs):
        if self.step == 12:
            signal_main_thread(signals)
        return actor_loss(self, *args, **kwargs)

    monkeypatch.setattr(SORLAgent, "compute_actor_loss", signal_halfway)
    out = tmp_path / "halfway"
    cfg = ToyTrainConfig(world="moons", iterations=20, out=str(out), log_every=5, eval_every=10, checkpoint_every=10,
                         eval_contexts=32, progress=False, agent=replace(ToyTrainConfig().agent, size="tiny"))
    with pytest.raises(KeyboardInterrupt):
        train_toy(cfg)
    assert read_checkpoint(out / "checkpoint.pt")["agent"]["step"] == 13
    monkeypatch.undo()
    run_cli("train", "--world", "moons", "--iterations", "20", "--out", str(out), "--resume", *TINY)
    for a, b in zip(weights(straight_run / "checkpoint.pt"), weights(out / "checkpoint.pt")):
        assert torch.equal(a, b)


def test_a_stop_during_the_last_evaluation_still_keeps_the_last_snapshot(tmp_path, monkeypatch):
    """The evaluation at a snapshot's iteration comes before the snapshot; two signals during it (GNU timeout's)
    stop the run there with its checkpoint, and the snapshot must be kept too: a resume at the last iteration
    trains nothing more, so nothing else would write it. A resume also writes one that an older version left out."""
    from sorl_core import train
    from sorl_core.checkpoint import snapshot_path

    evaluate = train.evaluate_toy

    def stopped_at_20(agent, *args, **kwargs):
        if agent.step == 20:
            signal_main_thread(2)  # the second one stops the evaluation at once
        return evaluate(agent, *args, **kwargs)

    monkeypatch.setattr(train, "evaluate_toy", stopped_at_20)
    out = tmp_path / "stopped"
    cfg = ToyTrainConfig(world="moons", iterations=20, out=str(out), log_every=5, eval_every=10, checkpoint_every=10,
                         eval_contexts=32, progress=False, snapshots=(10,),
                         agent=replace(ToyTrainConfig().agent, size="tiny"))
    with pytest.raises(KeyboardInterrupt):
        train_toy(cfg)
    monkeypatch.undo()
    assert read_checkpoint(out / "checkpoint.pt")["agent"]["step"] == 20
    last = snapshot_path(out, 20)
    assert read_checkpoint(last)["extra"]["train_iterations"] == 20
    for a, b in zip(weights(out / "checkpoint.pt"), weights(last)):
        assert torch.equal(a.to(torch.bfloat16), b)

    last.unlink()
    run_cli("train", "--world", "moons", "--iterations", "20", "--snapshots", "10", "--out", str(out), "--resume", *TINY)
    assert read_checkpoint(last)["extra"]["train_iterations"] == 20
    assert read_checkpoint(out / "checkpoint.pt")["agent"]["step"] == 20


@pytest.mark.parametrize("kind", ["random bytes", "truncated", "foreign dict", "pickled object", "empty"])
def test_bad_checkpoints_get_clear_errors(straight_run, tmp_path, kind):
    bad = tmp_path / "bad.pt"
    good = (straight_run / "checkpoint.pt").read_bytes()
    if kind == "random bytes":
        bad.write_bytes(b"\x00\x01not a checkpoint" * 100)
    elif kind == "truncated":
        bad.write_bytes(good[: len(good) // 2])
    elif kind == "foreign dict":
        torch.save({"state_dict": {"w": torch.zeros(3)}}, bad)
    elif kind == "pickled object":
        torch.save({"format": "sorl-lab-checkpoint", "obj": Path("x")}, bad)  # weights_only refuses classes
    else:
        bad.write_bytes(b"")
    with pytest.raises(CheckpointError, match="checkpoint"):
        load_agent(bad)


def test_cli_reports_bad_resume_and_unknown_world(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"garbage")
    proc = run_cli("train", "--out", str(out), "--resume", *TINY, check=False)
    assert proc.returncode == 2 and "not a readable SORL Lab checkpoint" in proc.stderr
    proc = run_cli("train", "--world", "donut", "--out", str(tmp_path / "x"), *TINY, check=False)
    assert proc.returncode == 2 and "ring" in proc.stderr and "spiral" in proc.stderr
    proc = run_cli("train", "--out", str(tmp_path / "fresh"), "--resume", *TINY, check=False)
    assert proc.returncode == 2 and "no checkpoint" in proc.stderr


def test_bench_prints_json_figures():
    proc = run_cli("bench", "--size", "tiny", "--iterations", "2", "--warmup", "1", "--json")
    report = json.loads(proc.stdout)
    for precision in ("fp32", "bf16"):
        r = report["results"][precision]
        assert r["seconds_per_iteration"] > 0 and r["iteration_gflop"] > 0 and r["sample_ms_m8_n32"] > 0
        assert 0 < r["fraction_of_matmul_rate"]
        # every step count k of the spec's draw is timed; the reported figure is their mean
        assert set(r["seconds_per_iteration_at_k"]) == {"1", "2", "4", "8"}
        assert 0 < r["best_seconds_per_iteration"] <= r["seconds_per_iteration"]
    assert report["gelu"] in ("fused", "eager") and report["bf16_matmul"] in ("native", "slow generic path")
    assert report["device"] == "cpu"  # the default; --device cuda is what `make gpu-check` times


@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU the script runs the whole check")
def test_gpu_check_says_there_is_no_gpu_and_exits_0():
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run(["bash", str(repo / "scripts" / "gpu_check.sh")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "no CUDA device" in proc.stdout and "nothing to check" in proc.stdout


def test_data_generate_and_info_end_to_end(tmp_path):
    out = run_cli("data", "generate", "cube-single-play-v0", "--episodes", "1", "--episode-length", "30",
                  "--workers", "1", "--no-progress", "--dataset-dir", str(tmp_path))
    assert (tmp_path / "cube-single-play-v0.npz").exists() and (tmp_path / "cube-single-play-v0-val.npz").exists()
    assert "cube-single-play-v0.npz" in out.stdout
    info = run_cli("data", "info", "cube-single-play-v0", "--dataset-dir", str(tmp_path))
    assert info.stdout.count("found") == 2
    info = run_cli("data", "info", "antmaze-large-navigate-v0", "--dataset-dir", str(tmp_path))
    assert "expert policies" in info.stdout and "antmaze-large-navigate-v0-val.npz" in info.stdout
    bad = run_cli("data", "generate", "cube-sextuple-play-v0", "--dataset-dir", str(tmp_path), check=False)
    assert bad.returncode == 2 and "cube-single-play-v0" in bad.stderr


def test_precision_auto_trains_bf16_only_where_it_is_fast_and_can_switch_a_resumed_run(tmp_path, monkeypatch, capsys):
    """bf16 matrix products run about 15 times slower than float32 on CPUs without AVX-512: auto trains in float32
    there and in bf16 where they are native, bf16 asked for on a slow CPU warns, and a bf16 run resumed with auto
    goes on in float32 from its float32 weights and Adam state (without auto it keeps its precision)."""
    from sorl_core import cpu

    base = ToyTrainConfig(world="moons", iterations=10, log_every=5, eval_every=0, checkpoint_every=10, progress=False)

    def config(out, iterations=10, precision="auto", resume=False):
        return replace(base, out=str(out), iterations=iterations, resume=resume,
                       agent=replace(base.agent, size="tiny", precision=precision))

    monkeypatch.setattr(cpu, "bf16_matmul_native", lambda device: True)
    agent, _ = train_toy(config(tmp_path / "fast"))
    assert agent.config.precision == "bf16"
    monkeypatch.setattr(cpu, "bf16_matmul_native", lambda device: False)
    out = tmp_path / "slow"
    with pytest.warns(RuntimeWarning, match="bf16 training is slow here"):
        train_toy(config(out, precision="bf16"))
    kept, _ = train_toy(config(tmp_path / "kept", precision="fp32"))
    assert kept.config.precision == "fp32"
    with pytest.warns(RuntimeWarning, match="bf16 training is slow here"):
        agent, _ = train_toy(config(out, iterations=15, precision="fp32", resume=True))  # no auto: stays bf16
    assert agent.config.precision == "bf16"
    logged = rows(out / "metrics.csv")
    agent, _ = train_toy(config(out, iterations=20, resume=True))
    assert "trained in bf16 up to iteration 15; it goes on in fp32" in capsys.readouterr().out
    assert agent.config.precision == "fp32" and agent.step == 20
    assert read_checkpoint(out / "checkpoint.pt")["config"]["precision"] == "fp32"
    assert json.loads((out / "config.json").read_text())["agent"]["precision"] == "fp32"
    assert rows(out / "metrics.csv")[:3] == logged  # it went on from step 15 (a new run would rewrite these)
