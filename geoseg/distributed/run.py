"""A batch run: every scene of a workflow through the cluster, with resume and a report.

The driver only builds futures: per scene one validation task, one task per block and one
assembly task. Failures are per scene (reported, the rest goes on); scenes whose outputs are
complete with the same settings are skipped; Dask retries tasks of a worker that died.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from distributed import Client, Future, as_completed
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from geoseg.atomic import atomic_output, remove_stale_temporaries
from geoseg.catalog import SceneInput, load_inputs, write_results_catalog
from geoseg.distributed.cluster import GPU, cluster_client, dashboard_link, gpu_workers
from geoseg.distributed.tasks import (
    SceneJob,
    SceneRecord,
    assemble_scene_task,
    completed_record,
    open_scene_task,
    predict_block_task,
    remove_stale_parts,
    write_record,
)
from geoseg.errors import GeosegError
from geoseg.model.checkpoint import ModelMetadata, read_metadata
from geoseg.scenes import Scene
from geoseg.tiling import TilingSpec, block_grid, tiles_in_block
from geoseg.vectorize import gather_layers
from geoseg.workflow import Workflow


@dataclass
class RunReport:
    """What a run did: one record per scene plus totals; saved as ``run-report.json``."""

    scenes: list[SceneRecord]
    model: str
    output: str
    seconds: float
    blocks: int = 0
    tiles: int = 0
    dashboard: str | None = None
    run_layer: str | None = None
    catalog: str | None = None
    workers: dict[str, Any] = field(default_factory=dict)

    def count(self, status: str) -> int:
        """Scenes with ``status``."""
        return sum(1 for s in self.scenes if s.status == status)

    @property
    def ok(self) -> bool:
        """True when no scene failed."""
        return self.count("failed") == 0


def run_workflow(
    workflow: Workflow, scheduler_address: str | None = None, console: Console | None = None
) -> RunReport:
    """Run ``workflow`` on a local cluster (or the scheduler at ``scheduler_address``)."""
    console = console or Console(stderr=True)
    started = time.perf_counter()
    output = workflow.resolve(workflow.output)
    model = workflow.resolve(workflow.model)
    metadata = read_metadata(model)
    inputs = load_inputs(workflow.inputs, asset_key=workflow.asset_key, base_dir=workflow.base_dir)
    fingerprint = workflow.fingerprint()
    remove_stale_temporaries(output)
    remove_stale_parts(output, fingerprint)
    jobs = [_job(workflow, scene, output, model, fingerprint) for scene in inputs]
    records: dict[str, SceneRecord] = {}
    for job in jobs:
        if (done := completed_record(job)) is not None:
            records[job.input.id] = SceneRecord(**{**asdict(done), "status": "skipped"})
    todo = [job for job in jobs if job.input.id not in records]

    with cluster_client(workflow.cluster, scheduler_address) as client:
        link = dashboard_link(client)
        console.print(f"Dask dashboard: {link or 'not available'}")
        client.wait_for_workers(1)
        resources = {GPU: 1} if gpu_workers(client) else None
        console.print(
            f"{len(jobs)} scenes ({len(records)} already done), model {model.name}, "
            f"{len(client.scheduler_info()['workers'])} workers" + (" with GPUs" if resources else " on CPU")
        )
        blocks, tiles = _process(client, todo, metadata, resources, records, console)
        workers = {w["name"]: w.get("resources", {}) for w in client.scheduler_info()["workers"].values()}

    remove_stale_temporaries(output)
    report = RunReport(
        scenes=[records[job.input.id] for job in jobs],
        model=str(model),
        output=str(output),
        seconds=time.perf_counter() - started,
        blocks=blocks,
        tiles=tiles,
        dashboard=link,
        workers=workers,
    )
    _finish(report, workflow, output, metadata)
    return report


def _job(workflow: Workflow, scene: SceneInput, output: Path, model: Path, fingerprint: str) -> SceneJob:
    return SceneJob(
        input=scene,
        model=str(model),
        output_dir=str(output),
        fingerprint=fingerprint,
        tiling=workflow.tiling,
        outputs=workflow.outputs,
        bands=tuple(workflow.bands) if workflow.bands else None,
        device=workflow.cluster.device,
        compile_model=workflow.compile_model,
    )


def _process(
    client: Client,
    jobs: list[SceneJob],
    metadata: ModelMetadata,
    resources: dict[str, int] | None,
    records: dict[str, SceneRecord],
    console: Console,
) -> tuple[int, int]:
    """Submit and follow every scene's tasks; fill ``records``; return (blocks, tiles) submitted."""
    by_future: dict[Future[Any], tuple[str, SceneJob]] = {}
    opened = {}
    run = uuid.uuid4().hex[:6]  # keys are unique per run: two runs may share a cluster and scene ids

    def key(stage: str, job: SceneJob, *index: int) -> tuple[str | int, ...]:
        return (stage, f"{job.input.id}@{run}", *index)

    for job in jobs:
        future = client.submit(
            open_scene_task, job, metadata.architecture.in_bands, key=key("open", job), pure=False
        )
        by_future[future] = ("open", job)
        opened[job.input.id] = time.perf_counter()
    total_blocks = total_tiles = 0
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        scenes_bar = progress.add_task("scenes", total=len(jobs))
        blocks_bar = progress.add_task("blocks", total=0)
        pending = as_completed(list(by_future))
        for future in pending:
            if future not in by_future:  # cancelled with its failed scene
                continue
            stage, job = by_future.pop(future)
            if future.status != "finished":
                records[job.input.id] = _failure(job, future)
                progress.advance(scenes_bar)
                _cancel_scene(by_future, job, client)
                continue
            if stage == "open":
                scene: Scene = future.result()
                spec = TilingSpec.for_model(
                    stride_px=metadata.total_stride,
                    receptive_radius_px=metadata.receptive_radius_px,
                    tile_size_px=job.tiling.tile_size_px,
                    halo_px=job.tiling.halo_px,
                    block_size_px=job.tiling.block_size_px,
                )
                grid = block_grid(scene.width, scene.height, spec)
                total_blocks += len(grid)
                total_tiles += sum(
                    len(list(tiles_in_block(b, scene.width, scene.height, spec))) for b in grid
                )
                progress.update(blocks_bar, total=total_blocks)
                block_futures = [
                    client.submit(
                        predict_block_task,
                        job,
                        scene,
                        block,
                        key=key("predict", job, *block.index),
                        resources=resources,
                        pure=False,
                    )
                    for block in grid
                ]
                assemble = client.submit(
                    assemble_scene_task,
                    job,
                    scene,
                    metadata.classes,
                    *block_futures,
                    key=key("assemble", job),
                    pure=False,
                )
                for f in block_futures:
                    by_future[f] = ("predict", job)
                by_future[assemble] = ("assemble", job)
                pending.update([*block_futures, assemble])
            elif stage == "predict":
                progress.advance(blocks_bar)
            else:
                record: SceneRecord = future.result()
                record.seconds = time.perf_counter() - opened[job.input.id]
                write_record(record, job.record_path)
                records[job.input.id] = record
                progress.advance(scenes_bar)
                console.print(f"[green]ok[/green] {job.input.id}: {record.polygons} polygons")
    return total_blocks, total_tiles


