"""A batch run: every scene of a workflow through the cluster, with resume and a report.

The driver only builds futures: per scene one validation task, per block a prediction task
(on a GPU worker when there are any) and a polygonising task (any worker), and one assembly
task. Failures are per scene (reported, the rest goes on); scenes whose outputs are
complete with the same settings are skipped; Dask retries tasks of a worker that died.
"""

from __future__ import annotations

import collections
import contextlib
import importlib
import json
import threading
import time
import uuid
import warnings
from dataclasses import asdict
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from distributed import Client, Future, as_completed, get_task_stream
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from geoseg import interrupts
from geoseg.atomic import atomic_output, remove_stale_temporaries
from geoseg.catalog import SceneInput, load_inputs, write_results_catalog
from geoseg.distributed.cluster import Placement, cluster_client, dashboard_link, placement
from geoseg.distributed.records import (
    RUN_FOLDERS,
    RunReport,
    SceneJob,
    SceneRecord,
    completed_record,
    forget_unreadable,
    remove_stale_parts,
    run_level_outputs,
    scene_fingerprint,
    stage_timeline,
    summary,
)
from geoseg.distributed.worker_setup import WorkerFunction
from geoseg.errors import ConfigError, GeosegError, GeosegWarning, OutputError, VectorizeError, printable
from geoseg.model.metadata import ModelMetadata, read_metadata
from geoseg.model_input import ModelInput, PreparedScene
from geoseg.report_html import format_area, format_count, write_report_html
from geoseg.resample import block_tiles, scene_blocks
from geoseg.runlock import output_lock
from geoseg.safepaths import (
    ProtectedFiles,
    check_output_folder,
    check_replaceable,
    inside,
    name_clashes,
)
from geoseg.tiling import TilingSpec
from geoseg.workflow import Workflow

if TYPE_CHECKING:
    from geoseg.vectorize.formats import RunLayer

OPEN_SCENE = WorkerFunction("open_scene_task")
LOAD_MODEL = WorkerFunction("load_model_task")
PREDICT_BLOCK = WorkerFunction("predict_block_task")
POLYGONISE_BLOCK = WorkerFunction("polygonise_block_task")
WRITE_MASK = WorkerFunction("write_mask_task")
WRITE_VECTORS = WorkerFunction("write_vectors_task")
FINISH_SCENE = WorkerFunction("finish_scene_task")
WORKER_DEVICE = WorkerFunction("worker_device", "geoseg.distributed.worker_state")
STAGE_SECONDS = WorkerFunction("stage_seconds", "geoseg.timing")
RESET_STAGES = WorkerFunction("reset_stages", "geoseg.timing")
"""The functions of ``tasks.py`` (and the workers' device and stage timings) the driver calls, by name."""


