"""Radiometry: a scene's raw pixel values mapped into the range the model was trained on.

A model learns from pixels of one kind — the shipped ones from 8-bit RGB. A checkpoint's
``Radiometry`` says which pixel types it reads as they are and how any other scene is brought
into that range: by default one linear map for all bands, taking the lowest band's 0.5th
percentile to 0 and the highest band's 99.5th to 255, values beyond clipped — a percentile
stretch, the usual way 11-bit WorldView or 16-bit Landsat and Sentinel-2 pixels are shown as
8-bit images. One map for all bands keeps their relative values (the colours); on 11-bit copies
of the labelled sample scenes it kept more of the 8-bit IoU than stretching each band on its own
or other percentiles (MODEL_CARD.md), while a few saturated or unmasked fill pixels still do not
set the range. The percentiles come from one decimated sample of the whole scene
(``geoseg.applicability.sample_pixels``), so every block and tile of a scene is scaled the same
way and tiled predictions stay seam-free. Training scales its scenes by the same rule, so the
model sees the same values in training and in use.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from geoseg.applicability import number_text
from geoseg.model.metadata import Radiometry

_FLOAT32_SAFE = 1e30
"""Scales and offsets beyond this are applied in float64 (float32 ends at 3.4e38)."""
_FLOAT32_EXACT_OFFSET = 2.0**14
"""Offsets beyond this are applied in float64: ``raw × scale`` is then so large that float32's
rounding (2^-24 of it) shows on the model's scale (int32 pixels near 2^30: 256 levels became 5)."""


@dataclass(frozen=True)
class BandScaling:
    """Per band ``clip(raw × scale + offset, low, high)``: raw pixels as the model's input."""

    scale: tuple[float, ...]
    offset: tuple[float, ...]
    low: float
    high: float
    source: tuple[tuple[float, float], ...]
    """Per band, the raw values mapped to ``low`` and ``high`` (for the note)."""
    joint: bool = False
    """One map for all bands."""

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        """``pixels`` (bands, …) scaled, as float32; in float64 where float32 would overflow
        (float64 pixels past its range, or the huge scale of a tiny value range) or round off
        (a large offset: values far from 0)."""
        shape = (-1,) + (1,) * (pixels.ndim - 1)
        fits = all(abs(v) < _FLOAT32_SAFE for v in self.scale) and all(
            abs(v) < _FLOAT32_EXACT_OFFSET for v in self.offset
        )
        work = np.float32 if fits and pixels.dtype != np.float64 else np.float64
        scale = np.asarray(self.scale, dtype=work).reshape(shape)
        offset = np.asarray(self.offset, dtype=work).reshape(shape)
        with np.errstate(over="ignore"):  # nodata such as -3.4e38 overflows, then clips to low
            out: np.ndarray = np.multiply(pixels, scale, dtype=work)  # converts and scales in one pass
            out += offset
        np.clip(out, self.low, self.high, out=out)
        return out.astype(np.float32, copy=False)

    @property
    def note(self) -> str:
        """One line saying what was done, for the scene's warnings."""
        ranges = [f"{number_text(a)}–{number_text(b)}" for a, b in self.source]
        target = f"{number_text(self.low)}–{number_text(self.high)}"
        if self.joint:
            return f"pixel values scaled to the model's {target} from {ranges[0]} (all bands)"
        return f"pixel values scaled to the model's {target} from {', '.join(ranges)} (per band)"


def needs_scaling(dtype: str, radiometry: Radiometry | None) -> bool:
    """Whether a scene of ``dtype`` is scaled before a model with this ``radiometry`` sees it."""
    return radiometry is not None and dtype not in radiometry.kept_dtypes


def band_scaling(sample: np.ndarray, radiometry: Radiometry) -> BandScaling:
    """The scaling that maps the percentiles of ``sample`` (bands, n valid pixels) onto the
    radiometry's target, jointly or per band; a band with one value goes to the middle."""
    low, high = radiometry.target
    lower, upper = np.percentile(sample.astype(np.float64), radiometry.percentiles, axis=1)
    joint = radiometry.stretch == "joint"
    if joint:
        lower, upper = np.full_like(lower, lower.min()), np.full_like(upper, upper.max())
    spread = upper - lower
    flat = spread <= 0
    scale = np.where(flat, 0.0, (high - low) / np.where(flat, 1.0, spread))
    offset = np.where(flat, (low + high) / 2, low - lower * scale)
    return BandScaling(
        tuple(float(v) for v in scale),
        tuple(float(v) for v in offset),
        float(low),
        float(high),
        tuple((float(a), float(b)) for a, b in zip(lower, upper, strict=True)),
        joint,
    )
