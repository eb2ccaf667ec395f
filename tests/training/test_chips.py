"""Chips: grid windows, leak-free splits, deterministic positive-favouring sampling, dihedral augmentation."""

from __future__ import annotations

import shutil
import warnings

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely

from geoseg.errors import ConfigError, GeosegWarning
from geoseg.training.chips import (
    Chip,
    ChipPixels,
    ChipReader,
    ChipSampler,
    Draw,
    augmented,
    chip_windows,
    color_jittered,
    dihedral,
    entry_shares,
    grid_offsets,
    open_datasets,
    split_by_block,
    split_by_scene,
    zoomed_out,
)
from geoseg.training.config import DatasetConfig

CLASSES = ["background", "building"]


def _ramp_scenes(sample_data, pattern="OAM-1238450-*.tif"):
    ramp = sample_data / "labeled" / "hotosm-ramp"
    entry = DatasetConfig.model_validate(
        {"images": str(ramp / "chips" / pattern), "masks": str(ramp / "binarymasks" / "{stem}.mask.tif")}
    )
    return open_datasets([entry], CLASSES, None)


def _overlap(a, b):
    return (
        a.scene_index == b.scene_index
        and a.col_off_px < b.col_off_px + b.size_px
        and b.col_off_px < a.col_off_px + a.size_px
        and a.row_off_px < b.row_off_px + b.size_px
        and b.row_off_px < a.row_off_px + a.size_px
    )


def test_a_scene_that_cannot_be_used_is_skipped_with_a_warning_naming_it(sample_data, tmp_path):
    ramp = sample_data / "labeled" / "hotosm-ramp"
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    chip = sorted((ramp / "chips").glob("*.tif"))[0]
    shutil.copy(chip, tmp_path / "images" / "good.tif")
    shutil.copy(ramp / "binarymasks" / f"{chip.stem}.mask.tif", tmp_path / "masks" / "good.mask.tif")
    shutil.copy(sample_data / "edge" / "corrupt.tif", tmp_path / "images" / "corrupt.tif")
    shutil.copy(ramp / "binarymasks" / f"{chip.stem}.mask.tif", tmp_path / "masks" / "corrupt.mask.tif")
    shutil.copy(chip, tmp_path / "images" / "unlabelled.tif")
    entry = DatasetConfig.model_validate(
        {"images": str(tmp_path / "images" / "*.tif"), "masks": str(tmp_path / "masks" / "{stem}.mask.tif")}
    )
    with pytest.warns(GeosegWarning) as warned:
        scenes = open_datasets([entry], CLASSES, None)
    assert [s.scene.id for s in scenes] == ["good"]
    skipped = sorted(str(w.message) for w in warned if w.category is GeosegWarning)
    assert len(skipped) == 2
    assert "corrupt.tif: pixels cannot be decoded" in skipped[0]
    assert "mask of " in skipped[1] and "unlabelled.tif not found" in skipped[1]
    (tmp_path / "images" / "good.tif").unlink()
    with pytest.warns(GeosegWarning), pytest.raises(ConfigError, match="none of its 2 scenes can be used"):
        open_datasets([entry], CLASSES, None)


def test_labels_that_fall_on_none_of_the_scenes_are_warned_about(sample_data, tmp_path):
    chip = sorted((sample_data / "labeled" / "hotosm-ramp" / "chips").glob("*.tif"))[0]
    elsewhere = gpd.GeoDataFrame(geometry=[shapely.box(10, 10, 10.001, 10.001)], crs="EPSG:4326")
    elsewhere.to_file(tmp_path / "elsewhere.geojson")
    entry = DatasetConfig.model_validate({"images": str(chip), "labels": str(tmp_path / "elsewhere.geojson")})
    with pytest.warns(GeosegWarning, match=r"elsewhere.geojson: no label polygon of a class other than"):
        open_datasets([entry], CLASSES, None)