def run_workflow(
    workflow: Workflow, scheduler_address: str | None = None, console: Console | None = None
) -> RunReport:
    """Run ``workflow`` on a local cluster (or the scheduler at ``scheduler_address``)."""
    console = console or Console(stderr=True)
    started, origin = time.perf_counter(), time.time()
    output = workflow.resolve(workflow.output)
    check_output_folder(output)
    model = workflow.resolve(workflow.model)
    metadata = read_metadata(model)
    jobs, records = _plan(workflow, output, model, metadata)
    if workflow.outputs.run_layer and workflow.outputs.vector_formats:
        # GeoPandas (≈ 1 s) for the run layer, imported while the cluster starts rather than when
        # the first scene is done, which for a one-scene run is the tail
        threading.Thread(
            target=importlib.import_module, args=("geoseg.vectorize.formats",), daemon=True
        ).start()
    with output_lock(output):
        remove_stale_temporaries(output, RUN_FOLDERS)
        remove_stale_parts(output, {job.fingerprint for job in jobs})
        for job in jobs:
            if job.input.id not in records and (done := completed_record(job)) is not None:
                records[job.input.id] = SceneRecord(**{**asdict(done), "status": "skipped"})
        todo = [job for job in jobs if job.input.id not in records]
        with cluster_client(workflow.cluster, scheduler_address, workflow.inference.device) as client:
            link = dashboard_link(client)
            console.print(f"Dask dashboard: {link or 'not available'}")
            client.wait_for_workers(1)
            ready = time.time() - origin
            where = placement(client)
            client.run(RESET_STAGES)  # each worker's stage seconds count from here
            console.print(
                f"{len(jobs)} scenes ({len(jobs) - len(todo)} already done or refused), model {model.name}, "
                f"{len(client.scheduler_info()['workers'])} workers"
                + (" with GPUs" if where.gpus else " on CPU")
            )
            with get_task_stream(client) as stream, _LayerFeed(workflow, output, jobs, records) as layer:
                blocks, tiles = _process(client, todo, metadata, where, records, console, layer)
            workers = _worker_facts(client, stream.data, workflow.inference.device, where)
            timeline = {"cluster_ready_s": round(ready, 3), "stages": stage_timeline(stream.data, origin)}

        remove_stale_temporaries(output, RUN_FOLDERS)
        report = RunReport(
            scenes=[records[job.input.id] for job in jobs],
            model=str(model),
            output=str(output),
            seconds=time.perf_counter() - started,
            blocks=blocks,
            tiles=tiles,
            dashboard=link,
            workers=workers,
            timeline=timeline,
            run_layer=layer.written,
            errors=[layer.error] if layer.error else [],
        )
        _finish(report, workflow, output, metadata)
    return report


def _plan(
    workflow: Workflow, output: Path, model: Path, metadata: ModelMetadata
) -> tuple[list[SceneJob], dict[str, SceneRecord]]:
    """The run's scene jobs, and a failed record for each scene whose outputs would replace an
    input or clash with another scene's.

    A scene whose file names would clash with an earlier one's fails alone. Raises
    ``GeosegError`` when the inputs name no scene, or a run-level output (report, run layer,
    results catalog) is an input or a folder.
    """
    inputs = load_inputs(
        workflow.inputs, asset_key=workflow.asset_key, base_dir=workflow.base_dir, output=output
    )
    if not inputs:
        raise ConfigError(f"inputs: {workflow.inputs} names no scene")
    fingerprint = workflow.fingerprint()
    spec = workflow.tiling.spec(metadata.total_stride, metadata.receptive_radius_px)
    if seams := spec.seam_warning(metadata.receptive_radius_px):
        warnings.warn(GeosegWarning(seams), stacklevel=2)
    jobs = [_job(workflow, scene, output, model, metadata, fingerprint, spec) for scene in inputs]
    hrefs = [scene.href for scene in inputs if scene.href]
    protected = ProtectedFiles([model, *workflow.protected_files(), *hrefs])
    for path in run_level_outputs(workflow, output):  # a folder in the way: refused before any work
        check_replaceable(path)
    protected.refuse(run_level_outputs(workflow, output))
    refused: dict[str, SceneRecord] = {}
    clashes = name_clashes(scene.id for scene in inputs)
    for job in jobs:
        if (first := clashes.get(job.input.id)) is not None:
            error = (
                f"scene id {printable(job.input.id)!r}: its outputs would have the file names of scene "
                f"{printable(first)!r} on case-insensitive file systems; rename one"
            )
            refused[job.input.id] = SceneRecord(job.input.id, job.input.href, "failed", error=error)
            continue
        try:
            protected.refuse(job.output_paths)
        except OutputError as exc:
            refused[job.input.id] = SceneRecord(job.input.id, job.input.href, "failed", error=str(exc))
    return jobs, refused


def _job(
    workflow: Workflow,
    scene: SceneInput,
    output: Path,
    model: Path,
    metadata: ModelMetadata,
    fingerprint: str,
    spec: TilingSpec,
) -> SceneJob:
    return SceneJob(
        input=scene,
        model=str(model),
        output_dir=str(output),
        fingerprint=scene_fingerprint(fingerprint, scene.href),
        spec=spec,
        inference=workflow.inference,
        outputs=workflow.outputs,
        bands=tuple(workflow.bands) if workflow.bands else None,
        nodata_fill=tuple(metadata.normalization.mean),
    )


