"""Resampling: a scene read at the model's ground sampling distance, its mask kept on its own grid.

A checkpoint records the GSD range it was trained on (``Domain.gsd_min_m``/``gsd_max_m``). With
``resample: model`` (``--resample model``), a scene outside that range (by more than the
warnings' tolerance, ``geoseg.applicability.GSD_TOLERANCE``) is read on its *model grid*: the
scene's own grid (same CRS and origin) with pixels ``factor`` = target / scene GSD times larger,
the target being the scene's GSD clamped into the range. Pixels come from one GDAL
``WarpedVRT`` of the scene on that grid.

The model grid is tiled like any scene (``geoseg.tiling``: haloed tiles on the model's stride
grid, in blocks), so its predictions are seam-free. Each model-grid block gives the scene
block of the scene pixels whose nearest model pixel lies in it; the mask is written on the
scene's grid, block by block, as without resampling: scene pixel (r, c) takes model pixel
(⌊(r + ½) / factor⌋, ⌊(c + ½) / factor⌋), the one under its centre.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from geoseg.applicability import gsd_warning, number_text, scene_warnings
from geoseg.errors import SceneError
from geoseg.maskformat import NODATA
from geoseg.model.metadata import Domain
from geoseg.scenes import MAX_PIXELS_VARIABLE, Scene, max_scene_pixels
from geoseg.tiling import Block, Tile, TilingSpec, block_grid, tiles_in_block
from geoseg.units import ground_sampling_distance_m

CHUNK_PX = 256
"""Side of the fixed chunks the model grid is warped in (see ``ChunkedReads``)."""


@dataclass(frozen=True)
class ModelGrid:
    """A scene's grid at the model's GSD: same CRS and origin, pixels ``factor`` times larger."""

    scene_gsd_m: float
    gsd_m: float
    width: int
    height: int
    transform: Affine

    @property
    def factor(self) -> float:
        """Model pixel side in scene pixels: > 1 down-samples, < 1 up-samples."""
        return self.gsd_m / self.scene_gsd_m

    @property
    def resampling(self) -> Resampling:
        """Average when down-sampling (every scene pixel counts, no aliasing); bilinear when
        up-sampling (smooth, no blocky edges for the network to see)."""
        return Resampling.average if self.factor > 1 else Resampling.bilinear

    @property
    def note(self) -> str:
        """What a scene's warnings say instead of its GSD warning."""
        return (
            f"resampled from GSD {number_text(self.scene_gsd_m)} m to the model's {number_text(self.gsd_m)} m"
        )

    def scene(self, scene: Scene) -> Scene:
        """``scene`` as the model grid: its pixels are read from ``open_model_grid``."""
        return dataclasses.replace(scene, width=self.width, height=self.height, transform=self.transform)


@dataclass(frozen=True)
class ResampledBlock(Block):
    """A block of the scene (``core``, on its grid) predicted as the block ``model`` of ``grid``."""

    grid: ModelGrid
    model: Block


def target_gsd_m(gsd_m: float, domain: Domain) -> float | None:
    """The GSD to read a scene of ``gsd_m`` at: the nearest edge of the model's range, or None
    when the scene is in range (within the tolerance of its GSD warning)."""
    if gsd_warning(gsd_m, domain) is None:
        return None
    return min(max(gsd_m, domain.gsd_min_m), domain.gsd_max_m)


def grid_geometry(transform: Affine, width: int, height: int, factor: float) -> tuple[Affine, int, int]:
    """Transform, width and height of a grid with pixels ``factor`` times larger covering the scene."""
    return transform * Affine.scale(factor), math.ceil(width / factor), math.ceil(height / factor)


def model_grid(scene: Scene, domain: Domain | None) -> ModelGrid | None:
    """The grid to read ``scene`` on for a model trained on ``domain``; None when no resampling is
    needed (no domain, or a GSD in range).

    Raises ``SceneError`` when that grid would be larger than the scene limit (a Landsat scene for
    a 0.3 m model).
    """
    if domain is None:
        return None
    gsd = ground_sampling_distance_m(scene.crs, scene.transform, scene.width, scene.height)
    target = target_gsd_m(gsd, domain)
    if target is None:
        return None
    transform, width, height = grid_geometry(scene.transform, scene.width, scene.height, target / gsd)
    if width * height > (limit := max_scene_pixels()):
        raise SceneError(
            scene.path,
            f"read at the model's GSD {number_text(target)} m it would be {width}×{height} px, more than "
            f"the limit of {limit / 1e9:.3g} Gpx (use resample: none, or raise ${MAX_PIXELS_VARIABLE})",
        )
    return ModelGrid(gsd, target, width, height, transform)


def scene_notes(
    scene: Scene, domain: Domain | None, grid: ModelGrid | None, sample: np.ndarray | None
) -> list[str]:
    """The scene's applicability warnings for a ``sample_pixels`` of it; read on ``grid``, its GSD
    warning is the resampling note."""
    warnings = scene_warnings(scene, domain, sample)
    if grid is None or domain is None:
        return warnings
    gsd = gsd_warning(grid.scene_gsd_m, domain)
    return [grid.note if warning == gsd else warning for warning in warnings]


def nearest_indices(start: int, stop: int, factor: float) -> np.ndarray:
    """The model-grid index under the centre of each scene index from ``start`` to ``stop``."""
    indices: np.ndarray = np.floor((np.arange(start, stop) + 0.5) / factor).astype(np.int64)
    return indices


