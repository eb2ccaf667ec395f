"""Applicability: whether a model's training data looks like a scene, as one-line warnings.

A checkpoint records what it was trained on (``ModelMetadata.domain``: the ground sampling
distance range and per-band statistics of the raw training pixels). A scene is flagged when

* its GSD (``geoseg.units.ground_sampling_distance_m``) is more than ``GSD_TOLERANCE`` (2×)
  finer than the finest or coarser than the coarsest training GSD: a convolution learns
  objects at a size in pixels, and a building 2× larger or smaller in pixels than any it saw
  is outside what it learnt;
* for any band, its median lies outside the training pixels' 1st–99th percentile range (a
  location test that outliers, nodata fill and a few saturated pixels do not move: another bit
  depth, scaling or band order), or its standard deviation is more than ``STD_TOLERANCE`` (4×)
  away from the training one (another radiometric scaling, or a nearly uniform scene: cloud,
  water, snow).

A flagged scene is still processed; the warnings travel with its outputs. The pixel statistics
come from one decimated read (at most ``SAMPLE_SIDE_PX`` per side), served from overviews when
the file has them (the same cost for a chip and a 50 000 px scene), else read strip by strip
at full resolution, each block decoded once (about 2 s for an 8192² DEFLATE scene).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import NodataShadowWarning, RasterioError
from rasterio.windows import Window

from geoseg.model.metadata import Domain
from geoseg.scenes import Scene, open_pixels
from geoseg.units import ground_sampling_distance_m

GSD_TOLERANCE = 2.0
"""A scene's GSD may be this factor outside the training range before it is flagged."""
STD_TOLERANCE = 4.0
"""A band's standard deviation may differ from the training one by this factor."""
SAMPLE_SIDE_PX = 512
"""The decimated read for pixel statistics is at most this many pixels on a side."""
STRIP_PX = 4_000_000
"""Pixels per strip of a decimated read of a file without overviews (whole block rows, at least one)."""


@dataclass(frozen=True)
class PixelStatistics:
    """Per-band median and standard deviation of a sample of a scene's valid pixels (raw units)."""

    median: tuple[float, ...]
    std: tuple[float, ...]
    pixels: int


def pixel_statistics(values: np.ndarray) -> PixelStatistics:
    """Statistics of valid pixel values laid out (bands, n)."""
    data = values.astype(np.float64)
    return PixelStatistics(
        tuple(float(m) for m in np.median(data, axis=1)),
        tuple(float(s) for s in data.std(axis=1)),
        int(data.shape[1]),
    )


def sample_pixels(scene: Scene, side_px: int = SAMPLE_SIDE_PX) -> np.ndarray | None:
    """Valid raw pixels (bands, n) of a decimated read of the whole scene; None without valid
    pixels or when unreadable.

    Unreadable pixels are left for the prediction to report: the warnings are advisory.
    """
    scale = max(1.0, max(scene.width, scene.height) / side_px)
    shape = (len(scene.bands), max(1, round(scene.height / scale)), max(1, round(scene.width / scale)))
    bands = list(scene.bands)
    try:
        with open_pixels(scene.path) as dataset, warnings.catch_warnings():
            warnings.simplefilter("ignore", NodataShadowWarning)  # the alpha band is read below
            pixels, valid = _decimated(dataset, bands, shape[1:])
            if scene.alpha_band is not None:
                alpha, _ = _decimated(dataset, [scene.alpha_band], shape[1:])
                valid &= alpha[0] != 0
    except RasterioError:
        return None
    if not valid.any():
        return None
    sample: np.ndarray = pixels[:, valid]
    return sample


