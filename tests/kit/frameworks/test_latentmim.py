import torch
from crossscale_kit.frameworks.context import StepContext


def test_forward_backward_shapes_and_no_grad_to_targets(host, batch):
    out = host(batch, StepContext(generator=torch.Generator().manual_seed(0)))
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    assert out.student_idx.shape == (3, 4) and out.student_tokens.shape == (3, 4, 32)
    assert out.grid == (4, 4)
    out.loss.backward()
    assert host.encoder.vit.blocks[0].attn.qkv.weight.grad is not None
    assert all(p.grad is None for p in host.target_encoder.parameters())


def test_same_generator_same_loss(host, batch):
    a = host(batch, StepContext(generator=torch.Generator().manual_seed(5))).loss
    b = host(batch, StepContext(generator=torch.Generator().manual_seed(5))).loss
    c = host(batch, StepContext(generator=torch.Generator().manual_seed(6))).loss
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_ema_moves_targets_towards_online(host, batch):
    with torch.no_grad():
        for p in host.encoder.parameters():
            if p.requires_grad:
                p.add_(1.0)
    w_online = host.encoder.vit.blocks[0].mlp.fc1.weight
    w_target = host.target_encoder.vit.blocks[0].mlp.fc1.weight
    before = (w_online - w_target).abs().mean()
    host.ema_update(0.9)
    after = (w_online - w_target).abs().mean()
    assert torch.allclose(after, 0.9 * before, rtol=1e-4)
    assert host.momentum(0, 100) == 0.99 and abs(host.momentum(100, 100) - 1.0) < 1e-12
