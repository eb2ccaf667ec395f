"""Scenes: any GeoTIFF rasterio reads is accepted; bad ones fail up front, naming the reason."""

import os

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.control import GroundControlPoint
from rasterio.enums import ColorInterp
from rasterio.windows import Window
from scipy.io import netcdf_file

from geoseg.errors import SceneError
from geoseg.model.metadata import read_metadata
from geoseg.model_input import ModelInput, open_for_model
from geoseg.scenes import ONE_STRIP_NOTE, open_scene, read_window
from tests.conftest import SHIPPED_MODEL, raw_vrt_of, vrt_of


def _scene_in(path, crs, transform) -> None:
    """An 8 × 8 three-band uint8 GeoTIFF at ``path``."""
    profile = {"driver": "GTiff", "width": 8, "height": 8, "count": 3, "dtype": "uint8"}
    with rasterio.open(path, "w", crs=crs, transform=transform, **profile) as dst:
        dst.write(np.full((3, 8, 8), 100, dtype=np.uint8))


@pytest.mark.parametrize(
    "relative,reason",
    [
        ("edge/corrupt.tif", "corrupt or truncated"),
        ("edge/no-georeference.tif", "no CRS"),
        ("edge/all-nodata.tif", "every pixel is nodata"),
        ("README.md", "not a readable raster"),
        ("edge/missing.tif", "file not found"),
    ],
)
def test_bad_scene_fails_with_a_reason_naming_the_file(sample_data, relative, reason):
    with pytest.raises(SceneError) as info:
        open_scene(sample_data / relative)
    assert reason in str(info.value)
    assert str(sample_data / relative) in str(info.value)
    assert "\n" not in str(info.value)


def test_a_named_pipe_is_refused_without_waiting_for_a_writer(tmp_path):
    pipe = tmp_path / "scene.tif"
    os.mkfifo(pipe)
    with pytest.raises(SceneError, match="not a regular file"):
        open_scene(pipe)


@pytest.mark.timeout(60, method="thread")
def test_a_vrt_that_reads_a_named_pipe_is_refused_without_waiting_also_when_nested(tmp_path):
    os.mkfifo(tmp_path / "pipe.tif")
    vrt_of("pipe.tif", tmp_path / "inner.vrt")
    vrt_of("inner.vrt", tmp_path / "outer.vrt")
    for vrt in ("inner.vrt", "outer.vrt"):
        with pytest.raises(SceneError, match=r"reads .*pipe\.tif, which is not a regular file"):
            open_scene(tmp_path / vrt)


def test_a_scene_placed_by_ground_control_points_only_is_refused_naming_them(tmp_path):
    profile = {"driver": "GTiff", "width": 8, "height": 8, "count": 3, "dtype": "uint8"}
    points = [
        GroundControlPoint(0, 0, 30, 0),
        GroundControlPoint(8, 0, 30, -0.001),
        GroundControlPoint(0, 8, 30.001, 0),
    ]
    with rasterio.open(tmp_path / "raw.tif", "w", **profile) as dst:
        dst.gcps = (points, rasterio.crs.CRS.from_epsg(4326))
        dst.write(np.full((3, 8, 8), 100, dtype=np.uint8))
    with pytest.raises(SceneError, match="placed by ground control points or RPCs only"):
        open_scene(tmp_path / "raw.tif")


def test_a_mask_geoseg_wrote_is_refused_as_a_model_input_but_opens_as_labels(tmp_path):
    _scene_in(tmp_path / "mask.tif", "EPSG:32636", Affine(0.3, 0, 500_000, 0, -0.3, 100_000))
    with rasterio.open(tmp_path / "mask.tif", "r+") as dst:
        dst.update_tags(GEOSEG_CLASSES='["background", "building"]')
    with pytest.raises(SceneError, match="is a geoseg mask"):
        open_scene(tmp_path / "mask.tif", expected_bands=3)
    assert open_scene(tmp_path / "mask.tif", bands=[1]).bands == (1,)


def test_a_local_engineering_crs_is_refused_as_not_on_the_earth(tmp_path):
    site_grid = 'LOCAL_CS["site grid",UNIT["metre",1],AXIS["X",EAST],AXIS["Y",NORTH]]'
    _scene_in(tmp_path / "site.tif", site_grid, Affine(0.1, 0, 0, 0, -0.1, 100))
    with pytest.raises(SceneError, match=r"has a CRS that cannot be placed on the Earth \('site grid'"):
        open_scene(tmp_path / "site.tif")


