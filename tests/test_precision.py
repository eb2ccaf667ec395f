"""Forward-pass arithmetic: fp32 by default (GPU masks match the CPU's), bf16 autocast on request."""

from __future__ import annotations

import numpy as np
import pytest

from geoseg.errors import ConfigError
from geoseg.inference import Predictor
from geoseg.scenes import open_scene, read_window
from geoseg.workflow import load_workflow
from tests.conftest import SHIPPED_MODEL


@pytest.fixture(scope="module")
def tiles(sample_data) -> np.ndarray:
    scene = open_scene(sample_data / "labeled/quebec-aerial-tiles/image_1.tif")
    pixels, _ = read_window(scene, scene.window)
    return np.stack([pixels[:, :256, :256], pixels[:, 256:, 256:]])


def test_fp32_is_the_default_and_bf16_moves_only_near_ties(tiles):
    fp32 = Predictor.from_checkpoint(SHIPPED_MODEL, device="cpu")
    assert fp32.precision == "fp32"
    bf16 = Predictor.from_checkpoint(SHIPPED_MODEL, device="cpu", precision="bf16")
    (classes, percent), (bf16_classes, _) = fp32.predict(tiles), bf16.predict(tiles)
    differ = classes != bf16_classes
    assert 0 < differ.mean() < 0.01, "bf16 rounds: a few pixels near 50 % change class"
    assert np.abs(percent[differ].astype(int) - 50).max() <= 10


def test_a_bad_precision_in_a_workflow_is_one_line_naming_the_field(tmp_path):
    path = tmp_path / "wf.yaml"
    path.write_text("inputs: a.tif\nmodel: m\noutput: o\ninference: {precision: fp16}\n")
    with pytest.raises(ConfigError, match=r"field 'inference\.precision'") as error:
        load_workflow(path)
    assert "\n" not in str(error.value)
