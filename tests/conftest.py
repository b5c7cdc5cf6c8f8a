"""Shared fixtures: a tiny, easy two-stream dataset with planted actions, and a fast config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from acn.data.annotations import Annotations, Segment, Video
from acn.data.canonical import save_canonical
from acn.data.features import Dataset, MemoryStore

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def tiny_dataset(n_train: int = 24, n_test: int = 12, dim: int = 16, seed: int = 0,
                 classes: tuple[str, ...] = ("Jump", "Run", "Throw")) -> tuple[Annotations, dict]:
    """Videos of 40-90 snippets with one or two actions of one class each.

    Inside an action both streams carry a class-specific non-negative pattern (Flow stronger
    than RGB); elsewhere features are non-negative noise. 25 fps, 16-frame snippets.
    """
    rng = np.random.default_rng(seed)
    patterns = rng.uniform(0, 1, (2, len(classes), dim)) * (rng.uniform(0, 1, (2, len(classes), dim)) > 0.6)
    videos, feats = {}, {}
    for i in range(n_train + n_test):
        subset = "validation" if i < n_train else "test"
        T = int(rng.integers(40, 90))
        c = int(rng.integers(len(classes)))
        segs, streams = [], [rng.uniform(0, 0.3, (T, dim)) for _ in range(2)]
        n_act = int(rng.integers(1, 3))
        starts = np.sort(rng.choice(np.arange(2, T - 14, 14), n_act, replace=False))
        for s in starts:
            length = int(rng.integers(5, 12))
            for k, gain in ((0, 0.7), (1, 1.0)):
                streams[k][s:s + length] += gain * patterns[k, c]
            segs.append(Segment(float(s) * 16 / 25, float(s + length) * 16 / 25, classes[c]))
        vid = f"video_{subset}_{i:04d}"
        videos[vid] = Video(vid, subset, T * 16 / 25, (classes[c],), segs)
        feats[vid] = (streams[0].astype(np.float32), streams[1].astype(np.float32))
    return Annotations(list(classes), videos, "validation", "test", "tiny"), feats


@pytest.fixture(scope="session")
def tiny():
    ann, feats = tiny_dataset()
    return Dataset(ann, MemoryStore(feats))


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory):
    ann, feats = tiny_dataset()
    root = tmp_path_factory.mktemp("tiny_canonical")
    save_canonical(root, ann, feats)
    return root


# A config small enough for a test: few epochs, narrow nets, anchors that fit short videos.
FAST_SET = [
    "base.epochs=25", "base.hidden=32", "base.batch_size=4", "base.dropout=0.2",
    "acn.anchors=[2, 4, 8]", "acn.filters=16", "acn.alpha=0.8",
    "train.optimizer=adam", "train.lr=0.001", "train.epochs=2",
]


def one_class_video(scp: np.ndarray, seed: int = 0):
    """Inputs of :func:`acn.localize.video.score_candidates` for one video of one class with
    the given ``(1, T)`` SCP: two streams of random 5-d features, flat attention, video score
    0.9. Returns ``(feats, out)``."""
    from types import SimpleNamespace

    import torch

    rng = np.random.default_rng(seed)
    T = scp.shape[1]
    feats = [torch.from_numpy(rng.normal(size=(T, 5)).astype(np.float32)) for _ in range(2)]
    out = SimpleNamespace(scp=scp, attention=np.zeros(T, np.float32),
                          video_scores=np.array([0.9], np.float32))
    return feats, out


def score_one_video(cfg, feats, out):
    """:func:`acn.localize.video.score_candidates` of one video from :func:`one_class_video`
    (no regression, both streams weighted equally)."""
    from acn.localize.video import score_candidates

    return score_candidates(cfg, feats, out, {8: None}, float("-inf"), group_weights=[0.5, 0.5])


@pytest.fixture()
def fast_cfg():
    from acn.config import resolve

    return resolve(overrides=FAST_SET)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module: on a shared 2-core machine torch's default threads fight
    each other and make tiny models' training several times slower."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