def _failure(job: SceneJob, future: Future[Any]) -> SceneRecord:
    exc = future.exception() if future.status == "error" else None
    if isinstance(exc, GeosegError):
        message = str(exc)
    elif exc is not None:
        message = f"{job.input.href}: {type(exc).__name__}: {exc}"
    else:
        message = f"{job.input.href}: task {future.status}"
    return SceneRecord(id=job.input.id, input=job.input.href, status="failed", error=message)


def _cancel_scene(by_future: dict[Future[Any], tuple[str, SceneJob]], job: SceneJob, client: Client) -> None:
    """Drop the remaining tasks of a failed scene (they would fail the same way)."""
    doomed = [f for f, (_, j) in by_future.items() if j.input.id == job.input.id]
    for f in doomed:
        by_future.pop(f)
    if doomed:
        client.cancel(doomed)


def _finish(report: RunReport, workflow: Workflow, output: Path, metadata: ModelMetadata) -> None:
    """Run-level outputs: the gathered vector layer, the results STAC catalog, the JSON report."""
    vectors = [
        v for s in report.scenes if s.status in ("ok", "skipped") for v in s.outputs.get("vectors", [])
    ]
    layer_format = workflow.outputs.run_layer
    if layer_format and vectors and workflow.outputs.vector_formats:
        firsts = [v for v in vectors if str(v).endswith(f".{workflow.outputs.vector_formats[0]}")]
        layer = output / f"all-scenes.{layer_format}"
        gather_layers(firsts, layer)
        report.run_layer = str(layer)
    done = [s for s in report.scenes if s.status in ("ok", "skipped")]
    if done:
        parameters = workflow.model_dump(mode="json", include={"tiling", "outputs", "bands"})
        report.catalog = str(
            write_results_catalog(
                done, output / "catalog" / "catalog.json", report.model, parameters, metadata
            )
        )
    with atomic_output(output / "run-report.json") as tmp:
        tmp.write_text(json.dumps(asdict(report) | {"summary": summary(report)}, indent=2, default=str))


def summary(report: RunReport) -> dict[str, Any]:
    """Totals for the report and the end-of-run table."""
    ok = [s for s in report.scenes if s.status == "ok"]
    area = sum(s.area_km2 or 0 for s in ok)
    return {
        "ok": len(ok),
        "failed": report.count("failed"),
        "skipped": report.count("skipped"),
        "area_km2": area,
        "blocks": report.blocks,
        "tiles": report.tiles,
        "tiles_per_s": report.tiles / report.seconds if report.seconds else 0.0,
        "seconds": report.seconds,
    }
