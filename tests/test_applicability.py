"""Applicability: scenes unlike the training data get one-line warnings, training-like ones none."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling

from geoseg import applicability
from geoseg.applicability import (
    SAMPLE_SIDE_PX,
    PixelStatistics,
    applicability_warnings,
    gsd_warning,
    pixel_statistics,
    sample_pixels,
    scene_warnings,
    statistics_warning,
)
from geoseg.model.metadata import Domain, read_metadata
from geoseg.scenes import Scene, open_scene
from tests.conftest import SHIPPED_MODEL

DOMAIN = Domain(
    gsd_min_m=0.075,
    gsd_max_m=0.3,
    mean=[130.0, 135.0, 95.0],
    std=[45.0, 40.0, 46.0],
    p1=[45.0, 51.0, 19.0],
    p99=[244.0, 245.0, 235.0],
)
LIKE_TRAINING = PixelStatistics(median=(128.0, 130.0, 90.0), std=(50.0, 40.0, 45.0), pixels=1000)
UTM = CRS.from_epsg(32618)


def _utm(gsd_m: float) -> Affine:
    return Affine(gsd_m, 0, 500_000.0, 0, -gsd_m, 4_000_000.0)


@pytest.mark.parametrize("gsd_m", [0.0375, 0.075, 0.15, 0.3, 0.6])
def test_gsd_within_a_factor_two_of_the_trained_range_is_accepted(gsd_m):
    assert gsd_warning(gsd_m, DOMAIN) is None


def test_gsd_more_than_a_factor_two_outside_the_trained_range_is_flagged():
    assert gsd_warning(300.04, DOMAIN) == (
        "GSD 300 m is outside the model's 0.075–0.3 m range (resample or use another model)"
    )
    assert gsd_warning(0.61, DOMAIN) is not None
    assert gsd_warning(0.037, DOMAIN) is not None


def test_pixel_statistics_like_the_training_data_give_no_warning():
    assert statistics_warning(LIKE_TRAINING, DOMAIN) is None


def test_sixteen_bit_pixels_are_flagged_by_median_and_spread():
    stats = PixelStatistics(median=(7675.0, 7215.0, 6367.0), std=(2912.0, 2744.0, 2608.0), pixels=1000)
    warning = statistics_warning(stats, DOMAIN)
    assert warning is not None and warning.startswith("pixel statistics far from the training data (")
    assert "band 1 median 7675 vs 45–244 trained, std 2912 vs 45 trained" in warning
    assert "band 3 median 6367 vs 19–235 trained" in warning


def test_a_nearly_uniform_band_is_flagged_by_its_spread_only():
    stats = PixelStatistics(median=(200.0, 200.0, 200.0), std=(50.0, 40.0, 5.0), pixels=1000)
    assert statistics_warning(stats, DOMAIN) == (
        "pixel statistics far from the training data (band 3 std 5 vs 46 trained)"
    )


def test_median_is_robust_to_a_few_extreme_pixels():
    values = np.full((1, 1000), 120.0)
    values[0, :10] = 60_000  # 1 % saturated or unmasked nodata
    stats = pixel_statistics(values)
    assert stats.median == (120.0,) and stats.pixels == 1000


def test_warnings_combine_gsd_and_statistics_and_need_a_domain():
    far = PixelStatistics(median=(20.0, 47.0, 51.0), std=(58.0, 58.0, 60.0), pixels=1000)
    warnings = applicability_warnings(UTM, _utm(300.0), 791, 718, far, DOMAIN)
    assert [w.split(" ")[0] for w in warnings] == ["GSD", "pixel"]
    assert applicability_warnings(UTM, _utm(0.1), 100, 100, LIKE_TRAINING, DOMAIN) == []
    assert applicability_warnings(UTM, _utm(300.0), 791, 718, far, None) == []


def test_pixel_sample_is_a_decimated_read_of_the_whole_scene(sample_data):
    scene = open_scene(sample_data / "scenes" / "landsat8-224078-rgb.tif")  # 2041 × 1860, 18 MB
    sample = sample_pixels(scene)
    assert sample is not None
    stats = pixel_statistics(sample)
    assert 0.5 * SAMPLE_SIDE_PX**2 < stats.pixels <= SAMPLE_SIDE_PX * round(1860 * SAMPLE_SIDE_PX / 2041)
    assert all(5000 < m < 9000 for m in stats.median)


@pytest.mark.parametrize("strip_px", [1, 300_000, 4_000_000])
def test_without_overviews_the_strip_read_gives_gdals_nearest_decimation(sample_data, monkeypatch, strip_px):
    """Block rows read once each, at full resolution, then decimated: the same pixels as GDAL's."""
    monkeypatch.setattr(applicability, "STRIP_PX", strip_px)
    with rasterio.open(sample_data / "scenes" / "landsat8-224078-rgb.tif") as dataset:  # no overviews
        assert not dataset.overviews(1)
        shape = (3, 466, 512)
        expected = dataset.read(out_shape=shape, resampling=Resampling.nearest)
        masks = dataset.read_masks(out_shape=shape, resampling=Resampling.nearest).any(axis=0)
        pixels, valid = applicability._decimated_by_strips(dataset, [1, 2, 3], shape[1:])
    np.testing.assert_array_equal(pixels, expected)
    np.testing.assert_array_equal(valid, masks)


