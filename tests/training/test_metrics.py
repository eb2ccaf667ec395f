"""Metrics: perfect masks score 1, a one-pixel shift keeps boundary F1 within tolerance."""

from __future__ import annotations

import numpy as np
import pytest

from geoseg.training.metrics import MetricAccumulator, boundary, grid_phase_shares, grid_phase_spread


def _square(offset=0):
    mask = np.zeros((32, 32), dtype=np.uint8)
    mask[8 + offset : 20 + offset, 8:20] = 1
    return mask


def test_perfect_prediction_scores_one():
    acc = MetricAccumulator(2)
    acc.update(_square(), _square())
    m = acc.compute()
    assert (m.iou, m.f1, m.precision, m.recall, m.boundary_f1) == (1, 1, 1, 1, 1)


def test_one_pixel_shift_is_within_boundary_tolerance_but_not_exact():
    acc = MetricAccumulator(2, tolerance_px=2)
    acc.update(_square(1), _square())
    m = acc.compute()
    assert m.iou == pytest.approx(132 / 156)
    assert m.boundary_f1 == 1.0
    strict = MetricAccumulator(2, tolerance_px=0)
    strict.update(_square(1), _square())
    assert strict.compute().boundary_f1 < 1


def test_precision_and_recall_count_false_positives_and_negatives():
    pred = np.zeros((1, 4, 4), dtype=np.uint8)
    pred[0, 0, :2] = 1
    truth = np.zeros((1, 4, 4), dtype=np.uint8)
    truth[0, 0, 1:4] = 1
    acc = MetricAccumulator(2)
    acc.update(pred, truth)
    m = acc.compute()
    assert (m.precision, m.recall, m.iou) == (0.5, pytest.approx(1 / 3), 0.25)


def test_invalid_pixels_do_not_count():
    valid = np.zeros((32, 32), dtype=bool)
    valid[:, :16] = True
    pred = _square()
    pred[:, 16:] = 1
    acc = MetricAccumulator(2)
    acc.update(pred, _square(), valid)
    assert acc.compute().precision == 1.0 and acc.compute().pixels == 512


def test_boundary_is_the_inner_outline():
    outline = boundary(_square().astype(bool))
    assert outline.sum() == 4 * 12 - 4


def test_grid_phase_shares_find_a_checkerboard():
    """Foreground only on even rows and even columns: one phase full, three empty."""
    foreground = np.zeros((64, 64), dtype=bool)
    foreground[::2, ::2] = True
    np.testing.assert_array_equal(grid_phase_shares(foreground), [[1.0, 0.0], [0.0, 0.0]])
    assert grid_phase_spread(foreground) == 1.0


def test_objects_without_a_grid_pattern_have_no_phase_spread():
    foreground = np.zeros((64, 64), dtype=bool)
    foreground[10:30, 5:41] = True  # even-sized: as much in every phase
    foreground[40:60, 40:60] = True
    assert grid_phase_spread(foreground) == 0.0
    speckle = np.random.default_rng(0).random((512, 512)) < 0.2
    assert grid_phase_spread(speckle) < 0.01


def test_grid_phase_shares_count_valid_pixels_only():
    foreground = np.zeros((4, 4), dtype=bool)
    foreground[0, 0] = foreground[1, 1] = True
    valid = np.ones((4, 4), dtype=bool)
    valid[2:, :] = False  # the bottom half is nodata
    np.testing.assert_array_equal(grid_phase_shares(foreground, valid), [[0.5, 0.0], [0.0, 0.5]])
