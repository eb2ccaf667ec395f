"""Evaluate a generator on labelled chips: predict with a ``Predictor``, accumulate metrics.

The same function scores the validation chips during training and a shipped checkpoint
against any labelled scenes (``geoseg evaluate``), so the two numbers are comparable.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from geoseg.errors import ConfigError
from geoseg.inference import Predictor
from geoseg.training.chips import Chip, ChipReader, chip_windows, open_datasets
from geoseg.training.config import DatasetConfig
from geoseg.training.metrics import MetricAccumulator, SegmentationMetrics
from geoseg.workflow import TTA


def evaluate_chips(
    predictor: Predictor,
    reader: ChipReader,
    chips: Sequence[Chip],
    tolerance_px: int = 2,
    batch_size: int = 8,
) -> SegmentationMetrics:
    """Metrics of the predictor's class ids against the labels of ``chips`` (valid pixels only)."""
    accumulator = MetricAccumulator(predictor.num_classes, tolerance_px)
    for start in range(0, len(chips), batch_size):
        batch = [reader.read(chip) for chip in chips[start : start + batch_size]]
        ids = predictor.classify(np.stack([b.image for b in batch]))
        accumulator.update(ids, np.stack([b.target for b in batch]), np.stack([b.valid for b in batch]))
    return accumulator.compute()


def tiled_chips(reader: ChipReader, window_px: int) -> list[Chip]:
    """Non-overlapping windows covering every scene of ``reader`` (edge windows flush)."""
    return [
        chip
        for index, item in enumerate(reader.scenes)
        for chip in chip_windows(index, item.scene.width, item.scene.height, window_px, window_px)
    ]


def evaluate_checkpoint(
    checkpoint: str | os.PathLike[str],
    datasets: Sequence[DatasetConfig],
    *,
    window_px: int = 256,
    tolerance_px: int = 2,
    device: str = "auto",
    batch_size: int = 8,
    tta: TTA = "none",
) -> tuple[SegmentationMetrics, int]:
    """Metrics of a checkpoint on labelled scenes, read in ``window_px`` windows; and scene count.

    ``tta`` scores the masks ``predict``/``run`` make with that test-time augmentation.
    """
    predictor = Predictor.from_checkpoint(checkpoint, device=device, batch_size=batch_size, tta=tta)
    reader, chips = scored_windows(predictor, datasets, window_px)
    metrics = evaluate_chips(predictor, reader, chips, tolerance_px, batch_size)
    if metrics.pixels == 0:  # 0 / 0 would score as perfect
        raise ConfigError(
            f"{', '.join(d.masks or d.labels or d.images for d in datasets)}: no labelled pixel "
            f"on the {len(reader.scenes)} scenes (every label value is nodata, or no class id)"
        )
    return metrics, len(reader.scenes)


def scored_windows(
    predictor: Predictor, datasets: Sequence[DatasetConfig], window_px: int = 256
) -> tuple[ChipReader, list[Chip]]:
    """The labelled scenes of ``datasets`` as the predictor reads them, in windows of about
    ``window_px`` (a multiple of its stride) covering every scene."""
    stride = predictor.metadata.total_stride
    window_px = max(stride, window_px - window_px % stride)
    scenes = open_datasets(datasets, predictor.metadata.classes, predictor.metadata.radiometry)
    reader = ChipReader(scenes)
    return reader, tiled_chips(reader, window_px)
