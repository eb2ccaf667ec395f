"""XYZ web-map tiles: scenes whose position is the tile address in their name.

Web-map tiles (OpenAerialMap exports, HOT fAIr/RAMP training data, anything cut for a slippy
map) are often plain PNG/JPEG files without georeferencing: where they lie is the tile
address ``x``, ``y``, ``z`` of the Web-Mercator tiling scheme (EPSG:3857, ``y`` counted from the
north), written in the file name (``OAM-1277168-1083840-21.png``, fAIr's ``PREFIX-x-y-z``) or in
the folder layout (``21/1277168/1083840.png``). ``tile_address`` reads the address,
``XYZTile.bounds`` gives the exact EPSG:3857 footprint, and ``open_xyz_tile`` opens the file as
a ``Scene`` on that footprint, so training, prediction and vectorising treat it like any
GeoTIFF. ``write_georeferenced_tile`` writes it as a GeoTIFF for tools that need one.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rasterio
from rasterio.crs import CRS

from geoseg.atomic import atomic_output
from geoseg.errors import SceneError
from geoseg.scenes import Scene, open_scene, read_window

WEB_MERCATOR = CRS.from_epsg(3857)
HALF_WORLD_M = 20037508.342789244
"""Half the side of the Web-Mercator square, in metres (π × 6 378 137)."""

_NAME = re.compile(r"(?:^|[-_])(?P<x>\d+)-(?P<y>\d+)-(?P<z>\d+)$")


@dataclass(frozen=True)
class XYZTile:
    """One tile of the Web-Mercator tiling scheme."""

    x: int
    y: int
    z: int

    def __post_init__(self) -> None:
        if not (0 <= self.z <= 30 and 0 <= self.x < 2**self.z and 0 <= self.y < 2**self.z):
            raise ValueError(f"{self.x}-{self.y}-{self.z} is not a tile of zoom {self.z}")

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in EPSG:3857 metres."""
        side = 2 * HALF_WORLD_M / 2**self.z
        left = -HALF_WORLD_M + self.x * side
        top = HALF_WORLD_M - self.y * side
        return left, top - side, left + side, top


def tile_address(path: str | os.PathLike[str]) -> XYZTile:
    """The tile a file covers, from a ``…-x-y-z`` name or a ``z/x/y`` folder layout."""
    file = Path(path)
    stem = file.name.split(".")[0]
    named = _NAME.search(stem)
    try:
        if named:
            return XYZTile(int(named["x"]), int(named["y"]), int(named["z"]))
        z, x, y = file.parent.parent.name, file.parent.name, stem
        if z.isdigit() and x.isdigit() and y.isdigit():
            return XYZTile(int(x), int(y), int(z))
    except ValueError as exc:
        raise SceneError(str(path), f"not an XYZ tile address: {exc}") from None
    raise SceneError(str(path), "name is not an XYZ tile address ('…-x-y-z' or 'z/x/y')")


def geotiff_name(path: str | os.PathLike[str]) -> str:
    """The GeoTIFF name of a tile: its own stem when that names the tile, else ``x-y-z.tif``."""
    stem = Path(path).name.split(".")[0]
    if _NAME.search(stem):
        return f"{stem}.tif"
    tile = tile_address(path)
    return f"{tile.x}-{tile.y}-{tile.z}.tif"


def open_xyz_tile(path: str | os.PathLike[str], **kwargs: Any) -> Scene:
    """Open a web-map tile as a scene on its EPSG:3857 footprint (``open_scene`` keywords)."""
    return open_scene(path, georeference=(WEB_MERCATOR, tile_address(path).bounds), **kwargs)


def write_georeferenced_tile(path: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """Write a web-map tile as a GeoTIFF on its footprint (atomically; deflate, 256-px blocks)."""
    scene = open_xyz_tile(path, require_valid_pixels=False)
    pixels, valid = read_window(scene, scene.window)
    profile = {
        "driver": "GTiff",
        "width": scene.width,
        "height": scene.height,
        "count": len(scene.bands),
        "dtype": scene.dtype,
        "crs": scene.crs,
        "transform": scene.transform,
        "nodata": scene.nodata,
        "compress": "deflate",
        "tiled": scene.width % 16 == 0 and scene.height % 16 == 0,
    }
    with atomic_output(out) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(pixels)
        if scene.nodata is None and not valid.all():
            dst.write_mask(valid)
    return Path(out)
