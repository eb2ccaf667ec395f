"""Resampling: scenes outside the model's GSD range are predicted at its GSD, masks on their own grid."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from scipy.ndimage import gaussian_filter

from geoseg.applicability import sample_pixels, scene_warnings
from geoseg.errors import SceneError
from geoseg.inference import Predictor
from geoseg.maskformat import NODATA
from geoseg.model.checkpoint import load_generator, save_checkpoint
from geoseg.model.metadata import Domain, read_metadata
from geoseg.predict import predict_scene
from geoseg.resample import (
    grid_geometry,
    model_grid,
    nearest_indices,
    resampled_blocks,
    scene_blocks,
    scene_notes,
    target_gsd_m,
)
from geoseg.scenes import MAX_PIXELS_VARIABLE, Scene, open_scene
from geoseg.tiling import TilingSpec, block_grid, tiles_in_block
from tests.conftest import SHIPPED_MODEL, make_checkpoint
from tests.distributed.conftest import geoseg, write_workflow

DOMAIN = Domain(
    gsd_min_m=0.074, gsd_max_m=0.298, mean=[128.0] * 3, std=[40.0] * 3, p1=[0.0] * 3, p99=[255.0] * 3
)
UTM = CRS.from_epsg(32636)


def _scene(gsd_m: float, width: int = 1000, height: int = 700) -> Scene:
    transform = Affine(gsd_m, 0, 450_000, 0, -gsd_m, 40_000)
    return Scene("s.tif", "s", width, height, UTM, transform, "uint8", (1, 2, 3), None, (256, 256))


def write_scene(path, gsd_m: float, width: int = 300, height: int = 260, seed: int = 0):
    """A smooth random RGB GeoTIFF (nodata 0 in its top-left corner) at ``gsd_m`` in UTM."""
    noise = np.random.default_rng(seed).normal(size=(3, height, width))
    smooth = np.stack([gaussian_filter(band, 4) for band in noise])
    pixels = np.clip(128 + smooth / smooth.std() * 50, 1, 255).astype(np.uint8)
    pixels[:, :40, :60] = 0
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": 3,
        "dtype": "uint8",
        "crs": UTM,
        "transform": Affine(gsd_m, 0, 450_000, 0, -gsd_m, 40_000),
        "nodata": 0,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(pixels)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """An untrained generator (both classes on the synthetic scenes) trained, it says, at 0.074–0.298 m."""
    folder = tmp_path_factory.mktemp("resample")
    scene = open_scene(write_scene(folder / "pixels.tif", 0.6))
    with rasterio.open(scene.path) as src:
        pixels = src.read()[:, 40:, 60:]
    path = make_checkpoint(folder / "model.safetensors", pixels)
    model, metadata = load_generator(path)
    return save_checkpoint(path, model, metadata.model_copy(update={"domain": DOMAIN}))


@pytest.fixture(scope="module")
def predictor(checkpoint):
    return Predictor.from_checkpoint(checkpoint, device="cpu", batch_size=4)


def _read(path):
    with rasterio.open(path) as mask:
        return mask.read(), (mask.crs, mask.transform, mask.width, mask.height)


def test_a_scene_in_range_or_within_the_warning_tolerance_is_not_resampled():
    assert target_gsd_m(0.15, DOMAIN) is None
    assert target_gsd_m(0.5, DOMAIN) is None, "0.5 m is within 2× of 0.298 m: no GSD warning either"
    assert target_gsd_m(0.04, DOMAIN) is None
    assert model_grid(_scene(0.15), DOMAIN) is None
    assert model_grid(_scene(0.6), None) is None, "a checkpoint without a domain reads scenes as they are"


def test_a_scene_outside_the_range_is_read_at_the_nearest_edge_of_it():
    assert target_gsd_m(0.6, DOMAIN) == DOMAIN.gsd_max_m
    assert target_gsd_m(30.0, DOMAIN) == DOMAIN.gsd_max_m
    assert target_gsd_m(0.02, DOMAIN) == DOMAIN.gsd_min_m


def test_model_grid_of_a_projected_scene_has_the_model_gsd_the_same_origin_and_covers_the_scene():
    scene = _scene(0.6, width=1000, height=700)
    grid = model_grid(scene, DOMAIN)
    assert grid is not None
    assert grid.factor == pytest.approx(0.298 / 0.6)
    assert (grid.width, grid.height) == (math.ceil(1000 / grid.factor), math.ceil(700 / grid.factor))
    assert grid.transform.a == pytest.approx(0.298) and grid.transform.e == pytest.approx(-0.298)
    assert (grid.transform.c, grid.transform.f) == (scene.transform.c, scene.transform.f)
    assert grid.width * grid.transform.a >= scene.width * scene.transform.a
    assert (grid.width - 1) * grid.transform.a < scene.width * scene.transform.a
    assert grid.note == "resampled from GSD 0.6 m to the model's 0.298 m"
    assert grid.resampling.name == "bilinear", "up-sampling is bilinear"
    assert model_grid(_scene(0.02), DOMAIN).resampling.name == "average", "down-sampling averages"


def test_grid_geometry_scales_pixels_and_rounds_the_size_up():
    transform, width, height = grid_geometry(Affine(2, 0, 10, 0, -2, 50), 5, 4, 2.0)
    assert (transform, width, height) == (Affine(4, 0, 10, 0, -4, 50), 3, 2)


def test_nearest_index_is_the_model_pixel_under_the_scene_pixel_centre():
    assert nearest_indices(0, 6, 2.0).tolist() == [0, 0, 1, 1, 2, 2]
    assert nearest_indices(0, 4, 0.5).tolist() == [1, 3, 5, 7]
    assert nearest_indices(0, 6, 1.5).tolist() == [0, 1, 1, 2, 3, 3]
    assert nearest_indices(3, 6, 1.5).tolist() == nearest_indices(0, 6, 1.5)[3:].tolist()


@pytest.mark.parametrize("gsd_m", [0.6, 0.02, 1.3])
def test_resampled_blocks_split_the_scene_by_the_model_block_under_each_pixel(gsd_m):
    scene = _scene(gsd_m, width=333, height=250)
    grid = model_grid(scene, DOMAIN)
    spec = TilingSpec.for_model(stride_px=8, receptive_radius_px=20, tile_size_px=32, block_size_px=64)
    cover = np.zeros((scene.height, scene.width), dtype=int)
    for block in resampled_blocks(scene, grid, spec):
        core, model = block.core, block.model.core
        rows = nearest_indices(int(core.row_off), int(core.row_off + core.height), grid.factor)
        cols = nearest_indices(int(core.col_off), int(core.col_off + core.width), grid.factor)
        assert model.row_off <= rows.min() and rows.max() < model.row_off + model.height
        assert model.col_off <= cols.min() and cols.max() < model.col_off + model.width
        cover[
            int(core.row_off) : int(core.row_off + core.height),
            int(core.col_off) : int(core.col_off + core.width),
        ] += 1
    assert (cover == 1).all(), "every scene pixel is in exactly one block"


def test_down_sampled_scene_blocks_stay_about_a_block_large():
    scene = _scene(0.01, width=1000, height=700)
    grid = model_grid(scene, DOMAIN)
    spec = TilingSpec.for_model(stride_px=8, receptive_radius_px=20, tile_size_px=32, block_size_px=128)
    assert grid.factor > 7
    blocks = resampled_blocks(scene, grid, spec)
    assert max(max(b.core.width, b.core.height) for b in blocks) <= 2 * spec.block_size_px
    assert max(max(b.model.core.width, b.model.core.height) for b in blocks) <= spec.block_size_px


def test_a_model_grid_over_the_scene_limit_is_refused_naming_the_scene(monkeypatch):
    monkeypatch.setenv(MAX_PIXELS_VARIABLE, "1e6")
    with pytest.raises(SceneError) as error:
        model_grid(_scene(30.0, width=100, height=100), DOMAIN)
    message = str(error.value)
    assert message.startswith("s.tif: read at the model's GSD 0.298 m it would be 10068×10068 px")
    assert "\n" not in message


def test_a_strip_whose_tiles_cost_more_than_twice_a_scene_at_the_limit_is_refused(monkeypatch):
    monkeypatch.setenv(MAX_PIXELS_VARIABLE, "1e6")
    spec = TilingSpec.for_model(stride_px=16, receptive_radius_px=58)
    assert len(scene_blocks(_scene(0.3, width=1000, height=1000), spec, None)) == 1
    assert len(scene_blocks(_scene(0.3, width=10_000, height=1), spec, None)) == 5
    with pytest.raises(SceneError) as error:
        scene_blocks(_scene(0.3, width=100_000, height=1), spec, None)
    message = str(error.value)
    assert message.startswith("s.tif: its 100000×1 px would cost the model 0.0181 Gpx of tiles")
    assert MAX_PIXELS_VARIABLE in message


def test_a_resampled_scene_gets_a_note_for_its_gsd_and_keeps_its_statistics_warning(tmp_path):
    scene = open_scene(write_scene(tmp_path / "scene.tif", 0.6))
    dark = DOMAIN.model_copy(update={"p1": [0.0] * 3, "p99": [60.0] * 3})
    sample = sample_pixels(scene)
    warnings = scene_warnings(scene, dark, sample)
    assert [w.split(" ")[0] for w in warnings] == ["GSD", "pixel"]
    assert scene_notes(scene, dark, model_grid(scene, dark), sample) == [
        "resampled from GSD 0.6 m to the model's 0.298 m",
        warnings[1],
    ]
    assert scene_notes(scene, dark, None, sample) == warnings


def test_a_real_landsat_scene_is_refused_for_the_shipped_model(sample_data):
    scene = open_scene(sample_data / "scenes/landsat8-224078-rgb.tif")
    with pytest.raises(
        SceneError, match=r"landsat8-224078-rgb.tif: read at the model's GSD 0.3 m it would be"
    ):
        model_grid(scene, read_metadata(SHIPPED_MODEL).domain)


def test_resampled_mask_is_on_the_scene_grid_and_keeps_its_nodata(predictor, tmp_path):
    scene = write_scene(tmp_path / "scene.tif", 0.6)
    out = predict_scene(scene, predictor, tmp_path / "mask.tif", tile_size_px=64, resample="model")
    (classes,), grid = _read(out)
    with rasterio.open(scene) as src:
        assert grid == (src.crs, src.transform, src.width, src.height)
        invalid = ~src.read_masks(1).astype(bool)
    assert np.array_equal(classes == NODATA, invalid)
    assert set(np.unique(classes[~invalid])) == {0, 1}
    plain = predict_scene(scene, predictor, tmp_path / "plain.tif", tile_size_px=64)
    assert (_read(plain)[0][0] != classes).mean() > 0.01, "reading at the model's GSD changes the mask"


@pytest.mark.parametrize("tta", ["none", "flips"])
def test_resampled_mask_in_small_blocks_equals_the_mask_in_one_block(checkpoint, tmp_path, tta):
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu", batch_size=3, tta=tta)
    scene = write_scene(tmp_path / "scene.tif", 0.6)
    masks = [
        _read(
            predict_scene(
                scene,
                predictor,
                tmp_path / f"mask-{block}.tif",
                tile_size_px=64,
                block_size_px=block,
                with_probability=True,
                resample="model",
            )
        )[0]
        for block in (128, 4096)
    ]
    assert np.array_equal(masks[0], masks[1])


def test_a_scene_in_range_gives_the_same_mask_file_with_and_without_resampling(predictor, tmp_path):
    scene = write_scene(tmp_path / "scene.tif", 0.2)
    outs = [
        predict_scene(scene, predictor, tmp_path / f"{mode}.tif", tile_size_px=64, resample=mode)
        for mode in ("none", "model")
    ]
    assert outs[0].read_bytes() == outs[1].read_bytes()


def _predict_cli(scene, checkpoint, out, **env):
    command = [sys.executable, "-m", "geoseg", "predict", str(scene), "--model", str(checkpoint)]
    command += ["--out", str(out), "--device", "cpu", "--tile-size", "64", "--resample", "model"]
    return subprocess.run(command, capture_output=True, text=True, env={**os.environ, **env})


def test_predict_cli_says_the_scene_was_resampled_instead_of_warning_about_its_gsd(checkpoint, tmp_path):
    result = _predict_cli(write_scene(tmp_path / "scene.tif", 0.6), checkpoint, tmp_path / "mask.tif")
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert notes == ["warning: resampled from GSD 0.6 m to the model's 0.298 m"]


def test_predict_cli_refuses_a_too_large_model_grid_in_one_line(checkpoint, tmp_path):
    scene = write_scene(tmp_path / "scene.tif", 0.6)
    result = _predict_cli(scene, checkpoint, tmp_path / "mask.tif", **{MAX_PIXELS_VARIABLE: "2e5"})
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"geoseg: error: {scene}: read at the model's GSD 0.298 m it would be 605×524 px, more than "
        f"the limit of 0.0002 Gpx (use resample: none, or raise ${MAX_PIXELS_VARIABLE})"
    ]
    assert not (tmp_path / "mask.tif").exists()


def test_run_with_resample_model_gives_predicts_mask_and_fails_a_too_large_scene_alone(
    checkpoint, predictor, tmp_path
):
    scene = write_scene(tmp_path / "scene.tif", 0.6)
    landsat = write_scene(tmp_path / "landsat.tif", 30.0, width=120, height=100, seed=1)
    workflow = write_workflow(tmp_path, [scene, landsat], checkpoint, inference={"resample": "model"})
    result = geoseg("run", str(workflow), env={**os.environ, MAX_PIXELS_VARIABLE: "2e6"})
    assert result.returncode == 1, result.stderr
    report = {s["id"]: s for s in json.loads((tmp_path / "out" / "run-report.json").read_text())["scenes"]}
    assert report["scene"]["status"] == "ok"
    assert report["scene"]["warnings"] == ["resampled from GSD 0.6 m to the model's 0.298 m"]
    grid = model_grid(open_scene(scene), read_metadata(checkpoint).domain)
    assert grid is not None
    spec = TilingSpec.for_model(  # write_workflow's tiling
        stride_px=predictor.metadata.total_stride,
        receptive_radius_px=predictor.metadata.receptive_radius_px,
        tile_size_px=128,
        block_size_px=256,
    )
    model_tiles = sum(
        len(list(tiles_in_block(b, grid.width, grid.height, spec)))
        for b in block_grid(grid.width, grid.height, spec)
    )
    assert json.loads((tmp_path / "out" / "run-report.json").read_text())["tiles"] == model_tiles
    assert report["landsat"]["status"] == "failed"
    assert report["landsat"]["error"].startswith(f"{landsat}: read at the model's GSD 0.298 m it would be")
    assert "\n" not in report["landsat"]["error"]
    expected = predict_scene(
        scene, predictor, tmp_path / "predicted.tif", tile_size_px=128, block_size_px=1024, resample="model"
    )
    assert np.array_equal(_read(tmp_path / "out" / "masks" / "scene.tif")[0], _read(expected)[0])
