import numpy as np
import pytest
import torch

from crossscale_kit.encoders.export import load_exported_encoder
from crossscale_kit.eval.crops import crop_box, random_resized_crop
from crossscale_kit.eval.features import cached_features, encoder_hash
from crossscale_kit.eval.geobench import GeoBenchSegmentation
from crossscale_kit.eval.probe import CroppedTrain, LinearSegHead, ProbeConfig, lr_at, train_probe


def test_lr_is_constant_by_default_and_cosine_on_request():
    assert {lr_at(s, 100, 10, 1e-3, "constant") for s in range(100)} == {1e-3}
    lrs = [lr_at(s, 100, 10, 1e-3, "cosine") for s in range(100)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:])) and lrs[-1] < 1e-5


def test_defaults_are_the_authors_protocol():
    cfg = ProbeConfig()
    assert (cfg.epochs, cfg.lr, cfg.weight_decay, cfg.batch_size, cfg.img_size) == (100, 1e-3, 0.0, 64, 224)
    assert (cfg.mode, cfg.schedule, cfg.crop_scale) == ("faithful", "constant", (0.3, 1.0)) and cfg.departures() == []
    assert ProbeConfig(mode="cached", epochs=5).departures() == ["epochs=5 (paper 100)", "mode='cached' (paper 'faithful')"]


def test_head_shapes():
    head = LinearSegHead(8, 5)
    out = head(torch.randn(2, 12, 8), (3, 4), (30, 40))
    assert out.shape == (2, 5, 30, 40)


def test_config_validation():
    with pytest.raises(ValueError, match="warmup"):
        ProbeConfig(epochs=5, warmup_epochs=6, schedule="cosine")
    with pytest.raises(ValueError, match="mode"):
        ProbeConfig(mode="fast")


def test_crop_boxes_follow_the_rule():
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        t, l, h, w = crop_box(64, 64, g)
        assert 0 <= t and t + h <= 64 and 0 <= l and l + w <= 64
        assert 0.3 * 64 * 64 * 0.9 <= h * w <= 64 * 64 and 3 / 4 * 0.8 <= w / h <= 4 / 3 * 1.25


def test_mask_is_resized_nearest():
    img = torch.randn(3, 2, 16, 16)
    lab = torch.randint(0, 5, (3, 16, 16))
    lab[0] = -1
    i, y, boxes = random_resized_crop(img, lab, 40, torch.Generator().manual_seed(1))
    assert i.shape == (3, 2, 40, 40) and y.shape == (3, 40, 40) and y.dtype == torch.int64
    assert set(y[1:].unique().tolist()) <= set(lab[1:].unique().tolist()) and (y[0] == -1).all()


def test_faithful_mode_draws_a_new_training_crop_each_epoch(tiny_encoder, geobench_root):
    model, _ = load_exported_encoder(tiny_encoder)
    ds = GeoBenchSegmentation(geobench_root / "m-cashew-plant", "test")
    seen = []

    def encode(x):
        seen.append(x.clone())
        return torch.zeros(x.shape[0], 4, 4, 64)

    train = CroppedTrain(encode, ds, ProbeConfig(img_size=32), dim=64)
    for epoch in (0, 1, 0):
        gen = torch.Generator().manual_seed(7 * 1_000_003 + epoch)
        batches = list(train.batches(gen, 16))
        assert sum(b[2].shape[0] for b in batches) == len(ds) and batches[0][2].shape[-2:] == (32, 32)
    n = len(seen) // 3
    e0, e1, e0_again = (torch.cat(seen[k * n:(k + 1) * n]) for k in range(3))
    assert not torch.allclose(e0, e1)  # another epoch, other crops (and order)
    torch.testing.assert_close(e0, e0_again)  # the same (seed, epoch) draws the same crops


def test_train_probe_faithful_runs_and_encodes_every_epoch(tiny_encoder, geobench_root, tmp_path):
    from crossscale_kit.eval.features import patch_features

    model, _ = load_exported_encoder(tiny_encoder)
    calls = []

    def encode(x):
        calls.append(x.shape[0])
        return patch_features(model, x, None)

    ds = GeoBenchSegmentation(geobench_root / "m-cashew-plant", "train")
    val = GeoBenchSegmentation(geobench_root / "m-cashew-plant", "val")
    key = {"encoder": encoder_hash(tiny_encoder), "dataset": "m-cashew-plant", "split": "val", "img_size": 32}
    f, lab, grid = cached_features(model, val, tmp_path, key=key, img_size=32, progress=False)
    cfg = ProbeConfig(img_size=32, epochs=2, batch_size=32, lr=1e-2, progress=False)
    res = train_probe(CroppedTrain(encode, ds, cfg, 64), (f, lab), (f, lab), grid=grid, num_classes=7, ignore_index=-1,
                      cfg=cfg, seed=0)
    assert sum(calls) == 2 * len(ds) and 0 <= res["test_miou"] <= 1 and len(res["per_class_iou"]) == 7


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


class _KilledAfter:
    """Validation features that stop the run (like a kill) when read for the ``n``-th epoch's evaluation."""

    def __init__(self, feats, n):
        self.feats, self.n, self.calls = feats, n, 0

    def __len__(self):
        self.calls += 1
        if self.calls > self.n:
            raise KeyboardInterrupt("killed")
        return len(self.feats)

    def __getitem__(self, idx):
        return self.feats[idx]


def test_a_killed_probe_resumes_after_its_last_epoch_with_the_unbroken_result(tmp_path):
    import numpy as np
    import torch

    from crossscale_kit.eval.probe import CachedTrain, ProbeConfig, train_probe

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=(24, 8, 8))
    feats = rng.normal(size=(24, 16, 6)).astype(np.float32)
    feats[..., 0] += np.repeat(np.repeat(labels[:, ::2, ::2], 1, 1), 1, 2).reshape(24, 16)  # a learnable signal
    cfg = ProbeConfig(epochs=6, batch_size=8, img_size=None, mode="cached", progress=False)
    train = CachedTrain(feats[:16], labels[:16], (4, 4), "cpu")
    val, test = (feats[16:20], labels[16:20]), (feats[20:], labels[20:])
    kw = dict(grid=(4, 4), num_classes=3, ignore_index=-1, cfg=cfg, seed=1)
    unbroken = train_probe(train, val, test, **kw)
    state = tmp_path / "seed1.pt"
    with pytest.raises(KeyboardInterrupt):
        train_probe(train, (_KilledAfter(val[0], 3), val[1]), test, state_path=state, **kw)
    assert torch.load(state, weights_only=True)["epoch"] == 2  # three epochs kept
    resumed = train_probe(train, val, test, state_path=state, **kw)
    assert resumed == unbroken and not state.exists()
