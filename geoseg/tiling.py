"""Tiling: where tiles are cut.

A scene is split into *blocks* (the unit of work and of memory: one task, one read) and each
block into *tiles* (the unit the network sees). Every tile is a core window plus a halo on
every side; only the core of its prediction is kept. With a halo of at least the network's
receptive radius, and tile origins on multiples of the network's total stride, the kept core
equals what the whole-image prediction would give: no seams.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from rasterio.windows import Window

from geoseg.errors import ConfigError


@dataclass(frozen=True)
class TilingSpec:
    """Tile core size, halo and block size in pixels (all multiples of the model's stride)."""

    tile_size_px: int
    halo_px: int
    block_size_px: int
    stride_px: int = 1

    @classmethod
    def for_model(
        cls,
        *,
        stride_px: int,
        receptive_radius_px: int,
        tile_size_px: int = 512,
        halo_px: int | None = None,
        block_size_px: int = 2048,
    ) -> TilingSpec:
        """Round sizes up to the stride; the default halo covers the receptive radius."""
        halo = receptive_radius_px if halo_px is None else halo_px
        tile = _round_up(tile_size_px, stride_px)
        block = _round_up(max(block_size_px, tile), tile)
        if tile <= 0 or halo < 0:
            raise ConfigError("tiling: tile size must be positive and halo non-negative")
        return cls(tile, _round_up(halo, stride_px), block, stride_px)

    def seam_warning(self, receptive_radius_px: int) -> str | None:
        """Why this tiling will show seams with a model of that receptive radius, or None."""
        if self.halo_px >= receptive_radius_px:
            return None
        return (
            f"halo {self.halo_px} px is less than the model's receptive radius {receptive_radius_px} px: "
            "predictions near tile borders will differ from a whole-scene pass (seams)"
        )

    def computed_pixels(self, width: int, height: int) -> int:
        """Pixels the model computes for a scene: every tile's haloed read window. A strip a few
        pixels high costs far more than its own pixels (2^31 × 1 px: 365 Gpx for the shipped model)."""
        tile_w, tile_h = self.fitted(width, height)
        tiles = math.ceil(width / tile_w) * math.ceil(height / tile_h)
        return tiles * (tile_w + 2 * self.halo_px) * (tile_h + 2 * self.halo_px)

    def halo_overhead(self) -> float:
        """Computed pixels per scene pixel of a large square scene."""
        return ((self.tile_size_px + 2 * self.halo_px) / self.tile_size_px) ** 2

    def fitted(self, width: int, height: int) -> tuple[int, int]:
        """Tile core (width, height) for a scene: never larger than the scene rounded to stride.

        With a tile size larger than the scene, the whole scene is one tile.
        """
        return (
            min(self.tile_size_px, _round_up(width, self.stride_px)),
            min(self.tile_size_px, _round_up(height, self.stride_px)),
        )


@dataclass(frozen=True)
class Tile:
    """A tile: its core (kept) and its haloed read window, both in scene pixel coordinates."""

    core: Window
    read: Window


@dataclass(frozen=True)
class Block:
    """A rectangle of whole tiles, processed by one task; ``index`` is (row, col) in the grid."""

    index: tuple[int, int]
    core: Window


def block_grid(width: int, height: int, spec: TilingSpec) -> list[Block]:
    """Blocks covering the scene, row-major; edge blocks are cropped to the scene."""
    tile_w, tile_h = spec.fitted(width, height)
    block_w = _round_up(min(spec.block_size_px, _round_up(width, tile_w)), tile_w)
    block_h = _round_up(min(spec.block_size_px, _round_up(height, tile_h)), tile_h)
    return [
        Block((r, c), Window(x, y, min(block_w, width - x), min(block_h, height - y)))
        for r, y in enumerate(range(0, height, block_h))
        for c, x in enumerate(range(0, width, block_w))
    ]


def tiles_in_block(block: Block, width: int, height: int, spec: TilingSpec) -> Iterator[Tile]:
    """The block's tiles. All have the same read size (tile + 2 halo) so they batch together.

    A tile's core is clipped to the scene; its read window is not (reads outside the scene
    are reflected), so edge tiles are padded and later cropped back.
    """
    tile_w, tile_h = spec.fitted(width, height)
    halo = spec.halo_px
    core = block.core
    for y in range(int(core.row_off), int(core.row_off + core.height), tile_h):
        for x in range(int(core.col_off), int(core.col_off + core.width), tile_w):
            yield Tile(
                core=Window(x, y, min(tile_w, width - x), min(tile_h, height - y)),
                read=Window(x - halo, y - halo, tile_w + 2 * halo, tile_h + 2 * halo),
            )


def read_extent(tiles: list[Tile]) -> Window:
    """The smallest window holding every tile's read window: one read serves a whole block."""
    left = min(t.read.col_off for t in tiles)
    top = min(t.read.row_off for t in tiles)
    right = max(t.read.col_off + t.read.width for t in tiles)
    bottom = max(t.read.row_off + t.read.height for t in tiles)
    return Window(left, top, right - left, bottom - top)


def keep_cores(tiles: list[Tile], per_tile: np.ndarray, block: Block, halo: int, into: np.ndarray) -> None:
    """Stitch: copy each tile's core (its prediction less the halo) into the block's array."""
    for tile, predicted in zip(tiles, per_tile, strict=True):
        h, w = int(tile.core.height), int(tile.core.width)
        row = int(tile.core.row_off - block.core.row_off)
        col = int(tile.core.col_off - block.core.col_off)
        into[row : row + h, col : col + w] = predicted[halo : halo + h, halo : halo + w]


def _round_up(value: int, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)
