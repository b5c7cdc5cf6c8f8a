"""A full disk in the middle of a checkpoint, a results JSON and a feature file: one clear error
naming the path, the previous good file (and its checksum) untouched, no temporary left.

The fast tests make :mod:`acn.fileio`'s one low-level write (``fileio._write``) behave like a
disk with a few bytes free; the slow ones run the real commands on a real, tiny tmpfs (inside
``unshare -rm``: a private mount; skipped where the platform does not allow it).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from acn import fileio
from acn.errors import AcnError
from acn.fileio import checksum_path, verify_checksum

from faults.harness import VIDEO, acn, env


class FullDisk:
    """``os.write`` on a disk with ``free`` bytes left: short writes, then ENOSPC."""

    def __init__(self, free: int):
        self.free = free

    def __call__(self, fd: int, data) -> int:
        if self.free <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = os.write(fd, data[: self.free])
        self.free -= n
        return n


def _fails_cleanly(target: Path, write, monkeypatch, new_size: int) -> str:
    """Run ``write()`` on a disk that fills half-way through the new file; return the error."""
    before = target.read_bytes()
    side = checksum_path(target)
    side_before = side.read_bytes() if side.is_file() else None
    monkeypatch.setattr(fileio, "_write", FullDisk(new_size // 2))
    with pytest.raises(AcnError) as e:
        write()
    monkeypatch.undo()
    msg = str(e.value)
    assert msg.startswith(f"{target}: cannot write (No space left on device)"), msg
    assert "\n" not in msg
    assert target.read_bytes() == before, "the previous file changed"
    if side_before is not None:
        assert side.read_bytes() == side_before
        verify_checksum(target)
    leftovers = [p.name for p in target.parent.iterdir() if p.name.endswith(".tmp")]
    assert not leftovers, leftovers
    return msg


def test_disk_full_mid_checkpoint(tmp_path, monkeypatch):
    import torch

    from acn.train.stages import load_checkpoint, save_checkpoint

    ck = tmp_path / "checkpoints" / "flow_regression_state.pt"
    good = {"nets": {"w": torch.arange(1000.0)}, "epoch": 1}
    save_checkpoint(ck, good)
    new = {"nets": {"w": torch.zeros(1000)}, "epoch": 2}
    _fails_cleanly(ck, lambda: save_checkpoint(ck, new), monkeypatch, 4500)
    assert torch.equal(load_checkpoint(ck)["nets"]["w"], good["nets"]["w"])


def test_disk_full_mid_results_json(tmp_path, monkeypatch):
    from acn.evaluate import save_results

    out = tmp_path / "pred.json"
    save_results(out, {"v1": [(0.0, 1.0, "Jump", 0.5)]})
    many = {f"v{i}": [(0.0, 1.0, "Jump", 0.5)] * 20 for i in range(20)}
    _fails_cleanly(out, lambda: save_results(out, many), monkeypatch, 20000)
    assert list(json.loads(out.read_text())["results"]) == ["v1"]


def test_disk_full_mid_feature_file(tmp_path, monkeypatch):
    from acn.extract import ExtractConfig
    from acn.extract.pipeline import ExtractedFeatures, write_video

    def feats(value: float) -> ExtractedFeatures:
        a = np.full((5, 1024), value, np.float32)
        return ExtractedFeatures("v", "v.mp4", a, a.copy(), 25.0, 16, np.arange(5) * 0.64,
                                 3.2, 80)

    write_video(tmp_path, feats(1.0), ExtractConfig(random_weights=True))
    rgb = tmp_path / "features" / "v_rgb.npy"
    _fails_cleanly(rgb, lambda: write_video(tmp_path, feats(2.0),
                                            ExtractConfig(random_weights=True)),
                   monkeypatch, 5 * 1024 * 4)
    assert np.array_equal(np.load(rgb), np.ones((5, 1024), np.float32))


def test_extract_stops_on_a_full_disk_and_names_the_file(tmp_path, monkeypatch, capsys):
    """A full disk is not a broken video: `acn extract` stops at once (exit 2, one line naming
    the file) instead of recording every remaining video as failed."""
    from acn.cli import main
    from acn.extract import pipeline

    def fake_extract(path, cfg, models, progress=None):
        a = np.ones((2, 1024), np.float32)
        return pipeline.ExtractedFeatures(Path(path).stem, str(path), a, a.copy(), 25.0, 16,
                                          np.zeros(2), 1.0, 32)

    monkeypatch.setattr(pipeline, "extract_video", fake_extract)
    monkeypatch.setattr(pipeline, "build_models", lambda cfg: None)
    monkeypatch.setattr(fileio, "_write", FullDisk(0))
    for name in ("a.mp4", "b.mp4"):
        (tmp_path / name).write_bytes(b"x")
    code = main(["extract", str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4"), "--out",
                 str(tmp_path / "out"), "--random-weights", "--no-progress"])
    err = [ln for ln in capsys.readouterr().err.splitlines() if "warning" not in ln]
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"acn: error: {tmp_path / 'out' / 'features' / 'a_rgb.npy'}: "
                             "cannot write (No space left on device)"), err[0]
    assert not list((tmp_path / "out").rglob("*.tmp"))


# -- the real thing: a tiny tmpfs --------------------------------------------------------------
def _tmpfs_available(tmp_path: Path) -> bool:
    if not shutil.which("unshare"):
        return False
    mnt = tmp_path / "probe"
    mnt.mkdir()
    p = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {mnt}"],
                       capture_output=True)
    return p.returncode == 0


def _on_full_tmpfs(tmp_path: Path, setup: str, argv: list[str], size_kb: int = 512) -> dict:
    """Run ``argv`` on a tmpfs mounted at MNT (after ``setup``, a shell snippet that may copy
    the previous good files in), filled to the last byte; report its rc, stderr and MNT's
    files with their SHA-256, as seen inside the private mount."""
    if not _tmpfs_available(tmp_path):
        pytest.skip("no private tmpfs here (unshare -rm + mount not allowed)")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    cmd = " ".join(f"'{a}'" for a in argv)
    script = f"""
