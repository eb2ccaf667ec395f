"""The project's exception hierarchy: every user-facing failure is a ``GeosegError``.

Messages are one line and name the thing that is wrong (scene path, config field, checkpoint),
so the CLI can print them as they are, without a traceback.
"""

from __future__ import annotations


class GeosegError(Exception):
    """Base class of all errors geoseg reports to users."""


class PathError(GeosegError):
    """An error about one file: the message is ``<path>: <reason>``."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(self.path, reason)  # args pickle, so the error survives Dask workers

    def __str__(self) -> str:
        return f"{printable(self.path)}: {self.reason}"


def printable(text: str) -> str:
    """``text`` with its control characters written as escapes (``\\n``, ``\\x1b``): a file name or
    scene id may hold them, and must neither break a one-line message nor drive a terminal."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


class SceneError(PathError):
    """A scene cannot be used: missing, not a raster, corrupt, no CRS, wrong bands, all nodata."""


class ConfigError(GeosegError):
    """A workflow or training config is invalid; the message names the field."""


class CheckpointError(GeosegError):
    """A model checkpoint is missing, malformed, or unsafe (pickled payload)."""


class LabelError(GeosegError):
    """Training labels cannot be read or do not match their scene."""


class OutputError(PathError):
    """An output cannot be written where asked: outside the output folder, over an input, not a file."""


class VectorizeError(PathError):
    """A mask cannot be vectorised or its polygons cannot be written (bad mask, bad format)."""


class GeosegWarning(UserWarning):
    """Something the user should know that does not stop the work (seams, out-of-domain scene)."""
