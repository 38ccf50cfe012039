"""gin/presets/as_released.gin: each host trains a few steps, and the logged lr, momentum and weight decay
follow the released schedules step by step (written from the released code's formulas, not the kit's)."""
import math

import gin
import pytest

from crossscale_kit.train.config import parse
from tests.kit.train.helpers import TINY, losses, run

AS_RELEASED = "gin/presets/as_released.gin"
# 24 pairs, 4 per micro-batch, 2 micro-batches per window: 3 windows per epoch, nothing dropped; 10 epochs
EPOCHS, PAIRS, BATCH, ACCUM = 10, 24, 4, 2
IPE = PAIRS // BATCH  # iterations (micro-batches) per epoch, as the released loaders count them
STEPS = 6
BIND = [f"train.total_steps = None", f"train.epochs = {EPOCHS}", f"SyntheticScenes.num_pairs = {PAIRS}",
        f"train.batch_size = {BATCH}", f"train.accum_steps = {ACCUM}"]


def latentmim_released(k: int) -> tuple[float, float, float]:
    """LatentMIM's loop: the lr is set at the first micro-iteration ``it`` of each window from the epoch
    fraction ``it / ipe`` (MAE's ``adjust_learning_rate`` with the warm-up starting at 0.25 x lr and the
    cosine ending at 0.25 x lr); lr = blr x effective batch / 256; wd 0.05; momentum cosine 0.99 -> 1 over
    the optimizer steps, applied at the window's start."""
    blr, warm, epochs = 1e-3, 0.1 * EPOCHS, EPOCHS  # the tiny preset's peak; 30 of 300 epochs = 10 %
    lr = blr * BATCH * ACCUM / 256
    epoch = k * ACCUM / IPE
    if epoch < warm:
        value = 0.25 * lr + (lr - 0.25 * lr) * epoch / warm
    else:
        value = 0.25 * lr + (lr - 0.25 * lr) * 0.5 * (1 + math.cos(math.pi * (epoch - warm) / (epochs - warm)))
    total = EPOCHS * IPE // ACCUM
    momentum = 1 - (1 - 0.99) * (math.cos(math.pi * k / total) + 1) / 2
    return value, momentum, 0.05


def ijepa_released(k: int) -> tuple[float, float, float]:
    """I-JEPA's ``WarmupCosineSchedule`` / ``CosineWDSchedule`` (stepped before use: ``_step = k + 1``,
    warm-up 40 % of the epochs, ``T_max = epochs x ipe``) and its momentum generator
    ``0.996 + i (1 - 0.996) / (ipe x epochs)`` read after step ``k`` (``i = k``)."""
    ipe = IPE // ACCUM  # the kit's windows play the released loader's iterations
    t_max, warm = EPOCHS * ipe, 0.4 * EPOCHS * ipe
    s = k + 1
    if s < warm:
        lr = 2e-4 + s / warm * (1e-3 - 2e-4)
    else:
        progress = (s - warm) / max(1, t_max - warm)
        lr = max(1e-6, 1e-6 + (1e-3 - 1e-6) * 0.5 * (1 + math.cos(math.pi * progress)))
    wd = 0.4 + (0.04 - 0.4) * 0.5 * (1 + math.cos(math.pi * s / t_max))
    momentum = 0.996 + k * (1.0 - 0.996) / (ipe * EPOCHS)
    return lr, momentum, min(0.4, wd)


@pytest.mark.parametrize("recipe, released, extra", [
    ("gin/latentmim_sa.gin", latentmim_released, ["train.lr_batch_ref = 256"]),
    ("gin/ijepa_sa.gin", ijepa_released, []),
])
def test_as_released_run_follows_the_released_schedules(tmp_path, recipe, released, extra):
    run(recipe, tmp_path, bindings=BIND + extra, max_steps=STEPS, preset=None, files_after=[AS_RELEASED, TINY])
    rows = losses(tmp_path)
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    for r in rows:
        lr, momentum, wd = released(r["step"] - 1)
        assert r["lr"] == pytest.approx(lr, rel=1e-12, abs=1e-15), r["step"]
        assert r["momentum"] == pytest.approx(momentum, rel=1e-12), r["step"]
        assert r["wd"] == pytest.approx(wd, rel=1e-12), r["step"]
        assert math.isfinite(r["loss/total"])


def _q(name):
    """A bound value, with a macro (``%RELEASED_...``) resolved."""
    value = gin.query_parameter(name)
    return value.scoped_configurable_fn() if hasattr(value, "scoped_configurable_fn") else value


def test_as_released_binds_each_host_its_released_values():
    parse(["gin/latentmim_sa.gin", AS_RELEASED], [])
    assert _q("ViTEncoder.stretch_positions") is True
    assert _q("train.ema_timing") == "window_start"
    assert _q("train.precision") == "fp16"
    assert _q("GramLoss.precision") == "autocast"
    assert tuple(_q("PairedRandomResizedCrop.scale")) == (0.2, 1.0)
    assert _q("PairedRandomResizedCrop.mr_resize") == "bilinear"
    assert _q("PairedRandomResizedCrop.box_on") == "hr"
    parse(["gin/ijepa_sa.gin", AS_RELEASED], [])
    assert _q("ViTEncoder.stretch_positions") is False
    assert _q("train.ema_timing") == "after_step"
    assert _q("train.precision") == "bf16"
    assert tuple(_q("PairedRandomResizedCrop.scale")) == (0.3, 1.0)
    assert _q("PairedRandomResizedCrop.mr_resize") == "nearest"
    # without the preset nothing of it is bound: the kit's defaults
    parse(["gin/latentmim_sa.gin"], [])
    with pytest.raises(ValueError):
        gin.query_parameter("train.ema_timing")
