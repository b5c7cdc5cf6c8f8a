"""A truncated or bit-flipped checkpoint, base-output or feature file is detected by the
SHA-256 recorded when acn wrote it, with an error naming the file; it is never loaded as
garbage. (A bit flip inside a tensor would otherwise load fine: only the checksum sees it.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from acn.errors import AcnError

from faults.harness import acn, run


def damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncate":
        data = data[: len(data) - 100]
    else:  # one bit, in the last quarter: tensor data, past every header
        data[len(data) * 3 // 4] ^= 0x10
    path.write_bytes(bytes(data))


MISMATCH = r"checksum mismatch: the {} is corrupt or truncated"


@pytest.mark.parametrize("how", ["truncate", "flip"])
def test_base_checkpoint(tmp_path, how):
    from acn.model.base import BaseModel
    from acn.train.base import load_base_checkpoint, save_base_checkpoint

    path = tmp_path / "rgb_base.pt"
    save_base_checkpoint(path, BaseModel(feature_dim=64, num_classes=3, hidden=32), {"x": 1})
    load_base_checkpoint(path)
    damage(path, how)
    with pytest.raises(AcnError, match=rf"rgb_base\.pt: {MISMATCH.format('checkpoint')}"):
        load_base_checkpoint(path)


@pytest.mark.parametrize("how", ["truncate", "flip"])
def test_regression_checkpoint(tmp_path, how):
    import torch

    from acn.train.stages import load_checkpoint, save_checkpoint

    path = tmp_path / "flow_regression_state.pt"
    save_checkpoint(path, {"nets": {"w": torch.randn(64, 64)}, "epoch": 2})
    damage(path, how)
    with pytest.raises(AcnError, match=rf"_state\.pt: {MISMATCH.format('checkpoint')}"):
        load_checkpoint(path)


@pytest.mark.parametrize("how", ["truncate", "flip"])
def test_base_outputs(tmp_path, how):
    from acn.train.outputs import BaseOutputs, load_outputs, save_outputs

    o = BaseOutputs(np.random.rand(3, 50).astype(np.float32), np.zeros(50, np.float32),
                    np.ones(3, np.float32))
    save_outputs(tmp_path, {"v": o})
    damage(tmp_path / "v.npz", how)
    with pytest.raises(AcnError, match=rf"v\.npz: {MISMATCH.format('base-output file')}"):
        load_outputs(tmp_path, ["v"])


@pytest.mark.parametrize("how", ["truncate", "flip"])
def test_extracted_feature_file(tmp_path, how):
    from acn.data.features import load_npy
    from acn.extract import ExtractConfig
    from acn.extract.pipeline import ExtractedFeatures, write_video

    a = np.random.rand(6, 1024).astype(np.float32)
    write_video(tmp_path, ExtractedFeatures("v", "v.mp4", a, a + 1, 25.0, 16,
                                            np.arange(6) * 0.64, 3.84, 96),
                ExtractConfig(random_weights=True))
    path = tmp_path / "features" / "v_flow.npy"
    assert np.array_equal(load_npy(path), a + 1)
    damage(path, how)
    with pytest.raises(AcnError, match=rf"v_flow\.npy: {MISMATCH.format('feature file')}"):
        load_npy(path)


def test_feature_file_without_checksum_still_fails_clearly_when_truncated(tmp_path):
    from acn.data.features import load_npy

    path = tmp_path / "v_rgb.npy"
    np.save(path, np.ones((50, 16), np.float32))  # written by another tool: no sidecar
    damage(path, "truncate")
    with pytest.raises(AcnError, match=r"v_rgb\.npy: truncated \.npy file"):
        load_npy(path)


# -- through the commands ---------------------------------------------------------------------
@pytest.mark.slow
def test_localize_refuses_a_bit_flipped_checkpoint(tmp_path, world, trained):
    import shutil

    root, data = world
    run_dir = tmp_path / "run"
    shutil.copytree(trained[0], run_dir)
    damage(run_dir / "checkpoints" / "flow_base.pt", "flip")
    r = run(acn("localize", "--run", run_dir, "--data", data, "--out", tmp_path / "p.json"))
    lines = [ln for ln in r.stderr.splitlines() if not ln.startswith("acn: warning")]
    assert r.rc == 2 and len(lines) == 1, r.stderr
    assert lines[0].startswith(f"acn: error: {run_dir}/checkpoints/flow_base.pt: checksum "
                               "mismatch"), lines[0]
    assert not (tmp_path / "p.json").exists()


@pytest.mark.slow
def test_batch_localize_reports_a_corrupt_feature_file_and_goes_on(tmp_path, videos, trained):
    """A feature file that no longer matches its checksum fails its video (named, not
    retried); the other videos are localized."""
    r = run(acn("extract", videos, "--out", tmp_path / "feats", "--random-weights", "--flow",
                "dis", "--resize", "40", "--crop", "32", "--no-progress"))
    assert r.rc == 0, r.stderr
    damage(tmp_path / "feats" / "features" / "clip1_rgb.npy", "flip")
    manifest = tmp_path / "m.txt"
    manifest.write_text(f"{tmp_path / 'feats'}\n")
    r = run(acn("batch", "localize", "--manifest", manifest, "--run", trained[0], "--out",
                tmp_path / "out", "--local", "--no-progress",
                "--set", "localize.short_videos=clip"))
    assert r.rc == 1, r.stderr
    s = json.loads((tmp_path / "out" / "batch-localize.json").read_text())
    assert sorted(s["done"]) == ["clip0", "clip2"] and s["retries"] == 0
    (failed,) = s["failed"]
    assert failed["video"] == "clip1" and "clip1_rgb.npy: checksum mismatch" in failed["error"]
