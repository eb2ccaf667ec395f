"""Web-map tiles without georeferencing are placed by the tile address in their name."""

from __future__ import annotations

import os

import numpy as np
import pytest
import rasterio
import shapely
from rasterio.errors import NotGeoreferencedWarning
from rasterio.warp import transform_bounds
from typer.testing import CliRunner

from geoseg.cli import app
from geoseg.errors import SceneError
from geoseg.scenes import open_pixels, open_scene, read_window
from geoseg.vectorize import read_features
from geoseg.xyz import HALF_WORLD_M, XYZTile, open_xyz_tile, tile_address
from geoseg.xyz_mosaic import write_mosaic_vrt
from tests.conftest import SHIPPED_MODEL

TILE = "OAM-1772464-966380-21"  # a Philippines tile of the HOT/RAMP data (area 4)


def test_tile_bounds_follow_the_web_mercator_scheme():
    assert XYZTile(0, 0, 0).bounds == (-HALF_WORLD_M, -HALF_WORLD_M, HALF_WORLD_M, HALF_WORLD_M)
    assert XYZTile(1, 0, 1).bounds == (0.0, 0.0, HALF_WORLD_M, HALF_WORLD_M)  # y counts from the north
    assert XYZTile(0, 3, 2).bounds == pytest.approx(
        (-HALF_WORLD_M, -HALF_WORLD_M, -HALF_WORLD_M / 2, -HALF_WORLD_M / 2)
    )


def test_address_comes_from_a_fair_name_or_a_z_x_y_layout(tmp_path):
    assert tile_address(tmp_path / "OAM-1772464-966380-21.png") == XYZTile(1772464, 966380, 21)
    assert tile_address(tmp_path / "21" / "1772464" / "966380.jpg") == XYZTile(1772464, 966380, 21)
    with pytest.raises(SceneError, match=r"photo\.png: name is not an XYZ tile address"):
        tile_address(tmp_path / "photo.png")
    with pytest.raises(SceneError, match=r"OAM-4-0-2\.png: not an XYZ tile address"):
        tile_address(tmp_path / "OAM-4-0-2.png")  # x must be < 2**z


def test_real_tile_lands_where_the_datasets_own_georeferenced_mask_is(sample_data):
    ramp = sample_data / "labeled" / "hotosm-ramp"
    scene = open_xyz_tile(ramp / "tiles" / "4" / f"{TILE}.png")
    assert scene.crs.to_epsg() == 3857 and (scene.width, scene.height) == (256, 256)
    with rasterio.open(ramp / "tile-labels" / "4" / f"{TILE}.tif") as mask:  # written by fAIr, EPSG:4326
        expected = mask.bounds
    lonlat = transform_bounds(scene.crs, "EPSG:4326", *scene.bounds)
    assert np.allclose(lonlat, expected, atol=1e-9, rtol=0)  # 1e-9° ≈ 0.1 mm


def test_georeference_command_writes_geotiffs_and_reports_bad_tiles(sample_data, tmp_path):
    source = sample_data / "labeled" / "hotosm-ramp" / "tiles" / "4" / f"{TILE}.png"
    tiles = tmp_path / "tiles"
    tiles.mkdir()
    (tiles / source.name).write_bytes(source.read_bytes())
    (tiles / "notes.png").write_text("not a tile")
    result = CliRunner().invoke(app, ["tiles", "georeference", str(tiles), "--out", str(tmp_path / "tif")])
    assert result.exit_code == 1
    assert "notes.png: name is not an XYZ tile address" in result.output
    assert "1 GeoTIFFs" in result.output and "1 skipped" in result.output
    assert [p.name for p in (tmp_path / "tif").iterdir()] == [f"{TILE}.tif"]
    with rasterio.open(tmp_path / "tif" / f"{TILE}.tif") as out, open_pixels(str(source)) as raw:
        assert out.crs.to_epsg() == 3857
        assert out.bounds == pytest.approx(XYZTile(1772464, 966380, 21).bounds, abs=1e-6)
        assert np.array_equal(out.read(), raw.read())


BLOCK = [(1772467, 966381), (1772468, 966381), (1772467, 966382), (1772468, 966382)]  # 2×2, zoom 21


def _copy_tiles(sample_data, tmp_path, names):
    folder = tmp_path / "tiles"
    folder.mkdir(exist_ok=True)
    for name in names:
        source = sample_data / "labeled" / "hotosm-ramp" / "tiles" / "4" / name
        (folder / name).write_bytes(source.read_bytes())
    return folder


