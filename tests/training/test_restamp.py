"""Restamping: a checkpoint trained before domains or radiometry were recorded gains them, with the same weights."""

from __future__ import annotations

import pytest
from safetensors.torch import load_file

from geoseg.errors import CheckpointError
from geoseg.model.checkpoint import load_generator, save_checkpoint
from geoseg.model.metadata import Radiometry, read_metadata
from geoseg.training.restamp import record_band_colours, record_radiometry, restamp_checkpoint
from geoseg.training.trainer import train


def _tensor_bytes(path) -> dict[str, bytes]:
    return {name: tensor.numpy().tobytes() for name, tensor in load_file(str(path)).items()}


@pytest.fixture
def old_style_checkpoint(tiny_config, tmp_path):
    """A tiny trained checkpoint as geoseg wrote them before: no domain, absolute data paths."""
    config = tiny_config.model_copy(update={"training": tiny_config.training.model_copy(update={"steps": 1})})
    trained = train(config, device="cpu").checkpoint
    model, metadata = load_generator(trained)
    old = metadata.model_copy(
        update={
            "domain": None,
            "training": {**metadata.training, "config": config.model_dump(mode="json")},
            "provenance": {**metadata.provenance, "train_scenes": [str(tmp_path / "absolute.tif")]},
        }
    )
    return save_checkpoint(tmp_path / "old.safetensors", model, old), metadata


def test_restamped_checkpoint_has_the_training_domain_and_identical_weights(old_style_checkpoint, tmp_path):
    old, trained = old_style_checkpoint
    out = tmp_path / "new.safetensors"
    restamp_checkpoint(old, out)
    new = read_metadata(out)
    assert new.domain == trained.domain
    assert new.training["config"] == trained.training["config"]  # paths as '$GEOSEG_SAMPLE_DATA/…'
    assert _tensor_bytes(out) == _tensor_bytes(old)
    assert new.model_dump(exclude={"domain", "training", "provenance"}) == trained.model_dump(
        exclude={"domain", "training", "provenance"}
    )


def test_restamping_refuses_when_the_training_data_no_longer_gives_the_stored_normalisation(
    old_style_checkpoint, tmp_path
):
    old, _ = old_style_checkpoint
    model, metadata = load_generator(old)
    shifted = metadata.normalization.model_copy(update={"mean": [m + 1 for m in metadata.normalization.mean]})
    tampered = save_checkpoint(
        tmp_path / "t.safetensors", model, metadata.model_copy(update={"normalization": shifted})
    )
    with pytest.raises(CheckpointError, match="training data has changed"):
        restamp_checkpoint(tampered, tmp_path / "never.safetensors")
    assert not (tmp_path / "never.safetensors").exists()


@pytest.fixture
def no_radiometry_checkpoint(tiny_config, tmp_path):
    """A tiny trained checkpoint as geoseg wrote them before radiometry was recorded."""
    config = tiny_config.model_copy(update={"training": tiny_config.training.model_copy(update={"steps": 1})})
    model, metadata = load_generator(train(config, device="cpu").checkpoint)
    return save_checkpoint(
        tmp_path / "old.safetensors", model, metadata.model_copy(update={"radiometry": None})
    )


def test_recorded_radiometry_is_the_configs_and_the_weights_stay_identical(
    no_radiometry_checkpoint, tmp_path
):
    out = tmp_path / "new.safetensors"
    record_radiometry(no_radiometry_checkpoint, out)
    assert read_metadata(out).radiometry == Radiometry()
    assert _tensor_bytes(out) == _tensor_bytes(no_radiometry_checkpoint)
    assert read_metadata(out).model_dump(exclude={"radiometry"}) == read_metadata(
        no_radiometry_checkpoint
    ).model_dump(exclude={"radiometry"})


def test_radiometry_is_not_recorded_for_a_model_trained_on_pixels_the_rule_would_scale(
    no_radiometry_checkpoint, tmp_path
):
    model, metadata = load_generator(no_radiometry_checkpoint)
    sixteen_bit = {
        **metadata.provenance,
        "train_scenes": ["$GEOSEG_SAMPLE_DATA/scenes/landsat8-224078-rgb.tif"],
    }
    old = save_checkpoint(
        tmp_path / "o.safetensors", model, metadata.model_copy(update={"provenance": sixteen_bit})
    )
    with pytest.raises(CheckpointError, match="pixels of type uint16, which the rule would scale: retrain"):
        record_radiometry(old, tmp_path / "never.safetensors")
    assert not (tmp_path / "never.safetensors").exists()


def test_recorded_band_colours_are_those_the_training_files_name_and_the_weights_stay_identical(
    no_radiometry_checkpoint, tmp_path
):
    model, metadata = load_generator(no_radiometry_checkpoint)
    old = save_checkpoint(
        tmp_path / "o.safetensors", model, metadata.model_copy(update={"band_colours": None})
    )
    out = tmp_path / "new.safetensors"
    record_band_colours(old, out)
    assert read_metadata(out).band_colours == ["red", "green", "blue"]
    assert _tensor_bytes(out) == _tensor_bytes(old)


def test_band_colours_are_not_recorded_when_the_training_config_chose_bands(
    no_radiometry_checkpoint, tmp_path
):
    model, metadata = load_generator(no_radiometry_checkpoint)
    config = metadata.training["config"]
    chosen = {
        **config,
        "data": {**config["data"], "train": [{**config["data"]["train"][0], "bands": [3, 2, 1]}]},
    }
    old = save_checkpoint(
        tmp_path / "o.safetensors",
        model,
        metadata.model_copy(update={"training": {**metadata.training, "config": chosen}}),
    )
    with pytest.raises(CheckpointError, match="its training config chose bands: retrain"):
        record_band_colours(old, tmp_path / "never.safetensors")
    assert not (tmp_path / "never.safetensors").exists()
