"""Which video files to extract: expand folders and list files, de-duplicate, sort, shard."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from acn.errors import AcnError

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg",
                              ".flv", ".wmv", ".3gp", ".ts", ".ogv"})
LIST_EXTENSIONS = frozenset({".txt", ".lst", ".list"})


def read_list_file(path: Path) -> list[Path]:
    """Paths listed one per line; blank lines and ``#`` comments are skipped; relative paths
    are relative to the list file's folder."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise AcnError(f"{path}: list file is not UTF-8 text") from None
    except OSError as e:
        raise AcnError(f"{path}: cannot read list file ({e.strerror})") from None
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            p = Path(line).expanduser()
            out.append(p if p.is_absolute() else path.parent / p)
    return out


def collect_videos(items: Iterable[str | Path]) -> list[Path]:
    """Expand the inputs into a sorted, de-duplicated list of video paths.

    Each item is a video file, a list file (``.txt``/``.lst``/``.list``: one path per line) or a
    folder (its files with a video extension, not recursive). Missing video files are kept:
    they fail one by one with a clear message instead of stopping the whole run.
    """
    found: dict[str, Path] = {}
    for item in items:
        p = Path(item).expanduser()
        if p.is_dir():
            vids = [f for f in p.iterdir()
                    if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS]
            if not vids:
                exts = ", ".join(sorted(VIDEO_EXTENSIONS))
                raise AcnError(f"{p}: folder holds no video file ({exts})")
            paths = vids
        elif p.suffix.lower() in LIST_EXTENSIONS:
            if not p.is_file():
                raise AcnError(f"{p}: list file not found")
            paths = read_list_file(p)
        else:
            paths = [p]
        for v in paths:
            found.setdefault(str(v.absolute()), v.absolute())
    videos = [found[k] for k in sorted(found)]
    seen: dict[str, Path] = {}
    for v in videos:
        if v.stem in seen:
            raise AcnError(f"two inputs have the same video id {v.stem!r} ({seen[v.stem]} and "
                           f"{v}); features are stored by file stem, so rename one")
        seen[v.stem] = v
    return videos


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)`` with ``0 <= i < n``."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise AcnError(f"--shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise AcnError(f"--shard {text}: need 0 <= i < n")
    return i, n


def take_shard(videos: list[Path], shard: tuple[int, int] | None) -> list[Path]:
    """Every n-th video starting at i of the sorted list (balanced, deterministic)."""
    if shard is None:
        return list(videos)
    i, n = shard
    return list(videos[i::n])
