"""Labels for a window: vector polygons in any CRS land on the right pixels; masks by window."""

from __future__ import annotations

import json
import zipfile

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from rasterio.warp import transform as warp_transform
from rasterio.windows import Window
from shapely import Polygon, box

from geoseg.errors import GeosegWarning, LabelError
from geoseg.scenes import open_scene
from geoseg.training.labels import (
    open_mask_labels,
    rasterize_window,
    read_vector_labels,
    vector_labels_for,
)

CLASSES = ["background", "building"]


def test_lonlat_square_lands_on_its_pixel_of_a_utm_scene(sample_data, tmp_path):
    scene = open_scene(sample_data / "labeled" / "spacenet-atlanta-pan" / "image.tif")
    assert scene.crs.to_epsg() == 32616
    row, col = 300, 417
    x, y = scene.transform @ (col + 0.5, row + 0.5)  # the pixel's centre in UTM metres
    (lon,), (lat,) = warp_transform(scene.crs, "EPSG:4326", [x], [y])
    half = 0.15 / 111_000  # a 0.3 m square (the pixels are 0.5 m) around the centre, in degrees
    square = [
        [lon - half, lat - half],
        [lon + half, lat - half],
        [lon + half, lat + half],
        [lon - half, lat + half],
    ]
    square.append(square[0])
    path = tmp_path / "square.geojson"
    feature = {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [square]}}
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))

    labels = vector_labels_for(scene, read_vector_labels(path, CLASSES))
    ids, valid = labels.read(Window(col - 10, row - 20, 32, 32))

    assert valid.all()
    assert list(zip(*np.nonzero(ids), strict=True)) == [(20, 10)]


def test_window_reaching_outside_the_scene_is_invalid_there(sample_data):
    folder = sample_data / "labeled" / "spacenet-atlanta-pan"
    scene = open_scene(folder / "image.tif")
    labels = vector_labels_for(scene, read_vector_labels(folder / "buildings.geojson", CLASSES))
    ids, valid = labels.read(Window(scene.width - 16, -8, 32, 32))
    assert not valid[:8].any() and not valid[:, 16:].any() and valid[8:, :16].all()
    assert not ids[~valid].any()


def test_windows_tile_to_the_whole_scene_rasterisation(sample_data):
    folder = sample_data / "labeled" / "spacenet7-mosaic"
    scene = open_scene(next(folder.glob("*.tif")))
    labels = vector_labels_for(scene, read_vector_labels(folder / "buildings.geojson", CLASSES))
    assert scene.crs.to_epsg() == 3857 and labels.frame.crs.to_epsg() == 3857
    whole, _ = labels.read(scene.window)
    assert whole.any(), "EPSG:4326 labels must fall on the EPSG:3857 scene"
    w, h = scene.width // 2, scene.height // 2
    tiles = [labels.read(Window(c, r, w, h))[0] for r in (0, h) for c in (0, w)]
    np.testing.assert_array_equal(np.block([tiles[:2], tiles[2:]]), whole)


def test_labels_whose_coordinates_contradict_their_crs_are_refused(sample_data):
    path = sample_data / "labeled" / "landsat-albers" / "labels.geojson"  # says 4326, holds metres
    with pytest.raises(LabelError, match="not longitudes/latitudes"):
        read_vector_labels(path, CLASSES)


def test_mask_window_equals_the_same_slice_of_the_mask(sample_data):
    ramp = sample_data / "labeled" / "hotosm-ramp"
    chip = sorted((ramp / "chips").glob("*.tif"))[5]
    mask_path = ramp / "binarymasks" / f"{chip.stem}.mask.tif"
    labels = open_mask_labels(open_scene(chip), str(mask_path), 2)
    ids, valid = labels.read(Window(64, 32, 128, 96))
    with rasterio.open(mask_path) as ds:
        expected = ds.read(1)[32:128, 64:192]
    np.testing.assert_array_equal(ids, expected > 0)
    assert valid.all()


