"""The conditional PatchGAN critic of pix2pix (Isola et al. 2017), ``NLayerDiscriminator``.

It scores overlapping patches of ``concat(image, mask)`` as real (a label) or fake (the
generator's soft prediction), so it judges whether a mask is plausible *for this image*.
With ``spectral_norm`` every convolution is spectrally normalised (Miyato et al. 2018) and
batch normalisation is dropped, the usual pairing with the hinge loss.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm


class NLayerDiscriminator(nn.Module):
    """PatchGAN: ``n_layers`` stride-2 4×4 convolutions, then two stride-1 ones to one logit map."""

    def __init__(
        self, in_channels: int, base_width: int = 64, n_layers: int = 3, spectral_norm: bool = False
    ) -> None:
        super().__init__()

        def conv(c_in: int, c_out: int, stride: int, bias: bool) -> nn.Module:
            layer = nn.Conv2d(c_in, c_out, kernel_size=4, stride=stride, padding=1, bias=bias)
            return _spectral_norm(layer) if spectral_norm else layer

        def norm(channels: int) -> nn.Module:
            return nn.Identity() if spectral_norm else nn.BatchNorm2d(channels)

        layers: list[nn.Module] = [conv(in_channels, base_width, 2, True), nn.LeakyReLU(0.2, True)]
        width = base_width
        for n in range(1, n_layers + 1):
            next_width = base_width * min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [
                conv(width, next_width, stride, spectral_norm),
                norm(next_width),
                nn.LeakyReLU(0.2, True),
            ]
            width = next_width
        layers.append(conv(width, 1, 1, True))
        self.model = nn.Sequential(*layers)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Patch logits (N, 1, h, w) for a normalised image and a (soft) mask of the same size."""
        out: torch.Tensor = self.model(torch.cat([image, mask], dim=1))
        return out
