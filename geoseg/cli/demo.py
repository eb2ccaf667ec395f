"""``geoseg demo``: the README's main job."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from geoseg.cli.app import app


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Folder for masks, vectors, report and catalog.")] = Path(
        "out/demo"
    ),
    synthetic: Annotated[bool, typer.Option(help="Use generated scenes even if sample data exists.")] = False,
) -> None:
    """Batch-run the shipped building model over the bundled catalog on a local Dask cluster."""
    from rich.console import Console

    from geoseg.cli.run import print_report
    from geoseg.demo import demo_workflow
    from geoseg.distributed.run import run_workflow

    console = Console(stderr=True)
    workflow, source = demo_workflow(out, synthetic)
    console.print(source)
    report = run_workflow(workflow, console=console)
    print_report(report)
    if not report.ok:
        raise typer.Exit(1)
