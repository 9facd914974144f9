"""Atomic file writes: a crash, a full disk or Ctrl-C never leaves half a file where a reader looks.

Every file the lab writes for later (checkpoints, datasets, sweeps, studies, videos, uploads) goes through
`atomic_path`: the content goes to a temporary file in the same folder, is flushed to disk, made readable by
others (0644; these files are meant to be shared), and renamed onto the target in one step. On failure the
temporary file is removed.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_path(path: str | Path, mode: int = 0o644) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write by any means (torch.save, np.savez, a video writer...).

    The temporary name keeps the target's suffix, so writers that choose a format by suffix choose the same one.
    mode: the file's permissions (0o600 for what only this user should read, e.g. a student's upload).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # mkstemp makes it private
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: str | Path, data: str | bytes, mode: int = 0o644) -> Path:
    """Write text (UTF-8) or bytes to `path` atomically."""
    with atomic_path(path, mode) as tmp:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)
    return Path(path)
