"""GAN objectives and the supervised loss behave as their papers define them."""

from __future__ import annotations

import pytest
import torch

from geoseg.training.losses import GANLoss, SegmentationLoss, real_mask_channels


def test_hinge_loss_is_zero_beyond_the_margin():
    loss = GANLoss("hinge")
    assert loss(torch.full((2, 1, 4, 4), 2.0), True).item() == 0
    assert loss(torch.full((2, 1, 4, 4), -2.0), False).item() == 0
    assert loss(torch.zeros(2, 1, 4, 4), True).item() == pytest.approx(1.0)
    assert loss(torch.full((1, 1, 2, 2), 3.0), True, for_discriminator=False).item() == -3.0


@pytest.mark.parametrize("mode", ["vanilla", "lsgan", "hinge"])
def test_a_confident_correct_critic_has_a_lower_loss(mode):
    loss = GANLoss(mode)
    real_scores = torch.full((1, 1, 3, 3), 0.9 if mode == "lsgan" else 3.0)
    assert loss(real_scores, True) < loss(real_scores, False)


def test_unknown_gan_mode_is_refused():
    with pytest.raises(ValueError, match="wgan"):
        GANLoss("wgan")  # type: ignore[arg-type]


def test_supervised_loss_ignores_invalid_pixels():
    logits = torch.randn(2, 1, 8, 8)
    target = (torch.rand(2, 8, 8) > 0.5).long()
    valid = torch.zeros(2, 8, 8, dtype=torch.bool)
    valid[:, :4] = True
    loss = SegmentationLoss(2)
    flipped = target.clone()
    flipped[:, 4:] = 1 - flipped[:, 4:]
    assert loss(logits, target, valid).item() == pytest.approx(loss(logits, flipped, valid).item())


def test_the_hard_pixel_loss_averages_the_hardest_share_of_the_valid_pixels():
    logits = torch.linspace(-3, 3, 16).reshape(1, 1, 4, 4)
    target = torch.zeros(1, 4, 4, dtype=torch.long)  # background: the larger logits are the harder
    valid = torch.ones(1, 4, 4, dtype=torch.bool)
    valid[0, 3, 3] = False  # the hardest pixel of all, but not labelled
    per_pixel = torch.nn.functional.softplus(logits.flatten()[:15])  # BCE of a background pixel
    hardest_four = per_pixel.sort(descending=True).values[:4].mean()  # ceil(0.25 × 15) = 4
    bce_only = SegmentationLoss(2, dice_weight=0, hard_pixel_share=0.25)
    assert bce_only(logits, target, valid).item() == pytest.approx(hardest_four.item())
    every_pixel = SegmentationLoss(2, dice_weight=0)
    assert every_pixel(logits, target, valid).item() == pytest.approx(per_pixel.mean().item())


def test_multiclass_loss_prefers_the_right_class():
    target = torch.randint(0, 3, (1, 8, 8))
    right = torch.nn.functional.one_hot(target, 3).permute(0, 3, 1, 2).float() * 10
    valid = torch.ones(1, 8, 8, dtype=torch.bool)
    loss = SegmentationLoss(3)
    assert loss(right, target, valid) < loss(-right, target, valid)


def test_real_masks_shown_to_the_critic_are_not_hard():
    target = torch.tensor([[[0, 1], [1, 0]]])
    soft = real_mask_channels(
        target, 2, smoothing=0.1, noise_std=0.05, generator=torch.Generator().manual_seed(0)
    )
    assert soft.shape == (1, 1, 2, 2)
    assert ((soft > 0) & (soft < 1)).all()
    assert (soft[0, 0][target[0] == 1] > 0.5).all() and (soft[0, 0][target[0] == 0] < 0.5).all()
