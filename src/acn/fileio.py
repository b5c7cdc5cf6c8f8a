"""Every byte acn writes goes through one helper, :func:`write_bytes`: a crash never leaves a
half-written output behind, a full disk is one clear error, and checkpoints and features carry
a checksum that is verified when they are read.

- **Atomic**: the data goes to a hidden temporary file beside the target
  (``.NAME.acn-PID@HOST.XXXX.tmp``), is flushed to disk (fsync) and renamed over the target, which is atomic
  on POSIX: a SIGKILL or power cut leaves the old file or the complete new one, never half a
  file. The new file gets the usual ``0o666 & ~umask`` permissions. The temporaries a
  killed writer leaves are removed by the next command that writes there
  (:func:`remove_stale_temporaries`: only those of dead processes of this machine).
- **Disk full** (or any ``OSError`` while writing): :class:`~acn.errors.AcnError`
  ``PATH: cannot write (No space left on device); the previous file is unchanged``; the
  temporary file is removed.
- **Checksums** (``checksum=True``: checkpoints, base outputs, extracted features): the
  file's SHA-256 is recorded in a sidecar ``NAME.sha256`` (``sha256sum`` format, so
  ``sha256sum -c NAME.sha256`` checks it too) and :func:`verify_checksum` checks it before the
  file is loaded: a truncated or bit-flipped file is an error, never loaded as garbage. While
  the rename happens the sidecar accepts the old and the new digest (written before the
  rename, narrowed to the new one after it), so a kill at any point leaves a pair that verifies.

Fault injection, for tests only (``tests/faults``): each write passes "fault points" (before
the data, half-way through it, before and after the rename). ``ACN_FAULT_AT=N`` sends this
process SIGKILL at the N-th point (``N:SIGINT``: another signal); ``ACN_FAULT_TRACE=FILE``
appends one line per point to FILE. Both are read once, at import; unset, they cost one
boolean test per write.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import signal
import socket
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from acn.errors import AcnError

CHECKSUM_SUFFIX = ".sha256"


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


# -- fault injection (tests only; see the module docstring) ------------------------------------
_FAULT_AT = os.environ.get("ACN_FAULT_AT", "")
_FAULT_TRACE = os.environ.get("ACN_FAULT_TRACE", "")
_FAULTS = bool(_FAULT_AT or _FAULT_TRACE)
_fault_count = 0


def _fault_point(label: str, target: Path) -> None:
    global _fault_count
    _fault_count += 1
    if _FAULT_TRACE:
        with open(_FAULT_TRACE, "a", encoding="utf-8") as f:
            f.write(f"{_fault_count} {label} {target}\n")
    n, _, sig = _FAULT_AT.partition(":")
    if n and _fault_count == int(n):
        os.kill(os.getpid(), getattr(signal, sig or "SIGKILL"))


# -- the one write helper ------------------------------------------------------------------------
def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_current_umask()  # what open() would give a new file
_write = os.write  # tests replace it to simulate a full disk
_CHUNK = 1 << 20


def _write_all(fd: int, data: bytes | memoryview, target: Path) -> None:
    view = memoryview(data).cast("B")
    half = len(view) // 2 if _FAULTS else 0
    for k, part in enumerate((view[:half], view[half:])):
        if k and _FAULTS:
            _fault_point("write", target)  # half of the data is in the temporary file
        pos = 0
        while pos < len(part):
            pos += _write(fd, part[pos: pos + _CHUNK])


_HOST = socket.gethostname()
# .NAME.acn-PID@HOST.RANDOM.tmp (mkstemp's random part has no dot)
_TEMPORARY = re.compile(r"^\..+\.acn-(\d+)@(.+)\.[^.]+\.tmp$")


def _tmp_prefix(target: Path) -> str:
    return f".{target.name}.acn-{os.getpid()}@{_HOST}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder: Path, recursive: bool = False) -> int:
    """Delete the hidden temporaries in ``folder`` that writers on this machine left when
    they were killed mid-write (their process no longer runs); those of live processes and
    of other machines (a shared file system) are left alone. Returns how many went."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    n = 0
    for p in sorted(folder.rglob(".*.tmp") if recursive else folder.glob(".*.tmp"),
                    reverse=True):
        m = _TEMPORARY.match(p.name)
        if not m or m.group(2) != _HOST or _alive(int(m.group(1))):
            continue
        with contextlib.suppress(FileNotFoundError):
            if p.is_dir():  # atomic_path's temporary folder
                shutil.rmtree(p)
            else:
                p.unlink()
            n += 1
    return n


class WriteError(AcnError):
    """A file could not be written (disk full, quota, I/O error): not the input's fault, and
    the next file will not fare better, so batch loops stop on it."""


def _cannot_write(target: Path, e: OSError) -> AcnError:
    return WriteError(f"{target}: cannot write ({e.strerror or e}); the previous file, if any, "
                    "is unchanged")


