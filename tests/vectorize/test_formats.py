"""Writers by extension: RFC 7946 GeoJSON, Shapefile, GeoPackage, GeoParquet, FlatGeobuf."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pytest
import shapely
from rasterio.crs import CRS
from rasterio.transform import Affine
from rasterio.warp import transform_bounds

from geoseg.errors import VectorizeError
from geoseg.vectorize import (
    Cleanup,
    Features,
    MaskInfo,
    gather_layers,
    read_features,
    to_features,
    write_features,
)
from geoseg.vectorize.formats import RunLayer
from tests.vectorize.conftest import vectorize_array

TRANSFORM = Affine(0.5, 0, 733_601.0, 0, -0.5, 3_725_139.0)  # SpaceNet Atlanta's grid
CRS_UTM = CRS.from_epsg(32616)


@pytest.fixture
def features() -> gpd.GeoDataFrame:
    classes = np.zeros((20, 30), dtype=np.uint8)
    classes[2:8, 2:12] = 1
    classes[4:6, 4:6] = 0  # a hole
    classes[10:18, 15:28] = 2
    info = MaskInfo(30, 20, TRANSFORM, CRS_UTM, ("background", "building", "road"))
    return to_features(vectorize_array(classes, 8), info, Cleanup(), "atlanta").to_frame()


def mask_bounds_4326() -> tuple[float, float, float, float]:
    left, top = TRANSFORM @ (0, 0)
    right, bottom = TRANSFORM @ (30, 20)
    return transform_bounds(CRS_UTM, "EPSG:4326", left, bottom, right, top)


def test_geojson_is_rfc7946_lonlat_at_the_right_place_with_ccw_exteriors(features, tmp_path):
    path = write_features(features, tmp_path / "out.geojson")
    document = json.loads(path.read_text())
    assert "crs" not in document  # RFC 7946: always WGS 84 lon/lat, no crs member
    back = gpd.read_file(path)
    assert back.crs == CRS.from_epsg(4326)
    west, south, east, north = mask_bounds_4326()
    minx, miny, maxx, maxy = back.total_bounds
    eps = 1e-6
    assert west - eps <= minx and maxx <= east + eps and south - eps <= miny and maxy <= north + eps
    for geometry in back.geometry:
        assert geometry.exterior.is_ccw
        assert all(not ring.is_ccw for ring in geometry.interiors)
    assert sorted(back["class_name"]) == ["building", "road"]


def test_geojson_values_are_json_numbers_strings_and_nulls(features, tmp_path):
    features = features.assign(scene_id='quote " and \\ backslash', area_m2=900.0, perimeter_m=[np.nan, 1e21])
    document = json.loads(write_features(features, tmp_path / "out.geojson").read_text())
    first, second = (f["properties"] for f in document["features"])
    assert first["scene_id"] == 'quote " and \\ backslash'
    assert first["perimeter_m"] is None and second["perimeter_m"] == 1e21
    back = gpd.read_file(tmp_path / "out.geojson")
    assert back["area_m2"].dtype == np.float64 and back["class_id"].dtype.kind == "i"


def test_a_polygon_across_the_antimeridian_is_cut_there(tmp_path):
    """GeoJSON cannot hold a polygon across ±180°: GDAL's RFC 7946 writer cuts it (UTM 60N)."""
    across = shapely.box(640_000, 7_211_000, 643_000, 7_213_000)  # 180° E at 641 428 m
    layer = gpd.GeoDataFrame({"class_id": [1]}, geometry=[across], crs="EPSG:32660")
    back = gpd.read_file(write_features(layer, tmp_path / "out.geojson"))
    (geometry,) = back.geometry
    assert geometry.geom_type == "MultiPolygon" and len(geometry.geoms) == 2
    west, _, east, _ = geometry.bounds
    assert (west, east) == pytest.approx((-180, 180), abs=1e-6)


def test_shapefile_reads_back_in_the_scene_crs_with_a_prj(features, tmp_path):
    path = write_features(features, tmp_path / "out.shp")
    assert path.with_suffix(".prj").exists()
    back = read_features(path)
    assert back.crs == CRS_UTM
    assert "perimeter_m" in back.columns
    assert back["area_m2"].tolist() == features["area_m2"].tolist()
    assert not list(tmp_path.glob("*geoseg-tmp*"))


