"""The numbers the papers state, read back from the parsed recipes (dopamine's gin_config_test habit).

Each recipe of the paper's Tables I-IV (gin/README.md) is parsed as ``tools/train.py`` parses it and
every value the paper (or the released code it follows, /work/shared/reference/FACTS.md "As the
released code runs it") states is read back with ``gin.query_parameter``. One value per line: a recipe
change that moves a paper number must change this file too, in the same commit, with its reason.
"""
from __future__ import annotations

import gin
import pytest
from gin.config import ConfigurableReference

from crossscale_kit.train.config import parse

# -- the hosts as the paper runs them --------------------------------------------------------------
VIT_S = [
    ("ViTEncoder.arch", "vit_small"),
    ("EMBED_DIM", 384),
    ("IMG_SIZE", 224),
    ("ViTEncoder.in_chans", 4),
]
IJEPA = VIT_S + [
    ("PATCH_SIZE", 14),                            # ViT-S/14: a 16 x 16 grid on 224 px
    ("PRED_DEPTH", 12),
    ("PRED_WIDTH", 384),
    ("PRED_HEADS", 6),
    ("ijepa/MultiBlock.num_targets", 4),
    ("ijepa/MultiBlock.target_scale", (0.15, 0.2)),
    ("ijepa/MultiBlock.target_aspect", (0.75, 1.5)),
    ("ijepa/MultiBlock.context_scale", (0.85, 1.0)),
    ("ijepa/MultiBlock.context_aspect", (1.0, 1.0)),
    ("ijepa/MultiBlock.min_keep", 10),
    ("SmoothL1Latent.beta", 1.0),
    ("train.batch_size", 64),
    ("train.epochs", 100),                         # the authors' I-JEPA config (the paper's text: 300)
    ("lr/WarmupCosine.warmup_fraction", 0.4),      # warm-up 40 of those 100 epochs
    ("lr/WarmupCosine.peak", 1e-3),
    ("lr/WarmupCosine.warmup_start", 2e-4),
    ("lr/WarmupCosine.final", 1e-6),
    ("train.lr_batch_ref", None),
    ("wd/Cosine.start", 0.04),
    ("wd/Cosine.end", 0.4),
    ("train.betas", (0.9, 0.999)),
    ("IJEPA.ema_momentum", "@momentum/Linear"),
    ("momentum/Linear.start", 0.996),
    ("momentum/Linear.end", 1.0),
]
LATENTMIM = VIT_S + [
    ("PATCH_SIZE", 16),                            # ViT-S/16: a 14 x 14 grid on 224 px
    ("latentmim/RandomSplit.num_visible", 20),     # 20 of 196 patches visible
    ("CrossAttentionDecoder.depth", 3),
    ("CrossAttentionDecoder.width", 512),
    ("CrossAttentionDecoder.num_heads", 16),
    ("ProjectionHead.hidden_dim", 4096),
    ("PatchInfoNCE.tau", 0.2),
    ("train.batch_size", 128),
    ("train.accum_steps", 4),                      # released: 4 x 128 per optimizer step
    ("train.epochs", 300),
    ("lr/WarmupCosine.peak", 1.5e-4),              # x effective batch / 256 = 3e-4
    ("lr/WarmupCosine.warmup_start_ratio", 0.25),  # released: warm-up from 0.25 x peak
    ("lr/WarmupCosine.warmup_fraction", 0.1),      # released: 30 of 300 epochs
    ("train.lr_batch_ref", 256),
    ("train.weight_decay", 0.05),
    ("train.betas", (0.9, 0.95)),
    ("LatentMIM.ema_momentum", "@momentum/Cosine"),
    ("momentum/Cosine.start", 0.99),
    ("momentum/Cosine.end", 1.0),
]
SA = [
    ("train.framework", "@SpatialAffinity"),
    ("SpatialAffinity.weight", 1.0),
    ("SpatialAffinity.teacher_full_image", False),
    ("SyntheticScenes.scale", 2),                  # s: HR = 2 x MR (Sen2Venus 10 m / 5 m)
    ("GramLoss.remove_neg", False),
]
BLOCK_MEAN = [("SpatialAffinity.downsampler", "@BlockMean")]  # the authors' "bilinear" 2x2 -> 1x1


def _host(name: str, view: str) -> list:
    return [("train.framework", f"@{name}"), (f"{name}.view", view)]


