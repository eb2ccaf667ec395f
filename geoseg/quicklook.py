"""Quick-looks: a small PNG per scene to judge a result at a glance, without a GIS.

The picture is the scene's first three bands (one band: grey) with a robust 2–98 % stretch,
the predicted classes laid over it (translucent fill, solid outline), and a caption strip with
a title, the ground sample distance and a scale bar. Both rasters are read decimated to the
picture's size, from their overviews where they have them (a mask COG always does), so memory
is bounded by the picture, never by the scene. Small scenes are enlarged by a whole factor so
that their pixels stay square and crisp.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import numpy.typing as npt
import rasterio
from PIL import Image, ImageDraw, ImageFont
from rasterio.enums import Resampling
from scipy import ndimage

from geoseg.atomic import atomic_output
from geoseg.scenes import Scene, open_pixels
from geoseg.units import ground_sampling_distance_m

MAX_PX = 1024
"""Longest side of a quick-look, caption included."""
MIN_PX = 512
"""Scenes smaller than this are enlarged by a whole factor towards it."""
CAPTION_PX = 30
FILL_ALPHA = 0.25
CLASS_COLOURS = ((255, 0, 204), (0, 229, 255), (255, 214, 0), (118, 255, 3))
"""Overlay colour of class 1, 2, … (cycled): saturated hues that rarely occur in imagery."""
NODATA_GREY = 64

UInt8Array = npt.NDArray[np.uint8]


def picture_shape(width: int, height: int) -> tuple[int, int]:
    """(rows, cols) of the picture of a ``width``×``height`` scene, caption excluded."""
    longest = max(width, height)
    if longest > MAX_PX - CAPTION_PX:
        scale = (MAX_PX - CAPTION_PX) / longest
        return max(1, round(height * scale)), max(1, round(width * scale))
    factor = max(1, MIN_PX // longest)
    return height * factor, width * factor


def stretch(pixels: npt.NDArray[np.generic], valid: npt.NDArray[np.bool_]) -> UInt8Array:
    """Each band's 2nd–98th percentile of the valid pixels mapped to 0–255."""
    out = np.zeros(pixels.shape, dtype=np.uint8)
    for band, values in enumerate(pixels.astype(np.float64)):
        sample = values[valid]
        if sample.size == 0:
            continue
        low, high = np.percentile(sample, [2, 98])
        scaled = (values - low) / max(high - low, 1e-9) * 255
        out[band] = np.clip(scaled, 0, 255).astype(np.uint8)
    return out


def overlay(rgb: UInt8Array, classes: UInt8Array, nodata: int) -> UInt8Array:
    """(rows, cols, 3) picture: ``rgb`` (3, rows, cols) with each class filled and outlined.

    Outlines are 1 px wide per 256 px of the picture's shorter side, so they stay visible.
    """
    picture = np.moveaxis(rgb, 0, -1).astype(np.float64)
    outline_px = max(1, min(classes.shape) // 256)
    for class_id in np.unique(classes[(classes != 0) & (classes != nodata)]):
        colour = np.array(CLASS_COLOURS[(int(class_id) - 1) % len(CLASS_COLOURS)], dtype=np.float64)
        region = classes == class_id
        inside = ndimage.binary_erosion(region, iterations=outline_px, border_value=1)
        picture[region] = picture[region] * (1 - FILL_ALPHA) + colour * FILL_ALPHA
        picture[region & ~inside] = colour
    picture[classes == nodata] = NODATA_GREY
    return picture.round().astype(np.uint8)


def scale_bar_m(picture_width_m: float) -> float:
    """A round length (1, 2 or 5 × 10ⁿ m) of at most a fifth of the picture's width."""
    target = picture_width_m / 5
    power = 10 ** math.floor(math.log10(target))
    return float(max(step * power for step in (1, 2, 5) if step * power <= target))


def format_length(metres: float) -> str:
    """``0.07 m``, ``0.3 m``, ``20 m``, ``5 km``: the fewest digits that say it."""
    if metres >= 1000:
        return f"{metres / 1000:g} km"
    return f"{metres:.2g} m" if metres < 10 else f"{metres:.0f} m"


def write_quicklook(
    scene: Scene, mask: str | os.PathLike[str], out: str | os.PathLike[str], title: str, nodata: int = 255
) -> Path:
    """Write the quick-look PNG of ``scene`` and its class ``mask`` (band 1) to ``out``, atomically."""
    rows, cols = picture_shape(scene.width, scene.height)
    enlarging = rows >= scene.height
    with open_pixels(scene.path) as src:
        pixels = src.read(
            list(scene.bands[:3]),
            out_shape=(min(3, len(scene.bands)), rows, cols),
            resampling=Resampling.nearest if enlarging else Resampling.average,
        )
    with rasterio.open(mask) as src:
        classes = src.read(1, out_shape=(rows, cols), resampling=Resampling.nearest)
    valid = classes != nodata
    rgb = stretch(np.repeat(pixels, 3, axis=0) if len(pixels) == 1 else pixels, valid)
    picture = Image.fromarray(overlay(rgb, classes, nodata))
    gsd_m = ground_sampling_distance_m(scene.crs, scene.transform, scene.width, scene.height)
    image = _with_caption(picture, title, gsd_m, gsd_m * scene.width / cols)
    with atomic_output(out) as tmp:
        image.save(tmp, format="PNG", optimize=True)
    return Path(out)


def _with_caption(picture: Image.Image, title: str, gsd_m: float, metres_per_px: float) -> Image.Image:
    """The picture above a dark strip: a scale bar on the right, title and GSD left of it."""
    width = max(picture.width, MIN_PX)
    image = Image.new("RGB", (width, picture.height + CAPTION_PX), (24, 24, 24))
    image.paste(picture, ((width - picture.width) // 2, 0))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=13)
    middle = picture.height + CAPTION_PX // 2
    bar_m = scale_bar_m(picture.width * metres_per_px)
    bar_px = max(1, round(bar_m / metres_per_px))
    label = format_length(bar_m)
    draw.text((width - 8, middle), label, fill="white", font=font, anchor="rm")
    bar_right = width - 8 - draw.textlength(label, font=font) - 6
    draw.rectangle([bar_right - bar_px, middle - 2, bar_right, middle + 2], fill="white")
    caption = f"{title} · GSD {format_length(gsd_m)}"
    while len(title) > 1 and draw.textlength(caption, font=font) > bar_right - bar_px - 18:
        title = title[:-1]
        caption = f"{title}… · GSD {format_length(gsd_m)}"
    draw.text((6, middle), caption, fill="white", font=font, anchor="lm")
    return image
