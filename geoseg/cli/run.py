"""``geoseg run``: a batch run of a workflow on a Dask cluster."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from geoseg.cli.app import app
from geoseg.distributed.records import RunReport, SceneRecord, summary
from geoseg.errors import printable
from geoseg.report_html import format_area, format_count

NUMERIC = ("buildings", "building area", "scene area")
OPTIONAL = ("warnings", "error")
"""Columns shown only when some scene has one."""


@app.command()
def run(
    workflow: Annotated[Path, typer.Argument(help="Workflow YAML (inputs, model, output, …).")],
    scheduler: Annotated[
        str | None, typer.Option(help="Address of an existing Dask scheduler, e.g. tcp://host:8786.")
    ] = None,
) -> None:
    """Segment and vectorise every scene of WORKFLOW; exit code 1 if any scene (or a run-level
    output: the run layer, the results catalog, the HTML report) failed."""
    from geoseg.distributed.run import run_workflow
    from geoseg.workflow import load_workflow

    report = run_workflow(load_workflow(workflow), scheduler_address=scheduler, console=Console(stderr=True))
    print_report(report)
    if not report.ok:
        raise typer.Exit(1)


def print_report(report: RunReport) -> None:
    """The end-of-run table and totals, on stdout (progress and logs go to stderr).

    One row per scene: status, building count and area, the scene's own area, warnings, error.
    """
    out = Console(width=None if sys.stdout.isatty() else 160)
    rows = [_row(scene) for scene in report.scenes]
    columns = [c for c in rows[0] if c not in OPTIONAL or any(row[c] for row in rows)] if rows else []
    table = Table(title=f"geoseg run → {report.output}")
    for column in columns:
        table.add_column(column, justify="right" if column in NUMERIC else "left", overflow="fold")
    for row in rows:
        table.add_row(*(row[c] for c in columns))
    out.print(table)
    totals = summary(report)
    warned = (
        f" ({format_count(totals['warned_buildings'])} of them, "
        f"{format_area(totals['warned_building_area_m2'])}, in scenes with warnings)"
        if totals["warned_buildings"]
        else ""
    )
    out.print(
        f"{totals['ok']} done, {totals['failed']} failed, {totals['skipped']} skipped: "
        f"{format_count(totals['buildings'])} buildings covering {format_area(totals['building_area_m2'])}"
        f"{warned}; "
        f"{format_area(totals['area_km2'] * 1e6)} of scenes processed in {totals['seconds']:.1f} s "
        f"({totals['tiles']} tiles, {totals['tiles_per_s']:.1f} tiles/s)",
        highlight=False,
    )
    for label, path in [
        ("report", report.report_html),
        ("run report", str(Path(report.output) / "run-report.json")),
        ("all scenes", report.run_layer),
        ("results catalog", report.catalog),
    ]:
        if path:
            out.print(f"{label}: {path}", highlight=False, soft_wrap=True)
    for error in report.errors:
        out.print(f"[red]{escape(error)}[/red]", highlight=False, soft_wrap=True)


def _row(scene: SceneRecord) -> dict[str, str]:
    style = {"ok": "green", "failed": "red"}.get(scene.status, "yellow")
    return {
        "scene": escape(printable(scene.id)),
        "status": f"[{style}]{scene.status}[/{style}]",
        "buildings": "" if scene.polygons is None else format_count(scene.polygons),
        "building area": format_area(scene.building_area_m2),
        "scene area": format_area(None if scene.area_km2 is None else scene.area_km2 * 1e6),
        "warnings": escape("; ".join(scene.warnings)),
        "error": escape(scene.error or ""),
    }
