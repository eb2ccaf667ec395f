"""Blockwise polygonising: pieces of one block, in the scene's pixel grid."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import shapely
import shapely.geometry
from rasterio.features import shapes
from rasterio.transform import Affine

from geoseg.vectorize import polygonize_block
from geoseg.vectorize.polygonize import label_components


def test_piece_vertices_are_integers_of_the_scene_pixel_grid():
    classes = np.zeros((4, 4), dtype=np.uint8)
    classes[1:3, 1:3] = 1
    block = polygonize_block(classes, row_off=100, col_off=200)
    assert len(block) == 1
    assert shapely.equals(block.pieces.geometries[0], shapely.box(201, 101, 203, 103))


def test_pieces_record_class_pixel_count_and_edge_labels():
    classes = np.array([[1, 1, 0], [0, 0, 0], [2, 0, 0]], dtype=np.uint8)
    block = polygonize_block(classes, 0, 0)
    assert sorted(block.pieces.class_ids.tolist()) == [1, 2]
    by_class = dict(
        zip(block.pieces.class_ids.tolist(), shapely.area(block.pieces.geometries).tolist(), strict=True)
    )
    assert by_class == {1: 2, 2: 1}
    one = int(np.flatnonzero(block.pieces.class_ids == 1)[0]) + 1
    two = int(np.flatnonzero(block.pieces.class_ids == 2)[0]) + 1
    assert block.top.tolist() == [one, one, 0]
    assert block.left.tolist() == [one, 0, two]
    assert block.bottom.tolist() == [two, 0, 0]
    assert block.right.tolist() == [0, 0, 0]


def test_background_and_nodata_are_not_polygonised():
    classes = np.array([[0, 255], [255, 0]], dtype=np.uint8)
    block = polygonize_block(classes, 0, 0)
    assert len(block) == 0
    assert not block.top.any() and not block.left.any()


@pytest.mark.parametrize(("connectivity", "count"), [(8, 1), (4, 2)])
def test_diagonal_pixels_are_one_multipolygon_only_with_8_connectivity(connectivity, count):
    classes = np.array([[1, 0], [0, 1]], dtype=np.uint8)
    block = polygonize_block(classes, 0, 0, connectivity=connectivity)
    assert len(block) == count
    assert shapely.is_valid(block.pieces.geometries).all()
    if connectivity == 8:
        assert block.pieces.geometries[0].geom_type == "MultiPolygon"


def test_hole_touching_the_shell_at_a_corner_gives_a_valid_polygon():
    classes = np.array([[1, 1, 1, 0], [1, 0, 1, 0], [1, 1, 0, 1], [0, 0, 1, 1]], dtype=np.uint8)
    block = polygonize_block(classes, 0, 0, connectivity=8)
    assert len(block) == 1
    assert shapely.is_valid(block.pieces.geometries[0])
    assert shapely.area(block.pieces.geometries[0]) == 10


def test_probability_sum_skips_nodata_pixels():
    classes = np.ones((2, 2), dtype=np.uint8)
    probability = np.array([[80, 90], [255, 70]], dtype=np.uint8)
    block = polygonize_block(classes, 0, 0, probability=probability)
    assert block.pieces.prob_sums.tolist() == [240.0]
    assert block.pieces.prob_counts.tolist() == [3]


def pixel_union(mask: np.ndarray, row_off: int = 0, col_off: int = 0) -> shapely.Geometry:
    """The region of ``mask``'s pixels, built pixel by pixel (the reference)."""
    rows, cols = np.nonzero(mask)
    return shapely.union_all(
        shapely.box(cols + col_off, rows + row_off, cols + col_off + 1, rows + row_off + 1)
    )


@pytest.mark.parametrize("fill", [0, 255])
def test_a_block_without_foreground_has_no_pieces(fill):
    block = polygonize_block(np.full((256, 300), fill, dtype=np.uint8), 512, 0)
    assert len(block) == 0
    assert not (block.top.any() or block.bottom.any() or block.left.any() or block.right.any())


