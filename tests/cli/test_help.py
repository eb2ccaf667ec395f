"""Help screens read like a manual: ``IMAGE`` in the usage line, flags without a ``<bool>`` type."""

import subprocess
import sys

import pytest

USAGE = {
    (): "geoseg [OPTIONS] COMMAND [ARGS]...",
    ("predict",): "geoseg predict [OPTIONS] IMAGE",
    ("run",): "geoseg run [OPTIONS] WORKFLOW",
    ("evaluate",): "geoseg evaluate [OPTIONS] CHECKPOINT",
    ("catalog", "build"): "geoseg catalog build [OPTIONS] SOURCES...",
    ("tiles", "mosaic"): "geoseg tiles mosaic [OPTIONS] FOLDER",
}


@pytest.mark.parametrize("command", USAGE, ids=lambda c: " ".join(c) or "geoseg")
def test_help_names_arguments_in_capitals_and_shows_flags_bare(command):
    result = subprocess.run(
        [sys.executable, "-m", "geoseg", *command, "--help"],
        capture_output=True,
        text=True,
        env={"COLUMNS": "200", "TERM": "dumb", "PATH": ""},
    )
    assert result.returncode == 0, result.stderr
    usage = next(line for line in result.stdout.splitlines() if "Usage:" in line)
    assert usage.replace("python -m geoseg", "geoseg").strip() == f"Usage: {USAGE[command]}"
    assert "<bool>" not in result.stdout
