"""No 2-pixel grid in the shipped model's masks: building share per 2×2 pixel phase on real scenes.

Issue 12's goal: on any scene, the foreground share of each (row mod 2, column mod 2) phase is
within 1 point of the others (``grid_phase_spread`` ≤ 0.01). Whole scenes, predicted the way
``geoseg predict`` does (one tile per scene here, for speed; tiled == whole is tested elsewhere).
Whole on purpose: the shipped model (2×2 transposed convolutions) has a weak diagonal grid,
phases (0, 0) and (1, 1) above (0, 1) and (1, 0) in every crop; over these whole scenes it stays
within 0.01, but 384-px crops of ``cogeo`` with a high building share reach 0.012.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from geoseg.inference import Predictor
from geoseg.maskformat import NODATA
from geoseg.predict import predict_scene
from geoseg.training.metrics import grid_phase_shares, grid_phase_spread
from tests.conftest import BASE_MODEL, SHIPPED_MODEL, make_checkpoint, read_as_is

MAX_SPREAD = 0.01
GPU_MODEL = SHIPPED_MODEL.parent / "buildings-unet-gpu.safetensors"
SCENES = [
    "edge/RGB.byte.tif",  # Landsat 7, 300 m: land, cloud, sea, nodata collar
    "edge/cogeo.tif",  # 0.47 m: snow, forest, a road; JPEG COG in EPSG:3857
    "labeled/quebec-aerial-tiles/image_1.tif",  # 0.3 m aerial, in the model's domain
    "labeled/hotosm-ramp/val-chips/OAM-1238424-1046544-21.tif",  # held-out Kampala chip
]


def foreground_mask(
    scene: Path, predictor: Predictor, folder: Path, bands: list[int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Foreground (class 1: building) and valid pixels of ``scene`` predicted as one tile."""
    out = predict_scene(scene, predictor, folder / "mask.tif", tile_size_px=1024, bands=bands)
    with rasterio.open(out) as mask:
        classes = mask.read(1)
    return classes == 1, classes != NODATA


SENTINEL2 = "labeled/sen1floods11-water/sample/S2/Spain_7370579_S2Hand.tif"  # int16, bands 4, 3, 2: RGB


@pytest.fixture(scope="module")
def shipped() -> Predictor:
    return Predictor.from_checkpoint(SHIPPED_MODEL, device="cpu")


@pytest.mark.parametrize("scene", SCENES, ids=lambda s: Path(s).stem)
def test_building_share_is_the_same_in_every_pixel_phase(scene, sample_data, shipped, tmp_path):
    assert shipped.metadata.classes[1] == "building"
    building, valid = foreground_mask(sample_data / scene, shipped, tmp_path)
    assert building[valid].mean() > 0.05, "a scene without buildings would pass trivially"
    shares = grid_phase_shares(building, valid)
    assert grid_phase_spread(building, valid) <= MAX_SPREAD, f"shares per phase {shares.round(4).tolist()}"


@pytest.mark.xfail(
    strict=True,
    reason="issue 12, not met yet: the shipped transposed-convolution model draws a 2-px grid on 16-bit "
    "Sentinel-2 pixels read unscaled (spread 0.016 at 97 % building; the base model: phases (0, 0) and "
    "(1, 1) 0.71 and 0.70, (0, 1) 0.63, spread 0.076)",
)
def test_building_share_is_the_same_in_every_pixel_phase_on_raw_sentinel2(sample_data, shipped, tmp_path):
    """Read as it is, far outside the training pixel values (the applicability check warns), the
    grid shows."""
    building, valid = foreground_mask(sample_data / SENTINEL2, read_as_is(shipped), tmp_path, bands=[4, 3, 2])
    assert grid_phase_spread(building, valid) <= MAX_SPREAD


def test_sentinel2_scaled_as_the_checkpoint_says_shows_no_grid(sample_data, shipped, tmp_path):
    """The shipped checkpoint's radiometry brings the 16-bit pixels into its 8-bit range, where
    the grid stays within the goal."""
    building, valid = foreground_mask(sample_data / SENTINEL2, shipped, tmp_path, bands=[4, 3, 2])
    assert 0.05 < building[valid].mean() < 0.95, "the check needs both classes to mean anything"
    assert grid_phase_spread(building, valid) <= MAX_SPREAD


def test_the_bilinear_gpu_model_draws_no_grid_where_the_shipped_one_does(sample_data, tmp_path):
    """Bilinear up-sampling + 3×3 convolution (the GPU-trained checkpoint) on the raw Sentinel-2 scene."""
    predictor = read_as_is(Predictor.from_checkpoint(GPU_MODEL, device="cpu"))
    building, valid = foreground_mask(sample_data / SENTINEL2, predictor, tmp_path, bands=[4, 3, 2])
    assert 0.05 < building[valid].mean() < 0.95, "the check needs both classes to mean anything"
    assert grid_phase_spread(building, valid) <= MAX_SPREAD


def test_flipped_views_average_the_transposed_models_grid_away(sample_data, tmp_path):
    """``tta: flips``: flipping a tile (its sides are multiples of the stride, so even) moves each
    pixel to the other phase along that axis, so the average of the four views has no phase to
    prefer. The base model (transposed convolutions, as the shipped one) on the raw scene above:
    0.076 without it; it marks both classes there, where the shipped one marks 97 % building."""
    predictor = read_as_is(Predictor.from_checkpoint(BASE_MODEL, device="cpu", tta="flips"))
    building, valid = foreground_mask(sample_data / SENTINEL2, predictor, tmp_path, bands=[4, 3, 2])
    assert 0.05 < building[valid].mean() < 0.95, "the check needs both classes to mean anything"
    assert grid_phase_spread(building, valid) <= MAX_SPREAD


def test_the_check_catches_the_checkerboard_of_an_untrained_transposed_unet(sample_data, tmp_path):
    """The same check on the same kind of scene fails for a model known to draw a grid."""
    scene = sample_data / SCENES[-1]
    with rasterio.open(scene) as src:
        pixels = src.read()
    checkpoint = make_checkpoint(tmp_path / "transpose.safetensors", pixels, seed=0, upsample="transpose")
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    foreground, valid = foreground_mask(scene, predictor, tmp_path)
    assert 0.05 < foreground[valid].mean() < 0.95
    assert grid_phase_spread(foreground, valid) > 3 * MAX_SPREAD
