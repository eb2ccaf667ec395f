"""Quick-looks: a small PNG per scene, the scene stretched with its classes laid over it."""

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.enums import Resampling

from geoseg.inference import Predictor
from geoseg.predict import predict_scene
from geoseg.quicklook import (
    CLASS_COLOURS,
    MAX_PX,
    NODATA_GREY,
    Thumbnail,
    format_length,
    overlay,
    picture_shape,
    render_quicklook,
    scale_bar_m,
    stretch,
    thumbnail_factor,
    thumbnail_part,
    write_quicklook,
)
from geoseg.scenes import Scene, open_scene, read_window
from tests.conftest import SHIPPED_MODEL


def test_large_scenes_shrink_to_fit_and_small_ones_grow_by_a_whole_factor():
    assert max(picture_shape(32_768, 16_384)) <= MAX_PX
    assert picture_shape(32_768, 16_384)[1] == 2 * picture_shape(32_768, 16_384)[0]
    assert picture_shape(92, 169) == (169 * 3, 92 * 3)
    assert picture_shape(700, 600) == (600, 700)


@pytest.mark.parametrize(
    "size", [(92, 169), (994, 700), (995, 10), (1987, 1987), (8192, 8192), (131_072, 16)]
)
def test_a_thumbnail_is_at_least_the_pictures_size_and_under_twice_it(size):
    factor, picture_px = thumbnail_factor(*size), max(picture_shape(*size))
    thumbnail_px = -(-max(size) // factor)
    assert thumbnail_px < 2 * picture_px
    assert thumbnail_px >= picture_px or factor == 1  # small scenes are enlarged


def test_thumbnail_parts_of_any_block_grid_add_up_to_the_thumbnail_of_the_whole_scene():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 4000, (4, 70, 100)).astype(np.uint16)
    valid = rng.random((70, 100)) > 0.1
    whole = Thumbnail.from_parts(100, 70, [thumbnail_part(pixels, valid, 0, 0, 4)])
    parts = [
        thumbnail_part(pixels[:, r : r + 27, c : c + 33], valid[r : r + 27, c : c + 33], r, c, 4)
        for r in range(0, 70, 27)
        for c in range(0, 100, 33)
    ]
    tiled = Thumbnail.from_parts(100, 70, parts)
    assert whole.sums.shape == (3, 18, 25)
    assert np.array_equal(tiled.sums, whole.sums) and np.array_equal(tiled.counts, whole.counts)


def test_thumbnail_cells_are_the_means_of_their_valid_pixels_whatever_the_invalid_values():
    pixels = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    valid = np.ones((4, 4), dtype=bool)
    valid[0, 0] = False
    pixels[0, 0, 0] = np.nan
    thumbnail = Thumbnail.from_parts(4, 4, [thumbnail_part(pixels, valid, 0, 0, 2)])
    assert np.allclose(thumbnail.pixels(2, 2), [[[10 / 3, 4.5], [10.5, 12.5]]])
    enlarged = Thumbnail.from_parts(4, 4, [thumbnail_part(pixels, valid, 0, 0, 1)]).pixels(8, 8)
    assert np.array_equal(enlarged[0, :2, :4], [[0, 0, 1, 1]] * 2)  # nearest; 0 where invalid


def whole_scene_thumbnail(scene: Scene) -> Thumbnail:
    pixels, valid = read_window(scene, scene.window)
    factor = thumbnail_factor(scene.width, scene.height)
    return Thumbnail.from_parts(scene.width, scene.height, [thumbnail_part(pixels, valid, 0, 0, factor)])


def test_the_pictures_pixels_are_the_scenes_averaged_at_the_pictures_size(sample_data):
    scene = open_scene(sample_data / "scenes/landsat8-224078-rgb.tif")
    rows, cols = picture_shape(scene.width, scene.height)
    with rasterio.open(scene.path) as src:
        decimated = src.read(out_shape=(3, rows, cols), resampling=Resampling.average).astype(np.float64)
    pixels = whole_scene_thumbnail(scene).pixels(rows, cols)
    inside = (decimated > 0).all(axis=0)
    assert np.median(np.abs(pixels - decimated)[:, inside]) < 0.002 * decimated[:, inside].mean()


def test_the_stretch_maps_the_2nd_to_98th_percentile_of_valid_pixels_to_the_full_range():
    pixels = np.arange(10_000, dtype=np.uint16).reshape(1, 100, 100) + 1000
    valid = np.ones((100, 100), dtype=bool)
    valid[0, 0] = False
    stretched = stretch(pixels, valid)
    assert stretched.dtype == np.uint8
    assert np.percentile(stretched, 2) <= 1 and np.percentile(stretched, 98) >= 254


def test_classes_are_filled_and_outlined_and_nodata_is_grey():
    rgb = np.zeros((3, 8, 8), dtype=np.uint8)
    classes = np.zeros((8, 8), dtype=np.uint8)
    classes[2:6, 2:6] = 1
    classes[0, 0] = 255
    picture = overlay(rgb, classes, nodata=255)
    assert tuple(picture[2, 2]) == CLASS_COLOURS[0]  # the outline
    assert 0 < picture[3, 3, 0] < CLASS_COLOURS[0][0]  # translucent inside
    assert tuple(picture[0, 0]) == (NODATA_GREY,) * 3
    assert tuple(picture[7, 7]) == (0, 0, 0)


def test_scale_bars_are_round_lengths_of_at_most_a_fifth_of_the_picture():
    assert scale_bar_m(19.0) == 2
    assert scale_bar_m(237_000) == 20_000
    assert format_length(20_000) == "20 km" and format_length(0.0742) == "0.074 m"


@pytest.mark.parametrize(
    "image", ["labeled/hotosm-ramp/val-chips/OAM-619212-523272-20.tif", "edge/RGBA.byte.tif"]
)
def test_a_real_scene_gives_a_bounded_png_with_its_caption(sample_data, tmp_path, image):
    scene = open_scene(sample_data / image)
    predictor = Predictor.from_checkpoint(SHIPPED_MODEL, "cpu", batch_size=8)
    mask = predict_scene(scene.path, predictor, tmp_path / "mask.tif")
    out = write_quicklook(
        scene, whole_scene_thumbnail(scene), mask, tmp_path / "quicklooks" / "scene.png", scene.id
    )
    with Image.open(out) as png:
        png.load()
        assert png.format == "PNG" and png.mode == "RGB"
        assert 256 <= max(png.size) <= MAX_PX
    assert [p.name for p in out.parent.iterdir()] == ["scene.png"]


def test_a_title_with_control_characters_is_one_caption_line_not_an_error():
    """A scene file named with a newline made Pillow refuse to measure the caption: the scene failed."""
    pixels = np.full((3, 40, 60), 120, dtype=np.uint8)
    image = render_quicklook(pixels, np.zeros((40, 60), dtype=np.uint8), "new\nline\x1b[2J", 0.3, 0.3)
    assert image.width >= 60 and image.height > 40
