"""Clean-up and attributes in metres, whatever the mask's CRS."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from rasterio.crs import CRS
from rasterio.transform import Affine

from geoseg.vectorize import Cleanup, MaskInfo, to_features
from geoseg.vectorize.cleanup import fill_small_holes
from tests.vectorize.conftest import vectorize_array

UTM = Affine(10.0, 0, 500_000.0, 0, -10.0, 5_000_000.0)  # 10 m pixels, 100 m² each


def info_for(classes: np.ndarray, crs: str, transform: Affine, **kwargs) -> MaskInfo:
    return MaskInfo(classes.shape[1], classes.shape[0], transform, CRS.from_string(crs), **kwargs)


def squares(sizes: list[int], gap: int = 2) -> np.ndarray:
    """Class-1 squares of the given side lengths (pixels) in a row."""
    classes = np.zeros((max(sizes) + 2 * gap, sum(sizes) + gap * (len(sizes) + 1)), np.uint8)
    col = gap
    for side in sizes:
        classes[gap : gap + side, col : col + side] = 1
        col += side + gap
    return classes


def features_of(classes, crs="EPSG:32631", transform=UTM, cleanup=None, **kwargs):
    info = info_for(classes, crs, transform, **kwargs)
    return to_features(vectorize_array(classes, 4), info, cleanup or Cleanup(), "scene")


def test_area_and_perimeter_are_in_metres_in_a_utm_crs():
    features = features_of(squares([3]))
    assert features["area_m2"].tolist() == [900.0]
    assert features["perimeter_m"].tolist() == [120.0]
    assert features.crs == CRS.from_epsg(32631)
    assert features.geometry.iloc[0].bounds == (500_020.0, 4_999_950.0, 500_050.0, 4_999_980.0)


def test_area_in_a_us_survey_feet_crs_is_in_square_metres():
    feet = Affine(10.0, 0, 700_000.0, 0, -10.0, 2_900_000.0)  # 10 ft pixels
    features = features_of(squares([3]), crs="EPSG:2249", transform=feet)
    assert features["area_m2"].iloc[0] == pytest.approx(900 * 0.3048006096**2)


def test_web_mercator_area_is_ground_area_not_map_units():
    y60 = 8_399_737.89  # 60° N, where a Web Mercator map metre is half a ground metre
    mercator = Affine(10.0, 0, 0.0, 0, -10.0, y60)
    features = features_of(squares([3]), crs="EPSG:3857", transform=mercator)
    assert features["area_m2"].iloc[0] == pytest.approx(900 / 4, rel=0.01)


def test_min_area_on_a_geographic_mask_filters_by_true_area_not_degrees():
    # 1e-4° pixels at 60° N are about 5.6 m × 11.1 m = 62 m²: 3×3 ≈ 560 m², 5×5 ≈ 1550 m².
    lonlat = Affine(1e-4, 0, 10.0, 0, -1e-4, 60.0)
    classes = squares([3, 5])
    kept = features_of(classes, "EPSG:4326", lonlat, Cleanup(min_area_m2=1000))
    assert len(kept) == 1
    assert kept["area_m2"].iloc[0] == pytest.approx(25 * 5.58 * 11.13, rel=0.01)
    assert len(features_of(classes, "EPSG:4326", lonlat, Cleanup(min_area_m2=500))) == 2
    assert len(features_of(classes, "EPSG:4326", lonlat, Cleanup(min_area_m2=2000))) == 0


def test_holes_below_the_threshold_are_filled_and_larger_ones_kept():
    classes = np.zeros((12, 20), dtype=np.uint8)
    classes[1:11, 1:19] = 1
    classes[4, 4] = 0  # 100 m² hole
    classes[3:7, 10:14] = 0  # 1600 m² hole
    features = features_of(classes, cleanup=Cleanup(fill_holes_below_m2=500))
    (polygon,) = features.geometry
    assert len(polygon.interiors) == 1
    assert features["area_m2"].iloc[0] == (180 - 16) * 100


def test_filling_a_hole_that_holds_another_part_keeps_the_geometry_valid():
    ring = shapely.box(0, 0, 5, 5).difference(shapely.box(1, 1, 4, 4))
    inside = shapely.box(1, 1, 2, 2)  # touches the hole's corner: one 8-connected object
    filled = fill_small_holes(np.array([shapely.MultiPolygon([ring, inside])]), 10)
    assert shapely.is_valid(filled[0])
    assert shapely.equals(filled[0], shapely.box(0, 0, 5, 5))


def test_simplification_tolerance_is_in_metres():
    classes = np.zeros((40, 40), dtype=np.uint8)
    rows, cols = np.mgrid[:40, :40]
    classes[(rows - 20) ** 2 + (cols - 20) ** 2 < 15**2] = 1  # a staircase disc
    vertices = [
        shapely.get_num_coordinates(
            features_of(classes, cleanup=Cleanup(simplify_tolerance_m=m)).geometry.values
        ).sum()
        for m in (0, 5, 20)
    ]
    assert vertices[0] > vertices[1] > vertices[2]
    # 5 m on 10 m pixels is half a pixel: the disc keeps its area to within a few percent.
    simplified = features_of(classes, cleanup=Cleanup(simplify_tolerance_m=5))
    assert simplified["area_m2"].iloc[0] == pytest.approx(classes.sum() * 100, rel=0.05)


def test_mean_probability_is_a_fraction_and_absent_without_a_probability_band():
    classes = squares([2])
    probability = np.where(classes == 1, 80, 255).astype(np.uint8)
    info = info_for(classes, "EPSG:32631", UTM, has_probability=True)
    merged = vectorize_array(classes, 4, probability=probability)
    features = to_features(merged, info, Cleanup(), "scene")
    assert features["mean_prob"].tolist() == [pytest.approx(0.8)]
    assert "mean_prob" not in features_of(classes).columns


def test_class_names_come_from_the_mask_or_default_to_the_class_id():
    classes = np.zeros((6, 10), dtype=np.uint8)
    classes[1:3, 1:3] = 1
    classes[1:3, 5:7] = 2
    named = features_of(classes, class_names=("background", "building", "road"))
    assert sorted(named["class_name"]) == ["building", "road"]
    assert sorted(features_of(classes)["class_name"]) == ["class_1", "class_2"]
    assert set(named["scene_id"]) == {"scene"}
    assert named["class_id"].dtype == np.int64
