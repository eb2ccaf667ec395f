"""U-Net up-sampling: bilinear ×2 + 3×3 conv has no checkerboard and keeps tiled == whole."""

from __future__ import annotations

import numpy as np
import torch

from geoseg.inference import Predictor
from geoseg.maskformat import NODATA
from geoseg.model.checkpoint import load_generator
from geoseg.model.metadata import read_metadata
from geoseg.model.unet import UNetGenerator
from geoseg.scenes import open_scene, read_window
from tests.conftest import SHIPPED_MODEL, make_checkpoint, tiled_and_whole_masks


def _generator(upsample: str, in_bands: int = 3) -> UNetGenerator:
    torch.manual_seed(0)
    return UNetGenerator(in_bands, 2, base_width=8, depth=3, upsample=upsample).eval()


def _reach_px(model: UNetGenerator) -> int:
    """How far from an output pixel the input pixels it depends on lie (Chebyshev distance)."""
    image = torch.randn(1, 1, 256, 256, requires_grad=True)
    model(image)[0, 0, 128, 128].backward()
    assert image.grad is not None
    rows, cols = np.nonzero(image.grad[0, 0].numpy())
    return int(max(np.abs(rows - 128).max(), np.abs(cols - 128).max()))


def test_receptive_radius_bounds_what_an_output_pixel_sees():
    transpose, bilinear = _generator("transpose", in_bands=1), _generator("bilinear", in_bands=1)
    assert _reach_px(transpose) <= transpose.receptive_radius_px
    assert transpose.receptive_radius_px < _reach_px(bilinear) <= bilinear.receptive_radius_px


def test_bilinear_radius_adds_the_interpolation_and_its_convolution():
    assert _generator("transpose").receptive_radius_px == 58
    assert _generator("bilinear").receptive_radius_px == 58 + 2 * (1 + 2 + 4)  # 2 × jump per level


def test_constant_image_gives_a_constant_interior_with_bilinear_but_a_grid_with_transposed_convs():
    """The checkerboard of Odena et al. (2016), seen on the simplest input."""
    interiors = {}
    for upsample in ("transpose", "bilinear"):
        model = _generator(upsample)
        with torch.no_grad():
            logits = model(torch.ones(1, 3, 256, 256))[0, 0]
        radius = model.receptive_radius_px
        interiors[upsample] = logits[radius:-radius, radius:-radius]
    transpose, bilinear = interiors["transpose"], interiors["bilinear"]
    assert float(bilinear.max() - bilinear.min()) < 1e-7
    assert float(transpose.max() - transpose.min()) > 1e-6


def test_checkpoints_without_the_field_are_transposed_and_bilinear_ones_round_trip(sample_data, tmp_path):
    assert read_metadata(SHIPPED_MODEL).architecture.upsample == "transpose"
    scene = open_scene(sample_data / "edge/RGB.byte.tif")
    pixels, _ = read_window(scene, scene.window)
    path = make_checkpoint(tmp_path / "bilinear.safetensors", pixels, upsample="bilinear")
    model, metadata = load_generator(path)
    assert metadata.architecture.upsample == "bilinear" and model.upsample == "bilinear"
    assert metadata.receptive_radius_px == model.receptive_radius_px == 72


def test_tiled_mask_equals_whole_image_mask_with_bilinear_upsampling(sample_data, tmp_path):
    scene = open_scene(sample_data / "labeled/spacenet-atlanta-pan/image.tif")  # uint16, 900 × 900
    pixels, _ = read_window(scene, scene.window)
    checkpoint = make_checkpoint(tmp_path / "bilinear.safetensors", pixels, upsample="bilinear")
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu", batch_size=4)
    tiled_mask, whole_mask = tiled_and_whole_masks(scene.path, predictor, tmp_path)
    assert set(np.unique(whole_mask)) - {NODATA} == {0, 1}, "the test model must predict both classes"
    assert (tiled_mask == whole_mask).mean() >= 0.9999
