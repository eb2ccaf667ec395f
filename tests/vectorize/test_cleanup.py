"""Clean-up and attributes in metres, whatever the mask's CRS."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from rasterio.crs import CRS
from rasterio.transform import Affine
from scipy import ndimage

from geoseg.units import measure, metric_frame
from geoseg.vectorize import Cleanup, MaskInfo, to_features
from geoseg.vectorize.cleanup import fill_small_holes, pixel_to_scene
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
    return to_features(vectorize_array(classes, 4), info, cleanup or Cleanup(), "scene").to_frame()


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


def ring_with_an_island() -> shapely.Geometry:
    """A 7² square ring with a notch at its inner corner and a pixel diagonal to the notch."""
    classes = np.ones((7, 7), dtype=np.uint8)
    classes[1:6, 1:6] = 0
    classes[1, 1] = classes[2, 2] = 1  # (2, 2) touches the ring only at a corner
    (geometry,) = vectorize_array(classes, 7).geometries
    assert geometry.geom_type == "MultiPolygon" and len(geometry.geoms) == 2
    return geometry


def test_filling_a_hole_that_holds_another_part_keeps_the_geometry_valid():
    (filled,) = fill_small_holes(np.array([ring_with_an_island()]), 30)
    assert shapely.is_valid(filled)
    assert shapely.equals(filled, shapely.box(0, 0, 7, 7))


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
    features = to_features(merged, info, Cleanup(), "scene").to_frame()
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


def test_simplified_polygons_do_not_depend_on_the_block_layout():
    rng = np.random.default_rng(5)
    field = ndimage.gaussian_filter(rng.random((64, 64)), 2.0)
    classes = (field > np.quantile(field, 0.4)).astype(np.uint8)
    classes ^= (rng.random(classes.shape) < 0.08).astype(np.uint8)
    info = info_for(classes, "EPSG:32631", UTM)
    cleanup = Cleanup(min_area_m2=300, fill_holes_below_m2=500, simplify_tolerance_m=12)
    layers = [
        to_features(vectorize_array(classes, size), info, cleanup, "s").to_frame() for size in (8, 20, 64)
    ]
    wkbs = [sorted(shapely.to_wkb(layer.geometry.values)) for layer in layers]
    assert wkbs[0] == wkbs[1] == wkbs[2]


def test_a_rotated_mask_gives_valid_polygons_of_the_same_areas():
    rng = np.random.default_rng(6)
    classes = (rng.random((30, 30)) < 0.55).astype(np.uint8)
    rotated = Affine.rotation(30) * Affine(10.0, 0, 0, 0, -10.0, 0)
    rotated = Affine.translation(500_000.0, 5_000_000.0) * rotated
    north_up, turned = features_of(classes), features_of(classes, transform=rotated)
    assert shapely.is_valid(turned.geometry.values).all()
    np.testing.assert_allclose(np.sort(turned["area_m2"]), np.sort(north_up["area_m2"]), rtol=1e-9)


def test_a_geometry_whose_holes_are_too_large_to_fill_is_left_as_it_is():
    island = ring_with_an_island()
    (kept,) = fill_small_holes(np.array([island]), 20)
    assert shapely.to_wkb(kept) == shapely.to_wkb(island)


@pytest.mark.parametrize(
    ("crs", "transform"),
    [
        ("EPSG:32631", UTM),
        ("EPSG:32631", Affine(0.3, 0, 331_000.15, 0, -0.45, 4_690_000.35)),
        ("EPSG:4326", Affine(7e-6, 0, 36.81, 0, -7e-6, -1.28)),
        ("EPSG:3857", Affine(0.15, 0, 4_097_000.1, 0, -0.15, -142_000.3)),
    ],
    ids=["utm", "non-square", "geographic", "web-mercator"],
)
def test_features_are_the_pixel_geometries_placed_in_the_scene_bit_for_bit(crs, transform):
    """Components that kept their outlines are encoded and measured from the outline arrays,
    never built as geometries: the same WKB as the pixel geometries transformed, the same areas
    and perimeters to rounding."""
    rng = np.random.default_rng(7)
    classes = ndimage.binary_opening(rng.random((90, 110)) < 0.45).astype(np.uint8)
    classes[rng.random(classes.shape) < 0.02] = 2
    components = vectorize_array(classes, 32)
    assert shapely.is_geometry(components.unions).any()  # some objects were merged across blocks
    info = info_for(classes, crs, transform, class_names=("background", "a", "b"))
    features = to_features(components, info, Cleanup(), "s")
    expected = pixel_to_scene(components.geometries, transform)
    assert features.table["geometry"].to_pylist() == shapely.to_wkb(expected).tolist()
    area, perimeter = measure(expected, info.crs, metric_frame(info.crs, transform, 110, 90))
    assert features.table["area_m2"].to_numpy() == pytest.approx(area, rel=1e-13)
    assert features.table["perimeter_m"].to_numpy() == pytest.approx(perimeter, rel=1e-13)
