"""Hostile and broken inputs, tried as an attacker and as a clumsy user would (issue 10).

Every case runs the real ``geoseg`` command in a subprocess and checks the promise of the
README: exit code ≠ 0, exactly one ``geoseg: error:`` line naming the file or field, no
traceback, and nothing outside the output changed: a sentinel folder beside it and every
input file (scene, model, catalog) keep their bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from geoseg.atomic import TMP_MARK
from geoseg.runlock import output_lock
from tests.conftest import SHIPPED_MODEL, raw_vrt_of, vrt_of

pytestmark = pytest.mark.usefixtures("sample_data")


def geoseg(
    *args: object, cwd: Path, timeout: float = 240, max_file_bytes: int | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a geoseg command; ``max_file_bytes`` makes every write past that size fail (EFBIG), as
    a full disk would, but only for this process."""
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("GEOSEG_DEBUG", None)

    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))

    return subprocess.run(
        [sys.executable, "-m", "geoseg", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        preexec_fn=None if max_file_bytes is None else limit_file_size,
    )


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one error line of a failed command (asserting there is exactly one, and no traceback)."""
    assert result.returncode not in (0, 1), result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("geoseg: error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def digest(folder: Path) -> dict[str, str]:
    """Content hash of every file under ``folder`` (links followed)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def world(tmp_path, sample_data):
    """inputs/ (a real scene, the model), work/ (where commands run), victim/ (must not change)."""
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    shutil.copy(sample_data / "labeled" / "spacenet-atlanta-sn4" / "image.tif", inputs / "scene.tif")
    shutil.copy(SHIPPED_MODEL, inputs / "model.safetensors")
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("do not touch")
    work = tmp_path / "work"
    work.mkdir()
    before = {"inputs": digest(inputs), "victim": digest(victim)}
    yield tmp_path
    assert digest(inputs) == before["inputs"], "an input file changed"
    assert digest(victim) == before["victim"], "a file outside the output changed"


def predict(world: Path, *args: object) -> subprocess.CompletedProcess[str]:
    device = [] if "--device" in args else ["--device", "cpu"]
    return geoseg(
        "predict", *args, "--model", world / "inputs" / "model.safetensors", *device, cwd=world / "work"
    )


# --- geoseg predict: outputs that would destroy something --------------------------------


def test_predict_refuses_to_write_over_its_input_scene(world):
    scene = world / "inputs" / "scene.tif"
    line = error_line(predict(world, scene, "--out", scene))
    assert str(scene) in line and "input" in line


def test_predict_refuses_an_output_that_links_to_its_input(world):
    link = world / "work" / "mask.tif"
    link.symlink_to(world / "inputs" / "scene.tif")
    line = error_line(predict(world, world / "inputs" / "scene.tif", "--out", link))
    assert "mask.tif" in line and "input" in line


def test_predict_refuses_to_write_over_the_model(world):
    model = world / "inputs" / "model.safetensors"
    line = error_line(predict(world, world / "inputs" / "scene.tif", "--out", model))
    assert "model.safetensors" in line


def test_predict_refuses_an_existing_folder_as_output(world):
    folder = world / "work" / "existing.tif"
    folder.mkdir()
    line = error_line(predict(world, world / "inputs" / "scene.tif", "--out", folder))
    assert "existing.tif" in line and "folder" in line
    assert folder.is_dir()


def test_predict_never_replaces_a_special_file(world):
    fifo = world / "work" / "pipe.tif"
    os.mkfifo(fifo)
    line = error_line(predict(world, world / "inputs" / "scene.tif", "--out", fifo))
    assert "pipe.tif" in line
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this system")
def test_predict_to_a_device_node_leaves_the_device_alone(world):
    error_line(predict(world, world / "inputs" / "scene.tif", "--out", "/dev/full"))
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_predict_into_a_folder_that_cannot_exist_is_one_line(world):
    blocker = world / "work" / "a-file"
    blocker.write_text("x")
    line = error_line(predict(world, world / "inputs" / "scene.tif", "--out", blocker / "mask.tif"))
    assert "a-file" in line


@pytest.mark.parametrize("out", ["mask.tif", "v.gpkg", "v.shp", "v.geojson", "v.fgb"])
def test_a_write_that_fails_half_way_is_one_line_naming_the_output_and_leaves_no_file(world, out):
    work = world / "work"
    scene = world / "inputs" / "scene.tif"
    if out.endswith(".tif"):
        result = geoseg("predict", scene, "--out", out, "--device", "cpu", cwd=work, max_file_bytes=4096)
    else:
        assert predict(world, scene, "--out", "mask.tif").returncode == 0
        result = geoseg("vectorize", "mask.tif", "--out", out, cwd=work, max_file_bytes=100)
    line = error_line(result)  # the reason is GDAL's or the OS's: "File too large", "disk I/O error" …
    assert line.startswith(f"geoseg: error: {out}: cannot be written (") and len(line) < 200
    assert sorted(p.name for p in work.iterdir()) == ([] if out.endswith(".tif") else ["mask.tif"])


def test_a_predict_killed_by_sigkill_leaves_temporaries_that_the_next_predict_removes(world, sample_data):
    work = world / "work"
    command = [
        sys.executable,
        "-m",
        "geoseg",
        "predict",
        sample_data / "edge" / "cogeo.tif",
        "--out",
        "m.tif",
    ]
    killed = subprocess.Popen([*map(str, command), "--device", "cpu"], cwd=work, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not [p for p in work.iterdir() if TMP_MARK in p.name] and time.monotonic() < deadline:
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert [p for p in work.iterdir() if TMP_MARK in p.name], "no working file to leave behind"
    assert predict(world, world / "inputs" / "scene.tif", "--out", "m.tif").returncode == 0
    assert [p.name for p in work.iterdir()] == ["m.tif"]


# --- geoseg predict: values that used to give tracebacks or wrong masks --------------------


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--tile-size", 0),
        ("--batch-size", 0),
        ("--batch-size", -1),
        ("--block-size", 0),
        ("--halo", -3),
        ("--device", "tpu"),
    ],
)
def test_predict_refuses_bad_option_values_naming_the_option(world, option, value):
    out = world / "work" / "mask.tif"
    line = error_line(predict(world, world / "inputs" / "scene.tif", "--out", out, option, value))
    assert option.lstrip("-").split("-")[0] in line or str(value) in line
    assert not out.exists()


