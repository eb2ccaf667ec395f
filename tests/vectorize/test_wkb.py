"""WKB written straight from outline arrays: the bytes shapely (GEOS) writes for the same polygons."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import shapely
from shapely import affinity

from geoseg.vectorize import runs
from geoseg.vectorize.wkb import encode_polygons, geometry_types, promote_to_multi


def flat(polygons: list[shapely.Polygon]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertices, ring sizes and rings per polygon of ``polygons``."""
    rings = [ring for p in polygons for ring in (p.exterior, *p.interiors)]
    xy = np.concatenate([np.asarray(ring.coords) for ring in rings])
    sizes = np.array([len(ring.coords) for ring in rings], dtype=np.int64)
    per_polygon = np.array([1 + len(p.interiors) for p in polygons], dtype=np.int64)
    return xy, sizes, per_polygon


def test_polygons_with_holes_and_multipolygons_encode_as_shapely_writes_them():
    rng = np.random.default_rng(3)
    square = shapely.box(0, 0, 10, 10)
    holed = shapely.Polygon(square.exterior.coords, [shapely.box(2, 2, 4, 4).exterior.coords])
    polygons = [
        affinity.translate(shape, 500_000.5 + rng.random(), 4e6 + rng.random())
        for shape in (square, holed, square, holed, holed, square)
    ]
    parts = np.array([1, 2, 3], dtype=np.int64)  # a Polygon, then MultiPolygons of 2 and 3 parts
    expected = [
        polygons[0],
        shapely.MultiPolygon(polygons[1:3]),
        shapely.MultiPolygon(polygons[3:6]),
    ]
    encoded = encode_polygons(*flat(polygons), parts)
    assert encoded.to_pylist() == shapely.to_wkb(expected).tolist()
    assert geometry_types(encoded) == {"Polygon", "MultiPolygon"}


def test_no_polygons_encode_as_an_empty_array():
    empty = np.zeros(0, dtype=np.int64)
    encoded = encode_polygons(np.zeros((0, 2)), empty, empty, empty)
    assert len(encoded) == 0 and geometry_types(encoded) == set()


def test_promoting_makes_every_polygon_a_multipolygon_of_itself():
    geometries = [
        shapely.box(0, 0, 1, 1),
        shapely.MultiPolygon([shapely.box(2, 2, 3, 3)]),
        shapely.box(5, 5, 6, 7),
    ]
    promoted = promote_to_multi(pa.array(shapely.to_wkb(geometries), type=pa.binary())[1:])  # a slice too
    back = shapely.from_wkb(promoted.to_pylist())
    assert geometry_types(promoted) == {"MultiPolygon"}
    assert shapely.equals(back, geometries[1:]).all()


def test_runs_index_consecutive_groups():
    counts = np.array([2, 0, 3], dtype=np.int64)
    assert runs.offsets(counts).tolist() == [0, 2, 2, 5]
    assert runs.ranges(np.array([10, 0, 20]), counts).tolist() == [10, 11, 20, 21, 22]
    assert runs.sums(np.array([1, 2, 3, 4, 5]), counts).tolist() == [3, 0, 12]
    assert runs.within(np.array([1, 2, 3, 4, 5]), counts).tolist() == [0, 1, 0, 3, 7]
