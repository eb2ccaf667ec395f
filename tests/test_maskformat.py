"""The mask format: the convention is checked, and blocks are windowed reads covering the mask."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from geoseg.errors import VectorizeError
from geoseg.maskformat import iter_mask_blocks, read_mask_info
from tests.vectorize.conftest import write_mask


def test_blocks_cover_the_mask_once_with_their_offsets(tmp_path):
    classes = np.arange(50 * 70, dtype=np.uint32).reshape(50, 70) % 7
    path = write_mask(tmp_path / "m.tif", classes.astype(np.uint8))
    rebuilt = np.full(classes.shape, 99, dtype=np.uint8)
    for block in iter_mask_blocks(path, 32):
        h, w = block.classes.shape
        assert h <= 32 and w <= 32 and block.probability is None
        rebuilt[block.row_off : block.row_off + h, block.col_off : block.col_off + w] = block.classes
    np.testing.assert_array_equal(rebuilt, classes)


def test_class_names_and_probability_band_are_read(tmp_path):
    classes = np.ones((4, 4), dtype=np.uint8)
    path = write_mask(tmp_path / "m.tif", classes, probability=classes * 90, class_names=["bg", "building"])
    info = read_mask_info(path)
    assert info.has_probability
    assert info.class_name(1) == "building" and info.class_name(3) == "class_3"
    assert all(b.probability is not None for b in iter_mask_blocks(path, 2))


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("edge/float64-4band.tif", "not a mask"),
        ("edge/no-georeference.tif", "not a mask|not georeferenced"),
        ("labeled/spacenet-atlanta-pan/buildings.geojson", "not a raster"),
        ("missing.tif", "not found"),
    ],
)
def test_files_that_are_not_masks_are_refused_with_the_file_named(sample_data, name, problem):
    with pytest.raises(VectorizeError, match=problem) as error:
        read_mask_info(sample_data / name)
    assert str(sample_data / name) in str(error.value)
    assert "\n" not in str(error.value)


def test_an_ungeoreferenced_uint8_raster_is_refused(tmp_path):
    path = tmp_path / "plain.tif"
    with (
        pytest.warns(rasterio.errors.NotGeoreferencedWarning),
        rasterio.open(path, "w", driver="GTiff", width=2, height=2, count=1, dtype="uint8") as d,
    ):
        d.write(np.ones((1, 2, 2), dtype=np.uint8))
    with pytest.raises(VectorizeError, match="not georeferenced"):
        read_mask_info(path)


def test_a_malformed_class_names_tag_is_refused(tmp_path):
    path = write_mask(tmp_path / "m.tif", np.ones((2, 2), dtype=np.uint8))
    with rasterio.open(path, "r+") as dst:
        dst.update_tags(GEOSEG_CLASSES="{not json")
    with pytest.raises(VectorizeError, match="GEOSEG_CLASSES"):
        read_mask_info(path)
