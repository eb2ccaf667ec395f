"""Config files (workflows, training configs): YAML in, validated pydantic model out.

One loader for every config: the file must exist, be YAML and hold a mapping; the first
validation problem becomes one ``ConfigError`` line naming the file and the field. Paths in
configs are relative to the config file and may use ``$GEOSEG_SAMPLE_DATA``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import BaseModel, Field, ValidationError

from geoseg.errors import ConfigError
from geoseg.safepaths import NOT_A_REGULAR_FILE, is_special_file
from geoseg.sampledata import expand_variables

M = TypeVar("M", bound=BaseModel)

BandList = Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1)]
"""A config's ``bands``: 1-based band indexes, at least one."""


class FieldProblem(ValueError):
    """Raised by a model validator to name the (nested) field a cross-field check is about."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def read_mapping(path: str | os.PathLike[str], what: str) -> dict[str, Any]:
    """The YAML mapping in ``path``; ``what`` names the kind of file in errors."""
    file = Path(path)
    if is_special_file(file):
        raise ConfigError(f"{file}: {NOT_A_REGULAR_FILE}")
    try:
        raw = yaml.safe_load(file.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{file}: {what} not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML ({str(exc).splitlines()[0]})") from None
    except RecursionError:
        raise ConfigError(f"{file}: nested too deeply to be a {what}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: a {what} is a mapping of fields")
    return raw


def validate(model: type[M], raw: dict[str, Any], source: str) -> M:
    """Validate ``raw`` as ``model``; the first problem is a ``ConfigError`` naming the field."""
    try:
        field = _nul_field(raw)
    except RecursionError:
        raise ConfigError(f"{source}: nested too deeply") from None
    if field is not None:
        raise ConfigError(f"{source}: field '{field}': contains a NUL character")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = _field_path(first["loc"], raw)
        message = "unknown field" if first["type"] == "extra_forbidden" else first["msg"]
        problem = first.get("ctx", {}).get("error")
        if isinstance(problem, FieldProblem):
            field = ".".join(part for part in (field, problem.field) if part)
            message = str(problem)
        raise ConfigError(
            f"{source}: field '{field or '(top level)'}': {message.removeprefix('Value error, ')}"
        ) from None


def _nul_field(node: Any, path: str = "") -> str | None:
    """The dotted path of the first string in ``node`` holding a NUL character (no file path can)."""
    if isinstance(node, str):
        return path if "\0" in node else None
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        if (found := _nul_field(value, f"{path}.{key}" if path else str(key))) is not None:
            return found
    return None


def _field_path(loc: tuple[int | str, ...], raw: Any) -> str:
    """``loc`` as a dotted path in ``raw``, without the union tags pydantic inserts (no key names them)."""
    parts = []
    node = raw
    for i, part in enumerate(loc):
        if isinstance(node, dict) and part not in node and i < len(loc) - 1:
            continue
        parts.append(str(part))
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            node = None
    return ".".join(parts)


def resolve_path(value: str | os.PathLike[str], base: Path) -> Path:
    """A config path with variables expanded, anchored at the config file's folder."""
    path = Path(os.path.expanduser(expand_variables(str(value))))
    return path if path.is_absolute() else (base / path)
