"""The project's exception hierarchy: every user-facing failure is a ``GeosegError``.

Messages are one line and name the thing that is wrong (scene path, config field, checkpoint),
so the CLI can print them as they are, without a traceback.
"""


class GeosegError(Exception):
    """Base class of all errors geoseg reports to users."""


class SceneError(GeosegError):
    """A scene cannot be used: missing, not a raster, corrupt, no CRS, wrong bands, all nodata."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ConfigError(GeosegError):
    """A workflow or training config is invalid; the message names the field."""


class CheckpointError(GeosegError):
    """A model checkpoint is missing, malformed, or unsafe (pickled payload)."""


class LabelError(GeosegError):
    """Training labels cannot be read or do not match their scene."""


class VectorizeError(GeosegError):
    """A mask cannot be vectorised or its polygons cannot be written (bad mask, bad format)."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")
