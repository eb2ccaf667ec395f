"""The per-pixel linear classifier: a checkpoint like any other, predicted without seams."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import rasterio
import torch
import yaml

from geoseg.inference import Predictor
from geoseg.maskformat import NODATA
from geoseg.model.architecture import LinearArchitecture
from geoseg.model.checkpoint import load_generator, save_checkpoint
from geoseg.model.linear import LinearSegmenter
from geoseg.model.metadata import ModelMetadata, read_metadata
from geoseg.predict import predict_scene
from geoseg.scenes import open_scene, read_window
from geoseg.vectorize import read_features

THRESHOLD = 100.5
"""Band 1 above this is class 1 (raw uint8 values are integers: no pixel sits on it)."""


def threshold_checkpoint(path, in_bands=3):
    model = LinearSegmenter.band_threshold(in_bands, band=0, threshold=THRESHOLD)
    meta = ModelMetadata.for_generator(
        model, classes=["background", "bright"], mean=[0.0] * in_bands, std=[1.0] * in_bands
    )
    return save_checkpoint(path, model, meta)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return threshold_checkpoint(tmp_path_factory.mktemp("linear") / "bright.safetensors")


def test_linear_checkpoint_round_trips_with_stride_1_and_radius_0(tmp_path):
    torch.manual_seed(0)
    model = LinearSegmenter(4, 3).eval()
    meta = ModelMetadata.for_generator(model, classes=["a", "b", "c"], mean=[1.0] * 4, std=[2.0] * 4)
    path = save_checkpoint(tmp_path / "linear.safetensors", model, meta)
    loaded, metadata = load_generator(path)
    image = torch.randn(2, 4, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(image), loaded(image))
    assert isinstance(metadata.architecture, LinearArchitecture)
    assert (metadata.total_stride, metadata.receptive_radius_px) == (1, 0)
    assert read_metadata(path) == metadata


def test_linear_head_has_the_unet_head_shapes():
    binary, three = LinearSegmenter(5, 2), LinearSegmenter(5, 3)
    assert binary.head.weight.shape == (1, 5, 1, 1) and binary.head.bias.shape == (1,)
    assert three.head.weight.shape == (3, 5, 1, 1) and three.head.bias.shape == (3,)


def test_checkpoint_architecture_is_name_bands_and_classes_only(checkpoint):
    header_size = int.from_bytes(checkpoint.read_bytes()[:8], "little")
    header = json.loads(checkpoint.read_bytes()[8 : 8 + header_size])
    architecture = json.loads(header["__metadata__"]["geoseg"])["architecture"]
    assert architecture == {"name": "linear", "in_bands": 3, "num_classes": 2}
    assert {k: v["shape"] for k, v in header.items() if k != "__metadata__"} == {
        "head.weight": [1, 3, 1, 1],
        "head.bias": [1],
    }


def _expected_mask(scene_path):
    scene = open_scene(scene_path)
    pixels, valid = read_window(scene, scene.window)
    return np.where(valid, (pixels[0] > THRESHOLD).astype(np.uint8), NODATA)


def test_predict_cli_gives_class_1_where_band_1_exceeds_the_threshold(sample_data, checkpoint, tmp_path):
    image, out = sample_data / "edge/RGB.byte.tif", tmp_path / "mask.tif"
    command = [sys.executable, "-m", "geoseg", "predict", str(image), "--model", str(checkpoint)]
    result = subprocess.run([*command, "--out", str(out), "--device", "cpu"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    with rasterio.open(out) as mask:
        classes = mask.read(1)
    expected = _expected_mask(image)
    assert np.array_equal(classes, expected)
    assert 0.05 < np.mean(expected == 1) < 0.95  # a real split, not an empty mask


def test_tiled_mask_equals_whole_image_mask(sample_data, checkpoint, tmp_path):
    image = sample_data / "edge/RGB.byte.tif"
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    predict_scene(image, predictor, tmp_path / "tiled.tif", tile_size_px=50, block_size_px=150)
    predict_scene(image, predictor, tmp_path / "whole.tif", tile_size_px=1024, block_size_px=1024)
    with rasterio.open(tmp_path / "tiled.tif") as tiled, rasterio.open(tmp_path / "whole.tif") as whole:
        assert np.array_equal(tiled.read(), whole.read())
        assert np.array_equal(tiled.read(1), _expected_mask(image))


def test_geoseg_run_takes_a_linear_checkpoint_like_any_other(sample_data, checkpoint, tmp_path):
    image = sample_data / "edge/RGB.byte.tif"
    workflow = {
        "inputs": [str(image)],
        "model": str(checkpoint),
        "output": str(tmp_path / "out"),
        "tiling": {"tile_size_px": 100, "block_size_px": 300},
        "outputs": {"vector_formats": ["parquet"], "run_layer": None},
        "cluster": {"n_workers": 1, "dashboard_address": "127.0.0.1:0"},
        "inference": {"device": "cpu"},
    }
    path = tmp_path / "workflow.yaml"
    path.write_text(yaml.safe_dump(workflow))
    result = subprocess.run(
        [sys.executable, "-m", "geoseg", "run", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    with rasterio.open(tmp_path / "out/masks/RGB.byte.tif") as mask:
        assert np.array_equal(mask.read(1), _expected_mask(image))
    assert len(read_features(tmp_path / "out/vectors/RGB.byte.parquet")) > 0
