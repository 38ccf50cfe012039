"""The LatentMIM host passes the encoder's CLS token to the decoder as released (docs/FIDELITY.md)."""
import torch

from crossscale_kit.encoders import ProjectionHead, ViTEncoder
from crossscale_kit.frameworks import LatentMIM
from crossscale_kit.frameworks.context import StepContext
from crossscale_kit.predictors import CrossAttentionDecoder
from crossscale_kit.samplers import RandomSplit


def build(class_token=True):
    torch.manual_seed(0)
    enc = ViTEncoder(arch="vit_tiny", patch_size=8, img_size=32, embed_dim=32, depth=1, num_heads=2,
                     class_token=class_token, init="latentmim")
    return LatentMIM(encoder=enc, head=ProjectionHead(32, 32), sampler=RandomSplit(4),
                     decoder=CrossAttentionDecoder(32, width=32, depth=1, num_heads=2))


def test_encoder_cls_goes_through_the_head_into_the_decoder_keys():
    host = build()
    x = torch.randn(3, 4, 32, 32)
    seen = {}
    host.decoder.register_forward_pre_hook(lambda m, args, kwargs: seen.update(args=args, kwargs=kwargs), with_kwargs=True)
    out = host({"mr": x}, StepContext(generator=torch.Generator().manual_seed(0)))
    vis = out.student_idx
    with torch.no_grad():
        expected = host.head(host.encoder(x, vis, keep_prefix=True))
    torch.testing.assert_close(seen["kwargs"]["prefix"], expected[:, :1])
    torch.testing.assert_close(out.student_tokens, expected[:, 1:])  # the add-on gets the patch tokens only
    assert out.student_tokens.shape == (3, 4, 32)
    out.loss.backward()
    assert host.encoder.vit.cls_token.grad is not None and host.encoder.vit.cls_token.grad.abs().sum() > 0
    # the EMA target carries its own CLS token, updated with the rest
    assert host.target_encoder.vit.cls_token is not None and not host.target_encoder.vit.cls_token.requires_grad


def test_without_cls_the_decoder_gets_no_prefix():
    host = build(class_token=False)
    seen = {}
    host.decoder.register_forward_pre_hook(lambda m, args, kwargs: seen.update(kwargs=kwargs), with_kwargs=True)
    out = host({"mr": torch.randn(2, 4, 32, 32)}, StepContext(generator=torch.Generator().manual_seed(0)))
    assert seen["kwargs"]["prefix"] is None and torch.isfinite(out.loss)
