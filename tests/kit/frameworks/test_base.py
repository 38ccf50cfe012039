"""What the Framework base owns for every host: EMA copies, their mode, the momentum, the feature path."""
import pytest
import torch
from torch import nn

from crossscale_kit.downsamplers.base import Downsampler
from crossscale_kit.ema import Cosine
from crossscale_kit.encoders import ViTEncoder
from crossscale_kit.frameworks import Framework, HostOutput, SpatialAffinity
from crossscale_kit.frameworks.context import StepContext
from crossscale_kit.samplers import RandomSplit


class _Probe(Framework):
    """The smallest host: constructor + forward only (what the base promises a new host needs)."""

    def __init__(self, with_ema: bool = True):
        super().__init__()
        enc = ViTEncoder(arch="vit_tiny", patch_size=8, img_size=32, embed_dim=16, depth=1, num_heads=2)
        self._init_host(enc, "mr", Cosine(0.5, 1.0), head=nn.Linear(16, 16))
        self.sampler = RandomSplit(4)
        if with_ema:
            self.add_ema(self.encoder, "target_encoder")
            self.add_ema(self.head, "target_head")

    def forward(self, batch, ctx=None):
        x = batch[self.view]
        grid = self.encoder.grid_size(*x.shape[-2:])
        masks = self.sample_patches(self.sampler, x.shape[0], grid, ctx)
        z = self.student_features(x, masks.visible)
        return HostOutput(loss=z.pow(2).mean(), student_idx=masks.visible, student_tokens=z, grid=grid)


def test_ema_pairs_mode_momentum_and_feature_copies_come_from_the_base():
    fw = _Probe()
    assert [(o is fw.encoder, e is fw.target_encoder) for o, e in fw.ema_pairs()][0] == (True, True)
    assert len(fw.ema_pairs()) == 2 and not any(p.requires_grad for p in fw.target_encoder.parameters())
    fw.train()
    assert fw.encoder.training and not fw.target_encoder.training and not fw.target_head.training
    assert fw.momentum(0, 10) == pytest.approx(0.5) and fw.momentum(10, 10) == pytest.approx(1.0)
    copies = fw.ema_feature_modules()
    assert copies["encoder"] is fw.target_encoder and copies["head"] is fw.target_head
    x = torch.randn(2, 4, 32, 32)
    idx = torch.tensor([[0, 3], [5, 15]])
    assert torch.allclose(fw.student_features(x, idx), fw.head(fw.encoder(x, idx)))
    with torch.no_grad():
        fw.encoder.vit.blocks[0].mlp.fc1.weight.add_(1.0)
    fw.ema_update(0.75)
    diff = fw.encoder.vit.blocks[0].mlp.fc1.weight - fw.target_encoder.vit.blocks[0].mlp.fc1.weight
    assert torch.allclose(diff, torch.full_like(diff, 0.75), atol=1e-5)
    with pytest.raises(ValueError, match="another name"):
        fw.add_ema(fw.encoder, "target_encoder")


def test_a_host_without_ema_copies_gets_an_own_teacher_from_the_add_on():
    host = _Probe(with_ema=False)
    assert host.ema_pairs() == [] and host.ema_feature_modules() is None
    sa = SpatialAffinity(host=host)
    assert sa.own_teacher is not None and len(sa.ema_pairs()) == 1
    assert sa.momentum(0, 10) == host.momentum(0, 10)
    sa.train()
    assert not sa.own_teacher.training and sa.host.encoder.training
    batch = {"mr": torch.randn(2, 4, 32, 32), "hr": torch.randn(2, 4, 64, 64)}
    out = sa(batch, StepContext.single(2, seed=0))
    out.loss.backward()
    assert host.encoder.vit.blocks[0].attn.qkv.weight.grad is not None
    assert all(p.grad is None for p in sa.own_teacher.parameters())


def test_bad_host_arguments_name_the_fix():
    class Bad(_Probe):
        def __init__(self, **kw):
            Framework.__init__(self)
            enc = ViTEncoder(arch="vit_tiny", patch_size=8, img_size=32, embed_dim=16, depth=1, num_heads=2)
            self._init_host(**{"encoder": enc, "view": "mr", "ema_momentum": Cosine(0.5, 1.0), **kw})

    with pytest.raises(ValueError, match="'mr' or 'hr'"):
        Bad(view="lr")
    with pytest.raises(TypeError, match="ViTEncoder"):
        Bad(encoder=nn.Linear(2, 2))
    with pytest.raises(TypeError, match="schedule"):
        Bad(ema_momentum=0.99)


class _LearnedGrid(Downsampler):
    """A learned grid downsampler (a per-channel scale after the block mean), for the no_grad contract."""

    full_grid = True
    learnable = True

    def __init__(self, dim: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, tokens, scale=None):
        b, hh, ww, d = tokens.shape
        low = tokens.reshape(b, hh // scale, scale, ww // scale, scale, d).mean((2, 4))
        return low * self.scale


def test_a_learned_downsampler_trains_in_the_whole_grid_path_and_refuses_no_grad():
    host = _Probe()
    sa = SpatialAffinity(host=host, downsampler=_LearnedGrid(16)).train()
    batch = {"mr": torch.randn(2, 4, 32, 32), "hr": torch.randn(2, 4, 64, 64)}
    sa(batch, StepContext.single(2, seed=1)).loss.backward()
    assert sa.downsampler.scale.grad is not None and sa.downsampler.scale.grad.abs().sum() > 0
    with torch.no_grad(), pytest.raises(RuntimeError, match="no_grad"):
        sa.downsampler(torch.randn(1, 4, 4, 16), 2)
    sa.eval()
    with torch.no_grad():
        assert sa.downsampler(torch.randn(1, 4, 4, 16), 2).shape == (1, 2, 2, 16)  # evaluation is fine
