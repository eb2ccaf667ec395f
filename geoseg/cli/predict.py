"""``geoseg predict``: one scene to one COG mask."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from geoseg.cli.app import app


@app.command()
def predict(
    image: Annotated[Path, typer.Argument(help="Input GeoTIFF scene.")],
    model: Annotated[Path, typer.Option("--model", help="Checkpoint (.safetensors).")],
    out: Annotated[Path, typer.Option("--out", help="Output mask (Cloud-Optimized GeoTIFF).")],
    tile_size: Annotated[int, typer.Option(help="Tile core size in pixels.")] = 512,
    halo: Annotated[int | None, typer.Option(help="Halo in pixels (default: receptive radius).")] = None,
    block_size: Annotated[int, typer.Option(help="Pixels per block read (memory bound).")] = 2048,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    batch_size: Annotated[int, typer.Option(help="Tiles per forward pass.")] = 8,
    bands: Annotated[str | None, typer.Option(help="1-based bands to read, e.g. 1,2,3.")] = None,
    probability: Annotated[bool, typer.Option(help="Add a probability band (percent).")] = False,
    compile_model: Annotated[
        bool, typer.Option("--compile", help="torch.compile the network (slow start, faster forward).")
    ] = False,
) -> None:
    """Segment IMAGE into a georeferenced class mask, tile by tile, without seams."""
    from geoseg.errors import ConfigError
    from geoseg.inference import Predictor
    from geoseg.predict import predict_scene

    try:
        band_list = [int(b) for b in bands.split(",")] if bands else None
    except ValueError:
        raise ConfigError(f"--bands: expected comma-separated integers, got {bands!r}") from None
    started = time.perf_counter()
    predictor = Predictor.from_checkpoint(model, device, batch_size, compile_model)
    predict_scene(
        image,
        predictor,
        out,
        tile_size_px=tile_size,
        halo_px=halo,
        block_size_px=block_size,
        bands=band_list,
        with_probability=probability,
    )
    typer.echo(f"{out}  ({time.perf_counter() - started:.1f} s on {predictor.device})")