def _decimated(
    dataset: rasterio.DatasetReader, bands: list[int], shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Pixels (bands, *shape) and validity of a nearest decimated read: from overviews if any."""
    if dataset.overviews(bands[0]):
        pixels = dataset.read(bands, out_shape=(len(bands), *shape), resampling=Resampling.nearest)
        masks = dataset.read_masks(bands, out_shape=(len(bands), *shape), resampling=Resampling.nearest)
        return pixels, masks.any(axis=0)
    return _decimated_by_strips(dataset, bands, shape)


def _decimated_by_strips(
    dataset: rasterio.DatasetReader, bands: list[int], shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Every ``scale``-th pixel (nearest) and its validity, read window by window at full
    resolution, each window at most about ``STRIP_PX`` pixels.

    For files without overviews: GDAL's decimated read of a tiled, compressed file decodes
    each block again for every output row it feeds (80 s for an 8192² DEFLATE scene; strips:
    each block once, about 1 s). A window spans only blocks that hold sampled pixels, so a scene
    2^31 px wide and 1 high is sampled in 512 one-block reads, not one read of the whole scene.
    """
    height, width = shape
    rows = np.minimum(((np.arange(height) + 0.5) * dataset.height / height).astype(int), dataset.height - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * dataset.width / width).astype(int), dataset.width - 1)
    block_rows, block_cols = dataset.block_shapes[bands[0] - 1]
    strip = max(block_rows, STRIP_PX // max(1, dataset.width) // block_rows * block_rows)
    chunk = max(block_cols, STRIP_PX // strip // block_cols * block_cols)
    pixels = np.zeros((len(bands), height, width), dtype=dataset.dtypes[bands[0] - 1])
    valid = np.zeros((height, width), dtype=bool)
    col_spans = _windows_of_samples(cols, chunk, block_cols, dataset.width)
    for row_taken, top, bottom in _windows_of_samples(rows, strip, block_rows, dataset.height):
        for col_taken, left, right in col_spans:
            window = Window(left, top, right - left, bottom - top)
            at_rows, at_cols = rows[row_taken, None] - top, cols[None, col_taken] - left
            into_rows, into_cols = row_taken[:, None], col_taken[None, :]
            pixels[:, into_rows, into_cols] = dataset.read(bands, window=window)[:, at_rows, at_cols]
            masks = dataset.read_masks(bands, window=window)[:, at_rows, at_cols]
            valid[into_rows, into_cols] = masks.any(axis=0)
    return pixels, valid


def _windows_of_samples(
    samples: np.ndarray, step: int, block: int, size: int
) -> list[tuple[np.ndarray, int, int]]:
    """Spans of whole blocks that hold the (sorted) sampled indices: runs of adjacent blocks, each
    at most ``step`` long; with the positions in ``samples`` that each span holds."""
    blocks = samples // block
    spans: list[tuple[np.ndarray, int, int]] = []
    first = 0
    for i in range(1, len(samples) + 1):
        if (
            i == len(samples)
            or blocks[i] > blocks[i - 1] + 1
            or (blocks[i] + 1 - blocks[first]) * block > step
        ):
            spans.append(
                (np.arange(first, i), int(blocks[first]) * block, min(size, (int(blocks[i - 1]) + 1) * block))
            )
            first = i
    return spans


def gsd_warning(gsd_m: float, domain: Domain) -> str | None:
    """A warning when ``gsd_m`` is more than ``GSD_TOLERANCE`` outside the trained range."""
    if domain.gsd_min_m / GSD_TOLERANCE <= gsd_m <= domain.gsd_max_m * GSD_TOLERANCE:
        return None
    return (
        f"GSD {number_text(gsd_m)} m is outside the model's {number_text(domain.gsd_min_m)}–"
        f"{number_text(domain.gsd_max_m)} m range (resample or use another model)"
    )


def statistics_warning(stats: PixelStatistics, domain: Domain) -> str | None:
    """A warning naming each band whose median or spread is far from the training pixels'."""
    problems = []
    for band, (median, std) in enumerate(zip(stats.median, stats.std, strict=True)):
        low, high, trained_std = domain.p1[band], domain.p99[band], domain.std[band]
        found = []
        if not low <= median <= high:
            found.append(f"median {number_text(median)} vs {number_text(low)}–{number_text(high)} trained")
        if not trained_std / STD_TOLERANCE <= std <= trained_std * STD_TOLERANCE:
            found.append(f"std {number_text(std)} vs {number_text(trained_std)} trained")
        if found:
            problems.append(f"band {band + 1} " + ", ".join(found))
    if not problems:
        return None
    return f"pixel statistics far from the training data ({'; '.join(problems)})"


def applicability_warnings(
    crs: CRS,
    transform: Affine,
    width: int,
    height: int,
    stats: PixelStatistics | None,
    domain: Domain | None,
) -> list[str]:
    """One-line warnings for a scene described by its grid and pixel statistics (none without a domain)."""
    if domain is None:
        return []
    warnings = [gsd_warning(ground_sampling_distance_m(crs, transform, width, height), domain)]
    if stats is not None:
        warnings.append(statistics_warning(stats, domain))
    return [w for w in warnings if w is not None]


def scene_warnings(scene: Scene, domain: Domain | None, sample: np.ndarray | None) -> list[str]:
    """``applicability_warnings`` for an opened scene and a ``sample_pixels`` of it, compared as
    the model sees them (after the scene's ``scaling``)."""
    if domain is None:
        return []
    if sample is not None and scene.scaling is not None:
        sample = scene.scaling.apply(sample)
    stats = None if sample is None else pixel_statistics(sample)
    return applicability_warnings(scene.crs, scene.transform, scene.width, scene.height, stats, domain)


def number_text(value: float) -> str:
    """Three significant digits, without exponents for large values (300, 45.8, 0.0742; past a
    trillion with one: 1e+308)."""
    return f"{value:.0f}" if 100 <= abs(value) < 1e12 else f"{value:.3g}"
