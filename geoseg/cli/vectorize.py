"""``geoseg vectorize``: one mask to polygons, blockwise, merged across blocks."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from geoseg.cli.app import app


def _connectivity(value: int) -> int:
    if value not in (4, 8):
        raise typer.BadParameter(f"must be 4 or 8, got {value}")
    return value


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise typer.BadParameter(f"must be a finite number, got {value}")
    return value


@app.command()
def vectorize(
    mask: Annotated[Path, typer.Argument(help="Mask GeoTIFF (band 1 class ids, 255 nodata).")],
    out: Annotated[
        list[Path],
        typer.Option("--out", help="Output .gpkg, .parquet, .geojson, .shp or .fgb (repeatable)."),
    ],
    block_size: Annotated[int, typer.Option(help="Pixels per block read (memory bound).", min=16)] = 2048,
    min_area: Annotated[
        float, typer.Option("--min-area", help="Drop polygons below m².", min=0, callback=_finite)
    ] = 0.0,
    simplify: Annotated[
        float, typer.Option("--simplify", help="Tolerance in metres.", min=0, callback=_finite)
    ] = 0.0,
    connectivity: Annotated[
        int, typer.Option(help="Pixel connectivity, 4 or 8.", callback=_connectivity)
    ] = 8,
    fill_holes: Annotated[
        float, typer.Option("--fill-holes", help="Fill holes below m².", min=0, callback=_finite)
    ] = 0.0,
    scene_id: Annotated[str | None, typer.Option(help="Scene id (default: mask stem).")] = None,
) -> None:
    """Vectorise MASK into one polygon per connected component, with areas in metres."""
    from geoseg.atomic import remove_dead_temporaries
    from geoseg.vectorize import vectorize_mask

    for folder in {path.parent for path in out}:
        remove_dead_temporaries(folder)  # what a killed vectorize left
    summary = vectorize_mask(
        mask,
        out,
        block_size=block_size,
        connectivity=8 if connectivity == 8 else 4,
        min_area_m2=min_area,
        fill_holes_below_m2=fill_holes,
        simplify_tolerance_m=simplify,
        scene_id=scene_id,
    )
    written = ", ".join(str(p) for p in summary.outputs)
    typer.echo(
        f"{written}  ({summary.polygons} polygons from {summary.blocks} blocks in {summary.seconds:.1f} s)"
    )
