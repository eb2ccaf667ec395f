"""Blockwise polygonising: pieces of one block, in the scene's pixel grid."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from geoseg.vectorize import polygonize_block


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
    by_class = dict(zip(block.pieces.class_ids.tolist(), block.pieces.pixel_counts.tolist(), strict=True))
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
    assert shapely.area(block.pieces.geometries[0]) == block.pieces.pixel_counts[0] == 10


def test_probability_sum_skips_nodata_pixels():
    classes = np.ones((2, 2), dtype=np.uint8)
    probability = np.array([[80, 90], [255, 70]], dtype=np.uint8)
    block = polygonize_block(classes, 0, 0, probability=probability)
    assert block.pieces.prob_sums.tolist() == [240.0]
    assert block.pieces.prob_counts.tolist() == [3]
