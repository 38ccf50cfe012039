"""GramLoss.precision: the kit's float32 maths, or the forks' gram term inside autocast (issue 22)."""
import pytest
import torch
import torch.nn.functional as F

from crossscale_kit.losses.gram import GramLoss


def dinov3_gram_term(student, teacher, img_level=True):
    """DINOv3's GramLoss as its code reads (normalise, X X^T, MSELoss), run wherever it is called."""
    s, t = F.normalize(student, dim=-1), F.normalize(teacher, dim=-1)
    if not img_level:
        s, t = s.reshape(-1, s.shape[-1]), t.reshape(-1, t.shape[-1])
    return torch.nn.MSELoss()(torch.matmul(s, s.transpose(-1, -2)), torch.matmul(t, t.transpose(-1, -2)))


@pytest.mark.parametrize("img_level", [True, False])
def test_autocast_precision_is_the_forks_term_inside_autocast(img_level):
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(3, 17, 24, generator=g), torch.randn(3, 17, 24, generator=g)
    s.requires_grad_(True)
    exact = dinov3_gram_term(s.double(), t.double(), img_level)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = dinov3_gram_term(s, t, img_level)
        kit_autocast = GramLoss(img_level=img_level, precision="autocast")(s, t)
    torch.testing.assert_close(kit_autocast, ref, atol=0, rtol=0)
    assert abs(float(kit_autocast) - float(exact)) > 1e-6  # the bf16 matmul is visible (fp32: ~1e-9)
    (gs,) = torch.autograd.grad(kit_autocast, s)
    (gr,) = torch.autograd.grad(ref, s)
    torch.testing.assert_close(gs, gr, atol=0, rtol=0)
    # without autocast the two precisions agree up to float32 rounding
    torch.testing.assert_close(GramLoss(img_level=img_level, precision="autocast")(s, t), GramLoss(img_level=img_level)(s, t),
                               atol=1e-7, rtol=1e-5)


def test_precision_is_validated():
    with pytest.raises(ValueError, match="precision"):
        GramLoss(precision="fp16")
