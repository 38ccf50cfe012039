import pytest
import torch
from crossscale_kit.frameworks.context import StepContext

import crossscale_kernels
from crossscale_kit.downsamplers import BlockMean, GridInterpolate
from crossscale_kit.frameworks import Framework, SpatialAffinity
from crossscale_kit.samplers import RandomSplit, mr_to_hr_indices


def test_teacher_starts_as_the_student_and_follows_by_ema(host, batch):
    sa = SpatialAffinity(host=host)
    for (n1, p1), (n2, p2) in zip(host.feature_modules().named_parameters(), sa.teacher.named_parameters()):
        assert n1 == n2 and torch.equal(p1, p2) and not p2.requires_grad
    with torch.no_grad():
        host.encoder.vit.blocks[0].mlp.fc1.weight.add_(1.0)
    sa.ema_update(0.75)
    diff = host.encoder.vit.blocks[0].mlp.fc1.weight - sa.teacher["encoder"].vit.blocks[0].mlp.fc1.weight
    assert torch.allclose(diff, torch.full_like(diff, 0.75), atol=1e-5)


def test_total_is_host_plus_weighted_gram_on_hr_patches_under_student(host, batch):
    sa = SpatialAffinity(host=host, weight=0.5, downsampler=BlockMean())
    out = sa(batch, StepContext(generator=torch.Generator().manual_seed(3)))
    host_out = host(batch, StepContext(generator=torch.Generator().manual_seed(3)))
    idx = host_out.student_idx
    assert torch.equal(out.student_idx, idx)
    with torch.no_grad():
        hr_idx = mr_to_hr_indices(idx, (4, 4), 2)
        t = sa.teacher["head"](sa.teacher["encoder"](batch["hr"], hr_idx)).reshape(3, 4, 2, 2, -1).mean((2, 3))
    gram = crossscale_kernels.gram_loss(host_out.student_tokens, t)
    assert torch.allclose(out.loss, host_out.loss + 0.5 * gram, atol=1e-5)
    assert torch.allclose(out.logs["loss/gram"], gram, atol=1e-6)
    out.loss.backward()
    assert all(p.grad is None for p in sa.teacher.parameters())


def test_grid_downsampler_encodes_the_full_hr_image(host, batch):
    sa = SpatialAffinity(host=host, downsampler=GridInterpolate("bicubic"))
    assert sa.teacher_full_image
    idx = torch.tensor([[0, 5, 10, 15]] * 3)
    t = sa.teacher_tokens(batch["hr"], idx, (4, 4), 2)
    full = Framework.features_from_modules(sa.teacher, batch["hr"], None).reshape(3, 8, 8, -1)
    low = torch.nn.functional.interpolate(full.permute(0, 3, 1, 2), size=(4, 4), mode="bicubic", align_corners=False)
    expected = low.permute(0, 2, 3, 1).reshape(3, 16, -1)[:, [0, 5, 10, 15]]
    assert torch.allclose(t, expected, atol=1e-5)


def test_own_sampler_runs_an_extra_student_pass(host, batch):
    sa = SpatialAffinity(host=host, sampler=RandomSplit(6))
    out = sa(batch, StepContext(generator=torch.Generator().manual_seed(0)))
    assert out.student_idx.shape == (3, 6) and out.student_tokens.shape == (3, 6, 32)


def test_bad_pairs_and_hosts_are_refused(host, batch):
    sa = SpatialAffinity(host=host)
    with pytest.raises(ValueError, match="exact integer multiple"):
        sa({"mr": batch["mr"], "hr": torch.randn(3, 4, 48, 64)}, StepContext(generator=torch.Generator().manual_seed(0)))
    host.view = "hr"
    with pytest.raises(ValueError, match="MR image"):
        SpatialAffinity(host=host)


