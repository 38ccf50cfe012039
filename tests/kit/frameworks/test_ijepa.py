"""I-JEPA host and the spatial-affinity options exercised with it."""
import pytest
import torch
from crossscale_kit.frameworks.context import StepContext
import torch.nn.functional as F

import crossscale_kernels
from crossscale_kit.downsamplers import BlockMean, LinearProjection
from crossscale_kit.encoders import ViTEncoder
from crossscale_kit.frameworks import IJEPA, Framework, SpatialAffinity
from crossscale_kit.predictors import IJEPAPredictor
from crossscale_kit.samplers import BlockSampler, MultiBlock, mr_to_hr_indices
from crossscale_kit.train.optim import apply_schedules, build_adamw


def _ijepa(mode="faithful"):
    torch.manual_seed(0)
    enc = ViTEncoder(arch="vit_tiny", patch_size=8, img_size=64, embed_dim=32, depth=1, num_heads=2)
    return IJEPA(
        encoder=enc,
        predictor=IJEPAPredictor(32, width=32, depth=1, num_heads=2),
        sampler=MultiBlock(mode=mode, min_keep=4),
    )


@pytest.fixture
def ijepa():
    return _ijepa()


@pytest.fixture
def pair():
    g = torch.Generator().manual_seed(1)
    return {"mr": torch.randn(3, 4, 64, 64, generator=g), "hr": torch.randn(3, 4, 128, 128, generator=g)}


def test_forward_backward_contract(ijepa, pair):
    out = ijepa(pair, StepContext(generator=torch.Generator().manual_seed(0)))
    masks = ijepa.sampler.sample(3, (8, 8), torch.Generator().manual_seed(0))
    assert out.loss.dim() == 0 and torch.isfinite(out.loss) and out.grid == (8, 8)
    # the SA student tokens are the context-encoder outputs at the context indices
    assert torch.equal(out.student_idx, masks.context)
    assert torch.allclose(out.student_tokens, ijepa.encoder(pair["mr"], masks.context), atol=1e-6)
    out.loss.backward()
    assert ijepa.encoder.vit.blocks[0].attn.qkv.weight.grad is not None
    assert ijepa.predictor.mask_token.grad is not None
    assert all(p.grad is None for p in ijepa.target_encoder.parameters())


def test_loss_is_smooth_l1_to_layer_normed_full_image_targets(ijepa, pair):
    gen = torch.Generator().manual_seed(4)
    out = ijepa(pair, StepContext(generator=gen))
    masks = ijepa.sampler.sample(3, (8, 8), torch.Generator().manual_seed(4))
    ctx, tgt = masks.context, masks.targets
    with torch.no_grad():
        full = F.layer_norm(ijepa.target_encoder(pair["mr"]), (32,))  # attention over ALL patches
        pred = ijepa.predictor(ijepa.encoder(pair["mr"], ctx), ctx, tgt, (8, 8))
    target = torch.stack([full[b, tgt[b]] for b in range(3)])  # (B, M, Kt, D)
    assert torch.allclose(out.loss, F.smooth_l1_loss(pred, target, beta=1.0), atol=1e-6)
    # encoding only the target patches would give other targets
    only = ijepa.target_encoder(pair["mr"], tgt[:, 0])
    assert not torch.allclose(F.layer_norm(only, (32,)), target[:, 0], atol=1e-3)


def test_same_generator_same_loss_and_hr_view(ijepa, pair):
    a = ijepa(pair, StepContext(generator=torch.Generator().manual_seed(5))).loss
    b = ijepa(pair, StepContext(generator=torch.Generator().manual_seed(5))).loss
    c = ijepa(pair, StepContext(generator=torch.Generator().manual_seed(6))).loss
    assert torch.equal(a, b) and not torch.equal(a, c)
    hr_only = _ijepa()
    hr_only.view = "hr"
    assert hr_only({"mr": pair["mr"], "hr": pair["hr"]}, StepContext(generator=torch.Generator().manual_seed(0))).grid == (16, 16)
    with pytest.raises(ValueError, match="view"):
        IJEPA(encoder=hr_only.encoder, view="both")


