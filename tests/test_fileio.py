"""acn.fileio: the one write helper (atomic, permissions, checksums, fault points)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from acn import fileio
from acn.errors import AcnError
from acn.fileio import (checksum_path, recorded_checksums, save_npy, sha256_file,
                        verify_checksum, write_bytes, write_text)


def test_new_files_get_umask_permissions_not_mkstemps_0600(tmp_path):
    old = os.umask(0o022)
    try:
        code = ("import os, sys; os.umask(0o022); from acn.fileio import write_text; "
                "write_text(sys.argv[1], 'x')")
        subprocess.run([sys.executable, "-c", code, str(tmp_path / "a.txt")], check=True)
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644


def test_checksum_sidecar_is_sha256sum_format_and_follows_rewrites(tmp_path):
    f = tmp_path / "x.bin"
    write_bytes(f, b"one", checksum=True)
    side = checksum_path(f)
    assert side.name == "x.bin.sha256"
    assert side.read_text() == f"{sha256_file(f)}  x.bin\n"
    write_bytes(f, b"two", checksum=True)
    assert recorded_checksums(side) == [sha256_file(f)]  # narrowed to the new digest
    verify_checksum(f)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_file_without_sidecar_verifies_and_gains_one_when_rewritten(tmp_path):
    f = tmp_path / "old.npy"
    np.save(f, np.arange(3))
    verify_checksum(f)  # nothing recorded: nothing to check
    save_npy(f, np.arange(4), checksum=True)
    verify_checksum(f)
    assert np.array_equal(np.load(f), np.arange(4))


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_file_is_a_checksum_error_naming_it(tmp_path, damage):
    f = tmp_path / "w.npy"
    save_npy(f, np.arange(100, dtype=np.float32), checksum=True)
    data = bytearray(f.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0x01
    f.write_bytes(bytes(data))
    with pytest.raises(AcnError, match=r"w\.npy: checksum mismatch: the file is corrupt or "
                                       r"truncated.*re-run the command"):
        verify_checksum(f)


def test_both_digests_pass_while_a_rewrite_is_renamed(tmp_path, monkeypatch):
    """A kill between the sidecar's widening and the rename leaves the OLD file with a sidecar
    that still accepts it; a kill after the rename leaves the new file accepted."""
    f = tmp_path / "c.pt"
    write_bytes(f, b"old", checksum=True)
    side = checksum_path(f)

    real = os.replace

    def boom(src, dst):
        if str(dst) == str(f):
            raise KeyboardInterrupt  # Ctrl-C right before the file's rename
        real(src, dst)

    monkeypatch.setattr(fileio.os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        write_bytes(f, b"new", checksum=True)
    assert f.read_bytes() == b"old" and len(recorded_checksums(side)) == 2
    verify_checksum(f)
    monkeypatch.undo()
    write_bytes(f, b"newer", checksum=True)
    assert recorded_checksums(side) == [sha256_file(f)]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_fault_points_kill_inside_writes(tmp_path):
    """ACN_FAULT_AT=N kills at the N-th fault point; ACN_FAULT_TRACE lists them."""
    code = ("import sys; from acn.fileio import write_bytes; "
            "[write_bytes(f'{sys.argv[1]}/f{i}', b'abcdef' * 100, checksum=True) for i in range(2)]")
    trace = tmp_path / "trace.txt"
    env = {**os.environ, "ACN_FAULT_TRACE": str(trace)}
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, env=env)
    labels = [line.split()[1] for line in trace.read_text().splitlines()]
    assert labels[:4] == ["open", "write", "open", "write"]  # the file, then its sidecar
    assert "rename" in labels and "renamed" in labels
    out = tmp_path / "killed"
    out.mkdir()
    env = {**os.environ, "ACN_FAULT_AT": "2"}  # half-way through the first file's data
    p = subprocess.run([sys.executable, "-c", code, str(out)], env=env)
    assert p.returncode == -9
    names = [p.name for p in out.iterdir()]
    assert "f0" not in names and len(names) == 1 and names[0].startswith(".f0.")
    env = {**os.environ, "ACN_FAULT_AT": "2:SIGINT"}
    p = subprocess.run([sys.executable, "-c", code, str(out)], env=env, capture_output=True,
                       # SIGINT as Ctrl-C sends it, even where this runs as a background job
                       preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert p.returncode != 0 and b"KeyboardInterrupt" in p.stderr


def test_fault_hook_is_off_unless_asked():
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACN_FAULT")}
    code = "import acn.fileio as f; assert f._FAULTS is False and f._fault_count == 0"
    subprocess.run([sys.executable, "-c", code], env=env, check=True)


def test_write_text_into_a_folder_path_is_an_error(tmp_path):
    with pytest.raises(AcnError, match="is a folder"):
        write_text(tmp_path, "x")


def test_stale_temporaries_of_dead_local_writers_are_removed(tmp_path):
    from acn.fileio import _HOST, remove_stale_temporaries

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    names = {"dead": f".a.npy.acn-{dead}@{_HOST}.x1y2.tmp",
             "live": f".b.npy.acn-{os.getpid()}@{_HOST}.x1y2.tmp",
             "other host": f".c.npy.acn-{dead}@elsewhere.example.x1y2.tmp",
             "not ours": ".d.npy.x1y2.tmp"}
    for n in names.values():
        (tmp_path / n).write_bytes(b"partial")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / names["dead"]).write_bytes(b"partial")
    assert remove_stale_temporaries(tmp_path) == 1
    left = sorted(p.name for p in tmp_path.iterdir() if p.is_file())
    assert left == sorted(n for k, n in names.items() if k != "dead")
    assert remove_stale_temporaries(tmp_path, recursive=True) == 1