def test_predict_with_a_halo_below_the_receptive_radius_warns_of_seams(world):
    out = world / "work" / "mask.tif"
    result = predict(world, world / "inputs" / "scene.tif", "--out", out, "--halo", 0)
    assert result.returncode == 0, result.stderr
    assert "geoseg: warning: halo 0 px" in result.stderr and "seams" in result.stderr
    assert out.exists()


def write_tif(path: Path, pixels: np.ndarray, crs: str | None = "EPSG:32636", **profile: object) -> Path:
    bands, height, width = pixels.shape
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=bands,
        dtype=pixels.dtype,
        crs=crs,
        transform=from_origin(500_000, 10_000, 0.3, 0.3),
        **profile,
    ) as dst:
        dst.write(pixels)
    return path


def hostile_scene(kind: str, folder: Path, sample_data: Path) -> Path:
    """A scene file that must be refused with one line naming it."""
    rgb = (np.arange(3 * 64 * 64) % 251).astype(np.uint8).reshape(3, 64, 64)
    if kind == "missing":
        return folder / "missing.tif"
    if kind == "not-a-geotiff":
        (folder / "notes.tif").write_text("just text\n")
        return folder / "notes.tif"
    if kind == "truncated":
        data = (sample_data / "edge" / "cogeo.tif").read_bytes()
        (folder / "truncated.tif").write_bytes(data[: len(data) // 3])
        return folder / "truncated.tif"
    if kind == "no-crs":
        return sample_data / "edge" / "no-georeference.tif"
    if kind == "wrong-band-count":
        return sample_data / "edge" / "float64-4band.tif"
    if kind == "all-nodata":
        return write_tif(folder / "nodata.tif", np.zeros_like(rgb), nodata=0)
    if kind == "complex":
        return write_tif(folder / "complex.tif", rgb.astype(np.complex64))
    raise AssertionError(kind)


def write_huge_header(path: Path) -> Path:
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=1_000_000,
        height=1_000_000,
        count=3,
        dtype="uint8",
        crs="EPSG:32636",
        transform=from_origin(500_000, 10_000, 0.3, 0.3),
        tiled=True,
        sparse_ok=True,
    ):
        pass
    return path


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("missing", "not found"),
        ("not-a-geotiff", "not a readable raster"),
        ("truncated", ""),
        ("no-crs", "no CRS"),
        ("wrong-band-count", "bands"),
        ("all-nodata", "nodata"),
        ("complex", "complex"),
    ],
)
def test_predict_refuses_a_bad_scene_naming_it(world, sample_data, kind, reason):
    scene = hostile_scene(kind, world / "work", sample_data)
    out = world / "work" / "mask.tif"
    line = error_line(predict(world, scene, "--out", out))
    assert scene.name in line and reason in line
    assert not out.exists()
    assert not [p for p in (world / "work").iterdir() if p.name.startswith(".")], "temporary left behind"


