import numpy as np
import pytest
import torch

from kit.encoders.export import load_exported_encoder
from kit.eval.features import cached_features, encoder_hash
from kit.eval.geobench import GeoBenchSegmentation
from kit.eval.probe import LinearSegHead, ProbeConfig, lr_at


def test_lr_schedule_warmup_then_cosine():
    lrs = [lr_at(s, 100, 10, 1e-3) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:])) and lrs[-1] < 1e-5


def test_head_shapes():
    head = LinearSegHead(8, 5)
    out = head(torch.randn(2, 12, 8), (3, 4), (30, 40))
    assert out.shape == (2, 5, 30, 40)


def test_config_validation():
    with pytest.raises(ValueError, match="warmup"):
        ProbeConfig(epochs=5, warmup_epochs=6)


def test_feature_cache_is_reused(tiny_encoder, geobench_root, tmp_path):
    model, meta = load_exported_encoder(tiny_encoder)
    ds = GeoBenchSegmentation(geobench_root / "m-cashew-plant", "test")
    key = {"encoder": encoder_hash(tiny_encoder), "dataset": "m-cashew-plant", "split": "test", "img_size": 32}
    f1, l1, grid = cached_features(model, ds, tmp_path, key=key, img_size=32, progress=False)
    assert f1.shape == (len(ds), 16, 64) and grid == (4, 4) and l1.shape == (len(ds), 64, 64)
    # second call: served from disk without touching the model
    f2, l2, grid2 = cached_features(None, ds, tmp_path, key=key, img_size=32, progress=False)
    np.testing.assert_array_equal(np.asarray(f1), np.asarray(f2))
    assert grid2 == grid
