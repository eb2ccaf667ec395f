"""One seamless scene from many web-map tiles: a GDAL VRT mosaic of the tiles of one zoom.

Predicting tile by tile cuts every building at every tile border (FTW #54, solaris #445 in
PEERS.md). A mosaic turns the tiles back into one scene: ``geoseg predict``/``run`` then see
across tile borders (halo), and vectorising merges objects that span tiles. The VRT references
the tiles where they are (paths relative to the VRT), so it costs a few kB; places without a
tile are transparent (an alpha band that is 255 only where a tile exists), hence nodata in the
mask.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from geoseg.atomic import atomic_output
from geoseg.errors import SceneError
from geoseg.scenes import MAX_PIXELS_VARIABLE, Scene, max_scene_pixels
from geoseg.xyz import XYZTile, open_xyz_tile, tile_address

_GDAL_TYPES = {"uint8": "Byte", "uint16": "UInt16", "int16": "Int16", "float32": "Float32"}


def write_mosaic_vrt(
    tiles: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str], zoom: int | None = None
) -> tuple[Path, list[str]]:
    """Write a VRT mosaic of ``tiles`` at ``zoom`` (default: the highest zoom among them).

    Tiles of other zooms are left out. A tile that cannot be used (no tile address, unreadable,
    or not the size, bands and dtype of the others) is skipped: its place in the mosaic is
    nodata, and the reason (one line naming the tile) is returned with the VRT's path.
    """
    skipped: list[str] = []
    addressed: list[tuple[Path, XYZTile]] = []
    for tile in map(Path, tiles):
        try:
            addressed.append((tile, tile_address(tile)))
        except SceneError as exc:
            skipped.append(str(exc))
    zoom = max((a.z for _, a in addressed), default=0) if zoom is None else zoom
    scenes: list[tuple[Scene, XYZTile]] = []
    for path, address in addressed:
        if address.z != zoom:
            continue
        try:
            scene = open_xyz_tile(path, require_valid_pixels=False)
            _check_layout(scene, scenes[0][0] if scenes else None)
            scenes.append((scene, address))
        except SceneError as exc:
            skipped.append(str(exc))
    if not scenes:
        raise SceneError(str(out), f"no usable tiles at zoom {zoom} ({len(skipped)} skipped)")
    _check_extent(scenes, out)
    final = Path(out)
    with atomic_output(final) as tmp:
        ET.ElementTree(_vrt(scenes, final.parent.resolve())).write(tmp, encoding="unicode")
    return final, skipped


def _check_extent(scenes: list[tuple[Scene, XYZTile]], out: str | os.PathLike[str]) -> None:
    """Refuse a mosaic whose bounding box of tiles exceeds the scene size limit (far-apart tiles)."""
    cols = max(a.x for _, a in scenes) - min(a.x for _, a in scenes) + 1
    rows = max(a.y for _, a in scenes) - min(a.y for _, a in scenes) + 1
    first = scenes[0][0]
    width, height = cols * first.width, rows * first.height
    if width * height > (limit := max_scene_pixels()):
        raise SceneError(
            out,
            f"the tiles span {cols}×{rows} tiles ({width}×{height} px), more than the scene limit of "
            f"{limit / 1e9:.3g} Gpx; mosaic nearby tiles separately (or raise ${MAX_PIXELS_VARIABLE})",
        )


def _check_layout(scene: Scene, first: Scene | None) -> None:
    """Raise ``SceneError`` unless ``scene`` can sit in a mosaic whose first tile is ``first``."""
    if scene.dtype not in _GDAL_TYPES:
        raise SceneError(scene.path, f"dtype {scene.dtype} cannot be mosaicked (use {sorted(_GDAL_TYPES)})")
    if first is None:
        return
    layout, expected = ((s.width, s.height, s.bands, s.dtype) for s in (scene, first))
    if layout != expected:
        raise SceneError(
            scene.path,
            f"tile is {scene.width}×{scene.height} px, bands {list(scene.bands)}, {scene.dtype}; "
            f"the mosaic's first tile is {first.width}×{first.height}, {list(first.bands)}, {first.dtype}",
        )


def _vrt(scenes: list[tuple[Scene, XYZTile]], folder: Path) -> ET.Element:
    """The VRT document: one band per tile band plus an alpha band marking where tiles are."""
    first = scenes[0][0]
    min_x = min(a.x for _, a in scenes)
    min_y = min(a.y for _, a in scenes)
    cols = max(a.x for _, a in scenes) - min_x + 1
    rows = max(a.y for _, a in scenes) - min_y + 1
    left, bottom, right, top = XYZTile(min_x, min_y, scenes[0][1].z).bounds
    size = (first.width, first.height)
    x_res, y_res = (right - left) / size[0], (top - bottom) / size[1]
    root = ET.Element("VRTDataset", rasterXSize=str(cols * size[0]), rasterYSize=str(rows * size[1]))
    ET.SubElement(root, "SRS").text = first.crs.to_wkt()
    ET.SubElement(root, "GeoTransform").text = ", ".join(
        repr(v) for v in (left, x_res, 0.0, top, 0.0, -y_res)
    )
    placed = [(scene, (a.x - min_x) * size[0], (a.y - min_y) * size[1]) for scene, a in scenes]
    interps = _color_interpretations(len(first.bands))
    for out_band, (src_band, interp) in enumerate(zip(first.bands, interps, strict=True), start=1):
        band = _band(root, out_band, _GDAL_TYPES[first.dtype], interp)
        for scene, col, row in placed:
            _source(band, "SimpleSource", scene, src_band, folder, col, row)
    alpha = _band(root, len(first.bands) + 1, _GDAL_TYPES[first.dtype], "Alpha")
    for scene, col, row in placed:  # 255 wherever a tile exists: band 1 scaled by 0, offset 255
        source = _source(alpha, "ComplexSource", scene, first.bands[0], folder, col, row)
        ET.SubElement(source, "ScaleOffset").text = "255"
        ET.SubElement(source, "ScaleRatio").text = "0"
    return root


def _color_interpretations(count: int) -> list[str]:
    if count in (3, 4):
        return ["Red", "Green", "Blue", "Undefined"][:count]
    return ["Gray" if count == 1 else "Undefined"] * count


def _band(root: ET.Element, index: int, data_type: str, interp: str) -> ET.Element:
    band = ET.SubElement(root, "VRTRasterBand", dataType=data_type, band=str(index))
    ET.SubElement(band, "ColorInterp").text = interp
    return band


def _source(
    band: ET.Element, kind: str, scene: Scene, src_band: int, folder: Path, col: int, row: int
) -> ET.Element:
    """A source copying band ``src_band`` of the tile ``scene`` whole to (``col``, ``row``)."""
    source = ET.SubElement(band, kind)
    name = ET.SubElement(source, "SourceFilename", relativeToVRT="1")
    name.text = os.path.relpath(Path(scene.path).resolve(), folder)
    ET.SubElement(source, "SourceBand").text = str(src_band)
    width, height = str(scene.width), str(scene.height)
    ET.SubElement(source, "SrcRect", xOff="0", yOff="0", xSize=width, ySize=height)
    ET.SubElement(source, "DstRect", xOff=str(col), yOff=str(row), xSize=width, ySize=height)
    return source
