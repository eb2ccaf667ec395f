"""The mask writer: block predictions become one Cloud-Optimized GeoTIFF mask of the whole scene.

Blocks are written with windowed writes into a tiled working GeoTIFF, so memory is bounded by
a block, never by the scene; on success GDAL's COG driver copies it, with overviews that keep
each class's share (``geoseg.overviews``), to a temporary name beside the target, which is
then renamed. A failure or a killed process never leaves a file under the final name.
The mask format (bands, nodata, class-name tag) is ``geoseg.maskformat``'s.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from pathlib import Path
from types import TracebackType

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.windows import Window

from geoseg.atomic import atomic_output, temporary_sibling, writing
from geoseg.gdal_settings import bounded_cache
from geoseg.maskformat import CLASSES_TAG, NODATA
from geoseg.overviews import LevelBuilder, with_overviews
from geoseg.scenes import Scene
from geoseg.timing import stage

COG_BLOCK_PX = 512
DEFLATE_LEVEL = 3
"""zlib level of DEFLATE masks: on a speckled 8192² Landsat mask 0.30 s and 3.3 MB against
GDAL's default level 6, 0.75 s and 2.8 MB (one thread); every DEFLATE reader reads either."""
_WORKING_OPTIONS: dict[str, object] = {"tiled": True, "blockxsize": COG_BLOCK_PX, "blockysize": COG_BLOCK_PX}
RAW_WORKING_BYTES = 2**28
"""Working files (and their overview levels) up to this size are left uncompressed, larger
ones use ZSTD level 1. An 8192² mask (64 MiB): its overview levels took 0.44–0.50 s from a ZSTD
working file, 0.24–0.25 s from a raw one; a 16 Gpx scene keeps its temporary files compressed."""


def working_options(width: int, height: int, bands: int) -> dict[str, object]:
    """Creation options of the tiled working GeoTIFF a mask is stitched into."""
    if width * height * bands <= RAW_WORKING_BYTES:
        return _WORKING_OPTIONS
    return {**_WORKING_OPTIONS, "compress": "ZSTD", "zstd_level": 1}


class MaskWriter:
    """Context manager writing block results into a COG mask with the scene's georeferencing."""

    def __init__(
        self,
        out: str | os.PathLike[str],
        scene: Scene,
        classes: list[str],
        with_probability: bool = False,
        compress: str = "DEFLATE",
    ) -> None:
        self.out = Path(out)
        self.scene = scene
        self.classes = classes
        self.with_probability = with_probability
        self.compress = compress
        self._working = temporary_sibling(self.out.with_suffix(".working.tif"))
        self._dataset: rasterio.io.DatasetWriter | None = None
        self._levels: LevelBuilder | None = None

    def __enter__(self) -> MaskWriter:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        bands = 2 if self.with_probability else 1
        profile = {
            "driver": "GTiff",
            "width": self.scene.width,
            "height": self.scene.height,
            "count": bands,
            "dtype": "uint8",
            "crs": self.scene.crs,
            "transform": self.scene.transform,
            "nodata": NODATA,
            **working_options(self.scene.width, self.scene.height, bands),
        }
        with writing(self.out):
            self._dataset = rasterio.open(self._working, "w", **profile)
            self._levels = LevelBuilder(self._working, profile, COG_BLOCK_PX, NODATA)
            self._dataset.update_tags(**{CLASSES_TAG: json.dumps(self.classes)})
            self._dataset.set_band_description(1, "class")
            if self.with_probability:
                self._dataset.set_band_description(2, "probability_percent")
        return self

    def write(self, window: Window, classes: np.ndarray, probability: np.ndarray | None = None) -> None:
        """Write one block's class ids (and probabilities) at ``window``."""
        assert self._dataset is not None, "MaskWriter used outside its with-block"
        bands = [classes, probability] if self.with_probability and probability is not None else [classes]
        with writing(self.out):
            with stage("stitch"):
                for index, band in enumerate(bands, start=1):
                    self._dataset.write(band, index, window=window)
            with stage("overviews"):  # the block's share of every overview level, while it is at hand
                assert self._levels is not None
                self._levels.add(window, bands)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._dataset is not None:
                with writing(self.out) if exc_type is None else contextlib.suppress(Exception):
                    self._dataset.close()  # after an error, that error is the one to tell
            if exc_type is None and self._levels is not None:
                levels = self._levels.finish()
                with stage("assemble"), atomic_output(self.out) as tmp:
                    write_cog(self._working, tmp, self.compress, levels)
                    check_blocks_on_disk(tmp)
        finally:
            if self._levels is not None:
                self._levels.close()
            self._working.unlink(missing_ok=True)


def check_blocks_on_disk(path: Path) -> None:
    """Raise ``OSError`` when a full-resolution block of the GeoTIFF at ``path`` ends past the
    end of the file: GDAL's COG copy can meet a full disk, print the error and yet succeed,
    leaving a file whose headers promise blocks that were never written. Reads tags, no pixels."""
    size = path.stat().st_size
    with rasterio.open(path) as ds:
        block_h, block_w = ds.block_shapes[0]
        for band in ds.indexes:
            for row in range(-(-ds.height // block_h)):
                for col in range(-(-ds.width // block_w)):
                    offset = ds.get_tag_item(f"BLOCK_OFFSET_{col}_{row}", "TIFF", bidx=band)
                    length = ds.get_tag_item(f"BLOCK_SIZE_{col}_{row}", "TIFF", bidx=band)
                    if offset and length and int(offset) + int(length) > size:
                        raise OSError(errno.EIO, "the file was cut short: a write failed")


def write_cog(
    src: Path, dst: str | os.PathLike[str], compress: str = "DEFLATE", levels: list[Path] | None = None
) -> None:
    """Copy a mask GeoTIFF to a COG whose overviews keep each class's share of the pixels
    (DEFLATE at ``DEFLATE_LEVEL``): the ``levels`` built while it was written, or else computed
    from it (``geoseg.overviews``).

    GDAL's block cache is capped while copying: the COG driver fills it in proportion to the
    scene (975 MiB of peak memory for a 16k² mask, 250 MiB capped).
    """
    level = {"level": DEFLATE_LEVEL} if compress == "DEFLATE" else {}
    with bounded_cache(), with_overviews(src, COG_BLOCK_PX, NODATA, levels) as mask:
        rasterio.shutil.copy(
            mask,
            dst,
            driver="COG",
            compress=compress,
            blocksize=COG_BLOCK_PX,
            overviews="FORCE_USE_EXISTING",
            num_threads="ALL_CPUS",
            **level,
        )
