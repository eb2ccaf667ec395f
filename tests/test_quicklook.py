"""Quick-looks: a small PNG per scene, the scene stretched with its classes laid over it."""

import numpy as np
import pytest
from PIL import Image

from geoseg.inference import Predictor
from geoseg.predict import predict_scene
from geoseg.quicklook import (
    CLASS_COLOURS,
    MAX_PX,
    NODATA_GREY,
    format_length,
    overlay,
    picture_shape,
    scale_bar_m,
    stretch,
    write_quicklook,
)
from geoseg.scenes import open_scene
from tests.conftest import SHIPPED_MODEL


def test_large_scenes_shrink_to_fit_and_small_ones_grow_by_a_whole_factor():
    assert max(picture_shape(32_768, 16_384)) <= MAX_PX
    assert picture_shape(32_768, 16_384)[1] == 2 * picture_shape(32_768, 16_384)[0]
    assert picture_shape(92, 169) == (169 * 3, 92 * 3)
    assert picture_shape(700, 600) == (600, 700)


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
    out = write_quicklook(scene, mask, tmp_path / "quicklooks" / "scene.png", scene.id)
    with Image.open(out) as png:
        png.load()
        assert png.format == "PNG" and png.mode == "RGB"
        assert 256 <= max(png.size) <= MAX_PX
    assert [p.name for p in out.parent.iterdir()] == ["scene.png"]
