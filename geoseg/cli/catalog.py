"""``geoseg catalog build``: a STAC catalog from a folder (or list) of GeoTIFFs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from geoseg.cli.app import app

catalog_app = typer.Typer(help="STAC catalogs of scenes.", no_args_is_help=True)
app.add_typer(catalog_app, name="catalog")


@catalog_app.command("build")
def build(
    sources: Annotated[list[Path], typer.Argument(help="Folders (searched recursively) or GeoTIFF files.")],
    out: Annotated[Path, typer.Option("--out", help="Catalog JSON to write; items go beside it.")],
    title: Annotated[str, typer.Option(help="Catalog title.")] = "geoseg scenes",
) -> None:
    """Write a STAC catalog with one item (footprint, projection, image asset) per GeoTIFF."""
    from geoseg.catalog import build_catalog

    path, skipped = build_catalog(sources, out, title)
    for reason in skipped:
        typer.echo(f"skipped {reason}", err=True)
    typer.echo(f"{path}")
