"""Web-map tiles without georeferencing are placed by the tile address in their name."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.warp import transform_bounds
from typer.testing import CliRunner

from geoseg.cli import app
from geoseg.errors import SceneError
from geoseg.scenes import open_pixels
from geoseg.xyz import HALF_WORLD_M, XYZTile, open_xyz_tile, tile_address

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
