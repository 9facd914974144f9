"""`sorl-lab grid`: the same tiny grid through the local backend and a real Ray cluster started here, faults (a cell
that raises, a killed Ray worker) and resume, and bad grid files that must get one clear sentence each."""

from __future__ import annotations

import csv
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from sorl_core.cli import main
from sorl_core.studies.grid import GridConfig, run_grid
from sorl_core.studies.grid_backends import RayBackend, is_local
from sorl_core.studies.grid_file import GridError, read_grid

ROOT = Path(__file__).resolve().parents[1]
POLICY = ROOT / "assets" / "ogbench" / "cube-single-task2" / "policy.pt"
TOY_TRAIN = """
[train]
world = {worlds}
iterations = {iterations}
log_every = 5
eval_every = 10
checkpoint_every = 10
eval_contexts = 32
agent.size = "tiny"
"""
EVALUATE = f"""
[evaluate]
checkpoint = "{POLICY}"
m_inf = {{m_inf}}
n = 1
episodes = {{episodes}}
workers = 1
"""
TIMED = {"ms_per_action"}  # wall clock: the only column that may differ between two runs


def write_grid(folder: Path, text: str) -> Path:
    path = folder / "grid.in.toml"
    path.write_text(text)
    return path


def rows(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def untimed(path: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMED} for r in rows(path)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def session_pids(session: int) -> list[int]:
    """Live processes of one session (the Ray cluster started below), read from /proc."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if entry.name.isdigit() and int(fields[3]) == session and fields[0] != "Z":  # zombies are gone already
            pids.append(int(entry.name))
    return pids


def descendants(pid: int) -> list[int]:
    """`pid` and every live process below it (a Ray instance that ray.init started here), read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if entry.name.isdigit() and fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        found.append(todo.pop())
        todo.extend(children.get(found[-1], []))
    return found


# Ray's dashboard process asks the cloud metadata service which cloud it runs on, whatever the usage-stats setting
# (ray/_common/usage/usage_lib.py, get_cloud_from_metadata_requests; 1 s timeout): not a connection to or between Ray
# processes, and it fails harmlessly where that address is unreachable.
CLOUD_METADATA = ipaddress.ip_address("169.254.169.254")


def off_loopback(pids: list[int]) -> list[str]:
    """The TCP sockets of these processes, listening or connected, with an end not on the loopback address
    (0.0.0.0 and :: included: listening there opens the port on every interface), read from /proc; Ray's cloud
    metadata probe aside."""
    inodes = {}
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes[target[8:-1]] = pid
        except OSError:
            continue

    def ip(field: str):
        raw = bytes.fromhex(field.split(":")[0])  # /proc writes each 32-bit word in host (little-endian) order
        words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
        address = ipaddress.ip_address(words)
        return getattr(address, "ipv4_mapped", None) or address

    stray = []
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[9] not in inodes:
                continue
            ends = [ip(fields[1])] + ([] if fields[3] == "0A" else [ip(fields[2])])  # 0A: listening
            if not all(end.is_loopback for end in ends) and ends[-1] != CLOUD_METADATA:
                pid = inodes[fields[9]]
                try:
                    name = Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ").strip()[:160]
                except OSError:
                    name = "gone"
                stray.append(f"pid {pid} ({name}): {' -> '.join(str(end) for end in ends)}")
    return stray


# Ray 2.60 turns a loopback node IP (`--node-ip-address=127.0.0.1`, an address 127.0.0.1:PORT) into the IP it sees
# from outside, eth0's, unless it runs in its single-machine mode: on a machine whose eth0 is unreachable the driver
# then cannot reach the cluster (sorl_core/studies/grid_backends.py, on_loopback).
LOOPBACK_ONLY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
# Ray 2.60 gives a new local cluster token authentication, and `ray start` enables it whenever ~/.ray/auth_token
# exists (any earlier ray.init() on the machine writes one), while a driver given an explicit address sends no token
# unless RAY_AUTH_MODE=token: the test clusters run without it, whatever the home folder holds.
NO_AUTH = {"RAY_AUTH_MODE": "disabled"}


def ahead_of_the_other_tests() -> None:
    """The cluster runs at a higher priority where the tests may raise one (as root, as CI runs): see start_head."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, -10)
    except OSError:
        pass


def stop_session(head: subprocess.Popen) -> None:
    for sig, wait_s in ((signal.SIGTERM, 3), (signal.SIGKILL, 5)):
        for pid in session_pids(head.pid):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + wait_s
        while session_pids(head.pid) and time.time() < deadline:
            time.sleep(0.2)
    head.wait(5)


def start_head(temp: str, port: int, client_port: int, attempts: int = 3) -> subprocess.Popen:
    """`ray start --head --block`, returned once it says the node is up. Ray 2.60's raylet gives its Python agents
    15 s (hard-coded) to start and takes the node down when they are late, as they can be on two cores busy with make
    test's other worker: the cluster gets a higher priority and, if it still fails to start, another attempt."""
    log_path = Path(temp) / "start.log"
    for attempt in range(1, attempts + 1):
        with open(log_path, "w") as log:
            head = subprocess.Popen(
                [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
                 f"--port={port}", f"--ray-client-server-port={client_port}", "--num-cpus=2", "--disable-usage-stats",
                 "--include-dashboard=false", "--dashboard-host=127.0.0.1", f"--temp-dir={temp}"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=ahead_of_the_other_tests,
                env={**os.environ, "OMP_NUM_THREADS": "1", **LOOPBACK_ONLY, **NO_AUTH})
        deadline = time.time() + 120
        while head.poll() is None and time.time() < deadline and "Ray runtime started" not in log_path.read_text():
            time.sleep(0.5)
        if head.poll() is None and "Ray runtime started" in log_path.read_text():
            return head
        stop_session(head)
        if attempt == attempts:
            raise AssertionError(f"ray start failed {attempts} times; the last said:\n{log_path.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def ray_cluster():
    """A real single-node Ray cluster (`ray start --head`) on 127.0.0.1 only, in its own session so that exactly its
    processes are stopped afterwards (`ray stop` would stop every Ray on the machine)."""
    pytest.importorskip("ray")
    port, client_port = free_port(), free_port()  # not Ray Client's fixed 10001: two runs at once must not collide
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must stay under 108 characters
    stray, head = [], None
    try:
        head = start_head(temp, port, client_port)
        yield f"127.0.0.1:{port}"
        stray = off_loopback(session_pids(head.pid))  # after the tests: the workers they started are there too
    finally:
        if head is not None:
            stop_session(head)
        subprocess.run(["rm", "-rf", temp], check=False)
    assert not stray, f"Ray processes with a socket off 127.0.0.1: {stray}"


@pytest.mark.slow
def test_local_and_ray_backends_give_the_same_results_and_a_rerun_skips_everything(ray_cluster, tmp_path, capsys):
    grid = write_grid(tmp_path, TOY_TRAIN.format(worlds='["ring", "moons"]', iterations=20)
                      + EVALUATE.format(m_inf="[[1], [2]]", episodes=3))
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    assert main(["grid", str(grid), "--out", str(local), "--no-progress"]) == 0
    assert "4 done" in capsys.readouterr().out
    assert main(["grid", str(grid), "--backend", "ray", "--address", ray_cluster, "--out", str(on_ray),
                 "--no-progress"]) == 0

    cells = rows(local / "cells.csv")
    assert [c["state"] for c in cells] == ["done"] * 4 and all(c["node"] and float(c["seconds"]) > 0 for c in cells)
    assert [c["cell"] for c in cells] == [c["cell"] for c in rows(on_ray / "cells.csv")]  # ids from parameters
    assert [c["kind"] for c in cells] == ["train", "train", "evaluate", "evaluate"]
    sweep = untimed(local / "sweep.csv")
    assert sweep == untimed(on_ray / "sweep.csv")
    assert [(r["m_inf"], r["n"], r["episodes"], r["train_seed"]) for r in sweep] == [("1", "1", "3", "0"), ("2", "1", "3", "0")]
    for cell in cells[:2]:  # training is seeded too: the two backends trained the same networks
        run = f"runs/{cell['cell']}"
        assert rows(local / run / "eval.csv") == rows(on_ray / run / "eval.csv")

    stamps = {p: p.stat().st_mtime_ns for folder in ("cells", "runs") for p in (local / folder).rglob("*")}
    started = time.time()
    result = run_grid(GridConfig(str(grid), out=str(local), progress=False))
    assert result.states == {"done": 4} and time.time() - started < 10
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing ran again
    assert untimed(local / "sweep.csv") == sweep


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["local", "ray"])
def test_a_failing_cell_and_a_killed_worker_leave_the_rest_and_a_rerun_completes_them(backend, request, tmp_path):
    address = request.getfixturevalue("ray_cluster") if backend == "ray" else None
    grid = write_grid(tmp_path, TOY_TRAIN.format(worlds='"ring"', iterations="[20, 600]").replace(
        "checkpoint_every = 10", "checkpoint_every = 50") + EVALUATE.format(m_inf="[[1], [16]]", episodes=2))
    out = tmp_path / "out"
    cells = {c.params.get("iterations", c.params.get("m_inf")): c for c in read_grid(grid, out)}
    long_train, bad_evaluate = cells[600], cells[(16,)]
    killed = []

    def kill_the_long_cell_after_its_first_checkpoint():
        note, checkpoint = out / "cells" / long_train.id / "started.json", out / "runs" / long_train.id / "checkpoint.pt"
        deadline = time.time() + 120
        while not (note.exists() and checkpoint.exists()) and time.time() < deadline:
            time.sleep(0.05)
        pid = json.loads(note.read_text())["pid"]
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    killer = threading.Thread(target=kill_the_long_cell_after_its_first_checkpoint, daemon=True)
    killer.start()
    first = run_grid(GridConfig(str(grid), backend=backend, address=address, out=str(out), progress=False))
    killer.join(5)
    assert killed and first.states == {"done": 2, "failed": 2}
    table = {c["cell"]: c for c in rows(out / "cells.csv")}
    assert "process died" in table[long_train.id]["error"]
    assert "16" in table[bad_evaluate.id]["error"] and "Error" not in table[bad_evaluate.id]["error"]
    finished = [out / "cells" / cid / "result.json" for cid, c in table.items() if c["state"] == "done"]
    stamps = {p: p.stat().st_mtime_ns for p in finished}
    short_run = out / "runs" / cells[20].id / "checkpoint.pt"
    short_stamp = short_run.stat().st_mtime_ns

    second = run_grid(GridConfig(str(grid), backend=backend, address=address, out=str(out), progress=False))
    assert second.states == {"done": 3, "failed": 1}  # the invalid cell fails again, the killed one finished
    assert {p: p.stat().st_mtime_ns for p in finished} == stamps and short_run.stat().st_mtime_ns == short_stamp
    table = rows(out / "cells.csv")
    assert sorted(c["cell"] for c in table) == sorted(c.id for c in cells.values())  # every cell exactly once
    metrics = rows(out / "runs" / long_train.id / "metrics.csv")
    assert [int(r["step"]) for r in metrics] == list(range(5, 601, 5))  # resumed from its checkpoint, no gap
    assert len(untimed(out / "sweep.csv")) == 1


@pytest.mark.slow
def test_the_ray_instance_the_grid_starts_itself_stays_on_127_0_0_1(tmp_path, monkeypatch):
    """`--backend ray` without --address: ray.init starts a Ray of its own, which must bind and connect on the
    loopback address only (it must work where every other interface is unreachable)."""
    pytest.importorskip("ray")
    for name, value in NO_AUTH.items():  # or ray.init writes ~/.ray/auth_token and sets RAY_AUTH_MODE here for good
        monkeypatch.setenv(name, value)
    grid = write_grid(tmp_path, TOY_TRAIN.format(worlds='"ring"', iterations=20))
    (cell,) = read_grid(grid, tmp_path / "out")
    before = os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
    backend = RayBackend(tmp_path / "out", None)
    try:
        assert os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") == before  # set for ray.init only
        assert {node["NodeManagerAddress"] for node in backend.ray.nodes()} == {"127.0.0.1"}
        backend.submit(cell)
        assert backend.next_result()[1]["state"] == "done"
        stray = off_loopback(descendants(os.getpid()))  # this driver, its GCS, raylet, agents and the worker
    finally:
        backend.close()
    assert not stray, f"Ray processes with a socket off 127.0.0.1: {stray}"


def test_a_local_ray_that_times_out_while_starting_is_tried_again_then_explained():
    """Ray's raylet takes its node down when its agents start late on a busy machine (a bare Exception from ray.init):
    the grid's own Ray is started again, and after the last try the user reads what to do, not a traceback."""
    from sorl_core.studies.grid_backends import OWN_RAY_ATTEMPTS, start_own_ray

    class FlakyRay:
        def __init__(self, failures):
            self.failures, self.inits, self.shutdowns = failures, 0, 0

        def init(self, **kwargs):
            self.inits += 1
            assert kwargs["_node_ip_address"] == "127.0.0.1"
            if self.inits <= self.failures:
                raise Exception("The current node timed out during startup. This could happen because ...")

        def shutdown(self):
            self.shutdowns += 1

    late_twice = FlakyRay(OWN_RAY_ATTEMPTS - 1)
    start_own_ray(late_twice)
    assert (late_twice.inits, late_twice.shutdowns) == (OWN_RAY_ATTEMPTS, OWN_RAY_ATTEMPTS - 1)
    with pytest.raises(GridError, match=r"did not start in time \(3 tries\).*ray start --head"):
        start_own_ray(FlakyRay(OWN_RAY_ATTEMPTS))

    class BrokenRay(FlakyRay):
        def init(self, **kwargs):
            raise Exception("something else")

    with pytest.raises(Exception, match="something else"):  # other failures are not retried
        start_own_ray(BrokenRay(0))


def test_evaluate_cells_of_a_run_that_failed_to_train_are_blocked(tmp_path, capsys):
    grid = write_grid(tmp_path, f"""
[train]
env = "cube-single-play-singletask-task2-v0"
dataset_dir = "{tmp_path / 'no-data'}"
generate_missing = false
iterations = 10
[evaluate]
episodes = 1
""")
    assert main(["grid", str(grid), "--out", str(tmp_path / "out"), "--no-progress"]) == 1
    assert "run the same command again" in capsys.readouterr().err
    train, evaluate = rows(tmp_path / "out" / "cells.csv")
    assert train["state"] == "failed" and "no-data" in train["error"]
    assert evaluate["state"] == "blocked" and train["cell"] in evaluate["error"]
    assert rows(tmp_path / "out" / "sweep.csv") == []


BAD_GRIDS = {
    "unknown key": ('[train]\nworld = "ring"\niteration = 20\n', "line 3, [train] iteration: unknown key",
                    "did you mean `iterations`"),
    "type error": ('[train]\nworld = "ring"\n\nagent.lr = "fast"\n', "line 4, [train] agent.lr: must be a number",
                   '"fast"'),
    "empty product": ('[train]\nworld = "ring"\nseed = [0, 1]\n[evaluate]\ncheckpoint = []\n',
                      "line 5, [evaluate] checkpoint: an empty list", "no cells"),
    "shared folder": ('[train]\nworld = "ring"\nseed = [0, 1]\nout = "one-folder"\n', "line 4, [train] out:",
                      "would both write to"),
    "invalid value": ('[train]\nworld = "ring"\nagent.m_btt = [1, 3]\n', "line 3, [train] agent.m_btt:",
                      "power of two"),
    "toy evaluation": ('[train]\nworld = "ring"\n[evaluate]\nn = [1, 4]\n', "line 3, [evaluate]:", "toy runs"),
    "bad TOML": ('[train]\nworld = "ring"\niterations = twenty\n', "not valid TOML", "at line 3"),
}


@pytest.mark.parametrize("case", BAD_GRIDS, ids=list(BAD_GRIDS))
def test_bad_grid_files_get_one_clear_sentence_naming_line_and_key(case, tmp_path, capsys):
    text, where, what = BAD_GRIDS[case]
    grid = write_grid(tmp_path, text)
    assert main(["grid", str(grid), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert where in err and what in err, err
    assert len(err.splitlines()) == 1 and "Error" not in err and "Traceback" not in err
    assert not (tmp_path / "out" / "cells.csv").exists()  # refused before anything ran


def test_unreachable_ray_address_fails_within_seconds(tmp_path):
    pytest.importorskip("ray")
    grid = write_grid(tmp_path, TOY_TRAIN.format(worlds='"ring"', iterations=20))
    started = time.time()
    for address in (f"127.0.0.1:{free_port()}", f"ray://127.0.0.1:{free_port()}", "198.51.100.1:6379"):  # refused, unroutable
        with pytest.raises(GridError, match="no Ray cluster answered at .*: is `ray start --head` running there"):
            run_grid(GridConfig(str(grid), backend="ray", address=address, out=str(tmp_path / "out"),
                                connect_timeout=2, progress=False))
    assert time.time() - started < 15  # not ray.init's own 20-30 s of retries each
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("address, local", [(None, True), ("auto", True), ("127.0.0.1:6379", True),
                                            ("localhost:6379", True), ("[::1]:6379", True), ("10.0.0.7:6379", False),
                                            ("head.cluster:6379", False), ("ray://127.0.0.1:10001", False)])
def test_only_a_ray_on_this_machine_is_kept_on_the_loopback_address(address, local):
    """A remote cluster's --address is passed to ray.init as before; Ray Client dials the host it is given."""
    assert is_local(address) is local


def test_ray_backend_without_ray_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    grid = write_grid(tmp_path, TOY_TRAIN.format(worlds='"ring"', iterations=20))
    assert main(["grid", str(grid), "--backend", "ray", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "needs Ray" in err and 'pip install "sorl-lab[ray]"' in err
    assert not (tmp_path / "out").exists()


def test_grid_cells_expand_lists_and_ids_are_stable(tmp_path):
    """A list is a product axis, a scalar is shared; list-valued options (m_inf) take a list, a list of lists
    is an axis; the grid's own OGBench runs feed [evaluate]; ids depend only on parameters."""
    text = ('[train]\nenv = ["cube-single-play-singletask-task2-v0"]\nseed = [0, 1, 2]\niterations = 80000\n'
            'agent.m_btt = [1, 8]\n[evaluate]\nm_inf = [1, 2, 4, 8]\nn = [[1], [4, 16]]\nepisodes = 50\n')
    grid = write_grid(tmp_path, text)
    cells = read_grid(grid, tmp_path / "out", dataset_dir="shared-data")
    train, evaluate = [c for c in cells if c.kind == "train"], [c for c in cells if c.kind == "evaluate"]
    assert len(train) == 6 and len(evaluate) == 12
    assert {(c.params["seed"], c.params["agent.m_btt"]) for c in train} == {(s, m) for s in (0, 1, 2) for m in (1, 8)}
    assert all(c.options["out"] == str(tmp_path / "out" / "runs" / c.id) for c in train)
    assert all(c.options["dataset_dir"] == str(Path("shared-data").resolve()) for c in train)
    assert {c.options["n"] for c in evaluate} == {(1,), (4, 16)} and all(c.options["m_inf"] == (1, 2, 4, 8) for c in evaluate)
    by_id = {c.id: c for c in train}
    assert all(c.options["checkpoint"] == str(Path(by_id[c.needs].options["out"]) / "checkpoint.pt") for c in evaluate)
    assert {c.train_seed for c in evaluate} == {0, 1, 2}
    assert [c.id for c in read_grid(grid, tmp_path / "elsewhere", dataset_dir="shared-data")] == [c.id for c in cells]
    assert train[0].id.startswith("train-seed=0-m_btt=1-")


def test_cells_that_differ_only_in_seed_train_as_stacks_and_each_is_its_own_run(tmp_path):
    """Four seeds on this machine's cores: stack jobs (one per core), each cell's run still its seed's own run;
    --no-stack-seeds trains each alone, to the same numbers (float rounding: see tests/test_seeds.py)."""
    from sorl_core.checkpoint import load_agent

    grid = write_grid(tmp_path, TOY_TRAIN.format(worlds='"ring"', iterations=20) + "seed = [0, 1, 2, 3]\n")
    stacked, alone = tmp_path / "stacked", tmp_path / "alone"
    assert run_grid(GridConfig(str(grid), out=str(stacked), progress=False)).states == {"done": 4}
    assert run_grid(GridConfig(str(grid), out=str(alone), progress=False, stack_seeds=False)).states == {"done": 4}
    cells = read_grid(grid, stacked)
    partners = {c.id: json.loads((stacked / "cells" / c.id / "result.json").read_text())["stacked_with"] for c in cells}
    assert all(partners.values()) and all(c.id in partners[p] for c in cells for p in partners[c.id])  # paired up
    for cell in cells:
        assert "stacked_with" not in json.loads((alone / "cells" / cell.id / "result.json").read_text())
        a, _ = load_agent(stacked / "runs" / cell.id / "checkpoint.pt", device="cpu")
        b, _ = load_agent(alone / "runs" / cell.id / "checkpoint.pt", device="cpu")
        assert a.seeds == b.seeds == [cell.params["seed"]]
        for x, y in zip(a.actor.parameters(), b.actor.parameters()):
            assert (x - y).abs().max() < 1e-5
    stamps = {p: p.stat().st_mtime_ns for p in (stacked / "runs").rglob("*")}
    assert run_grid(GridConfig(str(grid), out=str(stacked), progress=False)).states == {"done": 4}
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # a rerun skips finished stacks
