"""Ground sampling distance in metres: projected, geographic and Web-Mercator scenes, by hand."""

from __future__ import annotations

import math

import pytest
from affine import Affine
from rasterio.crs import CRS

from geoseg.scenes import open_scene
from geoseg.units import ground_pixel_size, ground_sampling_distance_m
from geoseg.xyz import open_xyz_tile

ZOOM_20_PIXEL_M = 2 * 20037508.342789244 / 2**20 / 256
"""A zoom-20 web-map pixel in nominal Web-Mercator metres: 2π·6 378 137 / 2²⁰ / 256 = 0.149291."""


def _gsd(scene) -> float:
    return ground_sampling_distance_m(scene.crs, scene.transform, scene.width, scene.height)


def test_projected_gsd_is_the_pixel_size_in_the_crs_unit(sample_data):
    scene = open_scene(sample_data / "labeled" / "quebec-aerial-tiles" / "image_1.tif")  # EPSG:2949
    assert _gsd(scene) == pytest.approx(0.3, rel=1e-6)


def test_projected_gsd_in_us_survey_feet_is_converted_to_metres():
    feet = Affine(10.0, 0, 700_000.0, 0, -10.0, 2_900_000.0)  # EPSG:2249, 1 ft = 1200/3937 m
    size = ground_pixel_size(CRS.from_epsg(2249), feet, 100, 100)
    assert size.x_m == size.y_m == pytest.approx(10 * 1200 / 3937)


def test_geographic_gsd_uses_the_wgs84_radii_at_the_centre_latitude():
    # 1e-5° pixels at 60° N: N = a / √(1 − e² sin² 60°) = 6 394 209 m, M = a (1 − e²) / (…)^1.5
    # = 6 383 491 m, so x = 1e-5 · π/180 · N cos 60° = 0.558 m and y = 1e-5 · π/180 · M = 1.114 m.
    lonlat = Affine(1e-5, 0, 10.0, 0, -1e-5, 60.0 + 50e-5)
    size = ground_pixel_size(CRS.from_epsg(4326), lonlat, 100, 100)
    assert size.x_m == pytest.approx(0.5580, rel=1e-3)
    assert size.y_m == pytest.approx(1.1141, rel=1e-3)
    assert size.gsd_m == pytest.approx(math.sqrt(0.5580 * 1.1141), rel=1e-3)


def test_geographic_gsd_of_a_real_kampala_chip(sample_data):
    # EPSG:4326 chip of a zoom-21 tile at 0.35° N: 6.7055e-7° × 111 317 m/° across = 0.07464 m,
    # 6.7054e-7° × 110 574 m/° along the meridian = 0.07414 m.
    scene = open_scene(sample_data / "labeled" / "hotosm-ramp" / "chips" / "OAM-1238448-1046528-21.tif")
    size = ground_pixel_size(scene.crs, scene.transform, scene.width, scene.height)
    assert size.x_m == pytest.approx(0.07464, rel=1e-3)
    assert size.y_m == pytest.approx(0.07414, rel=1e-3)


def test_web_mercator_gsd_is_scaled_by_the_cosine_of_the_centre_latitude():
    equator = Affine(ZOOM_20_PIXEL_M, 0, 0.0, 0, -ZOOM_20_PIXEL_M, 128 * ZOOM_20_PIXEL_M)
    assert ground_sampling_distance_m(CRS.from_epsg(3857), equator, 256, 256) == pytest.approx(
        0.149291, rel=1e-5
    )
    y60 = 8_399_737.89  # northing of 60° N
    north = Affine(ZOOM_20_PIXEL_M, 0, 0.0, 0, -ZOOM_20_PIXEL_M, y60 + 128 * ZOOM_20_PIXEL_M)
    assert ground_sampling_distance_m(CRS.from_epsg(3857), north, 256, 256) == pytest.approx(
        0.149291 / 2, rel=1e-4
    )


def test_web_mercator_gsd_of_a_real_zanzibar_tile(sample_data):
    # Zoom-20 tile 638584/541920: centre northing −673 888 m, latitude 2·atan(e^(y/a)) − π/2 = −6.030°,
    # so 0.149291 m × cos 6.030° = 0.148465 m.
    tile = open_xyz_tile(sample_data / "labeled" / "hotosm-ramp" / "tiles" / "1" / "OAM-638584-541920-20.png")
    assert _gsd(tile) == pytest.approx(0.148465, rel=1e-4)
