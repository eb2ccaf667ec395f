"""Where geoseg may write: safe file names for scene ids, paths kept inside the output folder.

Scene ids come from untrusted catalogs and file names (``"../../victim"``, ``"/etc"``, ``"CON"``),
so no path is ever built from a raw id. The rules every writer follows:

* a per-scene file is named by ``safe_name(id)``: no separator of any platform, no ``..``, no
  leading dot, no control or reserved characters, never empty, length-bounded; an id that is
  already such a name is kept as it is, any other id is cleaned and suffixed with ``~`` and a
  hash of the id (``~`` never occurs in a kept name, so distinct ids never share a name);
* the path is resolved (links followed) and must lie inside the output folder (``inside``);
* an existing target that is not a regular file (a folder, a device, a FIFO) is never
  replaced (``check_replaceable``), and no output may be the same file as an input scene,
  model or label file, also through links (``ProtectedFiles``, ``refuse_overwriting_inputs``);
* geoseg deletes only what it created: its temporaries and its block parts under the output.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path

from geoseg.errors import OutputError

MAX_NAME_CHARS = 100
"""Longest kept name; longer ids are cut and hashed (file systems allow 255 bytes)."""

_KEPT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_WINDOWS_RESERVED = re.compile(r"(?i)(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³])(\..*)?")
HASH_MARK = "~"


def safe_name(scene_id: str) -> str:
    """A file name for ``scene_id`` that is safe on every platform and unique to the id."""
    if _is_kept(scene_id):
        return scene_id
    cleaned = re.sub(r"\.{2,}", ".", _UNSAFE_CHARS.sub("_", scene_id))
    cleaned = cleaned[: MAX_NAME_CHARS - 20].strip("._-") or "scene"
    digest = hashlib.sha256(scene_id.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{cleaned}{HASH_MARK}{digest}"


def _is_kept(name: str) -> bool:
    return (
        len(name) <= MAX_NAME_CHARS
        and _KEPT.fullmatch(name) is not None
        and ".." not in name
        and not name.endswith(".")
        and _WINDOWS_RESERVED.fullmatch(name) is None
    )


def name_clashes(ids: Iterable[str]) -> dict[str, str]:
    """The ids whose file names would clash with an earlier id's on a case-insensitive file
    system (``Case`` after ``case``), each mapped to that earlier id."""
    seen: dict[str, str] = {}
    clashes: dict[str, str] = {}
    for scene_id in ids:
        key = safe_name(scene_id).casefold()
        if key in seen and seen[key] != scene_id:
            clashes[scene_id] = seen[key]
        seen.setdefault(key, scene_id)
    return clashes


def check_output_folder(output: str | os.PathLike[str]) -> None:
    """Refuse a filesystem root or the home folder as a run's output folder.

    A run writes ``masks/``, ``vectors/``, ``scenes/``, its reports and catalog into its output
    folder and clears its own temporaries there: a typo such as ``output: /`` or ``output: ~``
    would scatter them over a system or home folder.
    """
    folder = Path(os.path.expanduser(output)).resolve()  # unlike Path.home(), never raises
    if folder == Path(folder.anchor) or folder == Path(os.path.expanduser("~")).resolve():
        raise OutputError(
            output, "output: a filesystem root or the home folder; give the run a folder of its own"
        )


def inside(root: str | os.PathLike[str], *parts: str) -> Path:
    """``root / parts``, refused unless it resolves (links followed) inside ``root``."""
    base = Path(root).resolve()
    path = base.joinpath(*parts)
    if not path.resolve().is_relative_to(base):
        raise OutputError(path, f"resolves outside the output folder {base}; refusing to write there")
    return path


def glob_files(pattern: str) -> list[str]:
    """The paths matching ``pattern``, sorted, as ``glob.glob(pattern, recursive=True)`` finds them
    (``**`` any folders, names led by a dot only where the pattern names one), except that ``**``
    never descends through a symbolic link to a folder: a link loop made that search endless."""
    parts = Path(pattern).parts
    first = next((i for i, part in enumerate(parts) if glob.has_magic(part)), None)
    if first is None:
        return [pattern] if os.path.lexists(pattern) else []
    base, rest = Path(*parts[:first]), Path(*parts[first:])
    if rest.name == "**":  # glob.glob's "folder/**" names the files below too, pathlib's only folders
        rest = rest / "*"
    dotted = any(part.startswith(".") for part in rest.parts)
    return sorted(
        str(path)
        for path in base.glob(str(rest))
        if dotted or not any(part.startswith(".") for part in path.relative_to(base).parts)
    )


_DATASET_NAME = re.compile(r"^(/vsi|[A-Za-z][A-Za-z0-9+.-]*://|[A-Z][A-Z0-9_]+:)")


def is_dataset_name(name: str) -> bool:
    """Whether ``name`` is a GDAL dataset name rather than a local path: a URL, a ``/vsi…`` path
    or a driver's prefix (``NETCDF:"f.nc":var``, ``GTIFF_DIR:1:f.tif``). It is given to GDAL as
    it is: as a path, ``//`` would collapse and a relative folder would be put before it."""
    return _DATASET_NAME.match(name) is not None


