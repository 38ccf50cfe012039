"""One optimizer step (its seeds: :mod:`crossscale_kit.train.seeds`).

:class:`TrainStep` is the one place that knows how a step is made (the loop and
``benchmarks/train_step.py`` both run it)::

    ema_timing "window_start": EMA update with momentum(k) (released LatentMIM; else after the step)
    for each of the accum_steps micro-batches:            (DDP: gradients synced on the last one only)
        out = model(batch, ctx); (out.loss / accum_steps).backward()     (fp16: times the scaler's scale)
    fp16: GradScaler.unscale_ (the gradients are true gradients from here on)
    found_inf = loss or a gradient not finite              (on the device; all-reduced under DDP)
    grad_clip set: clip_grad_norm_ (its norm doubles as the finite check); unset: no norm pass at all
    AdamW step, skipped on the device when found_inf       (fused AdamW's found_inf input)
    EMA update weighted by (1 - found_inf)                 (untouched when the step was skipped)
    fp16: GradScaler.update (backs the scale off after a non-finite step, grows it after 2000 good ones)

with the learning rate, weight decay and EMA momentum of the optimizer step read off pure schedules and
every random draw seeded from ``(seed, step, micro-batch, rank)`` (the masks, when the data can, drawn
ahead in the loader workers: :mod:`crossscale_kit.train.masks`). Nothing in a step reads a device
value on the host, so a GPU never waits for Python between steps: the skipped steps are counted on the
device (:class:`NonFiniteGuard`) and the loop reads the count when it logs or checkpoints. Only an
optimizer without fused kernels for its device (CPU and CUDA have them) reads the flag once per step.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
from dataclasses import dataclass, field
from typing import Iterable

import torch
import torch.distributed as dist
from torch import nn

from crossscale_kit.ema.ema import ema_update
from crossscale_kit.eval.collapse import collapse_logs
from crossscale_kit.frameworks.base import Framework
from crossscale_kit.frameworks.context import StepContext
from crossscale_kit.train.masks import attach_plan
from crossscale_kit.train.seeds import micro_context
from crossscale_kit.train.optim import apply_schedules
from crossscale_kit.train.state import Run

@dataclass
class StepResult:
    """What one optimizer step produced: device tensors nobody has read on the host yet.

    Attributes:
        loss: mean of the micro-batches' losses (0-d, detached).
        logs: the framework's logs averaged over the micro-batches (floats or 0-d tensors), this rank's.
        found_inf: 0-d float, 1 when the step was skipped (non-finite loss or gradient on some rank).
        grad_norm: total gradient norm before clipping when ``grad_clip`` is set, else None (not computed).
        lr, wd, momentum: the schedule values this step used.
    """

    loss: torch.Tensor
    logs: dict = field(default_factory=dict)
    found_inf: torch.Tensor | None = None
    grad_norm: torch.Tensor | None = None
    lr: float = 0.0
    wd: float = 0.0
    momentum: float = 0.0


class NonFiniteGuard:
    """Counts skipped (non-finite) optimizer steps on the device; the host reads it at log steps.

    "Consecutive" means optimizer steps in a row, each with a non-finite loss or gradient, with no
    finite step between them. The device keeps the length of the current run and the longest run that
    touched the steps since the last read; :meth:`read` returns it (a run that spans a read keeps
    counting across it, so it is reported at its full length). The loop reads at every log step and
    checkpoint step, so a run of ``max_nonfinite`` bad steps stops training at most ``log_every - 1``
    steps after it reached the limit; those steps are skipped as well if they are non-finite, so the
    weights and the EMA never take a non-finite update.
    """

    def __init__(self, device: torch.device) -> None:
        # [current run, longest run since the last read, skipped steps since the last read]
        self.state = torch.zeros(3, device=device)

    def update(self, found_inf: torch.Tensor) -> None:
        run = (self.state[0] + found_inf) * found_inf
        self.state = torch.stack([run, torch.maximum(self.state[1], run), self.state[2] + found_inf])

    def read(self) -> tuple[int, int, int]:
        """``(current run, longest run, skipped steps)`` since the previous read (one host read)."""
        run, longest, skipped = (int(v) for v in self.state.tolist())
        self.state = torch.stack([self.state[0], self.state[0], torch.zeros_like(self.state[0])])
        return run, longest, skipped


class TrainStep:
    """The optimizer step over ``accum_steps`` micro-batches (see the module docstring).

    Args:
        model: the framework (parameters on their device).
        optimizer: AdamW from :func:`crossscale_kit.train.optim.build_adamw` (fused: the skip happens on the device).
        forward: what to call for the loss (the DDP wrapper under ``torchrun``); default ``model``.
        accum_steps: micro-batches per optimizer step; each micro-batch's loss is scaled by ``1 / accum_steps``.
        grad_clip: max total gradient norm, or None (no norm computed).
        autocast_dtype: e.g. ``torch.bfloat16`` to run the forward under autocast, or None.
        scaler: a ``torch.amp.GradScaler`` (fp16): the backward runs on the scaled loss, the gradients are
            unscaled before the finite check, clipping and the optimizer step, and the scale is updated
            after the step on the device. None: no scaling.
        ema_timing: ``"after_step"`` (update the EMA after the optimizer step with its momentum, skipped
            with the step) or ``"window_start"`` (released LatentMIM: update it before the window's first
            forward with the step's momentum; the online weights are those the previous step left).
    """

    def __init__(self, model: Framework, optimizer: torch.optim.Optimizer, *, forward: nn.Module | None = None,
                 accum_steps: int = 1, grad_clip: float | None = None,
                 autocast_dtype: torch.dtype | None = None, scaler: torch.amp.GradScaler | None = None,
                 ema_timing: str = "after_step") -> None:
        if int(accum_steps) != accum_steps or accum_steps < 1:
            raise ValueError(f"accum_steps must be a positive integer, got {accum_steps!r}.")
        if grad_clip is not None and not grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {grad_clip!r}.")
        if ema_timing not in ("after_step", "window_start"):
            raise ValueError(f"ema_timing must be 'after_step' or 'window_start', got {ema_timing!r}.")
        self.model, self.optimizer = model, optimizer
        self.scaler, self.ema_timing = scaler, ema_timing
        self.forward = forward if forward is not None else model
        self.accum_steps, self.grad_clip, self.autocast_dtype = int(accum_steps), grad_clip, autocast_dtype
        self.params = [p for g in optimizer.param_groups for p in g["params"]]
        self.device = self.params[0].device
        self.fused = bool(optimizer.defaults.get("fused"))
        self.guard = NonFiniteGuard(self.device)

    def _micro(self, batch: dict, ctx: StepContext, last: bool, monitor: bool = False) -> tuple[torch.Tensor, dict]:
        ddp = isinstance(self.forward, nn.parallel.DistributedDataParallel)
        no_sync = self.forward.no_sync() if ddp and not last else contextlib.nullcontext()
        with no_sync:
            with torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.bfloat16,
                                enabled=self.autocast_dtype is not None):
                out = self.forward(batch, ctx)
            scaled = out.loss / self.accum_steps
            (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
        logs = out.logs
        if monitor and out.monitor:  # collapse readings of this micro-batch's features (log steps only)
            with torch.no_grad():
                logs = {**logs, **collapse_logs(out.monitor)}
        return out.loss.detach(), logs

    def _found_inf(self, loss: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)  # on the device: inf stays inf, NaN stays NaN
        found = (~torch.isfinite(loss)).to(torch.float32).reshape(())
        with_grad = [p for p in self.params if p.grad is not None]
        norm = None
        if self.grad_clip is not None:
            norm = nn.utils.clip_grad_norm_(with_grad, self.grad_clip, foreach=True)
            found = torch.maximum(found, (~torch.isfinite(norm)).to(torch.float32))
        elif with_grad:
            # sets found to 1 if a gradient holds inf/NaN: one fused read (times 1.0), no norm, no host read
            torch._amp_foreach_non_finite_check_and_unscale_([p.grad for p in with_grad], found,
                                                             torch.ones((), device=self.device))
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(found, op=dist.ReduceOp.MAX)  # every rank skips the same steps
        return found, norm

    def _optimizer_step(self, found: torch.Tensor) -> None:
        if self.fused:
            self.optimizer.found_inf = found  # fused AdamW skips on the device: no update, no step count
            try:
                self.optimizer.step()
            finally:
                del self.optimizer.found_inf
        elif not bool(found):  # an optimizer without fused kernels: one host read
            self.optimizer.step()

    def __call__(self, micro_batches: Iterable[tuple[dict, StepContext]], *, lr: float, weight_decay: float,
                 momentum: float, monitor: bool = False) -> StepResult:
        """One optimizer step over ``accum_steps`` ``(batch, ctx)`` pairs (consumed one at a time, so a
        lazy iterable holds one micro-batch in memory and seeds each right before its forward).
        ``monitor``: also read the collapse monitors (:mod:`crossscale_kit.eval.collapse`) of the first micro-batch's
        features into the logs (``collapse/*``); the loop asks for them at log steps."""
        apply_schedules(self.optimizer, lr, weight_decay)
        if self.ema_timing == "window_start":
            ema_update(self.model.ema_pairs(), momentum)
        loss_sum, logs, n = None, {}, 0
        for n, (batch, ctx) in enumerate(micro_batches, start=1):
            if n > self.accum_steps:
                break
            loss, out_logs = self._micro(batch, ctx, last=n == self.accum_steps, monitor=monitor and n == 1)
            loss_sum = loss if loss_sum is None else loss_sum + loss
            for k, v in out_logs.items():
                if k.startswith("collapse/"):  # read on the first micro-batch only: not averaged
                    logs[k] = v
                else:
                    logs[k] = logs.get(k, 0.0) + v / self.accum_steps
        if n != self.accum_steps:
            self.optimizer.zero_grad(set_to_none=True)
            raise ValueError(f"TrainStep got {n} micro-batches, expected accum_steps={self.accum_steps}.")
        loss = loss_sum / self.accum_steps
        found, norm = self._found_inf(loss)
        self._optimizer_step(found)
        if self.ema_timing == "after_step":
            ema_update(self.model.ema_pairs(), momentum, skip=found)
        if self.scaler is not None:
            self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.guard.update(found)
        return StepResult(loss=loss, logs=logs, found_inf=found, grad_norm=norm, lr=lr, wd=weight_decay,
                          momentum=momentum)


@functools.lru_cache(maxsize=None)
def _finishes_views(data_type: type) -> bool:
    """Whether a data class's ``to_device`` takes ``views`` (looked up once per class, not per step)."""
    return "views" in inspect.signature(data_type.to_device).parameters


def to_device(run: Run, raw: dict) -> dict:
    """A raw batch of the stream on the training device (the data object finishes it there when it can; one
    whose ``to_device`` takes ``views``, as :class:`PairedTiles`, finishes only what the framework reads)."""
    if hasattr(run.data, "to_device"):
        if _finishes_views(type(run.data)):
            return run.data.to_device(raw, run.info.device, views=run.model.views)
        return run.data.to_device(raw, run.info.device)
    return {k: (v.to(run.info.device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in raw.items()}


def step_context(run: Run, step: int, micro: int = 0) -> StepContext:
    """The context of micro-batch ``micro`` of step ``step`` of ``run`` (see :func:`micro_context`)."""
    return micro_context(run.cfg.seed, step, micro, rank=run.info.rank, local_batch=run.local_batch,
                         world_size=run.info.world_size)


def micro_batch(run: Run, step: int, micro: int) -> tuple[dict, StepContext]:
    """The next batch and its context, with the masks the loader planned for it (if any)."""
    raw = next(run.batches)
    plan = raw.pop("plan", None)
    return to_device(run, raw), attach_plan(step_context(run, step, micro), plan)


def is_log_step(run: Run, step: int) -> bool:
    """Whether optimizer step ``step`` (0-based) of ``run`` writes a row of the metrics log."""
    done = step + 1
    return done % run.cfg.log_every == 0 or done == run.stop or step == run.start_step


def train_step(run: Run, step: int) -> StepResult:
    """Run optimizer step ``step`` of ``run``: its ``accum_steps`` micro-batches, the update and the EMA
    (at log steps also the collapse monitors)."""
    horizon = run.horizon
    micro = (micro_batch(run, step, i) for i in range(run.cfg.accum_steps))
    return run.stepper(micro, lr=run.cfg.lr(step, horizon) * run.lr_scale, weight_decay=run.weight_decay(step, horizon),
                       momentum=run.model.momentum(step, horizon), monitor=is_log_step(run, step))
