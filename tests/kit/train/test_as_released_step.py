"""Issue 22's step options: EMA timing as released (window start) and fp16 with a gradient scaler."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from crossscale_kit.ema.ema import make_ema
from crossscale_kit.frameworks import Framework, HostOutput
from crossscale_kit.frameworks.context import StepContext
from crossscale_kit.train.step import TrainStep

MOMENTA = [0.5, 0.7, 0.9, 0.95]


class _Toy(Framework):
    """A linear 'framework' whose loss depends on its EMA target (so the EMA timing changes the gradients)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Linear(8, 4)
        self.target = make_ema(self.net)

    def forward(self, batch, ctx=None):
        return HostOutput(loss=((self.net(batch["mr"]) - 2 * self.target(batch["mr"]).tanh()) ** 2).mean())

    def ema_pairs(self):
        return [(self.net, self.target)]

    def momentum(self, step, total_steps):
        return MOMENTA[step]

    @property
    def student_encoder(self):
        return self.net


def _micro(k: int, n: int = 2):
    return [({"mr": torch.randn(3, 8, generator=torch.Generator().manual_seed(10 * k + i))}, StepContext())
            for i in range(n)]


def _released_loop(net: nn.Linear, steps: int, lr: float, accum: int = 2):
    """The released LatentMIM loop as its code reads: at the start of window k the target is updated with
    momentum(k), then the window's micro-batches are forwarded and back-propagated (loss / accum), then SGD."""
    net = copy.deepcopy(net)
    target = copy.deepcopy(net)
    for k in range(steps):
        m = MOMENTA[k]
        with torch.no_grad():
            for p, q in zip(net.parameters(), target.parameters()):
                q.mul_(m).add_(p, alpha=1 - m)
        for batch, _ in _micro(k, accum):
            x = batch["mr"]
            loss = ((net(x) - 2 * target(x).tanh()) ** 2).mean() / accum
            loss.backward()
        with torch.no_grad():
            for p in net.parameters():
                p.sub_(lr * p.grad)
                p.grad = None
    return net, target


@pytest.mark.parametrize("timing", ["window_start", "after_step"])
def test_window_start_ema_is_the_released_order(timing):
    torch.manual_seed(0)
    fw = _Toy()
    ref_net, ref_target = _released_loop(fw.net, 3, lr=0.1)
    opt = torch.optim.SGD(fw.parameters(), lr=0.1)
    step = TrainStep(fw, opt, accum_steps=2, ema_timing=timing)
    for k in range(3):
        step(_micro(k), lr=0.1, weight_decay=0.0, momentum=MOMENTA[k])
    same = all(torch.allclose(a, b, atol=1e-6) for a, b in
               zip([*fw.net.parameters(), *fw.target.parameters()], [*ref_net.parameters(), *ref_target.parameters()]))
    assert same == (timing == "window_start")  # the kit's default order is a different (documented) trajectory


def test_ema_timing_is_validated():
    fw = _Toy()
    with pytest.raises(ValueError, match="ema_timing"):
        TrainStep(fw, torch.optim.SGD(fw.parameters(), lr=0.1), ema_timing="before")


def test_fp16_scaler_with_accumulation_equals_the_unscaled_step_and_backs_off_on_inf():
    torch.manual_seed(0)
    a = _Toy()
    b = copy.deepcopy(a)
    plain = TrainStep(a, torch.optim.SGD(a.parameters(), lr=0.1), accum_steps=2)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 12)
    scaled = TrainStep(b, torch.optim.SGD(b.parameters(), lr=0.1), accum_steps=2, scaler=scaler)
    for k in range(2):
        ra = plain(_micro(k), lr=0.1, weight_decay=0.0, momentum=0.5)
        rb = scaled(_micro(k), lr=0.1, weight_decay=0.0, momentum=0.5)
        torch.testing.assert_close(rb.loss, ra.loss)  # the logged loss is the true loss, not the scaled one
    for p, q in zip(a.parameters(), b.parameters()):  # a power-of-two scale is exact in fp32
        torch.testing.assert_close(q, p, atol=1e-7, rtol=1e-6)
    assert scaler.get_scale() == 2.0 ** 12  # GradScaler: grows only after growth_interval (2000) good steps
    before = copy.deepcopy(b.state_dict())
    hook = b.net.weight.register_hook(lambda g: torch.full_like(g, float("inf")))
    out = scaled(_micro(5), lr=0.1, weight_decay=0.0, momentum=0.5)
    hook.remove()
    assert float(out.found_inf) == 1.0
    for k, v in b.state_dict().items():  # skipped: weights and EMA untouched
        assert torch.equal(v, before[k]), k
    assert scaler.get_scale() == 2.0 ** 11  # backoff_factor 0.5
    assert scaled.guard.read() == (1, 1, 1)  # the non-finite guard counts it like any skipped step


