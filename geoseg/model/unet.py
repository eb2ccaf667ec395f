"""The U-Net segmentation generator (Ronneberger et al. 2015; the generator of pix2pix).

Convolutions are 3×3 with zero padding, down-sampling is 2×2 max-pooling and up-sampling
either a 2×2 stride-2 transposed convolution (``"transpose"``, the original) or bilinear ×2
interpolation followed by a 3×3 convolution (``"bilinear"``: every output pixel is made the
same way, so no 2-pixel checkerboard; Odena et al. 2016). Either way a pixel's output depends
only on input pixels within ``receptive_radius_px``, and a tile whose origin is a multiple of
``total_stride`` sees the same pooling grid as the whole image. Those two numbers are what makes
tiled inference seam-free.
"""

from __future__ import annotations

import torch
from torch import nn

from geoseg.model.architecture import Architecture, Upsampling, logit_channels


def _double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def _upsampler(in_channels: int, out_channels: int, upsample: Upsampling) -> nn.Module:
    if upsample == "bilinear":
        return nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.Conv2d(in_channels, out_channels, 3, padding=1),
        )
    return nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)


class UNetGenerator(nn.Module):
    """U-Net mapping an image (N, bands, H, W) to class logits (N, K, H, W).

    ``K`` is 1 for a binary task (a single foreground logit) and ``num_classes`` otherwise.
    H and W must be multiples of ``total_stride``.
    """

    def __init__(
        self,
        in_bands: int,
        num_classes: int,
        base_width: int = 16,
        depth: int = 3,
        upsample: Upsampling = "transpose",
    ):
        super().__init__()
        if num_classes < 2:
            raise ValueError("num_classes counts the background too, so it is at least 2")
        self.in_bands = in_bands
        self.num_classes = num_classes
        self.depth: int = depth
        self.base_width: int = base_width
        self.upsample: Upsampling = upsample
        widths = [base_width * 2**level for level in range(depth + 1)]
        self.encoders = nn.ModuleList(
            _double_conv(in_bands if level == 0 else widths[level - 1], widths[level])
            for level in range(depth)
        )
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = _double_conv(widths[depth - 1], widths[depth])
        self.upsamplers = nn.ModuleList(
            _upsampler(widths[level + 1], widths[level], upsample) for level in reversed(range(depth))
        )
        self.decoders = nn.ModuleList(
            _double_conv(2 * widths[level], widths[level]) for level in reversed(range(depth))
        )
        self.head = nn.Conv2d(widths[0], logit_channels(num_classes), 1)

    @property
    def architecture(self) -> Architecture:
        """The record that rebuilds this network."""
        return Architecture(
            in_bands=self.in_bands,
            num_classes=self.num_classes,
            base_width=self.base_width,
            depth=self.depth,
            upsample=self.upsample,
        )

    @property
    def total_stride(self) -> int:
        """Tile sizes and origins must be multiples of this."""
        return self.architecture.total_stride

    @property
    def receptive_radius_px(self) -> int:
        """Upper bound on how far (in input pixels) an output pixel can see."""
        return self.architecture.receptive_radius_px

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Class logits for a normalised image batch."""
        skips = []
        x = image
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for upsample, decoder, skip in zip(self.upsamplers, self.decoders, reversed(skips), strict=True):
            x = decoder(torch.cat([upsample(x), skip], dim=1))
        out: torch.Tensor = self.head(x)
        return out


def class_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Per-class probabilities (N, num_classes, H, W) from the generator's logits."""
    if logits.shape[1] == 1:
        foreground = torch.sigmoid(logits)
        return torch.cat([1 - foreground, foreground], dim=1)
    return torch.softmax(logits, dim=1)


def most_likely_class(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Probability (N, H, W) and id (N, H, W) of each pixel's most likely class.

    Equal to ``class_probabilities(logits).max(dim=1)``, ties going to the lower id; for a
    binary model without building the (N, 2, H, W) probabilities.
    """
    if logits.shape[1] != 1:
        best, ids = class_probabilities(logits).max(dim=1)
        return best, ids
    foreground = torch.sigmoid(logits[:, 0])
    background = 1 - foreground
    is_foreground = foreground > background
    return torch.where(is_foreground, foreground, background), is_foreground.to(torch.int64)


def most_likely_class_id(logits: torch.Tensor) -> torch.Tensor:
    """The id (N, H, W) uint8 of each pixel's most likely class: ``most_likely_class(logits)[1]``.

    For a binary model without the probability: in float arithmetic ``f > 1 - f`` is exactly
    ``f > 0.5`` (``1 - f`` is exact for ``f`` ≥ 0.5, and ≥ 0.5 for ``f`` < 0.5), so the ids,
    ties included, are the same as ``most_likely_class``'s.
    """
    if logits.shape[1] != 1:
        return class_probabilities(logits).argmax(dim=1).to(torch.uint8)
    return (torch.sigmoid(logits[:, 0]) > 0.5).to(torch.uint8)
