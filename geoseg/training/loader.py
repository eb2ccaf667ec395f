"""Training batches: planned chip draws, read and augmented by ``DataLoader`` workers, pinned for the GPU.

The split follows torchgeo: the sampler (``chips.ChipSampler``) decides in the training process
which chips and views to show, from the seeded numpy generator; the dataset (``ChipDataset``)
turns one draw into pixels, a pure function of the draw, so any number of workers gives the same
batches in the same order; the ``DataLoader`` reads ahead in ``workers`` processes (window reads
in parallel) and, for a GPU, pins batches in page-locked memory so copies overlap the step.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from geoseg.training.chips import ChipReader, Draw, augmented

ChipArrays = tuple[np.ndarray, np.ndarray, np.ndarray]
PREFETCH_BATCHES = 4
"""Batches each worker reads ahead."""


@dataclass(frozen=True)
class Batch:
    """Raw pixels (N, C, H, W) float32, class ids (N, H, W) uint8 and validity (N, H, W) bool (CPU)."""

    image: torch.Tensor
    target: torch.Tensor
    valid: torch.Tensor

    def pin_memory(self) -> Batch:
        """The batch in page-locked memory (``DataLoader(pin_memory=True)`` calls this)."""
        return Batch(self.image.pin_memory(), self.target.pin_memory(), self.valid.pin_memory())


class ChipDataset(Dataset[ChipArrays]):
    """Item ``i`` is draw ``i`` of a plan: its chip read and shown in its dihedral view."""

    def __init__(self, reader: ChipReader, draws: Sequence[Draw]) -> None:
        self.reader = reader
        self.draws = list(draws)

    def __len__(self) -> int:
        return len(self.draws)

    def __getitem__(self, index: int) -> ChipArrays:
        draw = self.draws[index]
        return augmented(self.reader.read(draw.chip), draw)


def collate(items: Sequence[ChipArrays]) -> Batch:
    """Stack chips into a batch of tensors."""
    images, targets, valids = zip(*items, strict=True)
    return Batch(
        torch.from_numpy(np.stack(images)),
        torch.from_numpy(np.stack(targets)),
        torch.from_numpy(np.stack(valids)),
    )


def chip_batches(
    reader: ChipReader,
    draws: Sequence[Draw],
    batch_size: int,
    *,
    workers: int = 0,
    pin_memory: bool = False,
) -> Iterable[Batch]:
    """Consecutive ``batch_size`` draws as batches, read by ``workers`` processes (0: this one)."""
    loader: DataLoader[ChipArrays] = DataLoader(
        ChipDataset(reader, draws),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=pin_memory,
        prefetch_factor=PREFETCH_BATCHES if workers else None,
    )
    return loader
