"""The mask writer: blocks become one COG mask whose overviews keep each class's share of the pixels."""

import json

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

from geoseg.inference import Predictor
from geoseg.maskformat import CLASSES_TAG, NODATA
from geoseg.maskwriter import MaskWriter, check_blocks_on_disk, working_options
from geoseg.predict import predict_scene
from geoseg.scenes import Scene, open_scene
from tests.conftest import SHIPPED_MODEL


def class_share(classes: np.ndarray) -> float:
    """Percent of the valid pixels that are not background."""
    valid = classes[classes != NODATA]
    return 100 * float(np.count_nonzero(valid)) / valid.size


def levels(path) -> list[np.ndarray]:
    """Band 1 at full resolution, then at each overview level."""
    with rasterio.open(path) as mask:
        count = len(mask.overviews(1))
        out = [mask.read(1)]
    for level in range(count):
        with rasterio.open(path, overview_level=level) as overview:
            out.append(overview.read(1))
    return out


def synthetic_scene(width: int, height: int) -> Scene:
    return Scene(
        path="synthetic.tif",
        id="synthetic",
        width=width,
        height=height,
        crs=rasterio.crs.CRS.from_epsg(32636),
        transform=from_origin(500_000, 40_000, 0.5, 0.5),
        dtype="uint8",
        bands=(1, 2, 3),
        nodata=None,
        block_shape=(256, 256),
    )


@pytest.mark.slow
def test_class_overviews_keep_the_building_share_within_one_point_on_a_real_scene(sample_data, tmp_path):
    # The 30 m Landsat 8 scene: a speckled mask, 12.0 % "building" at full resolution. Nearest
    # neighbour gave 17.5 % on the overviews, GDAL's MODE (ties to the lowest class) 10.1 and 9.7 %.
    predictor = Predictor.from_checkpoint(SHIPPED_MODEL, "cpu", batch_size=8)
    mask = predict_scene(sample_data / "scenes/landsat8-224078-rgb.tif", predictor, tmp_path / "mask.tif")
    full, *overviews = levels(mask)
    assert len(overviews) == 2
    for overview in overviews:
        assert abs(class_share(overview) - class_share(full)) <= 1.0


def test_the_mask_is_a_cog_with_overviews_class_names_and_band_names(tmp_path):
    scene = synthetic_scene(1300, 700)
    classes = (np.indices((700, 1300)).sum(axis=0) // 37 % 3).astype(np.uint8)
    classes[:100, :100] = NODATA
    probability = np.where(classes == NODATA, NODATA, 40 + 20 * classes).astype(np.uint8)
    out = tmp_path / "masks" / "scene.tif"
    with MaskWriter(out, scene, ["background", "building", "road"], with_probability=True) as writer:
        writer.write(Window(0, 0, 650, 700), classes[:, :650], probability[:, :650])
        writer.write(Window(650, 0, 650, 700), classes[:, 650:], probability[:, 650:])
    with rasterio.open(out) as mask:
        assert mask.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert mask.overviews(1) == mask.overviews(2) == [2, 4]
        assert json.loads(mask.tags()[CLASSES_TAG]) == ["background", "building", "road"]
        assert mask.descriptions == ("class", "probability_percent")
        assert mask.nodatavals == (NODATA, NODATA)
        assert mask.crs == scene.crs and mask.transform == scene.transform
        assert np.array_equal(mask.read(1), classes) and np.array_equal(mask.read(2), probability)
    with rasterio.open(out, overview_level=0) as overview:
        halved = overview.read(2)
        assert set(np.unique(overview.read(1))) <= {0, 1, 2, NODATA}
    assert abs(halved[halved != NODATA].mean() - probability[probability != NODATA].mean()) < 0.5
    assert [p.name for p in out.parent.iterdir()] == ["scene.tif"], "temporaries left behind"


def test_a_cog_cut_short_by_a_full_disk_is_caught_although_gdal_let_it_pass(tmp_path):
    """GDAL's COG copy, meeting a full disk, printed the error and returned: the mask was written
    with exit 0 and unreadable blocks (seen on a 3 MiB tmpfs with 1.30 MiB free)."""
    scene = synthetic_scene(1300, 700)
    out = tmp_path / "scene.tif"
    classes = (np.indices((700, 1300)).sum(axis=0) % 2).astype(np.uint8)
    with MaskWriter(out, scene, ["background", "building"], with_probability=True) as writer:
        writer.write(Window(0, 0, 1300, 700), classes, classes * 90)
    check_blocks_on_disk(out)
    out.write_bytes(out.read_bytes()[: out.stat().st_size // 2])
    with pytest.raises(OSError, match="cut short"):
        check_blocks_on_disk(out)


def test_a_mask_smaller_than_a_block_has_no_overviews(sample_data, tmp_path):
    scene = open_scene(sample_data / "labeled/hotosm-ramp/val-chips/OAM-619212-523272-20.tif")
    with MaskWriter(tmp_path / "mask.tif", scene, ["background", "building"]) as writer:
        writer.write(scene.window, np.zeros((scene.height, scene.width), dtype=np.uint8))
    with rasterio.open(tmp_path / "mask.tif") as mask:
        assert mask.overviews(1) == [] and mask.count == 1


def test_working_files_are_raw_up_to_256_mib_and_zstd_beyond():
    """Temporary files stay small on disk for huge scenes; smaller ones skip the codec."""
    assert "compress" not in working_options(8192, 8192, 2)  # 128 MiB
    assert working_options(65_536, 65_536, 1)["compress"] == "ZSTD"


@pytest.mark.parametrize(
    ("block_px", "built"),
    [(1024, True), (1000, True), (1001, False)],  # 1001: not a multiple of the coarsest factor, 8
)
def test_levels_built_block_by_block_give_the_same_cog_as_levels_from_the_whole_mask(
    tmp_path, block_px, built
):
    """Overview levels are built as the blocks are written (no re-read of the mask) where the blocks
    line up with the coarsest level, else from the whole mask: the COG's bytes are the same."""
    from geoseg.maskwriter import write_cog
    from geoseg.overviews import LevelBuilder

    rng = np.random.default_rng(5)
    height, width = 2500, 3000  # levels ×2, ×4, ×8
    scene = synthetic_scene(width, height)
    classes = rng.choice(
        np.array([0, 1, 2, NODATA], dtype=np.uint8), (height, width), p=[0.5, 0.3, 0.15, 0.05]
    )
    probability = np.where(classes == NODATA, NODATA, rng.integers(0, 101, classes.shape)).astype(np.uint8)
    out = tmp_path / "blockwise.tif"
    finished: list[list | None] = []
    original = LevelBuilder.finish
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(LevelBuilder, "finish", lambda self: finished.append(original(self)) or finished[-1])
        with MaskWriter(out, scene, ["background", "building", "road"], with_probability=True) as writer:
            for row in range(0, height, block_px):
                for col in range(0, width, block_px):
                    h, w = min(block_px, height - row), min(block_px, width - col)
                    cut = (slice(row, row + h), slice(col, col + w))
                    writer.write(Window(col, row, w, h), classes[cut], probability[cut])
    assert (finished[0] is not None) == built
    whole = tmp_path / "whole.tif"
    working = tmp_path / "working.tif"
    with rasterio.open(out) as done:
        profile = {**done.profile, "driver": "GTiff", **working_options(width, height, 2)}
        profile.pop("compress", None)
        with rasterio.open(working, "w", **profile) as dst:
            dst.update_tags(**done.tags())
            dst.descriptions = done.descriptions
            dst.write(done.read())
    write_cog(working, whole)
    assert out.read_bytes() == whole.read_bytes()
