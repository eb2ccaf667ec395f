"""``geoseg predict`` from the shell: bad input gives one clear line, exit code ≠ 0, no output."""

import contextlib
import os
import pty
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import rasterio

from geoseg.model import BUILDINGS_MODEL
from geoseg.scenes import open_scene, read_window
from tests.conftest import make_checkpoint

GEOSEG = [sys.executable, "-m", "geoseg"]


@pytest.fixture(scope="module")
def rgb_model(sample_data, tmp_path_factory):
    scene = open_scene(sample_data / "edge/RGB.byte.tif")
    pixels, _ = read_window(scene, scene.window)
    return make_checkpoint(tmp_path_factory.mktemp("model") / "rgb.safetensors", pixels)


def run_predict(image, model, out, *extra):
    command = [*GEOSEG, "predict", str(image), "--model", str(model), "--out", str(out), *extra]
    return subprocess.run(command, capture_output=True, text=True)


def test_predict_writes_a_mask(sample_data, rgb_model, tmp_path):
    result = run_predict(sample_data / "edge/RGB.byte.tif", rgb_model, tmp_path / "mask.tif")
    assert result.returncode == 0, result.stderr
    with rasterio.open(tmp_path / "mask.tif") as mask:
        assert mask.shape == (718, 791)


def test_predict_reads_a_scene_in_a_zip_by_its_gdal_name_as_given(sample_data, rgb_model, tmp_path):
    with zipfile.ZipFile(tmp_path / "scenes.zip", "w") as archive:
        archive.write(sample_data / "edge/RGB.byte.tif", "RGB.byte.tif")
    name = f"/vsizip/{tmp_path / 'scenes.zip'}/RGB.byte.tif"  # /vsizip//tmp/…: a Path collapses the //
    result = run_predict(name, rgb_model, tmp_path / "mask.tif")
    assert result.returncode == 0, result.stderr
    with rasterio.open(tmp_path / "mask.tif") as mask:
        assert mask.shape == (718, 791)


def test_predict_uses_the_shipped_building_model_unless_told_otherwise(sample_data, tmp_path):
    chip = next(iter(sorted((sample_data / "labeled/hotosm-ramp/val-chips").glob("*.tif"))))
    default = subprocess.run(
        [*GEOSEG, "predict", str(chip), "--out", str(tmp_path / "default.tif")],
        capture_output=True,
        text=True,
    )
    assert default.returncode == 0, default.stderr
    assert run_predict(chip, BUILDINGS_MODEL, tmp_path / "named.tif").returncode == 0
    with rasterio.open(tmp_path / "default.tif") as first, rasterio.open(tmp_path / "named.tif") as second:
        assert first.tags()["GEOSEG_CLASSES"] == '["background", "building"]'
        assert (first.read() == second.read()).all()


@pytest.mark.parametrize(
    "make_input,reason",
    [
        (lambda data, tmp: data / "edge/corrupt.tif", "corrupt or truncated"),
        (lambda data, tmp: data / "edge/no-georeference.tif", "no CRS"),
        (lambda data, tmp: data / "edge/all-nodata.tif", "every pixel is nodata"),
        (lambda data, tmp: data / "labeled/spacenet-atlanta-pan/image.tif", "model expects 3"),
        (lambda data, tmp: _text_file_named_tif(tmp), "not a readable raster"),
        (lambda data, tmp: tmp / "missing.tif", "file not found"),
    ],
    ids=["corrupt", "no-georeference", "all-nodata", "wrong-bands", "text-as-tif", "missing"],
)
def test_bad_input_gives_one_line_naming_the_file_and_leaves_nothing(
    sample_data, rgb_model, tmp_path, make_input, reason
):
    image = make_input(sample_data, tmp_path)
    out_dir = tmp_path / "out"
    extra = ["--bands", "1,2,3"] if "all-nodata" in str(image) else []  # a 4-band file
    result = run_predict(image, rgb_model, out_dir / "mask.tif", *extra)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(image) in lines[0] and reason in lines[0]
    assert "Traceback" not in result.stderr
    assert not out_dir.exists() or not any(out_dir.iterdir())


def test_pickled_model_is_refused(sample_data, tmp_path):
    import torch

    fake = tmp_path / "model.safetensors"
    torch.save({"weight": torch.zeros(1)}, fake)
    result = run_predict(sample_data / "edge/RGB.byte.tif", fake, tmp_path / "mask.tif")
    assert result.returncode != 0 and "pickled" in result.stderr and "Traceback" not in result.stderr


def _text_file_named_tif(tmp: Path) -> Path:
    path = tmp / "notes.tif"
    path.write_text("this is not a GeoTIFF\n")
    return path


def test_a_mask_name_that_is_not_tif_is_refused_in_one_line(sample_data, rgb_model, tmp_path):
    result = run_predict(sample_data / "edge/RGB.byte.tif", rgb_model, tmp_path / "mask.png")
    assert result.returncode != 0
    (line,) = result.stderr.strip().splitlines()
    assert "mask.png" in line and ".tif" in line
    assert not (tmp_path / "mask.png").exists()


def test_a_web_map_tile_without_georeferencing_points_at_geoseg_tiles(sample_data, rgb_model, tmp_path):
    tile = next((sample_data / "labeled/hotosm-ramp/tiles/1").glob("OAM-*.png"))
    result = run_predict(tile, rgb_model, tmp_path / "mask.tif")
    assert result.returncode != 0
    (line,) = result.stderr.strip().splitlines()
    assert "no CRS" in line and "geoseg tiles mosaic" in line and "geoseg tiles georeference" in line


def test_progress_is_quiet_when_stderr_is_not_a_terminal(sample_data, rgb_model, tmp_path):
    result = run_predict(sample_data / "edge/RGB.byte.tif", rgb_model, tmp_path / "mask.tif")
    assert result.returncode == 0 and result.stderr == ""


def test_progress_shows_blocks_rate_and_time_left_on_a_terminal(sample_data, rgb_model, tmp_path):
    image, out = sample_data / "edge/RGB.byte.tif", tmp_path / "mask.tif"
    command = [*GEOSEG, "predict", str(image), "--model", str(rgb_model), "--out", str(out)]
    controller, terminal = pty.openpty()
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "120"}
    with subprocess.Popen(command, stdin=terminal, stdout=terminal, stderr=terminal, env=env) as process:
        os.close(terminal)
        shown = b""
        with contextlib.suppress(OSError):  # EIO once the process has closed the terminal
            while chunk := os.read(controller, 4096):
                shown += chunk
        assert process.wait(timeout=120) == 0, shown.decode(errors="replace")
    os.close(controller)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown.decode(errors="replace"))  # colours, cursor
    assert "1/1 blocks" in text and "Mpx/s" in text
