"""Where the real sample data lives, and ``$GEOSEG_SAMPLE_DATA`` in config paths."""

from __future__ import annotations

import os
from pathlib import Path

VARIABLE = "GEOSEG_SAMPLE_DATA"


def sample_data_dir() -> Path:
    """``$GEOSEG_SAMPLE_DATA``, else ``../shared/data`` beside the repository checkout."""
    default = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    return Path(os.environ.get(VARIABLE, default))


def expand_variables(text: str) -> str:
    """Expand environment variables in a path; ``$GEOSEG_SAMPLE_DATA`` always has a value."""
    if VARIABLE not in os.environ:
        default = str(sample_data_dir())
        text = text.replace("${" + VARIABLE + "}", default).replace("$" + VARIABLE, default)
    return os.path.expandvars(text)
