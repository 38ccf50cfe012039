import pytest
import torch

from crossscale_kit.encoders import ProjectionHead, ViTEncoder
from crossscale_kit.frameworks import LatentMIM
from crossscale_kit.predictors import CrossAttentionDecoder
from crossscale_kit.samplers import RandomSplit


@pytest.fixture
def host():
    torch.manual_seed(0)
    enc = ViTEncoder(arch="vit_tiny", patch_size=8, img_size=32, embed_dim=32, depth=1, num_heads=2)
    return LatentMIM(
        encoder=enc,
        head=ProjectionHead(32, 32),
        decoder=CrossAttentionDecoder(32, width=32, depth=1, num_heads=2),
        sampler=RandomSplit(4),
    )


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(1)
    return {"mr": torch.randn(3, 4, 32, 32, generator=g), "hr": torch.randn(3, 4, 64, 64, generator=g)}