def test_fp16_run_checkpoints_the_scaler_and_resumes_exactly(tmp_path):
    from tests.kit.train.helpers import assert_same_weights, final_state, losses, run

    recipe, bind = "gin/latentmim_sa.gin", ["train.precision = 'fp16'", "train.ema_timing = 'window_start'"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    run(recipe, straight, bindings=bind, max_steps=4)
    run(recipe, split, bindings=bind, max_steps=2)
    run(recipe, split, bindings=bind, max_steps=2, resume=True)
    a, b = losses(straight), losses(split)
    assert [r["loss/total"] for r in a] == [r["loss/total"] for r in b]
    sa, sb = final_state(straight), final_state(split)
    assert sa["scaler"]["scale"] == sb["scaler"]["scale"] == 2.0 ** 16  # GradScaler's initial scale, no inf seen
    assert "_growth_tracker" in sa["scaler"] and sa["scaler"]["_growth_tracker"] == 4  # 4 good steps counted
    assert_same_weights(sa["model"], sb["model"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 autocast with fused AdamW: CUDA only")
def test_fp16_on_cuda_with_fused_adamw_steps_and_skips_on_the_device():
    from crossscale_kit.train.optim import build_adamw

    torch.manual_seed(0)
    fw = _Toy().cuda()
    scaler = torch.amp.GradScaler("cuda", init_scale=2.0 ** 10)
    step = TrainStep(fw, build_adamw(fw), accum_steps=2, autocast_dtype=torch.float16, scaler=scaler)
    micro = [({"mr": b["mr"].cuda()}, c) for b, c in _micro(0)]
    before = copy.deepcopy(fw.state_dict())
    out = step(micro, lr=1e-2, weight_decay=0.0, momentum=0.5)
    assert float(out.found_inf) == 0.0 and not torch.equal(fw.net.weight, before["net.weight"])
    before = copy.deepcopy(fw.state_dict())
    hook = fw.net.weight.register_hook(lambda g: torch.full_like(g, float("inf")))
    out = step(micro, lr=1e-2, weight_decay=0.0, momentum=0.5)
    hook.remove()
    assert float(out.found_inf) == 1.0 and scaler.get_scale() == 2.0 ** 9
    for k, v in fw.state_dict().items():
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("timing", ["window_start", "after_step"])
def test_an_fp16_step_reads_nothing_on_the_host(timing):
    from crossscale_kit.train.optim import build_adamw
    from tests.kit.train.test_step import _Reads

    torch.manual_seed(0)
    fw = _Toy()
    scaler = torch.amp.GradScaler("cpu")
    step = TrainStep(fw, build_adamw(fw), accum_steps=2, scaler=scaler, ema_timing=timing)
    step(_micro(0), lr=1e-2, weight_decay=0.1, momentum=0.5)  # the scaler makes its state lazily
    reads = _Reads()
    with reads:
        for k in range(1, 3):
            step(_micro(k), lr=1e-2, weight_decay=0.1, momentum=MOMENTA[k])
    assert reads.n == 0


def test_precision_and_ema_timing_are_checked_before_step_1():
    from crossscale_kit.train.preflight import check_settings
    from crossscale_kit.train.state import TrainConfig

    ok = TrainConfig(lr=lambda s, t: 1e-3, precision="fp16", ema_timing="window_start")
    assert not [p for p in check_settings(ok, world_size=1, max_steps=None) if "precision" in p or "ema" in p]
    bad = TrainConfig(lr=lambda s, t: 1e-3, precision="fp8", ema_timing="before")
    problems = " ".join(check_settings(bad, world_size=1, max_steps=None))
    assert "'bf16', 'fp16' or 'fp32'" in problems and "train.ema_timing" in problems
