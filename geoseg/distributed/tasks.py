"""The functions Dask runs on workers. Each takes windows and paths, never pixel arrays.

* ``open_scene_task``: validate a scene (on a worker, which is where the data is visible) and
  compare it with the model's training domain (``geoseg.applicability``: warnings);
* ``predict_block_task``: read one haloed block, predict it on the worker's model, save the
  block's mask part (atomically) and polygonise its core; a part already on disk is reused,
  so a task rerun after a worker died does not predict twice;
* ``assemble_scene_task``: stitch the parts into the scene's COG, merge the polygon pieces
  across blocks, write the vector files, and finally the scene's completion record.
"""

from __future__ import annotations

import contextlib
import functools
import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ParamSpec, TypeVar

import numpy as np

from geoseg.applicability import scene_warnings
from geoseg.atomic import atomic_output
from geoseg.catalog import SceneInput
from geoseg.distributed.worker_state import predictor_for
from geoseg.errors import GeosegError, SceneError
from geoseg.gdal_settings import bounded_cache
from geoseg.model.checkpoint import Domain
from geoseg.predict import predict_block, tiling_for
from geoseg.quicklook import write_quicklook
from geoseg.safepaths import inside, safe_name
from geoseg.scenes import Scene, open_scene
from geoseg.stitching import NODATA, MaskWriter
from geoseg.tiling import Block
from geoseg.timing import stage
from geoseg.vectorize import (
    BlockPieces,
    Cleanup,
    merge_blocks,
    polygonize_block,
    read_mask_info,
    to_features,
    write_features,
)
from geoseg.workflow import OutputConfig, TilingConfig

P = ParamSpec("P")
R = TypeVar("R")


def _worker_task(task: Callable[P, R]) -> Callable[P, R]:
    """Run a task with GDAL's cache bounded; re-raise its ``GeosegError`` without the chain.

    Dask pickles the whole chain back to the client; GDAL errors in it (the ``__context__``
    of a ``SceneError``) do not unpickle, which would turn the clear error into a generic one.
    """

    @functools.wraps(task)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            with bounded_cache():
                return task(*args, **kwargs)
        except GeosegError as exc:
            error = exc
        error.__cause__ = error.__context__ = None
        raise error.with_traceback(None)

    return run


@dataclass(frozen=True)
class SceneJob:
    """Everything a task needs to know about one scene's processing (small, picklable)."""

    input: SceneInput
    model: str
    output_dir: str
    fingerprint: str
    tiling: TilingConfig
    outputs: OutputConfig
    bands: tuple[int, ...] | None = None
    device: str = "auto"
    compile_model: bool = False

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
        return inside(self.output_dir, "scenes", f"{self.name}.json")

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


@dataclass(frozen=True)
class BlockOutcome:
    """What a block task hands to its scene's assembly: where its part is and its pieces."""

    block: Block
    part: str
    valid_pixels: int
    pieces: BlockPieces


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


@_worker_task
def open_scene_task(
    job: SceneJob, expected_bands: int, domain: Domain | None = None
) -> tuple[Scene, list[str]]:
    """Validate the scene and compare it with the model's training ``domain``.

    Raises ``SceneError`` naming the file and the problem; warnings do not stop the scene.
    """
    if job.input.error:
        raise SceneError(job.input.href or job.input.id, job.input.error)
    scene = open_scene(job.input.href, bands=job.bands, expected_bands=expected_bands)
    return scene, scene_warnings(scene, domain)


@_worker_task
def predict_block_task(job: SceneJob, scene: Scene, block: Block) -> BlockOutcome:
    """Predict one block (or reuse its saved part) and polygonise its core."""
    part = job.parts_dir / f"r{block.index[0]}c{block.index[1]}.npy"
    if part.exists():
        stacked = np.load(part)
    else:
        predictor = predictor_for(job.model, job.device, job.tiling.batch_size, job.compile_model)
        spec = tiling_for(predictor, job.tiling.tile_size_px, job.tiling.halo_px, job.tiling.block_size_px)
        prediction = predict_block(scene, block, predictor, spec)
        with stage("stitch"):
            stacked = np.stack([prediction.classes, prediction.probability])
            with atomic_output(part) as tmp, tmp.open("wb") as f:
                np.save(f, stacked)
    classes, probability = stacked
    with stage("polygonise"):
        pieces = polygonize_block(
            classes,
            int(block.core.row_off),
            int(block.core.col_off),
            connectivity=job.outputs.connectivity,
            probability=probability if job.outputs.probability else None,
        )
    return BlockOutcome(block, str(part), int(np.count_nonzero(classes != NODATA)), pieces)


@_worker_task
def assemble_scene_task(
    job: SceneJob, scene: Scene, classes: list[str], *outcomes: BlockOutcome
) -> SceneRecord:
    """Stitch the scene's COG from its parts, vectorise, write the record; clean the parts."""
    if sum(o.valid_pixels for o in outcomes) == 0:
        raise SceneError(scene.path, "every pixel is nodata (nothing to segment)")
    with MaskWriter(job.mask_path, scene, classes, job.outputs.probability, job.outputs.compress) as writer:
        for outcome in outcomes:
            classes_part, probability_part = np.load(outcome.part)
            writer.write(outcome.block.core, classes_part, probability_part)
    with stage("vectorise"):
        components = merge_blocks([o.pieces for o in outcomes])
        cleanup = Cleanup(
            job.outputs.min_area_m2, job.outputs.fill_holes_below_m2, job.outputs.simplify_tolerance_m
        )
        features = to_features(components, read_mask_info(job.mask_path), cleanup, job.input.id)
        vectors = [str(write_features(features, path)) for path in job.vector_paths]
    with stage("quicklook"):
        quicklook = write_quicklook(scene, job.mask_path, job.quicklook_path, job.input.id, NODATA)
    record = SceneRecord(
        id=job.input.id,
        input=job.input.href,
        status="ok",
        outputs={"mask": str(job.mask_path), "vectors": vectors, "quicklook": str(quicklook)},
        fingerprint=job.fingerprint,
        polygons=len(features),
        building_area_m2=float(features.loc[features["class_id"] != 0, "area_m2"].sum()),
        area_km2=scene.area_m2 / 1e6,
        blocks=len(outcomes),
    )
    write_record(record, job.record_path)
    shutil.rmtree(job.parts_dir, ignore_errors=True)
    with contextlib.suppress(OSError):  # the fingerprint folder, once no other scene uses it
        job.parts_dir.parent.rmdir()
    return record


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


def write_record(record: SceneRecord, path: Path) -> None:
    """Write a scene record atomically."""
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(asdict(record), indent=2))


def completed_record(job: SceneJob) -> SceneRecord | None:
    """The scene's record if a previous run finished it with the same settings and outputs."""
    try:
        record = SceneRecord(**json.loads(job.record_path.read_text()))
    except (FileNotFoundError, json.JSONDecodeError, TypeError):
        return None
    outputs = [
        record.outputs.get("mask", ""),
        *record.outputs.get("vectors", []),
        record.outputs.get("quicklook", ""),
    ]
    wanted = {str(job.mask_path), *map(str, job.vector_paths), str(job.quicklook_path)}
    if record.fingerprint != job.fingerprint or set(map(str, outputs)) != wanted:
        return None
    if not all(Path(str(p)).exists() for p in outputs):
        return None
    return record
