"""Provenance: what a checkpoint was trained on, in paths that mean something on another machine.

Data under the sample-data root is named ``$GEOSEG_SAMPLE_DATA/…`` (the config loader expands it
again), files in the geoseg checkout relative to it; the commit and whether the checkout had
uncommitted changes come from git.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from geoseg.sampledata import VARIABLE, expand_variables, sample_data_dir
from geoseg.training.config import TrainConfig

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


def portable_config(config: TrainConfig) -> dict[str, Any]:
    """The config as JSON-ready data with its dataset and output paths made portable."""
    raw = config.model_dump(mode="json")
    for split in ("train", "val"):
        for entry in raw["data"][split]:
            for key in ("images", "masks", "labels"):
                if entry[key] is not None:
                    entry[key] = portable_path(entry[key])
    raw["out"] = portable_path(raw["out"])
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
