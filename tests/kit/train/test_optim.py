"""Weight-decay groups as released, and the AdamW implementation choice."""
from __future__ import annotations

import pytest
import torch

from crossscale_kit.encoders import ProjectionHead, ViTEncoder
from crossscale_kit.frameworks import IJEPA, LatentMIM, SpatialAffinity
from crossscale_kit.predictors import CrossAttentionDecoder, IJEPAPredictor
from crossscale_kit.samplers import MultiBlock, RandomSplit
from crossscale_kit.train.optim import adamw_impl, apply_schedules, build_adamw, no_decay_biases_and_1d, param_groups


def _enc():
    return ViTEncoder(arch="vit_tiny", patch_size=8, img_size=32, embed_dim=32, depth=1, num_heads=2)


def _latentmim():
    torch.manual_seed(0)
    return LatentMIM(encoder=_enc(), head=ProjectionHead(32, 32),
                     decoder=CrossAttentionDecoder(32, width=32, depth=1, num_heads=2), sampler=RandomSplit(4))


def _ijepa():
    torch.manual_seed(0)
    return IJEPA(encoder=_enc(), predictor=IJEPAPredictor(32, width=32, depth=1, num_heads=2),
                 sampler=MultiBlock(min_keep=0))


def _decayed(model, **kw) -> set[str]:
    ids = {id(p) for g in param_groups(model, **kw) if g["apply_wd"] for p in g["params"]}
    return {n for n, p in model.named_parameters() if id(p) in ids}


def _trainable(model) -> dict:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("wrap", [False, True])
def test_latentmim_groups_as_released(wrap):
    fw = _latentmim()
    model = SpatialAffinity(host=fw) if wrap else fw
    decayed = _decayed(model)
    for name, p in _trainable(model).items():
        released = not (p.ndim <= 1 or "bias" in name or "norm" in name or "embed" in name)
        assert (name in decayed) == released, name
    pre = "host." if wrap else ""
    assert pre + "decoder.mask_token" in decayed
    assert pre + "encoder.vit.patch_embed.proj.weight" not in decayed
    assert pre + "decoder.embed.weight" not in decayed
    assert any(n.endswith("blocks.0.attn.qkv.weight") for n in decayed)
    assert not any(n.startswith(pre + "target_") for n in _decayed(model))  # EMA copies are not optimised


@pytest.mark.parametrize("wrap", [False, True])
def test_ijepa_groups_as_released(wrap):
    fw = _ijepa()
    model = SpatialAffinity(host=fw) if wrap else fw
    decayed = _decayed(model)
    for name, p in _trainable(model).items():
        assert (name in decayed) == (p.ndim > 1 and not name.endswith("bias")), name
    pre = "host." if wrap else ""
    assert {pre + "predictor.mask_token", pre + "encoder.vit.patch_embed.proj.weight",
            pre + "predictor.embed.weight"} <= decayed


def test_a_recipe_can_choose_the_rule():
    fw = _latentmim()
    assert "decoder.embed.weight" in _decayed(fw, no_decay=no_decay_biases_and_1d)
    assert "decoder.mask_token" not in _decayed(fw, no_decay=lambda n, p: "token" in n or p.ndim <= 1)


def test_groups_cover_every_trainable_parameter_once():
    fw = _latentmim()
    grouped = [p for g in param_groups(fw) for p in g["params"]]
    assert len(grouped) == len({id(p) for p in grouped}) == len(_trainable(fw))


def test_fused_adamw_where_the_device_has_fused_kernels():
    from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

    assert adamw_impl("cuda") == {"fused": True}
    assert adamw_impl(torch.device("cuda", 0)) == {"fused": True}
    assert adamw_impl("meta") == {"foreach": True}
    cpu = adamw_impl("cpu")
    assert cpu == ({"fused": True} if "cpu" in _get_fused_kernels_supported_devices() else {"foreach": True})
    opt = build_adamw(_ijepa())
    assert bool(opt.defaults.get("fused")) == ("fused" in cpu)
    assert bool(opt.defaults.get("foreach")) == ("foreach" in cpu)


def test_wd_applies_to_the_decay_group_only():
    fw = _latentmim()
    opt = build_adamw(fw)
    apply_schedules(opt, 1e-3, 0.05)
    wd = {g["name"]: (g["lr"], g["weight_decay"]) for g in opt.param_groups}
    assert wd == {"decay": (1e-3, 0.05), "no_decay": (1e-3, 0.0)}
    # decay alone moves a decayed weight with a zero gradient by lr * wd; an undecayed one stays
    for p in fw.parameters():
        if p.requires_grad:
            p.grad = torch.zeros_like(p)
    tok, emb = fw.decoder.mask_token, fw.decoder.embed.weight
    with torch.no_grad():
        tok.fill_(1.0)
    before_emb = emb.detach().clone()
    opt.step()
    assert torch.allclose(tok, torch.full_like(tok, 1.0 - 1e-3 * 0.05))
    assert torch.equal(emb, before_emb)
