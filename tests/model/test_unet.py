"""The U-Net's receptive radius and the reading of logits as classes."""

from __future__ import annotations

import pytest
import torch

from geoseg.model.unet import UNetGenerator, class_probabilities, most_likely_class, most_likely_class_id


@pytest.mark.parametrize("channels", [1, 3])
def test_most_likely_class_equals_the_max_of_the_class_probabilities(channels):
    torch.manual_seed(0)
    logits = torch.randn(2, channels, 32, 32) * 4
    logits[0, :, 0, 0] = 0.0  # a tie: the lower class id wins
    expected_probability, expected_ids = class_probabilities(logits).max(dim=1)
    probability, ids = most_likely_class(logits)
    assert torch.equal(probability, expected_probability) and torch.equal(ids, expected_ids)
    assert ids[0, 0, 0] == 0


@pytest.mark.parametrize("channels", [1, 3])
def test_the_class_id_alone_is_the_id_of_most_likely_class(channels):
    """Ties and logits too small for the sigmoid to tell from 0.5 included."""
    torch.manual_seed(0)
    logits = torch.randn(2, channels, 32, 32) * 4
    logits[0, :, 0, :8] = torch.tensor([0.0, 1e-9, -1e-9, 3e-8, -3e-8, 6e-8, 1e-7, -1e-7])[:, None].T
    _, expected = most_likely_class(logits)
    ids = most_likely_class_id(logits)
    assert ids.dtype == torch.uint8 and torch.equal(ids.long(), expected)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_an_output_pixel_sees_no_further_than_the_receptive_radius(depth):
    torch.manual_seed(0)
    model = UNetGenerator(1, 2, base_width=8, depth=depth).eval()
    size = 4 * model.receptive_radius_px
    size += -size % model.total_stride
    image = torch.randn(1, 1, size, size, requires_grad=True)
    centre = size // 2
    model(image)[0, 0, centre, centre].backward()
    assert image.grad is not None
    rows, cols = torch.nonzero(image.grad[0, 0], as_tuple=True)
    reach = max((rows - centre).abs().max(), (cols - centre).abs().max())
    assert 0 < reach <= model.receptive_radius_px