def resampled_blocks(scene: Scene, grid: ModelGrid, spec: TilingSpec) -> list[Block]:
    """The scene's blocks: per block of the model grid (tiled by ``spec``), the scene pixels whose
    nearest model pixel lies in it (blocks with none are left out).

    Down-sampling, model blocks are ``factor`` times smaller than ``spec``'s, so that the scene
    block under one (whose core is read at the scene's resolution) is about a block too. The
    tiles do not change with the block size: the predictions do not either.
    """
    rows = nearest_indices(0, scene.height, grid.factor)
    cols = nearest_indices(0, scene.width, grid.factor)
    block_px = math.ceil(spec.block_size_px / max(grid.factor, 1.0))
    blocks: list[Block] = []
    for model in block_grid(grid.width, grid.height, dataclasses.replace(spec, block_size_px=block_px)):
        top, bottom = _scene_span(rows, int(model.core.row_off), int(model.core.height))
        left, right = _scene_span(cols, int(model.core.col_off), int(model.core.width))
        if bottom > top and right > left:
            core = Window(left, top, right - left, bottom - top)
            blocks.append(ResampledBlock(model.index, core, grid, model))
    return blocks


def scene_blocks(scene: Scene, spec: TilingSpec, grid: ModelGrid | None) -> list[Block]:
    """The blocks a scene is predicted in: its own block grid, or those of its model grid.

    Raises ``SceneError`` when its tiles would cost the model more than twice a square scene at
    the pixel limit: a thin strip is tiled in many nearly empty tiles (2^31 × 1 px would take
    days), so the limit on its pixels alone would not bound its work.
    """
    width, height = (scene.width, scene.height) if grid is None else (grid.width, grid.height)
    limit = max(max_scene_pixels(), spec.tile_size_px**2)
    if (computed := spec.computed_pixels(width, height)) > 2 * limit * spec.halo_overhead():
        raise SceneError(
            scene.path,
            f"its {width}×{height} px would cost the model {computed / 1e9:.3g} Gpx of tiles, as much as "
            f"a square scene over the limit of {limit / 1e9:.3g} Gpx (raise ${MAX_PIXELS_VARIABLE})",
        )
    return block_grid(width, height, spec) if grid is None else resampled_blocks(scene, grid, spec)


def block_tiles(scene: Scene, block: Block, spec: TilingSpec) -> list[Tile]:
    """The tiles a block is predicted in: on the scene's grid, or a resampled block's on the model's."""
    if isinstance(block, ResampledBlock):
        return list(tiles_in_block(block.model, block.grid.width, block.grid.height, spec))
    return list(tiles_in_block(block, scene.width, scene.height, spec))


def _scene_span(indices: np.ndarray, start: int, size: int) -> tuple[int, int]:
    """First and past-the-last scene index whose model index is in [start, start + size)."""
    first, last = np.searchsorted(indices, [start, start + size])
    return int(first), int(last)


def to_scene_grid(values: np.ndarray, block: ResampledBlock, valid: np.ndarray) -> np.ndarray:
    """A model block's per-pixel ``values`` on the scene block's pixels (nearest); nodata where
    the scene is."""
    core, model = block.core, block.model.core
    rows = nearest_indices(int(core.row_off), int(core.row_off + core.height), block.grid.factor)
    cols = nearest_indices(int(core.col_off), int(core.col_off + core.width), block.grid.factor)
    out: np.ndarray = values[(rows - int(model.row_off))[:, None], cols - int(model.col_off)]
    out[~valid] = NODATA
    return out


def open_model_grid(dataset: rasterio.DatasetReader, scene: Scene, grid: ModelGrid) -> WarpedVRT:
    """A ``WarpedVRT`` of the open scene ``dataset`` on ``grid`` (use it as a context manager)."""
    return WarpedVRT(
        dataset,
        src_crs=scene.crs,
        src_transform=scene.transform,
        crs=scene.crs,
        transform=grid.transform,
        width=grid.width,
        height=grid.height,
        resampling=grid.resampling,
    )


class ChunkedReads:
    """Window reads of a warped dataset, made of whole ``CHUNK_PX`` chunks of its grid.

    GDAL warps each request as a whole, and a pixel's value depends on the request it is warped
    in (rounding): a bilinear byte value may differ by one between two windows (0.5 % of the
    pixels of ``RGB.byte.tif`` up-sampled 3.3×, read whole or by VRT blocks). Warped chunk by chunk, a model
    pixel has the same value whichever block reads it: the mask stays seam-free.
    """

    def __init__(self, vrt: WarpedVRT) -> None:
        self._vrt = vrt
        self.mask_flag_enums = vrt.mask_flag_enums

    def read(self, indexes: list[int], window: Window) -> np.ndarray:
        """Pixels (bands, h, w) of ``window``."""
        return self._chunked(self._vrt.read, indexes, window)

    def read_masks(self, indexes: list[int], window: Window) -> np.ndarray:
        """GDAL masks (bands, h, w) of ``window``."""
        return self._chunked(self._vrt.read_masks, indexes, window)

    def _chunked(self, read: Callable[..., np.ndarray], indexes: list[int], window: Window) -> np.ndarray:
        top, left = int(window.row_off) // CHUNK_PX * CHUNK_PX, int(window.col_off) // CHUNK_PX * CHUNK_PX
        bottom, right = int(window.row_off + window.height), int(window.col_off + window.width)
        grid = Window(0, 0, self._vrt.width, self._vrt.height)
        chunks = [
            [
                read(indexes, window=Window(col, row, CHUNK_PX, CHUNK_PX).intersection(grid))
                for col in range(left, right, CHUNK_PX)
            ]
            for row in range(top, bottom, CHUNK_PX)
        ]
        rows, cols = (
            slice(int(window.row_off) - top, bottom - top),
            slice(int(window.col_off) - left, right - left),
        )
        pixels: np.ndarray = np.block(chunks)
        return pixels[:, rows, cols]
