"""The encoder's CLS token (LatentMIM as released), its export, and the released initialisations."""
import math

import pytest
import timm
import torch
from safetensors.torch import load_file
from torch import nn

from crossscale_kit.encoders.export import export_encoder, load_exported_encoder
from crossscale_kit.encoders.vit import ViTEncoder


def tiny(**kw):
    args = dict(arch="vit_tiny", patch_size=8, img_size=32, embed_dim=32, depth=2, num_heads=2)
    args.update(kw)
    return ViTEncoder(**args).eval()


def test_cls_token_joins_the_pass_without_a_position():
    torch.manual_seed(0)
    enc = tiny(class_token=True)
    assert enc.num_prefix_tokens == 1 and tiny().num_prefix_tokens == 0
    x = torch.randn(2, 4, 32, 32)
    idx = torch.tensor([[0, 5, 15], [3, 2, 1]])
    with torch.no_grad():
        full = enc(x, idx, keep_prefix=True)
        gathered = torch.gather(enc.embed(x), 1, idx[..., None].expand(-1, -1, 32))
        ref = enc.encode_tokens(torch.cat([enc.vit.cls_token.expand(2, -1, -1), gathered], dim=1))
        assert full.shape == (2, 4, 32)
        torch.testing.assert_close(full, ref)
        torch.testing.assert_close(enc(x, idx), full[:, 1:])  # default: patch tokens only
        # the CLS token takes part in attention: without it the patch outputs differ
        plain = tiny()
        plain.load_state_dict({k: v for k, v in enc.state_dict().items() if k != "vit.cls_token"})
        assert not torch.allclose(plain(x, idx), enc(x, idx), atol=1e-4)


def test_cls_export_loads_strictly_into_a_class_token_timm_model(tmp_path):
    enc = ViTEncoder(arch="vit_small", patch_size=16, img_size=224, class_token=True, init="latentmim").eval()
    export_encoder(enc, tmp_path, bands=["blue", "green", "red", "nir"])
    model, meta = load_exported_encoder(tmp_path)
    assert meta["timm_kwargs"]["class_token"] is True and meta["num_prefix_tokens"] == 1
    strict = timm.create_model("vit_small_patch16_224", pretrained=False, **meta["timm_kwargs"])
    strict.load_state_dict(load_file(str(tmp_path / "encoder.safetensors")), strict=True)
    x = torch.randn(2, 4, 224, 224)
    with torch.no_grad():
        ref = enc(x, keep_prefix=True)
        torch.testing.assert_close(model.forward_features(x), ref, atol=1e-4, rtol=1e-4)
        n = meta["num_prefix_tokens"]
        torch.testing.assert_close(model.forward_features(x)[:, n:], enc(x), atol=1e-4, rtol=1e-4)
        # the recorded global_pool averages the patch tokens only
        torch.testing.assert_close(model.forward_head(model.forward_features(x)), enc(x).mean(1), atol=1e-4, rtol=1e-4)


def test_encoder_layernorms_have_eps_1e_6():
    for kw in ({}, {"class_token": True}):
        norms = [m for m in tiny(**kw).modules() if isinstance(m, nn.LayerNorm)]
        assert norms and all(m.eps == 1e-6 for m in norms)


def test_ijepa_init_starts_the_patch_embedding_as_released():
    torch.manual_seed(0)
    enc = ViTEncoder(arch="vit_small", patch_size=14, img_size=224, init="ijepa")
    conv = enc.vit.patch_embed.proj
    assert torch.count_nonzero(conv.bias) == 0
    assert conv.weight.std().item() == pytest.approx(0.02, rel=0.03) and conv.weight.abs().max() <= 2.0
    # every Linear as released: trunc_normal(0.02), zero bias; no depth scaling of the residual outputs
    last = enc.vit.blocks[-1]
    for lin in (last.attn.proj, last.mlp.fc2, enc.vit.blocks[0].attn.qkv):
        assert lin.weight.std().item() == pytest.approx(0.02, rel=0.03)
        assert torch.count_nonzero(lin.bias) == 0
    with pytest.raises(ValueError, match="unknown init"):
        ViTEncoder(init="xavier")


def test_latentmim_init_is_xavier_uniform_with_cls_at_0_02():
    torch.manual_seed(0)
    d, p, c = 384, 16, 4
    enc = ViTEncoder(arch="vit_small", patch_size=p, img_size=224, class_token=True, init="latentmim")
    qkv = enc.vit.blocks[0].attn.qkv.weight
    assert qkv.std().item() == pytest.approx(math.sqrt(2.0 / (d + 3 * d)), rel=0.02)
    conv = enc.vit.patch_embed.proj.weight  # a Linear from c*p*p pixels to d
    assert conv.std().item() == pytest.approx(math.sqrt(2.0 / (c * p * p + d)), rel=0.02)
    assert torch.count_nonzero(enc.vit.patch_embed.proj.bias) == 0
    assert enc.vit.cls_token.std().item() == pytest.approx(0.02, rel=0.25)
