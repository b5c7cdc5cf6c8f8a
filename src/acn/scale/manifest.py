"""Manifests: the list of work items of a corpus-scale job, one entry per line.

An entry is a local path (relative to the manifest's folder) or a URI. Blank lines and lines
starting with ``#`` are skipped.

* ``extract``: each entry is a video file, a folder of videos, or a URI (``file://`` is read
  in place; other schemes are copied to a local temporary file with ``fsspec``).
* ``localize``: each entry is a feature folder (what ``acn extract``/``acn batch extract``
  write: ``DIR`` with ``features/{video}_rgb.npy``, or a folder of ``{video}_rgb.npy`` files),
  or one ``{video}_rgb.npy`` file; the ``{video}_flow.npy`` beside it is implied.

Video ids must be unique across the manifest: every output is stored by id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable
from urllib.parse import unquote, urlparse

from acn.errors import AcnError
from acn.extract.inputs import VIDEO_EXTENSIONS, take_shard

KINDS = ("extract", "localize")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
RGB_SUFFIX, FLOW_SUFFIX = "_rgb.npy", "_flow.npy"


@dataclass(frozen=True)
class Item:
    """One unit of work: a video to extract or a video's features to localize.

    ``source`` is a local path or a URI (extract), or the ``{video}_rgb.npy`` path (localize).
    """

    id: str
    source: str

    def is_uri(self) -> bool:
        return bool(_URI.match(self.source))


def is_uri(text: str) -> bool:
    return bool(_URI.match(text))


def uri_to_path(text: str) -> Path | None:
    """A ``file://`` URI (or a plain path) as a local path; None for other schemes."""
    if not is_uri(text):
        return Path(text)
    u = urlparse(text)
    if u.scheme == "file":
        return Path(unquote(u.path))
    return None


def _uri_stem(text: str) -> str:
    name = unquote(urlparse(text).path).rstrip("/").rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0] if "." in name else name


def read_entries(path: str | Path) -> list[str]:
    """The manifest's entries: URIs as written, local paths made absolute."""
    path = Path(path)
    if not path.is_file():
        raise AcnError(f"{path}: manifest not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise AcnError(f"{path}: manifest is not UTF-8 text") from None
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if is_uri(line):
            local = uri_to_path(line)
            out.append(str(local.absolute()) if local is not None else line)
        else:
            p = Path(line).expanduser()
            out.append(str((p if p.is_absolute() else path.parent / p).absolute()))
    if not out:
        raise AcnError(f"{path}: manifest has no entry")
    return out


def _video_items(entries: Iterable[str]) -> list[Item]:
    items = []
    for e in entries:
        if is_uri(e):
            items.append(Item(_uri_stem(e), e))
            continue
        p = Path(e)
        if p.is_dir():
            vids = sorted(f for f in p.iterdir()
                          if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS)
            if not vids:
                raise AcnError(f"{p}: folder holds no video file")
            items += [Item(v.stem, str(v)) for v in vids]
        else:  # a missing file fails on its own, with a message, when its turn comes
            items.append(Item(p.stem, str(p)))
    return items


def _feature_items(entries: Iterable[str]) -> list[Item]:
    items = []
    for e in entries:
        p = uri_to_path(e)
        if p is None:
            raise AcnError(f"{e}: localize reads local feature files; give a path (or file://)")
        if p.is_dir():
            d = p / "features" if (p / "features").is_dir() else p
            rgbs = sorted(d.glob(f"*{RGB_SUFFIX}"))
            if not rgbs:
                raise AcnError(f"{p}: no {{video}}{RGB_SUFFIX} feature files (in it or in "
                               "its features/ folder)")
            items += [Item(f.name[: -len(RGB_SUFFIX)], str(f)) for f in rgbs]
        elif p.name.endswith(RGB_SUFFIX):
            items.append(Item(p.name[: -len(RGB_SUFFIX)], str(p)))
        else:
            raise AcnError(f"{p}: a localize manifest lists feature folders or "
                           f"{{video}}{RGB_SUFFIX} files")
    return items


def read_manifest(path: str | Path, kind: str, shard: tuple[int, int] | None = None) -> list[Item]:
    """The sorted, de-duplicated items of a manifest (``kind``: extract | localize), then
    ``shard = (i, n)``: every n-th item from i (as ``acn extract --shard``)."""
    if kind not in KINDS:
        raise AcnError(f"unknown job kind {kind!r}; choose {' or '.join(KINDS)}")
    entries = read_entries(path)
    items = (_video_items if kind == "extract" else _feature_items)(entries)
    unique: dict[str, Item] = {}
    for it in items:
        old = unique.get(it.id)
        if old is not None and old.source != it.source:
            raise AcnError(f"{path}: two entries have the video id {it.id!r} ({old.source} and "
                           f"{it.source}); outputs are stored by id, so rename one")
        unique[it.id] = it
    return take_shard([unique[k] for k in sorted(unique)], shard)  # type: ignore[arg-type]
