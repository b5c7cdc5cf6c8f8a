"""From a video file to I3D-ready snippets: decode, resample, resize, flow, crop, group.

A snippet is ``frames_per_snippet`` consecutive resampled frames (non-overlapping). The flow of
frame ``i`` is the flow from frame ``i`` to frame ``i + 1``, computed on the whole resized frame
and then cropped like the RGB frame. Two ends need a rule:

* the last frame of the video has no successor: its flow is zero (no motion is observed);
* the last snippet is usually partial: it is padded to full length by repeating its last RGB
  frame, with zero flow for the padded frames (a repeated frame does not move). So a video of
  N resampled frames gives ``ceil(N / frames_per_snippet)`` snippets and every frame is seen.

Everything is streamed: at most a batch of snippets (plus the flow jobs in flight) is in
memory, whatever the video's length. Flow pairs are independent, so they run in a thread pool
(OpenCV releases the GIL; TV-L1 itself is single-threaded).
"""

from __future__ import annotations

import collections
import os
import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from acn.extract.config import ExtractConfig
from acn.extract.decode import VideoReader, center_crop
from acn.extract.flow import make_flow, normalize_flow, to_gray


@dataclass
class SnippetBatch:
    """``rgb``: uint8 ``(B, F, S, S, 3)``; ``flow``: float32 ``(B, F, S, S, 2)`` in [-1, 1];
    ``end_time``: seconds of video covered once this batch is done (for progress)."""

    rgb: np.ndarray
    flow: np.ndarray
    end_time: float


def default_flow_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 16))


def iter_snippet_batches(reader: VideoReader, cfg: ExtractConfig) -> Iterator[SnippetBatch]:
    """Stream ``reader``'s frames as batches of at most ``cfg.batch_size`` snippets."""
    F, crop = cfg.frames_per_snippet, cfg.crop
    workers = cfg.flow_workers or default_flow_workers()
    local = threading.local()

    def flow_job(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        fn = getattr(local, "fn", None)
        if fn is None:  # one OpenCV flow object per thread: they are not thread-safe
            fn = local.fn = make_flow(cfg.flow)
        return normalize_flow(center_crop(fn(a, b), crop))

    make_flow(cfg.flow)  # fail early (missing OpenCV contrib) before decoding anything
    rgb_buf: list[np.ndarray] = []
    flow_buf: list[np.ndarray] = []
    pending: collections.deque[Future] = collections.deque()
    batch_rgb: list[np.ndarray] = []
    batch_flow: list[np.ndarray] = []
    n_frames = 0
    n_snippets = 0

    def take_snippet() -> None:
        nonlocal n_snippets
        n_snippets += 1
        batch_rgb.append(np.stack(rgb_buf[:F]))
        batch_flow.append(np.stack(flow_buf[:F]))
        del rgb_buf[:F], flow_buf[:F]

    def batch() -> SnippetBatch:
        covered = min(n_snippets * F, n_frames) / cfg.fps
        b = SnippetBatch(np.stack(batch_rgb), np.stack(batch_flow), covered)
        batch_rgb.clear()
        batch_flow.clear()
        return b

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="acn-flow") as pool:
        prev = None
        for frame in reader.frames():
            n_frames += 1
            gray = to_gray(frame)
            if prev is not None:
                pending.append(pool.submit(flow_job, prev, gray))
            prev = gray
            rgb_buf.append(np.ascontiguousarray(center_crop(frame, crop)))
            # keep the pool busy but bound the frames held in memory
            while len(pending) > 2 * workers or (pending and pending[0].done()):
                flow_buf.append(pending.popleft().result())
            while len(flow_buf) >= F:
                take_snippet()
                if len(batch_rgb) == cfg.batch_size:
                    yield batch()
        while pending:
            flow_buf.append(pending.popleft().result())
    if not rgb_buf:
        return
    h, w = rgb_buf[-1].shape[:2]
    zero = np.zeros((h, w, 2), np.float32)
    flow_buf.append(zero)  # the last frame has no successor
    while rgb_buf:
        pad = F - len(rgb_buf)
        if pad > 0:  # the last, partial snippet
            rgb_buf.extend([rgb_buf[-1]] * pad)
            flow_buf.extend([zero] * pad)
        take_snippet()
        if len(batch_rgb) == cfg.batch_size:
            yield batch()
    if batch_rgb:
        yield batch()


class Prefetch:
    """Run an iterator in a background thread, ``depth`` items ahead (decoding and flow overlap
    the I3D forward passes). Exceptions are re-raised in the consumer."""

    _END = object()

    def __init__(self, make: Callable[[], Iterator], depth: int = 2) -> None:
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(make,), daemon=True,
                                        name="acn-decode")
        self._thread.start()

    def _put(self, item: tuple) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, make: Callable[[], Iterator]) -> None:
        it = None
        try:
            it = make()
            for item in it:
                if not self._put(("item", item)):
                    return
            self._put(("end", None))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            self._put(("error", e))
        finally:
            if it is not None and hasattr(it, "close"):
                it.close()

    def __iter__(self) -> Iterator:
        while True:
            kind, value = self._q.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value

    def close(self) -> None:
        self._stop.set()
        while True:  # unblock a producer waiting on a full queue
            try:
                self._q.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout=30)
