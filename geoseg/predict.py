"""Predicting a block of a scene: one haloed read, batched tiles, cores cut back out.

``predict_block`` is the pixel logic shared by ``geoseg predict`` (a loop over blocks in one
process) and ``geoseg run`` (one Dask task per block). ``predict_scene`` is that loop.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from geoseg.errors import SceneError
from geoseg.inference import Predictor
from geoseg.scenes import Scene, open_scene, read_window
from geoseg.stitching import NODATA, MaskWriter
from geoseg.tiling import Block, TilingSpec, block_grid, read_extent, tiles_in_block


@dataclass(frozen=True)
class BlockPrediction:
    """Class ids and probability percent of a block's core; nodata (255) where input is nodata."""

    block: Block
    classes: np.ndarray
    probability: np.ndarray

    @property
    def valid_pixels(self) -> int:
        """How many pixels of the block had valid input."""
        return int(np.count_nonzero(self.classes != NODATA))


def tiling_for(
    predictor: Predictor, tile_size_px: int, halo_px: int | None, block_size_px: int
) -> TilingSpec:
    """Tiling aligned to the model's stride, with a halo covering its receptive radius."""
    meta = predictor.metadata
    return TilingSpec.for_model(
        stride_px=meta.total_stride,
        receptive_radius_px=meta.receptive_radius_px,
        tile_size_px=tile_size_px,
        halo_px=halo_px,
        block_size_px=block_size_px,
    )


def predict_block(
    scene: Scene,
    block: Block,
    predictor: Predictor,
    spec: TilingSpec,
    dataset: rasterio.DatasetReader | None = None,
) -> BlockPrediction:
    """Predict one block: read it once with its halo, cut tiles, predict, keep the cores."""
    tiles = list(tiles_in_block(block, scene.width, scene.height, spec))
    extent = read_extent(tiles)
    mean = predictor.metadata.normalization.mean
    pixels, valid = read_window(scene, extent, dataset, nodata_fill=mean)
    if pixels.dtype != np.uint8:
        pixels = pixels.astype(np.float32)

    def local(window: Window) -> tuple[slice, slice]:
        row, col = int(window.row_off - extent.row_off), int(window.col_off - extent.col_off)
        return slice(row, row + int(window.height)), slice(col, col + int(window.width))

    batch = np.stack([pixels[(slice(None), *local(t.read))] for t in tiles])
    tile_classes, tile_probability = predictor.predict(batch)

    shape = (int(block.core.height), int(block.core.width))
    classes = np.empty(shape, dtype=np.uint8)
    probability = np.empty(shape, dtype=np.uint8)
    halo = spec.halo_px
    for tile, tile_cls, tile_prob in zip(tiles, tile_classes, tile_probability, strict=True):
        h, w = int(tile.core.height), int(tile.core.width)
        row = int(tile.core.row_off - block.core.row_off)
        col = int(tile.core.col_off - block.core.col_off)
        classes[row : row + h, col : col + w] = tile_cls[halo : halo + h, halo : halo + w]
        probability[row : row + h, col : col + w] = tile_prob[halo : halo + h, halo : halo + w]
    core_valid = valid[local(block.core)]
    classes[~core_valid] = NODATA
    probability[~core_valid] = NODATA
    return BlockPrediction(block, classes, probability)


def predict_scene(
    image: str | os.PathLike[str],
    predictor: Predictor,
    out: str | os.PathLike[str],
    *,
    tile_size_px: int = 512,
    halo_px: int | None = None,
    block_size_px: int = 2048,
    bands: list[int] | None = None,
    with_probability: bool = False,
) -> Path:
    """Segment a whole scene into a COG mask at ``out``, one block in memory at a time."""
    scene = open_scene(image, bands=bands or None, expected_bands=predictor.metadata.architecture.in_bands)
    spec = tiling_for(predictor, tile_size_px, halo_px, block_size_px)
    valid_pixels = 0
    with (
        rasterio.open(scene.path) as dataset,
        MaskWriter(out, scene, predictor.metadata.classes, with_probability) as writer,
    ):
        for block in block_grid(scene.width, scene.height, spec):
            prediction = predict_block(scene, block, predictor, spec, dataset)
            writer.write(block.core, prediction.classes, prediction.probability)
            valid_pixels += prediction.valid_pixels
        if valid_pixels == 0:
            raise SceneError(scene.path, "every pixel is nodata (nothing to segment)")
    return Path(out)
