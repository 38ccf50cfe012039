import pytest
import timm
import torch

from crossscale_kit.encoders.export import export_encoder, load_exported_encoder
from crossscale_kit.encoders.pos_embed import sincos_2d
from crossscale_kit.encoders.vit import ViTEncoder


def tiny(**kw):
    args = dict(arch="vit_tiny", patch_size=8, img_size=32, embed_dim=32, depth=2, num_heads=2)
    args.update(kw)
    return ViTEncoder(**args).eval()


def test_subset_forward_adds_positions_before_gathering():
    enc = tiny()
    x = torch.randn(2, 4, 32, 32)
    idx = torch.tensor([[0, 5, 15], [3, 2, 1]])
    full_embed = enc.embed(x)
    gathered = torch.gather(full_embed, 1, idx[..., None].expand(-1, -1, 32))
    assert torch.allclose(enc(x, idx), enc.encode_tokens(gathered), atol=1e-6)
    # permuting the indices permutes the output (no positional leakage from the order)
    perm = torch.tensor([2, 0, 1])
    assert torch.allclose(enc(x, idx[:, perm]), enc(x, idx)[:, perm], atol=1e-5)


def test_same_weights_run_at_the_hr_grid_with_their_own_positions():
    enc = tiny()
    y = enc(torch.randn(1, 4, 64, 64))
    assert y.shape == (1, 64, 32)
    assert torch.allclose(enc.pos_embed(8, 8, torch.device("cpu")), sincos_2d(8, 8, 32))
    assert not enc.vit.pos_embed.requires_grad


def test_bad_inputs_name_the_fix():
    with pytest.raises(ValueError, match="not divisible by patch_size"):
        ViTEncoder(img_size=100, patch_size=16)
    enc = tiny()
    with pytest.raises(ValueError, match="not divisible by the patch size"):
        enc(torch.randn(1, 4, 30, 32))
    with pytest.raises(ValueError, match="band"):
        enc(torch.randn(1, 3, 32, 32))
    with pytest.raises(IndexError):  # no device read: the patch lookup itself refuses (on the CPU)
        enc(torch.randn(1, 4, 32, 32), torch.tensor([[16]]))
    with pytest.raises(ValueError, match=r"\(B, K\)"):
        enc(torch.randn(2, 4, 32, 32), torch.tensor([[1]]))


def test_export_loads_strictly_into_timm_vit_small_and_matches(tmp_path):
    enc = ViTEncoder(arch="vit_small", patch_size=16, img_size=224).eval()
    with torch.no_grad():
        for p in enc.parameters():
            if p.requires_grad:
                p.add_(0.01 * torch.randn_like(p))
    export_encoder(enc, tmp_path, bands=["blue", "green", "red", "nir"], gsd=10.0)
    meta_model, meta = load_exported_encoder(tmp_path)
    kwargs = dict(meta["timm_kwargs"])
    model = timm.create_model("vit_small_patch16_224", pretrained=False, **kwargs)
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(tmp_path / "encoder.safetensors")), strict=True)
    model.eval()
    x = torch.randn(2, 4, 224, 224)
    with torch.no_grad():
        ref = enc(x)
        assert torch.allclose(model.forward_features(x), ref, atol=1e-4)
        assert torch.allclose(meta_model.forward_features(x), ref, atol=1e-4)
    assert meta["bands"] == ["blue", "green", "red", "nir"] and meta["patch_size"] == 16


def test_missing_export_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="encoder.safetensors"):
        load_exported_encoder(tmp_path)


def test_patchify_only_the_chosen_patches_equals_the_full_embedding():
    """The linear map on gathered pixel patches is the patch-embed convolution (fp32 tolerance), grads too."""
    torch.manual_seed(3)
    enc = tiny()
    with torch.no_grad():
        enc.vit.patch_embed.proj.bias.normal_()
    x = torch.randn(3, 4, 64, 48)  # an HR-sized, non-square input: 8 x 6 grid
    idx = torch.stack([torch.randperm(48)[:11] for _ in range(3)])
    sub = enc.embed(x, idx)
    full = enc.embed(x)
    ref = torch.gather(full, 1, idx[..., None].expand(-1, -1, 32))
    assert sub.shape == (3, 11, 32)
    assert torch.allclose(sub, ref, atol=1e-5, rtol=1e-5)
    w = enc.vit.patch_embed.proj.weight
    g_sub = torch.autograd.grad(sub.square().sum(), w)[0]
    g_ref = torch.autograd.grad(ref.square().sum(), w)[0]
    assert torch.allclose(g_sub, g_ref, atol=1e-4, rtol=1e-4)
    # pixel patches are (c, i, j) inside a patch, row-major over the grid
    p = enc.patchify(x)
    assert p.shape == (3, 48, 4 * 8 * 8)
    assert torch.equal(p[1, 7].reshape(4, 8, 8), x[1, :, 8:16, 8:16])  # patch (1, 1) of a 6-wide grid