class _Recording:
    """A dataset whose reads are recorded (window sizes in pixels)."""

    def __init__(self, dataset) -> None:
        self.dataset, self.read_px = dataset, []

    def __getattr__(self, name):
        return getattr(self.dataset, name)

    def read(self, *args, window, **kwargs):
        self.read_px.append(window.width * window.height)
        return self.dataset.read(*args, window=window, **kwargs)


def test_a_scene_far_wider_than_a_strip_is_sampled_in_bounded_reads_of_its_sampled_blocks(tmp_path):
    width = 2**24
    profile = {"driver": "GTiff", "width": width, "height": 1, "count": 3, "dtype": "uint8", "tiled": True}
    with rasterio.open(tmp_path / "strip.tif", "w", blockxsize=512, blockysize=16, **profile) as dst:
        dst.write(np.tile(np.arange(256, dtype=np.uint8), (3, 1, width // 256)))
    with rasterio.open(tmp_path / "strip.tif") as dataset:
        recording = _Recording(dataset)
        pixels, valid = applicability._decimated_by_strips(recording, [1, 2, 3], (1, 512))
        expected = dataset.read(out_shape=(3, 1, 512), resampling=Resampling.nearest)
    np.testing.assert_array_equal(pixels, expected)
    assert valid.all()
    assert recording.read_px == [512] * 512  # one block (512 × 1 px) per sampled pixel


@pytest.fixture(scope="module")
def shipped_domain() -> Domain:
    domain = read_metadata(SHIPPED_MODEL).domain
    assert domain is not None
    return domain


def warnings_for(scene: Scene, domain: Domain) -> list[str]:
    return scene_warnings(scene, domain, sample_pixels(scene))


def test_the_300_m_landsat_scene_is_outside_the_shipped_model_domain(sample_data, shipped_domain):
    warnings = warnings_for(open_scene(sample_data / "edge" / "RGB.byte.tif"), shipped_domain)
    assert warnings[0].startswith("GSD 300 m is outside the model's 0.066")  # zoom 21, Nepal
    assert warnings[0].endswith("m range (resample or use another model)")


def test_a_held_out_kampala_chip_is_inside_the_shipped_model_domain(sample_data, shipped_domain):
    chip = sample_data / "labeled" / "hotosm-ramp" / "val-chips" / "OAM-1238424-1046544-21.tif"
    assert warnings_for(open_scene(chip), shipped_domain) == []


def test_sixteen_bit_landsat_read_as_it_is_is_flagged_for_gsd_and_pixel_statistics(
    sample_data, shipped_domain
):
    warnings = warnings_for(open_scene(sample_data / "scenes" / "landsat8-224078-rgb.tif"), shipped_domain)
    assert warnings[0].startswith("GSD 30 m is outside")
    assert warnings[1].startswith("pixel statistics far from the training data (band 1 median 7")
