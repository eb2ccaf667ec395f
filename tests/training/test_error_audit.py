"""scripts/error-audit: where the errors lie relative to the labels, and sheets of drawn error pixels."""

from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import SHIPPED_MODEL

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "error-audit"
AUDIT = runpy.run_path(str(SCRIPT), run_name="error_audit")
error_shares, blob_filter_ious = AUDIT["error_shares"], AUDIT["blob_filter_ious"]


def test_errors_are_split_into_edges_of_labelled_buildings_and_blobs_touching_none():
    target = np.zeros((1, 40, 40), bool)
    target[0, 5:15, 5:15] = True  # a labelled building ...
    building = np.zeros_like(target)
    building[0, 5:15, 6:16] = True  # ... predicted one pixel to the right
    building[0, 30:34, 30:34] = True  # a blob far from any label (16 px)
    target[0, 25:27, 5:7] = True  # a labelled building nothing predicts (4 px)
    shares = error_shares(building, target, np.ones_like(target))
    # false positives: the shifted column (10 px, next to the label) and the blob (16 px)
    assert shares["FP within 2 px of a label"] == 10 / 26
    assert shares["FP in blobs touching no label"] == 16 / 26
    # false negatives: the uncovered column (10 px) and the missed building (4 px)
    assert shares["FN within 2 px of a prediction"] == 10 / 14
    assert shares["FN in buildings no prediction touches"] == 4 / 14
    assert shares["IoU"] == 90 / (90 + 26 + 14)


def test_dropping_blobs_gains_what_their_false_pixels_cost():
    target = np.zeros((1, 40, 40), bool)
    target[0, 5:15, 5:15] = True
    building = target.copy()
    building[0, 30:34, 30:34] = True  # a blob touching no label (16 px) ...
    building[0, 20:22, 5:7] = True  # and a smaller one (4 px)
    probability = np.where(building, 95, 5).astype(np.uint8)
    probability[0, 30:34, 30:34] = 72  # the first predicted unsure, the second confident
    valid = np.ones_like(target)
    assert error_shares(building, target, valid)["IoU without blobs touching no label"] == 1.0
    ious = blob_filter_ious(building, target, valid, probability)
    assert ious["IoU without blobs of mean probability < 70 %"] == 100 / 120
    assert ious["IoU without blobs of mean probability < 75 %"] == 100 / 104


def test_the_audit_of_a_real_place_prints_its_shares_and_writes_the_sheets(sample_data, tmp_path):
    result = subprocess.run(
        [
            *(sys.executable, str(SCRIPT), str(SHIPPED_MODEL), "--place", "hotosm-ramp/val-chips/"),
            *("--config", "workflows/train-buildings.yaml", "--out", str(tmp_path), "--samples", "5"),
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=SCRIPT.parents[1],
    )
    iou = float(result.stdout.split("IoU: ")[1].split()[0])
    assert 0.6 < iou < 0.8  # the shipped model on the Kampala held-out chips: 0.691 in MODEL_CARD.md
    for kind in ("false-positive", "false-negative"):
        sheet = Image.open(tmp_path / f"{kind}-0.png")
        assert sheet.size == (4 * 96 * 3, 2 * 96 * 3)  # five panels, four to a row
    assert result.stdout.count(".tif row ") == 10  # a line per panel
