import torch

from crossscale_kit.losses import PatchInfoNCE


def test_infonce_prefers_matching_targets():
    torch.manual_seed(0)
    loss = PatchInfoNCE(tau=0.2)
    target = torch.randn(2, 16, 8)
    good = loss(target + 0.01 * torch.randn_like(target), target)
    bad = loss(torch.randn(2, 16, 8), target)
    assert good < bad
    # manual value on one image, no standardisation
    plain = PatchInfoNCE(tau=0.5, standardize=False)
    p, t = torch.randn(1, 3, 4), torch.randn(1, 3, 4)
    pn, tn = torch.nn.functional.normalize(p, dim=-1), torch.nn.functional.normalize(t, dim=-1)
    logits = pn[0] @ tn[0].T / 0.5
    expected = -(logits.diag() - logits.logsumexp(dim=1)).mean() * 1.0
    assert torch.allclose(plain(p, t), expected, atol=1e-6)
