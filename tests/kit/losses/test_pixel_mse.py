import pytest
import torch

from crossscale_kit.losses import MaskedPixelMSE


def test_normalised_per_patch_then_mean_over_pixels_and_patches():
    torch.manual_seed(0)
    target = torch.randn(2, 5, 12) * 4 + 3
    pred = torch.randn(2, 5, 12)
    norm = (target - target.mean(-1, keepdim=True)) / (target.var(-1, unbiased=True, keepdim=True) + 1e-6).sqrt()
    assert torch.allclose(MaskedPixelMSE()(pred, target), ((pred - norm) ** 2).mean(), atol=1e-6)
    assert torch.allclose(MaskedPixelMSE(norm_pix=False)(pred, target), ((pred - target) ** 2).mean(), atol=1e-6)
    # a patch's normalised target ignores its brightness and contrast
    assert torch.allclose(MaskedPixelMSE()(pred, 5 * target + 2), MaskedPixelMSE()(pred, target), atol=1e-4)


def test_bad_inputs():
    with pytest.raises(ValueError, match="eps"):
        MaskedPixelMSE(eps=0)
    with pytest.raises(ValueError, match="patch_size"):
        MaskedPixelMSE()(torch.randn(2, 3, 4), torch.randn(2, 3, 5))
