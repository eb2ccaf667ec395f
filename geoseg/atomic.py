"""Atomic file outputs: write under a temporary name beside the target, rename at the end.

A crash, an exception or a killed process therefore never leaves a half-written file under
its final name, and a rerun can trust that any final name it finds is complete.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import os
import re
import shutil
import socket
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import psutil

from geoseg.errors import GeosegError, OutputError
from geoseg.safepaths import check_replaceable

TMP_MARK = ".geoseg-tmp"


NAME_MAX_BYTES = 255
"""The longest file name most filesystems take (ext4, XFS, APFS, NTFS in UTF-16 units)."""


def temporary_sibling(path: Path) -> Path:
    """A unique temporary path in the same folder (same filesystem, so rename is atomic), which
    names its writer (``_writer``); the final name is cut short where the marks would make it
    longer than a file name may be."""
    mark = f".{_writer(os.getpid())}-{uuid.uuid4().hex[:8]}{TMP_MARK}{path.suffix}"
    budget = NAME_MAX_BYTES - 1 - len(os.fsencode(mark))
    name = os.fsencode(path.name)[:budget].decode("utf-8", errors="ignore")  # whole characters
    return path.with_name(f".{name}{mark}")


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write; on success rename it (and its sidecars) to ``path``.

    Sidecar files written next to the temporary path with the same stem (``.prj``, ``.dbf``,
    ``.shx`` … of a Shapefile) are renamed along with it. On failure everything is removed.
    """
    final = Path(path)
    check_replaceable(final)
    make_folder(final.parent)
    tmp = temporary_sibling(final)
    try:
        with writing(final):
            yield tmp
        moves = [(sidecar, final.with_suffix(sidecar.suffix)) for sidecar in _sidecars(tmp)]
        _replace_together([*moves, (tmp, final)])
        if final.suffix.lower() == ".shp":
            written = {target.suffix.lower() for _, target in moves}
            for index in SHAPEFILE_INDEXES - written:  # of the old file: they would misplace the new
                final.with_suffix(index).unlink(missing_ok=True)
    finally:
        for leftover in [tmp, *_sidecars(tmp)]:
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)


@contextlib.contextmanager
def writing(final: Path) -> Iterator[None]:
    """Turn an error of the OS, GDAL or OGR raised while writing ``final`` (under whatever
    temporary name: a full disk, a read-only folder) into one ``OutputError`` naming it."""
    try:
        yield
    except GeosegError:
        raise
    except Exception as exc:
        if not (isinstance(exc, OSError) or type(exc).__module__.partition(".")[0] in _WRITERS):
            raise
        raise OutputError(final, f"cannot be written ({_write_problem(exc, final.parent)})") from None


_WRITERS = ("rasterio", "pyogrio")
"""Packages whose errors (``RasterioError``, pyogrio's ``DataSourceError`` …) a write may raise."""


def _write_problem(exc: Exception, folder: Path) -> str:
    """What went wrong, in a few words: a full disk said as such (GDAL often says only "write
    failed"), else the error's own reason, which names the temporary file rather than the output."""
    with contextlib.suppress(OSError):
        if getattr(exc, "errno", None) == errno.ENOSPC or shutil.disk_usage(folder).free < 2**20:
            return "no space left on the device"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    reason = reason.replace(" See previous exception for details.", "")  # GDAL printed it above
    return reason if len(reason) <= 120 else f"{reason[:50]} … {reason[-60:]}"  # SQL of a GeoPackage


SHAPEFILE_INDEXES = frozenset({".qix", ".sbn", ".sbx"})
"""Spatial indexes of a Shapefile that GIS programs write beside it (QGIS, ArcGIS)."""


