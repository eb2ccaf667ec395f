"""Predicting whole scenes: seam-free, exactly georeferenced, nodata kept, memory by block."""

import numpy as np
import pytest
import rasterio

from geoseg.inference import Predictor
from geoseg.maskformat import CLASSES_TAG, NODATA
from geoseg.predict import predict_scene
from geoseg.scenes import open_scene, read_window
from tests.conftest import make_checkpoint, tiled_and_whole_masks

REAL_SCENES = [
    "labeled/spacenet-atlanta-pan/image.tif",  # uint16 panchromatic, UTM
    "labeled/landsat-albers/image.tif",  # int16, custom Albers WKT, nodata -9999
    "edge/RGBA.byte.tif",  # RGB + alpha band
]


@pytest.fixture(params=REAL_SCENES, ids=lambda p: p.split("/")[-2])
def scene_and_predictor(request, sample_data, tmp_path):
    scene = open_scene(sample_data / request.param)
    pixels, _ = read_window(scene, scene.window)
    checkpoint = make_checkpoint(tmp_path / "model.safetensors", pixels)
    return scene, Predictor.from_checkpoint(checkpoint, device="cpu", batch_size=4)


def test_tiled_mask_equals_whole_image_mask(scene_and_predictor, tmp_path):
    scene, predictor = scene_and_predictor
    tiled_mask, whole_mask = tiled_and_whole_masks(scene.path, predictor, tmp_path)
    classes = set(np.unique(whole_mask)) - {NODATA}
    assert classes == {0, 1}, "the test model must predict both classes"
    assert (tiled_mask == whole_mask).mean() >= 0.9999


def test_small_halo_shows_seams_so_the_halo_matters(scene_and_predictor, tmp_path):
    scene, predictor = scene_and_predictor
    tiled = predict_scene(scene.path, predictor, tmp_path / "tiled.tif", tile_size_px=64, halo_px=0)
    whole = predict_scene(scene.path, predictor, tmp_path / "whole.tif", tile_size_px=4096)
    with rasterio.open(tiled) as a, rasterio.open(whole) as b:
        assert (a.read(1) != b.read(1)).mean() > 0.0001


def test_mask_has_the_scene_georeferencing_and_nodata(scene_and_predictor, tmp_path):
    scene, predictor = scene_and_predictor
    out = predict_scene(scene.path, predictor, tmp_path / "mask.tif", tile_size_px=256, with_probability=True)
    with rasterio.open(out) as mask, rasterio.open(scene.path) as src:
        assert (mask.crs, mask.transform, mask.width, mask.height) == (
            src.crs,
            src.transform,
            src.width,
            src.height,
        )
        classes, probability = mask.read(1), mask.read(2)
        invalid = ~src.read_masks(list(scene.bands)).any(axis=0)
        assert np.array_equal(classes == NODATA, invalid)
        assert np.array_equal(probability == NODATA, invalid)
        assert probability[~invalid].min() >= 50 and probability[~invalid].max() <= 100
        assert mask.tags()[CLASSES_TAG] == '["background", "thing"]'
        assert mask.block_shapes[0] == (512, 512) or mask.block_shapes[0] == mask.shape
        assert mask.overviews(1) or max(mask.shape) <= 512, "scenes larger than a COG block get overviews"


def test_output_is_a_cloud_optimized_geotiff(sample_data, tmp_path):
    scene = open_scene(sample_data / "scenes/landsat8-224078-rgb.tif")
    pixels, _ = read_window(scene, scene.window)
    predictor = Predictor.from_checkpoint(make_checkpoint(tmp_path / "m.safetensors", pixels), device="cpu")
    out = predict_scene(scene.path, predictor, tmp_path / "mask.tif")
    with rasterio.open(out) as mask:
        assert mask.overviews(1), "a COG of this size has overviews"
        assert mask.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert mask.crs == scene.crs and mask.transform == scene.transform
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors", "mask.tif"]


def test_compiled_model_gives_the_same_mask(sample_data, tmp_path):
    scene = open_scene(sample_data / "labeled/quebec-aerial-tiles/image_1.tif")
    pixels, _ = read_window(scene, scene.window)
    checkpoint = make_checkpoint(tmp_path / "model.safetensors", pixels)
    masks = []
    for compile_model in (False, True):
        predictor = Predictor.from_checkpoint(checkpoint, "cpu", batch_size=4, compile_model=compile_model)
        out = predict_scene(
            scene.path, predictor, tmp_path / f"mask-{compile_model}.tif", tile_size_px=256, block_size_px=512
        )
        with rasterio.open(out) as mask:
            masks.append(mask.read(1))
    assert set(np.unique(masks[0])) == {0, 1}
    assert (masks[0] == masks[1]).mean() >= 0.9999
