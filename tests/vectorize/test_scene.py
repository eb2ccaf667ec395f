"""Whole scenes from files: real masks vectorised blockwise equal the whole-mask result."""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from rasterio.features import rasterize

from geoseg.errors import VectorizeError
from geoseg.vectorize import (
    Cleanup,
    iter_mask_blocks,
    merge_blocks,
    polygonize_block,
    read_features,
    read_mask_info,
    to_features,
    vectorize_mask,
    write_features,
)
from tests.vectorize.conftest import write_mask


def atlanta_building_mask(sample_data: Path, out: Path) -> Path:
    """The real SpaceNet Atlanta building polygons rasterised onto their image's grid."""
    folder = sample_data / "labeled" / "spacenet-atlanta-pan"
    with rasterio.open(folder / "image.tif") as image:
        buildings = gpd.read_file(folder / "buildings.geojson").to_crs(image.crs)
        classes = rasterize(
            buildings.geometry, out_shape=image.shape, transform=image.transform, dtype="uint8"
        )
        return write_mask(
            out, classes, crs=image.crs, transform=image.transform, class_names=["bg", "building"]
        )


def assert_same_layers(a: gpd.GeoDataFrame, b: gpd.GeoDataFrame) -> None:
    assert len(a) == len(b)
    assert sorted(a["area_m2"].round(6)) == sorted(b["area_m2"].round(6))
    union_a, union_b = shapely.union_all(a.geometry.values), shapely.union_all(b.geometry.values)
    assert shapely.symmetric_difference(union_a, union_b).area <= 1e-9 * union_a.area
    assert shapely.is_valid(a.geometry.values).all()


@pytest.mark.parametrize("connectivity", [4, 8])
def test_real_spacenet_buildings_blockwise_equal_whole(sample_data, tmp_path, connectivity):
    mask = atlanta_building_mask(sample_data, tmp_path / "atlanta.tif")
    whole = vectorize_mask(mask, tmp_path / "whole.parquet", block_size=900, connectivity=connectivity)
    blockwise = vectorize_mask(mask, tmp_path / "blocks.parquet", block_size=64, connectivity=connectivity)
    assert whole.blocks == 1 and blockwise.blocks == 15 * 15
    assert blockwise.pieces > whole.pieces  # buildings really were cut by block borders
    assert 30 <= whole.polygons <= 60  # 43 buildings; thin parts may split or merge
    assert_same_layers(read_features(tmp_path / "blocks.parquet"), read_features(tmp_path / "whole.parquet"))


def test_real_hotosm_building_masks_blockwise_equal_whole(sample_data, tmp_path):
    masks = sorted((sample_data / "labeled" / "hotosm-ramp" / "binarymasks").glob("*.tif"))[:6]
    assert masks
    for mask in masks:
        whole = vectorize_mask(mask, tmp_path / f"{mask.stem}.whole.gpkg", block_size=256)
        blocks = vectorize_mask(mask, tmp_path / f"{mask.stem}.blocks.gpkg", block_size=40)
        assert whole.polygons == blocks.polygons
        assert_same_layers(read_features(blocks.outputs[0]), read_features(whole.outputs[0]))


def test_real_geographic_mask_geojson_lands_on_the_mask(sample_data, tmp_path):
    mask = sorted((sample_data / "labeled" / "hotosm-ramp" / "binarymasks").glob("*.tif"))[0]
    summary = vectorize_mask(mask, [tmp_path / "b.geojson", tmp_path / "b.shp"], block_size=64)
    with rasterio.open(mask) as src:
        west, south, east, north = src.bounds
    back = read_features(tmp_path / "b.geojson")
    minx, miny, maxx, maxy = back.total_bounds
    eps = 1e-7  # RFC 7946 GeoJSON keeps 7 decimals (about 1 cm)
    assert west - eps <= minx and maxx <= east + eps and south - eps <= miny and maxy <= north + eps
    assert maxx - minx > (east - west) / 10  # real buildings spread over the chip
    assert set(back["scene_id"]) == {mask.stem}
    assert len(read_features(tmp_path / "b.shp")) == summary.polygons == len(back)
    # Zoom-21 chips near the equator: pixels of about 7.5 cm, areas of whole buildings in m².
    assert 1 < back["area_m2"].median() < 1000


def test_min_area_and_probability_on_a_written_mask(tmp_path):
    classes = np.zeros((64, 64), dtype=np.uint8)
    classes[2:4, 2:4] = 1  # 400 m²
    classes[20:40, 20:40] = 1  # 40 000 m²
    probability = np.where(classes == 1, 60, 255).astype(np.uint8)
    mask = write_mask(tmp_path / "scene.tif", classes, probability=probability)
    summary = vectorize_mask(mask, tmp_path / "out.gpkg", block_size=16, min_area_m2=1000, scene_id="s1")
    back = read_features(tmp_path / "out.gpkg")
    assert summary.polygons == 1
    assert back["area_m2"].tolist() == [40_000.0]
    assert back["mean_prob"].tolist() == [pytest.approx(0.6)]
    assert back["scene_id"].tolist() == ["s1"]


def test_a_bad_output_extension_is_refused_before_any_work(tmp_path):
    mask = write_mask(tmp_path / "scene.tif", np.ones((4, 4), dtype=np.uint8))
    with pytest.raises(VectorizeError, match="unsupported vector format"):
        vectorize_mask(mask, [tmp_path / "ok.gpkg", tmp_path / "bad.csv"])
    assert not (tmp_path / "ok.gpkg").exists()


def test_pipeline_split_with_pickled_pieces_in_any_order_equals_vectorize_mask(sample_data, tmp_path):
    """What the distributed pipeline does: pieces per task, shipped, merged by one task."""
    mask = atlanta_building_mask(sample_data, tmp_path / "atlanta.tif")
    pieces = [
        pickle.loads(
            pickle.dumps(polygonize_block(b.classes, b.row_off, b.col_off, probability=b.probability))
        )
        for b in iter_mask_blocks(mask, 100)
    ]
    random.Random(0).shuffle(pieces)
    features = to_features(merge_blocks(pieces), read_mask_info(mask), Cleanup(), "atlanta")
    write_features(features, tmp_path / "split.gpkg")
    vectorize_mask(mask, tmp_path / "whole.gpkg", block_size=900)
    assert_same_layers(read_features(tmp_path / "split.gpkg"), read_features(tmp_path / "whole.gpkg"))
