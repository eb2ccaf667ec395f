"""``geoseg predict`` says on stderr when the model does not apply to a scene, and predicts anyway."""

from __future__ import annotations

import subprocess
import sys

import rasterio

from tests.conftest import SHIPPED_MODEL


def _predict(image, out, *options):
    command = [sys.executable, "-m", "geoseg", "predict", str(image), "--model", str(SHIPPED_MODEL)]
    command += ["--out", str(out), "--device", "cpu", *options]
    return subprocess.run(command, capture_output=True, text=True)


def test_a_scene_coarser_than_the_training_data_is_predicted_with_a_warning(sample_data, tmp_path):
    result = _predict(sample_data / "labeled/massachusetts-buildings/23429155_15.tif", tmp_path / "m.tif")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and warnings[0].startswith("warning: GSD 1 m is outside the model's")
    assert (tmp_path / "m.tif").exists()


def test_a_scene_like_the_training_data_gets_no_warning(sample_data, tmp_path):
    chip = sample_data / "labeled/hotosm-ramp/val-chips/OAM-1238424-1046544-21.tif"
    result = _predict(chip, tmp_path / "m.tif")
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr


def test_a_coarse_scene_read_at_the_model_gsd_gets_a_note_and_a_mask_on_its_own_grid(sample_data, tmp_path):
    scene = sample_data / "labeled/massachusetts-buildings/23429155_15.tif"
    result = _predict(scene, tmp_path / "m.tif", "--resample", "model")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert warnings == ["warning: resampled from GSD 1 m to the model's 0.3 m"]
    with rasterio.open(tmp_path / "m.tif") as mask, rasterio.open(scene) as src:
        assert (mask.crs, mask.transform, mask.shape) == (src.crs, src.transform, src.shape)
