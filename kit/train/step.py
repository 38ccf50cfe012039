"""One optimisation step, and the seeds that make every step reproducible.

A step is::

    batch -> framework(batch, ctx) -> loss -> backward -> (grad clip) -> AdamW step -> EMA update

with the learning rate, weight decay and EMA momentum read off pure step schedules and every random
draw (patch masks, drop-path) seeded from ``(seed, step, rank)``. :func:`train_step` is the one place
that knows how a step is made: gradient accumulation and compilation belong here.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from kit.frameworks.context import StepContext
from kit.train import distributed as distr
from kit.train.optim import apply_schedules
from kit.train.state import Run

GLOBAL = 2**31  # the "rank" of draws shared by all ranks (patch masks of the global batch)


def step_seed(seed: int, step: int, rank: int) -> int:
    """A 63-bit seed that depends only on ``(seed, step, rank)``."""
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(2, dtype=np.uint64)[0] >> np.uint64(1))


@dataclass
class StepResult:
    """What one step produced.

    Attributes:
        loss: scalar loss tensor (detached).
        logs: the framework's logs (floats or 0-d tensors), this rank's values.
        grad_norm: total gradient norm before clipping (0-d tensor).
        finite: loss and gradient norm were finite on every rank (else the update was skipped).
        lr, wd, momentum: the schedule values this step used.
    """

    loss: torch.Tensor
    logs: dict
    grad_norm: torch.Tensor
    finite: bool
    lr: float
    wd: float
    momentum: float


def next_batch(run: Run) -> dict:
    """This rank's next batch on the training device (the data object finishes it there when it can)."""
    raw = next(run.batches)
    if hasattr(run.data, "to_device"):
        return run.data.to_device(raw, run.info.device)
    return {k: (v.to(run.info.device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in raw.items()}


def step_context(run: Run, step: int) -> StepContext:
    """Seed this step's draws and describe it to the framework.

    Patch masks come from one generator for the global batch, the same on every rank (each rank keeps
    its rows); drop-path and other module randomness from the per-rank torch seed.
    """
    gen = torch.Generator().manual_seed(step_seed(run.cfg.seed, step, GLOBAL))
    torch.manual_seed(step_seed(run.cfg.seed, step, run.info.rank))
    local = run.local_batch
    rows = slice(run.info.rank * local, (run.info.rank + 1) * local)
    return StepContext(step=step, generator=gen, global_batch=run.cfg.batch_size, rows=rows)


def train_step(run: Run, step: int) -> StepResult:
    """Run step ``step``: fetch, forward, backward, clip, update, EMA.

    A step whose loss or gradient norm is non-finite on any rank changes nothing (no optimizer step, EMA
    untouched); the caller counts such steps.
    """
    model, optimizer, horizon = run.model, run.optimizer, run.horizon
    batch = next_batch(run)
    lr_now = run.cfg.lr(step, horizon) * run.lr_scale
    wd_now = run.weight_decay(step, horizon)
    apply_schedules(optimizer, lr_now, wd_now)
    ctx = step_context(run, step)
    with torch.autocast(device_type=run.info.device.type, dtype=torch.bfloat16, enabled=run.use_bf16):
        out = run.ddp_model(batch, ctx)
    out.loss.backward()
    clip = run.cfg.grad_clip if run.cfg.grad_clip else float("inf")
    grad_norm = torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], clip)
    loss = out.loss.detach()
    finite = bool(torch.isfinite(loss) and torch.isfinite(grad_norm))
    finite = not distr.broadcast_flag(not finite, run.info)
    momentum = model.momentum(step, horizon)
    if finite:
        optimizer.step()
        model.ema_update(momentum)
    optimizer.zero_grad(set_to_none=True)
    return StepResult(loss=loss, logs=out.logs, grad_norm=grad_norm, finite=finite, lr=lr_now, wd=wd_now,
                      momentum=momentum)
