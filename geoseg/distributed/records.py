"""A run's bookkeeping: scene jobs, their output paths and fingerprints, records and the report.

Everything here is about *which* files a scene writes and whether a finished scene can be
skipped; the per-block pixel work is in ``tasks.py`` and the driver in ``run.py``. Every path
is a safe name inside the output folder (``geoseg.safepaths``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dask.utils import key_split

from geoseg.atomic import atomic_output
from geoseg.catalog import SceneInput
from geoseg.safepaths import inside, safe_name
from geoseg.tiling import TilingSpec
from geoseg.workflow import InferenceConfig, OutputConfig, Workflow


@dataclass(frozen=True)
class SceneJob:
    """Everything a task needs to know about one scene's processing (small, picklable)."""

    input: SceneInput
    model: str
    output_dir: str
    fingerprint: str
    spec: TilingSpec
    """Tiling derived once per run from the workflow and the model (``TilingConfig.spec``)."""
    inference: InferenceConfig
    outputs: OutputConfig
    bands: tuple[int, ...] | None = None
    nodata_fill: tuple[float, ...] = ()
    """Per band, the value nodata pixels are read as (the model's normalisation mean)."""

    @property
    def name(self) -> str:
        """The scene's file name: its id made safe (``geoseg.safepaths.safe_name``)."""
        return safe_name(self.input.id)

    @property
    def mask_path(self) -> Path:
        """Where the scene's COG mask goes."""
        return inside(self.output_dir, "masks", f"{self.name}.tif")

    @property
    def vector_paths(self) -> list[Path]:
        """Where the scene's vector files go, one per format."""
        return [
            inside(self.output_dir, "vectors", f"{self.name}.{fmt}") for fmt in self.outputs.vector_formats
        ]

    @property
    def quicklook_path(self) -> Path:
        """Where the scene's quick-look PNG goes."""
        return inside(self.output_dir, "quicklooks", f"{self.name}.png")

    @property
    def record_path(self) -> Path:
        """The scene's completion record, written last."""
        return record_path(self.output_dir, self.input.id)

    @property
    def output_paths(self) -> list[Path]:
        """Every file the scene's processing writes under its final name."""
        catalog_item = inside(self.output_dir, "catalog", self.name, f"{self.name}.json")
        return [self.mask_path, *self.vector_paths, self.quicklook_path, self.record_path, catalog_item]

    @property
    def parts_dir(self) -> Path:
        """Per-block mask parts, deleted once the scene is assembled.

        Under the scene's fingerprint (settings and input identity), so parts left by an
        interrupted run with another model, tiling or input file are never reused.
        """
        return inside(parts_root(self.output_dir), self.fingerprint, self.name)


@dataclass
class SceneRecord:
    """The completion record of a scene (also its entry in the run report)."""

    id: str
    input: str
    status: str
    error: str | None = None
    outputs: dict[str, str | list[str]] = field(default_factory=dict)
    fingerprint: str | None = None
    polygons: int | None = None
    building_area_m2: float | None = None
    """Summed ``area_m2`` of the scene's polygons (every class but background)."""
    area_km2: float | None = None
    """The scene's own footprint."""
    blocks: int | None = None
    seconds: float | None = None
    warnings: list[str] = field(default_factory=list)
    """Where the model may not apply (``geoseg.applicability``); the scene is processed anyway."""
    output_bytes: dict[str, int] = field(default_factory=dict)
    """Each output file's size (a Shapefile's sidecars too) when the record was written: a rerun
    redoes a scene whose outputs were truncated, half-copied or lost since."""


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
    report_html: str | None = None
    workers: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per worker name: address, device, threads, resources, tasks run, seconds computing, and
    seconds per pipeline stage."""
    timeline: dict[str, Any] = field(default_factory=dict)
    """Where the run's seconds went: ``cluster_ready_s`` and per stage (``stage_timeline``)."""
    errors: list[str] = field(default_factory=list)
    """Run-level outputs that could not be written (the run layer, the results catalog, the
    HTML report: a full disk), one line each; the scenes went on without them."""

    def count(self, status: str) -> int:
        """Scenes with ``status``."""
        return sum(1 for s in self.scenes if s.status == status)

    @property
    def ok(self) -> bool:
        """True when no scene failed and every run-level output was written."""
        return self.count("failed") == 0 and not self.errors


def stage_timeline(tasks: list[dict[str, Any]], origin: float) -> dict[str, dict[str, float]]:
    """Per stage of a run (a task key's first part: open, load-model, predict, polygonise, mask,
    vectors, finish): tasks, seconds computing, and the first start and last stop in seconds
    after ``origin`` (a ``time.time()``), from Dask's task stream records."""
    stages: dict[str, dict[str, float]] = {}
    for task in tasks:
        computes = [s for s in task.get("startstops", ()) if s["action"] == "compute"]
        if not computes:
            continue
        entry = stages.setdefault(
            key_split(task["key"]),
            {"tasks": 0, "seconds": 0.0, "first_start_s": math.inf, "last_stop_s": -math.inf},
        )
        entry["tasks"] += 1
        entry["seconds"] += sum(s["stop"] - s["start"] for s in computes)
        entry["first_start_s"] = min(entry["first_start_s"], min(s["start"] for s in computes) - origin)
        entry["last_stop_s"] = max(entry["last_stop_s"], max(s["stop"] for s in computes) - origin)
    ordered = sorted(stages.items(), key=lambda item: item[1]["first_start_s"])
    return {name: {k: round(v, 3) for k, v in entry.items()} for name, entry in ordered}