def test_labels_whose_polygons_on_the_scenes_are_all_background_are_warned_about(sample_data, tmp_path):
    chip = sorted((sample_data / "labeled" / "hotosm-ramp" / "chips").glob("*.tif"))[0]
    with rasterio.open(chip) as src:
        bounds, crs = src.bounds, src.crs
    on_chip = gpd.GeoDataFrame({"kind": ["background"]}, geometry=[shapely.box(*bounds)], crs=crs)
    on_chip.to_file(tmp_path / "background.geojson")
    labels = {"images": str(chip), "labels": str(tmp_path / "background.geojson"), "class_field": "kind"}
    with pytest.warns(GeosegWarning, match=r"no label polygon of a class other than 'background' falls on"):
        open_datasets([DatasetConfig.model_validate(labels)], CLASSES, None)
    on_chip.assign(kind="building").to_file(tmp_path / "building.geojson")
    with warnings.catch_warnings():
        warnings.simplefilter("error", GeosegWarning)
        open_datasets(
            [DatasetConfig.model_validate(labels | {"labels": str(tmp_path / "building.geojson")})],
            CLASSES,
            None,
        )


def test_grid_covers_the_scene_with_the_last_window_flush():
    assert grid_offsets(256, 128, 64) == [0, 64, 128]
    assert grid_offsets(300, 128, 128) == [0, 128, 172]
    assert grid_offsets(100, 128, 64) == [0]
    assert len(chip_windows(0, 256, 256, 128, 64)) == 9


def test_scene_split_holds_out_whole_scenes(sample_data):
    scenes = _ramp_scenes(sample_data)
    train, val = split_by_scene(scenes, 0.25, seed=3)
    assert set(train).isdisjoint(val) and sorted(train + val) == list(range(len(scenes)))
    assert len(val) == 2
    assert split_by_scene(scenes, 0.25, seed=3) == (train, val)


def test_block_split_never_puts_a_pixel_in_both_splits(sample_data):
    folder = sample_data / "labeled" / "spacenet-atlanta-pan"
    entry = DatasetConfig.model_validate(
        {"images": str(folder / "image.tif"), "labels": str(folder / "buildings.geojson")}
    )
    scenes = open_datasets([entry], CLASSES, None)
    train, val = split_by_block(
        scenes, block_size_px=256, chip_size_px=64, stride_px=32, val_fraction=0.3, seed=1
    )
    assert train and val
    assert not any(_overlap(t, v) for t in train for v in val)
    for chip in train + val:  # every chip stays inside one block
        assert chip.col_off_px // 256 == (chip.col_off_px + 63) // 256
        assert chip.row_off_px // 256 == (chip.row_off_px + 63) // 256


@pytest.mark.parametrize("k", range(8))
def test_dihedral_moves_image_and_mask_together(k):
    image = np.arange(2 * 4 * 4).reshape(2, 4, 4)
    mask = image[0] % 7
    new_image, new_mask = dihedral(image, mask, k=k)
    np.testing.assert_array_equal(new_mask, new_image[0] % 7)
    assert sorted(new_image[1].ravel()) == sorted(image[1].ravel())


def test_dihedral_gives_eight_distinct_views():
    image = np.arange(9).reshape(1, 3, 3)
    views = {dihedral(image, k=k)[0].tobytes() for k in range(8)}
    assert len(views) == 8


def test_sampler_favours_positive_chips_and_repeats_with_the_seed(sample_data):
    scenes = _ramp_scenes(sample_data)
    reader = ChipReader(scenes, cache_max_bytes=2**26)
    chips = reader.with_positive_fraction(
        [c for i, s in enumerate(scenes) for c in chip_windows(i, s.scene.width, s.scene.height, 64, 64)]
    )
    positives = [c for c in chips if c.positive_fraction >= 0.05]
    assert 0 < len(positives) < len(chips)

    def plan(seed):
        sampler = ChipSampler(
            chips, np.random.default_rng(seed), min_positive_fraction=0.05, positive_share=1.0
        )
        return sampler.plan(6)

    first = plan(7)
    assert plan(7) == first and plan(8) != first
    assert all(draw.chip in positives and 0 <= draw.k < 8 for draw in first)
    image, target, valid = augmented(reader.read(first[0].chip), first[0])
    assert image.shape == (3, 64, 64) and image.dtype == np.float32
    assert target.shape == valid.shape == (64, 64) and target.sum() / target.size >= 0.05


