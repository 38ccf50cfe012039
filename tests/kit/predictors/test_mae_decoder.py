import pytest
import torch

from crossscale_kit.predictors import MAEDecoder


def test_decoder_sees_every_position_and_predicts_pixels_of_the_targets():
    torch.manual_seed(0)
    dec = MAEDecoder(16, patch_size=4, in_chans=3, width=32, depth=2, num_heads=4).eval()
    vis = torch.randn(2, 3, 16)
    vis_idx = torch.tensor([[0, 5, 9], [2, 3, 15]])
    tgt_idx = torch.tensor([[1, 2, 3, 4], [0, 1, 7, 8]])
    out = dec(vis, vis_idx, tgt_idx, (4, 4))
    assert out.shape == (2, 4, 4 * 4 * 3) and dec.out_dim == 48
    # targets are read from one pass over the whole grid: asking for fewer gives the same rows
    assert torch.allclose(dec(vis, vis_idx, tgt_idx[:, :2], (4, 4)), out[:, :2], atol=1e-6)
    # the visible tokens are placed by index: permuting them together with their indices changes nothing
    perm = torch.tensor([2, 0, 1])
    assert torch.allclose(dec(vis[:, perm], vis_idx[:, perm], tgt_idx, (4, 4)), out, atol=1e-5)
    # and the content reaches the predictions
    assert not torch.allclose(dec(vis + 1, vis_idx, tgt_idx, (4, 4)), out, atol=1e-3)


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_heads"):
        MAEDecoder(16, width=30, num_heads=4)
    dec = MAEDecoder(16, patch_size=4, in_chans=3, width=32, depth=1, num_heads=4)
    with pytest.raises(ValueError, match=r"\(B, K, D\)"):
        dec(torch.randn(2, 3, 16), torch.zeros(2, 4, dtype=torch.long), torch.zeros(2, 1, dtype=torch.long), (4, 4))
