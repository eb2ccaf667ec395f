"""Tiling: cores partition the scene, reads add the halo, origins sit on the stride grid."""

import numpy as np
import pytest

from geoseg.tiling import TilingSpec, block_grid, keep_cores, read_extent, tiles_in_block


def cover(width, height, spec):
    seen = np.zeros((height, width), dtype=int)
    tiles = []
    for block in block_grid(width, height, spec):
        block_tiles = list(tiles_in_block(block, width, height, spec))
        tiles += block_tiles
        for t in block_tiles:
            seen[
                t.core.row_off : t.core.row_off + t.core.height,
                t.core.col_off : t.core.col_off + t.core.width,
            ] += 1
    return seen, tiles


@pytest.mark.parametrize("width,height", [(1000, 700), (64, 64), (513, 1), (2048, 2049)])
def test_tile_cores_cover_every_pixel_exactly_once(width, height):
    spec = TilingSpec.for_model(stride_px=8, receptive_radius_px=58, tile_size_px=256, block_size_px=512)
    seen, _ = cover(width, height, spec)
    assert (seen == 1).all()


def test_read_windows_are_core_plus_halo_on_the_stride_grid():
    spec = TilingSpec.for_model(stride_px=8, receptive_radius_px=58, tile_size_px=250, block_size_px=1000)
    assert (spec.tile_size_px, spec.halo_px) == (256, 64)
    _, tiles = cover(1000, 700, spec)
    for t in tiles:
        assert t.read.col_off == t.core.col_off - 64 and t.read.row_off == t.core.row_off - 64
        assert (t.read.width, t.read.height) == (256 + 128, 256 + 128)
        assert t.read.col_off % 8 == 0 and t.read.row_off % 8 == 0


def test_tile_larger_than_scene_makes_one_tile_of_the_scene_rounded_to_stride():
    spec = TilingSpec.for_model(stride_px=8, receptive_radius_px=58, tile_size_px=4096)
    _, tiles = cover(117, 94, spec)
    assert len(tiles) == 1
    assert (tiles[0].read.width, tiles[0].read.height) == (120 + 128, 96 + 128)


def test_one_read_serves_all_tiles_of_a_block():
    spec = TilingSpec.for_model(stride_px=8, receptive_radius_px=8, tile_size_px=64, block_size_px=128)
    block = block_grid(300, 300, spec)[0]
    extent = read_extent(list(tiles_in_block(block, 300, 300, spec)))
    assert (extent.col_off, extent.row_off, extent.width, extent.height) == (-8, -8, 144, 144)


def at_scene_pixels(window):
    """A stand-in prediction: each pixel's value says which scene pixel it is (row * 10⁴ + col)."""
    rows = np.arange(window.row_off, window.row_off + window.height)
    cols = np.arange(window.col_off, window.col_off + window.width)
    return rows[:, None] * 10_000 + cols[None, :]


def test_stitched_tile_cores_put_every_pixel_where_the_scene_has_it():
    width, height = 300, 250  # edge blocks and tiles cropped to the scene
    spec = TilingSpec.for_model(stride_px=8, receptive_radius_px=8, tile_size_px=64, block_size_px=128)
    for block in block_grid(width, height, spec):
        tiles = list(tiles_in_block(block, width, height, spec))
        stitched = np.full((int(block.core.height), int(block.core.width)), -1)
        keep_cores(tiles, np.stack([at_scene_pixels(t.read) for t in tiles]), block, spec.halo_px, stitched)
        assert (stitched == at_scene_pixels(block.core)).all(), block.index


def test_a_thin_strip_costs_the_model_far_more_than_its_own_pixels():
    spec = TilingSpec.for_model(stride_px=16, receptive_radius_px=58)  # tile 512, halo 64
    assert spec.computed_pixels(8192, 8192) == 16 * 16 * 640 * 640 == 8192**2 * spec.halo_overhead()
    assert spec.computed_pixels(2**20, 1) == 2048 * 640 * (16 + 128)  # 88 px computed per pixel