@pytest.mark.parametrize("nodata", [None, float("nan")])
def test_non_finite_pixels_are_nodata_in_the_mask(world, nodata):
    from geoseg.inference import Predictor
    from geoseg.predict import predict_scene

    with rasterio.open(world / "inputs" / "scene.tif") as src:
        pixels = src.read().astype(np.float32)
    pixels[:, 10, 10] = np.nan
    pixels[1, 20, 30] = np.inf
    pixels[2, 40, 50] = -np.inf
    scene = write_tif(world / "work" / "float.tif", pixels, nodata=nodata)
    predictor = Predictor.from_checkpoint(world / "inputs" / "model.safetensors", "cpu")
    out = predict_scene(scene, predictor, world / "work" / "mask.tif")
    with rasterio.open(out) as mask:
        classes = mask.read(1)
    bad = np.zeros(classes.shape, bool)
    bad[10, 10] = bad[20, 30] = bad[40, 50] = True
    assert (classes[bad] == 255).all()
    assert (classes[~bad] != 255).all()


def test_a_file_name_with_control_characters_gives_one_whole_line_that_cannot_drive_the_terminal(world):
    odd = world / "work" / "new\nline\x1b[2J.tif"
    odd.write_text("not a raster")
    line = error_line(predict(world, odd, "--out", "mask.tif"))
    assert "new\\nline\\x1b[2J.tif: not a readable raster" in line and "\x1b" not in line


def test_predict_refuses_a_scene_larger_than_the_limit_before_reading_it(world):
    scene = write_huge_header(world / "work" / "huge.tif")
    line = error_line(predict(world, scene, "--out", world / "work" / "mask.tif"))
    assert "huge.tif" in line and "1000000×1000000" in line and "GEOSEG_MAX_SCENE_PIXELS" in line
    assert not [p for p in (world / "work").iterdir() if p.name.startswith(".")], "temporary left behind"


@pytest.mark.parametrize(
    "command",
    [
        ["run", "pipe.yaml"],
        ["run", "workflow.yaml"],  # its inputs: a STAC file that is a pipe
        ["vectorize", "pipe.tif", "--out", "polygons.gpkg"],
        ["evaluate", "MODEL", "--images", "SCENE", "--labels", "pipe.gpkg", "--device", "cpu"],
    ],
)
def test_a_named_pipe_where_a_file_is_read_is_one_line_not_a_wait(world, command):
    for pipe in ("pipe.yaml", "pipe.json", "pipe.tif", "pipe.gpkg"):
        os.mkfifo(world / "work" / pipe)
    write_workflow(world, inputs="pipe.json")
    named = {"MODEL": world / "inputs" / "model.safetensors", "SCENE": world / "inputs" / "scene.tif"}
    result = geoseg(*[named.get(arg, arg) for arg in command], cwd=world / "work", timeout=60)
    assert "not a regular file" in error_line(result)