class _LayerFeed:
    """Adds each finished scene's vectors to the run layer (``RunLayer``) in the order of the
    jobs, as soon as every scene before it has finished, so that the layer is written while the
    run goes on and the same run always gives the same layer. A layer that cannot be written (a
    full disk) is given up alone, with its reason in ``error``: the scenes go on."""

    def __init__(
        self, workflow: Workflow, output: Path, jobs: list[SceneJob], records: dict[str, SceneRecord]
    ) -> None:
        formats = workflow.outputs.vector_formats
        layer_format = workflow.outputs.run_layer if formats else None
        self.path = output / f"all-scenes.{layer_format}" if layer_format else None
        self.first_format = f".{formats[0]}" if formats else ""
        self.waiting = collections.deque(jobs)
        self.records = records
        self.output = output
        self.parts: dict[str, bytes] = {}
        self.layer: RunLayer | None = None
        self.error: str | None = None

    def __enter__(self) -> _LayerFeed:
        self.advance()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Finish the layer (write it, or rename it into place); after an error, remove it."""
        if self.layer is not None:
            try:
                self.layer.__exit__(exc_type, exc, tb)
            except OutputError as problem:
                self._give_up(problem)

    @property
    def written(self) -> str | None:
        """The run layer's path, once a scene has been added to it."""
        return None if self.layer is None else str(self.path)

    def finished(self, scene_id: str, part: bytes | None) -> None:
        """A scene is done and recorded; ``part`` is its share of the layer, from its worker."""
        if part is not None:
            self.parts[scene_id] = part
        self.advance()

    def advance(self) -> None:
        """Add the scenes that have finished, up to the first that has not. A scene skipped as
        already done is read back from its first vector file."""
        while self.waiting and (record := self.records.get(self.waiting[0].input.id)) is not None:
            self.waiting.popleft()
            part = self.parts.pop(record.id, None)
            if self.path is None or record.status not in ("ok", "skipped"):
                continue
            try:
                self._add(self.path, record, part)
            except OutputError as problem:
                self._give_up(problem)

    def _add(self, path: Path, record: SceneRecord, part: bytes | None) -> None:
        if part is not None:
            self._layer(path).add_part(part)
            return
        for vectors in record.outputs.get("vectors", []):
            if str(vectors).endswith(self.first_format):
                try:
                    self._layer(path).add(vectors)
                except VectorizeError as exc:  # changed since its run, yet as large
                    forget_unreadable(record, self.output, str(exc))

    def _give_up(self, problem: OutputError) -> None:
        """Leave the run layer out (what was written of it removed), saying why."""
        self.error = f"run layer not written: {problem}"
        if self.layer is not None:
            with contextlib.suppress(Exception):
                self.layer.__exit__(OutputError, problem, None)  # removes its temporary
        self.layer, self.path = None, None

    def _layer(self, path: Path) -> RunLayer:
        if self.layer is None:  # GeoPandas: imported once the first scene is done, not at start
            from geoseg.vectorize.formats import RunLayer

            self.layer = RunLayer(path).__enter__()
        return self.layer


