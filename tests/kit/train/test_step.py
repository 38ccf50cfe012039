"""The optimizer step: accumulation, the on-device finite guard, no host reads, compile."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from crossscale_kit.ema.ema import make_ema
from crossscale_kit.encoders import ProjectionHead, ViTEncoder
from crossscale_kit.frameworks import Framework, HostOutput, LatentMIM, SpatialAffinity
from crossscale_kit.frameworks.context import StepContext
from crossscale_kit.predictors import CrossAttentionDecoder
from crossscale_kit.samplers import RandomSplit
from crossscale_kit.train.optim import build_adamw
from crossscale_kit.train.compile import compile_framework
from crossscale_kit.train.seeds import micro_context, step_seed
from crossscale_kit.train.step import NonFiniteGuard, TrainStep


def _sa_latentmim():
    torch.manual_seed(0)
    enc = ViTEncoder(arch="vit_tiny", patch_size=8, img_size=32, embed_dim=32, depth=1, num_heads=2)
    host = LatentMIM(encoder=enc, head=ProjectionHead(32, 32),
                     decoder=CrossAttentionDecoder(32, width=32, depth=1, num_heads=2), sampler=RandomSplit(4))
    return SpatialAffinity(host=host)


def _batch(n: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"mr": torch.randn(n, 4, 32, 32, generator=g), "hr": torch.randn(n, 4, 64, 64, generator=g)}


def _ctx(step: int, rows: slice, total: int) -> StepContext:
    return StepContext(step=step, generator=torch.Generator().manual_seed(100 + step), rows=rows, global_batch=total)


def _params(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _sgd(model):
    from crossscale_kit.train.optim import param_groups

    return torch.optim.SGD(param_groups(model), lr=0.0, fused=True)


@pytest.mark.parametrize("optim, atol", [(_sgd, 1e-7), (lambda m: build_adamw(m, eps=1e-4), 1e-6)])
def test_two_by_two_micro_batches_equal_one_by_four(optim, atol):
    """Same weights and EMA after 3 optimizer steps. Adam divides by the gradient's running RMS, so on
    parameters whose true gradient is zero (biases the loss is invariant to: the InfoNCE standardises its
    predictions) it turns fp32 rounding noise into steps of ~lr; an eps of 1e-4 keeps that noise below
    1e-7 while real gradients (1e-3 and up) are still normalised. SGD pins the accumulation itself."""
    a, b = _sa_latentmim(), _sa_latentmim()
    one = TrainStep(a, optim(a), accum_steps=1)
    two = TrainStep(b, optim(b), accum_steps=2)
    for step in range(3):
        x = _batch(4, seed=step)
        kw = dict(lr=1e-3, weight_decay=0.05, momentum=0.9)
        out1 = one([(x, _ctx(step, slice(0, 4), 4))], **kw)
        halves = [({k: v[r] for k, v in x.items()}, _ctx(step, r, 4)) for r in (slice(0, 2), slice(2, 4))]
        out2 = two(halves, **kw)
        assert torch.allclose(out1.loss, out2.loss, rtol=1e-5, atol=1e-6)
    pa, pb, p0 = _params(a), _params(b), _params(_sa_latentmim())
    assert pa.keys() == pb.keys()
    for k in pa:  # online weights, EMA target/teacher (one update per optimizer step) alike
        assert torch.allclose(pa[k], pb[k], rtol=1e-5, atol=atol), (k, (pa[k] - pb[k]).abs().max())
    assert not torch.equal(pa["host.target_encoder.vit.blocks.0.mlp.fc1.weight"],
                           p0["host.target_encoder.vit.blocks.0.mlp.fc1.weight"])


def test_accumulation_is_not_two_optimizer_steps():
    a, b = _sa_latentmim(), _sa_latentmim()
    x = _batch(4)
    TrainStep(a, build_adamw(a), accum_steps=2)(
        [({k: v[:2] for k, v in x.items()}, _ctx(0, slice(0, 2), 4)),
         ({k: v[2:] for k, v in x.items()}, _ctx(0, slice(2, 4), 4))], lr=1e-3, weight_decay=0.0, momentum=0.9)
    single = TrainStep(b, build_adamw(b))
    for r in (slice(0, 2), slice(2, 4)):
        single([({k: v[r] for k, v in x.items()}, _ctx(0, r, 4))], lr=1e-3, weight_decay=0.0, momentum=0.9)
    w = "host.decoder.embed.weight"
    assert not torch.allclose(_params(a)[w], _params(b)[w])


def test_wrong_number_of_micro_batches_is_refused():
    fw = _sa_latentmim()
    step = TrainStep(fw, build_adamw(fw), accum_steps=2)
    with pytest.raises(ValueError, match="accum_steps=2"):
        step([(_batch(2), _ctx(0, slice(0, 2), 2))], lr=1e-3, weight_decay=0.0, momentum=0.9)
    with pytest.raises(ValueError, match="accum_steps"):
        TrainStep(fw, build_adamw(fw), accum_steps=0)


class _Toy(Framework):
    """A linear 'framework' whose forward reads nothing on the host."""

    def __init__(self):
        super().__init__()
        self.net = nn.Linear(8, 4)
        self.target = make_ema(self.net)

    def forward(self, batch, ctx=None):
        return HostOutput(loss=((self.net(batch["mr"]) - self.target(batch["mr"])) ** 2).mean() + self.net.weight.sum())

    def ema_pairs(self):
        return [(self.net, self.target)]

    def momentum(self, step, total_steps):
        return 0.5

    @property
    def student_encoder(self):
        return self.net


class _Reads(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket in (torch.ops.aten._local_scalar_dense, torch.ops.aten.nonzero, torch.ops.aten.equal):
            self.n += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("clip", [None, 1.0])
def test_a_step_reads_nothing_on_the_host(clip):
    torch.manual_seed(0)
    fw = _Toy()
    step = TrainStep(fw, build_adamw(fw), accum_steps=2, grad_clip=clip)
    assert step.fused  # fused AdamW on this device takes the skip flag on the device
    x = {"mr": torch.randn(3, 8)}
    reads = _Reads()
    with reads:
        for k in range(3):
            out = step([(x, StepContext()), (x, StepContext())], lr=1e-2, weight_decay=0.1, momentum=0.5)
    assert reads.n == 0
    assert (out.grad_norm is None) == (clip is None)


def _snapshot(fw, opt):
    return _params(fw), copy.deepcopy(opt.state_dict()["state"])


@pytest.mark.parametrize("clip", [None, 10.0])
@pytest.mark.parametrize("where", ["input", "grad"])
def test_non_finite_step_is_skipped_on_the_device(clip, where):
    torch.manual_seed(0)
    fw = _Toy()
    opt = build_adamw(fw)
    step = TrainStep(fw, opt, grad_clip=clip)
    good = {"mr": torch.randn(3, 8)}
    kw = dict(lr=1e-2, weight_decay=0.1, momentum=0.5)
    step([(good, StepContext())], **kw)
    before = _snapshot(fw, opt)
    if where == "input":
        bad = {"mr": torch.full((3, 8), float("nan"))}
    else:  # finite loss, infinite gradient
        bad = good
        fw.net.weight.register_hook(lambda g: torch.full_like(g, float("inf")))
    out = step([(bad, StepContext())], **kw)
    assert float(out.found_inf) == 1.0
    after = _snapshot(fw, opt)
    for k in before[0]:  # weights and EMA untouched
        assert torch.equal(before[0][k], after[0][k]), k
    for i in before[1]:  # AdamW moments and step count untouched
        for k in before[1][i]:
            assert torch.equal(before[1][i][k], after[1][i][k]), (i, k)
    assert step.guard.read() == (1, 1, 1)


def test_guard_counts_consecutive_runs_between_reads():
    g = NonFiniteGuard(torch.device("cpu"))
    for f in [1, 1, 0, 1, 1, 1]:
        g.update(torch.tensor(float(f)))
    assert g.read() == (3, 3, 5)
    g.update(torch.tensor(1.0))  # the run spans the read and keeps counting
    assert g.read() == (4, 4, 1)
    for f in [0, 1, 0]:
        g.update(torch.tensor(float(f)))
    assert g.read() == (0, 4, 1)  # the run of 4 touched this interval too (it ended in it)
    for f in [0, 1, 0]:
        g.update(torch.tensor(float(f)))
    assert g.read() == (0, 1, 1)


def test_micro_batch_masks_differ_and_are_rank_consistent():
    seed, step = 3, 7
    draws = {}
    for micro in (0, 1):
        for rank in (0, 1):
            ctx = micro_context(seed, step, micro, rank=rank, local_batch=2, world_size=2)
            assert ctx.rows == slice(2 * rank, 2 * rank + 2) and ctx.global_batch == 4
            draws[micro, rank] = torch.rand(4, generator=ctx.generator)
    assert torch.equal(draws[0, 0], draws[0, 1]) and torch.equal(draws[1, 0], draws[1, 1])
    assert not torch.equal(draws[0, 0], draws[1, 0])
    # micro-batch 0 draws what a step without accumulation drew before
    assert step_seed(seed, step, 5) == step_seed(seed, step, 5, 0) != step_seed(seed, step, 5, 1)


def test_compile_framework_keeps_names_and_skips_frameworks():
    fw = _sa_latentmim()
    keys = list(fw.state_dict())
    names = compile_framework(fw, backend="eager")
    assert list(fw.state_dict()) == keys
    assert "host.encoder" in names and "host.decoder" in names and "gram" in names
    assert "host.target_encoder" in names and "host" not in names  # the add-on's forward stays eager
    assert not hasattr(fw.host, "_compiled_call_impl") or fw.host._compiled_call_impl is None
    assert fw.host.encoder._compiled_call_impl is not None


def test_gram_loss_compiles_without_a_graph_break():
    from crossscale_kit.losses.gram import GramLoss

    s = torch.randn(2, 6, 16, requires_grad=True)
    t = torch.randn(2, 6, 16)
    explained = torch._dynamo.explain(GramLoss())(s, t)
    assert explained.graph_break_count == 0, [b.reason for b in explained.break_reasons]