def test_ema_and_linear_momentum(ijepa):
    assert ijepa.momentum(0, 100) == pytest.approx(0.996)
    assert ijepa.momentum(50, 100) == pytest.approx(0.998)
    assert ijepa.momentum(100, 100) == pytest.approx(1.0)
    with torch.no_grad():
        ijepa.encoder.vit.blocks[0].mlp.fc1.weight.add_(1.0)
    ijepa.ema_update(0.75)
    diff = ijepa.encoder.vit.blocks[0].mlp.fc1.weight - ijepa.target_encoder.vit.blocks[0].mlp.fc1.weight
    assert torch.allclose(diff, torch.full_like(diff, 0.75), atol=1e-5)


def test_sa_on_ijepa_compares_context_tokens_with_hr_blocks(ijepa, pair):
    sa = SpatialAffinity(host=ijepa, weight=1.0, downsampler=BlockMean())
    out = sa(pair, StepContext(generator=torch.Generator().manual_seed(2)))
    host_out = ijepa(pair, StepContext(generator=torch.Generator().manual_seed(2)))
    idx = host_out.student_idx
    assert torch.equal(out.student_idx, idx)
    with torch.no_grad():
        hr_idx = mr_to_hr_indices(idx, (8, 8), 2)
        t = sa.teacher["encoder"](pair["hr"], hr_idx).reshape(3, idx.shape[1], 2, 2, -1).mean((2, 3))
    gram = crossscale_kernels.gram_loss(host_out.student_tokens, t)
    assert torch.allclose(out.loss, host_out.loss + gram, atol=1e-5)
    assert set(out.logs) >= {"loss/host", "loss/gram", "loss/total"}


def test_teacher_full_image_gathers_from_the_whole_hr_encoding(ijepa, pair):
    sa = SpatialAffinity(host=ijepa, teacher_full_image=True)
    idx = torch.tensor([[0, 9, 27, 63]] * 3)
    t = sa.teacher_tokens(pair["hr"], idx, (8, 8), 2)
    assert t.shape == (3, 4, 32)
    with torch.no_grad():
        full = Framework.features_from_modules(sa.teacher, pair["hr"], None)  # (B, 256, D)
        hr_idx = mr_to_hr_indices(idx, (8, 8), 2)
        expected = torch.stack([full[b, hr_idx[b]] for b in range(3)]).reshape(3, 4, 2, 2, 32).mean((2, 3))
        subset = SpatialAffinity(host=ijepa).teacher_tokens(pair["hr"], idx, (8, 8), 2)
    assert torch.allclose(t, expected, atol=1e-5)
    assert not torch.allclose(t, subset, atol=1e-3)  # attention over all HR patches changes the tokens
    out = sa(pair, StepContext(generator=torch.Generator().manual_seed(0)))
    assert torch.isfinite(out.loss)


def test_linear_projection_is_trained_with_the_student(ijepa, pair):
    sa = SpatialAffinity(host=ijepa, downsampler=LinearProjection(32, scale=2))
    opt = build_adamw(sa)
    apply_schedules(opt, 1e-2, 0.0)
    assert any(p is sa.downsampler.proj.weight for g in opt.param_groups for p in g["params"])
    before = sa.downsampler.proj.weight.detach().clone()
    out = sa(pair, StepContext(generator=torch.Generator().manual_seed(0)))
    out.loss.backward()
    grad = sa.downsampler.proj.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    opt.step()
    assert not torch.equal(sa.downsampler.proj.weight, before)
    assert all(p.grad is None for p in sa.teacher.parameters())


def test_block_sampler_gives_sa_its_own_patches(ijepa, pair):
    sa = SpatialAffinity(host=ijepa, sampler=BlockSampler())
    out = sa(pair, StepContext(generator=torch.Generator().manual_seed(0)))
    gen = torch.Generator().manual_seed(0)
    ijepa.sampler.sample(3, (8, 8), gen)  # the host draws its masks first, from the same generator
    expected = BlockSampler().sample(3, (8, 8), gen).visible
    assert torch.equal(out.student_idx, expected)
    assert out.student_tokens.shape == (*expected.shape, 32)
    assert torch.allclose(out.student_tokens, ijepa.encoder(pair["mr"], out.student_idx), atol=1e-6)


def test_corrected_mode_host_trains(pair):
    host = _ijepa("corrected")
    out = host(pair, StepContext(generator=torch.Generator().manual_seed(0)))
    out.loss.backward()
    assert torch.isfinite(out.loss)
