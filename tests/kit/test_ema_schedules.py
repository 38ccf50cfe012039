import math

import pytest
import torch
from torch import nn

from crossscale_kit.ema import Cosine, Linear, WarmupCosine, ema_update, make_ema


def test_schedules_are_pure_functions_of_the_step():
    s = WarmupCosine(peak=1.0, final_ratio=0.25, warmup_steps=10, warmup_start=0.0)
    assert s(0, 100) == 0.0 and s(5, 100) == 0.5 and s(10, 100) == 1.0
    assert math.isclose(s(100, 100), 0.25) and math.isclose(s(55, 100), 0.625)
    assert [s(k, 100) for k in range(100)] == [s(k, 100) for k in range(100)]
    assert [s(k, 100) for k in range(50, 100)] == [WarmupCosine(1.0, final_ratio=0.25, warmup_steps=10)(k, 100)
                                                    for k in range(50, 100)]
    assert Cosine(0.99, 1.0)(0, 10) == 0.99 and math.isclose(Cosine(0.99, 1.0)(10, 10), 1.0)
    assert math.isclose(Cosine(0.04, 0.4)(5, 10), 0.22)
    assert math.isclose(Linear(0.996, 1.0)(50, 100), 0.998)


def _latentmim_released_lr(epoch: float, blr: float, eff_batch: int, warmup: float, epochs: float, min_frac: float):
    """The released LatentMIM formula, per (fractional) epoch: peak = blr x eff_batch / 256, warm-up from
    min_lr = min_frac x peak, then cosine to min_lr."""
    peak = blr * eff_batch / 256
    lo = peak * min_frac
    if epoch < warmup:
        return lo + (peak - lo) * epoch / warmup
    return lo + (peak - lo) * 0.5 * (1.0 + math.cos(math.pi * (epoch - warmup) / (epochs - warmup)))


def test_latentmim_paper_lr_peak_3e4_warmup_from_7_5e5():
    # 4 micro-batches of 128 per optimizer step: the loop scales by batch x accum / lr_batch_ref = 512 / 256
    steps_per_epoch, epochs = 7, 300
    total = steps_per_epoch * epochs
    sched = WarmupCosine(peak=1.5e-4, final_ratio=0.25, warmup_start_ratio=0.25, warmup_fraction=30 / 300)
    scale = 128 * 4 / 256
    assert math.isclose(sched(0, total) * scale, 7.5e-5, rel_tol=1e-12)
    assert math.isclose(sched(30 * steps_per_epoch, total) * scale, 3e-4, rel_tol=1e-12)
    assert math.isclose(sched(total, total) * scale, 7.5e-5, rel_tol=1e-12)
    for k in range(0, total, 13):
        ref = _latentmim_released_lr(k / steps_per_epoch, 1.5e-4, 512, 30, epochs, 0.25)
        assert math.isclose(sched(k, total) * scale, ref, rel_tol=1e-9, abs_tol=1e-15), k


def test_latentmim_momentum_cosine_per_optimizer_step():
    total = 1000
    m = Cosine(0.99, 1.0)
    for k in range(0, total + 1, 37):
        # released: m = 1 - 0.5 (1 + cos(pi t)) (1 - 0.99), t the fraction of the run done
        ref = 1.0 - 0.5 * (1.0 + math.cos(math.pi * k / total)) * (1.0 - 0.99)
        assert math.isclose(m(k, total), ref, rel_tol=1e-12)


class _SteppedBeforeUse:
    """I-JEPA's released schedulers: a counter incremented before each value is computed."""

    def __init__(self, warmup, start, peak, final, total):
        self.w, self.start, self.peak, self.final, self.t_max, self.n = warmup, start, peak, final, total - warmup, 0

    def step(self) -> float:
        self.n += 1
        if self.n < self.w:
            return self.start + self.n / max(1, self.w) * (self.peak - self.start)
        t = (self.n - self.w) / max(1, self.t_max)
        return max(self.final, self.final + (self.peak - self.final) * 0.5 * (1.0 + math.cos(math.pi * t)))


def test_ijepa_lr_and_wd_at_step_k_are_f_of_k_plus_1():
    total, warmup = 300, 40
    lr = WarmupCosine(peak=1e-3, warmup_start=2e-4, final=1e-6, warmup_steps=warmup, offset=1)
    wd = Cosine(0.04, 0.4, offset=1)
    ref_lr = _SteppedBeforeUse(warmup, 2e-4, 1e-3, 1e-6, total)
    for k in range(total):
        assert math.isclose(lr(k, total), ref_lr.step(), rel_tol=1e-12), k
        assert lr(k, total) == WarmupCosine(peak=1e-3, warmup_start=2e-4, final=1e-6, warmup_steps=warmup)(k + 1, total)
        # released CosineWDSchedule: _step += 1, then cosine of _step / T_max (clamped at final)
        ref_wd = min(0.4, 0.4 + (0.04 - 0.4) * 0.5 * (1.0 + math.cos(math.pi * (k + 1) / total)))
        assert math.isclose(wd(k, total), ref_wd, rel_tol=1e-12), k
    assert lr(0, total) > 2e-4 and wd(0, total) > 0.04  # already one step in at the first optimizer step


def test_ijepa_recipe_binds_the_offset():
    import gin

    from crossscale_kit.train.config import parse

    parse(["gin/ijepa_sa.gin"])
    try:
        assert gin.query_parameter("lr/WarmupCosine.offset") == 1
        assert gin.query_parameter("wd/Cosine.offset") == 1
    finally:
        gin.clear_config()


def test_schedule_offset_must_be_a_step_count():
    with pytest.raises(ValueError, match="offset"):
        Cosine(0.0, 1.0, offset=-1)
    with pytest.raises(ValueError, match="offset"):
        WarmupCosine(1.0, offset=0.5)


def test_ema_update_math_and_checks():
    torch.manual_seed(0)
    online = nn.Linear(3, 2)
    ema = make_ema(online)
    with torch.no_grad():
        online.weight.add_(1.0)
    old = ema.weight.clone()
    ema_update([(online, ema)], 0.9)
    assert torch.allclose(ema.weight, 0.9 * old + 0.1 * online.weight)
    ema_update([(online, ema)], 1.0)
    assert torch.allclose(ema.weight, 0.9 * old + 0.1 * online.weight)
    with pytest.raises(ValueError):
        ema_update([(online, ema)], 1.5)
    with pytest.raises(ValueError, match="different parameters"):
        ema_update([(online, nn.Linear(3, 2, bias=False))], 0.5)
