"""sorl_core.io: the one atomic write every saved file goes through."""

import stat

import numpy as np
import pytest

from sorl_core.io import atomic_path, write_atomic


def test_text_and_bytes_land_whole_and_readable_by_others(tmp_path):
    write_atomic(tmp_path / "a" / "notes.txt", "héllo\n")
    write_atomic(tmp_path / "blob.bin", b"\x00\x01")
    assert (tmp_path / "a" / "notes.txt").read_text(encoding="utf-8") == "héllo\n"
    assert (tmp_path / "blob.bin").read_bytes() == b"\x00\x01"
    assert stat.S_IMODE((tmp_path / "blob.bin").stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "blob.bin", "notes.txt"]  # no temporary left


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sweep.csv"
    write_atomic(path, "old\n")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("half a fi")
            raise RuntimeError("disk full")
    assert path.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["sweep.csv"]


def test_the_temporary_keeps_the_suffix_so_writers_choose_the_same_format(tmp_path):
    path = tmp_path / "arrays.npz"
    with atomic_path(path) as tmp:
        assert tmp.suffix == ".npz" and tmp.parent == tmp_path
        np.savez(tmp, x=np.arange(3))  # np.savez appends .npz to any other suffix
    with np.load(path) as f:
        assert f["x"].tolist() == [0, 1, 2]


def test_a_private_file_stays_private(tmp_path):
    write_atomic(tmp_path / "upload.pt", b"x", mode=0o600)
    assert stat.S_IMODE((tmp_path / "upload.pt").stat().st_mode) == 0o600