def test_colour_jitter_is_off_by_default_and_keeps_the_sampling_stream():
    chips = [Chip(0, 0, 0, 64, 0.5), Chip(0, 64, 0, 64, 0.0)]
    plain = ChipSampler(chips, np.random.default_rng(3)).plan(20)
    assert ChipSampler(chips, np.random.default_rng(3), color_jitter=0.0).plan(20) == plain
    jittered = ChipSampler(chips, np.random.default_rng(3), color_jitter=0.2).plan(20)
    assert [d.chip for d in jittered[:1]] == [plain[0].chip] and all(d.jitter == 0.2 for d in jittered)
    assert len({d.jitter_seed for d in jittered}) == 20


def test_band_jitter_shifts_the_colour_balance_alone_or_with_the_colour_jitter():
    image = np.full((3, 8, 8), 100.0, np.float32)
    valid = np.ones((8, 8), bool)
    gains = np.array(
        [
            color_jittered(image, valid, 0.0, np.random.default_rng(seed), band_strength=0.3)[:, 0, 0] / 100
            for seed in range(200)
        ]
    )
    assert gains.min() >= 0.7 and gains.max() <= 1.3 and np.ptp(gains, axis=0).min() > 0.5  # ± 30 % per band
    assert np.array_equal(  # unset: a quarter of the colour jitter, the augmentation of earlier versions
        color_jittered(image, valid, 0.2, np.random.default_rng(1)),
        color_jittered(image, valid, 0.2, np.random.default_rng(1), band_strength=0.05),
    )
    chips = [Chip(0, 0, 0, 64, 0.5), Chip(0, 64, 0, 64, 0.0)]
    draws = ChipSampler(chips, np.random.default_rng(3), band_jitter=0.3).plan(5)
    assert (
        all(d.jitter == 0 and d.band_jitter == 0.3 for d in draws)
        and len({d.jitter_seed for d in draws}) == 5
    )


def test_entry_shares_follow_the_chip_counts_their_square_roots_or_are_equal():
    assert entry_shares([900, 100, 0], "chips") == pytest.approx([0.9, 0.1, 0.0])
    assert entry_shares([900, 100, 0], "sqrt") == pytest.approx([0.75, 0.25, 0.0])
    assert entry_shares([900, 100, 0], "equal") == pytest.approx([0.5, 0.5, 0.0])


def test_a_place_with_few_chips_gets_its_share_of_draws_when_entries_are_weighted():
    chips = [Chip(0, 64 * i, 0, 64, 0.5) for i in range(900)] + [
        Chip(1, 64 * i, 0, 64, 0.5) for i in range(100)
    ]
    entries = [chip.scene_index for chip in chips]

    def share_of_small_place(weighting):
        draws = ChipSampler(chips, np.random.default_rng(0), entries=entries, weighting=weighting).plan(4000)
        return sum(draw.chip.scene_index == 1 for draw in draws) / len(draws)

    assert share_of_small_place("chips") == pytest.approx(0.1, abs=0.02)
    assert share_of_small_place("sqrt") == pytest.approx(0.25, abs=0.03)
    assert share_of_small_place("equal") == pytest.approx(0.5, abs=0.03)
    by_chips = ChipSampler(chips, np.random.default_rng(0), entries=entries).plan(50)
    assert by_chips == ChipSampler(chips, np.random.default_rng(0)).plan(50), "the default keeps the stream"


def test_scenes_know_the_dataset_entry_they_come_from(sample_data):
    ramp = sample_data / "labeled" / "hotosm-ramp"
    entries = [
        DatasetConfig.model_validate(
            {"images": str(ramp / "chips" / pattern), "masks": str(ramp / "binarymasks" / "{stem}.mask.tif")}
        )
        for pattern in ("OAM-1238450-*.tif", "OAM-1238451-*.tif")
    ]
    scenes = open_datasets(entries, CLASSES, None)
    assert {s.entry for s in scenes} == {0, 1}
    assert all(("OAM-1238450-" in s.scene.path) == (s.entry == 0) for s in scenes)


