"""Batched inference: devices are checked where they enter, batches give the whole's result."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from geoseg.errors import ConfigError, GeosegError
from geoseg.inference import Predictor, resolve_device
from geoseg.maskformat import PROBABILITY_SCALE
from geoseg.model.linear import LinearSegmenter
from geoseg.model.metadata import ModelMetadata
from tests.conftest import SHIPPED_MODEL


def _threshold_predictor(batch_size=8):
    model = LinearSegmenter.band_threshold(2, band=1, threshold=0.0)
    meta = ModelMetadata.for_generator(model, classes=["low", "high"], mean=[0.0, 10.0], std=[1.0, 2.0])
    return Predictor(model, meta, torch.device("cpu"), batch_size)


@pytest.mark.parametrize("device", ["tpu", "cuda:x", "", "CPU", "cpu:0 ", "cuda:-1"])
def test_unknown_device_is_a_config_error_naming_it(device):
    with pytest.raises(ConfigError, match=f"device {device!r}"):
        resolve_device(device)


def test_cpu_and_auto_resolve():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_refused():
    with pytest.raises(GeosegError, match="CUDA is not available"):
        resolve_device("cuda:0")


@pytest.mark.parametrize("batch_size", [0, -1])
def test_batch_size_below_1_is_refused(batch_size):
    with pytest.raises(ConfigError, match="batch_size"):
        _threshold_predictor(batch_size)


def test_predictions_apply_the_checkpoint_normalisation():
    """Band 2 normalised is (x - 10) / 2: class 1 above 10, probability sigmoid of that."""
    tiles = np.stack([np.full((2, 3, 3), 0.0), np.full((2, 3, 3), 12.0)]).astype(np.float32)
    classes, probability = _threshold_predictor().predict(tiles)
    assert classes[:, 0, 0].tolist() == [0, 1]
    sigmoid = torch.sigmoid(torch.tensor([-5.0, 1.0]))
    expected = torch.round(torch.stack([1 - sigmoid[0], sigmoid[1]]) * PROBABILITY_SCALE)
    assert probability[:, 0, 0].tolist() == expected.tolist()


def test_batched_prediction_equals_one_tile_at_a_time():
    tiles = np.random.default_rng(0).uniform(0, 20, (5, 2, 8, 8)).astype(np.float32)
    whole = _threshold_predictor(batch_size=5).predict(tiles)
    batched = _threshold_predictor(batch_size=2).predict(tiles)
    assert all(np.array_equal(a, b) for a, b in zip(whole, batched, strict=True))


@pytest.mark.parametrize("tta", ["none", "flips"])
def test_classes_alone_are_predicts_classes_and_leave_the_tiles_as_they_were(tta):
    tiles = np.random.default_rng(0).uniform(0, 20, (5, 2, 8, 8)).astype(np.float32)
    before = tiles.copy()
    predictor = _threshold_predictor(batch_size=2)
    predictor.tta = tta
    classes, _ = predictor.predict(tiles)
    assert np.array_equal(predictor.classify(tiles), classes)
    assert np.array_equal(tiles, before)


def test_predict_cli_refuses_an_unknown_device_in_one_line(sample_data, tmp_path):
    command = [sys.executable, "-m", "geoseg", "predict", str(sample_data / "edge/RGB.byte.tif")]
    out = tmp_path / "mask.tif"
    result = subprocess.run(
        [*command, "--model", str(SHIPPED_MODEL), "--out", str(out), "--device", "tpu"],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "'tpu'" in lines[0], result.stderr
    assert "Traceback" not in result.stderr and not out.exists()


def test_batches_are_split_so_the_widest_feature_map_stays_32_bit_indexable():
    """The H100 refused 128 tiles of 832² through a base-width-24 U-Net (128 × 48 × 832² > 2³¹)."""
    from geoseg.inference import MAX_TENSOR_ELEMENTS, safe_batch_size
    from geoseg.model.unet import UNetGenerator

    meta = ModelMetadata.for_generator(
        UNetGenerator(3, 2, base_width=24, depth=4, upsample="bilinear"),
        classes=["background", "building"],
        mean=[0.0] * 3,
        std=[1.0] * 3,
    )
    batch = safe_batch_size(meta, 832, 832)
    assert batch < 128 and batch * 48 * 832**2 <= MAX_TENSOR_ELEMENTS < (batch + 1) * 48 * 832**2
    assert safe_batch_size(meta, 64, 64) > 1000
