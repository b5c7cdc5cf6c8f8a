"""Timeline plots: ground truth, SCP and attention per stream, detections per stream.

The x axis is the video's time in SECONDS (snippet i is drawn over
[i, i+1) * frames_per_snippet / fps).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from acn.data.annotations import Video
from acn.fileio import write_bytes

Detection = tuple[float, float, str, float]


def plot_timeline(out: Path, video: Video, classes: Sequence[str],
                  outputs: Mapping[str, object] | None = None,
                  detections: Mapping[str, Sequence[Detection]] | None = None,
                  top: int = 5, title: str | None = None) -> Path:
    """Write a PNG timeline of one video.

    Args:
        out: PNG path (written atomically).
        video: the video (its segments are drawn as ground truth when present).
        classes: class names (index -> name) of the model.
        outputs: ``{stream: BaseOutputs}`` with ``scp`` (C, T), ``attention`` (T,),
            ``video_scores`` (C,); the SCP of the classes in the ground truth or, without it,
            of the top-scoring class is drawn.
        detections: ``{stream name: [(start_s, end_s, label, score), ...]}``; the ``top``
            highest-scoring detections of each are drawn, opacity by rank.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    outputs = dict(outputs or {})
    detections = dict(detections or {})
    rows = 1 + 2 * len(outputs) + len(detections)
    fig, axes = plt.subplots(rows, 1, figsize=(12, 1.0 + 0.9 * rows), sharex=True, squeeze=False)
    axes = axes[:, 0]
    dur = video.duration or max((s.end for s in video.segments), default=1.0)
    labels_drawn = sorted({s.label for s in video.segments})
    colours = {c: plt.cm.tab10(i % 10) for i, c in enumerate(sorted(set(classes)))}

    def bars(ax, items, name):
        for k, (s, e, lab, alpha) in enumerate(items):
            ax.broken_barh([(s, max(e - s, 1e-3))], (0.1, 0.8), color=colours.get(lab, "grey"),
                           alpha=alpha)
        ax.set_yticks([])
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)

    bars(axes[0], [(s.start, s.end, s.label, 0.9) for s in video.segments], "ground truth")
    for a, b in video.ambiguous:
        axes[0].broken_barh([(a, b - a)], (0.1, 0.8), color="lightgrey", hatch="//", alpha=0.6)
    row = 1
    for stream, o in outputs.items():
        scp = np.asarray(o.scp)
        T = scp.shape[1]
        t = np.arange(T + 1) * video.frames_per_snippet / video.fps
        show = [classes.index(c) for c in labels_drawn if c in classes] or \
            [int(np.argmax(o.video_scores))]
        ax = axes[row]
        for c in show:
            ax.stairs(scp[c], t, color=colours.get(classes[c], "k"), label=classes[c])
        ax.set_ylim(0, 1.05)
        ax.set_ylabel(f"{stream} SCP", rotation=0, ha="right", va="center", fontsize=8)
        ax.legend(loc="upper right", fontsize=6)
        ax = axes[row + 1]
        ax.stairs(np.asarray(o.attention), t, color="k")
        ax.set_ylabel(f"{stream} attention", rotation=0, ha="right", va="center", fontsize=8)
        row += 2
    for name, dets in detections.items():
        best = sorted(dets, key=lambda d: -d[3])[:top]
        bars(axes[row], [(s, e, lab, max(0.25, 0.9 - 0.15 * k)) for k, (s, e, lab, _) in enumerate(best)],
             f"{name} top {top}")
        row += 1
    axes[-1].set_xlim(0, dur)
    axes[-1].set_xlabel("seconds")
    fig.suptitle(title or f"{video.id} ({', '.join(video.labels) or 'unlabelled'})", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    write_bytes(Path(out), buf.getbuffer())
    return Path(out)
