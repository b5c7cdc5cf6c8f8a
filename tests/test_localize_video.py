"""`acn localize --video`: one video file to a results JSON and a timeline PNG."""

from __future__ import annotations

import json

import pytest

from acn.cli import main
from acn.data.canonical import save_canonical

from conftest import FAST_SET, tiny_dataset

pytest.importorskip("av")
pytest.importorskip("cv2")


@pytest.mark.slow
def test_localize_one_video_writes_json_and_plot(tmp_path):
    from test_extract import make_video

    # a run trained on 1024-d features, the width of the I3D features extracted on the fly
    ann, feats = tiny_dataset(n_train=12, n_test=4, dim=1024)
    data = save_canonical(tmp_path / "data", ann, feats)
    run = tmp_path / "run"
    sets = sum((["--set", s] for s in FAST_SET + ["base.epochs=3", "train.epochs=1"]), [])
    assert main(["train", "--data", str(data), "--out", str(run), *sets]) == 0
    video = make_video(tmp_path / "clip.mp4", fps=30, seconds=3.0)
    pred, png = tmp_path / "clip.json", tmp_path / "clip.png"
    assert main(["localize", "--run", str(run), "--video", str(video), "--out", str(pred),
                 "--plot", str(png), "--random-weights", "--flow", "farneback",
                 "--resize", "64", "--crop", "64", "--set", "localize.short_videos=clip"]) == 0
    res = json.loads(pred.read_text())
    assert list(res["results"]) == ["clip"]
    for d in res["results"]["clip"]:
        assert 0 <= d["segment"][0] <= d["segment"][1] <= 3.0 + 1e-6
        assert d["label"] in ann.classes
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
