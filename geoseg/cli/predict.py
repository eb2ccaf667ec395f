"""``geoseg predict``: one scene to one COG mask."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from geoseg.cli.app import app
from geoseg.model import BUILDINGS_MODEL
from geoseg.workflow import TTA, Precision, Resample


@app.command()
def predict(
    image: Annotated[
        str,
        typer.Argument(help="Input scene: a GeoTIFF, or any GDAL dataset name (/vsizip/…, URL, NETCDF:…)."),
    ],
    out: Annotated[Path, typer.Option("--out", help="Output mask (Cloud-Optimized GeoTIFF).")],
    model: Annotated[
        Path,
        typer.Option(
            "--model",
            help="Checkpoint (.safetensors); default: the shipped building model.",
            show_default=False,
        ),
    ] = BUILDINGS_MODEL,
    tile_size: Annotated[int, typer.Option(help="Tile core size in pixels.", min=16)] = 512,
    halo: Annotated[
        int | None, typer.Option(help="Halo in pixels (default: receptive radius).", min=0, max=1024)
    ] = None,
    block_size: Annotated[int, typer.Option(help="Pixels per block read (memory bound).", min=16)] = 2048,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    batch_size: Annotated[int, typer.Option(help="Tiles per forward pass.", min=1)] = 8,
    bands: Annotated[
        str | None,
        typer.Option(help="1-based bands to read, e.g. 1,2,3 (default: by the model's colours)."),
    ] = None,
    probability: Annotated[bool, typer.Option(help="Add a probability band (percent).")] = False,
    compile_model: Annotated[
        bool, typer.Option("--compile", help="torch.compile the network (slow start, faster forward).")
    ] = False,
    tta: Annotated[
        TTA,
        typer.Option(
            help="Test-time augmentation: average the class probabilities of the 4 flips "
            "or the 8 dihedral views (4x / 8x the forward passes)."
        ),
    ] = "none",
    precision: Annotated[
        Precision,
        typer.Option(help="fp32 (GPU masks match the CPU's) or bf16 autocast (faster on GPUs)."),
    ] = "fp32",
    resample: Annotated[
        Resample,
        typer.Option(
            help="model: read a scene outside the model's GSD range at the model's GSD "
            "(the mask stays on the scene's grid)."
        ),
    ] = "none",
) -> None:
    """Segment IMAGE into a georeferenced class mask, tile by tile, without seams."""
    from geoseg.atomic import remove_dead_temporaries
    from geoseg.errors import ConfigError, OutputError
    from geoseg.inference import Predictor
    from geoseg.predict import predict_scene

    if out.suffix.lower() not in (".tif", ".tiff"):
        raise OutputError(out, "--out must end in .tif or .tiff (the mask is a Cloud-Optimized GeoTIFF)")
    try:
        band_list = [int(b) for b in bands.split(",")] if bands else None
    except ValueError:
        raise ConfigError(f"--bands: expected comma-separated integers, got {bands!r}") from None
    started = time.perf_counter()
    remove_dead_temporaries(out.parent)  # what a killed predict left (a working mask, its levels)
    predictor = Predictor.from_checkpoint(model, device, batch_size, compile_model, tta, precision)
    with block_progress() as progress:
        predict_scene(
            image,
            predictor,
            out,
            tile_size_px=tile_size,
            halo_px=halo,
            block_size_px=block_size,
            bands=band_list,
            with_probability=probability,
            protected=[model],
            progress=progress,
            warn=lambda warning: typer.echo(f"warning: {warning}", err=True),
            resample=resample,
        )
    typer.echo(f"{out}  ({time.perf_counter() - started:.1f} s on {predictor.device})")


@contextlib.contextmanager
def block_progress() -> Iterator[Callable[[int, int, int], None] | None]:
    """A progress bar on stderr (blocks, Mpx/s, time left) if it is a terminal; else nothing."""
    console = Console(stderr=True)
    if not console.is_terminal:
        yield None
        return
    columns = (
        TextColumn("predict"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("blocks {task.fields[rate]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("predict", total=None, rate="")
        started = time.perf_counter()

        def update(blocks: int, total: int, pixels: int) -> None:
            seconds = time.perf_counter() - started
            rate = f"· {pixels / seconds / 1e6:.2f} Mpx/s" if pixels and seconds > 0 else ""
            bar.update(task, completed=blocks, total=total, rate=rate)

        yield update
