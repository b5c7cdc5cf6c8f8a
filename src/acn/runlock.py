"""One writer per run folder: ``acn train`` holds an exclusive lock on ``RUN/.acn.lock``.

The lock is a kernel advisory lock (``fcntl.flock``) on that file, held while the command
runs: a second ``acn train --out RUN`` or ``acn train --resume RUN`` fails at once with
``RUN: another acn process (pid N) is writing to this run folder``. The kernel drops the lock
when its process ends, however it ends (SIGKILL, a lost node), so a lock file left behind
never blocks the next run; the pid inside the file is only there for the message.

Readers (``acn localize``, ``acn evaluate``) take no lock: every file of a run is replaced
atomically (:mod:`acn.fileio`), so they see old or new files, never half-written ones.

``flock`` works between processes of one machine and, on Linux NFS clients, across machines
(it is mapped to NFS byte-range locks); on a platform without ``fcntl`` there is no lock.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from acn.errors import AcnError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".acn.lock"


class RunLock:
    """``with RunLock() as lock: lock.acquire(run)``: hold ``run``'s lock until the block ends.

    :meth:`acquire` may be called again with the same folder (a no-op), e.g. once when the
    folder exists and once right after it is created.
    """

    def __init__(self) -> None:
        self.folder: Path | None = None
        self._fd: int | None = None

    def acquire(self, folder: Path) -> None:
        folder = Path(folder)
        if self._fd is not None:
            if folder.resolve() != self.folder.resolve():  # type: ignore[union-attr]
                raise AcnError(f"{folder}: already holding the lock of {self.folder}")
            return
        if fcntl is None:
            return
        path = folder / LOCK_NAME
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise AcnError(f"{path}: cannot open the run folder's lock file ({e.strerror})") \
                from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"pid {holder}" if holder else "another process"
            raise AcnError(f"{folder}: another acn process ({who}) is writing to this run "
                           "folder; wait for it to end (or stop it), then try again") from None
        except OSError as e:
            os.close(fd)
            raise AcnError(f"{path}: cannot lock the run folder ({e.strerror})") from None
        # informational only: the kernel lock is what excludes other writers
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.folder, self._fd = folder, fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the file drops the flock
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None

