"""GDAL settings for geoseg's reads and writes: a bounded block cache.

GDAL keeps decoded and dirty blocks in a cache of up to ``GDAL_CACHEMAX`` (default 5 % of
RAM). geoseg reads each block once (one haloed read per block) and writes each mask block
once, so a large cache buys little and makes peak memory grow with the scene until the cache
is full (BENCHMARKS.md, issue 2). Work is therefore done inside ``bounded_cache()``.
"""

from __future__ import annotations

import rasterio

CACHE_MB = 256


def bounded_cache() -> rasterio.Env:
    """A rasterio environment capping GDAL's block cache at ``CACHE_MB`` MiB."""
    return rasterio.Env(GDAL_CACHEMAX=CACHE_MB)