# --- other commands --------------------------------------------------------------------------


def test_vectorize_refuses_an_existing_folder_as_output(world):
    mask = world / "work" / "mask.tif"
    assert predict(world, world / "inputs" / "scene.tif", "--out", mask).returncode == 0
    (world / "work" / "polygons.gpkg").mkdir()
    line = error_line(geoseg("vectorize", mask, "--out", "polygons.gpkg", cwd=world / "work"))
    assert "polygons.gpkg" in line


def test_vectorize_refuses_to_write_over_its_mask(world):
    mask = world / "work" / "mask.tif"
    assert predict(world, world / "inputs" / "scene.tif", "--out", mask).returncode == 0
    link = world / "work" / "mask.gpkg"
    link.symlink_to(mask)
    before = mask.read_bytes()
    line = error_line(geoseg("vectorize", mask, "--out", link, cwd=world / "work"))
    assert "mask.gpkg" in line and "input" in line
    assert mask.read_bytes() == before


def test_catalog_build_refuses_a_folder_as_output(world):
    (world / "work" / "catalog.json").mkdir()
    line = error_line(
        geoseg("catalog", "build", world / "inputs", "--out", "catalog.json", cwd=world / "work")
    )
    assert "catalog.json" in line


def test_catalog_build_never_writes_over_a_scene(world):
    line = error_line(
        geoseg(
            "catalog", "build", world / "inputs", "--out", world / "inputs" / "scene.tif", cwd=world / "work"
        )
    )
    assert "never overwrites an input" in line


def test_catalog_build_keeps_two_scenes_with_the_same_file_name(world):
    for folder in ("north", "south"):
        (world / "work" / folder).mkdir()
        shutil.copy(world / "inputs" / "scene.tif", world / "work" / folder / "scene.tif")
    result = geoseg("catalog", "build", "north", "south", "--out", "cat/catalog.json", cwd=world / "work")
    assert result.returncode == 0, result.stderr
    catalog = json.loads((world / "work" / "cat" / "catalog.json").read_text())
    items = [link["href"] for link in catalog["links"] if link["rel"] == "item"]
    assert len(items) == 2
    ids = {json.loads((world / "work" / "cat" / href).read_text())["id"] for href in items}
    assert ids == {"north-scene", "south-scene"}


def test_tiles_commands_never_write_over_a_tile(world, sample_data):
    tile = next((sample_data / "labeled" / "hotosm-ramp" / "tiles").rglob("OAM-*-20.png"))
    tiles = world / "work" / "tiles"
    tiles.mkdir()
    with rasterio.open(tile) as src:  # a tile that is already a GeoTIFF of the name georeference writes
        profile = {"driver": "GTiff", "width": src.width, "height": src.height, "count": 3, "dtype": "uint8"}
        with rasterio.open(tiles / "1000-2000-20.tif", "w", **profile) as dst:
            dst.write(src.read([1, 2, 3]))
    before = digest(tiles)
    georeferenced = geoseg(
        "tiles", "georeference", "tiles", "--out", "tiles", "--pattern", "*.tif", cwd=world / "work"
    )
    assert georeferenced.returncode == 1 and "never overwrites an input" in georeferenced.stderr
    mosaic = geoseg(
        "tiles",
        "mosaic",
        "tiles",
        "--out",
        "tiles/1000-2000-20.tif",
        "--pattern",
        "*.tif",
        cwd=world / "work",
    )
    assert "never overwrites an input" in error_line(mosaic)
    assert digest(tiles) == before


