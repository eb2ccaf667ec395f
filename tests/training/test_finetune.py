"""Fine-tuning (``init_from``): a run starts from a checkpoint's generator and keeps how it reads pixels."""

from __future__ import annotations

import hashlib
import re
import shutil

import pytest
import rasterio
import torch
from rasterio.enums import ColorInterp

from geoseg.errors import ConfigError, OutputError
from geoseg.model.checkpoint import load_generator
from geoseg.model.metadata import Domain, read_metadata
from geoseg.training.config import parse_config
from geoseg.training.finetune import interpolated, widened
from geoseg.training.trainer import train


@pytest.fixture
def start(tiny_config_factory, tmp_path):
    """A tiny trained checkpoint to fine-tune."""
    return train(parse_config(tiny_config_factory(tmp_path / "start.safetensors"), tmp_path)).checkpoint


def test_fine_tuning_starts_from_the_checkpoints_weights_and_keeps_its_normalisation(
    tiny_config_factory, tmp_path, start
):
    raw = tiny_config_factory(tmp_path / "tuned.safetensors", steps=1, lr_g=1e-12, eval_every_steps=1)
    tuned = train(parse_config({**raw, "init_from": str(start)}, tmp_path)).checkpoint
    fresh = train(
        parse_config(tiny_config_factory(tmp_path / "fresh.safetensors", steps=1), tmp_path)
    ).checkpoint
    before, after, scratch = (load_generator(path)[0].state_dict() for path in (start, tuned, fresh))
    convolutions = [name for name, value in before.items() if value.ndim == 4]
    assert all(torch.allclose(before[name], after[name], atol=1e-6) for name in convolutions)
    assert not all(torch.allclose(before[name], scratch[name], atol=1e-6) for name in convolutions)
    started, metadata = read_metadata(start), read_metadata(tuned)
    assert metadata.normalization == started.normalization
    assert metadata.provenance["init_from"]["sha256"] == hashlib.sha256(start.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"generator": {"base_width": 4, "depth": 2}}, "base_width 8"),
        ({"generator": {"base_width": 8, "depth": 2, "upsample": "transpose"}}, "upsample"),
        ({"data_classes": ["background", "roof"]}, "its classes are"),
        ({"radiometry": {"percentiles": [2, 98]}}, "radiometry"),
    ],
)
def test_a_checkpoint_that_does_not_fit_the_config_is_refused_naming_init_from(
    tiny_config_factory, tmp_path, start, change, named
):
    raw = {**tiny_config_factory(tmp_path / "tuned.safetensors"), "init_from": str(start)}
    if "generator" in change:
        raw["generator"] = change["generator"]
    if "data_classes" in change:
        raw["data"] = {**raw["data"], "classes": change["data_classes"]}
    if "radiometry" in change:
        raw["data"] = {**raw["data"], "radiometry": change["radiometry"]}
    with pytest.raises(ConfigError, match="init_from") as error:
        train(parse_config(raw, tmp_path))
    assert named in str(error.value) and "\n" not in str(error.value)


def test_a_checkpoint_that_does_not_fit_is_refused_before_the_data_is_read(
    tiny_config_factory, tmp_path, start
):
    raw = {**tiny_config_factory(tmp_path / "tuned.safetensors"), "init_from": str(start)}
    raw["generator"] = {"base_width": 4, "depth": 2}
    raw["data"]["train"][0]["images"] = str(tmp_path / "not-there" / "*.tif")  # preparing it would fail
    with pytest.raises(ConfigError, match=r"init_from.*base_width"):
        train(parse_config(raw, tmp_path))


def test_the_domain_of_a_fine_tuned_model_spans_both_datasets():
    old = Domain(gsd_min_m=0.07, gsd_max_m=0.3, mean=[1.0], std=[2.0], p1=[10.0], p99=[200.0])
    new = Domain(gsd_min_m=0.1, gsd_max_m=0.5, mean=[3.0], std=[4.0], p1=[20.0], p99=[240.0])
    both = widened(old, new)
    assert (both.gsd_min_m, both.gsd_max_m, both.p1, both.p99) == (0.07, 0.5, [10.0], [240.0])
    assert (both.mean, both.std) == ([1.0], [2.0]), "the normalisation stays the starting model's"
    assert widened(None, new) == new