@pytest.mark.parametrize(
    "crs,transform",
    [
        ("EPSG:4326", Affine(1e-5, 0, 10, 0, -1e-5, 95)),  # latitude 95°
        ("EPSG:32636", Affine(1e7, 0, 500_000, 0, -1e7, 100_000)),  # 80 000 km across
    ],
)
def test_a_scene_whose_corners_are_off_the_earth_is_refused(tmp_path, crs, transform):
    _scene_in(tmp_path / "scene.tif", crs, transform)
    with pytest.raises(SceneError, match="has corners off the Earth"):
        open_scene(tmp_path / "scene.tif")


def test_a_global_grid_whose_edges_round_past_the_poles_is_a_scene(tmp_path):
    _scene_in(tmp_path / "world.tif", "EPSG:4326", Affine(45.0, 0, -180, 0, -(180 + 1e-9) / 8, 90 + 1e-9))
    assert open_scene(tmp_path / "world.tif").width == 8


@pytest.mark.parametrize("pixel_width", [float("nan"), float("inf")])
def test_a_scene_whose_geotransform_is_not_finite_is_refused(tmp_path, pixel_width):
    _scene_in(tmp_path / "scene.tif", "EPSG:32636", Affine(pixel_width, 0, 500_000, 0, -0.3, 100_000))
    with pytest.raises(SceneError, match="degenerate geotransform"):
        open_scene(tmp_path / "scene.tif")


def test_wrong_band_count_for_the_model_is_refused(sample_data):
    with pytest.raises(SceneError, match="has 1 usable bands but the model expects 3"):
        open_scene(sample_data / "labeled/spacenet-atlanta-pan/image.tif", expected_bands=3)


def test_alpha_band_is_not_a_model_band_but_masks_pixels(sample_data):
    scene = open_scene(sample_data / "edge/RGBA.byte.tif", expected_bands=3)
    assert scene.bands == (1, 2, 3)
    _, valid = read_window(scene, scene.window)
    assert 0 < valid.mean() < 1


@pytest.mark.parametrize(
    "relative,dtype",
    [
        ("labeled/spacenet-atlanta-pan/image.tif", "uint16"),
        ("labeled/landsat-albers/image.tif", "int16"),
        ("edge/float64-4band.tif", "float64"),
        ("labeled/sen1floods11-water/sample/S1/Spain_7370579_S1Hand.tif", "float32"),
    ],
)
def test_scenes_of_every_dtype_open(sample_data, relative, dtype):
    path = sample_data / relative
    if not path.exists():
        pytest.skip(f"{path} not in this copy of the sample data")
    assert open_scene(path).dtype == dtype


def test_window_outside_the_scene_is_reflected_and_invalid(sample_data):
    scene = open_scene(sample_data / "labeled/spacenet-atlanta-pan/image.tif")
    pixels, valid = read_window(scene, Window(-4, -4, 12, 12))
    inside, _ = read_window(scene, Window(0, 0, 8, 8))
    assert np.array_equal(pixels[:, 4:, 4:], inside)
    assert np.array_equal(pixels[:, 4 - 1, 4:], inside[:, 1])  # reflection about row 0
    assert not valid[:4].any() and not valid[:, :4].any()


def test_nodata_pixels_are_filled_before_reflection(sample_data):
    scene = open_scene(sample_data / "edge/RGB.byte.tif")  # nodata 0 around the Landsat swath
    pixels, valid = read_window(scene, scene.window, nodata_fill=[7, 7, 7])
    assert 0.1 < (~valid).mean() < 0.9
    assert (pixels[:, ~valid] == 7).all()


@pytest.mark.parametrize(
    "relative",
    [
        "edge/RGB.byte.tif",  # uint8, nodata 0
        "edge/RGBA.byte.tif",  # alpha band
        "edge/cogeo.tif",
        "labeled/landsat-albers/image.tif",  # int16, nodata -9999
        "labeled/sen1floods11-water/sample/S2",  # int16, nodata 0, 13 bands
        "labeled/sen1floods11-water/sample/S1",  # float32, nodata NaN
        "scenes/landsat8-224078-rgb.tif",
    ],
)
def test_validity_from_pixels_equals_gdals_mask_bands(sample_data, relative):
    from rasterio.windows import Window

    from geoseg.scenes import _valid_mask, open_pixels

    path = sample_data / relative
    path = next(path.glob("*.tif")) if path.is_dir() else path
    scene = open_scene(path, require_valid_pixels=False)
    window = Window(0, 0, min(scene.width, 700), min(scene.height, 700))
    with open_pixels(scene.path) as ds:
        expected = ds.read_masks(list(scene.bands), window=window).any(axis=0)
        assert (_valid_mask(ds, scene, window) == expected).all()


