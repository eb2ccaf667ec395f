"""Predicting a block of a scene: one haloed read, batched tiles, cores cut back out.

``read_block`` and ``predict_pixels`` are the pixel logic shared by ``geoseg predict`` (a loop
over blocks in one process) and ``geoseg run`` (one Dask task per block). ``predict_scene`` is
that loop. A ``ResampledBlock`` (``geoseg.resample``) is read and predicted on the model's grid
and its prediction brought back to the scene's.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import os
import queue
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import rasterio
from rasterio.windows import Window

from geoseg.errors import GeosegWarning, SceneError
from geoseg.gdal_settings import bounded_cache
from geoseg.maskformat import NODATA
from geoseg.maskwriter import MaskWriter
from geoseg.model_input import ModelInput, open_for_model
from geoseg.resample import (
    ChunkedReads,
    ResampledBlock,
    block_tiles,
    open_model_grid,
    scene_blocks,
    to_scene_grid,
)
from geoseg.safepaths import check_replaceable, refuse_overwriting_inputs
from geoseg.scenes import Scene, open_pixels, read_window
from geoseg.tiling import Block, Tile, TilingSpec, keep_cores, read_extent
from geoseg.timing import stage
from geoseg.workflow import Resample

if TYPE_CHECKING:  # torch: imported by whoever builds the predictor, not by the pixel logic
    from geoseg.inference import Predictor

T = TypeVar("T")
READER_THREADS = 4
"""Threads reading blocks ahead of the model in ``predict_scene`` (issue 11: reads scale to 4)."""


@dataclass(frozen=True)
class BlockPrediction:
    """Class ids and probability percent (when asked for) of a block's core; nodata (255) where
    input is nodata."""

    block: Block
    classes: np.ndarray
    probability: np.ndarray | None

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


@dataclass(frozen=True)
class BlockPixels:
    """A block's tiles and its one haloed read: pixels (bands, h, w) and validity (h, w)."""

    block: Block
    tiles: list[Tile]
    extent: Window
    pixels: np.ndarray
    valid: np.ndarray

    def local(self, window: Window) -> tuple[slice, slice]:
        """Row and column slices of ``window`` inside the read."""
        row, col = int(window.row_off - self.extent.row_off), int(window.col_off - self.extent.col_off)
        return slice(row, row + int(window.height)), slice(col, col + int(window.width))

    def core(self) -> tuple[np.ndarray, np.ndarray]:
        """Pixels and validity of the block's core: the read without its halo."""
        rows, cols = self.local(self.block.core)
        return self.pixels[:, rows, cols], self.valid[rows, cols]


@dataclass(frozen=True)
class ResampledPixels:
    """A ``ResampledBlock``'s read: its model-grid block (``model``) and its core's own pixels and
    validity at the scene's resolution."""

    block: ResampledBlock
    model: BlockPixels
    pixels: np.ndarray
    valid: np.ndarray

    def core(self) -> tuple[np.ndarray, np.ndarray]:
        """Pixels and validity of the block's core, on the scene's grid."""
        return self.pixels, self.valid


def read_block(
    scene: Scene,
    block: Block,
    spec: TilingSpec,
    dataset: rasterio.DatasetReader | None = None,
    nodata_fill: list[float] | None = None,
) -> BlockPixels | ResampledPixels:
    """Read a block once with its halo; invalid pixels become ``nodata_fill``."""
    if isinstance(block, ResampledBlock):
        return read_resampled(scene, block, spec, dataset, nodata_fill)
    tiles = block_tiles(scene, block, spec)
    extent = read_extent(tiles)
    with stage("read"):
        pixels, valid = read_window(scene, extent, dataset, nodata_fill=nodata_fill)
        if pixels.dtype != np.uint8:
            pixels = pixels.astype(np.float32, copy=False)
    return BlockPixels(block, tiles, extent, pixels, valid)


def read_resampled(
    scene: Scene,
    block: ResampledBlock,
    spec: TilingSpec,
    dataset: rasterio.DatasetReader | None = None,
    nodata_fill: list[float] | None = None,
) -> ResampledPixels:
    """Read a block's model-grid block with its halo through a ``WarpedVRT``, and the block's core.

    The core is read at the scene's resolution for its validity (and a run's quick-look): a scene
    pixel is nodata in the mask exactly where it is nodata itself, whereas the model pixel under
    it may average valid and invalid ones. That read is cheap beside the warped one: 2 ms against
    0.6 s per block of a 0.6 m scene (2048² model px; the shipped model's forward pass: 15 s).
    """
    if dataset is None:
        with open_pixels(scene.path) as opened:
            return read_resampled(scene, block, spec, opened, nodata_fill)
    with open_model_grid(dataset, scene, block.grid) as vrt:
        model = read_block(block.grid.scene(scene), block.model, spec, ChunkedReads(vrt), nodata_fill)
    assert isinstance(model, BlockPixels)
    with stage("read"):
        pixels, valid = read_window(scene, block.core, dataset)
    return ResampledPixels(block, model, pixels, valid)


