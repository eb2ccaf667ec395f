"""What a checkpoint's network is, without torch: its record and the numbers tiling needs.

An architecture record (``Architecture`` for the U-Net, ``LinearArchitecture`` for the per-pixel
classifier) rebuilds the network (``geoseg.model.checkpoint``) and gives, by arithmetic on its
fields, the stride and receptive radius that make tiled inference seam-free and the parameter
count that bounds what a checkpoint may make a machine allocate. A ``geoseg run`` driver reads
and checks checkpoints with these alone, so it never imports torch; the networks in
``unet.py`` and ``linear.py`` are tested to have the same numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

Upsampling = Literal["transpose", "bilinear"]
MAX_BANDS = 64
MAX_CLASSES = 255
"""Class ids are uint8 and 255 is the mask's nodata, so ids 0..254."""


def logit_channels(num_classes: int) -> int:
    """One logit for binary segmentation, one per class otherwise."""
    return 1 if num_classes == 2 else num_classes


def receptive_radius_px(depth: int, upsample: Upsampling = "transpose") -> int:
    """Receptive radius of a depth-``depth`` U-Net, counted layer by layer.

    At a level where one feature pixel spans ``j`` input pixels, a 3×3 conv adds ``j``, a 2×2
    pool or transposed conv at most ``j`` (one-sided), a bilinear ×2 up-sampling at most ``2j``
    (one coarse pixel: it blends the two nearest) and its 3×3 conv ``j``. Encoder: 2 convs +
    pool per level; bottleneck: 2 convs; decoder: up-sampling + 2 convs per level.
    """
    radius = 0
    for level in range(depth):
        jump = 1 << level
        radius += 2 * jump + jump  # encoder convs, pool
        radius += (3 * jump if upsample == "bilinear" else jump) + 2 * jump  # up-sampling, decoder convs
    return radius + 2 * (1 << depth)  # bottleneck


def _double_conv_parameters(in_channels: int, out_channels: int) -> int:
    """Two bias-free 3×3 convolutions, each followed by a batch norm (weight and bias)."""
    return 9 * out_channels * (in_channels + out_channels) + 4 * out_channels


class Architecture(BaseModel):
    """How to rebuild the U-Net generator."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Literal["unet"] = "unet"
    in_bands: int = Field(ge=1, le=MAX_BANDS)
    num_classes: int = Field(ge=2, le=MAX_CLASSES)
    base_width: int = Field(16, ge=1, le=1024)
    depth: int = Field(3, ge=1, le=6)
    upsample: Upsampling = Field("transpose", description="absent in older checkpoints: transpose")

    @property
    def total_stride(self) -> int:
        """Tile sizes and origins must be multiples of this (one 2×2 pooling per level)."""
        return 1 << self.depth

    @property
    def receptive_radius_px(self) -> int:
        """Upper bound on how far (in input pixels) an output pixel can see."""
        return receptive_radius_px(self.depth, self.upsample)

    @property
    def parameters(self) -> int:
        """Trainable parameters of the network this record builds."""
        widths = [self.base_width << level for level in range(self.depth + 1)]
        encoders = sum(
            _double_conv_parameters(self.in_bands if level == 0 else widths[level - 1], widths[level])
            for level in range(self.depth)
        )
        bottleneck = _double_conv_parameters(widths[-2], widths[-1])
        kernel = 9 if self.upsample == "bilinear" else 4  # 3×3 conv after interpolation, or 2×2 transposed
        decoders = sum(
            kernel * widths[level + 1] * widths[level]
            + widths[level]
            + _double_conv_parameters(2 * widths[level], widths[level])
            for level in range(self.depth)
        )
        logits = logit_channels(self.num_classes)
        return encoders + bottleneck + decoders + (widths[0] + 1) * logits


class LinearArchitecture(BaseModel):
    """How to rebuild the per-pixel linear classifier."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Literal["linear"] = "linear"
    in_bands: int = Field(ge=1, le=MAX_BANDS)
    num_classes: int = Field(ge=2, le=MAX_CLASSES)

    @property
    def total_stride(self) -> int:
        """Any tile size and origin works."""
        return 1

    @property
    def receptive_radius_px(self) -> int:
        """An output pixel sees only its own input pixel."""
        return 0

    @property
    def parameters(self) -> int:
        """A 1×1 convolution's weights and biases."""
        return (self.in_bands + 1) * logit_channels(self.num_classes)


def architecture_name(value: Any) -> str:
    """The architecture's name; a U-Net when a mapping does not say (older checkpoints and configs)."""
    name = value.get("name", "unet") if isinstance(value, Mapping) else getattr(value, "name", None)
    return str(name)


AnyArchitecture = Annotated[
    Annotated[Architecture, Tag("unet")] | Annotated[LinearArchitecture, Tag("linear")],
    Discriminator(architecture_name),
]
