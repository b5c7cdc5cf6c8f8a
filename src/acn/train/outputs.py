"""What a trained base model says about videos, and what is measured on it.

:class:`BaseOutputs` (SCP ``(C, T)``, attention ``(T,)``, video scores ``(C,)`` of one video
and one stream) is what ACN's proposal stage and the CAS baselines read (of both streams at
once: their weighted mean, :func:`mean_outputs`); :func:`calibrate_attention` turns the training videos' attention into a threshold,
:func:`classification_map` measures video classification against the weak labels, and
:func:`save_outputs` / :func:`load_outputs` keep the outputs of the training videos in a run
folder (``.npz``, no pickles). Units: snippets throughout.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from acn.batching import _ids
from acn.data.annotations import Video
from acn.data.features import Dataset
from acn.errors import AcnError
from acn.fileio import ensure_dir, verify_checksum, write_bytes


@dataclass
class BaseOutputs:
    """A base model's outputs for one video and one stream.

    Attributes:
        scp: ``(C, T)`` float32 snippet class probabilities.
        attention: ``(T,)`` float32 raw attention logits (our model's own scale).
        video_scores: ``(C,)`` float32 video-level class probabilities.
    """

    scp: np.ndarray
    attention: np.ndarray
    video_scores: np.ndarray



def mean_outputs(outputs: dict[str, dict[str, BaseOutputs]], vid: str,
                 rgb_weight: float = 0.5) -> BaseOutputs:
    """The weighted mean ``w * rgb + (1 - w) * flow`` of both streams' base outputs for one
    video (early fusion of the CAS; ``w`` = ``localize.rgb_weight``)."""
    w = float(rgb_weight)
    r, f = outputs["rgb"][vid], outputs["flow"][vid]
    return BaseOutputs(scp=w * r.scp + (1 - w) * f.scp,
                       attention=w * r.attention + (1 - w) * f.attention,
                       video_scores=w * r.video_scores + (1 - w) * f.video_scores)

def label_matrix(ds: Dataset, ids: Sequence[str]) -> np.ndarray:
    """``(N, C)`` float32 multi-hot video labels of ``ids``."""
    y = np.zeros((len(ids), len(ds.classes)), dtype=np.float32)
    for i, vid in enumerate(ids):
        if vid not in ds.annotations.videos:
            raise AcnError(f"{ds.root or ds.annotations.name}: video {vid!r} is not in the "
                           "annotations")
        for lab in ds.video(vid).labels:
            y[i, ds.annotations.class_index(lab, where=f"labels of video {vid!r}")] = 1.0
    return y


def calibrate_attention(outputs: dict[str, BaseOutputs], percentile: float) -> float:
    """Attention threshold on our model's raw attention scale.

    The paper's thresholds (5 Flow, 7 RGB) are on UntrimmedNet's scale; ours differs, so the
    threshold is the ``percentile`` (0-100) of all snippets' attention in ``outputs``, which
    must come from TRAINING videos (never the test subset).
    """
    if not outputs:
        raise AcnError("calibrate_attention: no outputs given")
    if not 0.0 <= percentile <= 100.0:
        raise AcnError(f"calibrate_attention: percentile must be in [0, 100], got {percentile}")
    att = np.concatenate([o.attention.ravel() for o in outputs.values()])
    return float(np.percentile(att, percentile))


def average_precision(scores: np.ndarray, positives: np.ndarray) -> float:
    """Non-interpolated AP: mean precision at the rank of each positive (scores descending)."""
    order = np.argsort(-scores, kind="stable")
    hit = positives[order].astype(bool)
    if not hit.any():
        return float("nan")
    prec = np.cumsum(hit) / np.arange(1, len(hit) + 1)
    return float(prec[hit].mean())


def classification_map(outputs: dict[str, BaseOutputs], ds: Dataset,
                       video_ids: Iterable[str | Video]) -> float:
    """Video classification mAP: mean over classes with a positive video of the AP of the
    video scores against the video-level labels of ``video_ids``."""
    ids = _ids(video_ids)
    missing = [v for v in ids if v not in outputs]
    if missing:
        raise AcnError(f"classification_map: no base outputs for videos {missing[:3]}")
    y = label_matrix(ds, ids)
    s = np.stack([outputs[v].video_scores for v in ids])
    aps = [average_precision(s[:, c], y[:, c]) for c in range(y.shape[1]) if y[:, c].any()]
    if not aps:
        raise AcnError("classification_map: none of the videos has a label")
    return float(np.mean(aps))


# -- storage ---------------------------------------------------------------------------------
def _output_path(directory: Path, vid: str) -> Path:
    if not vid or "/" in vid or "\\" in vid or vid in (".", ".."):
        raise AcnError(f"video id {vid!r} cannot be used as a file name")
    return Path(directory) / f"{vid}.npz"


def save_outputs(directory: str | Path, outputs: dict[str, BaseOutputs]) -> None:
    """Write one ``{video}.npz`` (scp, attention, video_scores) per video, atomically, with
    a SHA-256 sidecar that :func:`load_outputs` checks."""
    directory = ensure_dir(Path(directory))
    for vid, o in outputs.items():
        buf = io.BytesIO()
        np.savez(buf, scp=np.asarray(o.scp, np.float32),
                 attention=np.asarray(o.attention, np.float32),
                 video_scores=np.asarray(o.video_scores, np.float32))
        write_bytes(_output_path(directory, vid), buf.getbuffer(), checksum=True)


def load_outputs(directory: str | Path, ids: Iterable[str | Video]) -> dict[str, BaseOutputs]:
    """Read the ``.npz`` files :func:`save_outputs` wrote for ``ids`` (no pickles)."""
    out = {}
    for vid in _ids(ids):
        path = _output_path(Path(directory), vid)
        if not path.is_file():
            raise AcnError(f"{path}: base model outputs missing for video {vid!r}")
        verify_checksum(path, "base-output file")
        try:
            with np.load(path, allow_pickle=False) as z:
                o = BaseOutputs(scp=z["scp"], attention=z["attention"],
                                video_scores=z["video_scores"])
        except (KeyError, ValueError, OSError, EOFError) as e:
            raise AcnError(f"{path}: not a valid base-output file ({e})") from None
        if (o.scp.ndim != 2 or o.attention.shape != (o.scp.shape[1],)
                or o.video_scores.shape != (o.scp.shape[0],)):
            raise AcnError(f"{path}: inconsistent shapes scp {o.scp.shape}, attention "
                           f"{o.attention.shape}, video_scores {o.video_scores.shape}")
        out[vid] = o
    return out
