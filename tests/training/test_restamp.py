"""Restamping: a checkpoint trained before domains were recorded gains one, with the same weights."""

from __future__ import annotations

import pytest
from safetensors.torch import load_file

from geoseg.errors import CheckpointError
from geoseg.model.checkpoint import load_generator, save_checkpoint
from geoseg.model.metadata import read_metadata
from geoseg.training.restamp import restamp_checkpoint
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