def test_tiles_mosaic_of_tiles_at_opposite_ends_of_the_world_is_refused(world, sample_data):
    tile = next((sample_data / "labeled" / "hotosm-ramp" / "tiles").rglob("OAM-*-20.png"))
    tiles = world / "work" / "tiles"
    tiles.mkdir()
    shutil.copy(tile, tiles / "OAM-0-0-20.png")
    shutil.copy(tile, tiles / f"OAM-{2**20 - 1}-{2**20 - 1}-20.png")
    line = error_line(geoseg("tiles", "mosaic", "tiles", "--out", "far.vrt", cwd=world / "work"))
    assert "far.vrt" in line and "GEOSEG_MAX_SCENE_PIXELS" in line
    assert not (world / "work" / "far.vrt").exists()


def evaluate(world: Path, labels: str, *extra: object) -> subprocess.CompletedProcess[str]:
    images = str(world / "inputs" / "scene.tif")
    model = world / "inputs" / "model.safetensors"
    return geoseg(
        "evaluate",
        model,
        "--images",
        images,
        "--labels",
        labels,
        "--device",
        "cpu",
        *extra,
        cwd=world / "work",
    )


@pytest.mark.parametrize(
    ("features", "reason"),
    [
        ([], "no polygon labels"),
        (
            [{"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [0, 0]}}],
            "no polygon",
        ),
    ],
)
def test_evaluate_refuses_labels_with_nothing_to_score_against(world, features, reason):
    (world / "work" / "labels.geojson").write_text(
        json.dumps({"type": "FeatureCollection", "features": features})
    )
    line = error_line(evaluate(world, "labels.geojson"))
    assert "labels.geojson" in line and reason in line


def test_evaluate_refuses_a_mask_without_one_labelled_pixel_instead_of_scoring_it_perfect(world):
    with rasterio.open(world / "inputs" / "scene.tif") as src:
        profile = {**src.profile, "count": 1, "dtype": "float32", "nodata": None}
        shape = (1, src.height, src.width)
    with rasterio.open(world / "work" / "scene.mask.tif", "w", **profile) as dst:
        dst.write(np.full(shape, np.nan, dtype=np.float32))
    result = geoseg(
        "evaluate",
        world / "inputs" / "model.safetensors",
        "--images",
        world / "inputs" / "scene.tif",
        "--masks",
        "{stem}.mask.tif",
        "--device",
        "cpu",
        cwd=world / "work",
    )
    assert "no labelled pixel on the 1 scenes" in error_line(result)


def test_evaluate_refuses_labels_with_nan_coordinates(world):
    ring = [[-84.4, 33.6], [-84.39, 33.6], [float("nan"), 33.61], [-84.4, 33.6]]
    feature = {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}
    (world / "work" / "labels.geojson").write_text(
        json.dumps({"type": "FeatureCollection", "features": [feature]})
    )
    line = error_line(evaluate(world, "labels.geojson"))
    assert "labels.geojson" in line


def test_evaluate_refuses_a_negative_tolerance(world):
    (world / "work" / "labels.geojson").write_text('{"type": "FeatureCollection", "features": []}')
    assert "--tolerance" in error_line(evaluate(world, "labels.geojson", "--tolerance", -3))


# --- geoseg run: workflow and catalog mistakes, refused before any work ------------------------


def write_workflow(world: Path, **fields: object) -> Path:
    workflow = {
        "inputs": str(world / "inputs" / "scene.tif"),
        "model": str(world / "inputs" / "model.safetensors"),
        "output": "out",
        "cluster": {"n_workers": 1, "dashboard_address": ":0"},
        "inference": {"device": "cpu"},
        **fields,
    }
    path = world / "work" / "workflow.yaml"  # JSON is YAML
    path.write_text(json.dumps(workflow))
    return path


def stac_file(world: Path, document: object, name: str = "hostile.json") -> str:
    path = world / "work" / name
    path.write_text(json.dumps(document))
    return str(path)


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"output": "existing-file"}, "output"),
        ({"output": "/"}, "output: a filesystem root"),
        ({"cluster": {"memory_limit": "lots"}}, "memory_limit"),
        ({"cluster": {"memory_limit": "50MB"}}, "a worker needs at least 1GiB"),  # it waited for good
        ({"cluster": {"memory_limit": "-5GB"}}, "a worker needs at least 1GiB"),
        ({"cluster": {"memory_limit": 2.5}}, "a number is a fraction of RAM"),
        ({"cluster": {"dashboard_address": "999.1.1.1:80"}}, "is no host name or address"),
        ({"cluster": {"dashboard_address": "8.8.8.8:8787"}}, "is not an address of this machine"),
        ({"cluster": {"dashboard_address": "[::1]:0"}}, "cluster.dashboard_address"),
        ({"tiling": {"halo_px": 4000}}, "tiling.halo_px"),
        ({"inference": {"device": "cuda:15"}}, "inference.device: cuda:15, but this machine shows"),
        ({"output": ""}, "output"),
        ({"outputs": {"vector_formats": ["gpkg", "geojson", "gpkg"]}}, "lists gpkg more than once"),
        ({"outputs": {"vector_formats": []}}, "outputs.run_layer': gathers the scenes' vectors"),
        ({"cluster": {"dashboard_address": "not an address"}}, "dashboard_address"),
        ({"inference": {"device": "tpu"}}, "inference.device"),
        ({"inference": {"batch_size": 0}}, "inference.batch_size"),
        ({"tiling": {"batch_size": 8}}, "tiling.batch_size': moved: write it as inference.batch_size"),
        ({"tiling": {"tile_size_px": 0}}, "tile_size_px"),
        ({"outputs": {"vector_formats": ["exe"]}}, "vector_formats"),
        ({"outputs": {"simplify_tolerance_m": "Infinity"}}, "outputs.simplify_tolerance_m"),
        ({"bands": [0, 1, 2]}, "bands.0"),
        ({"bands": []}, "bands"),
        ({"colour": "blue"}, "colour"),
        ({"inputs": "nowhere/*.tif"}, "nowhere/*.tif"),
    ],
)
def test_run_refuses_a_bad_workflow_field_naming_it(world, fields, named):
    (world / "work" / "existing-file").write_text("x")
    line = error_line(geoseg("run", write_workflow(world, **fields), cwd=world / "work"))
    assert named in line


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ([1, 2, 3], "not a STAC object"),
        (None, "not a STAC object"),
        ({"type": "Feature", "id": "x"}, "hostile.json"),
        ({"type": "FeatureCollection", "features": {"type": "Feature"}}, "'features' is not a list"),
    ],
)
def test_run_refuses_a_malformed_stac_file_naming_it(world, document, reason):
    line = error_line(
        geoseg("run", write_workflow(world, inputs=stac_file(world, document)), cwd=world / "work")
    )
    assert "hostile.json" in line and reason in line


