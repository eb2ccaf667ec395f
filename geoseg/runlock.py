"""One run per output folder: a lock file held with ``flock``, which names its holder.

Two runs writing into one output would delete each other's temporaries and block parts. The
lock is the kernel's: a run holds ``flock`` on ``.geoseg-run.lock`` for as long as it lives, so
a run that is killed (even by SIGKILL, or by a full disk before it could write a word) leaves
no lock behind, and two runs can never both take one over. The file holds the holder's host,
process id and start time, for the message the next run prints. A lock file written on another
host (a shared output folder whose filesystem may not pass ``flock`` between machines) is
respected, naming the file to delete if that run is known to be over.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from geoseg.atomic import make_folder
from geoseg.errors import OutputError

LOCK_NAME = ".geoseg-run.lock"
_ATTEMPTS = 10


@contextlib.contextmanager
def output_lock(output: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold the run lock of ``output`` for the duration of the ``with`` block."""
    lock = make_folder(output) / LOCK_NAME
    fd = _acquire(lock)
    try:
        yield lock
    finally:
        lock.unlink(missing_ok=True)  # still held: a run that opened this file sees it gone
        os.close(fd)


def _acquire(lock: Path) -> int:
    """The descriptor of ``lock``, opened and held with ``flock``."""
    for _ in range(_ATTEMPTS):
        fd = _open(lock)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise _held(lock, _read(lock), "wait for it") from None
        if not _is_current(fd, lock):  # the run before removed it as this one opened it
            os.close(fd)
            continue
        other = _read(lock)
        if other and other.get("host") != socket.gethostname():
            os.close(fd)
            raise _held(lock, other, "wait for it, or delete this lock file if that run is over")
        _write_holder(fd)
        return fd
    raise OutputError(lock, "could not take the run lock (other runs keep taking it)")


def _open(lock: Path) -> int:
    try:
        return os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except IsADirectoryError:
        raise OutputError(lock, "is a folder, not geoseg's run lock; move it away") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OutputError(lock, "is a link, not geoseg's run lock; remove it") from None
        raise OutputError(lock.parent, f"output folder is not writable ({exc.strerror or exc})") from None


def _is_current(fd: int, lock: Path) -> bool:
    """Whether ``fd`` is still the file at ``lock`` (not removed or replaced meanwhile)."""
    try:
        here, there = os.fstat(fd), os.stat(lock, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _write_holder(fd: int) -> None:
    """Name this run in the lock file; the lock holds without it (a full disk, say)."""
    holder = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)


def _read(lock: Path) -> dict[str, object]:
    try:
        holder = json.loads(lock.read_text())
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _held(lock: Path, holder: dict[str, object], advice: str) -> OutputError:
    return OutputError(
        lock,
        f"another geoseg run (pid {holder.get('pid', '?')} on {holder.get('host', '?')}, "
        f"started {holder.get('started', '?')}) is writing into this output folder; {advice}",
    )
