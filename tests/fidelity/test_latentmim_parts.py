"""LatentMIM's decoder, projection head and InfoNCE as the released code builds them (docs/FIDELITY.md).

Expected values are computed here from the formulas in the reference facts, not read from the kit.
"""
import math

import numpy as np
import pytest
import torch
from torch import nn

from crossscale_kit.encoders import ProjectionHead
from crossscale_kit.losses import PatchInfoNCE
from crossscale_kit.predictors import CrossAttentionDecoder


def released_table(g: int, dim: int) -> np.ndarray:
    """The released 2-D sin-cos table on a g x g grid, positions k g / (g - 1), row-major."""
    pos = np.arange(g) * g / (g - 1)
    omega = 10000.0 ** (-np.arange(dim // 4) / (dim // 4))
    rows, cols = np.meshgrid(pos, pos, indexing="ij")
    r, c = rows.reshape(-1, 1) * omega, cols.reshape(-1, 1) * omega
    return np.concatenate([np.sin(c), np.cos(c), np.sin(r), np.cos(r)], axis=1)


def test_decoder_positions_sit_at_k_g_over_g_minus_1():
    dec = CrossAttentionDecoder(8, width=32, depth=1, num_heads=2)
    table = dec.pos_table((14, 14), torch.device("cpu")).double().numpy()
    np.testing.assert_allclose(table, released_table(14, 32), atol=1e-6)
    # the last patch of a row sits at 14, not 13: first column channel is sin(14 * omega_0) = sin(14)
    assert table[13, 0] == pytest.approx(math.sin(14.0), abs=1e-6)
    integer = CrossAttentionDecoder(8, width=32, depth=1, num_heads=2, stretch_positions=False)
    assert integer.pos_table((14, 14), torch.device("cpu"))[13, 0].item() == pytest.approx(math.sin(13.0), abs=1e-6)


def test_decoder_norms_tokens_and_init_as_released():
    width = 64
    dec = CrossAttentionDecoder(16, width=width, depth=2, num_heads=4)
    norms = [m for m in dec.modules() if isinstance(m, nn.LayerNorm)]
    assert len(norms) == 2 * 4 + 1 and all(m.eps == 1e-6 for m in norms)
    assert torch.count_nonzero(dec.mask_token) == 0
    assert dec.cls_token.shape == (1, 1, width) and 0.01 < dec.cls_token.std().item() < 0.03
    blk = dec.blocks[0]
    # xavier-uniform: std sqrt(2 / (fan_in + fan_out)); self qkv is one (3W, W), cross q (W, W) and kv (2W, W)
    for w, fan_out in ((blk.self_attn.in_proj_weight, 3 * width), (blk.cross_attn.in_proj_weight[:width], width),
                       (blk.cross_attn.in_proj_weight[width:], 2 * width), (blk.mlp.fc1.weight, 4 * width)):
        expected = math.sqrt(2.0 / (width + fan_out))
        assert w.std().item() == pytest.approx(expected, rel=0.06)
        assert w.abs().max().item() <= math.sqrt(3.0) * expected + 1e-6
    assert all(torch.count_nonzero(b) == 0 for n, b in dec.named_parameters() if n.endswith("bias") and "norm" not in n)


def test_decoder_queries_average_embedded_tokens_then_add_positions():
    torch.manual_seed(0)
    dec = CrossAttentionDecoder(16, width=32, depth=1, num_heads=2).eval()
    with torch.no_grad():
        dec.mask_token.normal_()  # a non-zero mask token so its place in the sum is visible
    grid, b = (4, 4), 2
    vis = torch.randn(b, 3, 16)
    cls = torch.randn(b, 1, 16)
    vis_idx = torch.tensor([[0, 5, 10], [15, 2, 7]])
    tgt_idx = torch.tensor([[1, 2, 3, 4], [0, 1, 3, 8]])
    seen = {}
    dec.blocks[0].register_forward_pre_hook(lambda m, args: seen.update(q=args[0], kv=args[1]))
    with torch.no_grad():
        out = dec(vis, vis_idx, tgt_idx, grid, prefix=cls)
        table = torch.tensor(released_table(4, 32), dtype=torch.float32)
        x = dec.embed(vis)
        pv, pt = table[vis_idx], table[tgt_idx]
        w = torch.softmax(pt @ pv.transpose(1, 2) / math.sqrt(32), dim=-1)
        expected_q = dec.mask_token + w @ x + pt
        expected_kv = torch.cat([dec.embed(cls), x + pv], dim=1)
    assert out.shape == (b, 4, 16)
    torch.testing.assert_close(seen["q"][:, 0:1], dec.cls_token.expand(b, -1, -1))  # CLS query, no position
    torch.testing.assert_close(seen["q"][:, 1:], expected_q, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(seen["kv"], expected_kv, atol=1e-5, rtol=1e-5)
    # the CLS output is dropped: the predictions are the M target queries
    without_prefix = dec(vis, vis_idx, tgt_idx, grid)
    assert without_prefix.shape == out.shape and not torch.allclose(without_prefix, out)


def test_projection_head_layer_sequence():
    head = ProjectionHead(384, hidden_dim=4096, num_layers=3)
    kinds = [type(m) for m in head.layers]
    assert kinds == [nn.Linear, nn.LayerNorm, nn.GELU, nn.Linear, nn.LayerNorm, nn.GELU, nn.Linear, nn.LayerNorm]
    linears = [m for m in head.layers if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(384, 4096), (4096, 4096), (4096, 384)]
    assert all(m.bias is None for m in linears)
    assert all(m.eps == 1e-5 for m in head.layers if isinstance(m, nn.LayerNorm))
    assert linears[1].weight.std().item() == pytest.approx(math.sqrt(2.0 / 8192), rel=0.02)  # xavier-uniform
    assert head(torch.randn(2, 5, 384)).shape == (2, 5, 384)
    plain = ProjectionHead(8, hidden_dim=16, num_layers=2, hidden_norm=False, bias=True)
    assert [type(m) for m in plain.layers] == [nn.Linear, nn.GELU, nn.Linear, nn.LayerNorm]


def test_infonce_standardises_with_unbiased_std_plus_1e_4():
    torch.manual_seed(0)
    m = 10
    z = torch.randn(2, m, 3)
    z = (z - z.mean(1, keepdim=True)) / z.std(1, keepdim=True)  # per image and channel: mean 0, unbiased std 1
    stds = torch.tensor([1e-4, 1.0, 3.0])
    pred = 5.0 + z * stds  # known std per channel
    loss = PatchInfoNCE(tau=0.2)
    expected = z * stds / (stds + 1e-4)  # channel 0 -> z / 2
    torch.testing.assert_close(loss.standardise(pred), expected, atol=2e-3, rtol=1e-3)
    target = torch.randn(2, m, 3)
    plain = PatchInfoNCE(tau=0.2, standardize=False)
    torch.testing.assert_close(loss(pred, target), plain(expected, target), atol=1e-3, rtol=1e-3)
