"""``geoseg vectorize``: a thin layer over ``vectorize_mask``; user mistakes are one line."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from geoseg.cli import main
from geoseg.cli.app import app
from geoseg.vectorize import read_features
from tests.vectorize.conftest import write_mask


def test_vectorize_writes_the_layers_and_prints_a_summary(tmp_path):
    classes = np.zeros((64, 64), dtype=np.uint8)
    classes[1:3, 1:3] = 1  # 400 m², dropped by --min-area
    classes[10:20, 5:30] = 1
    mask = write_mask(tmp_path / "scene.tif", classes)
    result = CliRunner().invoke(
        app,
        [
            "vectorize", str(mask), "--out", str(tmp_path / "a.gpkg"), "--out",
            str(tmp_path / "a.geojson"), "--block-size", "16", "--min-area", "1000",
            "--simplify", "5", "--connectivity", "4",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "1 polygons from 16 blocks" in result.output
    assert len(read_features(tmp_path / "a.gpkg")) == len(read_features(tmp_path / "a.geojson")) == 1


@pytest.mark.parametrize("option", ["--min-area", "--simplify", "--fill-holes"])
@pytest.mark.parametrize("value", ["inf", "nan"])
def test_a_size_that_is_not_a_finite_number_is_a_usage_error(tmp_path, option, value):
    mask = write_mask(tmp_path / "scene.tif", np.ones((4, 4), dtype=np.uint8))
    result = CliRunner().invoke(
        app, ["vectorize", str(mask), "--out", str(tmp_path / "a.gpkg"), option, value]
    )
    assert result.exit_code == 2
    assert option in result.output and not (tmp_path / "a.gpkg").exists()


def test_a_bad_connectivity_is_a_usage_error(tmp_path):
    mask = write_mask(tmp_path / "scene.tif", np.ones((4, 4), dtype=np.uint8))
    result = CliRunner().invoke(
        app, ["vectorize", str(mask), "--out", str(tmp_path / "a.gpkg"), "--connectivity", "6"]
    )
    assert result.exit_code == 2
    assert "must be 4 or 8" in result.output


def test_a_user_mistake_is_one_line_without_a_traceback(tmp_path, monkeypatch, capsys):
    mask = write_mask(tmp_path / "scene.tif", np.ones((4, 4), dtype=np.uint8))
    monkeypatch.setattr("sys.argv", ["geoseg", "vectorize", str(mask), "--out", "x.kml"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "x.kml: unsupported vector format" in error
