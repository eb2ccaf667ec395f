"""``geoseg tiles georeference``: web-map tiles (``…-x-y-z.png``) to GeoTIFFs on their footprint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from geoseg.cli.app import app

tiles_app = typer.Typer(help="XYZ web-map tiles without georeferencing.", no_args_is_help=True)
app.add_typer(tiles_app, name="tiles")


@tiles_app.command("georeference")
def georeference(
    folder: Annotated[Path, typer.Argument(help="Folder of tiles named '…-x-y-z' or laid out as z/x/y.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the GeoTIFFs (EPSG:3857).")],
    pattern: Annotated[str, typer.Option(help="Glob of tile files under FOLDER.")] = "**/*.png",
) -> None:
    """Write each tile as a GeoTIFF placed by its tile address; bad tiles are reported, not fatal."""
    from geoseg.errors import GeosegError
    from geoseg.safepaths import ProtectedFiles
    from geoseg.xyz import geotiff_name, write_georeferenced_tile

    tiles = _tile_files(folder, pattern)
    protected = ProtectedFiles(tiles)
    failed = 0
    for tile in tiles:
        try:
            target = out / geotiff_name(tile)
            protected.refuse([target])
            write_georeferenced_tile(tile, target)
        except GeosegError as exc:
            typer.echo(f"skipped {exc}", err=True)
            failed += 1
    skipped = f", {failed} skipped" if failed else ""
    typer.echo(f"{len(tiles) - failed} GeoTIFFs in {out} (EPSG:3857){skipped}")
    if failed:
        raise typer.Exit(1)


@tiles_app.command("mosaic")
def mosaic(
    folder: Annotated[Path, typer.Argument(help="Folder of tiles named '…-x-y-z' or laid out as z/x/y.")],
    out: Annotated[Path, typer.Option("--out", help="VRT to write (references the tiles in place).")],
    zoom: Annotated[
        int | None, typer.Option(help="Zoom to mosaic (default: the highest present).", min=0, max=30)
    ] = None,
    pattern: Annotated[str, typer.Option(help="Glob of tile files under FOLDER.")] = "**/*.png",
) -> None:
    """Write one seamless scene (a VRT) from the tiles of one zoom, for predict/run across tile borders.

    Unusable tiles are reported and left out (nodata in the mosaic); the exit code is then 1.
    """
    from geoseg.safepaths import refuse_overwriting_inputs
    from geoseg.scenes import open_scene
    from geoseg.xyz_mosaic import write_mosaic_vrt

    tiles = _tile_files(folder, pattern)
    refuse_overwriting_inputs([out], tiles)
    vrt, skipped = write_mosaic_vrt(tiles, out, zoom)
    for reason in skipped:
        typer.echo(f"skipped {reason}", err=True)
    scene = open_scene(vrt)
    km2 = scene.area_m2 / 1e6
    typer.echo(f"{out}: {scene.width}×{scene.height} px, EPSG:3857, {km2:.3g} km² bounding box")
    if skipped:
        raise typer.Exit(1)


def _tile_files(folder: Path, pattern: str) -> list[Path]:
    """The files under ``folder`` matching ``pattern``, sorted (pipes and devices too: they are
    skipped naming them, not silently); a usage error when there are none."""
    tiles = sorted(p for p in folder.glob(pattern) if not p.is_dir())
    if not tiles:
        raise typer.BadParameter(f"no files match {pattern!r} under {folder}", param_hint="FOLDER")
    return tiles
