"""Uploading a run of the SORL authors' JAX code on the rollouts and verifier pages (app/uploads.py).

The run is the real fixture in tests/fixtures/ (see its README.md), zipped as a user would zip the folder.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from app import uploads as U

REPO = Path(__file__).resolve().parents[1]

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from sorl_core.checkpoint import load_agent  # noqa: E402

FIXTURE = REPO / "tests" / "fixtures" / "authors-sorl-run-cube-single-task1-sd5"
ENV = "cube-single-play-singletask-task1-v0"


def zipped(folder: Path, prefix: str = "runs/sorl_sd005/", extra: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.iterdir()):
            archive.writestr(prefix + path.name, path.read_bytes())
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return buffer.getvalue()


def run_files() -> list[tuple[str, bytes]]:
    return [(p.name, p.read_bytes()) for p in sorted(FIXTURE.iterdir())]


@pytest.fixture()
def pages_env(tmp_path, monkeypatch):
    monkeypatch.setenv("SORL_LAB_OGBENCH_DIR", str(tmp_path / "no-bundled"))
    monkeypatch.setenv("SORL_LAB_CACHE", str(tmp_path / "cache"))
    return tmp_path


# --------------------------------------------------------------------------- the shared upload code
def test_a_zip_or_the_loose_files_become_one_lab_checkpoint(tmp_path):
    from_zip, shown = U.checkpoint_from_upload([("my-run.zip", zipped(FIXTURE))], tmp_path)
    assert shown == "my-run.zip" and from_zip.name == "checkpoint.pt" and tmp_path in from_zip.parents
    agent, extra = load_agent(from_zip, device="cpu")
    assert extra["env"] == ENV and agent.config.hidden == (32, 32, 32) and agent.step == 100
    loose, shown = U.checkpoint_from_upload(run_files(), tmp_path)
    assert shown == "params_100.pkl" and loose.read_bytes()[:4] == from_zip.read_bytes()[:4]
    stamp = loose.stat().st_mtime_ns
    assert U.checkpoint_from_upload(run_files(), tmp_path)[0] == loose and loose.stat().st_mtime_ns == stamp  # once
    only_params = [f for f in run_files() if f[0] in ("flags.json", "params_100.pkl")]
    assert load_agent(U.checkpoint_from_upload(only_params, tmp_path)[0], device="cpu")[1]["env"] == ENV


def test_only_the_latest_params_of_a_zip_are_read(tmp_path):
    data = zipped(FIXTURE, extra={"runs/sorl_sd005/params_7.pkl": b"not read", "elsewhere/params_900.pkl": b"x"})
    files = U.files_in_zip(data)
    assert sorted(files) == ["eval.csv", "flags.json", "params_100.pkl", "train.csv"]


def test_the_latest_checkpoint_or_zip_replaces_earlier_uploads(tmp_path):
    """The uploader keeps every file dropped on it: a new .pt or .zip is what the user means now."""
    path, shown = U.checkpoint_from_upload([("old.pt", b"old"), ("run.zip", b"x"), ("new.pt", b"new")], tmp_path)
    assert shown == "new.pt" and path.read_bytes() == b"new"
    path, shown = U.checkpoint_from_upload([("old.pt", b"old"), ("authors-run.zip", zipped(FIXTURE))], tmp_path)
    assert shown == "authors-run.zip" and load_agent(path, device="cpu")[1]["env"] == ENV
    # loose run files after a checkpoint: the checkpoint is set aside, the files make up the run
    loose = [("old.pt", b"old"), ("flags.json", (FIXTURE / "flags.json").read_bytes()),
             ("params_100.pkl", (FIXTURE / "params_100.pkl").read_bytes())]
    path, shown = U.checkpoint_from_upload(loose, tmp_path)
    assert shown == "params_100.pkl" and load_agent(path, device="cpu")[1]["env"] == ENV


@pytest.mark.parametrize("files, message", [
    ([("run.zip", b"PK\x03\x04 broken")], "could not be opened"),
    ([("run.zip", zipped(FIXTURE, extra={"other/flags.json": b"{}"}))], "one run folder with one flags.json"),
    ([("params_100.pkl", (FIXTURE / "params_100.pkl").read_bytes())], "upload the run's flags.json"),
    ([("flags.json", (FIXTURE / "flags.json").read_bytes())], "upload a params_N.pkl"),
    ([("notes.txt", b"hi"), ("flags.json", b"{}")], "notes.txt is not part of an authors' run"),
    ([("flags.json", (FIXTURE / "flags.json").read_bytes()), ("params_100.pkl", b"cos\nsystem\n(Vtrue\ntR.")],
     "refers to os.system"),
])
def test_a_bad_upload_says_why(files, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        U.checkpoint_from_upload(files, tmp_path)
    assert not list(tmp_path.glob("authors-*"))  # nothing half-converted is left behind


# --------------------------------------------------------------------------- the pages
def test_the_rollouts_page_runs_an_uploaded_zip_of_the_authors_run(pages_env):
    at = AppTest.from_file(str(REPO / "app" / "pages" / "1_OGBench_rollouts.py"), default_timeout=120).run()
    at.radio(key="ro_source").set_value("Upload").run()
    uploader = at.file_uploader(key="ro_upload")
    assert uploader.accept_multiple_files and uploader.allowed_type == []  # any file: a wrong one is explained
    uploader.set_value(("authors-run.zip", zipped(FIXTURE), "application/zip")).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    caption = " ".join(c.value for c in at.caption)
    assert "**authors-run.zip**" in caption and f"`{ENV}`" in caption and "M_BTT = 8" in caption
    assert not next(b for b in at.button if b.label == "Run").disabled


def test_the_verifier_page_takes_the_loose_files_and_explains_a_bad_upload(pages_env):
    at = AppTest.from_file(str(REPO / "app" / "pages" / "4_Verifier.py"), default_timeout=120).run()
    at.selectbox(key="vf_policy").set_value("upload…").run()
    at.file_uploader(key="vf_upload").set_value([("flags.json", b"{}", "application/json")]).run()
    assert not at.exception and at.button(key="vf_play").disabled
    assert [e.value for e in at.error] == ["Cannot use this upload: upload a params_N.pkl with the run's flags.json "
                                           "(or a .zip of the whole folder)"]
    files = [(name, data, "application/octet-stream") for name, data in run_files()]
    at.file_uploader(key="vf_upload").set_value(files).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert not at.button(key="vf_play").disabled


def test_a_lab_checkpoint_upload_is_stored_as_before(tmp_path):
    from sorl_core.agent import SORLAgent
    from sorl_core.checkpoint import save_checkpoint
    from sorl_core.config import SORLConfig

    saved = save_checkpoint(tmp_path / "mine.pt", SORLAgent(SORLConfig(obs_dim=28, action_dim=5, size="tiny"), seed=0),
                            extra={"kind": "ogbench", "env": ENV})
    data = saved.read_bytes()
    path, shown = U.checkpoint_from_upload([("mine.pt", data)], tmp_path / "uploads")
    assert shown == "mine.pt" and path.suffix == ".pt" and path.read_bytes() == data