def test_mosaic_places_every_tile_of_the_zoom_and_marks_missing_ones_nodata(sample_data, tmp_path):
    names = [f"OAM-{x}-{y}-21.png" for x, y in BLOCK[:3]] + ["OAM-886233-483190-20.png"]  # + their parent
    folder = _copy_tiles(sample_data, tmp_path, names)
    mosaic, skipped = write_mosaic_vrt(sorted(folder.iterdir()), tmp_path / "mosaic" / "block.vrt")
    assert skipped == []
    scene = open_scene(mosaic)
    assert (scene.width, scene.height) == (512, 512) and scene.crs.to_epsg() == 3857
    assert scene.bands == (1, 2, 3)  # the alpha band marks coverage, it is not read as data
    west, _, _, north = XYZTile(*BLOCK[0], 21).bounds
    _, south, east, _ = XYZTile(*BLOCK[3], 21).bounds
    assert scene.bounds == pytest.approx((west, south, east, north), abs=1e-6)
    pixels, valid = read_window(scene, scene.window)
    for name, (x, y) in zip(names, BLOCK[:3], strict=False):
        with open_pixels(str(folder / name)) as tile:
            row, col = (y - BLOCK[0][1]) * 256, (x - BLOCK[0][0]) * 256
            assert np.array_equal(pixels[:, row : row + 256, col : col + 256], tile.read())
    assert valid[:256].all() and valid[256:, :256].all() and not valid[256:, 256:].any()  # 4th is missing


def test_mosaic_skips_unusable_tiles_naming_each_and_keeps_the_rest(sample_data, tmp_path):
    good = f"OAM-{BLOCK[0][0]}-{BLOCK[0][1]}-21.png"
    folder = _copy_tiles(sample_data, tmp_path, [good])
    odd = folder / f"OAM-{BLOCK[1][0]}-{BLOCK[1][1]}-21.png"
    png = {"driver": "PNG", "width": 128, "height": 128, "count": 3, "dtype": "uint8"}
    with pytest.warns(NotGeoreferencedWarning), rasterio.open(odd, "w", **png) as dst:  # no georeference
        dst.write(np.zeros((3, 128, 128), dtype=np.uint8))
    truncated = folder / f"OAM-{BLOCK[2][0]}-{BLOCK[2][1]}-21.png"
    truncated.write_bytes((folder / good).read_bytes()[:3000])
    pipe = folder / f"OAM-{BLOCK[3][0]}-{BLOCK[3][1]}-21.png"
    os.mkfifo(pipe)
    vrt = tmp_path / "block.vrt"
    result = CliRunner().invoke(app, ["tiles", "mosaic", str(folder), "--out", str(vrt)])
    assert result.exit_code == 1
    assert f"skipped {odd}: tile is 128×128 px" in result.output
    assert f"skipped {truncated}:" in result.output
    assert f"skipped {pipe}: is not a regular file" in result.output
    assert "256×256 px" in result.output  # the mosaic is the usable tile alone
    scene = open_scene(vrt)
    assert scene.bounds == pytest.approx(XYZTile(*BLOCK[0], 21).bounds, abs=1e-6)


def test_buildings_across_tile_borders_are_single_polygons_on_a_mosaic(sample_data, tmp_path):
    """Per-tile prediction cuts every building at the tile edge; the mosaic is one scene."""
    folder = _copy_tiles(sample_data, tmp_path, [f"OAM-{x}-{y}-21.png" for x, y in BLOCK])
    runner = CliRunner()
    vrt, mask, vectors = tmp_path / "block.vrt", tmp_path / "mask.tif", tmp_path / "block.gpkg"
    steps = [
        ["tiles", "mosaic", str(folder), "--out", str(vrt)],
        [
            "predict",
            str(vrt),
            "--model",
            str(SHIPPED_MODEL),
            "--out",
            str(mask),
            "--device",
            "cpu",
            "--tile-size",
            "256",
        ],
        ["vectorize", str(mask), "--out", str(vectors)],
    ]
    for args in steps:
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    polygons = read_features(vectors)
    west, south, east, north = polygons.total_bounds
    middle_x, middle_y = XYZTile(*BLOCK[0], 21).bounds[2], XYZTile(*BLOCK[0], 21).bounds[1]
    borders = shapely.MultiLineString(
        [[(middle_x, south), (middle_x, north)], [(west, middle_y), (east, middle_y)]]
    )
    assert polygons.crs.to_epsg() == 3857
    assert polygons.intersects(borders).sum() >= 3  # 9 labelled buildings cross these borders