def test_run_refuses_a_catalog_whose_links_form_a_cycle(world):
    catalog = {"type": "Catalog", "stac_version": "1.0.0", "id": "loop", "description": "d", "links": []}
    catalog["links"] = [
        {"rel": "self", "href": str(world / "work" / "loop.json")},
        {"rel": "child", "href": "./loop.json"},
    ]
    path = stac_file(world, catalog, "loop.json")
    line = error_line(geoseg("run", write_workflow(world, inputs=path), cwd=world / "work"))
    assert "loop.json" in line and "cycle" in line


def test_run_refuses_an_unreachable_scheduler_quickly(world):
    result = geoseg("run", write_workflow(world), "--scheduler", "garbage://x", cwd=world / "work")
    assert "garbage://x" in error_line(result)


def test_a_second_run_into_an_output_held_by_a_live_run_is_refused_naming_the_lock(world):
    with output_lock(world / "work" / "out") as lock:
        line = error_line(geoseg("run", write_workflow(world), cwd=world / "work"))
        assert str(lock) in line and f"pid {os.getpid()}" in line
        assert lock.exists()


# --- geoseg run: hostile catalogs, with a real cluster --------------------------------------


def item(scene: Path, item_id: str) -> dict[str, object]:
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": item_id,
        "geometry": None,
        "properties": {"datetime": "2020-01-01T00:00:00Z"},
        "links": [],
        "assets": {
            "image": {"href": str(scene), "type": "image/tiff; application=geotiff", "roles": ["data"]}
        },
    }


