"""Radiometry: scenes of other pixel types reach the model in the range of the pixels it learnt from."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from geoseg.errors import SceneError
from geoseg.inference import Predictor
from geoseg.model.metadata import Radiometry, read_metadata
from geoseg.model_input import ModelInput, prepare_scene, scaled_scene
from geoseg.predict import predict_scene
from geoseg.radiometry import band_scaling, needs_scaling
from geoseg.scenes import open_scene, read_window
from tests.conftest import SHIPPED_MODEL, eleven_bit_copy, read_as_is, tiled_and_whole_masks
from tests.distributed.conftest import geoseg, write_workflow

KAMPALA_CHIP = "labeled/hotosm-ramp/val-chips/OAM-1238425-1046544-21.tif"
LANDSAT_16BIT = "scenes/landsat8-224078-rgb.tif"


def test_each_bands_percentiles_go_to_the_target_and_values_beyond_are_clipped():
    values = np.arange(1001.0)
    sample = np.stack([values, 2 * values + 50])  # 1st / 99th percentiles: 10 / 990 and 70 / 2030
    scaling = band_scaling(sample, Radiometry(percentiles=(1, 99), target=(0, 255), stretch="per_band"))
    pixels = np.array([[[10, 990, 0, 1000, 500]], [[70, 2030, 0, 5000, 1050]]], dtype=np.uint16)
    scaled = scaling.apply(pixels)
    assert scaled.dtype == np.float32 and scaled.shape == pixels.shape
    np.testing.assert_allclose(scaled[:, 0], [[0, 255, 0, 255, 127.5]] * 2, atol=1e-3)
    assert scaling.source == ((10.0, 990.0), (70.0, 2030.0))


def test_a_joint_stretch_maps_all_bands_alike_from_the_lowest_to_the_highest_percentile():
    values = np.arange(1001.0)
    scaling = band_scaling(np.stack([values, 2 * values + 50]), Radiometry(percentiles=(1, 99)))
    pixels = np.array([[[10, 2030]], [[10, 2030]]], dtype=np.uint16)
    np.testing.assert_allclose(scaling.apply(pixels)[:, 0], [[0, 255]] * 2, atol=1e-3)
    assert scaling.note == "pixel values scaled to the model's 0–255 from 10–2030 (all bands)"


def test_a_band_of_one_value_goes_to_the_middle_of_the_target():
    scaling = band_scaling(np.full((1, 50), 7.0), Radiometry(stretch="per_band"))
    assert scaling.apply(np.array([[[7.0, 9.0]]]))[0, 0].tolist() == [127.5, 127.5]


@pytest.mark.parametrize(
    ("values", "dtype"),
    [
        (np.full(50, 1e308), np.float64),  # beyond float32's range
        (np.linspace(0, 1e-300, 50), np.float64),  # a range so small its scale is beyond float32's
        (np.linspace(0, 1e-40, 50), np.float32),  # float32 subnormals: the same
    ],
)
def test_extreme_float_values_scale_into_the_target_without_overflow(values, dtype):
    pixels = values.astype(dtype).reshape(1, 1, -1)
    scaling = band_scaling(pixels[:, 0].astype(np.float64), Radiometry(percentiles=(0, 100)))
    with np.errstate(all="raise"):
        scaled = scaling.apply(pixels)
    assert scaled.dtype == np.float32
    assert np.isfinite(scaled).all() and scaled.min() >= 0 and scaled.max() <= 255


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.float32])
def test_values_far_from_zero_keep_every_level_when_scaled(dtype):
    """256 levels stored near 2^30 (an offset int32 export): float32 arithmetic kept 5 of them."""
    pixels = (np.arange(256) + 2**30).astype(dtype).reshape(1, 1, -1)
    scaling = band_scaling(pixels[:, 0].astype(np.float64), Radiometry(percentiles=(0, 100)))
    scaled = scaling.apply(pixels)
    assert scaled.dtype == np.float32
    expected = np.arange(256) if dtype != np.float32 else (pixels[0, 0].astype(np.float64) - 2**30)
    np.testing.assert_allclose(scaled[0, 0], expected * 255 / expected.max(), atol=1e-3)


def test_a_nodata_value_at_the_end_of_float32_scales_without_a_warning():
    pixels = np.array([[[-3.4028235e38, 0.0, 50.0, 100.0]]], dtype=np.float32)  # a common GIS nodata
    scaling = band_scaling(pixels[0, :, 1:].astype(np.float64), Radiometry(percentiles=(0, 100)))
    with np.errstate(all="raise"):
        scaled = scaling.apply(pixels)
    np.testing.assert_allclose(scaled[0, 0], [0, 0, 127.5, 255], atol=1e-3)


def test_only_pixel_types_the_checkpoint_does_not_keep_are_scaled():
    rule = Radiometry()
    assert not needs_scaling("uint8", rule)
    assert all(needs_scaling(dtype, rule) for dtype in ("uint16", "int16", "float32", "float64"))
    assert not needs_scaling("uint16", None)  # a checkpoint from before radiometry: read as is


def test_the_shipped_model_scales_sixteen_bit_landsat_and_says_so(sample_data):
    metadata = read_metadata(SHIPPED_MODEL)
    prepared = prepare_scene(open_scene(sample_data / LANDSAT_16BIT), ModelInput.of(metadata))
    assert prepared.notes[0].startswith("GSD 30 m is outside")
    assert not any(note.startswith("pixel statistics") for note in prepared.notes)  # in range once scaled
    # its zero collar carries no nodata tag: it does not count towards the percentiles
    assert re.fullmatch(
        r"pixel values scaled to the model's 0–255 from [1-5]\d{3}–9\d{3} \(all bands\)",
        prepared.notes[-1],
    )
    pixels, valid = read_window(prepared.scene, prepared.scene.window)
    values = pixels[:, valid]
    assert values.dtype == np.float32 and values.min() == 0 and values.max() == 255
    assert 0.001 < (values == 255).mean() < 0.005  # the brightest band's top 0.5 %, clipped


def test_an_eight_bit_scene_is_read_as_it_is(sample_data):
    metadata = read_metadata(SHIPPED_MODEL)
    prepared = prepare_scene(open_scene(sample_data / KAMPALA_CHIP), ModelInput.of(metadata))
    assert prepared.scene.scaling is None and prepared.notes == []


def test_an_eleven_bit_copy_of_a_real_chip_is_segmented_like_the_chip(sample_data, tmp_path):
    predictor = Predictor.from_checkpoint(SHIPPED_MODEL, device="cpu")
    as_is = read_as_is(predictor)
    copy = eleven_bit_copy(sample_data / KAMPALA_CHIP, tmp_path / "11bit.tif")
    masks = {}
    for name, image, model in [
        ("8-bit", sample_data / KAMPALA_CHIP, predictor),
        ("scaled", copy, predictor),
        ("as is", copy, as_is),
    ]:
        with rasterio.open(predict_scene(image, model, tmp_path / f"{name}.tif")) as mask:
            masks[name] = mask.read(1)
    assert 0.2 < (masks["8-bit"] == 1).mean() < 0.8
    assert (masks["scaled"] == masks["8-bit"]).mean() > 0.95
    assert (masks["as is"] == masks["8-bit"]).mean() < 0.8


def test_a_scaled_scene_is_predicted_seam_free(sample_data, tmp_path):
    """The scaling comes from the whole scene, so small tiles see the values one pass sees."""
    with rasterio.open(sample_data / LANDSAT_16BIT) as src:
        profile = src.profile | {
            "width": 300,
            "height": 260,
            "transform": src.window_transform(Window(900, 800, 300, 260)),
        }
        pixels = src.read(window=Window(900, 800, 300, 260))
    crop = tmp_path / "crop.tif"
    with rasterio.open(crop, "w", **profile) as dst:
        dst.write(pixels)
    tiled, whole = tiled_and_whole_masks(
        str(crop), Predictor.from_checkpoint(SHIPPED_MODEL, device="cpu"), tmp_path
    )
    assert 0 < (whole == 1).mean() < 1
    np.testing.assert_array_equal(tiled, whole)


def test_a_scene_without_a_valid_pixel_to_scale_by_is_refused_naming_it(tmp_path):
    """One valid pixel, which the decimated sample does not see: nothing to take percentiles of."""
    path = tmp_path / "sparse.tif"
    profile = {
        "driver": "GTiff",
        "width": 2048,
        "height": 2048,
        "count": 3,
        "dtype": "uint16",
        "nodata": 0,
        "crs": "EPSG:32618",
        "transform": rasterio.transform.from_origin(500_000, 4_000_000, 0.3, 0.3),
        "tiled": True,
        "compress": "deflate",
    }
    pixels = np.zeros((3, 2048, 2048), dtype=np.uint16)
    pixels[:, 0, 0] = 500
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(pixels)
    with pytest.raises(SceneError, match=r"sparse\.tif: no readable valid pixel to scale its values by"):
        prepare_scene(open_scene(path), ModelInput(3, None, None, Radiometry()))


def test_a_run_scales_an_eleven_bit_scene_like_predict_and_reports_it(sample_data, tmp_path):
    copy = eleven_bit_copy(sample_data / KAMPALA_CHIP, tmp_path / "copy-11bit.tif")
    workflow = write_workflow(tmp_path, [copy, sample_data / KAMPALA_CHIP], SHIPPED_MODEL)
    result = geoseg("run", str(workflow))
    assert result.returncode == 0, result.stderr
    report = {s["id"]: s for s in json.loads((tmp_path / "out" / "run-report.json").read_text())["scenes"]}
    assert [w.split(" from ")[0] for w in report["copy-11bit"]["warnings"]] == [
        "pixel values scaled to the model's 0–255"
    ]
    assert report[Path(KAMPALA_CHIP).stem]["warnings"] == []
    predictor = Predictor.from_checkpoint(SHIPPED_MODEL, device="cpu")
    expected = predict_scene(copy, predictor, tmp_path / "predicted.tif", tile_size_px=128, block_size_px=256)
    with (
        rasterio.open(tmp_path / "out" / "masks" / "copy-11bit.tif") as ran,
        rasterio.open(expected) as predicted,
    ):
        np.testing.assert_array_equal(ran.read(1), predicted.read(1))


def test_untagged_fill_does_not_set_the_stretch(tmp_path):
    """Pixels 0 in every band (a collar without a nodata tag), NaN or inf are left out of the percentiles."""
    path = tmp_path / "collar.tif"
    profile = {
        "driver": "GTiff", "width": 8, "height": 8, "count": 2, "dtype": "float32",
        "crs": "EPSG:32618", "transform": rasterio.transform.from_origin(500_000, 4_000_000, 0.3, 0.3),
    }  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.ones((2, 8, 8), dtype=np.float32))
    data = np.tile(np.linspace(0.1, 0.5, 100), (2, 1))
    fill = np.array([[0.0] * 30 + [np.nan] * 5 + [np.inf] * 5, [0.0] * 30 + [1.0] * 5 + [2.0] * 5])
    scene = scaled_scene(
        open_scene(path), Radiometry(percentiles=(0, 100)), np.concatenate([data, fill], axis=1)
    )
    assert scene.scaling is not None and scene.scaling.source[0] == pytest.approx((0.1, 0.5))
