"""Batched model inference: raw tile pixels in, class ids and probabilities out.

``Segmenter`` is the minimal contract a model must meet (normalised image batch → class
probabilities); ``Predictor`` adds what every caller needs around it: per-band normalisation
from the checkpoint metadata, batching, device placement, mixed precision on GPU and optional
test-time augmentation (class probabilities averaged over flipped / rotated views).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from geoseg.errors import CheckpointError, ConfigError, GeosegError
from geoseg.maskformat import PROBABILITY_SCALE
from geoseg.model.checkpoint import load_generator
from geoseg.model.metadata import ModelMetadata
from geoseg.model.unet import class_probabilities, most_likely_class, most_likely_class_id
from geoseg.timing import stage
from geoseg.workflow import DEVICE, TTA, Precision

View = tuple[int, tuple[int, ...]]
"""A dihedral view of an (…, H, W) tensor: quarter turns after flipping these dims."""

VIEWS: dict[TTA, tuple[View, ...]] = {
    "none": ((0, ()),),
    "flips": ((0, ()), (0, (-1,)), (0, (-2,)), (0, (-2, -1))),
    "dihedral": tuple((turns, flip) for turns in range(4) for flip in ((), (-1,))),
}
"""Views whose probabilities test-time augmentation averages, per ``TTA`` mode."""


def to_view(image: torch.Tensor, view: View) -> torch.Tensor:
    """``image`` flipped, then turned ``view[0]`` quarter turns (H and W swap on odd turns)."""
    turns, flip = view
    image = image.flip(flip) if flip else image
    return image.rot90(turns, (-2, -1)) if turns else image


def from_view(output: torch.Tensor, view: View) -> torch.Tensor:
    """Undo ``to_view`` on a per-pixel output: back to the original orientation."""
    turns, flip = view
    output = output.rot90(-turns, (-2, -1)) if turns else output
    return output.flip(flip) if flip else output


class Segmenter(Protocol):
    """Anything that maps a normalised batch (N, bands, H, W) to logits (N, K, H, W)."""

    def __call__(self, image: torch.Tensor) -> torch.Tensor: ...


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when available, else CPU; ``cpu``, ``cuda`` and ``cuda:N`` are taken as given."""
    if not DEVICE.fullmatch(device):
        raise ConfigError(f"device {device!r}: expected auto, cpu, cuda or cuda:N")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise GeosegError(f"device {device!r} requested but CUDA is not available")
    target = torch.device(device)
    if target.index is not None and target.index >= torch.cuda.device_count():
        raise ConfigError(f"device {device!r}: only {torch.cuda.device_count()} CUDA devices visible")
    return target


MAX_TENSOR_ELEMENTS = 2**31 - 1
"""CUDA kernels such as channels-last bilinear up-sampling index with 32-bit integers."""


def safe_batch_size(metadata: ModelMetadata, height: int, width: int) -> int:
    """The most tiles per forward pass whose widest full-resolution feature map stays indexable.

    A U-Net's last decoder level holds ``2 × base_width`` channels at the tile's size (the
    H100 refused a batch of 128 tiles of 832² with base width 24: 128 × 48 × 832² > 2³¹).
    """
    arch = metadata.architecture
    channels = 2 * arch.base_width if arch.name == "unet" else arch.in_bands
    return max(1, MAX_TENSOR_ELEMENTS // (channels * height * width))


@dataclass
class Predictor:
    """Runs a segmenter over batches of raw tiles with the checkpoint's normalisation."""

    model: Segmenter
    metadata: ModelMetadata
    device: torch.device
    batch_size: int = 8
    tta: TTA = "none"
    """Test-time augmentation: ``flips`` (4 forward passes) or ``dihedral`` (8) per batch."""
    precision: Precision = "fp32"
    """``bf16``: the forward pass under bfloat16 autocast (faster on GPUs; 0.11 % of an H100's
    classes then differ from the CPU's fp32, against 0.007 % in fp32)."""

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.tta not in VIEWS:
            raise ConfigError(f"tta: expected one of {', '.join(VIEWS)}, got {self.tta!r}")
        norm = self.metadata.normalization
        self._mean = torch.tensor(norm.mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self._std = torch.tensor(norm.std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self._autocast = self.precision == "bf16"

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike[str],
        device: str = "auto",
        batch_size: int = 8,
        compile_model: bool = False,
        tta: TTA = "none",
        precision: Precision = "fp32",
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
        return cls(segmenter, metadata, target, batch_size, tta, precision)

    @property
    def num_classes(self) -> int:
        """Classes the model predicts, background included."""
        return len(self.metadata.classes)

    def predict(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Class ids (N, H, W) uint8 and probability percent (N, H, W) uint8 for raw tiles."""
        classes, probability = self._batched(tiles, with_probability=True)
        assert probability is not None
        return classes, probability

    def classify(self, tiles: np.ndarray) -> np.ndarray:
        """Class ids (N, H, W) uint8 for raw tiles: ``predict``'s, without the probabilities' cost."""
        classes, _ = self._batched(tiles, with_probability=False)
        return classes

    def _batched(self, tiles: np.ndarray, with_probability: bool) -> tuple[np.ndarray, np.ndarray | None]:
        classes = np.empty((tiles.shape[0], *tiles.shape[2:]), dtype=np.uint8)
        probability = np.empty_like(classes) if with_probability else None
        step = min(self.batch_size, safe_batch_size(self.metadata, *tiles.shape[2:]))
        for start in range(0, tiles.shape[0], step):
            batch = slice(start, start + step)
            classes[batch], percent = self._predict_batch(tiles[batch], with_probability)
            if probability is not None:
                probability[batch] = percent
        return classes, probability

    @torch.inference_mode()
    def _predict_batch(
        self, tiles: np.ndarray, with_probability: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        with stage("to_device"):
            pixels = torch.from_numpy(np.ascontiguousarray(tiles))
            if self.device.type == "cuda":
                pixels = pixels.pin_memory().to(self.device, non_blocking=True)
                pixels = pixels.contiguous(memory_format=torch.channels_last)
            image = pixels.to(torch.float32, copy=True).sub_(self._mean).div_(self._std)
        with stage("forward"):
            if not with_probability:
                ids = (
                    most_likely_class_id(self._logits(image))
                    if self.tta == "none"
                    else self._mean_probabilities(image).argmax(dim=1).to(torch.uint8)
                )
                return ids.cpu().numpy(), None
            if self.tta == "none":
                best, ids = most_likely_class(self._logits(image))
            else:
                best, ids = self._mean_probabilities(image).max(dim=1)
            percent = torch.round(best * PROBABILITY_SCALE).to(torch.uint8)
            return ids.to(torch.uint8).cpu().numpy(), percent.cpu().numpy()

    def _logits(self, image: torch.Tensor) -> torch.Tensor:
        """The model's float32 logits (bf16 autocast and channels_last on GPU)."""
        if self.device.type == "cuda":
            image = image.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self._autocast):
            logits = self.model(image).float()
        if not bool(torch.isfinite(logits).all()):  # else argmax makes them background, in silence
            raise CheckpointError(
                "the model's outputs are not finite (NaN or infinity): its weights or normalisation "
                "overflow on these pixels"
            )
        return logits

    def _mean_probabilities(self, image: torch.Tensor) -> torch.Tensor:
        """Class probabilities (N, K, H, W) averaged over the ``tta`` views, each turned back."""
        views = VIEWS[self.tta]
        total = sum(
            (from_view(class_probabilities(self._logits(to_view(image, view))), view) for view in views),
            torch.zeros((), device=self.device),
        )
        return total / len(views)
