"""Checkpoints: a round trip gives identical outputs; pickles are refused, never loaded."""

from __future__ import annotations

import pytest
import torch

from geoseg.errors import CheckpointError
from geoseg.model.checkpoint import ModelMetadata, load_generator, read_metadata, save_checkpoint
from geoseg.model.discriminator import NLayerDiscriminator
from geoseg.model.unet import UNetGenerator


def _trained_looking_generator():
    torch.manual_seed(0)
    model = UNetGenerator(3, 2, base_width=8, depth=2)
    with torch.no_grad():  # non-default BatchNorm statistics must survive the round trip too
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
    return model.eval()


def _metadata(model):
    return ModelMetadata.for_generator(
        model,
        classes=["background", "building"],
        mean=[100.0, 110, 120],
        std=[50.0, 40, 30],
        training={"steps": 3},
        provenance={"counts": {"train_chips": 9}},
        metrics={"validation": {"iou": 0.5}},
    )


def test_round_trip_gives_identical_outputs(tmp_path):
    model = _trained_looking_generator()
    path = save_checkpoint(tmp_path / "m.safetensors", model, _metadata(model))
    loaded, metadata = load_generator(path)
    image = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(image), loaded(image))
    assert metadata == _metadata(model)
    assert read_metadata(path).receptive_radius_px == model.receptive_radius_px


def test_pickled_checkpoint_is_refused(tmp_path):
    model = _trained_looking_generator()
    path = tmp_path / "evil.safetensors"
    torch.save(model.state_dict(), path)
    with pytest.raises(CheckpointError, match="pickled"):
        load_generator(path)


def test_weights_that_do_not_match_the_metadata_are_refused(tmp_path):
    model = _trained_looking_generator()
    other = UNetGenerator(3, 2, base_width=4, depth=2)
    path = save_checkpoint(tmp_path / "m.safetensors", other, _metadata(model))
    with pytest.raises(CheckpointError, match="do not match"):
        load_generator(path)


def test_patch_discriminator_scores_patches_of_image_and_mask():
    critic = NLayerDiscriminator(3 + 1, base_width=8, n_layers=3, spectral_norm=True)
    scores = critic(torch.randn(2, 3, 64, 64), torch.rand(2, 1, 64, 64))
    assert scores.shape == (2, 1, 6, 6)
    assert any("parametrizations" in name for name, _ in critic.named_parameters())


@pytest.mark.parametrize("low_byte", [0x80, 0x50])
def test_checkpoint_whose_header_size_starts_like_a_pickle_still_loads(tmp_path, low_byte):
    """The header size's first byte is arbitrary: 0x80 (pickle) or 'P' (zip) must not be refused."""
    model = _trained_looking_generator()
    for pad in range(0, 512, 8):
        path = save_checkpoint(
            tmp_path / "m.safetensors",
            model,
            _metadata(model).model_copy(update={"training": {"pad": "x" * pad}}),
        )
        if path.read_bytes()[0] == low_byte:
            break
    else:
        pytest.fail(f"no padding gave a header size with low byte {low_byte:#x}")
    loaded, _ = load_generator(path)
    assert read_metadata(path).training["pad"] == "x" * pad
    image = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(image), loaded(image))


def test_file_that_is_not_safetensors_is_refused(tmp_path):
    path = tmp_path / "notes.safetensors"
    path.write_text("these are not weights")
    with pytest.raises(CheckpointError, match="not a safetensors checkpoint"):
        load_generator(path)
