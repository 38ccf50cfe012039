"""I-JEPA predictor: one pass per target block, independent of the other blocks and of the context order."""
import pytest
import torch

from crossscale_kit.predictors import IJEPAPredictor


def test_predictor_blocks_are_independent_and_order_free():
    torch.manual_seed(0)
    pred = IJEPAPredictor(16, width=32, depth=2, num_heads=4).eval()
    ctx = torch.randn(2, 5, 16)
    ctx_idx = torch.tensor([[0, 3, 7, 9, 12], [1, 2, 4, 8, 15]])
    tgt = torch.tensor([[[5, 6], [10, 11]], [[0, 5], [13, 14]]])
    out = pred(ctx, ctx_idx, tgt, (4, 4))
    assert out.shape == (2, 2, 2, 16)
    other = tgt.clone()
    other[:, 1] = torch.tensor([[1, 2], [3, 6]])
    assert torch.allclose(pred(ctx, ctx_idx, other, (4, 4))[:, 0], out[:, 0], atol=1e-6)
    assert torch.allclose(pred(ctx, ctx_idx, tgt[:, 0], (4, 4)), out[:, 0], atol=1e-6)  # 2-D targets
    perm = torch.tensor([4, 2, 0, 1, 3])
    assert torch.allclose(pred(ctx[:, perm], ctx_idx[:, perm], tgt, (4, 4)), out, atol=1e-5)
    with pytest.raises(ValueError, match="num_heads"):
        IJEPAPredictor(16, width=30, num_heads=4)
    with pytest.raises(IndexError):
        pred(ctx, ctx_idx, tgt + 20, (4, 4))
