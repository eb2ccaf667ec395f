"""Test-time augmentation: class probabilities averaged over flipped / rotated views."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from geoseg.distributed import worker_state
from geoseg.distributed.run import _plan
from geoseg.distributed.worker_state import predictor_for
from geoseg.errors import ConfigError
from geoseg.inference import Predictor
from geoseg.maskformat import NODATA, PROBABILITY_SCALE
from geoseg.model.linear import LinearSegmenter
from geoseg.model.metadata import ModelMetadata, read_metadata
from geoseg.scenes import open_scene, read_window
from geoseg.workflow import load_workflow, parse_workflow
from tests.conftest import SHIPPED_MODEL, make_checkpoint, tiled_and_whole_masks


def _predictor(
    model: nn.Module, tta: str, bands: int = 2, classes: int = 3, device: str = "cpu"
) -> Predictor:
    """A predictor for ``model``; normalisation is the identity."""
    names = [f"c{i}" for i in range(classes)]
    meta = ModelMetadata.for_generator(
        LinearSegmenter(bands, classes), classes=names, mean=[0.0] * bands, std=[1.0] * bands
    )
    return Predictor(model.to(device), meta, torch.device(device), batch_size=3, tta=tta)


def _asymmetric_net(classes: int = 3) -> nn.Module:
    """A 3×3 conv with fixed random weights: it sees left from right, up from down."""
    torch.manual_seed(1)
    return nn.Conv2d(2, 1 if classes == 2 else classes, 3, padding=1).eval()


def _tiles(height: int = 16, width: int = 16) -> np.ndarray:
    return np.random.default_rng(0).normal(0, 1, (5, 2, height, width)).astype(np.float32)


def _expected(model: nn.Module, tiles: np.ndarray, views) -> tuple[np.ndarray, np.ndarray]:
    """Classes and percent from the mean softmax of the views, each view undone by hand in numpy."""
    total = 0.0
    for forward, back in views:
        with torch.no_grad():
            logits = model(torch.from_numpy(np.ascontiguousarray(forward(tiles))))
        total = total + back(torch.softmax(logits, dim=1).numpy())
    mean = total / len(views)
    return mean.argmax(axis=1), np.round(mean.max(axis=1) * PROBABILITY_SCALE)


def _flip(axes):
    return lambda a: np.flip(a, axes) if axes else a


FLIPS = [(_flip(axes), _flip(axes)) for axes in [(), (-1,), (-2,), (-2, -1)]]
DIHEDRAL = [
    (
        lambda a, k=k, f=f: np.rot90(_flip(f)(a), k, (-2, -1)),
        lambda a, k=k, f=f: _flip(f)(np.rot90(a, -k, (-2, -1))),
    )
    for k in range(4)
    for f in [(), (-1,)]
]


@pytest.mark.parametrize("tta", ["flips", "dihedral"])
def test_a_flip_equivariant_model_gives_the_same_classes_with_tta(tta):
    model = LinearSegmenter.band_threshold(2, band=1, threshold=0.0)
    tiles = _tiles(16, 24)
    plain_classes, plain_percent = _predictor(model, "none", classes=2).predict(tiles)
    classes, percent = _predictor(model, tta, classes=2).predict(tiles)
    assert np.array_equal(classes, plain_classes)
    assert np.abs(percent.astype(int) - plain_percent).max() <= 1


@pytest.mark.parametrize(
    ("tta", "views"), [("flips", FLIPS), ("dihedral", DIHEDRAL)], ids=["flips", "dihedral"]
)
@pytest.mark.parametrize("shape", [(16, 16), (16, 24)], ids=["square", "non-square"])
def test_tta_averages_the_probabilities_of_the_views_turned_back(tta, views, shape):
    model = _asymmetric_net()
    tiles = _tiles(*shape)
    classes, percent = _predictor(model, tta).predict(tiles)
    expected_classes, expected_percent = _expected(model, tiles, views)
    assert classes.shape == tiles[:, 0].shape
    assert (classes == expected_classes).mean() > 0.999  # float summation order may break a tie
    assert np.abs(percent - expected_percent).max() <= 1
    plain, _ = _predictor(model, "none").predict(tiles)
    assert not np.array_equal(plain, classes), "the model must not be flip-equivariant"


def test_binary_tta_averages_sigmoid_probabilities():
    model = _asymmetric_net(classes=2)
    tiles = _tiles()
    classes, percent = _predictor(model, "flips", classes=2).predict(tiles)
    total = 0.0
    for axes in [(), (-1,), (-2,), (-2, -1)]:
        with torch.no_grad():
            logits = model(torch.from_numpy(np.ascontiguousarray(_flip(axes)(tiles))))
        total = total + _flip(axes)(torch.sigmoid(logits)[:, 0].numpy())
    foreground = total / 4
    assert (classes == (foreground > 0.5)).mean() > 0.999
    expected = np.round(np.maximum(foreground, 1 - foreground) * PROBABILITY_SCALE)
    assert np.abs(percent - expected).max() <= 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_tta_on_gpu_bf16_channels_last_agrees_with_cpu():
    tiles = _tiles(32, 48)
    cpu_classes, _ = _predictor(_asymmetric_net(), "dihedral").predict(tiles)
    gpu = _asymmetric_net().to(memory_format=torch.channels_last)
    gpu_classes, _ = _predictor(gpu, "dihedral", device="cuda").predict(tiles)
    assert (gpu_classes == cpu_classes).mean() > 0.95  # bf16 moves near-ties only


@pytest.mark.parametrize("tta", ["flips", pytest.param("dihedral", marks=pytest.mark.slow)])
def test_tiled_mask_equals_whole_image_mask_with_tta(sample_data, tmp_path, tta):
    scene = open_scene(sample_data / "edge/RGB.byte.tif")  # 791 × 718: the whole pass is not square
    pixels, _ = read_window(scene, scene.window)
    checkpoint = make_checkpoint(tmp_path / "model.safetensors", pixels)
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu", batch_size=4, tta=tta)
    tiled_mask, whole_mask = tiled_and_whole_masks(scene.path, predictor, tmp_path)
    assert set(np.unique(whole_mask)) - {NODATA} == {0, 1}, "the test model must predict both classes"
    assert (tiled_mask == whole_mask).mean() >= 0.9999


def test_unknown_tta_is_refused_naming_it():
    with pytest.raises(ConfigError, match="tta: expected one of none, flips, dihedral, got 'rot'"):
        _predictor(LinearSegmenter(2, 3), "rot")


def test_bad_tta_in_a_workflow_is_one_line_naming_the_field(tmp_path):
    path = tmp_path / "wf.yaml"
    path.write_text("inputs: a.tif\nmodel: m\noutput: o\ninference: {tta: mirror}\n")
    with pytest.raises(ConfigError, match=r"field 'inference\.tta'") as error:
        load_workflow(path)
    assert "\n" not in str(error.value)


def test_tta_is_part_of_the_workflow_fingerprint(tmp_path):
    (tmp_path / "m").write_bytes(b"x")
    fingerprints = set()
    for tta in ["none", "flips", "dihedral"]:
        path = tmp_path / f"{tta}.yaml"
        path.write_text(f"inputs: a.tif\nmodel: m\noutput: o\ninference: {{tta: {tta}}}\n")
        fingerprints.add(load_workflow(path).fingerprint())
    assert len(fingerprints) == 3


def test_a_run_passes_tta_to_the_worker_predictor(sample_data, tmp_path, monkeypatch):
    raw = {"inputs": str(sample_data / "edge/RGB.byte.tif"), "model": str(SHIPPED_MODEL), "output": "out"}
    workflow = parse_workflow({**raw, "inference": {"tta": "flips"}}, base_dir=tmp_path)
    (job,), _ = _plan(workflow, tmp_path / "out", SHIPPED_MODEL, read_metadata(SHIPPED_MODEL))
    assert job.inference.tta == "flips"
    monkeypatch.setattr(worker_state, "_PREDICTORS", {})  # this test's models only
    flips = predictor_for(job.model, "cpu", tta=job.inference.tta)
    assert flips.tta == "flips" and predictor_for(job.model, "cpu", tta="flips") is flips
    assert predictor_for(job.model, "cpu").tta == "none"