def predict_pixels(
    read: BlockPixels | ResampledPixels, predictor: Predictor, spec: TilingSpec, with_probability: bool = True
) -> BlockPrediction:
    """Predict the tiles of a read block and keep their cores (and their probabilities, if asked).

    Tiles without a valid core pixel skip the network: their cores are nodata anyway. A
    resampled block is predicted on the model's grid, then taken back to the scene's.
    """
    if isinstance(read, ResampledPixels):
        on_model = predict_pixels(read.model, predictor, spec, with_probability)
        with stage("stitch"):
            classes = to_scene_grid(on_model.classes, read.block, read.valid)
            probability = (
                None
                if on_model.probability is None
                else to_scene_grid(on_model.probability, read.block, read.valid)
            )
        return BlockPrediction(read.block, classes, probability)
    block = read.block
    shape = (int(block.core.height), int(block.core.width))
    outputs = [np.full(shape, NODATA, dtype=np.uint8) for _ in range(2 if with_probability else 1)]
    tiles = [t for t in read.tiles if read.valid[read.local(t.core)].any()]
    if tiles:
        batch = np.stack([read.pixels[(slice(None), *read.local(t.read))] for t in tiles])
        predicted = predictor.predict(batch) if with_probability else (predictor.classify(batch),)
        with stage("stitch"):
            for output, per_tile in zip(outputs, predicted, strict=True):
                keep_cores(tiles, per_tile, block, spec.halo_px, output)
    with stage("stitch"):
        core_invalid = ~read.valid[read.local(block.core)]
        for output in outputs:
            output[core_invalid] = NODATA
    return BlockPrediction(block, outputs[0], outputs[1] if with_probability else None)


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
    protected: Sequence[str | os.PathLike[str]] = (),
    progress: Callable[[int, int, int], None] | None = None,
    warn: Callable[[str], None] | None = None,
    resample: Resample = "none",
) -> Path:
    """Segment a whole scene into a COG mask at ``out``, a few blocks in memory at a time.

    ``progress``, if given, is called before the first block and after each block with
    (blocks done, blocks in the scene, pixels done); ``warn``, if given, with each note about
    the scene (``geoseg.model_input``: how it differs from the model's training data, how its
    pixels were scaled), before the first.
    ``resample="model"`` reads a scene outside the model's GSD range at the model's GSD
    (``geoseg.resample``; the mask stays on the scene's grid).

    ``out`` may not be the scene itself nor any of the ``protected`` files (the model), also
    through links, nor an existing folder or special file.
    """
    check_replaceable(out)
    refuse_overwriting_inputs([out], [image, *protected])
    metadata = predictor.metadata
    prepared = open_for_model(image, ModelInput.of(metadata), bands or None, resample)
    scene, resampled = prepared.scene, prepared.grid
    if warn is not None:
        for warning in prepared.notes:
            warn(warning)
    spec = tiling_for(predictor, tile_size_px, halo_px, block_size_px)
    if seams := spec.seam_warning(predictor.metadata.receptive_radius_px):
        warnings.warn(GeosegWarning(seams), stacklevel=2)
    mean = predictor.metadata.normalization.mean
    valid_pixels = 0
    threads = min(READER_THREADS, os.cpu_count() or 1)
    with (
        bounded_cache(),
        contextlib.ExitStack() as datasets,
        ThreadPoolExecutor(threads, thread_name_prefix="geoseg-read") as reader,
        MaskWriter(out, scene, predictor.metadata.classes, with_probability) as writer,
    ):
        handles: queue.SimpleQueue[rasterio.DatasetReader] = queue.SimpleQueue()
        for _ in range(threads):  # a dataset handle is not thread-safe: one per reading thread
            handles.put(datasets.enter_context(open_pixels(scene.path)))

        def read(block: Block) -> BlockPixels | ResampledPixels:
            dataset = handles.get()
            try:
                return read_block(scene, block, spec, dataset, mean)
            finally:
                handles.put(dataset)

        grid = scene_blocks(scene, spec, resampled)
        reads = (functools.partial(read, b) for b in grid)
        done_px = 0
        if progress:
            progress(0, len(grid), 0)
        for done, pixels in enumerate(prefetched(reader, reads, depth=threads), start=1):
            prediction = predict_pixels(pixels, predictor, spec, with_probability)
            writer.write(pixels.block.core, prediction.classes, prediction.probability)
            valid_pixels += prediction.valid_pixels
            done_px += prediction.classes.size
            if progress:
                progress(done, len(grid), done_px)
        if valid_pixels == 0:
            raise SceneError(scene.path, "every pixel is nodata (nothing to segment)")
    return Path(out)


def prefetched(executor: Executor, calls: Iterable[Callable[[], T]], depth: int = 1) -> Iterator[T]:
    """Results of ``calls`` in order, up to ``depth`` of them running ahead on ``executor``.

    Blocks are read (GDAL decodes without the GIL) while the current one is on the network: at
    most ``depth + 1`` blocks are in memory.
    """
    pending: collections.deque[Future[T]] = collections.deque()
    for call in calls:
        pending.append(executor.submit(call))
        if len(pending) > depth:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()