def test_mask_on_another_grid_is_refused(sample_data):
    ramp = sample_data / "labeled" / "hotosm-ramp"
    chips = sorted((ramp / "chips").glob("*.tif"))
    wrong = ramp / "binarymasks" / f"{chips[1].stem}.mask.tif"
    with pytest.raises(LabelError, match="not on the pixel grid"):
        open_mask_labels(open_scene(chips[0]), str(wrong), 2)


def test_an_rgb_image_given_as_its_own_mask_is_refused(sample_data):
    chip = sorted((sample_data / "labeled" / "hotosm-ramp" / "chips").glob("*.tif"))[0]
    with pytest.raises(LabelError, match="is a 3-band image, not a label mask"):
        open_mask_labels(open_scene(chip), str(chip), 2)


def test_class_field_maps_names_and_rejects_unknown_values(sample_data):
    path = sample_data / "labeled" / "new-brunswick-landcover" / "landcover.gpkg"
    with pytest.raises(LabelError, match="class value"):
        read_vector_labels(path, ["background", "x"], class_field="Quatreclasses")
    with pytest.raises(LabelError, match="no attribute 'nope'"):
        read_vector_labels(path, CLASSES, class_field="nope")


def test_labels_in_a_local_engineering_crs_are_refused(tmp_path):
    site_grid = 'LOCAL_CS["site grid",UNIT["metre",1],AXIS["X",EAST],AXIS["Y",NORTH]]'
    gpd.GeoDataFrame(geometry=[box(0, 0, 10, 10)], crs=site_grid).to_file(tmp_path / "site.gpkg")
    with pytest.raises(
        LabelError, match=r"labels have a CRS that cannot be placed on the Earth \('site grid'"
    ):
        read_vector_labels(tmp_path / "site.gpkg", CLASSES)


