"""Cross-block merge: the blockwise result equals the whole-mask result, object for object."""

from __future__ import annotations

import time

import numpy as np
import pytest
import shapely

from geoseg.vectorize import merge_blocks, polygonize_block
from tests.vectorize.conftest import assert_same_components, vectorize_array


def test_object_spanning_four_blocks_is_merged():
    classes = np.zeros((8, 8), dtype=np.uint8)
    classes[2:6, 2:6] = 1
    merged = vectorize_array(classes, block_size=4)
    assert len(merged) == 1
    assert shapely.equals(merged.geometries[0], shapely.box(2, 2, 6, 6))
    assert merged.pixel_counts.tolist() == [16]


def test_ring_whose_hole_crosses_a_block_border_keeps_its_hole():
    classes = np.zeros((10, 10), dtype=np.uint8)
    classes[1:9, 1:9] = 1
    classes[3:7, 3:7] = 0
    for connectivity in (4, 8):
        merged = vectorize_array(classes, block_size=5, connectivity=connectivity)
        assert len(merged) == 1
        ring = merged.geometries[0]
        assert ring.geom_type == "Polygon" and len(ring.interiors) == 1
        assert ring.area == 64 - 16
        assert_same_components(merged, vectorize_array(classes, 10, connectivity))


@pytest.mark.parametrize(("connectivity", "count"), [(8, 1), (4, 3)])
def test_diagonal_pixels_across_a_block_corner_merge_only_with_8_connectivity(connectivity, count):
    classes = np.zeros((4, 4), dtype=np.uint8)
    classes[1, 1] = classes[2, 2] = 1  # NW block to SE block, across the corner at (2, 2)
    classes[0, 2] = 1  # NE block, diagonal to (1, 1) across the vertical border
    merged = vectorize_array(classes, block_size=2, connectivity=connectivity)
    assert len(merged) == count
    if connectivity == 8:
        assert merged.geometries[0].geom_type == "MultiPolygon"
        assert shapely.is_valid(merged.geometries[0])
    assert_same_components(merged, vectorize_array(classes, 4, connectivity))


def test_pixels_diagonal_across_a_corner_in_the_other_direction_merge():
    classes = np.zeros((4, 4), dtype=np.uint8)
    classes[1, 2] = classes[2, 1] = 1  # NE-SW across the corner at (2, 2)
    assert len(vectorize_array(classes, 2, connectivity=8)) == 1
    assert len(vectorize_array(classes, 2, connectivity=4)) == 2


def test_one_pixel_wide_line_along_a_block_border_is_one_object():
    classes = np.zeros((12, 12), dtype=np.uint8)
    classes[:, 5] = 1  # last column of the left blocks
    classes[6, :] = 2  # first row of the lower blocks, crossing the line
    for connectivity in (4, 8):
        merged = vectorize_array(classes, block_size=6, connectivity=connectivity)
        assert sorted(merged.class_ids.tolist()) == [1, 1, 2]
        assert_same_components(merged, vectorize_array(classes, 12, connectivity))


def test_adjacent_objects_of_different_classes_stay_apart():
    classes = np.zeros((4, 4), dtype=np.uint8)
    classes[:, :2] = 1
    classes[:, 2:] = 2
    merged = vectorize_array(classes, block_size=2)
    assert sorted(merged.class_ids.tolist()) == [1, 2]
    assert merged.pixel_counts.tolist() == [8, 8]


def test_road_network_spanning_every_block_is_one_fast_object():
    size, spacing = 1024, 16
    classes = np.zeros((size, size), dtype=np.uint8)
    classes[::spacing, :] = 1
    classes[:, ::spacing] = 1
    start = time.perf_counter()
    merged = vectorize_array(classes, block_size=64)  # 256 blocks, all crossed by the roads
    seconds = time.perf_counter() - start
    assert len(merged) == 1
    assert merged.pixel_counts[0] == classes.sum()
    assert shapely.area(merged.geometries[0]) == classes.sum()
    assert len(merged.geometries[0].interiors) == (size // spacing - 1) ** 2
    assert seconds < 10, f"merging a network across every block took {seconds:.1f} s"


@pytest.mark.parametrize("connectivity", [4, 8])
@pytest.mark.parametrize("block_size", [3, 7, 16])
def test_blockwise_equals_whole_on_noisy_multiclass_masks(connectivity, block_size):
    rng = np.random.default_rng(block_size)
    classes = rng.integers(0, 4, size=(48, 40), dtype=np.uint8)
    classes[rng.random(classes.shape) < 0.3] = 0
    classes[rng.random(classes.shape) < 0.05] = 255
    whole = vectorize_array(classes, block_size=48, connectivity=connectivity)
    blockwise = vectorize_array(classes, block_size=block_size, connectivity=connectivity)
    assert_same_components(blockwise, whole)


def test_probability_is_summed_across_blocks():
    classes = np.ones((4, 4), dtype=np.uint8)
    probability = np.full((4, 4), 50, dtype=np.uint8)
    probability[:2, :2] = 90
    merged = vectorize_array(classes, 2, probability=probability)
    assert merged.prob_sums.tolist() == [4 * 90 + 12 * 50]
    assert merged.prob_counts.tolist() == [16]


def test_blocks_polygonised_with_different_connectivities_are_refused():
    classes = np.ones((2, 2), dtype=np.uint8)
    pieces = [
        polygonize_block(classes, 0, 0, connectivity=4),
        polygonize_block(classes, 0, 2, connectivity=8),
    ]
    with pytest.raises(ValueError, match="connectivities"):
        merge_blocks(pieces)


def test_no_blocks_merge_to_no_components():
    assert len(merge_blocks([])) == 0
