"""The per-video work of a batch job, as plain functions (run in-process, in a process pool or
as Ray tasks: the same code everywhere).

Each work function takes ``(item, spec)`` and returns an :class:`ItemResult`:

* ``done``: outputs written; ``skipped``: outputs already there (idempotent reruns);
* ``failed``: a problem that another try will not fix (a broken video, a clash with earlier
  outputs): recorded, never retried.

A failure another try may fix (I/O and network errors, a lost GPU, out of memory) is raised
as :class:`TransientError`, which the runners retry (Ray: ``retry_exceptions``).
Expensive state (I3D weights, a trained run) is loaded once per worker process and cached.
"""

from __future__ import annotations

import dataclasses
import shutil
import socket
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from acn.errors import AcnError
from acn.fileio import read_json, write_json
from acn.scale.manifest import FLOW_SUFFIX, RGB_SUFFIX, Item

DETECTIONS_FORMAT = "acn-video-detections"
ALL_STREAMS = ("rgb", "flow", "fused")


class TransientError(Exception):
    """A failure worth retrying (raised by :func:`attempt` around I/O, network, OOM errors)."""


@dataclass(frozen=True)
class JobSpec:
    """What every item of a job shares (small and picklable: sent with each task).

    Attributes:
        kind: ``extract`` or ``localize``.
        out: output folder (on several machines: a path every worker can write).
        overwrite: redo items whose outputs exist (default: skip them).
        extract: extraction settings (``kind == "extract"``).
        run: trained run folder (``kind == "localize"``).
        overrides: ``localize.*``/``acn.*`` inference overrides (``KEY=VALUE``).
        threads: torch threads per worker (None: leave torch's default).
    """

    kind: str
    out: str
    overwrite: bool = False
    extract: Any = None  # acn.extract.ExtractConfig (kept lazy: importing it is cheap anyway)
    run: str | None = None
    overrides: tuple[str, ...] = ()
    threads: int | None = None


@dataclass
class ItemResult:
    id: str
    source: str
    status: str  # done | skipped | failed
    message: str = ""
    seconds: float = 0.0
    video_seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    host: str = ""


# -- per-process state ------------------------------------------------------------------------
_CACHE: dict[Any, Any] = {}


def _setup(spec: JobSpec) -> None:
    if spec.threads and _CACHE.get("threads") != spec.threads:
        import torch

        torch.set_num_threads(int(spec.threads))
        _CACHE["threads"] = spec.threads


def _models(cfg):
    key = ("i3d", cfg)
    if key not in _CACHE:
        from acn.extract import build_models

        _CACHE[key] = build_models(cfg)
    return _CACHE[key]


def _acn(run: str, overrides: tuple[str, ...]):
    key = ("acn", run, overrides)
    if key not in _CACHE:
        from acn.config import merge, parse_set
        from acn.pipeline import ACN

        model = ACN.load(Path(run))
        for item in overrides:
            if item.split(".", 1)[0] not in ("localize", "acn"):
                raise AcnError(f"--set {item}: only localize.* and acn.* can change at inference")
        if overrides:
            model.cfg = merge(model.cfg, parse_set(list(overrides)), "--set")
        _CACHE[key] = model
    return _CACHE[key]


# -- running one item -------------------------------------------------------------------------
def is_transient(e: BaseException) -> bool:
    """Worth another try: I/O, network and runtime (e.g. CUDA out-of-memory) errors, but not
    acn's input errors nor a file that is simply missing or unreadable by permission."""
    if isinstance(e, (AcnError, FileNotFoundError, IsADirectoryError, NotADirectoryError,
                      PermissionError)):
        return False
    return isinstance(e, (OSError, RuntimeError, TimeoutError, ConnectionError, MemoryError))


def _one_line(e: BaseException) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return msg if isinstance(e, AcnError) else f"{type(e).__name__}: {msg}"


def attempt(work: Callable[[Item, JobSpec], ItemResult], item: Item, spec: JobSpec) -> ItemResult:
    """One try of ``work`` on ``item``: a result, or :class:`TransientError` to retry."""
    t0 = time.perf_counter()
    try:
        _setup(spec)
        res = work(item, spec)
    except Exception as e:  # noqa: BLE001 - one broken video must not stop the job
        if is_transient(e):
            raise TransientError(f"{item.source}: {_one_line(e)}") from e
        msg = _one_line(e)
        res = ItemResult(item.id, item.source, "failed",
                         msg if item.source in msg else f"{item.source}: {msg}")
    res.seconds = res.seconds or time.perf_counter() - t0
    res.host = socket.gethostname()
    return res


# -- extraction -------------------------------------------------------------------------------
@contextmanager
def staged(item: Item) -> Iterator[Path]:
    """A local path for the item's video: the file itself, or a temporary copy of a URI
    (read with ``fsspec``: s3://, gs://, http(s):// ... as its plugins allow)."""
    from acn.scale.manifest import uri_to_path

    local = uri_to_path(item.source)
    if local is not None:
        yield local
        return
    try:
        import fsspec
    except ImportError:
        raise AcnError(f"{item.source}: reading URIs needs fsspec (pip install fsspec, plus "
                       "s3fs / gcsfs / aiohttp for its scheme)") from None
    suffix = Path(item.source.split("?", 1)[0]).suffix or ".mp4"
    with tempfile.TemporaryDirectory(prefix="acn-batch-") as tmp:
        path = Path(tmp) / f"{item.id}{suffix}"
        try:
            with fsspec.open(item.source, "rb") as src, open(path, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 22)
        except (ImportError, ValueError) as e:  # unknown scheme, missing plugin
            raise AcnError(f"{item.source}: cannot open ({e})") from None
        yield path