RUN_FOLDERS = ("masks", "vectors", "quicklooks", "catalog", "scenes", ".parts")
"""The folders a run writes under its output (besides files at its top)."""


def parts_root(output_dir: str | Path) -> Path:
    """Where block parts of unfinished scenes wait, one folder per scene fingerprint."""
    return inside(output_dir, ".parts")


def remove_stale_parts(output_dir: str | Path, fingerprints: set[str]) -> None:
    """Delete parts written under other settings or inputs: they can never be reused."""
    root = parts_root(output_dir)
    if root.is_dir() and not root.is_symlink():
        for folder in root.iterdir():
            if folder.name not in fingerprints and folder.is_dir() and not folder.is_symlink():
                shutil.rmtree(folder, ignore_errors=True)


def record_path(output_dir: str | Path, scene_id: str) -> Path:
    """Where a scene's completion record is (``SceneJob.record_path``)."""
    return inside(output_dir, "scenes", f"{safe_name(scene_id)}.json")


def forget_unreadable(record: SceneRecord, output_dir: str | Path, problem: str) -> None:
    """Turn a finished scene whose output cannot be read back into a failed one, and delete its
    completion record so that the next run makes its outputs again."""
    record.status, record.error = "failed", f"{problem}; rerun to make it again"
    record_path(output_dir, record.id).unlink(missing_ok=True)


def write_record(record: SceneRecord, path: Path) -> None:
    """Write a scene record atomically."""
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(asdict(record), indent=2))


def output_bytes(outputs: list[str]) -> dict[str, int]:
    """The size of each output file and of a Shapefile's sidecars (``SceneRecord.output_bytes``)."""
    files = [Path(p) for p in outputs]
    files += [
        s for f in files if f.suffix == ".shp" for s in map(f.with_suffix, _SHAPEFILE_SIDECARS) if s.exists()
    ]
    return {str(f): f.stat().st_size for f in files}


_SHAPEFILE_SIDECARS = (".shx", ".dbf", ".prj", ".cpg")


def completed_record(job: SceneJob) -> SceneRecord | None:
    """The scene's record if a previous run finished it with the same settings, and its outputs
    are where and as large as when they were written."""
    try:
        record = SceneRecord(**json.loads(job.record_path.read_text()))
    except (FileNotFoundError, json.JSONDecodeError, TypeError):
        return None
    wanted = {str(job.mask_path), *map(str, job.vector_paths), str(job.quicklook_path)}
    if record.fingerprint != job.fingerprint or not wanted <= set(record.output_bytes):
        return None
    for path, size in record.output_bytes.items():
        try:
            if Path(path).stat().st_size != size:
                return None
        except (OSError, ValueError):
            return None
    return record


def scene_fingerprint(workflow_fingerprint: str, href: str) -> str:
    """The workflow's fingerprint plus the input's identity: where it is, its size and mtime.

    A scene whose file was replaced since its outputs were written is therefore redone. (A VRT's
    own file is what is stamped, not the files it references.)
    """
    try:
        info = os.stat(href) if href and "://" not in href else None
    except (OSError, ValueError):  # ValueError: a NUL in the href; the scene fails when opened
        info = None
    stamp = f"{info.st_size}:{info.st_mtime_ns}" if info else "-"
    return hashlib.sha256(f"{workflow_fingerprint}|{href}|{stamp}".encode()).hexdigest()[:16]


def run_level_outputs(workflow: Workflow, output: Path) -> list[Path]:
    """The files a run writes beside the scenes' own: run layer, results catalog, report."""
    layer = [f"all-scenes.{workflow.outputs.run_layer}"] if workflow.outputs.run_layer else []
    names = (*layer, "run-report.json", "report.html", "catalog/catalog.json")
    return [inside(output, name) for name in names]


def summary(report: RunReport) -> dict[str, Any]:
    """Totals for the report and the end-of-run table.

    ``area_km2`` is the scenes' own area processed in this run (with ``seconds``, throughput);
    ``buildings`` and ``building_area_m2`` count every scene with results, skipped ones too;
    the ``warned_`` totals are the part of them in scenes with warnings (out of the model's domain).
    """
    ok = [s for s in report.scenes if s.status == "ok"]
    done = [s for s in report.scenes if s.status in ("ok", "skipped")]
    warned = [s for s in done if s.warnings]
    area = sum(s.area_km2 or 0 for s in ok)
    return {
        "ok": len(ok),
        "failed": report.count("failed"),
        "skipped": report.count("skipped"),
        "buildings": sum(s.polygons or 0 for s in done),
        "building_area_m2": sum(s.building_area_m2 or 0 for s in done),
        "warned_buildings": sum(s.polygons or 0 for s in warned),
        "warned_building_area_m2": sum(s.building_area_m2 or 0 for s in warned),
        "area_km2": area,
        "blocks": report.blocks,
        "tiles": report.tiles,
        "tiles_per_s": report.tiles / report.seconds if report.seconds else 0.0,
        "seconds": report.seconds,
    }
