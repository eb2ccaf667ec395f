"""Band order and count: a scene is read by its bands' colours where the file names them.

A checkpoint records the colour interpretation of each band it was trained on
(``ModelMetadata.band_colours``: red, green, blue for the shipped models). A BGR file, or red,
green and blue among more bands (RGB + near-infrared), is then read in the model's order and the
scene says so in a note; a file that does not name its colours is read as before.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio

from geoseg.errors import SceneError
from geoseg.inference import Predictor
from geoseg.model.metadata import read_metadata
from geoseg.model_input import ModelInput, open_for_model
from geoseg.predict import predict_scene
from geoseg.scenes import bands_by_colour, open_scene
from tests.conftest import SHIPPED_MODEL, reordered_copy
from tests.distributed.conftest import geoseg, write_workflow

KAMPALA_CHIP = "labeled/hotosm-ramp/val-chips/OAM-1238425-1046544-21.tif"
RGB = ("red", "green", "blue")


@pytest.mark.parametrize(
    ("file_colours", "expected"),
    [
        (("blue", "green", "red"), [3, 2, 1]),
        (("red", "green", "blue", "nir"), [1, 2, 3]),
        (("blue", "green", "red", "alpha"), [3, 2, 1]),
        (("nir", "red", "green", "blue"), [2, 3, 4]),
        (("red", "green", "blue", "blue"), None),  # ambiguous
        (("gray", "undefined", "undefined"), None),  # names no colour
        (("red", "green"), None),  # lacks one
    ],
)
def test_bands_are_found_by_colour_when_the_file_names_each_once(file_colours, expected):
    assert bands_by_colour(file_colours, RGB) == expected


def test_the_shipped_models_record_the_colours_they_were_trained_on():
    for model in (SHIPPED_MODEL, SHIPPED_MODEL.with_name("buildings-unet-gpu.safetensors")):
        assert read_metadata(model).band_colours == list(RGB)


@pytest.mark.parametrize(
    ("order", "colours", "note"),
    [
        ((3, 2, 1), ("blue", "green", "red"), "read bands 3, 2, 1 of 3 as red, green, blue"),
        ((1, 2, 3, 0), ("red", "green", "blue", "undefined"), "read bands 1, 2, 3 of 4 as red, green, blue"),
        ((0, 3, 2, 1), ("nir", "blue", "green", "red"), "read bands 4, 3, 2 of 4 as red, green, blue"),
    ],
    ids=["bgr", "rgb-and-an-undefined-band", "nir-bgr"],
)
def test_a_reordered_real_chip_is_segmented_exactly_like_the_chip_and_says_how(
    sample_data, tmp_path, order, colours, note
):
    chip = sample_data / KAMPALA_CHIP
    copy = reordered_copy(chip, tmp_path / "copy.tif", order, colours)
    predictor = Predictor.from_checkpoint(SHIPPED_MODEL, device="cpu")
    prepared = open_for_model(copy, ModelInput.of(predictor.metadata))
    assert prepared.notes == [f"{note}, by the file's colour interpretation"]
    masks = [predict_scene(p, predictor, tmp_path / f"{p.stem}-mask.tif") for p in (chip, copy)]
    with rasterio.open(masks[0]) as expected, rasterio.open(masks[1]) as got:
        np.testing.assert_array_equal(got.read(), expected.read())


def test_bands_chosen_by_hand_that_name_other_colours_than_the_models_get_a_note(sample_data, tmp_path):
    copy = reordered_copy(
        sample_data / KAMPALA_CHIP, tmp_path / "bgr.tif", (3, 2, 1), ("blue", "green", "red")
    )
    prepared = open_for_model(copy, ModelInput.of(read_metadata(SHIPPED_MODEL)), bands=[1, 2, 3])
    assert prepared.scene.bands == (1, 2, 3)
    assert prepared.notes == ["bands read as blue, green, red; the model's are red, green, blue"]


def test_an_alpha_band_chosen_by_hand_as_a_colour_gets_a_note(sample_data, tmp_path):
    copy = reordered_copy(
        sample_data / KAMPALA_CHIP, tmp_path / "rga.tif", (1, 2, 3), ("red", "green", "alpha")
    )
    prepared = open_for_model(copy, ModelInput.of(read_metadata(SHIPPED_MODEL)), bands=[1, 2, 3])
    assert prepared.notes == ["bands read as red, green, alpha; the model's are red, green, blue"]


def test_files_that_do_not_name_their_colours_are_read_by_position(sample_data, tmp_path):
    unnamed = ("gray", "undefined", "undefined")
    copy = reordered_copy(sample_data / KAMPALA_CHIP, tmp_path / "unnamed.tif", (1, 2, 3), unnamed)
    prepared = open_for_model(copy, ModelInput.of(read_metadata(SHIPPED_MODEL)))
    assert prepared.scene.bands == (1, 2, 3) and prepared.notes == []
    four = reordered_copy(
        sample_data / KAMPALA_CHIP, tmp_path / "four.tif", (1, 2, 3, 0), (*unnamed, "undefined")
    )
    with pytest.raises(SceneError, match=r"four\.tif: has 4 usable bands but the model expects 3"):
        open_for_model(four, ModelInput.of(read_metadata(SHIPPED_MODEL)))


def test_a_model_that_records_no_colours_reads_every_file_by_position(sample_data, tmp_path):
    copy = reordered_copy(
        sample_data / KAMPALA_CHIP, tmp_path / "bgr.tif", (3, 2, 1), ("blue", "green", "red")
    )
    scene = open_scene(copy, expected_bands=3)
    assert (
        scene.bands == (1, 2, 3) and scene.colours == ("blue", "green", "red") and scene.band_choice is None
    )


def test_a_run_reads_a_bgr_scene_like_predict_and_reports_the_choice(sample_data, tmp_path):
    copy = reordered_copy(
        sample_data / KAMPALA_CHIP, tmp_path / "bgr.tif", (3, 2, 1), ("blue", "green", "red")
    )
    workflow = write_workflow(tmp_path, [copy], SHIPPED_MODEL)
    result = geoseg("run", str(workflow))
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "out" / "run-report.json").read_text())
    assert report["scenes"][0]["warnings"] == [
        "read bands 3, 2, 1 of 3 as red, green, blue, by the file's colour interpretation"
    ]
    predictor = Predictor.from_checkpoint(SHIPPED_MODEL, device="cpu")
    expected = predict_scene(
        sample_data / KAMPALA_CHIP, predictor, tmp_path / "chip.tif", tile_size_px=128, block_size_px=256
    )
    with rasterio.open(tmp_path / "out" / "masks" / "bgr.tif") as ran, rasterio.open(expected) as predicted:
        np.testing.assert_array_equal(ran.read(1), predicted.read(1))
