"""``geoseg run`` on a real LocalCluster of 2 worker processes, over real scenes."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import rasterio

from geoseg.atomic import TMP_MARK
from geoseg.catalog import build_catalog
from geoseg.vectorize import read_features
from tests.distributed.conftest import GOOD_SCENES, geoseg, write_workflow


def report_of(folder: Path) -> dict:
    return json.loads((folder / "out" / "run-report.json").read_text())


def statuses(report: dict) -> dict[str, str]:
    return {s["id"]: s["status"] for s in report["scenes"]}


def finished_records(records: Path) -> set[str]:
    """Scene ids with a finished record; a run killed mid-write leaves a hidden temporary one."""
    return {p.stem for p in records.glob("*.json") if not p.name.startswith(".")}


def assert_same_outputs(a: Path, b: Path, scene_ids) -> None:
    for scene_id in scene_ids:
        with (
            rasterio.open(a / "out/masks" / f"{scene_id}.tif") as x,
            rasterio.open(b / "out/masks" / f"{scene_id}.tif") as y,
        ):
            assert np.array_equal(x.read(), y.read()), scene_id
        fx = read_features(a / "out/vectors" / f"{scene_id}.gpkg")
        fy = read_features(b / "out/vectors" / f"{scene_id}.gpkg")
        assert len(fx) == len(fy), scene_id
        assert fx.union_all().symmetric_difference(fy.union_all()).area == pytest.approx(0, abs=1e-6)


@pytest.fixture(scope="module")
def undisturbed(sample_data, rgb_checkpoint, tmp_path_factory) -> Path:
    """One complete run over a STAC catalog of real scenes plus a corrupt one."""
    folder = tmp_path_factory.mktemp("undisturbed")
    catalog, skipped = build_catalog(
        [sample_data / s for s in [*GOOD_SCENES, "edge/corrupt.tif"]], folder / "stac" / "catalog.json"
    )
    assert skipped == []  # corrupt.tif has a valid header: only reading its pixels fails
    result = geoseg("run", str(write_workflow(folder, catalog, rgb_checkpoint)))
    assert result.returncode == 1, result.stderr
    return folder


def test_good_scenes_give_masks_and_vectors_and_the_corrupt_one_is_reported(undisturbed, sample_data):
    report = report_of(undisturbed)
    assert statuses(report) == {"RGB.byte": "ok", "image_1": "ok", "image-RGB": "ok", "corrupt": "failed"}
    corrupt = next(s for s in report["scenes"] if s["id"] == "corrupt")
    assert corrupt["error"].startswith(str(sample_data / "edge/corrupt.tif") + ": pixels cannot be decoded")
    for scene in report["scenes"]:
        if scene["status"] != "ok":
            continue
        with rasterio.open(scene["outputs"]["mask"]) as mask, rasterio.open(scene["input"]) as src:
            assert (mask.crs, mask.transform, mask.shape) == (src.crs, src.transform, src.shape)
        for vector in scene["outputs"]["vectors"]:
            assert len(read_features(vector)) == scene["polygons"] > 0
    assert report["summary"]["ok"] == 3 and report["summary"]["failed"] == 1
    assert Path(report["run_layer"]).exists() and Path(report["catalog"]).exists()
    layer, ok = read_features(report["run_layer"]), [s for s in report["scenes"] if s["status"] == "ok"]
    assert len(layer) == sum(s["polygons"] for s in ok)
    assert list(dict.fromkeys(layer["scene_id"])) == [s["id"] for s in ok], "scenes in the inputs' order"


def test_the_report_says_where_the_run_time_went(undisturbed):
    report = report_of(undisturbed)
    timeline, stages = report["timeline"], report["timeline"]["stages"]
    assert 0 < timeline["cluster_ready_s"] < report["seconds"]
    assert {"open", "predict", "polygonise", "mask", "vectors", "finish"} <= set(stages)
    assert stages["open"]["tasks"] == 4 and stages["finish"]["tasks"] == 3  # the corrupt scene fails
    for entry in stages.values():
        assert (
            timeline["cluster_ready_s"] <= entry["first_start_s"] <= entry["last_stop_s"] <= report["seconds"]
        )
    assert stages["open"]["first_start_s"] < stages["predict"]["first_start_s"]
    assert stages["predict"]["first_start_s"] < stages["finish"]["last_stop_s"]
    per_worker = [w["stages"] for w in report["workers"].values()]  # and per worker, per pipeline stage
    for name in ("read", "forward", "stitch", "polygonise", "vectorise", "assemble"):
        assert sum(s.get(name, 0) for s in per_worker) > 0, name


def test_results_catalog_links_each_scene_mask_and_vectors(undisturbed):
    import pystac

    catalog = pystac.Catalog.from_file(str(undisturbed / "out/catalog/catalog.json"))
    items = {item.id: item for item in catalog.get_items(recursive=True)}
    assert set(items) == {"RGB.byte", "image_1", "image-RGB"}
    for item in items.values():
        assert Path(item.assets["mask"].get_absolute_href()).exists()
        assert Path(item.assets["vectors-gpkg"].get_absolute_href()).exists()
        assert item.properties["geoseg:model"] == "rgb.safetensors"
        parameters = item.properties["geoseg:parameters"]
        assert parameters["inference"]["tta"] == "none" and parameters["tiling"]["block_size_px"] == 256


def test_killing_a_worker_mid_run_gives_the_same_outputs(sample_data, rgb_checkpoint, undisturbed, tmp_path):
    scenes = [sample_data / s for s in GOOD_SCENES]
    run = subprocess.Popen(
        [sys.executable, "-m", "geoseg", "run", str(write_workflow(tmp_path, scenes, rgb_checkpoint))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    parts = tmp_path / "out" / ".parts"
    deadline = time.monotonic() + 120
    while not (parts.exists() and len(list(parts.rglob("*.npy"))) >= 2):
        assert run.poll() is None and time.monotonic() < deadline, "run ended before a worker could be killed"
        time.sleep(0.05)
    workers = [
        p for p in psutil.Process(run.pid).children(recursive=True) if "spawn_main" in " ".join(p.cmdline())
    ]
    assert workers, "no worker processes found"
    os.kill(workers[0].pid, signal.SIGKILL)
    _, stderr = run.communicate(timeout=300)
    assert run.returncode == 0, stderr
    assert set(statuses(report_of(tmp_path)).values()) == {"ok"}
    assert_same_outputs(tmp_path, undisturbed, ["RGB.byte", "image_1", "image-RGB"])


def test_interrupted_run_resumes_skipping_finished_scenes(sample_data, rgb_checkpoint, undisturbed, tmp_path):
    scenes = [sample_data / s for s in GOOD_SCENES]
    workflow = write_workflow(tmp_path, scenes, rgb_checkpoint)
    run = subprocess.Popen(
        [sys.executable, "-m", "geoseg", "run", str(workflow)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    records = tmp_path / "out" / "scenes"
    deadline = time.monotonic() + 120
    while not (records.exists() and finished_records(records)):
        assert run.poll() is None and time.monotonic() < deadline, "run ended before it could be interrupted"
        time.sleep(0.02)
    for child in psutil.Process(run.pid).children(recursive=True):
        child.kill()
    run.kill()
    run.wait()
    finished = finished_records(records)
    assert finished and finished != {"RGB.byte", "image_1", "image-RGB"}

    result = geoseg("run", str(workflow))
    assert result.returncode == 0, result.stderr
    report = statuses(report_of(tmp_path))
    assert {s for s, status in report.items() if status == "skipped"} == finished
    assert {s for s, status in report.items() if status == "ok"} == set(report) - finished
    assert not list((tmp_path / "out").rglob("*.geoseg-tmp*"))
    assert_same_outputs(tmp_path, undisturbed, ["RGB.byte", "image_1", "image-RGB"])


def test_a_rerun_redoes_scenes_whose_outputs_were_truncated_or_lost_and_skips_the_rest(
    sample_data, rgb_checkpoint, undisturbed, tmp_path
):
    scenes = [sample_data / s for s in GOOD_SCENES]
    workflow = write_workflow(tmp_path, scenes, rgb_checkpoint, outputs={"vector_formats": ["gpkg", "shp"]})
    assert geoseg("run", str(workflow)).returncode == 0
    out = tmp_path / "out"
    mask = out / "masks" / "RGB.byte.tif"
    mask.write_bytes(mask.read_bytes()[:500])  # truncated, e.g. by a copy that stopped
    (out / "vectors" / "image_1.dbf").unlink()  # a Shapefile's attributes lost

    result = geoseg("run", str(workflow))
    assert result.returncode == 0, result.stderr
    assert statuses(report_of(tmp_path)) == {"RGB.byte": "ok", "image_1": "ok", "image-RGB": "skipped"}
    assert (
        read_features(out / "vectors" / "image_1.shp").columns.tolist()
        == read_features(out / "vectors" / "image_1.gpkg").columns.tolist()
    )
    assert_same_outputs(tmp_path, undisturbed, ["RGB.byte", "image_1", "image-RGB"])


def test_outputs_spoilt_at_the_same_size_fail_their_scene_alone_and_are_made_again_next_run(
    sample_data, rgb_checkpoint, undisturbed, tmp_path
):
    scenes = [sample_data / s for s in GOOD_SCENES]
    workflow = write_workflow(tmp_path, scenes, rgb_checkpoint)
    assert geoseg("run", str(workflow)).returncode == 0
    out = tmp_path / "out"
    for spoilt in (out / "masks" / "RGB.byte.tif", out / "vectors" / "image_1.gpkg"):
        spoilt.write_bytes(bytes(spoilt.stat().st_size))  # zeros: the size a resume checks is kept

    result = geoseg("run", str(workflow))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    report = {s["id"]: s for s in report_of(tmp_path)["scenes"]}
    assert report["image-RGB"]["status"] == "skipped"
    for scene_id, spoilt in (("RGB.byte", "RGB.byte.tif"), ("image_1", "image_1.gpkg")):
        assert report[scene_id]["status"] == "failed"
        assert spoilt in report[scene_id]["error"] and "rerun to make it again" in report[scene_id]["error"]

    assert geoseg("run", str(workflow)).returncode == 0
    assert statuses(report_of(tmp_path)) == {"RGB.byte": "ok", "image_1": "ok", "image-RGB": "skipped"}
    assert_same_outputs(tmp_path, undisturbed, ["RGB.byte", "image_1", "image-RGB"])


@contextlib.contextmanager
def dask_cluster(*worker_args: list[str]):
    """A ``dask scheduler`` and one ``dask worker`` per argument list, as local processes."""
    from distributed import Client

    bin_dir = Path(sys.executable).parent
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = [bin_dir / "dask", "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"]
    processes = [subprocess.Popen(scheduler, stderr=subprocess.DEVNULL)]
    try:
        for args in worker_args:
            worker = [
                bin_dir / "dask",
                "worker",
                address,
                "--nworkers",
                "1",
                "--nthreads",
                "1",
                "--no-dashboard",
                *args,
            ]
            processes.append(subprocess.Popen(worker, stderr=subprocess.DEVNULL))
        with Client(address, timeout=60) as client:
            client.wait_for_workers(len(worker_args), timeout=60)
        yield address
    finally:
        for process in processes:
            process.kill()
            process.wait()


def test_remote_scheduler_with_two_dask_workers_and_a_driver_without_torch(
    sample_data, rgb_checkpoint, tmp_path
):
    """Plain ``dask worker`` processes run the tasks the driver names; only they import torch."""
    with dask_cluster([], []) as address:
        workflow = write_workflow(tmp_path, [sample_data / GOOD_SCENES[1]], rgb_checkpoint)
        command = [sys.executable, "-X", "importtime", "-m", "geoseg", "run", str(workflow)]
        result = subprocess.run([*command, "--scheduler", address], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert statuses(report_of(tmp_path)) == {"image_1": "ok"}
    imported = {
        line.rsplit("|", 1)[1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "geoseg.distributed.run" in imported
    assert "torch" not in imported


def test_cpu_only_workers_never_take_inference_when_a_gpu_worker_exists(
    sample_data, rgb_checkpoint, tmp_path
):
    """A worker declaring the GPU resource takes every predict task (on CPU here: same code)."""
    from distributed import Client, get_task_stream

    from geoseg.distributed.run import run_workflow
    from geoseg.workflow import load_workflow

    with dask_cluster(["--resources", "GPU=1", "--name", "gpu-worker"], ["--name", "cpu-worker"]) as address:
        workflow = load_workflow(
            write_workflow(tmp_path, [sample_data / s for s in GOOD_SCENES], rgb_checkpoint)
        )
        with Client(address) as client, get_task_stream(client) as stream:
            report = run_workflow(workflow, scheduler_address=address)
            names = {
                address: w["name"] for address, w in client.scheduler_info(n_workers=-1)["workers"].items()
            }
    assert report.ok and report.blocks > 3
    predicted_on = {names[t["worker"]] for t in stream.data if "predict" in str(t["key"])}
    assert predicted_on == {"gpu-worker"}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_run_layer_that_cannot_be_written_is_left_out_alone_and_the_scenes_go_on(
    sample_data, rgb_checkpoint, tmp_path, monkeypatch
):
    """The driver writes the run layer: a full disk there (simulated in the driver process only;
    the workers write the scenes' own files) costs the layer, not the batch or its reports."""
    from geoseg.distributed.run import run_workflow
    from geoseg.vectorize import formats
    from geoseg.workflow import load_workflow

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(formats, "_write_ogr", disk_full)
    scenes = [sample_data / s for s in GOOD_SCENES[:2]]
    report = run_workflow(load_workflow(write_workflow(tmp_path, scenes, rgb_checkpoint)))
    out = tmp_path / "out"
    assert [s.status for s in report.scenes] == ["ok", "ok"] and not report.ok
    assert report.errors == [
        f"run layer not written: {out / 'all-scenes.gpkg'}: cannot be written (no space left on the device)"
    ]
    assert report.run_layer is None and report_of(tmp_path)["errors"] == report.errors
    visible = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert visible == [
        "catalog",
        "masks",
        "quicklooks",
        "report.html",
        "run-report.json",
        "scenes",
        "vectors",
    ]
    assert not [p for p in out.rglob("*") if TMP_MARK in p.name]
