"""The functions Dask runs on workers. They take windows and paths, never the scene's pixels.

* ``open_scene_task``: validate a scene (on a worker, which is where the data is visible) and
  prepare it for the model (``geoseg.model_input``: pixel scaling, warnings against the training
  domain and, with ``resample: model``, its model grid);
* ``predict_block_task``: read one haloed block, predict it on the worker's model, save the
  block's mask part (atomically) and sum its pixels into the scene's quick-look grid (a small
  share, ≤ 1/64 of the block); a part already on disk is reused, so a task rerun after a
  worker died does not predict twice;
* ``polygonise_block_task``: polygonise a saved part's core (any worker: no model);
* ``write_mask_task``: stitch the parts into the scene's COG and draw the quick-look, as soon
  as every block is predicted;
* ``write_vectors_task``: merge the polygon pieces across blocks and write the vector files,
  beside the mask on another worker: a scene's tail is the longer of the two, not their sum;
* ``finish_scene_task``: the completion record, written last, and the parts cleaned up.

Which files a scene writes and when it may be skipped is ``records.py``. Only the model's tasks
import torch (``worker_state``), so the CPU workers of a GPU node start without it.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, ParamSpec, TypeVar

import numpy as np

from geoseg.atomic import atomic_output
from geoseg.distributed.handoff import BlockPart, BlockPolygons, MaskFiles, VectorFiles
from geoseg.distributed.records import SceneJob, SceneRecord, output_bytes, write_record
from geoseg.errors import GeosegError, SceneError
from geoseg.gdal_settings import bounded_cache, http_timeouts
from geoseg.maskformat import NODATA
from geoseg.maskwriter import MaskWriter
from geoseg.model_input import ModelInput, PreparedScene, open_for_model
from geoseg.predict import predict_pixels, read_block
from geoseg.quicklook import Thumbnail, thumbnail_factor, thumbnail_part, write_quicklook
from geoseg.scenes import Scene, read_window
from geoseg.tiling import Block
from geoseg.timing import stage
from geoseg.vectorize import (
    Cleanup,
    MaskInfo,
    merge_blocks,
    polygonize_block,
    to_features,
    write_features,
)

if TYPE_CHECKING:
    from geoseg.inference import Predictor

P = ParamSpec("P")
R = TypeVar("R")


def _worker_task(task: Callable[P, R]) -> Callable[P, R]:
    """Run a task with GDAL's cache bounded and HTTP timeouts set (``geoseg.gdal_settings``, on
    any worker, local or remote); re-raise its ``GeosegError`` without the chain.

    Dask pickles the whole chain back to the client; GDAL errors in it (the ``__context__``
    of a ``SceneError``) do not unpickle, which would turn the clear error into a generic one.
    """

    @functools.wraps(task)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        http_timeouts()
        try:
            with bounded_cache():
                return task(*args, **kwargs)
        except GeosegError as exc:
            error = exc
        error.__cause__ = error.__context__ = None
        raise error.with_traceback(None)

    return run


@_worker_task
def open_scene_task(job: SceneJob, model: ModelInput) -> PreparedScene:
    """Validate the scene and prepare it for the ``model`` (``geoseg.model_input``): its bands,
    its scaling, its warnings against the training domain and the grid it is read on.

    Raises ``SceneError`` naming the file and the problem; warnings do not stop the scene.
    """
    if job.input.error:
        raise SceneError(job.input.href or job.input.id, job.input.error)
    return open_for_model(job.input.href, model, job.bands, job.inference.resample)


@_worker_task
def load_model_task(job: SceneJob) -> None:
    """Load the job's model on this worker ahead of its blocks, while the scenes are opened."""
    _predictor(job)


@_worker_task
def predict_block_task(job: SceneJob, scene: Scene, block: Block) -> BlockPart:
    """Predict one block and save its mask part, or reuse the part an earlier attempt saved.

    The block is read before the model is asked for, so a worker's first tasks read while the
    first one loads the model.
    """
    part = job.parts_dir / f"r{block.index[0]}c{block.index[1]}.npy"
    origin = int(block.core.row_off), int(block.core.col_off)
    factor = thumbnail_factor(scene.width, scene.height)
    if part.exists():
        with stage("quicklook"):  # the part holds no pixels: read the core again
            thumbnail = thumbnail_part(*read_window(scene, block.core), *origin, factor)
        return BlockPart(block, str(part), _valid_pixels(np.load(part, mmap_mode="r")[0]), thumbnail)
    read = read_block(scene, block, job.spec, nodata_fill=list(job.nodata_fill) or None)
    predictor = _predictor(job)
    prediction = predict_pixels(read, predictor, job.spec, with_probability=job.outputs.probability)
    with stage("quicklook"):
        thumbnail = thumbnail_part(*read.core(), *origin, factor)
    del read
    with stage("stitch"):  # the probability band is kept only when it is an output
        kept = (
            [prediction.classes]
            if prediction.probability is None
            else [prediction.classes, prediction.probability]
        )
        with atomic_output(part) as tmp, tmp.open("wb") as f:
            np.save(f, np.stack(kept))
    return BlockPart(block, str(part), prediction.valid_pixels, thumbnail)