def test_objects_far_apart_in_rows_and_columns_are_polygonised_exactly():
    classes = np.zeros((200, 120), dtype=np.uint8)
    classes[3:6, 100:110] = 1  # near the top, far right
    classes[90:95, 2:4] = 2  # after 84 empty rows, far left
    classes[199, :] = 1  # the last row, after 104 empty rows
    block = polygonize_block(classes, 1000, 2000, connectivity=4)
    labels = label_components(classes, 4)[0]
    assert len(block) == 3
    for index, geometry in enumerate(block.pieces.geometries):
        assert shapely.equals(geometry, pixel_union(labels == index + 1, 1000, 2000))


@pytest.mark.parametrize("connectivity", [4, 8])
def test_pieces_of_noisy_masks_are_exactly_their_pixels(connectivity):
    rng = np.random.default_rng(connectivity)
    classes = rng.integers(0, 3, size=(40, 50), dtype=np.uint8)
    classes[rng.random(classes.shape) < 0.05] = 255
    block = polygonize_block(classes, 7, 11, connectivity=connectivity)
    labels = label_components(classes, connectivity)[0]
    assert shapely.is_valid(block.pieces.geometries).all()
    for index, geometry in enumerate(block.pieces.geometries):
        assert shapely.equals(geometry, pixel_union(labels == index + 1, 7, 11))
    np.testing.assert_array_equal(shapely.area(block.pieces.geometries), np.bincount(labels.ravel())[1:])


def test_parts_of_an_8_connected_piece_are_in_the_order_of_their_top_left_vertex():
    classes = np.zeros((6, 6), dtype=np.uint8)
    classes[3:5, 0:2] = classes[2, 2] = classes[0:2, 3:6] = 1  # a diagonal chain, bottom-left to top-right
    (geometry,) = polygonize_block(classes, 0, 0).pieces.geometries
    starts = [part.exterior.coords[0] for part in geometry.geoms]
    assert starts == sorted(starts, key=lambda xy: (xy[1], xy[0]))


def test_pieces_survive_pickling_exactly():
    """Pieces travel between workers; their geometries go as WKB, vertex for vertex."""
    classes = (np.random.default_rng(3).random((64, 64)) < 0.3).astype(np.uint8)
    classes[:5, :5] = 2
    pieces = polygonize_block(classes, 128, 256, connectivity=8)
    copy = pickle.loads(pickle.dumps(pieces))
    assert len(copy) == len(pieces) > 10
    assert shapely.equals_exact(copy.pieces.geometries, pieces.pieces.geometries, tolerance=0).all()
    assert [type(g) for g in copy.pieces.geometries] == [type(g) for g in pieces.pieces.geometries]
    assert np.array_equal(copy.pieces.class_ids, pieces.pieces.class_ids)
    assert np.array_equal(copy.pieces.prob_sums, pieces.pieces.prob_sums)
    assert np.array_equal(copy.right, pieces.right)


def test_pieces_are_gdals_polygons_vertex_for_vertex():
    classes = np.zeros((12, 16), dtype=np.uint8)
    classes[1, 1] = 1  # a pixel
    classes[3:6, 2:9] = 1  # a filled rectangle
    classes[8:11, 10:13] = 2
    classes[9, 11] = 0  # not filled: traced
    pieces = polygonize_block(classes, 40, 70, connectivity=8).pieces.geometries
    traced = [
        shapely.geometry.shape(geojson)
        for geojson, _ in shapes(
            classes, mask=classes > 0, connectivity=4, transform=Affine.translation(70, 40)
        )
    ]
    assert len(pieces) == len(traced) == 3
    for piece in pieces:
        assert any(shapely.equals_exact(piece, gdal, tolerance=0) for gdal in traced), piece.wkt