def test_shared_teacher_is_the_host_target_and_matches_a_separate_copy(host, batch):
    import copy

    shared = SpatialAffinity(host=host)
    separate = SpatialAffinity(host=copy.deepcopy(host), share_host_ema=False)
    assert shared.own_teacher is None and separate.own_teacher is not None
    assert shared.teacher["encoder"] is host.target_encoder
    opt_a = torch.optim.SGD([p for p in shared.parameters() if p.requires_grad], lr=0.1)
    opt_b = torch.optim.SGD([p for p in separate.parameters() if p.requires_grad], lr=0.1)
    for step in range(3):
        for fw, opt in ((shared, opt_a), (separate, opt_b)):
            out = fw(batch, StepContext(step=step, generator=torch.Generator().manual_seed(step)))
            out.loss.backward()
            opt.step()
            opt.zero_grad()
            fw.ema_update(0.9)
        assert torch.allclose(
            shared(batch, StepContext(generator=torch.Generator().manual_seed(9))).loss, separate(batch, StepContext(generator=torch.Generator().manual_seed(9))).loss
        )
    for (n, p), (_, q) in zip(shared.teacher.named_parameters(), separate.teacher.named_parameters()):
        assert torch.allclose(p, q, atol=1e-6), n


def test_frozen_teacher_stays_at_the_students_init_while_the_host_target_follows(host, batch):
    """The control of the sixth plan: its own copy of the student at init, never EMA-updated; the host's
    target still follows the student, and the gram term still reaches the student."""
    init = {k: v.clone() for k, v in host.feature_modules().state_dict().items()}
    target_before = {k: v.clone() for k, v in host.target_encoder.state_dict().items()}
    sa = SpatialAffinity(host=host, frozen_teacher=True)
    assert sa.own_teacher is not None and sa.teacher["encoder"] is not host.target_encoder
    assert all(ema is not sa.own_teacher for _, ema in sa.ema_pairs()) and len(sa.ema_pairs()) == len(host.ema_pairs())
    opt = torch.optim.SGD([p for p in sa.parameters() if p.requires_grad], lr=0.5)
    for step in range(3):
        out = sa(batch, StepContext(step=step, generator=torch.Generator().manual_seed(step)))
        assert out.logs["loss/gram"] > 0
        out.loss.backward()
        opt.step()
        opt.zero_grad()
        sa.ema_update(0.5)
    assert all(torch.equal(v, init[k]) for k, v in sa.teacher.state_dict().items())
    assert not all(torch.equal(v, init[k]) for k, v in host.feature_modules().state_dict().items())
    assert not all(torch.equal(v, target_before[k]) for k, v in host.target_encoder.state_dict().items())
    sa.train()
    assert not sa.teacher["encoder"].training  # kept in eval mode like every EMA copy


def test_views_name_the_images_each_framework_reads(host, batch):
    """The loader finishes only ``fw.views``: a host its own view, the add-on MR and HR; forward runs on those."""
    from crossscale_kit.encoders import ProjectionHead, ViTEncoder
    from crossscale_kit.frameworks import LatentMIM
    from crossscale_kit.predictors import CrossAttentionDecoder

    assert host.views == ("mr",)
    host(dict(mr=batch["mr"]), StepContext())  # an MR-only batch is all the host needs
    sa = SpatialAffinity(host=host)
    assert sa.views == ("mr", "hr")
    sa(batch, StepContext())
    with pytest.raises(KeyError):  # a batch without HR fails loudly, never silently
        sa(dict(mr=batch["mr"]), StepContext())
    enc = ViTEncoder(arch="vit_tiny", patch_size=8, img_size=64, embed_dim=32, depth=1, num_heads=2)
    hr_host = LatentMIM(encoder=enc, head=ProjectionHead(32, 32), decoder=CrossAttentionDecoder(32, width=32, depth=1,
                        num_heads=2), sampler=RandomSplit(4), view="hr")
    assert hr_host.views == ("hr",)
    hr_host(dict(hr=batch["hr"]), StepContext())
