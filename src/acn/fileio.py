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
        raise AcnError(f"{path}: cannot create output folder ({e.strerror})") from None
    if not os.access(path, os.W_OK):
        raise AcnError(f"{path}: output folder is not writable")
    return path


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it over ``target`` on success."""
    target = Path(target)
    ensure_dir(target.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes(target: Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def write_text(target: Path, text: str) -> None:
    write_bytes(target, text.encode("utf-8"))


def write_json(target: Path, obj: Any, indent: int | None = 1) -> None:
    write_text(target, json.dumps(obj, indent=indent) + "\n")


def save_npy(target: Path, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    write_bytes(target, buf.getvalue())


def read_json(path: Path, what: str = "JSON file") -> Any:
    path = Path(path)
    if not path.is_file():
        raise AcnError(f"{path}: {what} not found")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise AcnError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    except UnicodeDecodeError:
        raise AcnError(f"{path}: not a UTF-8 text file") from None