def test_a_fine_tuned_checkpoint_never_replaces_the_one_it_starts_from(tiny_config_factory, tmp_path, start):
    before = start.read_bytes()
    raw = {**tiny_config_factory(start), "init_from": str(start)}
    with pytest.raises(OutputError, match="input"):
        train(parse_config(raw, tmp_path))
    assert start.read_bytes() == before


def test_a_checkpoint_never_replaces_a_training_scene(tiny_config_factory, tmp_path, sample_data):
    original = sorted((sample_data / "labeled/hotosm-ramp/chips").glob("OAM-1238450-*.tif"))[0]
    chip = tmp_path / original.name  # its mask is found by its name
    shutil.copy(original, chip)
    raw = tiny_config_factory(chip)
    raw["data"]["train"][0]["images"] = str(chip)
    before = chip.read_bytes()
    with pytest.raises(OutputError, match=re.escape(chip.name)):
        train(parse_config(raw, tmp_path))
    assert chip.read_bytes() == before


def test_files_that_do_not_name_their_bands_keep_the_starting_models_colours(
    tiny_config_factory, tmp_path, start, sample_data
):
    unnamed = tmp_path / "unnamed"
    unnamed.mkdir()
    for chip in sorted((sample_data / "labeled/hotosm-ramp/chips").glob("OAM-1238450-*.tif")):
        shutil.copy(chip, unnamed / chip.name)
        with rasterio.open(unnamed / chip.name, "r+") as dataset:
            dataset.colorinterp = [ColorInterp.undefined] * dataset.count
    raw = {**tiny_config_factory(tmp_path / "tuned.safetensors", steps=1), "init_from": str(start)}
    raw["data"]["train"][0]["images"] = str(unnamed / "OAM-1238450-*.tif")
    raw["data"]["val"] = [dict(raw["data"]["train"][0])]
    tuned = train(parse_config(raw, tmp_path)).checkpoint
    assert read_metadata(tuned).band_colours == read_metadata(start).band_colours == ["red", "green", "blue"]


def test_a_blend_with_the_start_is_the_weighted_mean_of_every_floating_tensor():
    tuned = {"conv.weight": torch.full((2, 2), 4.0), "bn.num_batches_tracked": torch.tensor(7)}
    start = {"conv.weight": torch.zeros(2, 2), "bn.num_batches_tracked": torch.tensor(3)}
    assert torch.equal(interpolated(tuned, start, 0.0)["conv.weight"], tuned["conv.weight"])
    assert torch.equal(interpolated(tuned, start, 0.25)["conv.weight"], torch.full((2, 2), 3.0))
    assert interpolated(tuned, start, 0.5)["bn.num_batches_tracked"] == 7, "counters are the tuned run's"
    with pytest.raises(ValueError, match="different tensors"):
        interpolated(tuned, {"conv.weight": start["conv.weight"]}, 0.5)


def test_init_from_share_saves_the_fine_tuned_weights_blended_with_the_start(
    tiny_config_factory, tmp_path, start
):
    """The same run twice (CPU: the same weights), once saved as fine-tuned, once blended half-half."""
    raw = {**tiny_config_factory(tmp_path / "tuned.safetensors"), "init_from": str(start)}
    tuned = train(parse_config(raw, tmp_path))
    raw = {**raw, "out": str(tmp_path / "blend.safetensors"), "init_from_share": 0.5}
    blend = train(parse_config(raw, tmp_path))
    tuned_state, start_state = (load_generator(path)[0].state_dict() for path in (tuned.checkpoint, start))
    saved = load_generator(blend.checkpoint)[0].state_dict()
    expected = interpolated(tuned_state, start_state, 0.5)
    assert all(torch.allclose(saved[name], value, atol=1e-6) for name, value in expected.items())
    assert not torch.allclose(saved["head.weight"], tuned_state["head.weight"])
    assert read_metadata(blend.checkpoint).metrics["validation"] == blend.metrics.as_dict()


def test_init_from_share_needs_a_starting_checkpoint(tiny_config_factory, tmp_path):
    with pytest.raises(ConfigError, match=r"init_from_share.*needs init_from"):
        parse_config({**tiny_config_factory(), "init_from_share": 0.5}, tmp_path)
