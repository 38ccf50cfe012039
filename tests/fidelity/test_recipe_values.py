"""The paper recipes carry the authors' released values (docs/FIDELITY.md)."""
import math

import gin
import pytest

from crossscale_kit.train.config import parse


@pytest.fixture(autouse=True)
def _clear_gin():
    yield
    gin.clear_config()


def q(name, default=None):
    try:
        return gin.query_parameter(name)
    except ValueError:
        return default


def latentmim_lr(step_fraction: float) -> float:
    """The learning rate the loop applies at a fraction of the run, from the recipe's bindings."""
    peak = q("lr/WarmupCosine.peak")
    scale = q("train.batch_size") * q("train.accum_steps", 1) / q("train.lr_batch_ref")
    start = q("lr/WarmupCosine.warmup_start_ratio") * peak
    final = q("lr/WarmupCosine.final_ratio") * peak
    w = q("lr/WarmupCosine.warmup_fraction")
    if step_fraction <= w:
        value = start + (peak - start) * step_fraction / w
    else:
        value = final + (peak - final) * 0.5 * (1 + math.cos(math.pi * (step_fraction - w) / (1 - w)))
    return value * scale


@pytest.mark.parametrize("recipe", ["gin/latentmim_sa.gin", "gin/latentmim_mr.gin", "gin/latentmim_hr.gin"])
def test_latentmim_model_bindings(recipe):
    parse([recipe])
    assert q("ViTEncoder.class_token") is True and q("ViTEncoder.init") == "latentmim"
    assert q("ProjectionHead.hidden_norm") is True and q("ProjectionHead.bias") is False
    assert q("ProjectionHead.hidden_dim") == 4096 and q("ProjectionHead.num_layers") == 3
    assert q("CrossAttentionDecoder.class_token") is True and q("CrossAttentionDecoder.stretch_positions") is True
    assert q("PatchInfoNCE.eps") == 1e-4 and q("PatchInfoNCE.tau") == 0.2
    assert q("momentum/Cosine.start") == 0.99 and q("momentum/Cosine.end") == 1.0
    assert q("train.epochs") == 300 and q("lr/WarmupCosine.warmup_fraction") == pytest.approx(30 / 300)


def test_latentmim_peak_lr_3e_4_from_4_x_128_and_warmup_from_a_quarter():
    parse(["gin/latentmim_sa.gin"])
    assert q("train.batch_size") == 128 and q("train.accum_steps") == 4 and q("train.lr_batch_ref") == 256
    assert latentmim_lr(0.1) == pytest.approx(3e-4)  # 1.5e-4 x 512 / 256
    assert latentmim_lr(0.0) == pytest.approx(7.5e-5)  # warm-up starts at 0.25 x peak
    assert latentmim_lr(1.0) == pytest.approx(7.5e-5)  # cosine to 0.25 x peak


@pytest.mark.parametrize("recipe", ["gin/ijepa_sa.gin", "gin/ijepa_mr.gin"])
def test_ijepa_config_100_epochs_warmup_40(recipe):
    parse([recipe])
    assert q("train.epochs") == 100 and q("lr/WarmupCosine.warmup_fraction") == pytest.approx(40 / 100)
    assert q("ViTEncoder.init") == "ijepa" and q("ViTEncoder.class_token", False) is False
    assert q("IJEPAPredictor.norm_eps") == 1e-6
    assert q("lr/WarmupCosine.peak") == 1e-3 and q("lr/WarmupCosine.warmup_start") == 2e-4


def test_block_ablation_uses_the_authors_draw():
    parse(["gin/ablations/latentmim_sa_block.gin"])
    assert q("sa/BlockSampler.draw") == "area" and q("sa/BlockSampler.side") == (0.4, 0.7)
