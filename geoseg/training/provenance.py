"""Provenance: what a checkpoint was trained on, in paths that mean something on another machine.

Data under the sample-data root is named ``$GEOSEG_SAMPLE_DATA/…`` (the config loader expands it
again), files in the geoseg checkout relative to it; the commit and whether the checkout had
uncommitted changes come from git. Scenes of a training pack (``scripts/pack-trainset``: the
original scenes re-encoded, with rasterised masks) are named by the original files its manifest
records.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from geoseg.errors import ConfigError
from geoseg.sampledata import VARIABLE, expand_variables, sample_data_dir
from geoseg.training.config import FILE_FIELDS, TrainConfig

CHECKOUT = Path(__file__).resolve().parents[2]
"""The folder holding the ``geoseg`` package (the repository root in a checkout)."""


def portable_path(path: str) -> str:
    """``path`` as ``$GEOSEG_SAMPLE_DATA/…`` under the data root, relative under the checkout, else as is."""
    resolved = Path(expand_variables(path)).resolve()
    data_root = sample_data_dir().resolve()
    if resolved.is_relative_to(data_root):
        return f"${VARIABLE}/{resolved.relative_to(data_root).as_posix()}"
    if resolved.is_relative_to(CHECKOUT):
        return resolved.relative_to(CHECKOUT).as_posix()
    return path


PACK_FORMAT = "geoseg-pack/1"


def read_pack(manifest: str) -> tuple[Callable[[str], str], dict[str, Any]]:
    """A pack's original-file lookup (packed path → original portable path) and its description."""
    try:
        raw = json.loads(Path(manifest).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{manifest}: cannot read the pack manifest ({exc})") from None
    if not isinstance(raw, dict) or raw.get("format") != PACK_FORMAT:
        raise ConfigError(f"{manifest}: not a {PACK_FORMAT} manifest")
    folder = Path(manifest).resolve().parent
    files: dict[str, str] = raw["files"]

    def original(path: str) -> str:
        key = Path(path).resolve().relative_to(folder).as_posix()
        if key not in files:
            raise ConfigError(f"{manifest}: {key} is not in the pack")
        return files[key]

    described = {k: v for k, v in raw.items() if k != "files"}
    return original, {"manifest": portable_path(manifest), **described}


def portable_config(config: TrainConfig) -> dict[str, Any]:
    """The config as JSON-ready data with its dataset and output paths made portable."""
    raw = config.model_dump(mode="json")
    for split in ("train", "val"):
        for entry in raw["data"][split]:
            for key in ("images", "masks", "labels"):
                if entry[key] is not None:
                    entry[key] = portable_path(entry[key])
    for key in FILE_FIELDS:
        if raw[key] is not None:
            raw[key] = portable_path(raw[key])
    return raw


def git_commit() -> str | None:
    """The repository's HEAD commit, when geoseg runs from a git checkout."""
    return _git("rev-parse", "HEAD") or None


def git_dirty() -> bool | None:
    """Whether the package's files differ from the commit (None outside a git checkout)."""
    status = _git("status", "--porcelain", "--", ".")
    return None if status is None else bool(status)


def _git(*args: str) -> str | None:
    """Output of a git command run in the package's folder; None when git or the repo is missing."""
    try:
        out = subprocess.run(
            ["git", *args],
            cwd=CHECKOUT / "geoseg",
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()
