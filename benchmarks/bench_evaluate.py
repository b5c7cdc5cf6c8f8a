"""Time ``acn.evaluate`` on 100,000 random detections over the real THUMOS14 test ground truth.

Run by hand: ``python benchmarks/bench_evaluate.py [--n 100000] [--seed 0]``. Half of the
detections are jittered copies of ground-truth segments (same class: they exercise the
matching), half are random segments of random classes on random test videos. Prints seconds
per step; asserts nothing.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from importlib import resources
from pathlib import Path

import numpy as np

from acn.evaluate import Detections, evaluate, load_results, save_results


def thumos14_ground_truth():
    folder = Path(str(resources.files("acn") / "resources" / "thumos14"
                      / "Thumos14reduced-Annotations"))
    from acn.data.wtalc import load_wtalc_annotations

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the known defects of THUMOS14-reduced
        return load_wtalc_annotations(folder, allow_pickle=True)  # our own package data


def random_detections(gt, n: int, seed: int) -> Detections:
    rng = np.random.default_rng(seed)
    videos = gt.subset(gt.test_subset)
    segs = [(v.id, s.start, s.end, s.label) for v in videos for s in v.segments]
    n_copy = n // 2
    pick = rng.integers(len(segs), size=n_copy)
    vid = [segs[i][0] for i in pick]
    lab = [segs[i][3] for i in pick]
    s = np.array([segs[i][1] for i in pick])
    e = np.array([segs[i][2] for i in pick])
    length = e - s
    s = s + rng.normal(0, 0.3, n_copy) * length
    e = e + rng.normal(0, 0.3, n_copy) * length
    s, e = np.minimum(s, e), np.maximum(s, e)
    n_rand = n - n_copy
    vi = rng.integers(len(videos), size=n_rand)
    vid += [videos[i].id for i in vi]
    lab += [gt.classes[i] for i in rng.integers(len(gt.classes), size=n_rand)]
    dur = np.array([videos[i].duration for i in vi])
    rs = rng.random(n_rand) * dur
    re = np.minimum(rs + rng.exponential(5.0, n_rand), dur)
    return Detections.from_arrays(vid, lab, np.concatenate([s, rs]), np.concatenate([e, re]),
                                  rng.random(n))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    gt = thumos14_ground_truth()
    dets = random_detections(gt, args.n, args.seed)
    print(f"{len(dets)} detections on {len(dets.video_names)} videos; ground truth: "
          f"{sum(len(v.segments) for v in gt.subset(gt.test_subset))} segments")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pred.json"
        t = time.perf_counter()
        save_results(path, dets)
        print(f"save_results: {time.perf_counter() - t:.3f} s "
              f"({path.stat().st_size / 1e6:.1f} MB)")
        t = time.perf_counter()
        dets = load_results(path)
        print(f"load_results: {time.perf_counter() - t:.3f} s")
    for protocol in ("thumos14", "activitynet"):
        t = time.perf_counter()
        res = evaluate(gt, dets, protocol=protocol)
        dt = time.perf_counter() - t
        print(f"evaluate {protocol:<11}: {dt:.3f} s, {len(res.tious)} tIoUs, "
              f"mAP@0.5 {100 * res.map[0.5]:.2f} %")


if __name__ == "__main__":
    main()
