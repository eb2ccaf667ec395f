"""``geoseg run``: a batch run of a workflow on a Dask cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from geoseg.cli.app import app
from geoseg.distributed.run import RunReport, summary


@app.command()
def run(
    workflow: Annotated[Path, typer.Argument(help="Workflow YAML (inputs, model, output, …).")],
    scheduler: Annotated[
        str | None, typer.Option(help="Address of an existing Dask scheduler, e.g. tcp://host:8786.")
    ] = None,
) -> None:
    """Segment and vectorise every scene of WORKFLOW; exit code 1 if any scene failed."""
    from geoseg.distributed.run import run_workflow
    from geoseg.workflow import load_workflow

    console = Console(stderr=True)
    report = run_workflow(load_workflow(workflow), scheduler_address=scheduler, console=console)
    print_report(report, console)
    if not report.ok:
        raise typer.Exit(1)


def print_report(report: RunReport, console: Console) -> None:
    """The end-of-run table: scenes done / failed / skipped, area, throughput, outputs."""
    table = Table(title=f"geoseg run → {report.output}")
    for column in ("scene", "status", "polygons", "km²", "error"):
        table.add_column(column, overflow="fold")
    for scene in report.scenes:
        style = {"ok": "green", "failed": "red"}.get(scene.status, "yellow")
        area = f"{scene.area_km2:.2f}" if scene.area_km2 is not None else ""
        polygons = "" if scene.polygons is None else str(scene.polygons)
        table.add_row(scene.id, f"[{style}]{scene.status}[/{style}]", polygons, area, scene.error or "")
    console.print(table)
    totals = summary(report)
    console.print(
        f"{totals['ok']} done, {totals['failed']} failed, {totals['skipped']} skipped; "
        f"{totals['area_km2']:.2f} km² in {totals['seconds']:.1f} s "
        f"({totals['tiles']} tiles, {totals['tiles_per_s']:.1f} tiles/s)"
    )
    console.print(f"report: {Path(report.output) / 'run-report.json'}")
    if report.run_layer:
        console.print(f"all scenes: {report.run_layer}")
    if report.catalog:
        console.print(f"results catalog: {report.catalog}")
