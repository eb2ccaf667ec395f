"""Losses: the supervised segmentation loss and the GAN objective (pix2pix ``GANLoss``).

Binary tasks use BCE + soft Dice on the single foreground logit, multi-class tasks cross-entropy
+ soft Dice over classes; both ignore invalid pixels. ``GANLoss`` implements the vanilla
(non-saturating BCE), least-squares and hinge objectives on PatchGAN logit maps.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

GanMode = Literal["vanilla", "lsgan", "hinge"]


class GANLoss(nn.Module):
    """The adversarial loss of D (``for_discriminator=True``) or G, for a real or fake batch."""

    def __init__(self, mode: GanMode = "hinge") -> None:
        super().__init__()
        if mode not in ("vanilla", "lsgan", "hinge"):
            raise ValueError(f"unknown GAN mode {mode!r}")
        self.mode = mode

    def forward(
        self, logits: torch.Tensor, target_is_real: bool, for_discriminator: bool = True
    ) -> torch.Tensor:
        """Mean loss over all patches."""
        logits = logits.float()
        if self.mode == "hinge":
            if for_discriminator:
                margin = 1 - logits if target_is_real else 1 + logits
                return F.relu(margin).mean()
            return -logits.mean()
        target = torch.full_like(logits, 1.0 if target_is_real else 0.0)
        if self.mode == "lsgan":
            return F.mse_loss(logits, target)
        return F.binary_cross_entropy_with_logits(logits, target)


def soft_dice_loss(
    probs: torch.Tensor, one_hot: torch.Tensor, valid: torch.Tensor, eps: float = 1.0
) -> torch.Tensor:
    """1 − Dice over (N, K, H, W) probabilities and targets, averaged over channels."""
    weight = valid.unsqueeze(1).float()
    intersection = (probs * one_hot * weight).sum(dim=(0, 2, 3))
    total = ((probs + one_hot) * weight).sum(dim=(0, 2, 3))
    return (1 - (2 * intersection + eps) / (total + eps)).mean()


class SegmentationLoss(nn.Module):
    """BCE + Dice (binary, one logit) or CE + Dice (multi-class) on valid pixels.

    With ``hard_pixel_share`` below 1 the BCE/CE term averages only that share of the valid
    pixels with the highest loss in the batch (bootstrapped cross-entropy, Wu, Shen & van den
    Hengel 2016; "online hard example mining" in segmentation code): pixels the model already
    gets right stop diluting the ones it confuses. The Dice term keeps every valid pixel.
    """

    def __init__(self, num_classes: int, dice_weight: float = 1.0, hard_pixel_share: float = 1.0) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.dice_weight = dice_weight
        self.hard_pixel_share = hard_pixel_share

    def forward(self, logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Loss of logits (N, K, H, W) against class ids (N, H, W), ignoring invalid pixels."""
        logits = logits.float()
        if self.num_classes == 2:
            truth = target.float().unsqueeze(1)
            pixel = F.binary_cross_entropy_with_logits(logits, truth, reduction="none").squeeze(1)
            probs = torch.sigmoid(logits)
        else:
            pixel = F.cross_entropy(logits, target.long(), reduction="none")
            truth = F.one_hot(target.long(), self.num_classes).permute(0, 3, 1, 2).float()
            probs = torch.softmax(logits, dim=1)
        if self.hard_pixel_share < 1 and valid.any():
            losses = pixel[valid]
            hardest = torch.topk(losses, math.ceil(self.hard_pixel_share * losses.numel())).values
            loss = hardest.mean()
        else:
            weight = valid.float()
            loss = (pixel * weight).sum() / weight.sum().clamp(min=1)
        if self.dice_weight:
            loss = loss + self.dice_weight * soft_dice_loss(probs, truth, valid)
        return loss


def mask_channels(logits: torch.Tensor) -> torch.Tensor:
    """The generator's soft mask as D sees it: foreground probability, or class probabilities."""
    if logits.shape[1] == 1:
        return torch.sigmoid(logits.float())
    return torch.softmax(logits.float(), dim=1)


def real_mask_channels(
    target: torch.Tensor,
    num_classes: int,
    smoothing: float = 0.0,
    noise_std: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """A label as D sees it: one-hot, smoothed and jittered so it is not trivially 'hard'.

    Without this D can tell real from fake by softness alone (Luc et al. 2016).
    """
    if num_classes == 2:
        hard = target.float().unsqueeze(1)
    else:
        hard = F.one_hot(target.long(), num_classes).permute(0, 3, 1, 2).float()
    channels = hard.shape[1] if num_classes > 2 else 2
    soft = hard * (1 - smoothing) + smoothing / channels
    if noise_std:
        noise = torch.randn(soft.shape, generator=generator, device=soft.device) * noise_std
        soft = soft + noise.abs() * (1 - 2 * (soft > 0.5).float())
    return soft.clamp(0, 1)