PAPER = {
    # Table I
    "gin/ijepa_mr.gin": IJEPA + _host("IJEPA", "mr"),
    "gin/ijepa_hr.gin": IJEPA + _host("IJEPA", "hr") + [("PairedRandomResizedCrop.hr_size", 224)],
    "gin/ijepa_sa.gin": IJEPA + SA + BLOCK_MEAN + [("SpatialAffinity.host", "@IJEPA"), ("IJEPA.view", "mr")],
    "gin/latentmim_mr.gin": LATENTMIM + _host("LatentMIM", "mr"),
    "gin/latentmim_hr.gin": LATENTMIM + _host("LatentMIM", "hr"),
    "gin/latentmim_sa.gin": LATENTMIM + SA + BLOCK_MEAN + [("SpatialAffinity.host", "@LatentMIM"), ("LatentMIM.view", "mr")],
    # Table II
    "gin/ijepa_sa_falsehr.gin": IJEPA + SA + BLOCK_MEAN + [("PairedTiles.false_hr", "bicubic")],
    "gin/latentmim_sa_falsehr.gin": LATENTMIM + SA + BLOCK_MEAN + [("PairedTiles.false_hr", "bicubic")],
    # Table III
    "gin/ablations/ijepa_sa_bicubic.gin": IJEPA + SA + [
        ("SpatialAffinity.downsampler", "@BlockInterpolate"),
        ("BlockInterpolate.mode", "bicubic"),
    ],
    "gin/ablations/ijepa_sa_linear.gin": IJEPA + SA + [
        ("SpatialAffinity.downsampler", "@LinearProjection"),
        ("LinearProjection.dim", 384),
        ("LinearProjection.scale", 2),
    ],
    # Table IV
    "gin/ablations/latentmim_sa_block.gin": LATENTMIM + SA + BLOCK_MEAN + [
        ("SpatialAffinity.sampler", "@sa/BlockSampler"),
        ("sa/BlockSampler.side", (0.4, 0.7)),
        ("sa/BlockSampler.aspect", (0.5, 2.0)),
    ],
}

# Not a paper row: the kit's third host, at MAE's own numbers (He et al. 2022).
MAE = VIT_S + [
    ("PATCH_SIZE", 16),
    ("mae/RandomSplit.mask_ratio", 0.75),
    ("MAE_DEC_WIDTH", 512),
    ("MAE_DEC_DEPTH", 8),
    ("MAE_DEC_HEADS", 16),
    ("MaskedPixelMSE.norm_pix", True),
    ("lr/WarmupCosine.peak", 1.5e-4),
    ("train.lr_batch_ref", 256),
    ("train.weight_decay", 0.05),
    ("train.betas", (0.9, 0.95)),
    ("train.batch_size", 128),
]
OTHER = {
    "gin/mae_mr.gin": MAE + _host("MAE", "mr"),
    "gin/mae_hr.gin": MAE + _host("MAE", "hr"),
    "gin/mae_sa.gin": MAE + SA + BLOCK_MEAN + [("SpatialAffinity.host", "@MAE"), ("MAE.view", "mr")],
}


def value(key: str):
    """The bound value of ``key`` (``Configurable.param`` or a macro name), macros followed to their value;
    a reference ``@name()`` is returned as the string ``"@name"``."""
    v = gin.query_parameter(key if "." in key else f"{key}/macro.value")
    while isinstance(v, ConfigurableReference):
        if v.configurable.name != "macro":
            scope = v.scoped_selector.rsplit("/", 1)[0] + "/" if "/" in v.scoped_selector else ""
            return f"@{scope}{v.configurable.name}"
        v = gin.query_parameter(v.scoped_selector.rsplit("/", 1)[0] + "/macro.value")
    return v


@pytest.mark.parametrize("recipe", sorted({**PAPER, **OTHER}))
def test_recipe_states_the_papers_values(recipe):
    parse([recipe])
    expected = {**PAPER, **OTHER}[recipe]
    wrong = []
    for key, want in expected:
        got = value(key)
        same = got == pytest.approx(want) if isinstance(want, float) else got == want
        if not same:
            wrong.append(f"{key} = {got!r}, the paper states {want!r}")
    assert not wrong, f"{recipe}:\n  " + "\n  ".join(wrong)


def test_every_paper_recipe_of_the_readme_is_checked():
    from crossscale_kit.train.config import REPO_ROOT

    table = (REPO_ROOT / "gin" / "README.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| I")]
    named = {part.strip(" `") for line in rows for part in line.split("|") if part.strip().startswith("`gin/")}
    assert named - {"gin/ablations/ijepa_sa_gridbicubic.gin"} <= set(PAPER), named - set(PAPER)
    assert all((REPO_ROOT / r).is_file() for r in PAPER)
