"""scripts/colour-shift: a place's score under global radiometric shifts."""

from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from geoseg.training.config import load_config
from geoseg.training.evaluate import evaluate_checkpoint
from geoseg.training.finetune import interpolated
from tests.conftest import SHIPPED_MODEL

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "colour-shift"
script = runpy.run_path(str(SCRIPT), run_name="colour_shift")
shifts, place_batch_norm, BATCH = script["shifts"], script["place_batch_norm"], script["BATCH"]


def test_the_shifts_move_a_places_band_statistics_onto_the_models():
    rng = np.random.default_rng(0)
    image = rng.normal(
        [[[[100.0]], [[120.0]], [[80.0]]]], [[[[30.0]], [[20.0]], [[40.0]]]], size=(4, 3, 16, 16)
    )
    bands = image.transpose(1, 0, 2, 3).reshape(3, -1)
    mean, std = bands.mean(axis=1), bands.std(axis=1)
    model_mean, model_std = np.array([131.0, 136.0, 95.0]), np.array([46.0, 39.0, 46.0])
    changes = shifts(mean, std, model_mean, model_std)

    def statistics(name: str) -> tuple[np.ndarray, np.ndarray]:
        shifted = changes[name](image).transpose(1, 0, 2, 3).reshape(3, -1)
        return shifted.mean(axis=1), shifted.std(axis=1)

    assert np.array_equal(changes["as is"](image), image)
    moved_mean, moved_std = statistics("band means moved to the model's")
    assert moved_mean == pytest.approx(model_mean) and moved_std == pytest.approx(std)
    assert np.concatenate(statistics("band means and spreads matched")) == pytest.approx(
        np.concatenate([model_mean, model_std])
    )
    assert np.array_equal(changes["brightness × 1.2"](image), image * 1.2)


def test_batch_norm_statistics_are_measured_on_the_place_and_move_a_share_of_the_way():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4)).eval()
    model[1].running_mean.fill_(5.0)
    before = {name: value.clone() for name, value in model.state_dict().items()}
    windows = torch.randn(3 * BATCH, 3, 8, 8) * 2 + 1
    with torch.no_grad():
        features = model[0](windows)
    place_mean = features.mean(dim=(0, 2, 3))

    adapted = place_batch_norm(model, windows)
    assert adapted["1.running_mean"] == pytest.approx(place_mean.tolist(), abs=1e-5)
    assert adapted["1.running_var"] == pytest.approx(features.var(dim=(0, 2, 3)).tolist(), rel=1e-2)
    assert torch.equal(adapted["0.weight"], before["0.weight"])
    half = interpolated(before, adapted, 0.5)  # how the script moves the statistics half-way
    assert half["1.running_mean"] == pytest.approx(((place_mean + 5.0) / 2).tolist(), abs=1e-5)
    assert torch.equal(half["0.weight"], before["0.weight"])
    assert all(torch.equal(value, before[name]) for name, value in model.state_dict().items())
    assert not model.training


def test_a_real_place_is_scored_as_evaluate_scores_it_then_under_each_shift(sample_data):
    config = "workflows/train-buildings.yaml"
    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            str(SHIPPED_MODEL),
            "--place",
            "hotosm-ramp/val-chips/",
            "--config",
            config,
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=SCRIPT.parents[1],
    )
    rows = {
        line.split(" | ")[0].lstrip("| "): line
        for line in result.stdout.splitlines()
        if line.startswith("| ")
    }
    assert len(rows) == 1 + 7 + 2  # the header, seven shifts and two batch-norm adaptations
    entry = [e for e in load_config(SCRIPT.parents[1] / config).data.val if "val-chips" in e.images]
    metrics, _ = evaluate_checkpoint(SHIPPED_MODEL, entry, device="cpu")
    assert float(rows["as is"].split(" | ")[1]) == pytest.approx(metrics.iou, abs=5e-4)
    for name in (
        "band means moved to the model's",
        "brightness × 0.8",
        "batch-norm statistics 1 of the way to the place's",
    ):
        assert 0 < float(rows[name].split(" | ")[1]) < 1
