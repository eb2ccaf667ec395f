"""Atomic file outputs: write under a temporary name beside the target, rename at the end.

A crash, an exception or a killed process therefore never leaves a half-written file under
its final name, and a rerun can trust that any final name it finds is complete.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from geoseg.errors import OutputError
from geoseg.safepaths import check_replaceable

TMP_MARK = ".geoseg-tmp"


def temporary_sibling(path: Path) -> Path:
    """A unique temporary path in the same folder (same filesystem, so rename is atomic)."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}{TMP_MARK}{path.suffix}")


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


SHAPEFILE_INDEXES = frozenset({".qix", ".sbn", ".sbx"})
"""Spatial indexes of a Shapefile that GIS programs write beside it (QGIS, ArcGIS)."""


def _replace_together(moves: list[tuple[Path, Path]]) -> None:
    """Rename each (source, target), all or none: a file and its sidecars are never left half
    old, half new. Old targets are set aside first and put back if any rename fails."""
    for _, target in moves:
        check_replaceable(target)
    kept: list[tuple[Path, Path]] = []
    done: list[Path] = []
    try:
        for _, target in moves:
            if target.exists() or target.is_symlink():
                aside = temporary_sibling(target)
                os.replace(target, aside)
                kept.append((aside, target))
        for source, target in moves:
            os.replace(source, target)
            done.append(target)
    except OSError as exc:
        for target in done:
            target.unlink(missing_ok=True)
        for aside, target in kept:
            os.replace(aside, target)
        raise OutputError(moves[-1][1], f"cannot be written ({exc.strerror or exc})") from None
    for aside, _ in kept:
        aside.unlink(missing_ok=True)


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
