"""Video decoding resampled to a fixed frame rate by timestamps, streamed frame by frame.

For each output time ``k / fps`` (k = 0, 1, ...) the frame *shown* at that time is taken: the
last decoded frame whose presentation time is <= ``k / fps`` (the first frame for times before
it). Output times run while ``k / fps`` is before the end of the last frame, so a video of
duration ``d`` seconds yields ``ceil(d * fps)`` frames whatever its own (even variable) frame
rate. Times are exact fractions (no float drift over hour-long videos) and start at the
stream's start time, so second 0 is the first frame of the video track.

PyAV is the decoder; OpenCV's ``VideoCapture`` is the fallback when PyAV is not installed or
cannot open a file. Frames are converted to RGB and resized only when they are emitted, and
never more than the current frame is kept in memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, Iterator, TypeVar

import numpy as np

from acn.errors import AcnError
from acn.extract._deps import have_av, require_av, require_cv2

X = TypeVar("X")

# A video ending less than this fraction short of its container's stated duration is fine;
# shorter means the file is probably truncated (recorded as a warning, features still written).
_TRUNCATION_RATIO = 0.9


def _fraction(x: float | Fraction) -> Fraction:
    # str() first so that 29.97 becomes 2997/100 rather than the binary expansion of the float.
    return x if isinstance(x, Fraction) else Fraction(str(x))


def output_times(duration: float, fps: float) -> np.ndarray:
    """Times in seconds, shape ``(ceil(duration * fps),)``, of the resampled frames."""
    n = math.ceil(_fraction(duration) * _fraction(fps))
    return np.arange(n, dtype=np.float64) / float(fps)


def resample_by_timestamps(timed: Iterable[tuple[Fraction, X]], fps: float,
                           end_time: Callable[[], Fraction]) -> Iterator[X]:
    """Yield, for each output time ``k / fps``, the item shown at that time.

    Args:
        timed: ``(presentation_time_s, item)`` pairs in presentation order.
        fps: output frame rate.
        end_time: called after ``timed`` is exhausted; the time (s) the last item stops showing.
    """
    step = 1 / _fraction(fps)
    k = 0
    current: X | None = None
    have = False
    for t, item in timed:
        if have:
            # every output time before this frame's time shows the previous frame
            while k * step < t:
                yield current  # type: ignore[misc]
                k += 1
        current, have = item, True
    if not have:
        return
    end = end_time()
    while k * step < end:
        yield current  # type: ignore[misc]
        k += 1


def resized_shape(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    """``(width, height)`` after scaling the short side to ``short_side`` (aspect kept)."""
    if short_side is None:
        return width, height
    s = short_side / min(width, height)
    return max(short_side, round(width * s)), max(short_side, round(height * s))


def center_crop(frame: np.ndarray, size: int | None) -> np.ndarray:
    """Central ``size x size`` window of an ``(H, W, ...)`` array (the array itself if None)."""
    if size is None:
        return frame
    h, w = frame.shape[:2]
    if size > h or size > w:
        raise AcnError(f"crop {size} is larger than the frame ({w}x{h}); lower --crop or raise "
                       "--resize")
    y, x = (h - size) // 2, (w - size) // 2
    return frame[y:y + size, x:x + size]


@dataclass
class VideoInfo:
    """What the container says about the video track, before decoding."""

    path: Path
    backend: str
    width: int
    height: int
    source_fps: float | None
    stated_duration: float | None


@dataclass
class _Lazy:
    """A decoded frame converted to a resized RGB array on first use (dropped frames never are)."""

    convert: Callable[[], np.ndarray]
    _array: np.ndarray | None = field(default=None, repr=False)

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            self._array = self.convert()
        return self._array


class VideoReader:
    """Stream a video's frames resampled to ``fps`` as uint8 RGB ``(H, W, 3)`` arrays.

    ``resize`` scales the short side (aspect kept); cropping is left to the caller because
    optical flow is computed on the whole resized frame. After :meth:`frames` is exhausted,
    :attr:`num_frames` and :attr:`duration` (seconds) describe what was decoded.

    Usage::

        with VideoReader(path, fps=25, resize=256) as r:
            for rgb in r.frames(): ...
    """

    def __init__(self, path: str | Path, fps: float, resize: int | None = None,
                 backend: str = "auto") -> None:
        self.path = Path(path)
        self.fps = float(fps)
        self.resize = resize
        self.num_frames = 0
        self.duration = 0.0
        self.warnings: list[str] = []
        if not self.path.exists():
            raise AcnError(f"{self.path}: no such file")
        if self.path.is_dir():
            raise AcnError(f"{self.path}: is a folder, not a video file")
        if backend not in ("auto", "pyav", "opencv"):
            raise AcnError(f"unknown decoding backend {backend!r} (auto, pyav, opencv)")
        self._container = None
        self._cap = None
        self._invalid_data = False
        if backend == "pyav" or (backend == "auto" and have_av()):
            try:
                self._open_av()
            except AcnError:
                # OpenCV gets a try only where FFmpeg did not call the data invalid (e.g. a
                # codec missing from PyAV's build): its bundled FFmpeg would refuse it too
                if backend == "pyav" or self._invalid_data or not self._opencv_can_open():
                    raise
                self._open_cv2()
        else:
            self._open_cv2()

    # -- opening --------------------------------------------------------------------------
    def _open_av(self) -> None:
        av = require_av()
        try:
            container = av.open(str(self.path), metadata_errors="ignore")
        except av.FFmpegError as e:
            self._invalid_data = isinstance(e, av.InvalidDataError)
            raise AcnError(f"{self.path}: not a readable video ({_ff_msg(e)})") from None
        except (OSError, UnicodeDecodeError) as e:
            raise AcnError(f"{self.path}: cannot open ({e})") from None
        if not container.streams.video:
            container.close()
            raise AcnError(f"{self.path}: has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame + slice threads: several times faster on long GOPs
        tb = stream.time_base
        stated = None
        if stream.duration is not None and tb is not None:
            stated = float(stream.duration * tb)
        elif container.duration is not None:
            stated = container.duration / av.time_base
        rate = stream.average_rate or stream.guessed_rate
        width, height = stream.codec_context.width, stream.codec_context.height
        if not width or not height:
            container.close()
            raise AcnError(f"{self.path}: video stream has no frame size (corrupt header?)")
        self._container, self._stream = container, stream
        self.info = VideoInfo(self.path, "pyav", width, height,
                              float(rate) if rate else None, stated)

    def _opencv_can_open(self) -> bool:
        try:
            cv2 = require_cv2("video decoding")
        except AcnError:
            return False
        cap = cv2.VideoCapture(str(self.path))
        ok = cap.isOpened() and cap.get(cv2.CAP_PROP_FRAME_WIDTH) > 0
        cap.release()
        return bool(ok)

    def _open_cv2(self) -> None:
        cv2 = require_cv2("video decoding without PyAV")
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened() or cap.get(cv2.CAP_PROP_FRAME_WIDTH) <= 0:
            cap.release()
            raise AcnError(f"{self.path}: not a readable video (OpenCV cannot open it)")
        fps = cap.get(cv2.CAP_PROP_FPS) or None
        n = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        stated = n / fps if fps and n > 0 else None
        self._cap = cap
        self.info = VideoInfo(self.path, "opencv", int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                              int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), fps, stated)

    # -- decoding -------------------------------------------------------------------------
    def _resizer(self, width: int, height: int) -> Callable[[np.ndarray], np.ndarray]:
        if self.resize is None:
            return lambda a: a
        cv2 = require_cv2("frame resizing")
        w, h = resized_shape(width, height, self.resize)
        if (w, h) == (width, height):
            return lambda a: a
        # INTER_AREA when shrinking (anti-aliased), bilinear when enlarging
        interp = cv2.INTER_AREA if w < width else cv2.INTER_LINEAR
        return lambda a: cv2.resize(a, (w, h), interpolation=interp)

    def _timed_av(self) -> Iterator[tuple[Fraction, _Lazy]]:
        av = require_av()
        stream = self._stream
        tb = stream.time_base
        rate = stream.average_rate or stream.guessed_rate
        default_dur = Fraction(1, 1) / Fraction(rate) if rate else 1 / _fraction(self.fps)
        origin = None if stream.start_time is None else stream.start_time * tb
        last_t = None
        self._last_end = Fraction(0)
        it = self._container.decode(stream)
        while True:
            try:
                frame = next(it)
            except StopIteration:
                return
            except av.FFmpegError as e:
                where = f" after {float(last_t):.2f} s" if last_t is not None else ""
                raise AcnError(f"{self.path}: decoding failed{where} ({_ff_msg(e)})") from None
            if frame.pts is not None:
                t = frame.pts * tb
            else:
                t = (last_t + default_dur) if last_t is not None else Fraction(0)
            if origin is None:
                origin = t
            t = t - origin
            if last_t is not None and t < last_t:  # broken timestamps: keep order monotone
                t = last_t
            dur = frame.duration * tb if frame.duration else default_dur
            self._last_end = max(self._last_end, t + dur)
            last_t = t
            resize = self._resizer(frame.width, frame.height)
            yield t, _Lazy(lambda f=frame, r=resize: r(f.to_ndarray(format="rgb24")))

    def _timed_cv2(self) -> Iterator[tuple[Fraction, _Lazy]]:
        cv2 = require_cv2("video decoding")
        cap = self._cap
        default_dur = 1 / _fraction(self.info.source_fps or self.fps)
        origin = None
        last_t = None
        self._last_end = Fraction(0)
        while True:
            ok, bgr = cap.read()
            if not ok:
                return
            ms = cap.get(cv2.CAP_PROP_POS_MSEC)
            t = _fraction(ms) / 1000 if ms >= 0 else (
                last_t + default_dur if last_t is not None else Fraction(0))
            if origin is None:
                origin = t
            t = t - origin
            if last_t is not None and t <= last_t:
                t = last_t + default_dur  # OpenCV sometimes repeats a timestamp
            self._last_end = t + default_dur
            last_t = t
            resize = self._resizer(bgr.shape[1], bgr.shape[0])
            yield t, _Lazy(lambda a=bgr, r=resize: r(cv2.cvtColor(a, cv2.COLOR_BGR2RGB)))

    def frames(self) -> Iterator[np.ndarray]:
        """Yield resampled, resized uint8 RGB frames ``(H, W, 3)``, one per ``1 / fps`` s."""
        timed = self._timed_av() if self._container is not None else self._timed_cv2()
        n = 0
        for lazy in resample_by_timestamps(timed, self.fps, lambda: self._last_end):
            n += 1
            self.num_frames = n
            yield lazy.array
        self.duration = float(self._last_end) if n else 0.0
        if n == 0:
            raise AcnError(f"{self.path}: no video frame could be decoded")
        stated = self.info.stated_duration
        if stated and self.duration < _TRUNCATION_RATIO * stated:
            self.warnings.append(
                f"decoded {self.duration:.2f} s of the {stated:.2f} s the file states "
                "(truncated or damaged file?)")

    # -- lifetime -------------------------------------------------------------------------
    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _ff_msg(e: Exception) -> str:
    # FFmpegError's str() repeats the file name; its strerror is the useful part
    return getattr(e, "strerror", None) or str(e)