@pytest.mark.parametrize("value", ["-1", "0", "1e999", "nan", "lots"])
def test_a_scene_pixel_limit_that_is_no_count_of_pixels_is_refused_naming_it(sample_data, monkeypatch, value):
    monkeypatch.setenv("GEOSEG_MAX_SCENE_PIXELS", value)
    with pytest.raises(SceneError, match="GEOSEG_MAX_SCENE_PIXELS: must be a number of pixels"):
        open_scene(sample_data / "edge/RGB.byte.tif")


def test_a_vrt_raw_band_is_refused_as_it_reads_any_file_also_nested_under_another_name(tmp_path):
    (tmp_path / "secret.txt").write_text("password " * 100)
    raw_vrt_of(tmp_path / "secret.txt", tmp_path / "raw.vrt")
    raw_vrt_of(tmp_path / "secret.txt", tmp_path / "raw-named-as.tif")
    vrt_of("raw-named-as.tif", tmp_path / "outer.vrt")
    for vrt in ("raw.vrt", "outer.vrt"):
        with pytest.raises(SceneError, match=r"reads a VRT raw band in .*raw.*not allowed"):
            open_scene(tmp_path / vrt)


def test_vrts_nested_past_the_limit_are_refused(tmp_path):
    vrt_of("scene.tif", tmp_path / "0.vrt")
    _scene_in(tmp_path / "scene.tif", "EPSG:32636", Affine(0.3, 0, 500_000, 0, -0.3, 100_000))
    for level in range(1, 11):
        vrt_of(f"{level - 1}.vrt", tmp_path / f"{level}.vrt")
    assert open_scene(tmp_path / "8.vrt").width == 8
    with pytest.raises(SceneError, match="nests VRTs more than 8 deep"):
        open_scene(tmp_path / "10.vrt")


def test_a_scene_or_vrt_source_of_huge_internal_blocks_is_refused_as_every_read_would_decode_them(
    tmp_path, monkeypatch
):
    monkeypatch.setattr("geoseg.scenes.MAX_BLOCK_BYTES", 2**20)  # 1 MiB: stands in for 256 MiB
    profile = {"driver": "GTiff", "width": 1024, "height": 1024, "count": 3, "dtype": "uint8"}
    for tile in (1024, 256):
        with rasterio.open(
            tmp_path / f"tile{tile}.tif",
            "w",
            crs="EPSG:32636",
            transform=Affine(0.3, 0, 500_000, 0, -0.3, 100_000),
            tiled=True,
            blockxsize=tile,
            blockysize=tile,
            compress="deflate",
            **profile,
        ) as dst:
            dst.write(np.full((3, 1024, 1024), 100, dtype=np.uint8))
    assert open_scene(tmp_path / "tile256.tif").block_shape == (256, 256)
    with pytest.raises(SceneError, match=r"internal blocks of 1024×1024 px \(3 MiB decoded each"):
        open_scene(tmp_path / "tile1024.tif")
    assert open_scene(vrt_of("tile256.tif", tmp_path / "small.vrt")).block_shape == (8, 8)
    with pytest.raises(SceneError, match=r"reads .*tile1024.tif, which has internal blocks of 1024×1024"):
        open_scene(vrt_of("tile1024.tif", tmp_path / "bomb.vrt"))  # the VRT's own blocks are small


def _rgb_with_alpha(path, alpha_band: int, count: int, nodata=None) -> np.ndarray:
    """A ``count``-band uint8 scene whose band ``alpha_band`` is alpha, 0 on its left 3 columns,
    where the other bands are white (a collar that is no nodata value). Returns the alpha band."""
    alpha = np.full((8, 8), 255, dtype=np.uint8)
    alpha[:, :3] = 0
    bands = np.full((count, 8, 8), 100, dtype=np.uint8)
    bands[:, :, :3] = 255
    bands[alpha_band - 1] = alpha
    profile = {"driver": "GTiff", "width": 8, "height": 8, "count": count, "dtype": "uint8", "nodata": nodata}
    transform = Affine(0.3, 0, 500_000, 0, -0.3, 100_000)
    with rasterio.open(path, "w", crs="EPSG:32636", transform=transform, **profile) as dst:
        dst.write(bands)
        colours = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.undefined][: count - 1]
        colours.insert(alpha_band - 1, ColorInterp.alpha)
        dst.colorinterp = colours
    return alpha


