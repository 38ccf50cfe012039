import pytest
import torch
import torch.nn.functional as F

from crossscale_kit.losses import SmoothL1Latent


def test_smooth_l1_latent_gathers_and_normalises():
    torch.manual_seed(0)
    full = torch.randn(2, 9, 6) * 3 + 1
    idx = torch.tensor([[[0, 4]], [[8, 2]]])
    pred = torch.randn(2, 1, 2, 6)
    ln = F.layer_norm(full, (6,))
    expected = F.smooth_l1_loss(pred, torch.stack([ln[0, [0, 4]], ln[1, [8, 2]]])[:, None])
    assert torch.allclose(SmoothL1Latent()(pred, full, idx), expected, atol=1e-6)
    assert SmoothL1Latent()(ln[:, :2], full[:, :2]).abs() < 1e-6
    with pytest.raises(ValueError, match="beta"):
        SmoothL1Latent(beta=0)