def write_bytes(target: Path, data: bytes, checksum: bool = False) -> None:
    """Write ``data`` to ``target`` atomically (see the module docstring); with ``checksum``
    also record its SHA-256 in ``target.sha256``. Every file acn writes goes through here."""
    target = Path(target)
    ensure_dir(target.parent)
    if target.is_dir():
        raise AcnError(f"{target}: is a folder; give a file name to write")
    digest = hashlib.sha256(data).hexdigest() if checksum else None
    if _FAULTS:
        _fault_point("open", target)
    try:
        fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(target), suffix=".tmp", dir=target.parent)
    except OSError as e:
        raise _cannot_write(target, e) from None
    try:
        try:
            os.fchmod(fd, _FILE_MODE)
            _write_all(fd, data, target)
            os.fsync(fd)  # the data is on disk before the rename makes it visible
        finally:
            os.close(fd)
        side = checksum_path(target)
        if digest is not None:
            accepted = recorded_checksums(side)
            if not accepted and target.is_file():
                accepted = [sha256_file(target)]  # a file written before checksums existed
            if digest not in accepted:  # both pass while the rename happens
                _write_sidecar(side, target, [digest, *accepted])
        if _FAULTS:
            _fault_point("rename", target)
        os.replace(tmp, target)
        if digest is not None:
            if _FAULTS:
                _fault_point("renamed", target)
            if recorded_checksums(side) != [digest]:
                _write_sidecar(side, target, [digest])
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise _cannot_write(target, e) from None
        raise


@contextlib.contextmanager
def atomic_path(target: Path, checksum: bool = False) -> Iterator[Path]:
    """Yield a temporary path for a writer that needs a file name (a library's ``save(path)``);
    its content is then written to ``target`` by :func:`write_bytes`. Prefer serialising to
    bytes and calling :func:`write_bytes` directly."""
    target = Path(target)
    ensure_dir(target.parent)
    with tempfile.TemporaryDirectory(prefix=_tmp_prefix(target), suffix=".tmp",
                                     dir=target.parent) as d:
        tmp = Path(d) / target.name
        try:
            yield tmp
        except OSError as e:
            raise _cannot_write(target, e) from None
        write_bytes(target, tmp.read_bytes(), checksum)


def write_text(target: Path, text: str) -> None:
    write_bytes(target, text.encode("utf-8"))


def write_json(target: Path, obj: Any, indent: int | None = 1) -> None:
    write_text(target, json.dumps(obj, indent=indent) + "\n")


def save_npy(target: Path, array: np.ndarray, checksum: bool = False) -> None:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    write_bytes(target, buf.getbuffer(), checksum)


def save_torch(target: Path, obj: Any) -> None:
    """``torch.save(obj)`` to ``target`` through :func:`write_bytes`, with a checksum."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    write_bytes(target, buf.getbuffer(), checksum=True)


# -- checksums -----------------------------------------------------------------------------------
def checksum_path(path: Path) -> Path:
    """The sidecar ``NAME.sha256`` holding ``path``'s recorded SHA-256."""
    path = Path(path)
    return path.with_name(path.name + CHECKSUM_SUFFIX)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def recorded_checksums(side: Path) -> list[str]:
    """The digests a sidecar accepts (one; two while a write is being renamed into place);
    [] when there is no sidecar or it is unreadable."""
    try:
        text = Path(side).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        return []
    out = []
    for line in text.splitlines():
        word = line.split(" ", 1)[0].lower()
        if len(word) == 64 and all(c in "0123456789abcdef" for c in word):
            out.append(word)
    return out


def _write_sidecar(side: Path, target: Path, digests: list[str]) -> None:
    write_bytes(side, "".join(f"{d}  {target.name}\n" for d in digests).encode("ascii"))


_VERIFIED: set[tuple] = set()


def verify_checksum(path: Path, what: str = "file") -> None:
    """Check ``path`` against the SHA-256 recorded when acn wrote it (``path.sha256``);
    :class:`AcnError` on a mismatch. A file without a sidecar (not written by acn with a
    checksum) passes: nothing to check against. Each version of a file is hashed once per
    process."""
    path = Path(path)
    side = checksum_path(path)
    if not side.is_file():
        return
    try:
        st = path.stat()
    except OSError:
        return  # a missing file: the loader says so
    key = (str(path.absolute()), st.st_ino, st.st_size, st.st_mtime_ns)
    if key in _VERIFIED:
        return
    accepted = recorded_checksums(side)
    actual = sha256_file(path)
    if actual not in accepted:
        raise AcnError(
            f"{path}: checksum mismatch: the {what} is corrupt or truncated (SHA-256 "
            f"{actual[:12]}..., recorded {accepted[0][:12] + '...' if accepted else 'nothing'} "
            f"in {side.name}); re-run the command that wrote it (or delete {side.name} if you "
            "replaced the file on purpose)")
    _VERIFIED.add(key)


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
