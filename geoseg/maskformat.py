"""The mask format, in one place: what geoseg writes, and reading it back block by block.

A mask is a GeoTIFF: band 1 holds uint8 class ids (0 background, 1..N classes, ``NODATA``),
an optional band 2 the uint8 probability of the predicted class in percent (0..100,
``NODATA``). Class names are the JSON list in the dataset tag ``CLASSES_TAG`` (index = class
id). ``maskwriter`` writes masks, ``inference`` makes the percentages, ``vectorize`` reads both.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import rasterio
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.transform import Affine
from rasterio.windows import Window

from geoseg.errors import VectorizeError

NODATA = 255
"""Class id and probability of pixels without a prediction (outside the scene's valid data)."""
CLASSES_TAG = "GEOSEG_CLASSES"
"""Dataset tag holding the class names as a JSON list, index = class id."""
PROBABILITY_SCALE = 100
"""Band 2 holds probabilities × this, rounded: uint8 percent."""


@dataclass(frozen=True)
class MaskInfo:
    """What vectorising needs to know about a mask besides its pixels."""

    width: int
    height: int
    transform: Affine
    crs: CRS
    class_names: tuple[str, ...] = ()
    has_probability: bool = False

    def class_name(self, class_id: int) -> str:
        """The name of ``class_id``: from ``GEOSEG_CLASSES``, else ``class_<id>``."""
        if class_id < len(self.class_names):
            return self.class_names[class_id]
        return f"class_{class_id}"


@dataclass(frozen=True)
class MaskBlock:
    """The core pixels of one block of a mask and where it sits in the scene."""

    row_off: int
    col_off: int
    classes: npt.NDArray[np.uint8]
    probability: npt.NDArray[np.uint8] | None


def read_mask_info(path: str | os.PathLike[str]) -> MaskInfo:
    """Open ``path`` and check it follows the mask convention; raise ``VectorizeError`` if not."""
    with _open(path) as src:
        return _mask_info(path, src)


def iter_mask_blocks(path: str | os.PathLike[str], block_size: int) -> Iterator[MaskBlock]:
    """Read the mask in ``block_size`` squares (windowed reads, row by row of blocks)."""
    if block_size < 1:
        raise VectorizeError(path, f"block size must be positive, got {block_size}")
    with _open(path) as src:
        info = _mask_info(path, src)
        for row_off in range(0, info.height, block_size):
            for col_off in range(0, info.width, block_size):
                window = Window(
                    col_off,
                    row_off,
                    min(block_size, info.width - col_off),
                    min(block_size, info.height - row_off),
                )
                try:
                    classes = src.read(1, window=window)
                    probability = src.read(2, window=window) if info.has_probability else None
                except RasterioIOError as exc:
                    raise VectorizeError(path, f"cannot read block {window}: {exc}") from exc
                yield MaskBlock(row_off, col_off, classes, probability)


def _open(path: str | os.PathLike[str]) -> rasterio.DatasetReader:
    if not Path(path).exists():
        raise VectorizeError(path, "mask not found")
    if not Path(path).is_file():
        raise VectorizeError(path, "not a regular file (a folder, pipe, socket or device)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)  # reported as an error below
            return rasterio.open(path)
    except RasterioIOError as exc:
        raise VectorizeError(path, f"not a raster: {exc}") from exc


def _mask_info(path: str | os.PathLike[str], src: rasterio.DatasetReader) -> MaskInfo:
    if src.count not in (1, 2) or any(dtype != "uint8" for dtype in src.dtypes):
        raise VectorizeError(
            path, f"not a mask: expected 1 or 2 uint8 bands, got {src.count} × {src.dtypes[0]}"
        )
    if src.crs is None or src.transform.is_identity:
        raise VectorizeError(path, "mask is not georeferenced (no CRS or geotransform)")
    return MaskInfo(
        width=src.width,
        height=src.height,
        transform=src.transform,
        crs=src.crs,
        class_names=_class_names(path, src.tags().get(CLASSES_TAG)),
        has_probability=src.count == 2,
    )


def _class_names(path: str | os.PathLike[str], tag: str | None) -> tuple[str, ...]:
    if tag is None:
        return ()
    try:
        names = json.loads(tag)
    except json.JSONDecodeError as exc:
        raise VectorizeError(path, f"{CLASSES_TAG} is not JSON: {exc}") from exc
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise VectorizeError(path, f"{CLASSES_TAG} must be a JSON list of names, got {tag!r}")
    return tuple(names)
