"""``geoseg run`` flags scenes unlike the model's training data in the report, record and table."""

from __future__ import annotations

import json

import pytest

from tests.conftest import SHIPPED_MODEL
from tests.distributed.conftest import geoseg, write_workflow

KAMPALA_CHIP = "labeled/hotosm-ramp/val-chips/OAM-1238424-1046544-21.tif"


@pytest.fixture(scope="module")
def warned_run(sample_data, tmp_path_factory):
    """The shipped model over the 300 m Landsat scene and an in-domain Kampala chip."""
    folder = tmp_path_factory.mktemp("warnings")
    inputs = [sample_data / "edge/RGB.byte.tif", sample_data / KAMPALA_CHIP]
    workflow = write_workflow(folder, inputs, SHIPPED_MODEL)
    result = geoseg("run", str(workflow))
    assert result.returncode == 0, result.stderr
    return folder, workflow, result


def _report(folder):
    return {s["id"]: s for s in json.loads((folder / "out" / "run-report.json").read_text())["scenes"]}


def test_out_of_range_scene_is_processed_with_a_warning_in_the_report_and_table(warned_run):
    folder, _, result = warned_run
    landsat = _report(folder)["RGB.byte"]
    assert landsat["status"] == "ok" and landsat["polygons"] is not None
    assert landsat["warnings"][0].startswith("GSD 300 m is outside the model's")
    record = json.loads((folder / "out" / "scenes" / "RGB.byte.json").read_text())
    assert record["warnings"] == landsat["warnings"]
    table_rows = [line for line in result.stdout.splitlines() if line.startswith("│ RGB.byte ")]
    assert len(table_rows) == 1 and "GSD 300 m is outside" in table_rows[0]


def test_in_domain_kampala_chip_gets_no_warning(warned_run):
    folder, _, result = warned_run
    chip = _report(folder)["OAM-1238424-1046544-21"]
    assert chip["status"] == "ok" and chip["warnings"] == []
    table_rows = [line for line in result.stdout.splitlines() if line.startswith("│ OAM-1238424-1046544-21 ")]
    assert len(table_rows) == 1 and "GSD" not in table_rows[0] and "statistics" not in table_rows[0]


def test_a_resumed_run_keeps_the_warnings_of_skipped_scenes(warned_run):
    folder, workflow, _ = warned_run
    before = _report(folder)
    assert geoseg("run", str(workflow)).returncode == 0
    after = _report(folder)
    assert after["RGB.byte"]["status"] == "skipped"
    assert after["RGB.byte"]["warnings"] == before["RGB.byte"]["warnings"]
