"""LatentMIM's released encoder positions: the sin-cos table at ``k * g / (g - 1)``, on every grid, and an
export that rebuilds the same table at any input size (issue 22)."""
import numpy as np
import timm
import torch
from safetensors.torch import load_file

from crossscale_kit.encoders.export import export_encoder, load_exported_encoder
from crossscale_kit.encoders.vit import ViTEncoder
from crossscale_kit.frameworks.spatial_affinity import SpatialAffinity


def released_table(g: int, dim: int) -> np.ndarray:
    """The released ``AbsolutePositionEmbeds`` as its formula reads: positions ``linspace(0, 1, g) * g`` on
    each axis, MAE's 1-D sin-cos per axis, the width (column) half first. Written with numpy, row-major."""
    pos = np.linspace(0.0, 1.0, g) * g
    quarter = dim // 4
    omega = 1.0 / 10000 ** (np.arange(quarter) / quarter)
    rows = []
    for r in range(g):
        for c in range(g):
            rows.append(np.concatenate([np.sin(pos[c] * omega), np.cos(pos[c] * omega),
                                        np.sin(pos[r] * omega), np.cos(pos[r] * omega)]))
    return np.stack(rows)


def tiny(**kw):
    args = dict(arch="vit_tiny", patch_size=8, img_size=32, embed_dim=32, depth=1, num_heads=2, class_token=True)
    args.update(kw)
    return ViTEncoder(**args).eval()


def test_stretched_encoder_table_is_the_released_one_on_mr_and_hr_grids():
    enc = tiny(stretch_positions=True)
    for g in (4, 8, 14, 28):  # MR grid, the HR teacher's 2x grid, the paper's 14 and 28
        ref = torch.from_numpy(released_table(g, 32)).float()
        torch.testing.assert_close(enc.pos_embed(g, g, torch.device("cpu")), ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(enc.vit.pos_embed[0], torch.from_numpy(released_table(4, 32)).float(), atol=1e-6,
                               rtol=0)
    # the kit's default is unchanged: integer positions
    plain = tiny()
    assert not plain.stretch_positions
    ints = torch.from_numpy(released_table(4, 32)).float()
    assert not torch.allclose(plain.pos_embed(4, 4, torch.device("cpu")), ints, atol=1e-3)


def test_hr_teacher_uses_the_stretched_table_of_its_own_grid():
    from crossscale_kit.frameworks.latentmim import LatentMIM
    torch.manual_seed(0)
    sa = SpatialAffinity(host=LatentMIM(encoder=tiny(stretch_positions=True)))
    teacher = sa.teacher["encoder"]
    assert teacher.stretch_positions
    ref = torch.from_numpy(released_table(8, 32)).float()
    torch.testing.assert_close(teacher.pos_embed(8, 8, torch.device("cpu")), ref, atol=1e-6, rtol=0)


def test_stretched_export_gives_training_features_at_every_size(tmp_path):
    torch.manual_seed(0)
    enc = tiny(stretch_positions=True, init="latentmim")
    export_encoder(enc, tmp_path, bands=["blue", "green", "red", "nir"])
    model, meta = load_exported_encoder(tmp_path)
    assert meta["pos_spacing"] == "stretched"
    plain = timm.create_model("vit_tiny_patch16_224", pretrained=False, **meta["timm_kwargs"]).eval()
    plain.load_state_dict(load_file(str(tmp_path / "encoder.safetensors")), strict=True)
    n = meta["num_prefix_tokens"]
    with torch.no_grad():
        x = torch.randn(2, 4, 32, 32)
        torch.testing.assert_close(plain.forward_features(x)[:, n:], enc(x), atol=1e-5, rtol=1e-5)  # training size
        for side in (24, 48, 64):
            x = torch.randn(2, 4, side, side)
            torch.testing.assert_close(model.forward_features(x)[:, n:], enc(x), atol=1e-5, rtol=1e-5)
        x = torch.randn(2, 4, 64, 64)  # plain timm interpolates the stored table: not the training features
        assert not torch.allclose(plain.forward_features(x)[:, n:], enc(x), atol=1e-3)


def test_integer_export_records_its_spacing_and_old_exports_default_to_integer(tmp_path):
    enc = tiny()
    export_encoder(enc, tmp_path)
    model, meta = load_exported_encoder(tmp_path)
    assert meta["pos_spacing"] == "integer"
    import json
    m = json.loads((tmp_path / "meta.json").read_text())
    del m["pos_spacing"]  # an export written before the field existed
    (tmp_path / "meta.json").write_text(json.dumps(m))
    model, _ = load_exported_encoder(tmp_path)
    with torch.no_grad():
        x = torch.randn(1, 4, 48, 48)
        torch.testing.assert_close(model.forward_features(x)[:, 1:], enc(x), atol=1e-5, rtol=1e-5)