@_worker_task
def polygonise_block_task(job: SceneJob, part: BlockPart) -> BlockPolygons:
    """Polygonise the core of a saved block part (any worker: it needs no model)."""
    stacked = np.load(part.part)
    classes, probability = stacked[0], (stacked[1] if len(stacked) > 1 else None)
    origin = int(part.block.core.row_off), int(part.block.core.col_off)
    with stage("polygonise"):
        pieces = polygonize_block(
            classes, *origin, connectivity=job.outputs.connectivity, probability=probability
        )
    return BlockPolygons(part.valid_pixels, pieces)


def _predictor(job: SceneJob) -> Predictor:
    from geoseg.distributed.worker_state import predictor_for  # torch: model workers only

    run = job.inference
    return predictor_for(job.model, run.device, run.batch_size, run.compile_model, run.tta, run.precision)


def _valid_pixels(classes: np.ndarray) -> int:
    return int(np.count_nonzero(classes != NODATA))


def _require_valid_pixels(scene: Scene, blocks: tuple[BlockPart, ...] | tuple[BlockPolygons, ...]) -> None:
    if sum(block.valid_pixels for block in blocks) == 0:
        raise SceneError(scene.path, "every pixel is nodata (nothing to segment)")


@_worker_task
def write_mask_task(job: SceneJob, scene: Scene, classes: list[str], *parts: BlockPart) -> MaskFiles:
    """Stitch the scene's COG mask from its saved parts, then its quick-look."""
    _require_valid_pixels(scene, parts)
    with MaskWriter(job.mask_path, scene, classes, job.outputs.probability, job.outputs.compress) as writer:
        for part in parts:
            stacked = np.load(part.part)
            writer.write(part.block.core, stacked[0], stacked[1] if len(stacked) > 1 else None)
    with stage("quicklook"):
        thumbnail = Thumbnail.from_parts(scene.width, scene.height, [p.thumbnail for p in parts])
        quicklook = write_quicklook(scene, thumbnail, job.mask_path, job.quicklook_path, job.input.id, NODATA)
    return MaskFiles(str(job.mask_path), str(quicklook))


@_worker_task
def write_vectors_task(
    job: SceneJob, scene: Scene, classes: list[str], *blocks: BlockPolygons
) -> VectorFiles:
    """Merge the blocks' polygon pieces, clean them up and write the scene's vector files; hand
    the run layer its share in lon/lat (reprojecting here, on any worker, rather than in the
    client, which appends the scenes one after another)."""
    _require_valid_pixels(scene, blocks)
    with stage("vectorise"):
        info = MaskInfo(
            scene.width, scene.height, scene.transform, scene.crs, tuple(classes), job.outputs.probability
        )
        cleanup = Cleanup(
            job.outputs.min_area_m2, job.outputs.fill_holes_below_m2, job.outputs.simplify_tolerance_m
        )
        features = to_features(merge_blocks([b.pieces for b in blocks]), info, cleanup, job.input.id)
        paths = [str(write_features(features, path)) for path in job.vector_paths]
        run_layer_part = features.to_crs("EPSG:4326").to_ipc() if job.outputs.run_layer and paths else None
    foreground = features.table["class_id"].to_numpy() != 0
    area = float(features.table["area_m2"].to_numpy()[foreground].sum())
    return VectorFiles(paths, len(features), area, run_layer_part)


@_worker_task
def finish_scene_task(
    job: SceneJob,
    scene: Scene,
    blocks: int,
    mask: MaskFiles,
    vectors: VectorFiles,
    warnings: list[str],
    started: float,
) -> SceneRecord:
    """Write the scene's completion record, once every output is in place; clean the parts.

    ``started`` is when the driver submitted the scene (``time.time()``): the record's seconds
    run from then (on a multi-node cluster, give or take the machines' clock difference).
    """
    record = SceneRecord(
        id=job.input.id,
        input=job.input.href,
        status="ok",
        outputs={"mask": mask.mask, "vectors": vectors.paths, "quicklook": mask.quicklook},
        fingerprint=job.fingerprint,
        polygons=vectors.polygons,
        building_area_m2=vectors.building_area_m2,
        area_km2=scene.area_m2 / 1e6,
        blocks=blocks,
        warnings=warnings,
        seconds=max(0.0, time.time() - started),
        output_bytes=output_bytes([mask.mask, *vectors.paths, mask.quicklook]),
    )
    write_record(record, job.record_path)
    shutil.rmtree(job.parts_dir, ignore_errors=True)
    with contextlib.suppress(OSError):  # the fingerprint folder, once no other scene uses it
        job.parts_dir.parent.rmdir()
    return record
