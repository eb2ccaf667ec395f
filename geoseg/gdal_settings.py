"""GDAL settings for geoseg's reads and writes: a bounded block cache, HTTP timeouts.

GDAL keeps decoded and dirty blocks in a cache of up to ``GDAL_CACHEMAX`` (default 5 % of
RAM). geoseg reads each block once (one haloed read per block) and writes each mask block
once, so a large cache buys little and makes peak memory grow with the scene until the cache
is full (BENCHMARKS.md, issue 2). Work is therefore done inside ``bounded_cache()``.

Scenes may be remote (STAC hrefs, VRT sources): GDAL reads them with curl, whose defaults wait
for a server forever, so one silent server would stall a scene's task, and the run, for good.
``http_timeouts()`` gives every process that reads scenes (the CLI, each task on a worker)
timeouts, unless the user's environment sets its own.
"""

from __future__ import annotations

import os

import rasterio

CACHE_MB = 256
HTTP_TIMEOUTS = {"GDAL_HTTP_CONNECTTIMEOUT": "15", "GDAL_HTTP_TIMEOUT": "60"}
"""Seconds to connect to a scene's server, and to wait for each of its responses."""


def bounded_cache() -> rasterio.Env:
    """A rasterio environment capping GDAL's block cache at ``CACHE_MB`` MiB."""
    return rasterio.Env(GDAL_CACHEMAX=CACHE_MB)


def http_timeouts() -> None:
    """Set ``HTTP_TIMEOUTS`` in this process's environment where the user has not set them.

    The environment, not a ``rasterio.Env``: GDAL reads it in every thread (reader threads too).
    """
    for name, seconds in HTTP_TIMEOUTS.items():
        os.environ.setdefault(name, seconds)
