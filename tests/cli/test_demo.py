"""The README's main job: ``geoseg demo`` over the bundled catalog (real data) or synthetic scenes."""

import json
import subprocess
import sys

import pytest
import rasterio

from geoseg.vectorize import read_features
from tests.conftest import SHIPPED_MODEL


def run_demo(cwd, *extra):
    """``geoseg demo --out demo`` run from ``cwd``: a relative output folder, as users type it."""
    command = [sys.executable, "-m", "geoseg", "demo", "--out", "demo", *extra]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd)


@pytest.mark.parametrize("synthetic", [False, True], ids=["bundled-catalog", "synthetic-offline"])
def test_demo_writes_masks_vectors_report_and_says_which_data_it_used(sample_data, tmp_path, synthetic):
    result = run_demo(tmp_path, *(["--synthetic"] if synthetic else []))
    assert result.returncode == 0, result.stderr
    first_line = result.stderr.splitlines()[0]
    assert ("synthetic demo scenes" if synthetic else "real sample data") in first_line
    report = json.loads((tmp_path / "demo" / "run-report.json").read_text())
    assert report["summary"]["failed"] == 0 and report["summary"]["ok"] == (3 if synthetic else 11)
    assert report["model"] == str(SHIPPED_MODEL)
    for scene in report["scenes"]:
        with rasterio.open(scene["outputs"]["mask"]) as mask:
            assert mask.count == 2 and mask.crs is not None
        assert len(read_features(scene["outputs"]["vectors"][0])) == scene["polygons"]
