"""Segmentation metrics accumulated over many chips: IoU, F1, precision, recall, boundary F1.

Counts are summed over all valid pixels of all chips before dividing (micro average), per
foreground class; multi-class results are the mean over foreground classes. Boundary F1
(Csurka et al. 2013) compares mask outlines: a predicted boundary pixel is correct when a true
boundary pixel lies within ``tolerance_px`` (Chebyshev distance), and vice versa for recall.
``grid_phase_shares`` measures a 2-pixel grid artefact (checkerboard) in one predicted mask.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class SegmentationMetrics:
    """Validation metrics of the foreground class(es), each in [0, 1]."""

    iou: float
    f1: float
    precision: float
    recall: float
    boundary_f1: float
    pixels: int

    def as_dict(self) -> dict[str, float]:
        """Plain dict, for logs and checkpoint metadata."""
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def boundary(mask: np.ndarray) -> np.ndarray:
    """Pixels of a boolean mask (H, W) that have a 4-neighbour outside it."""
    eroded = ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(2, 1), border_value=1)
    result: np.ndarray = mask & ~eroded
    return result


def _near(mask: np.ndarray, tolerance_px: int) -> np.ndarray:
    if tolerance_px == 0 or not mask.any():
        return mask
    square = np.ones((2 * tolerance_px + 1, 2 * tolerance_px + 1), dtype=bool)
    near: np.ndarray = ndimage.binary_dilation(mask, structure=square)
    return near


def _ratio(num: float, den: float) -> float:
    """``num / den``, and 1.0 for 0 / 0: with nothing to find, nothing is missed (recall 1.0)."""
    return num / den if den else 1.0


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


@dataclass
class MetricAccumulator:
    """Sums pixel and boundary counts per foreground class over many (pred, target) chips."""

    num_classes: int
    tolerance_px: int = 2
    _counts: np.ndarray = field(init=False, repr=False)
    _pixels: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        # per foreground class: tp, fp, fn, boundary-pred-hit, boundary-pred, boundary-true-hit, boundary-true
        self._counts = np.zeros((self.num_classes - 1, 7), dtype=np.int64)

    def update(self, pred: np.ndarray, target: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Add chips: class ids (N, H, W) or (H, W) of prediction and truth, and validity."""
        pred = pred.reshape(-1, *pred.shape[-2:])
        target = target.reshape(-1, *target.shape[-2:])
        valid = np.ones(pred.shape, dtype=bool) if valid is None else valid.reshape(pred.shape)
        self._pixels += int(valid.sum())
        for chip_pred, chip_true, chip_valid in zip(pred, target, valid, strict=True):
            for cls in range(1, self.num_classes):
                p = (chip_pred == cls) & chip_valid
                t = (chip_true == cls) & chip_valid
                bp, bt = boundary(p) & chip_valid, boundary(t) & chip_valid
                self._counts[cls - 1] += (
                    int((p & t).sum()),
                    int((p & ~t).sum()),
                    int((~p & t).sum()),
                    int((bp & _near(bt, self.tolerance_px)).sum()),
                    int(bp.sum()),
                    int((bt & _near(bp, self.tolerance_px)).sum()),
                    int(bt.sum()),
                )

    def compute(self) -> SegmentationMetrics:
        """Metrics over everything added so far (mean over foreground classes)."""
        rows = []
        for tp, fp, fn, bph, bp, bth, bt in self._counts.tolist():
            precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
            b_precision, b_recall = _ratio(bph, bp), _ratio(bth, bt)
            rows.append(
                (
                    _ratio(tp, tp + fp + fn),
                    _f1(precision, recall),
                    precision,
                    recall,
                    _f1(b_precision, b_recall),
                )
            )
        iou, f1, precision, recall, boundary_f1 = (float(v) for v in np.mean(rows, axis=0))
        return SegmentationMetrics(iou, f1, precision, recall, boundary_f1, self._pixels)


def grid_phase_shares(foreground: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Foreground share (2, 2) of each pixel phase (row mod 2, column mod 2) of a mask (H, W).

    Objects do not care which phase a pixel is in, so on any real scene the four shares are
    equal up to noise; a spread (max − min) of more than about 0.01 is a grid artefact, such as
    the checkerboard of stride-2 transposed convolutions. NaN for a phase without valid pixels.
    """
    valid = np.ones(foreground.shape, dtype=bool) if valid is None else valid
    shares = np.full((2, 2), np.nan)
    for row in range(2):
        for col in range(2):
            phase_valid = valid[row::2, col::2]
            count = int(phase_valid.sum())
            if count:
                shares[row, col] = int((foreground[row::2, col::2] & phase_valid).sum()) / count
    return shares


def grid_phase_spread(foreground: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Largest minus smallest of the four ``grid_phase_shares``: 0 without a grid pattern."""
    shares = grid_phase_shares(foreground, valid)
    return float(np.nanmax(shares) - np.nanmin(shares))
