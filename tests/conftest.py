"""Shared fixtures: the real sample data (``GEOSEG_SAMPLE_DATA``, default ``../shared/data``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def sample_data_root() -> Path:
    """Where the real sample scenes live."""
    return Path(os.environ.get("GEOSEG_SAMPLE_DATA", REPO.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def sample_data() -> Path:
    """The real sample data folder; tests that need it skip (loudly) when it is absent."""
    root = sample_data_root()
    if not (root / "README.md").exists():
        pytest.skip(f"real sample data not found at {root} (set GEOSEG_SAMPLE_DATA)")
    return root
