"""scripts/colour-shift: a place's score under global radiometric shifts."""

from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from geoseg.training.config import load_config
from geoseg.training.evaluate import evaluate_checkpoint
from tests.conftest import SHIPPED_MODEL

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "colour-shift"
shifts = runpy.run_path(str(SCRIPT), run_name="colour_shift")["shifts"]


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
    assert len(rows) == 1 + 7  # the header and seven shifts
    entry = [e for e in load_config(SCRIPT.parents[1] / config).data.val if "val-chips" in e.images]
    metrics, _ = evaluate_checkpoint(SHIPPED_MODEL, entry, device="cpu")
    assert float(rows["as is"].split(" | ")[1]) == pytest.approx(metrics.iou, abs=5e-4)
    for name in ("band means moved to the model's", "brightness × 0.8"):
        assert 0 < float(rows[name].split(" | ")[1]) < 1
