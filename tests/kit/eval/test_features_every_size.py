"""The exported encoder in timm, the probe's feature path and the training wrapper agree at every input size."""
import json

import pytest
import torch

from crossscale_kit.encoders.export import export_encoder, load_exported_encoder
from crossscale_kit.encoders.vit import ViTEncoder
from crossscale_kit.eval.features import patch_features


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    enc = ViTEncoder(arch="vit_tiny", patch_size=8, img_size=32, embed_dim=128, depth=2, num_heads=2).eval()
    out = export_encoder(enc, tmp_path_factory.mktemp("exp"), bands=["blue", "green", "red", "nir"])
    return enc, out


@pytest.mark.parametrize("size", [32, 64, 112])  # the training size, 2x and 3.5x
def test_same_features_at_training_size_and_larger(exported, size):
    enc, out = exported
    model, meta = load_exported_encoder(out)
    x = torch.randn(2, 4, size, size, generator=torch.Generator().manual_seed(size))
    with torch.no_grad():
        ref = enc(x)  # (B, N, D) training wrapper
        timm_tokens = model.forward_features(x)[:, model.num_prefix_tokens:]
    probe = patch_features(model, x, None).reshape(2, -1, ref.shape[-1])  # the probe's and cluster maps' path
    torch.testing.assert_close(timm_tokens, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(probe, ref, rtol=1e-5, atol=1e-5)


def test_plain_timm_interpolation_would_differ(exported):
    """Without rebuilt positions timm interpolates the stored table: the features change at 2x (the old bug)."""
    enc, out = exported
    model, _ = load_exported_encoder(out, training_positions=False)
    x = torch.randn(2, 4, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref, plain = enc(x), model.forward_features(x)[:, model.num_prefix_tokens:]
    assert ((plain - ref).norm() / ref.norm()) > 0.05
    with torch.no_grad():  # at the training size the stored table is exact
        x = x[..., :32, :32]
        torch.testing.assert_close(model.forward_features(x)[:, model.num_prefix_tokens:], enc(x), rtol=1e-5, atol=1e-5)


def test_meta_names_the_real_architecture(exported):
    _, out = exported
    meta = json.loads((out / "meta.json").read_text())
    assert meta["architecture"] == "ViT patch 8, width 128, depth 2, 2 heads, 4 input bands"
    assert meta["timm_name"] is None and meta["timm_class"].endswith("VisionTransformer")
    enc = ViTEncoder(arch="vit_small", patch_size=16, img_size=32)
    meta = json.loads((export_encoder(enc, out.parent / "small") / "meta.json").read_text())
    assert meta["timm_name"] == "vit_small_patch16_224"