@pytest.mark.parametrize(
    ("alpha_band", "count", "nodata"),
    [(4, 4, 0), (5, 5, None), (1, 4, None)],  # nodata shadows alpha; RGB + NIR + alpha; alpha first
    ids=["rgba-with-nodata", "rgb-nir-alpha", "alpha-first"],
)
def test_an_alpha_band_marks_pixels_invalid_also_where_gdal_ignores_it(tmp_path, alpha_band, count, nodata):
    alpha = _rgb_with_alpha(tmp_path / "scene.tif", alpha_band, count, nodata)
    scene = open_scene(tmp_path / "scene.tif", expected_bands=3, colours=("red", "green", "blue"))
    _, valid = read_window(scene, scene.window)
    np.testing.assert_array_equal(valid, alpha != 0)


def test_bands_with_different_nodata_values_are_each_masked_by_their_own(tmp_path):
    pixels = np.full((3, 8, 8), 100, dtype=np.uint8)
    pixels[:, :, :2] = np.array([0, 1, 2], dtype=np.uint8)[:, None, None]  # fill (0, 1, 2)
    pixels[:, :, 2] = 0  # 0 in every band: band 1's nodata only, so valid
    profile = {"driver": "GTiff", "width": 8, "height": 8, "count": 3, "dtype": "uint8"}
    with rasterio.open(tmp_path / "scene.tif", "w", **profile) as dst:
        dst.write(pixels)
    bands = "".join(
        f'<VRTRasterBand dataType="Byte" band="{b}"><NoDataValue>{b - 1}</NoDataValue><SimpleSource>'
        f'<SourceFilename relativeToVRT="1">scene.tif</SourceFilename><SourceBand>{b}</SourceBand>'
        "</SimpleSource></VRTRasterBand>"
        for b in (1, 2, 3)
    )
    (tmp_path / "scene.vrt").write_text(
        '<VRTDataset rasterXSize="8" rasterYSize="8"><SRS>EPSG:32636</SRS>'
        f"<GeoTransform>500000, 0.3, 0, 100000, 0, -0.3</GeoTransform>{bands}</VRTDataset>"
    )
    scene = open_scene(tmp_path / "scene.vrt")
    _, valid = read_window(scene, scene.window)
    assert not valid[:, :2].any() and valid[:, 2:].all()


def test_a_palette_image_and_a_container_of_subdatasets_are_refused_saying_what_to_do(tmp_path):
    profile = {"driver": "GTiff", "width": 8, "height": 8, "count": 1, "dtype": "uint8"}
    transform = Affine(0.3, 0, 500_000, 0, -0.3, 100_000)
    with rasterio.open(
        tmp_path / "palette.tif", "w", crs="EPSG:32636", transform=transform, **profile
    ) as dst:
        dst.write(np.zeros((1, 8, 8), dtype=np.uint8))
        dst.write_colormap(1, {0: (255, 0, 0, 255), 1: (0, 255, 0, 255)})
    with pytest.raises(SceneError, match=r"is a palette \(colour-table\) image: expand it .*-expand rgb"):
        open_scene(tmp_path / "palette.tif", expected_bands=3)
    layers = netcdf_file(tmp_path / "layers.nc", "w")  # two variables: two subdatasets
    layers.createDimension("y", 8)
    layers.createDimension("x", 8)
    for name in ("red", "green"):
        layers.createVariable(name, "i2", ("y", "x"))[:] = 1
    layers.close()
    with pytest.raises(SceneError, match=r"holds 2 subdatasets \(.*layers.nc.*red, .*green\): name one"):
        open_scene(tmp_path / "layers.nc")


def test_a_tall_scene_stored_as_one_compressed_strip_is_flagged_as_slow_to_read(tmp_path):
    for height, blocks in (
        (8200, {"blockysize": 8200}),
        (8200, {"blockysize": 16}),
        (300, {"blockysize": 300}),
    ):
        path = tmp_path / f"{height}-{blocks['blockysize']}.tif"
        profile = {"driver": "GTiff", "width": 64, "height": height, "count": 3, "dtype": "uint8"}
        with rasterio.open(
            path,
            "w",
            crs="EPSG:32636",
            transform=Affine(0.3, 0, 500_000, 0, -0.3, 100_000),
            compress="deflate",
            **blocks,
            **profile,
        ) as dst:
            dst.write(np.full((3, height, 64), 100, dtype=np.uint8))
        assert open_scene(path).one_strip == (blocks["blockysize"] == height == 8200), path.name
    notes = open_for_model(tmp_path / "8200-8200.tif", ModelInput.of(read_metadata(SHIPPED_MODEL))).notes
    assert ONE_STRIP_NOTE in notes  # in the run table and report, as a warning of the scene
