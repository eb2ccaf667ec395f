"""The training domain a checkpoint records: GSD range and per-band statistics of the training pixels.

``geoseg.applicability`` compares scenes against it. The statistics are in raw pixel units, from
the same sample of training chips as the normalisation: mean and std over all their valid
pixels, 1st/99th percentiles over an evenly decimated subset of at most ``PERCENTILE_PIXELS``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from geoseg.errors import LabelError
from geoseg.model.metadata import Domain
from geoseg.scenes import Scene
from geoseg.training.chips import Chip, ChipReader
from geoseg.units import ground_sampling_distance_m

PERCENTILE_PIXELS = 2**20
"""At most this many pixels per band go into the percentiles."""


def pixel_sample(
    reader: ChipReader, chips: Sequence[Chip], max_pixels: int = PERCENTILE_PIXELS
) -> np.ndarray:
    """Valid raw pixels (bands, n ≤ ``max_pixels``) of ``chips``: every k-th pixel of each chip."""
    step = max(1, math.ceil(sum(chip.size_px**2 for chip in chips) / max_pixels))
    parts = []
    for chip in chips:
        pixels = reader.read(chip)
        parts.append(pixels.image[:, pixels.valid][:, ::step])
    if sum(part.shape[1] for part in parts) == 0:
        raise LabelError("no valid training pixels to describe the training domain with")
    return np.concatenate(parts, axis=1)


def training_domain(
    scenes: Sequence[Scene], pixels: np.ndarray, mean: list[float], std: list[float], zoom_out: float = 0.0
) -> Domain:
    """The domain of training ``scenes`` with percentiles of ``pixels`` (bands, n) and the given moments.

    Chips shrunk by ``zoom_out`` (``data.zoom_out``) were shown at up to 1 / (1 − zoom_out) times
    their GSD, so the range's top is stretched by that factor.
    """
    gsds = [ground_sampling_distance_m(s.crs, s.transform, s.width, s.height) for s in scenes]
    p1, p99 = np.percentile(pixels.astype(np.float64), [1, 99], axis=1)
    return Domain(
        gsd_min_m=min(gsds),
        gsd_max_m=max(gsds) / (1 - zoom_out),
        mean=list(mean),
        std=list(std),
        p1=[float(v) for v in p1],
        p99=[float(v) for v in p99],
    )
