import math

import pytest
import torch
from torch import nn

from kit.ema import Cosine, Linear, WarmupCosine, ema_update, make_ema


def test_schedules_are_pure_functions_of_the_step():
    s = WarmupCosine(peak=1.0, final_ratio=0.25, warmup_steps=10, warmup_start=0.0)
    assert s(0, 100) == 0.0 and s(5, 100) == 0.5 and s(10, 100) == 1.0
    assert math.isclose(s(100, 100), 0.25) and math.isclose(s(55, 100), 0.625)
    assert [s(k, 100) for k in range(100)] == [s(k, 100) for k in range(100)]
    assert Cosine(0.99, 1.0)(0, 10) == 0.99 and math.isclose(Cosine(0.99, 1.0)(10, 10), 1.0)
    assert math.isclose(Cosine(0.04, 0.4)(5, 10), 0.22)
    assert math.isclose(Linear(0.996, 1.0)(50, 100), 0.998)


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