def _replace_together(moves: list[tuple[Path, Path]]) -> None:
    """Rename each (source, target), all or none: a file and its sidecars are never left half
    old, half new. Each old target is kept under a hard link (a second name: the target never
    goes missing, even to a reader) and put back if a rename fails. A lone file is one rename."""
    for _, target in moves:
        check_replaceable(target)
    if len(moves) == 1:
        os.replace(*moves[0])
        return
    kept: list[tuple[Path, Path]] = []
    done: list[Path] = []
    try:
        for _, target in moves:
            if target.exists():
                kept.append((_second_name(target), target))
        for source, target in moves:
            os.replace(source, target)
            done.append(target)
    except OSError as exc:
        backups = {target: backup for backup, target in kept}
        for target in done:  # replaced: the old file back, or none where there was none
            if target in backups:
                os.replace(backups.pop(target), target)
            else:
                target.unlink(missing_ok=True)
        for backup in backups.values():  # a second name of a file never replaced
            backup.unlink(missing_ok=True)
        raise OutputError(moves[-1][1], f"cannot be written ({exc.strerror or exc})") from None
    for backup, _ in kept:
        backup.unlink(missing_ok=True)


def _second_name(target: Path) -> Path:
    """A temporary hard link to ``target`` (a copy where the filesystem has no hard links)."""
    backup = temporary_sibling(target)
    try:
        os.link(target, backup, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EXDEV, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        shutil.copy2(target, backup, follow_symlinks=False)
    return backup


def check_writable(path: str | os.PathLike[str]) -> None:
    """Refuse now, with an ``OutputError``, an output that ``atomic_output`` could not write
    later (a folder in its place, a folder that cannot be created or written), before hours of
    work are spent on it."""
    final = Path(path)
    check_replaceable(final)
    make_folder(final.parent)
    probe = temporary_sibling(final)
    with writing(final):
        probe.touch(exist_ok=False)
        probe.unlink()


def make_folder(folder: str | os.PathLike[str]) -> Path:
    """Create ``folder`` (and its parents); a clear ``OutputError`` when that is impossible."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(folder, f"cannot create the folder ({exc.strerror or exc})") from None
    return Path(folder)


def _sidecars(tmp: Path) -> list[Path]:
    stem = tmp.with_suffix("").name
    return [p for p in tmp.parent.glob(f"{glob.escape(stem)}.*") if p != tmp]


def _writer(pid: int) -> str:
    """This host (a short hash of its name) and ``pid``, as a temporary's name holds them."""
    return f"{hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]}-{pid}"


_WRITTEN_BY = re.compile(rf"\.([0-9a-f]{{6}}-[0-9]+)-[0-9a-f]{{8}}{re.escape(TMP_MARK)}")


def remove_dead_temporaries(folder: str | os.PathLike[str]) -> int:
    """Delete the temporaries in ``folder`` whose writer ran on this host and is gone (killed
    by SIGKILL, say, which leaves no chance to clean up); return how many. A live writer's
    temporaries, and those written on other hosts, are left alone."""
    count = 0
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            match = _WRITTEN_BY.search(entry.name)
            if not entry.name.startswith(".") or match is None or entry.is_dir(follow_symlinks=False):
                continue
            pid = int(match[1].rpartition("-")[2])
            if _writer(pid) == match[1] and pid < 2**31 and not psutil.pid_exists(pid):  # no pid is larger
                Path(entry.path).unlink(missing_ok=True)
                count += 1
    return count


def remove_stale_temporaries(folder: str | os.PathLike[str], subfolders: Iterable[str] = ()) -> int:
    """Delete temporaries left by an interrupted run in ``folder`` itself and in the trees of its
    ``subfolders`` (the ones the run writes); return how many.

    Only geoseg's own temporaries (hidden names carrying ``TMP_MARK``) are deleted, links to
    folders are not followed, and other folders are left alone: they may hold the live
    temporaries of another run or ``geoseg predict`` writing beside this run's outputs.
    """
    root = Path(folder)
    listed: list[tuple[str, list[str]]] = [(str(root), _names(root))]
    for name in subfolders:
        if (root / name).is_dir() and not (root / name).is_symlink():
            listed += [(parent, files) for parent, _, files in os.walk(root / name, followlinks=False)]
    count = 0
    for parent, files in listed:
        for name in files:
            if name.startswith(".") and TMP_MARK in name:
                (Path(parent) / name).unlink(missing_ok=True)
                count += 1
    return count


def _names(folder: Path) -> list[str]:
    """The names of the files (not folders) in ``folder``."""
    with os.scandir(folder) as entries:
        return [e.name for e in entries if not e.is_dir(follow_symlinks=False)]
