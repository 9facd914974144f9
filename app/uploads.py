"""Checkpoint uploads: a lab checkpoint (.pt), or a run of the SORL authors' JAX code (a .zip of its folder, or
flags.json plus a params_N.pkl) converted with `sorl-lab import`. Shared by the toy, rollouts and verifier pages.

Uploads live in the uploads folder (the system temporary folder's sorl-lab-uploads), by content digest: the same
upload is stored and converted once, and a shared link can name it. Authors' pickles are read by a restricted
unpickler, never run (sorl_core/authors_pickle.py).
"""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import tempfile
import zipfile
from pathlib import Path

from app.policies import digest_bytes
from sorl_core.io import write_atomic

TYPES = ["pt", "zip", "json", "pkl", "csv"]
LABEL = "Checkpoint (.pt), or an authors' run (.zip of its folder, or flags.json + params_N.pkl)"
HELP = ("A checkpoint written by `sorl-lab train --env ...` (read as tensors only), or a run folder written by the "
        "SORL authors' JAX code: upload it as a .zip, or upload its flags.json with one params_N.pkl (train.csv "
        "and eval.csv optional). It is converted as `sorl-lab import` would (docs/IMPORT.md); its pickles are read "
        "by a restricted reader that refuses anything but arrays.")
RUN_FILE = re.compile(r"flags\.json|params_\d+\.pkl|train\.csv|eval\.csv")
MAX_MEMBER_BYTES = 2**30  # a paper-size params_N.pkl is about 60 MB


def uploads_dir() -> Path:
    """Where uploads are kept: <tmp>/sorl-lab-uploads."""
    return Path(tempfile.gettempdir()) / "sorl-lab-uploads"


def store_upload(data: bytes, folder: str | Path | None = None) -> Path:
    """Write uploaded bytes to <tmp>/sorl-lab-uploads/<digest>.pt (content-addressed, atomic); return the path.

    Two sessions uploading the same file share one file; a half-written file is never visible.
    """
    folder = Path(folder) if folder is not None else uploads_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{digest_bytes(data)}.pt"
    if path.is_file() and path.stat().st_size == len(data):
        return path
    return write_atomic(path, data, mode=0o600)  # a student's file: readable by the server's user only


def checkpoint_from_upload(files: list[tuple[str, bytes]], folder: Path | None = None) -> tuple[Path, str]:
    """(path of a lab checkpoint, name to show) for uploaded (name, bytes) pairs; ValueError saying what is wrong."""
    if not files:
        raise ValueError("nothing was uploaded")
    # The uploaders take any file (a browser-side type filter shows a red icon and no reason). A lone file of
    # another kind is refused here; among several files, the run's own check names the odd one.
    name = files[0][0]
    if len(files) == 1 and not name.lower().endswith(tuple(f".{t}" for t in TYPES)):
        raise ValueError(f"{name} is not a file the lab reads: upload a checkpoint (.pt), or an authors' run "
                         "(a .zip of its folder, or its flags.json with a params_N.pkl).")
    # The uploader keeps every file dropped on it, in order. A checkpoint or a .zip stands alone, so the latest
    # such upload replaces what came before; loose files (flags.json, params_N.pkl, ...) make up one run.
    whole = lambda name: name.endswith((".pt", ".zip"))  # noqa: E731
    if whole(files[-1][0]):
        name, data = files[-1]
        if name.endswith(".pt"):
            return store_upload(data, folder), name
        run_files, shown = files_in_zip(data), name
    else:
        loose = [(name, data) for name, data in files if not whole(name)]
        run_files = dict(loose)
        shown = next((n for n, _ in loose if n.endswith(".pkl")), loose[0][0])
    return convert_run(run_files, folder or uploads_dir()), shown


def files_in_zip(data: bytes) -> dict[str, bytes]:
    """The run files of a zipped authors' run folder (the folder holding flags.json; only its latest params)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = [m for m in archive.infolist() if not m.is_dir()]
    except (zipfile.BadZipFile, OSError, ValueError):
        raise ValueError("the .zip could not be opened (a corrupt or truncated file?)") from None
    flags = [m for m in members if Path(m.filename).name == "flags.json"]
    if len(flags) != 1:
        raise ValueError("the .zip must hold one run folder with one flags.json "
                         f"(found {len(flags)} flags.json files)")
    folder = str(Path(flags[0].filename).parent)
    chosen = [m for m in members if str(Path(m.filename).parent) == folder and RUN_FILE.fullmatch(Path(m.filename).name)]
    params = [m for m in chosen if m.filename.endswith(".pkl")]
    latest = max(params, key=lambda m: int(re.search(r"(\d+)\.pkl$", m.filename).group(1)), default=None)
    chosen = [m for m in chosen if not m.filename.endswith(".pkl") or m is latest]
    if any(m.file_size > MAX_MEMBER_BYTES for m in chosen):
        raise ValueError("a file in the .zip is larger than 1 GB; import the run with `sorl-lab import` instead")
    try:
        return {Path(m.filename).name: archive.read(m) for m in chosen}
    except (zipfile.BadZipFile, OSError, ValueError):
        raise ValueError("the .zip could not be read (a corrupt or truncated file?)") from None


def convert_run(run_files: dict[str, bytes], folder: Path) -> Path:
    """Write the run files to <folder>/authors-<digest>/source and import them into .../run; the checkpoint path."""
    unknown = sorted(name for name in run_files if not RUN_FILE.fullmatch(name))
    if unknown:
        raise ValueError(f"{', '.join(unknown)} is not part of an authors' run (flags.json, params_N.pkl, "
                         "train.csv, eval.csv)")
    if "flags.json" not in run_files:
        raise ValueError("upload the run's flags.json with its params_N.pkl (or a .zip of the whole folder)")
    if not any(name.endswith(".pkl") for name in run_files):
        raise ValueError("upload a params_N.pkl with the run's flags.json (or a .zip of the whole folder)")
    digest = hashlib.sha256(b"".join(hashlib.sha256(n.encode() + b"\0" + run_files[n]).digest()
                                     for n in sorted(run_files))).hexdigest()[:16]
    base = Path(folder) / f"authors-{digest}"
    checkpoint = base / "run" / "checkpoint.pt"
    if checkpoint.is_file():
        return checkpoint
    shutil.rmtree(base, ignore_errors=True)  # a conversion that failed or was interrupted
    (base / "source").mkdir(parents=True)
    for name, data in run_files.items():
        (base / "source" / name).write_bytes(data)
    from sorl_core.authors_run import ImportConfig, import_run  # brings torch and the trainer: only when needed

    try:
        import_run(ImportConfig(str(base / "source"), out=str(base / "run")))
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise
    return checkpoint