@pytest.mark.slow
def test_ids_that_name_paths_stay_inside_the_output_and_delete_nothing(world):
    scene = world / "inputs" / "scene.tif"
    absolute = world / "victim"
    ids = [str(absolute), "../../victim", "..", ".hidden", "CON", "good"]
    collection = {"type": "FeatureCollection", "features": [item(scene, i) for i in ids]}
    workflow = write_workflow(
        world, inputs=stac_file(world, collection), outputs={"vector_formats": ["gpkg"]}
    )
    result = geoseg("run", workflow, cwd=world / "work")
    assert result.returncode == 0, result.stderr
    out = (world / "work" / "out").resolve()
    written = [p for p in out.rglob("*") if p.is_file()]
    assert all(p.resolve().is_relative_to(out) for p in written)
    masks = sorted(p.name for p in (out / "masks").iterdir())
    assert len(masks) == len(ids) and "good.tif" in masks
    assert not any(name.startswith(".") for name in masks)
    report = json.loads((out / "run-report.json").read_text())
    assert sorted(s["id"] for s in report["scenes"]) == sorted(ids)
    assert all(s["status"] == "ok" for s in report["scenes"])
    assert not list(world.glob("victim.*")), "outputs were written beside the victim folder"


@pytest.mark.slow
def test_hrefs_that_are_no_scene_file_fail_their_scene_alone_without_waiting(world):
    os.mkfifo(world / "work" / "pipe.tif")
    vrt_of("pipe.tif", world / "work" / "pipe.vrt")
    raw_vrt_of(Path("/etc/passwd"), world / "work" / "raw.vrt")
    hrefs = {
        "empty": ("", "empty href"),
        "nul": (f"{world}/inputs/sce\0ne.tif", "NUL character"),
        "stdin": ("/vsistdin/", "standard input"),
        "device": ("/dev/zero", "not a regular file"),
        "vrt-of-a-pipe": (str(world / "work" / "pipe.vrt"), "pipe.tif, which is not a regular file"),
        "vrt-raw-band": (str(world / "work" / "raw.vrt"), "reads a VRT raw band"),
        "good": (str(world / "inputs" / "scene.tif"), None),
    }
    collection = {"type": "FeatureCollection", "features": [item(Path(h), i) for i, (h, _) in hrefs.items()]}
    for feature, (href, _) in zip(collection["features"], hrefs.values(), strict=True):
        feature["assets"]["image"]["href"] = href
    collection["features"].append({"type": "Feature", "id": "malformed"})
    hrefs["malformed"] = ("", "not a readable STAC item")
    workflow = write_workflow(world, inputs=stac_file(world, collection))
    result = geoseg("run", workflow, cwd=world / "work", timeout=120)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    report = json.loads((world / "work" / "out" / "run-report.json").read_text())
    status = {s["id"]: s for s in report["scenes"]}
    assert status["good"]["status"] == "ok"
    for scene_id, (_, reason) in hrefs.items():
        if reason is not None:
            assert status[scene_id]["status"] == "failed" and reason in status[scene_id]["error"], scene_id


@pytest.mark.slow
def test_run_never_overwrites_an_input_lying_where_an_output_goes(world):
    masks = world / "work" / "masks"
    masks.mkdir()
    shutil.copy(world / "inputs" / "scene.tif", masks / "good.tif")
    shutil.copy(world / "inputs" / "scene.tif", world / "work" / "other.tif")
    before = (masks / "good.tif").read_bytes()
    workflow = write_workflow(world, inputs=["masks/good.tif", "other.tif"], output=".")
    result = geoseg("run", workflow, cwd=world / "work")
    assert result.returncode == 1, result.stderr
    assert (masks / "good.tif").read_bytes() == before
    report = json.loads((world / "work" / "run-report.json").read_text())
    status = {s["id"]: s for s in report["scenes"]}
    assert status["good"]["status"] == "failed" and "never overwrites an input" in status["good"]["error"]
    assert status["other"]["status"] == "ok"


