"""Speed of each stage of ``acn extract`` and what it costs per minute of video.

Stages: decoding (+ resampling to 25 fps, resize to short side 256), optical flow (TV-L1, DIS,
Farneback on 256-short-side frames, one thread per pair), I3D RGB and I3D flow (16 x 224 x 224
snippets, random weights: speed does not depend on the values), and end to end
(``extract_video``). A synthetic 640x360 30 fps video with moving shapes is made unless
``--video`` is given. One minute of video = 1500 frames at 25 fps = 93.75 snippets.

    python benchmarks/bench_extract.py [--device cuda] [--threads 0] [--seconds 8]
        [--flow-pairs 3] [--end-to-end dis]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from acn.extract import ExtractConfig, build_models, extract_video
from acn.extract.decode import VideoReader
from acn.extract.flow import make_flow, to_gray

FPS = 25.0
FRAMES_PER_MINUTE = 60 * FPS


def make_video(path: Path, seconds: float, w: int = 640, h: int = 360, fps: int = 30) -> Path:
    import cv2

    wr = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    rng = np.random.default_rng(0)
    bg = cv2.GaussianBlur((rng.random((h, w, 3)) * 255).astype(np.uint8), (0, 0), 8)
    for i in range(int(seconds * fps)):
        img = np.roll(bg, i, axis=1).copy()  # panning background
        cv2.circle(img, ((40 + 7 * i) % w, h // 2), 30, (255, 255, 255), -1)
        y = (20 + 5 * i) % h
        cv2.rectangle(img, (w // 2, y), (w // 2 + 50, y + 60), (0, 0, 255), -1)
        wr.write(img)
    wr.release()
    return path


def timed(fn, repeats: int, sync=lambda: None) -> float:
    best = float("inf")
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", type=Path, help="benchmark this video instead of a synthetic one")
    ap.add_argument("--seconds", type=float, default=8.0, help="synthetic video length")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument("--batch", type=int, default=1, help="snippets per I3D pass")
    ap.add_argument("--flow-pairs", type=int, default=3, help="TV-L1 pairs timed (~1 s each)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--end-to-end", default="dis", choices=("none", "tvl1", "dis", "farneback"),
                    help="also time extract_video with this flow method")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    import cv2

    print(f"CPU cores: {os.cpu_count()}, torch threads: {torch.get_num_threads()}, "
          f"torch {torch.__version__}, OpenCV {cv2.__version__}, device {args.device}"
          + (f" ({torch.cuda.get_device_name()})" if args.device == "cuda" else ""))
    rows: list[tuple[str, float, str]] = []  # (stage, frames per second, note)

    with tempfile.TemporaryDirectory() as tmp:
        video = args.video or make_video(Path(tmp) / "bench.mp4", args.seconds)
        # -- decode -------------------------------------------------------------------------
        t0 = time.perf_counter()
        with VideoReader(video, FPS, 256) as r:
            frames = [f for f in r.frames()]
            info = r.info
        dt = time.perf_counter() - t0
        src = f"{info.width}x{info.height} {info.source_fps:.0f} fps source, {info.backend}"
        rows.append(("decode + resample + resize", len(frames) / dt, src))
        grays = [to_gray(f) for f in frames]
        h, w = grays[0].shape
        # -- flow (one thread per pair; the pipeline runs one pair per core) -----------------
        for method in ("tvl1", "dis", "farneback"):
            fn = make_flow(method)
            n = args.flow_pairs if method == "tvl1" else min(20, len(grays) - 1)
            fn(grays[0], grays[1])  # warm-up
            t0 = time.perf_counter()
            for i in range(n):
                fn(grays[i], grays[i + 1])
            dt = time.perf_counter() - t0
            rows.append((f"flow {method}", n / dt, f"{w}x{h}, 1 thread"))
        # -- I3D ---------------------------------------------------------------------------
        dev = torch.device(args.device)
        sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
        models = build_models(ExtractConfig(random_weights=True, device=args.device))
        for name, model, c in (("I3D RGB", models.rgb, 3), ("I3D flow", models.flow, 2)):
            x = torch.rand(args.batch, c, 16, 224, 224, device=dev) * 2 - 1
            with torch.inference_mode():
                model(x)  # warm-up (cuDNN / oneDNN kernel selection)
                t = timed(lambda: model(x), args.repeats, sync)
            rows.append((name, 16 * args.batch / t, f"16x224x224, batch {args.batch}"))
        # -- end to end --------------------------------------------------------------------
        if args.end_to_end != "none":
            cfg = ExtractConfig(random_weights=True, device=args.device, flow=args.end_to_end)
            t0 = time.perf_counter()
            f = extract_video(video, cfg, models)
            dt = time.perf_counter() - t0
            rows.append((f"end to end ({args.end_to_end})", f.num_frames / dt,
                         f"{f.duration:.1f} s video, {f.num_snippets} snippets, "
                         f"{cfg.flow_workers or os.cpu_count()} flow threads"))

    print(f"\n{'stage':30s} {'frames/s':>10s} {'s per video minute':>19s}  note")
    for stage, fps, note in rows:
        print(f"{stage:30s} {fps:10.2f} {FRAMES_PER_MINUTE / fps:19.1f}  {note}")
    print("\n(s per video minute = seconds of this machine for 1500 frames at 25 fps; the flow "
          "rows are per thread, the pipeline runs one pair per core in parallel)")


if __name__ == "__main__":
    main()
