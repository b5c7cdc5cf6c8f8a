"""Atomic file writes: a crash never leaves a half-written output behind.

Every output of acn (checkpoints, predictions, features, configs) is written to a temporary
file in the destination folder and renamed over the target, which is atomic on POSIX.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from acn.errors import AcnError


def ensure_dir(path: Path) -> Path:
    """Create ``path`` (and parents) and check that it is writable."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        p = path
        while not p.exists() and p != p.parent:
            p = p.parent
        why = f"{p} is not a folder" if p.exists() and not p.is_dir() else e.strerror
        raise AcnError(f"{path}: cannot create output folder ({why})") from None
    if not os.access(path, os.W_OK):
        raise AcnError(f"{path}: output folder is not writable")
    return path


def check_writable(path: Path) -> Path:
    """Fail now (naming ``path``) if ``path`` could not be created or written later.

    Creates nothing: walks up to the nearest existing ancestor, which must be a writable
    folder (``path`` itself may exist: then it must be a writable folder, or a file in one).
    """
    path = Path(path)
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    if p != path and not p.is_dir():
        raise AcnError(f"{path}: cannot create output folder ({p} is not a folder)")
    if not os.access(p if p.is_dir() else p.parent, os.W_OK):
        raise AcnError(f"{path}: output folder is not writable")
    return path


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it over ``target`` on success.

    The data is flushed to disk before the rename, so even a power cut leaves either the old
    file or the complete new one.
    """
    target = Path(target)
    ensure_dir(target.parent)
    if target.is_dir():
        raise AcnError(f"{target}: is a folder; give a file name to write")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as e:
        raise AcnError(f"{target}: cannot write ({e.strerror})") from None
    os.close(fd)
    try:
        yield Path(tmp)
        _fsync(Path(tmp))
        try:
            os.replace(tmp, target)
        except OSError as e:
            raise AcnError(f"{target}: cannot write ({e.strerror})") from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes(target: Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)  # atomic_path fsyncs before the rename


def write_text(target: Path, text: str) -> None:
    write_bytes(target, text.encode("utf-8"))


def write_json(target: Path, obj: Any, indent: int | None = 1) -> None:
    write_text(target, json.dumps(obj, indent=indent) + "\n")


def save_npy(target: Path, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    write_bytes(target, buf.getvalue())


class _DuplicateKey(Exception):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(k)
        out[k] = v
    return out


def read_json(path: Path, what: str = "JSON file") -> Any:
    """Parse a JSON file; a missing or empty file, bad JSON or a key given twice in one
    object (e.g. a duplicate video id) raise :class:`AcnError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise AcnError(f"{path}: {what} not found")
    if path.stat().st_size == 0:
        raise AcnError(f"{path}: {what} is empty (0 bytes)")
    try:
        with open(path, encoding="utf-8") as f:
            # json keeps the last of two equal keys: that would hide a duplicated video id
            return json.load(f, object_pairs_hook=_unique_keys)
    except _DuplicateKey as e:
        raise AcnError(f"{path}: key {e.args[0]!r} appears twice (duplicate video id?)") from None
    except json.JSONDecodeError as e:
        raise AcnError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    except UnicodeDecodeError:
        raise AcnError(f"{path}: not a UTF-8 text file") from None