def test_the_polygons_of_a_geometry_collection_are_labels_and_its_lines_are_not(tmp_path):
    collection = {
        "type": "GeometryCollection",
        "geometries": [
            {"type": "LineString", "coordinates": [[30, 0], [30.1, 0.1]]},
            {"type": "Polygon", "coordinates": [[[30, 0], [30.001, 0], [30.001, 0.001], [30, 0]]]},
        ],
    }
    line = {"type": "LineString", "coordinates": [[30, 0], [30.1, 0.1]]}
    features = [{"type": "Feature", "properties": {}, "geometry": g} for g in (collection, line)]
    (tmp_path / "mixed.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    with pytest.warns(GeosegWarning, match="1 of 2 features have no polygon"):
        labels = read_vector_labels(tmp_path / "mixed.geojson", CLASSES).frame
    assert list(labels.geom_type) == ["MultiPolygon"]
    assert labels.crs.to_epsg() == 4326
    assert labels.geometry.iloc[0].area == pytest.approx(0.001**2 / 2)


def test_an_unclosed_ring_is_closed_instead_of_refusing_the_whole_file(tmp_path):
    closed = [[30, 0], [30.001, 0], [30.001, 0.001], [30, 0.001], [30, 0]]
    rings = (closed, closed[:-1])  # GeoJSON from hand-written tools often forgets the last point
    features = [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [r]}}
        for r in rings
    ]
    (tmp_path / "open.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    labels = read_vector_labels(tmp_path / "open.geojson", CLASSES).frame
    assert len(labels) == 2 and shapely.area(labels.geometry.values).tolist() == pytest.approx([0.001**2] * 2)


def test_missing_label_file_is_a_label_error(tmp_path):
    with pytest.raises(LabelError, match="not found"):
        read_vector_labels(tmp_path / "none.geojson", CLASSES)


def test_rasterised_osm_polygons_equal_the_datasets_own_masks(sample_data):
    ramp = sample_data / "labeled" / "hotosm-ramp"
    polygons = read_vector_labels(ramp / "chips_labels.geojson", CLASSES)
    for chip in sorted((ramp / "chips").glob("*.tif"))[:40:8]:
        scene = open_scene(chip)
        ids, _ = vector_labels_for(scene, polygons).read(Window(32, 64, 160, 128))
        with rasterio.open(ramp / "binarymasks" / f"{chip.stem}.mask.tif") as ds:
            mask = ds.read(1, window=Window(32, 64, 160, 128))
        np.testing.assert_array_equal(ids, mask > 0)


def test_web_map_tiles_get_their_labels_from_the_areas_polygons(sample_data):
    """XYZ tiles (no georeferencing) + one lon/lat label file == the dataset's own tile masks."""
    from geoseg.training.chips import open_datasets
    from geoseg.training.config import DatasetConfig

    area = sample_data / "labeled" / "hotosm-ramp" / "tiles" / "4"
    entry = DatasetConfig(
        images=str(area / "OAM-177246[45]-96638[01]-21.png"),
        labels=str(area / "labels.geojson"),
        georeference="xyz",
    )
    scenes = open_datasets([entry], CLASSES, None)
    assert len(scenes) == 4 and all(s.scene.crs.to_epsg() == 3857 for s in scenes)
    buildings = 0
    for item in scenes:
        ids, valid = item.labels.read(item.scene.window)
        fair_mask = sample_data / "labeled" / "hotosm-ramp" / "tile-labels" / "4" / f"{item.scene.id}.tif"
        with rasterio.open(fair_mask) as mask:  # fAIr's own rasterisation (0/255, EPSG:4326 grid)
            expected = mask.read(1) > 0
        assert valid.all()
        assert np.mean((ids == 1) == expected) > 0.999, item.scene.id
        buildings += int(expected.sum())
    assert buildings > 10_000  # the tiles do hold buildings: agreement is not just empty == empty


def test_a_mask_whose_nodata_tag_is_a_class_counts_every_pixel_when_told(sample_data):
    """The Québec masks are 0/1 tagged nodata 0: read as tagged, their background would be unlabelled."""
    folder = sample_data / "labeled" / "quebec-aerial-tiles"
    scene = open_scene(folder / "image_1.tif")
    window = Window(-16, 0, 128, 128)
    as_tagged = open_mask_labels(scene, str(folder / "label_1.tif"), 2)
    as_class = open_mask_labels(scene, str(folder / "label_1.tif"), 2, nodata_is_class=True)
    ids, valid = as_class.read(window)
    tagged_ids, tagged_valid = as_tagged.read(window)
    assert valid[:, 16:].all() and not valid[:, :16].any()
    assert np.array_equal(ids, tagged_ids) and 0 < ids[valid].sum() < valid.sum()
    assert np.array_equal(tagged_valid, valid & (ids == 1))  # as tagged, only the buildings count


UTM = "EPSG:32636"


def test_label_parts_without_area_are_dropped_and_invalid_polygons_repaired_with_a_warning(tmp_path):
    spike = Polygon([(0, 0), (5, 5), (10, 10), (5, 5), (0, 0)])  # out and back: no area
    square_with_spike = Polygon([(0, 0), (10, 0), (10, 10), (30, 30), (10, 10), (0, 10), (0, 0)])
    gpd.GeoDataFrame(geometry=[spike, square_with_spike], crs=UTM).to_file(tmp_path / "odd.gpkg")
    with pytest.warns(GeosegWarning, match="2 invalid label polygons repaired"):
        labels = read_vector_labels(tmp_path / "odd.gpkg", CLASSES).frame
    assert list(labels.geom_type) == ["MultiPolygon"] and labels.geometry.iloc[0].area == pytest.approx(100)


def test_where_labels_overlap_the_later_one_in_the_file_wins(tmp_path):
    transform = rasterio.transform.from_origin(0, 20, 1, 1)
    scene = open_scene(_utm_scene(tmp_path / "scene.tif", transform))
    shapes = {"building": box(2, 2, 18, 18), "background": box(0, 0, 20, 20)}
    specks = [box(x, y, x + 1, y + 1) for x in range(0, 20, 3) for y in range(0, 20, 3)]  # a deeper tree
    for order in (["building", "background"], ["background", "building"]):
        frame = gpd.GeoDataFrame(
            {"class_id": [CLASSES.index(c) for c in order] + [0] * len(specks)},
            geometry=[*(shapes[c] for c in order), *specks],
            crs=UTM,
        )
        expected = CLASSES.index(order[-1])  # the spatial index returns these two the other way round
        assert rasterize_window(frame, transform, (20, 20))[10, 10] == expected, order
        frame.assign(cls=[CLASSES[i] for i in frame["class_id"]]).to_file(tmp_path / "labels.gpkg")
        labels = vector_labels_for(scene, read_vector_labels(tmp_path / "labels.gpkg", CLASSES, "cls"))
        assert labels.read(Window(0, 0, 20, 20))[0][10, 10] == expected, order


def test_a_class_value_that_is_not_a_whole_number_is_refused(tmp_path):
    gpd.GeoDataFrame({"cls": [0.6]}, geometry=[box(0, 0, 1, 1)], crs=UTM).to_file(tmp_path / "half.gpkg")
    with pytest.raises(LabelError, match=r"class value 0\.6 is not one of"):
        read_vector_labels(tmp_path / "half.gpkg", CLASSES, "cls")


def test_geoparquet_labels_are_read_and_a_file_of_several_layers_says_which_it_reads(tmp_path):
    frame = gpd.GeoDataFrame(geometry=[box(0, 0, 1, 1)], crs=UTM)
    frame.to_parquet(tmp_path / "labels.parquet")
    assert len(read_vector_labels(tmp_path / "labels.parquet", CLASSES).frame) == 1
    frame.to_file(tmp_path / "layers.gpkg", layer="aaa")
    frame.to_file(tmp_path / "layers.gpkg", layer="buildings", mode="a")
    with pytest.warns(GeosegWarning, match=r"layers.gpkg: has layers aaa, buildings; reading the first, aaa"):
        read_vector_labels(tmp_path / "layers.gpkg", CLASSES)


def _utm_scene(path, transform):
    profile = {"driver": "GTiff", "width": 20, "height": 20, "count": 3, "dtype": "uint8"}
    with rasterio.open(path, "w", crs=UTM, transform=transform, **profile) as dst:
        dst.write(np.full((3, 20, 20), 100, dtype=np.uint8))
    return path


def test_a_label_file_in_a_zip_is_read_by_its_gdal_name_and_a_link_loop_is_named_as_one(tmp_path):
    gpd.GeoDataFrame(geometry=[box(0, 0, 1, 1)], crs=UTM).to_file(tmp_path / "labels.geojson")
    with zipfile.ZipFile(tmp_path / "labels.zip", "w") as archive:
        archive.write(tmp_path / "labels.geojson", "labels.geojson")
    for name in (f"/vsizip/{tmp_path / 'labels.zip'}/labels.geojson", f"zip://{tmp_path / 'labels.zip'}"):
        assert len(read_vector_labels(name, CLASSES).frame) == 1
    (tmp_path / "a.geojson").symlink_to(tmp_path / "b.geojson")
    (tmp_path / "b.geojson").symlink_to(tmp_path / "a.geojson")
    with pytest.raises(LabelError, match="a link to nothing"):
        read_vector_labels(tmp_path / "a.geojson", CLASSES)


def test_mask_values_that_are_no_class_id_are_no_data_not_wrapped_into_a_class(tmp_path):
    transform = rasterio.transform.from_origin(0, 20, 1, 1)
    scene = open_scene(_utm_scene(tmp_path / "scene.tif", transform))
    values = np.zeros((20, 20), dtype=np.float32)
    values[:2, :4] = [[-5, -1, 0, 1], [2, 3, 1.5, np.nan]]
    profile = {"driver": "GTiff", "width": 20, "height": 20, "count": 1, "dtype": "float32", "crs": UTM}
    with rasterio.open(tmp_path / "mask.tif", "w", transform=transform, **profile) as dst:
        dst.write(values[None])
    labels = open_mask_labels(scene, str(tmp_path / "mask.tif"), num_classes=3)
    ids, valid = labels.read(Window(0, 0, 4, 2))
    assert valid.tolist() == [[False, False, True, True], [True, False, False, False]]
    assert ids[valid].tolist() == [0, 1, 2]