def _process(
    client: Client,
    jobs: list[SceneJob],
    metadata: ModelMetadata,
    where: Placement,
    records: dict[str, SceneRecord],
    console: Console,
    layer: _LayerFeed,
) -> tuple[int, int]:
    """Submit and follow every scene's tasks; fill ``records`` (and feed ``layer`` as they
    come); return (blocks, tiles) submitted.

    Priorities make scenes finish in a stream rather than all at the end: validations and a
    scene's last tasks go before any pending block, blocks of earlier scenes before later ones,
    and a scene's predictions before its polygonising, so its mask is written meanwhile.
    """
    order = {job.input.id: index for index, job in enumerate(jobs)}
    model_input = ModelInput.of(metadata)
    by_future: dict[Future[Any], tuple[str, SceneJob]] = {}
    opened: dict[str, float] = {}  # when each scene was submitted (time.time(): its record's seconds)
    vector_files: dict[str, Future[Any]] = {}
    warned: dict[str, list[str]] = {}
    run = uuid.uuid4().hex[:6]  # keys are unique per run: two runs may share a cluster and scene ids

    def key(stage: str, job: SceneJob, *index: int) -> tuple[str | int, ...]:
        return (stage, f"{job.name}@{run}", *index)

    for job in jobs:
        future = client.submit(
            OPEN_SCENE,
            job,
            model_input,
            key=key("open", job),
            priority=1,
            pure=False,
            **where.other,
        )
        by_future[future] = ("open", job)
        opened[job.input.id] = time.time()
    loading = [  # each GPU worker loads the model (CUDA start-up) while the scenes are opened
        client.submit(
            LOAD_MODEL, job, key=("load-model", address, run), workers=[address], priority=2, pure=False
        )
        for job in jobs[:1]
        for address in where.gpu_workers
    ]
    total_blocks = total_tiles = 0
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        scenes_bar = progress.add_task("scenes", total=len(jobs))
        blocks_bar = progress.add_task("blocks", total=0)
        pending = as_completed(list(by_future))
        for future in pending:
            interrupts.check()  # Ctrl-C that Python swallowed (in a garbage-collector callback)
            if future not in by_future:  # cancelled with its failed scene
                continue
            stage, job = by_future.pop(future)
            if future.status != "finished":
                records[job.input.id] = _failure(job, future)
                vector_files.pop(job.input.id, None)
                layer.advance()
                progress.advance(scenes_bar)
                _cancel_scene(by_future, job, client)
                continue
            if stage == "open":
                prepared: PreparedScene = future.result()
                scene, warned[job.input.id], resampled = prepared.scene, prepared.notes, prepared.grid
                for warning in warned[job.input.id]:
                    console.print(f"[yellow]warning[/yellow] {job.input.id}: {warning}")
                spec = job.spec
                grid = scene_blocks(scene, spec, resampled)
                total_blocks += len(grid)
                total_tiles += sum(len(block_tiles(scene, b, spec)) for b in grid)
                progress.update(blocks_bar, total=total_blocks)
                predicted = [
                    client.submit(
                        PREDICT_BLOCK,
                        job,
                        scene,
                        block,
                        key=key("predict", job, *block.index),
                        **where.model,
                        priority=-2 * order[job.input.id],
                        pure=False,
                    )
                    for block in grid
                ]
                last = {"priority": 1, "pure": False, **where.other}  # a scene's last tasks go first
                polygonised = [  # any worker: with GPUs, the CPU workers take these
                    client.submit(
                        POLYGONISE_BLOCK,
                        job,
                        part,
                        key=key("polygonise", job, *block.index),
                        priority=-2 * order[job.input.id] - 1,
                        pure=False,
                        **where.other,
                    )
                    for block, part in zip(grid, predicted, strict=True)
                ]
                outputs: dict[str, Future[Any]] = {  # the mask and the vectors are written side by side
                    "mask": client.submit(
                        WRITE_MASK,
                        job,
                        scene,
                        metadata.classes,
                        *predicted,
                        key=key("mask", job),
                        **last,
                    ),
                    "vectors": client.submit(
                        WRITE_VECTORS,
                        job,
                        scene,
                        metadata.classes,
                        *polygonised,
                        key=key("vectors", job),
                        **last,
                    ),
                }
                finish = client.submit(
                    FINISH_SCENE,
                    job,
                    scene,
                    len(grid),
                    *outputs.values(),
                    warnings=warned[job.input.id],
                    started=opened[job.input.id],
                    key=key("finish", job),
                    **last,
                )
                by_future.update({f: ("predict", job) for f in predicted})
                by_future.update({f: ("polygonise", job) for f in polygonised})
                by_future.update({f: (name, job) for name, f in outputs.items()})
                by_future[finish] = ("finish", job)
                vector_files[job.input.id] = outputs["vectors"]  # kept for the run layer's part
                pending.update([*predicted, *polygonised, *outputs.values(), finish])
            elif stage == "polygonise":
                progress.advance(blocks_bar)
            elif stage != "finish":
                continue
            else:
                record: SceneRecord = future.result()
                records[job.input.id] = record
                layer.finished(job.input.id, vector_files.pop(job.input.id).result().run_layer_part)
                progress.advance(scenes_bar)
                console.print(f"[green]ok[/green] {job.input.id}: {record.polygons} polygons")
    client.cancel(loading)  # done by now, unless every scene failed first
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


