"""Batched model inference: raw tile pixels in, class ids and probabilities out.

``Segmenter`` is the minimal contract a model must meet (normalised image batch → class
probabilities); ``Predictor`` adds what every caller needs around it: per-band normalisation
from the checkpoint metadata, batching, device placement, mixed precision on GPU.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from geoseg.errors import ConfigError, GeosegError
from geoseg.model.checkpoint import ModelMetadata, load_generator
from geoseg.model.unet import most_likely_class
from geoseg.timing import stage

PROBABILITY_SCALE = 100
"""Probabilities are stored as uint8 percent (0..100); 255 is nodata."""


class Segmenter(Protocol):
    """Anything that maps a normalised batch (N, bands, H, W) to logits (N, K, H, W)."""

    def __call__(self, image: torch.Tensor) -> torch.Tensor: ...


_DEVICE = re.compile(r"auto|cpu|cuda(:[0-9]+)?")


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when available, else CPU; ``cpu``, ``cuda`` and ``cuda:N`` are taken as given."""
    if not _DEVICE.fullmatch(device):
        raise ConfigError(f"device {device!r}: expected auto, cpu, cuda or cuda:N")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise GeosegError(f"device {device!r} requested but CUDA is not available")
    target = torch.device(device)
    if target.index is not None and target.index >= torch.cuda.device_count():
        raise ConfigError(f"device {device!r}: only {torch.cuda.device_count()} CUDA devices visible")
    return target


@dataclass
class Predictor:
    """Runs a segmenter over batches of raw tiles with the checkpoint's normalisation."""

    model: Segmenter
    metadata: ModelMetadata
    device: torch.device
    batch_size: int = 8

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {self.batch_size}")
        norm = self.metadata.normalization
        self._mean = torch.tensor(norm.mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self._std = torch.tensor(norm.std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self._autocast = self.device.type == "cuda"

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike[str],
        device: str = "auto",
        batch_size: int = 8,
        compile_model: bool = False,
    ) -> Predictor:
        """Load a checkpoint onto ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:1`` …).

        ``compile_model`` runs the network through ``torch.compile`` (fused kernels): a one-off
        cost of tens of seconds per process and per tile shape, for a faster forward pass.
        """
        model, metadata = load_generator(path)
        target = resolve_device(device)
        model = model.to(target)
        if target.type == "cuda":
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        segmenter: Segmenter = torch.compile(model) if compile_model else model
        return cls(segmenter, metadata, target, batch_size)

    @property
    def num_classes(self) -> int:
        """Classes the model predicts, background included."""
        return len(self.metadata.classes)

    def predict(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Class ids (N, H, W) uint8 and probability percent (N, H, W) uint8 for raw tiles."""
        classes = np.empty((tiles.shape[0], *tiles.shape[2:]), dtype=np.uint8)
        probability = np.empty_like(classes)
        for start in range(0, tiles.shape[0], self.batch_size):
            batch = slice(start, start + self.batch_size)
            classes[batch], probability[batch] = self._predict_batch(tiles[batch])
        return classes, probability

    @torch.inference_mode()
    def _predict_batch(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with stage("to_device"):
            pixels = torch.from_numpy(np.ascontiguousarray(tiles))
            if self.device.type == "cuda":
                pixels = pixels.pin_memory().to(self.device, non_blocking=True)
                pixels = pixels.contiguous(memory_format=torch.channels_last)
            image = (pixels.float() - self._mean) / self._std
        with stage("forward"):
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self._autocast):
                logits = self.model(image)
            best, ids = most_likely_class(logits.float())
            percent = torch.round(best * PROBABILITY_SCALE).to(torch.uint8)
            return ids.to(torch.uint8).cpu().numpy(), percent.cpu().numpy()