def local_file(name: str | os.PathLike[str]) -> str | None:
    """The local file a scene name reads: the path itself, or the file inside a driver-prefixed
    name (quoted, or its last ``:``-separated part that exists); None for URLs and ``/vsi`` paths."""
    text = str(name)
    if not is_dataset_name(text):
        return text
    if text.startswith("/vsi") or "://" in text.split('"')[0]:
        return None
    if (quoted := re.search(r'"([^"]+)"', text)) is not None:
        return local_file(quoted.group(1))  # HDF5:"/vsis3/…":x reads no local file
    tails = [":".join(text.split(":")[i:]) for i in range(1, text.count(":") + 1)]
    return next((tail for tail in tails if os.path.exists(tail)), None)


NOT_A_REGULAR_FILE = "not a regular file (a pipe, socket or device)"
"""Why a special file is refused where one is read (``is_special_file``)."""


def is_special_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a pipe, socket or device: opening one to read can wait forever."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def check_replaceable(path: str | os.PathLike[str]) -> None:
    """Refuse to replace an existing target that is not a regular file."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise OutputError(path, f"cannot be written ({exc.strerror})") from None
    if stat.S_ISDIR(mode):
        raise OutputError(path, "is a folder; give a file name")
    if not stat.S_ISREG(mode):
        raise OutputError(path, "exists and is not a regular file (device, FIFO or socket); not replaced")


class ProtectedFiles:
    """Files no output may replace (inputs, models, labels), known by identity: links count too.

    Each input is looked at once, so checking the outputs of many scenes against many inputs
    costs one ``stat`` per file, not one per pair.
    """

    def __init__(self, inputs: Iterable[str | os.PathLike[str]]) -> None:
        self._by_identity: dict[tuple[int, int], str | os.PathLike[str]] = {}
        for source in inputs:
            if (identity := _identity(source)) is not None:
                self._by_identity[identity] = source

    def refuse(self, outputs: Iterable[str | os.PathLike[str]]) -> None:
        """Raise ``OutputError`` if an output is the same file as a protected one."""
        for out in outputs:
            identity = _identity(out)
            if identity is not None and identity in self._by_identity:
                source = self._by_identity[identity]
                raise OutputError(out, f"is the input {source}; geoseg never overwrites an input")


def refuse_overwriting_inputs(
    outputs: Iterable[str | os.PathLike[str]], inputs: Iterable[str | os.PathLike[str]]
) -> None:
    """Raise ``OutputError`` if an output is the same file as an input (also through links)."""
    ProtectedFiles(inputs).refuse(outputs)


def _identity(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """(device, inode) of an existing local file, links followed; None otherwise."""
    if (file := local_file(path)) is None:
        return None
    try:
        info = os.stat(file)
    except (OSError, ValueError):
        return None
    return info.st_dev, info.st_ino
