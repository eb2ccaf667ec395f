"""Worker tasks without a cluster: block parts are reused only under the same settings."""

import json
import os
import time

import numpy as np

from geoseg.catalog import SceneInput
from geoseg.distributed.handoff import MaskFiles, VectorFiles
from geoseg.distributed.records import SceneJob, remove_stale_parts, stage_timeline
from geoseg.distributed.tasks import finish_scene_task, polygonise_block_task, predict_block_task
from geoseg.gdal_settings import HTTP_TIMEOUTS
from geoseg.model.metadata import read_metadata
from geoseg.scenes import open_scene
from geoseg.tiling import TilingSpec, block_grid
from geoseg.workflow import InferenceConfig, OutputConfig, TilingConfig


def job_for(scene_path, model, output, fingerprint):
    meta = read_metadata(model)
    return SceneJob(
        input=SceneInput("scene", str(scene_path)),
        model=str(model),
        output_dir=str(output),
        fingerprint=fingerprint,
        spec=TilingConfig(tile_size_px=128, block_size_px=256).spec(
            meta.total_stride, meta.receptive_radius_px
        ),
        inference=InferenceConfig(device="cpu"),
        outputs=OutputConfig(),
    )


def test_a_saved_part_is_reused_only_under_the_same_fingerprint(sample_data, rgb_checkpoint, tmp_path):
    scene = open_scene(sample_data / "edge/RGB.byte.tif")
    block = block_grid(
        scene.width,
        scene.height,
        TilingSpec.for_model(stride_px=8, receptive_radius_px=58, tile_size_px=128, block_size_px=256),
    )[5]
    same, other = (job_for(scene.path, rgb_checkpoint, tmp_path, f) for f in ("aaaa", "bbbb"))
    fake = np.ones((2, int(block.core.height), int(block.core.width)), dtype=np.uint8)  # "all class 1"
    part = same.parts_dir / f"r{block.index[0]}c{block.index[1]}.npy"
    part.parent.mkdir(parents=True)
    np.save(part, fake)

    reused = predict_block_task(same, scene, block)
    assert reused.valid_pixels == fake[0].size
    assert len(polygonise_block_task(same, reused).pieces) == 1

    predicted = predict_block_task(other, scene, block)
    assert len(polygonise_block_task(other, predicted).pieces) != 1, (
        "another fingerprint must not reuse the part"
    )

    remove_stale_parts(tmp_path, "bbbb")
    assert not same.parts_dir.exists() and other.parts_dir.exists()


def test_every_task_gives_gdal_http_timeouts_unless_the_user_set_them(
    sample_data, rgb_checkpoint, tmp_path, monkeypatch
):
    """Tasks also run on remote workers started without geoseg's set-up: they set them."""
    monkeypatch.delenv("GDAL_HTTP_CONNECTTIMEOUT", raising=False)
    monkeypatch.setenv("GDAL_HTTP_TIMEOUT", "600")
    scene = open_scene(sample_data / "edge/RGB.byte.tif")
    spec = TilingSpec.for_model(stride_px=8, receptive_radius_px=58, tile_size_px=128, block_size_px=256)
    predict_block_task(
        job_for(scene.path, rgb_checkpoint, tmp_path, "aaaa"),
        scene,
        block_grid(scene.width, scene.height, spec)[0],
    )
    assert os.environ["GDAL_HTTP_CONNECTTIMEOUT"] == HTTP_TIMEOUTS["GDAL_HTTP_CONNECTTIMEOUT"]
    assert os.environ["GDAL_HTTP_TIMEOUT"] == "600"


def test_the_scenes_record_is_written_once_with_its_warnings_and_seconds(
    sample_data, rgb_checkpoint, tmp_path
):
    """The worker writes the record complete, so a driver killed after it leaves nothing to add."""
    scene = open_scene(sample_data / "edge/RGB.byte.tif")
    job = job_for(scene.path, rgb_checkpoint, tmp_path, "aaaa")
    for name, size in (("m.tif", 10), ("q.png", 20), ("v.gpkg", 30)):
        (tmp_path / name).write_bytes(b"x" * size)
    mask = MaskFiles(str(tmp_path / "m.tif"), str(tmp_path / "q.png"))
    vectors = VectorFiles([str(tmp_path / "v.gpkg")], 3, 12.5, None)
    started = time.time() - 2.5
    warnings = ["GSD 300 m is outside the model's range"]
    finish_scene_task(job, scene, 4, mask, vectors, warnings=warnings, started=started)
    record = json.loads(job.record_path.read_text())
    assert record["warnings"] == warnings and 2.5 <= record["seconds"] < 60
    assert record["status"] == "ok" and record["polygons"] == 3
    assert sorted(record["output_bytes"].values()) == [10, 20, 30]  # what resume checks


def test_stage_timeline_sums_compute_time_per_stage_from_the_task_stream():
    origin = 1000.0

    def task(key, start, stop, action="compute"):
        transfer = {"action": "transfer", "start": start - 1, "stop": start}
        return {"key": key, "startstops": [transfer, {"action": action, "start": start, "stop": stop}]}

    stream = [
        task(("predict", "a@r1", 0, 1), 1003.0, 1004.5),
        task(("open", "a@r1"), 1001.0, 1002.0),
        task(("predict", "a@r1", 0, 0), 1002.5, 1003.0),
        task(("open", "b@r1"), 1001.5, 1001.75),
        task(("mask", "a@r1"), 1005.0, 1005.0, action="disk-read"),  # never computed: left out
    ]
    assert stage_timeline(stream, origin) == {
        "open": {"tasks": 2, "seconds": 1.25, "first_start_s": 1.0, "last_stop_s": 2.0},
        "predict": {"tasks": 2, "seconds": 2.0, "first_start_s": 2.5, "last_stop_s": 4.5},
    }