def _worker_facts(
    client: Client, tasks: list[dict[str, Any]], device: str, where: Placement
) -> dict[str, dict[str, Any]]:
    """Per worker: address, device, threads, resources, the tasks it ran with their seconds, and
    the seconds of each pipeline stage (``geoseg.timing``: read, to_device, forward, stitch,
    quicklook, polygonise, vectorise, assemble) since the run started (on a shared cluster, of
    every run that overlapped).

    Only workers that run the model are asked for their device (it imports torch); the CPU
    workers beside GPU workers compute on the CPU.
    """
    model_workers = list(where.gpu_workers) or None  # None: every worker runs the model
    devices = client.run(WORKER_DEVICE, device, workers=model_workers)
    stages = client.run(STAGE_SECONDS)
    facts: dict[str, dict[str, Any]] = {}
    for address, info in client.scheduler_info(n_workers=-1)["workers"].items():
        ran = [t for t in tasks if t.get("worker") == address]
        computing = sum(
            s["stop"] - s["start"] for t in ran for s in t.get("startstops", ()) if s["action"] == "compute"
        )
        facts[str(info.get("name", address))] = {
            "address": address,
            "device": devices.get(address, "cpu"),
            "threads": info.get("nthreads"),
            "resources": info.get("resources", {}),
            "tasks": len(ran),
            "seconds": round(computing, 3),
            "stages": {name: round(seconds, 3) for name, seconds in stages.get(address, {}).items()},
        }
    return facts


def _finish(report: RunReport, workflow: Workflow, output: Path, metadata: ModelMetadata) -> None:
    """Run-level outputs besides the run layer: the results STAC catalog, the HTML and JSON reports."""
    done = [s for s in report.scenes if s.status in ("ok", "skipped")]
    if done:
        parameters = workflow.model_dump(mode="json", include={"bands", "inference", "tiling", "outputs"})
        try:
            catalog, unreadable = write_results_catalog(
                done, output / "catalog" / "catalog.json", report.model, parameters, metadata
            )
        except OutputError as problem:
            report.errors.append(f"results catalog not written: {problem}")
        else:
            report.catalog = str(catalog)
            for record in done:
                if record.id in unreadable:
                    forget_unreadable(record, output, unreadable[record.id])
    totals = summary(report)
    report_json = inside(output, "run-report.json")
    facts = [
        ("model", Path(report.model).name),
        ("scenes", f"{totals['ok']} done, {totals['failed']} failed, {totals['skipped']} skipped"),
        ("buildings", format_count(totals["buildings"])),
        ("building area", format_area(totals["building_area_m2"])),
        ("time", f"{report.seconds:.1f} s"),
    ]
    files = {
        "run report (JSON)": str(report_json),
        "all scenes": report.run_layer,
        "STAC catalog": report.catalog,
    }
    try:
        report.report_html = str(
            write_report_html(
                report.scenes, inside(output, "report.html"), f"geoseg run: {output.name}", facts, files
            )
        )
    except OutputError as problem:
        report.errors.append(f"HTML report not written: {problem}")
    with atomic_output(report_json) as tmp:
        tmp.write_text(json.dumps(asdict(report) | {"summary": summary(report)}, indent=2, default=str))
