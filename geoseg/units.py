"""Ground units: metres and square metres for any CRS, geographic ones included.

Areas and tolerances are given by users in metres; on a geographic CRS a degree is not a
metre (FTW #271), so sizes there are measured on the ellipsoid at the scene's latitude.
"""

from __future__ import annotations

import math

from affine import Affine
from rasterio.crs import CRS

_EARTH_RADIUS_M = 6_371_008.8


def pixel_size_m(crs: CRS, transform: Affine, height_px: int = 0) -> tuple[float, float]:
    """Ground size (x, y) in metres of one pixel, at the middle row for geographic CRSs."""
    dx, dy = abs(transform.a), abs(transform.e)
    if crs.is_geographic:
        lat = math.radians(transform.f + transform.e * height_px / 2)
        metres_per_degree = math.pi * _EARTH_RADIUS_M / 180
        return dx * metres_per_degree * math.cos(lat), dy * metres_per_degree
    factor = crs.linear_units_factor[1] if crs.linear_units_factor else 1.0
    return dx * factor, dy * factor


def pixel_area_m2(crs: CRS, transform: Affine, height_px: int = 0) -> float:
    """Ground area of one pixel in square metres."""
    x, y = pixel_size_m(crs, transform, height_px)
    return x * y