def extract_item(item: Item, spec: JobSpec) -> ItemResult:
    """Extract one video's two-stream features into ``spec.out`` (canonical layout)."""
    from acn.extract.pipeline import _settings_clash, extract_video, is_done, video_json_path, \
        write_video

    out, cfg = Path(spec.out), spec.extract
    if not spec.overwrite and is_done(out, item.id):
        try:
            clash = _settings_clash(read_json(video_json_path(out, item.id)), cfg)
        except AcnError:
            clash = None
        if clash:
            return ItemResult(item.id, item.source, "failed",
                              f"{item.source}: already extracted in {out} with {clash}; use "
                              "another --out or --overwrite")
        return ItemResult(item.id, item.source, "skipped")
    models = _models(cfg)
    with staged(item) as path:
        feats = extract_video(path, cfg, models)
    feats = dataclasses.replace(feats, video_id=item.id, source=item.source)
    write_video(out, feats, cfg, models)
    return ItemResult(item.id, item.source, "done", video_seconds=float(feats.duration),
                      warnings=list(feats.warnings))


# -- localization -----------------------------------------------------------------------------
def detections_path(out: str | Path, video_id: str) -> Path:
    return Path(out) / "detections" / f"{video_id}.json"


def _index_entry(folder: Path, vid: str) -> dict | None:
    """The video's entry in a canonical index.json of the feature folder (cached per file)."""
    for idx in (folder / "index.json", folder.parent / "index.json"):
        if idx.is_file():
            key = ("index", str(idx), idx.stat().st_mtime_ns)
            if key not in _CACHE:
                try:
                    _CACHE[key] = (read_json(idx) or {}).get("database") or {}
                except (AcnError, AttributeError):
                    _CACHE[key] = {}
            return _CACHE[key].get(vid)
    return None


def video_info(rgb_path: Path, vid: str, num_snippets: int) -> tuple[float, int, float]:
    """``(fps, frames_per_snippet, duration_s)`` of a feature file: from the extractor's
    ``{video}.json`` beside it, else the folder's ``index.json``, else W-TALC's 25 fps x 16."""
    meta = rgb_path.parent / f"{vid}.json"
    entry = None
    if meta.is_file():
        try:
            entry = read_json(meta)
        except AcnError:
            entry = None
    if not isinstance(entry, dict) or "fps" not in entry:
        entry = _index_entry(rgb_path.parent, vid) or {}
    fps = float(entry.get("fps") or 25.0)
    fpsn = int(entry.get("frames_per_snippet") or 16)
    duration = float(entry.get("duration") or num_snippets * fpsn / fps)
    return fps, fpsn, duration


def localize_item(item: Item, spec: JobSpec) -> ItemResult:
    """Localize one video's features with a trained run; writes ``out/detections/{id}.json``
    holding the detections (seconds) of the rgb, flow and fused streams."""
    from acn.data.annotations import Annotations, Video
    from acn.data.features import Dataset, MemoryStore, check_streams, load_npy

    target = detections_path(spec.out, item.id)
    settings = {"run": str(Path(spec.run).absolute()), "overrides": list(spec.overrides)}
    if not spec.overwrite and target.is_file():
        try:
            old = read_json(target)
            same = {k: old.get(k) for k in settings} == settings
        except (AcnError, AttributeError):
            same = False
        if same:
            return ItemResult(item.id, item.source, "skipped")
        return ItemResult(item.id, item.source, "failed",
                          f"{target}: localized earlier with another run or other --set "
                          "values; use another --out or --overwrite")
    model = _acn(spec.run, tuple(spec.overrides))
    rgb_path = Path(item.source)
    flow_path = rgb_path.with_name(rgb_path.name[: -len(RGB_SUFFIX)] + FLOW_SUFFIX)
    for p in (rgb_path, flow_path):
        if not p.is_file():
            raise AcnError(f"{p}: feature file not found")
    rgb, flow = check_streams(np.asarray(load_npy(rgb_path)), np.asarray(load_npy(flow_path)),
                              str(rgb_path), model.feature_dim)
    fps, fpsn, duration = video_info(rgb_path, item.id, rgb.shape[0])
    video = Video(id=item.id, subset="unlabeled", duration=duration, fps=fps,
                  frames_per_snippet=fpsn)
    ds = Dataset(Annotations(list(model.classes), {item.id: video}, "unlabeled", "unlabeled",
                             item.id), MemoryStore({item.id: (rgb, flow)}))
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dets = model.localize(ds, [item.id], ALL_STREAMS, progress=False)
    record = {"format": DETECTIONS_FORMAT, "version": 1, "video": item.id,
              "source": item.source, "duration": duration, "fps": fps,
              "frames_per_snippet": fpsn, **settings,
              "streams": {s: [{"label": lab, "score": sc, "segment": [st, en]}
                              for st, en, lab, sc in dets[s][item.id]] for s in ALL_STREAMS}}
    write_json(target, record, indent=None)
    return ItemResult(item.id, item.source, "done", video_seconds=duration,
                      warnings=[str(w.message) for w in caught])


WORK: dict[str, Callable[[Item, JobSpec], ItemResult]] = {
    "extract": extract_item,
    "localize": localize_item,
}
