"""One run per output folder: a lock file that names its holder, with stale locks detected.

Two runs writing into one output would delete each other's temporaries and block parts. The
lock is a file created exclusively (``O_EXCL``, which also holds on NFS v3+) holding the
holder's host, process id and start time. A lock whose process is gone on this host is stale
and taken over; a lock held from another host cannot be checked and is reported, naming the
file to delete if that run is known to be over.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from geoseg.atomic import make_folder
from geoseg.errors import OutputError

LOCK_NAME = ".geoseg-run.lock"


@contextlib.contextmanager
def output_lock(output: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold the run lock of ``output`` for the duration of the ``with`` block."""
    lock = make_folder(output) / LOCK_NAME
    _acquire(lock)
    try:
        yield lock
    finally:
        lock.unlink(missing_ok=True)


def _acquire(lock: Path) -> None:
    holder = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            other = _read(lock)
            if _is_stale(other, lock):
                lock.unlink(missing_ok=True)
                continue
            raise OutputError(
                lock,
                f"another geoseg run (pid {other.get('pid', '?')} on {other.get('host', '?')}, "
                f"started {other.get('started', '?')}) is writing into this output folder; "
                "wait for it, or delete this lock file if that run is over",
            ) from None
        except OSError as exc:
            raise OutputError(lock.parent, f"output folder is not writable ({exc.strerror or exc})") from None
        with os.fdopen(fd, "w") as f:
            json.dump(holder, f)
        return
    raise OutputError(lock, "could not take over a stale run lock")


def _read(lock: Path) -> dict[str, object]:
    try:
        holder = json.loads(lock.read_text())
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _is_stale(holder: dict[str, object], lock: Path) -> bool:
    """True when the holder ran on this host and its process is gone (or the lock is unreadable).

    An unreadable lock younger than a few seconds may be one being written: it counts as held.
    """
    if not holder:
        with contextlib.suppress(OSError):
            return time.time() - lock.stat().st_mtime > 10
        return True
    pid = holder.get("pid")
    if holder.get("host") != socket.gethostname() or not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