@pytest.mark.parametrize("suffix", [".gpkg", ".parquet", ".fgb"])
def test_other_formats_round_trip_in_the_scene_crs(features, tmp_path, suffix):
    back = read_features(write_features(features, tmp_path / f"out{suffix}"))
    assert back.crs == CRS_UTM
    assert list(back.columns) == list(features.columns)
    back = back.sort_values("class_id")  # FlatGeobuf's spatial index reorders features
    expected = features.sort_values("class_id")
    assert shapely.equals(back.geometry.values, expected.geometry.values).all()


def test_an_empty_layer_is_written_as_a_polygon_layer(features, tmp_path):
    import pyogrio

    for suffix in (".gpkg", ".geojson", ".parquet", ".shp", ".fgb"):
        path = write_features(features.iloc[:0], tmp_path / f"empty{suffix}")
        assert len(read_features(path)) == 0
        if suffix in (".gpkg", ".shp", ".fgb"):  # QGIS then offers it as a polygon layer
            assert pyogrio.read_info(path)["geometry_type"] in ("MultiPolygon", "Polygon"), suffix


@pytest.mark.parametrize("name", ["x[1].shp", "UPPER.SHP", "a b?.shp"])
def test_a_shapefile_named_with_glob_characters_or_in_capitals_is_whole(features, tmp_path, name):
    path = write_features(features, tmp_path / name)
    assert path.suffix == ".shp"
    assert len(read_features(path)) == len(features)
    assert {p.suffix for p in tmp_path.iterdir()} >= {".shp", ".shx", ".dbf", ".prj"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_an_unknown_extension_is_refused_naming_the_file(features, tmp_path):
    with pytest.raises(VectorizeError, match=r"out\.kml: unsupported vector format '\.kml'"):
        write_features(features, tmp_path / "out.kml")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("fmt", ["gpkg", "shp", "geojson", "fgb", "parquet"])
def test_gather_layers_makes_one_lonlat_layer_with_scene_ids(features, tmp_path, fmt):
    first = write_features(features, tmp_path / "a.gpkg")
    second = write_features(features.assign(scene_id="other"), tmp_path / "b.parquet")
    empty = write_features(features.iloc[:0], tmp_path / "empty.gpkg")  # a scene without polygons
    count = gather_layers([first, empty, second], tmp_path / f"run.{fmt}")
    back = read_features(tmp_path / f"run.{fmt}")
    assert back.crs == CRS.from_epsg(4326) and len(back) == count == 2 * len(features)
    assert sorted(set(back["scene_id"])) == ["atlanta", "other"]
    assert back.geometry.is_valid.all()
    assert back.to_crs(features.crs).area.sum() == pytest.approx(
        2 * features.area.sum(), rel=1e-3
    )  # GeoJSON rounds to 1e-7°
    assert [p.name for p in tmp_path.iterdir() if "geoseg-tmp" in p.name] == []


@pytest.mark.parametrize("fmt", ["gpkg", "parquet"])
def test_a_run_layer_appears_only_when_its_block_ends_without_error(features, tmp_path, fmt):
    scene = write_features(features, tmp_path / "scene.gpkg")
    with pytest.raises(RuntimeError), RunLayer(tmp_path / f"run.{fmt}") as layer:
        layer.add(scene)  # a GeoPackage is already being written here
        raise RuntimeError("interrupted")
    with RunLayer(tmp_path / f"run.{fmt}"):
        pass  # no scene
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.gpkg"]


def test_a_layer_handed_over_in_lonlat_is_what_geopandas_reprojects(features):
    """What a worker hands the run layer: its scene's features in EPSG:4326, as Arrow IPC bytes."""
    handed = Features.from_ipc(Features.from_frame(features).to_crs("EPSG:4326").to_ipc())
    expected = features.to_crs("EPSG:4326")
    assert handed.crs == CRS.from_epsg(4326)
    assert handed.bounds == pytest.approx(tuple(expected.total_bounds))
    back = handed.to_frame()
    assert shapely.equals_exact(back.geometry.values, expected.geometry.values, tolerance=0).all()
    assert back.drop(columns="geometry").equals(expected.drop(columns="geometry"))


def test_gathering_nothing_is_an_error(tmp_path):
    with pytest.raises(VectorizeError, match="no vector files"):
        gather_layers([], tmp_path / "run.gpkg")
