"""The PANGAEA wrapper (imports without PANGAEA) gives the kit's own features at the last layer, any input size."""
import importlib

import pytest
import torch
import yaml

from tests.data.fixtures import REPO


def test_pangaea_forward_equals_the_kits_own_features(export_dir):
    from crossscale_kit.encoders.export import load_exported_encoder
    from crossscale_kit.eval.features import patch_features
    from crossscale_kit.integrations.pangaea import CrossScaleEncoder

    enc = CrossScaleEncoder(export_dir, input_size=48, output_layers=[0, 1, 2]).eval()
    assert enc.input_bands == {"optical": ["B2", "B3", "B4", "B8"]} and enc.embed_dim == 64
    torch.manual_seed(0)
    x = torch.randn(2, 4, 1, 48, 48)  # PANGAEA's (B, C, T, H, W); 48 px is not the training size (32)
    with torch.no_grad():
        maps = enc({"optical": x})
        model, _ = load_exported_encoder(export_dir)
        ref = patch_features(model, x[:, :, 0], None)  # (B, 6, 6, D)
    assert [tuple(m.shape) for m in maps] == [(2, 64, 6, 6)] * 3
    torch.testing.assert_close(maps[-1].permute(0, 2, 3, 1), ref, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(maps[0], maps[1])  # earlier blocks are earlier blocks, not copies


def test_pangaea_config_in_docs_builds_the_wrapper(export_dir):
    cfg = yaml.safe_load((REPO / "docs" / "pangaea" / "crossscale.yaml").read_text())
    module, name = cfg.pop("_target_").rsplit(".", 1)
    cls = getattr(importlib.import_module(module), name)
    cfg.update(export_dir=str(export_dir), embed_dim=64, output_dim=64, output_layers=[0, 2])
    enc = cls(**cfg)
    assert enc.output_layers == [0, 2] and enc.input_bands["optical"] == ["B2", "B3", "B4", "B8"]
    with torch.no_grad():
        assert len(enc({"optical": torch.randn(1, 4, 224, 224)})) == 2
    with pytest.raises(ValueError, match="T = 2"):
        enc({"optical": torch.randn(1, 4, 2, 32, 32)})
    with pytest.raises(ValueError, match="width 64"):
        cls(**dict(cfg, output_dim=384))
