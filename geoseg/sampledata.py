"""Where the real sample data lives, and ``$GEOSEG_SAMPLE_DATA`` in config paths."""

from __future__ import annotations

import os
import re
from pathlib import Path

VARIABLE = "GEOSEG_SAMPLE_DATA"
_SAMPLE_DATA = re.compile(r"\$(\{" + VARIABLE + r"\}|" + VARIABLE + r"(?!\w))")


def sample_data_dir() -> Path:
    """``$GEOSEG_SAMPLE_DATA`` (a relative one taken from the current folder, as the shell that set
    it would), else ``../shared/data`` beside the repository checkout."""
    default = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    return Path(os.path.abspath(os.environ.get(VARIABLE, default)))


def expand_variables(text: str) -> str:
    """Expand environment variables in a path; ``$GEOSEG_SAMPLE_DATA`` always has a value, and an
    absolute one, so that a config's folder does not change where it points."""
    data = str(sample_data_dir())
    return os.path.expandvars(
        re.sub(r"\$(\{" + VARIABLE + r"\}|" + VARIABLE + r"(?!\w))", lambda _: data, text)
    )