def test_a_scene_whose_names_differ_from_another_only_in_case_fails_alone(world):
    for name in ("Case.tif", "case.tif"):
        shutil.copy(world / "inputs" / "scene.tif", world / "work" / name)
    result = geoseg("run", write_workflow(world, inputs=["Case.tif", "case.tif"]), cwd=world / "work")
    assert result.returncode == 1, result.stderr
    report = json.loads((world / "work" / "out" / "run-report.json").read_text())
    status = {s["id"]: s for s in report["scenes"]}
    assert status["Case"]["status"] == "ok" and status["case"]["status"] == "failed"
    assert "the file names of scene 'Case' on case-insensitive file systems" in status["case"]["error"]
    assert sorted(p.name for p in (world / "work" / "out" / "masks").iterdir()) == ["Case.tif"]


@pytest.mark.slow
def test_a_replaced_input_is_redone_not_skipped(world, sample_data):
    scene = world / "work" / "scene.tif"
    shutil.copy(world / "inputs" / "scene.tif", scene)
    workflow = write_workflow(world, inputs=str(scene))
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    (world / "work" / "out").mkdir()
    stale = {"host": socket.gethostname(), "pid": int(gone.stdout), "started": "yesterday"}
    (world / "work" / "out" / ".geoseg-run.lock").write_text(json.dumps(stale))
    first = geoseg("run", workflow, cwd=world / "work")
    assert first.returncode == 0, f"a stale lock must be taken over: {first.stderr}"
    assert not (world / "work" / "out" / ".geoseg-run.lock").exists()
    mask = world / "work" / "out" / "masks" / "scene.tif"
    with rasterio.open(mask) as first:
        assert first.width == 117
    shutil.copy(sample_data / "labeled" / "massachusetts-buildings" / "22978945_15.tif", scene)
    result = geoseg("run", workflow, cwd=world / "work")
    assert result.returncode == 0, result.stderr
    report = json.loads((world / "work" / "out" / "run-report.json").read_text())
    assert report["scenes"][0]["status"] == "ok", "a replaced input must not be skipped"
    with rasterio.open(mask) as second, rasterio.open(scene) as source:
        assert (second.width, second.height, second.crs) == (source.width, source.height, source.crs)


def _default_sigint() -> None:
    """Let Ctrl-C through as a terminal's foreground job has it: a test suite started in the
    background (``cmd &``, nohup) passes SIGINT on as ignored, and Python then never raises
    KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("stop", "code"),
    [
        (lambda pid: os.killpg(pid, signal.SIGINT), 130),  # Ctrl-C: every process of the group gets it
        (lambda pid: os.kill(pid, signal.SIGTERM), 143),  # kill, timeout, a job scheduler: the driver
    ],
    ids=["ctrl-c", "sigterm"],
)
def test_ctrl_c_or_sigterm_during_a_run_ends_with_one_line_and_releases_the_output(
    world, sample_data, stop, code
):
    chips = str(sample_data / "labeled" / "hotosm-ramp" / "chips" / "*.tif")
    workflow = write_workflow(world, inputs=chips, outputs={"vector_formats": ["gpkg"], "run_layer": None})
    env = {**os.environ, "COLUMNS": "200"}
    run = subprocess.Popen(
        [sys.executable, "-m", "geoseg", "run", str(workflow)],
        cwd=world / "work",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
        preexec_fn=_default_sigint,
        env=env,
    )
    records = world / "work" / "out" / "scenes"
    deadline = time.monotonic() + 120
    while not (records.is_dir() and any(records.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.2)
    stop(run.pid)
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == code, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert stderr.strip().splitlines()[-1] == "geoseg: interrupted; rerun to resume"
    assert not (world / "work" / "out" / ".geoseg-run.lock").exists()
    done = len(list(records.iterdir()))
    assert 0 < done < 118
