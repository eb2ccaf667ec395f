"""A per-pixel linear classifier: one 1×1 convolution on the normalised bands.

A spectral baseline (water, vegetation) and the pipeline's speed reference: its forward pass
costs almost nothing, so what a run spends beside it is the pipeline's own cost. Each output
pixel sees only its own input pixel (receptive radius 0) and any tile origin works (stride 1).
Its head has the U-Net head's shape, so ``class_probabilities`` reads both the same way.
"""

from __future__ import annotations

import torch
from torch import nn

from geoseg.model.architecture import LinearArchitecture, logit_channels


class LinearSegmenter(nn.Module):
    """Maps an image (N, bands, H, W) to class logits (N, K, H, W), pixel by pixel."""

    def __init__(self, in_bands: int, num_classes: int):
        super().__init__()
        if num_classes < 2:
            raise ValueError("num_classes counts the background too, so it is at least 2")
        self.in_bands = in_bands
        self.num_classes = num_classes
        self.head = nn.Conv2d(in_bands, logit_channels(num_classes), 1)

    @classmethod
    def band_threshold(cls, in_bands: int, band: int, threshold: float) -> LinearSegmenter:
        """Two classes: class 1 where the normalised value of ``band`` (0-based) exceeds ``threshold``."""
        model = cls(in_bands, 2)
        weight = torch.zeros_like(model.head.weight)
        weight[0, band] = 1.0
        model.head.load_state_dict({"weight": weight, "bias": torch.full((1,), -float(threshold))})
        return model.eval()

    @property
    def architecture(self) -> LinearArchitecture:
        """The record that rebuilds this network."""
        return LinearArchitecture(in_bands=self.in_bands, num_classes=self.num_classes)

    @property
    def total_stride(self) -> int:
        """Any tile size and origin works."""
        return self.architecture.total_stride

    @property
    def receptive_radius_px(self) -> int:
        """An output pixel sees only its own input pixel."""
        return self.architecture.receptive_radius_px

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Class logits for a normalised image batch.

        The 1×1 convolution is computed as one multiply-add per band: on the CPU that is about
        15 times faster than ``conv2d`` on (N, C, H, W) tensors, and it is the same function.
        """
        weight = self.head.weight[:, :, 0, 0]
        bias = self.head.get_parameter("bias").view(1, -1, 1, 1)
        logits = bias.expand(image.shape[0], -1, *image.shape[2:])
        for band in range(self.in_bands):
            logits = torch.addcmul(logits, image[:, band : band + 1], weight[:, band].view(1, -1, 1, 1))
        return logits
