"""MAE host: pixels of the masked patches, no EMA target, and spatial affinity wrapping it unchanged."""
import pytest
import torch

import crossscale_kernels
from crossscale_kit.encoders import ViTEncoder
from crossscale_kit.frameworks import MAE, SpatialAffinity
from crossscale_kit.frameworks.context import StepContext
from crossscale_kit.losses import MaskedPixelMSE
from crossscale_kit.predictors import MAEDecoder
from crossscale_kit.samplers import MultiBlock, RandomSplit, mr_to_hr_indices


def _mae(**kw):
    torch.manual_seed(0)
    enc = ViTEncoder(arch="vit_tiny", patch_size=8, img_size=32, embed_dim=32, depth=1, num_heads=2)
    args = dict(encoder=enc, decoder=MAEDecoder(32, patch_size=8, in_chans=4, width=32, depth=1, num_heads=2))
    args.update(kw)
    return MAE(**args)


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(1)
    return {"mr": torch.randn(3, 4, 32, 32, generator=g), "hr": torch.randn(3, 4, 64, 64, generator=g)}


def test_loss_is_normalised_pixel_mse_of_the_masked_patches(batch):
    mae = _mae()
    out = mae(batch, StepContext.single(3, seed=2))
    masks = mae.sampler.sample(3, (4, 4), torch.Generator().manual_seed(2))
    assert masks.visible.shape == (3, 4) and masks.targets.shape == (3, 12)  # 75 % of 16 masked
    assert torch.equal(out.student_idx, masks.visible)
    with torch.no_grad():
        z = mae.encoder(batch["mr"], masks.visible)
        pred = mae.decoder(z, masks.visible, masks.targets, (4, 4))
        x = batch["mr"]
        # pixels of patch (r, c): x[:, :, 8r:8r+8, 8c:8c+8], flattened (c, i, j)
        tgt = torch.stack([
            torch.stack([x[b, :, 8 * (t // 4) : 8 * (t // 4) + 8, 8 * (t % 4) : 8 * (t % 4) + 8].reshape(-1)
                         for t in masks.targets[b].tolist()])
            for b in range(3)
        ])
        tgt = (tgt - tgt.mean(-1, keepdim=True)) / (tgt.var(-1, keepdim=True) + 1e-6).sqrt()
    assert torch.allclose(out.student_tokens, z, atol=1e-6)
    assert torch.allclose(out.loss, (pred - tgt).pow(2).mean(), atol=1e-5)
    out.loss.backward()
    assert mae.encoder.vit.blocks[0].attn.qkv.weight.grad is not None
    assert mae.decoder.mask_token.grad is not None and mae.decoder.mask_token.grad.abs().sum() > 0


def test_mae_keeps_no_ema_but_has_a_momentum_for_add_ons():
    mae = _mae()
    assert mae.ema_pairs() == [] and mae.ema_feature_modules() is None
    assert mae.momentum(0, 100) == pytest.approx(0.996) and mae.momentum(100, 100) == pytest.approx(1.0)
    mae.ema_update(0.5)  # nothing to update, no error


def test_spatial_affinity_wraps_mae_with_its_own_teacher(batch):
    mae = _mae()
    sa = SpatialAffinity(host=mae)
    assert sa.own_teacher is not None and sa.teacher["encoder"] is not mae.encoder
    for p, q in zip(mae.encoder.parameters(), sa.teacher["encoder"].parameters()):
        assert torch.equal(p, q) and not q.requires_grad
    out = sa(batch, StepContext.single(3, seed=5))
    host_out = mae(batch, StepContext.single(3, seed=5))
    idx = host_out.student_idx
    with torch.no_grad():
        t = sa.teacher["encoder"](batch["hr"], mr_to_hr_indices(idx, (4, 4), 2)).reshape(3, 4, 2, 2, -1).mean((2, 3))
    gram = crossscale_kernels.gram_loss(host_out.student_tokens, t)
    assert torch.allclose(out.loss, host_out.loss + gram, atol=1e-5)
    out.loss.backward()
    assert all(p.grad is None for p in sa.own_teacher.parameters())
    with torch.no_grad():
        mae.encoder.vit.blocks[0].mlp.fc1.weight.add_(1.0)
    sa.ema_update(sa.momentum(0, 4))  # 0.996: the teacher moves 0.4 % of the way
    diff = mae.encoder.vit.blocks[0].mlp.fc1.weight - sa.teacher["encoder"].vit.blocks[0].mlp.fc1.weight
    assert torch.allclose(diff, torch.full_like(diff, 0.996), atol=1e-4)


def test_bad_parts_name_the_fix(batch):
    with pytest.raises(ValueError, match="MAEDecoder.patch_size"):
        _mae(decoder=MAEDecoder(32, patch_size=16, in_chans=4, width=32, depth=1, num_heads=2))
    with pytest.raises(TypeError, match="SplitMasks"):
        _mae(sampler=MultiBlock(min_keep=0))(batch, StepContext.single(3))
    assert isinstance(_mae().sampler, RandomSplit) and isinstance(_mae().loss_fn, MaskedPixelMSE)
