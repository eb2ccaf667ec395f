"""``geoseg evaluate``: score a checkpoint against labelled scenes (masks or vector labels)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from geoseg.cli.app import app
from geoseg.workflow import TTA


@app.command()
def evaluate(
    checkpoint: Annotated[Path, typer.Argument(help="Model checkpoint (.safetensors).")],
    images: Annotated[
        str, typer.Option("--images", help="Glob of labelled scenes ($GEOSEG_SAMPLE_DATA is expanded).")
    ],
    masks: Annotated[
        str | None, typer.Option("--masks", help="Mask per scene; '{stem}' is the scene name.")
    ] = None,
    labels: Annotated[str | None, typer.Option("--labels", help="Vector labels (any CRS).")] = None,
    class_field: Annotated[
        str | None, typer.Option("--class-field", help="Attribute with the class.")
    ] = None,
    xyz: Annotated[
        bool, typer.Option("--xyz", help="Place scenes by the web-map tile address in their names.")
    ] = False,
    window: Annotated[int, typer.Option("--window", help="Window side in pixels.", min=16)] = 256,
    tolerance: Annotated[int, typer.Option("--tolerance", help="Boundary-F1 tolerance (px).", min=0)] = 2,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = "auto",
    tta: Annotated[
        TTA, typer.Option("--tta", help="Test-time augmentation, as for predict: none, flips or dihedral.")
    ] = "none",
) -> None:
    """Report IoU, F1, precision, recall and boundary F1 of CHECKPOINT on labelled scenes."""
    from pydantic import ValidationError
    from rich.console import Console
    from rich.table import Table

    from geoseg.configfile import resolve_path
    from geoseg.errors import ConfigError
    from geoseg.training.config import DatasetConfig
    from geoseg.training.evaluate import evaluate_checkpoint

    paths = {"images": images, "masks": masks, "labels": labels}
    here = Path.cwd()
    resolved = {k: None if v is None else str(resolve_path(v, here)) for k, v in paths.items()}
    try:
        dataset = DatasetConfig.model_validate(
            {**resolved, "class_field": class_field, "georeference": "xyz" if xyz else "file"}
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        option = f"--{first['loc'][0]}: " if first["loc"] else ""
        raise ConfigError(f"evaluate: {option}{first['msg'].removeprefix('Value error, ')}") from None
    metrics, scenes = evaluate_checkpoint(
        checkpoint, [dataset], window_px=window, tolerance_px=tolerance, device=device, tta=tta
    )
    table = Table(title=f"{checkpoint.name} on {scenes} scenes ({metrics.pixels} labelled px)")
    for name in ("IoU", "F1", "precision", "recall", "boundary F1"):
        table.add_column(name, justify="right")
    m = metrics
    table.add_row(*(f"{v:.3f}" for v in (m.iou, m.f1, m.precision, m.recall, m.boundary_f1)))
    Console().print(table)