def test_colour_jitter_changes_colours_not_geometry_and_repeats(sample_data):
    scenes = _ramp_scenes(sample_data)
    reader = ChipReader(scenes)
    chip = chip_windows(0, scenes[0].scene.width, scenes[0].scene.height, 128, 128)[0]
    pixels = reader.read(chip)
    plain_image, plain_target, plain_valid = augmented(pixels, Draw(chip, 5))
    image, target, valid = augmented(pixels, Draw(chip, 5, 0.3, 11))
    assert np.array_equal(target, plain_target) and np.array_equal(valid, plain_valid)
    assert np.array_equal(image, augmented(pixels, Draw(chip, 5, 0.3, 11))[0])
    assert not np.array_equal(image, augmented(pixels, Draw(chip, 5, 0.3, 12))[0])
    assert image.min() >= 0 and image.max() <= 255  # uint8 source: clipped to its range
    for band in range(3):  # each band an increasing affine map of the plain band where not clipped
        x, y = plain_image[band][valid], image[band][valid]
        inside = (y > 0) & (y < 255)
        slope, offset = np.polyfit(x[inside], y[inside], 1)
        assert slope > 0 and np.allclose(slope * x[inside] + offset, y[inside], atol=0.01)
        assert abs(slope - 1) > 1e-3 or abs(offset) > 0.5


def test_zoom_out_shows_a_chip_at_a_coarser_gsd_inside_an_invalid_frame():
    image = np.zeros((3, 64, 64), np.float32)
    target = np.zeros((64, 64), np.uint8)
    image[:, 16:48, 16:48], target[16:48, 16:48] = 200.0, 1  # a 32-px building on dark ground
    valid = np.ones((64, 64), bool)
    out_image, out_target, out_valid = zoomed_out(image, target, valid, 0.5, np.random.default_rng(0))
    assert out_image.shape == image.shape and out_target.shape == out_valid.shape == (64, 64)
    assert out_valid.sum() == 32 * 32  # the shrunk chip; the rest of the frame is left out of the loss
    rows, cols = np.nonzero(out_valid)
    frame = np.s_[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    assert out_target[frame].sum() == 16 * 16  # the building at half its size, in place
    assert np.array_equal(out_target[frame] == 1, out_image[0][frame] > 100)
    assert not out_target[~out_valid].any() and np.allclose(out_image[:, ~out_valid], image.mean())
    placements = {
        tuple(np.argwhere(zoomed_out(image, target, valid, 0.5, np.random.default_rng(s))[2])[0])
        for s in range(6)
    }
    assert len(placements) > 1
    draw = Draw(Chip(0, 0, 0, 64), 0, zoom=0.5, zoom_seed=0)  # as a training batch shows it
    shown = augmented(ChipPixels(image.astype(np.uint8), target, valid), draw)
    assert all(np.array_equal(a, b) for a, b in zip(shown, (out_image, out_target, out_valid), strict=True))


def test_zoom_out_shrinks_half_the_draws_and_is_off_by_default():
    chips = [Chip(0, 0, 0, 64, 0.5), Chip(0, 64, 0, 64, 0.0)]
    plain = ChipSampler(chips, np.random.default_rng(3)).plan(200)
    assert all(d.zoom == 1 for d in plain)
    zoomed = ChipSampler(chips, np.random.default_rng(3), zoom_out=0.5).plan(200)
    factors = [d.zoom for d in zoomed if d.zoom < 1]
    assert 70 < len(factors) < 130 and min(factors) >= 0.5
    assert ChipSampler(chips, np.random.default_rng(3), zoom_out=0.5).plan(200) == zoomed
    assert ChipSampler(chips, np.random.default_rng(3), zoom_out=0.5, augment=False).plan(5)[0].zoom == 1
