"""I-JEPA's predictor starts as the released training script leaves it (docs/FIDELITY.md)."""
import pytest
import torch
from torch import nn

from crossscale_kit.predictors import IJEPAPredictor


def test_predictor_init_as_released_without_depth_scaling():
    torch.manual_seed(0)
    pred = IJEPAPredictor(384, width=384, depth=12, num_heads=6)
    linears = [m for m in pred.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 2 + 12 * 4
    for m in linears:
        # trunc_normal(0.02) truncated at +-2 (absolute): std 0.02 for every layer, the last block's too
        assert m.weight.std().item() == pytest.approx(0.02, rel=0.05)
        assert m.weight.abs().max().item() < 0.02 * 6
        assert m.bias is None or torch.count_nonzero(m.bias) == 0
    last = pred.blocks[-1]
    ratio = last.attn.proj.weight.std() / pred.blocks[0].attn.proj.weight.std()
    assert ratio.item() == pytest.approx(1.0, rel=0.05)  # a depth-scaled init would give 1 / sqrt(12)
    assert pred.mask_token.std().item() == pytest.approx(0.02, rel=0.15)


def test_every_predictor_layernorm_has_eps_1e_6_and_starts_at_identity():
    pred = IJEPAPredictor(32, width=32, depth=3, num_heads=2)
    norms = [m for m in pred.modules() if isinstance(m, nn.LayerNorm)]
    assert len(norms) == 3 * 2 + 1 and pred.norm in norms
    for m in norms:
        assert m.eps == 1e-6
        assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
