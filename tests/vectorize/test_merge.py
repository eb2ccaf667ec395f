"""Cross-block merge: the blockwise result equals the whole-mask result, object for object."""

from __future__ import annotations

import time

import numpy as np
import pytest
import shapely
from scipy import ndimage

from geoseg.vectorize import merge_blocks, polygonize_block
from tests.vectorize.conftest import assert_same_components, vectorize_array


def test_object_spanning_four_blocks_is_merged():
    classes = np.zeros((8, 8), dtype=np.uint8)
    classes[2:6, 2:6] = 1
    merged = vectorize_array(classes, block_size=4)
    assert len(merged) == 1
    assert shapely.equals(merged.geometries[0], shapely.box(2, 2, 6, 6))
    assert shapely.area(merged.geometries).tolist() == [16]


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
    assert shapely.area(merged.geometries).tolist() == [8, 8]


def test_road_network_spanning_every_block_is_one_fast_object():
    size, spacing = 1024, 16
    classes = np.zeros((size, size), dtype=np.uint8)
    classes[::spacing, :] = 1
    classes[:, ::spacing] = 1
    start = time.perf_counter()
    merged = vectorize_array(classes, block_size=64)  # 256 blocks, all crossed by the roads
    seconds = time.perf_counter() - start
    assert len(merged) == 1
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


def test_holes_away_from_block_borders_survive_the_merge():
    classes = np.zeros((20, 20), dtype=np.uint8)
    classes[1:19, 1:19] = 1  # one object over four 10² blocks
    classes[2:4, 2:4] = 0  # a hole inside the top-left block
    classes[13, 14] = 0  # a one-pixel hole inside the bottom-right block
    classes[5:8, 2:8] = 0  # a hole in the top-left block, touching nothing...
    classes[6, 4] = 1  # ...with an island touching nothing: an object of its own
    classes[9:12, 9:12] = 0  # a hole across the block corner
    for connectivity in (4, 8):
        merged = vectorize_array(classes, block_size=10, connectivity=connectivity)
        assert_same_components(merged, vectorize_array(classes, 20, connectivity))
        big = merged.geometries[np.argmax(shapely.area(merged.geometries))]
        assert big.geom_type == "Polygon" and len(big.interiors) == 4


def test_holes_go_to_their_own_polygon_of_an_8_connected_object():
    classes = np.zeros((12, 18), dtype=np.uint8)  # blocks of 6²: two rows of three
    classes[1:6, 1:9] = 1  # over the two top-left blocks...
    classes[2:4, 2:4] = 0  # ...with a hole in the first
    classes[6:11, 9:15] = 1  # over two bottom blocks, touching the first at a corner only...
    classes[8, 10] = classes[9, 13] = 0  # ...with a hole in each
    merged = vectorize_array(classes, block_size=6, connectivity=8)
    assert len(merged) == 1
    (geometry,) = merged.geometries
    assert geometry.geom_type == "MultiPolygon"
    assert [len(part.interiors) for part in geometry.geoms] == [1, 2]
    assert_same_components(merged, vectorize_array(classes, 18, connectivity=8))


def noisy_blobs(seed: int, shape: tuple[int, int] = (60, 70)) -> np.ndarray:
    """Smooth blobs with pixel noise: objects with holes, islands, pinches and corner contacts."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.random(shape), 2.0)
    classes = (field > np.quantile(field, 0.4)).astype(np.uint8)
    classes ^= (rng.random(shape) < 0.08).astype(np.uint8)
    classes[rng.random(shape) < 0.02] = 255
    return classes


@pytest.mark.parametrize("connectivity", [4, 8])
def test_blockwise_equals_whole_vertex_for_vertex(connectivity):
    classes = noisy_blobs(connectivity)
    whole = vectorize_array(classes, block_size=70, connectivity=connectivity)
    for block_size in (5, 16, 32):
        blockwise = vectorize_array(classes, block_size=block_size, connectivity=connectivity)
        assert sorted(shapely.to_wkb(blockwise.geometries)) == sorted(shapely.to_wkb(whole.geometries))