set -e
mount -t tmpfs -o size={size_kb}k tmpfs '{mnt}'
cd '{mnt}'
{setup}
dd if=/dev/zero of='{mnt}/.filler' bs=1k 2>/dev/null || true
set +e
{cmd} 2> '{tmp_path}/stderr.txt'
echo "rc=$?" > '{tmp_path}/rc.txt'
rm -f '{mnt}/.filler'
find . -type f | sort | while read f; do sha256sum "$f"; done > '{tmp_path}/files.txt'
"""
    p = subprocess.run(["unshare", "-rm", "sh", "-c", script], env=env(), capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    files = {}
    for line in (tmp_path / "files.txt").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        files[name[2:]] = digest
    return {"rc": int((tmp_path / "rc.txt").read_text().strip()[3:]),
            "stderr": (tmp_path / "stderr.txt").read_text(), "files": files}


def _sha(p: Path) -> str:
    from acn.fileio import sha256_file

    return sha256_file(p)


@pytest.mark.slow
def test_localize_on_a_full_disk(tmp_path, world, trained):
    root, data = world
    run, _ = trained
    good = tmp_path / "good.json"
    good.write_text('{"results": {}}\n')
    r = _on_full_tmpfs(tmp_path, f"cp '{good}' pred.json",
                       acn("localize", "--run", run, "--data", data, "--out",
                           tmp_path / "mnt" / "pred.json", "--quiet"))
    lines = [ln for ln in r["stderr"].splitlines() if not ln.startswith("acn: warning:")]
    assert r["rc"] == 2 and len(lines) == 1, r["stderr"]
    assert lines[0].startswith(f"acn: error: {tmp_path / 'mnt' / 'pred.json'}: cannot write "
                               "(No space left on device)"), lines[0]
    assert r["files"] == {"pred.json": _sha(good)}  # untouched, and no temporary left


@pytest.mark.slow
def test_extract_on_a_full_disk(tmp_path, videos):
    """Features of clip0 done earlier, clip1 to do on a full disk: exit 2 naming the file,
    clip0's files and checksums untouched, nothing of clip1 under a final name."""
    first = tmp_path / "first"
    from faults.harness import run

    r = run(acn("extract", videos / "clip0.mp4", "--out", first, *VIDEO, "--no-progress"))
    assert r.rc == 0, r.stderr
    before = {p.name: _sha(p) for p in (first / "features").iterdir()}
    r = _on_full_tmpfs(
        tmp_path, f"cp -r '{first}'/. .",
        acn("extract", videos / "clip0.mp4", videos / "clip1.mp4", "--out", tmp_path / "mnt",
            *VIDEO, "--no-progress"))
    err = [ln for ln in r["stderr"].splitlines() if ln.startswith("acn: error")]
    assert r["rc"] == 2 and len(err) == 1 and "Traceback" not in r["stderr"], r["stderr"]
    assert f"{tmp_path}/mnt/features/clip1_" in err[0], err[0]
    assert "cannot write (No space left on device)" in err[0], err[0]
    got = {k.split("/", 1)[1]: v for k, v in r["files"].items() if k.startswith("features/")}
    assert got == before, "clip0's files changed, or clip1 left a file"
