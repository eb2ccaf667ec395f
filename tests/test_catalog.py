"""Catalogs: STAC in (catalog, item collection, relative hrefs, asset keys) and out."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from geoseg.catalog import build_catalog, load_inputs, unique_ids
from geoseg.errors import ConfigError
from geoseg.scenes import open_scene


def test_built_catalog_has_relative_hrefs_that_resolve_to_the_scenes(sample_data, tmp_path):
    scenes = [sample_data / "edge/RGB.byte.tif", sample_data / "labeled/landsat-albers/image.tif"]
    catalog, skipped = build_catalog(
        [*scenes, sample_data / "edge/no-georeference.tif"], tmp_path / "stac" / "catalog.json"
    )
    assert len(skipped) == 1 and "no-georeference.tif" in skipped[0]
    item = json.loads((tmp_path / "stac/RGB.byte/RGB.byte.json").read_text())
    assert not item["assets"]["image"]["href"].startswith("/")
    assert item["properties"]["proj:code"] == "EPSG:32618"
    inputs = load_inputs(str(catalog))
    assert [(s.id, s.href) for s in inputs] == [("RGB.byte", str(scenes[0])), ("image", str(scenes[1]))]
    assert all(open_scene(s.href) for s in inputs)


def test_built_catalog_hrefs_are_escaped_so_odd_file_names_come_back_whole(sample_data, tmp_path):
    (tmp_path / "scenes").mkdir()
    names = ["a#b.tif", "e?f.tif", "c%20d.tif", "g h.tif"]
    for name in names:
        shutil.copy(sample_data / "edge/RGB.byte.tif", tmp_path / "scenes" / name)
    catalog, skipped = build_catalog([tmp_path / "scenes"], tmp_path / "stac" / "catalog.json")
    assert skipped == []
    hrefs = sorted(Path(s.href).name for s in load_inputs(str(catalog)))
    assert hrefs == sorted(names)


@pytest.mark.timeout(60, method="thread")
def test_building_skips_pipes_and_scenes_off_the_earth_naming_them(sample_data, tmp_path):
    folder = tmp_path / "scenes"
    folder.mkdir()
    os.mkfifo(folder / "pipe.tif")
    profile = {"driver": "GTiff", "width": 8, "height": 8, "count": 3, "dtype": "uint8"}
    site_grid = 'LOCAL_CS["site grid",UNIT["metre",1],AXIS["X",EAST],AXIS["Y",NORTH]]'
    with rasterio.open(
        folder / "site.tif", "w", crs=site_grid, transform=Affine(1, 0, 0, 0, -1, 8), **profile
    ) as dst:
        dst.write(np.zeros((3, 8, 8), dtype=np.uint8))
    catalog, skipped = build_catalog([folder, sample_data / "edge/RGB.byte.tif"], tmp_path / "catalog.json")
    assert [s.id for s in load_inputs(str(catalog))] == ["RGB.byte"]
    assert sorted(skipped) == [
        f"{folder / 'pipe.tif'}: is not a regular file (a pipe, socket or device)",
        f"{folder / 'site.tif'}: has a CRS that cannot be placed on the Earth ('site grid'; assign a geographic or projected one)",
    ]


def test_item_collection_and_missing_asset_key(sample_data, tmp_path):
    build_catalog([sample_data / "edge/RGB.byte.tif"], tmp_path / "stac" / "catalog.json")
    item = json.loads((tmp_path / "stac/RGB.byte/RGB.byte.json").read_text())
    item["assets"]["image"]["href"] = str(sample_data / "edge/RGB.byte.tif")
    collection = tmp_path / "items.json"
    collection.write_text(json.dumps({"type": "FeatureCollection", "features": [item]}))
    assert load_inputs(str(collection))[0].href == str(sample_data / "edge/RGB.byte.tif")
    missing = load_inputs(str(collection), asset_key="visual")[0]
    assert missing.error == "STAC item has no asset 'visual' (asset_key)"


def test_globs_name_scenes_by_file_and_by_folder_where_file_names_repeat(sample_data, tmp_path):
    found = load_inputs([str(sample_data / "labeled/quebec-aerial-tiles/image_*.tif")])
    assert [s.id for s in found] == ["image_1", "image_2"]
    same_names = load_inputs(
        [
            str(sample_data / "labeled/landsat-albers/image.tif"),
            str(sample_data / "labeled/spacenet-atlanta-pan/image.tif"),
            str(sample_data / "labeled/spacenet-atlanta-pan/image.tif"),  # named twice: one scene
        ]
    )
    assert [s.id for s in same_names] == ["landsat-albers-image", "spacenet-atlanta-pan-image"]


def test_scenes_whose_names_differ_only_by_extension_are_named_with_it():
    files = [Path("/d/a/x.tif"), Path("/d/b/x.tif"), Path("/d/a/x.jp2"), Path("/d/a/y.tif")]
    assert unique_ids(files) == ["a-x", "b-x", "x-jp2", "y"]


def test_a_scene_named_through_a_link_keeps_the_links_name(sample_data, tmp_path):
    (tmp_path / "kampala.tif").symlink_to(sample_data / "edge/RGB.byte.tif")
    found = load_inputs(["kampala.tif", "*.tif"], base_dir=tmp_path)
    assert [(s.id, s.href) for s in found] == [("kampala", str(sample_data / "edge/RGB.byte.tif"))]


def test_gdal_dataset_names_are_inputs_as_given_not_paths_under_the_base_folder(tmp_path):
    names = ["/vsizip//data/z.zip/chip.tif", "https://example.com/scenes/a.tif", 'NETCDF:"/data/x.nc":red']
    found = load_inputs(names, base_dir=tmp_path)
    assert [(s.id, s.href) for s in found] == [("chip", names[0]), ("a", names[1]), ("x.nc-red", names[2])]


def test_a_folder_names_the_geotiffs_under_it(tmp_path):
    for name in ("scenes/a.tif", "scenes/deep/b.TIFF", "scenes/notes.txt", "scenes/out/masks/a.tif"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    found = load_inputs("scenes", base_dir=tmp_path, output=tmp_path / "scenes" / "out")
    assert [s.id for s in found] == ["a", "b"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="'empty' holds no GeoTIFF"):
        load_inputs("empty", base_dir=tmp_path)


def test_glob_matches_under_the_output_are_not_inputs(tmp_path):
    (tmp_path / "out" / "masks").mkdir(parents=True)
    for scene in ("a.tif", "out/masks/a.tif"):
        (tmp_path / scene).write_bytes(b"")
    found = load_inputs("**/*.tif", base_dir=tmp_path, output=tmp_path / "out")
    assert [(s.id, s.href) for s in found] == [("a", str((tmp_path / "a.tif").resolve()))]
    assert len(load_inputs("**/*.tif", base_dir=tmp_path)) == 2


def stac_item(item_id: str) -> dict[str, object]:
    """A minimal STAC item whose image asset is ``a.tif``."""
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": item_id,
        "geometry": None,
        "properties": {"datetime": "2020-01-01T00:00:00Z"},
        "links": [],
        "assets": {"image": {"href": "a.tif", "type": "image/tiff"}},
    }


def test_stac_items_with_the_same_id_are_refused(tmp_path):
    item = stac_item("twin")
    collection = tmp_path / "items.json"
    collection.write_text(json.dumps({"type": "FeatureCollection", "features": [item, item]}))
    with pytest.raises(ConfigError, match="two scenes have the id 'twin'"):
        load_inputs(str(collection))


def test_a_malformed_stac_item_fails_alone_naming_itself_in_a_collection_and_in_a_catalog(tmp_path):
    good = stac_item("good")
    features = [
        good,
        {"id": "typeless"},
        "a string",
        {**good, "id": 7},
        {**good, "id": "bad", "properties": None},
    ]
    (tmp_path / "items.json").write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    found = {s.id: s.error for s in load_inputs(str(tmp_path / "items.json"))}
    assert found["good"] is None
    assert "'type' attribute is not set" in found["typeless"]
    assert found["feature-3"] == "STAC item is a JSON string, not an object"
    assert "its id 7 cannot name outputs" in found["feature-4"]
    assert found["bad"].startswith("not a readable STAC item")

    links = [{"rel": "item", "href": f"./{name}.json"} for name in ("good", "missing", "broken", "child")]
    catalog = {"type": "Catalog", "stac_version": "1.0.0", "id": "c", "description": "d", "links": links}
    (tmp_path / "catalog.json").write_text(json.dumps(catalog))
    (tmp_path / "good.json").write_text(json.dumps(good))
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "child.json").write_text(json.dumps({**catalog, "id": "child", "links": []}))
    found = {s.id: s.error for s in load_inputs(str(tmp_path / "catalog.json"))}
    assert found["good"] is None
    assert found["missing"].startswith("STAC item ./missing.json cannot be read")
    assert found["broken"].startswith("STAC item ./broken.json cannot be read")
    assert found["child"] == "STAC item ./child.json cannot be read (links to a Catalog as an item)"


def test_bundled_example_catalog_points_at_the_sample_data(sample_data):
    from geoseg.demo import EXAMPLE_WORKFLOW
    from geoseg.workflow import load_workflow

    workflow = load_workflow(EXAMPLE_WORKFLOW)
    inputs = load_inputs(workflow.inputs, base_dir=workflow.base_dir)
    assert len(inputs) >= 10
    assert all(open_scene(s.href, expected_bands=3) for s in inputs)


def catalog_linking(folder, href):
    """A STAC catalog in ``folder`` whose one child link is ``href``."""
    catalog = folder / "catalog.json"
    link = {"rel": "child", "href": href}
    catalog.write_text(
        json.dumps(
            {"type": "Catalog", "stac_version": "1.0.0", "id": "c", "description": "d", "links": [link]}
        )
    )
    return catalog


def test_a_catalog_link_to_a_silent_server_fails_after_the_timeout(silent_server, tmp_path):
    """pystac's own HTTP reads wait forever; in a child process, so a regression fails, not hangs."""
    catalog = catalog_linking(tmp_path, silent_server.replace("scene.tif", "child.json"))
    code = f"import geoseg.catalog as c; c.STAC_HTTP_TIMEOUT_S = 2; c.load_inputs({str(catalog)!r})"
    start = time.monotonic()
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert child.returncode != 0 and "ConfigError" in child.stderr and "catalog.json" in child.stderr
    assert time.monotonic() - start < 60


def test_a_catalog_link_to_a_named_pipe_is_refused(tmp_path):
    pipe = tmp_path / "child.json"
    os.mkfifo(pipe)
    catalog = catalog_linking(tmp_path, "./child.json")
    with pytest.raises(ConfigError, match=r"catalog\.json"):
        load_inputs(str(catalog))
