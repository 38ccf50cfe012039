"""The settings and the live state of one training run, shared by the loop's small functions."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn

from crossscale_kit.frameworks.base import Framework
from crossscale_kit.train.distributed import DistInfo
from crossscale_kit.train.logger import MetricsLogger
from crossscale_kit.train.rundir import RunLock
from crossscale_kit.train.signals import StopRequest


@dataclass(frozen=True)
class TrainConfig:
    """The schedule, cadence and numerics bindings of ``train`` (``train.<name> = ...`` in a recipe).

    Args:
        batch_size: global batch of one micro-batch (split evenly across ``torchrun`` ranks).
        accum_steps: micro-batches per optimizer step (gradient accumulation): one optimizer step, one
            EMA update and one schedule step per ``batch_size * accum_steps`` images. Steps, logs and
            schedules count optimizer steps (LatentMIM as released: 4 x 128).
        epochs / total_steps: run length in passes over the data, or in optimizer steps (the schedules'
            horizon).
        lr: learning-rate schedule ``f(step, total_steps)``; ``lr_batch_ref``: if set, its values are
            scaled by the effective batch ``batch_size * accum_steps / lr_batch_ref`` (LatentMIM:
            ``base_lr * effective batch / 256``).
        weight_decay: schedule or constant, applied to the parameters ``no_decay`` leaves decayed.
        no_decay: rule ``(name, param) -> bool`` of undecayed parameters; None: the host's released rule
            (:func:`crossscale_kit.train.optim.released_no_decay`).
        betas: AdamW betas. grad_clip: max gradient norm (None: no clipping and no norm computed).
        compile: ``torch.compile`` the framework's networks and losses
            (:func:`crossscale_kit.train.compile.compile_framework`): True for torch's default backend (inductor),
            or a backend name (e.g. ``"aot_eager"``: graph capture without code generation).
        seed: seeds the initial weights, the data order, the crops and every per-step random draw.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``. precision: ``"bf16"`` autocast on CUDA (gram maths stay
            float32 unless ``GramLoss.precision = 'autocast'``), ``"fp16"`` float16 autocast on CUDA with a
            ``torch.amp.GradScaler`` (released LatentMIM; the scaler's state is checkpointed, and a step it
            finds non-finite is skipped like any other), ``"fp32"``. Autocast is off on CPU (fp32); fp16
            keeps its gradient scaler there.
        ema_timing: when the EMA targets move. ``"after_step"`` (the kit): after optimizer step k, with
            ``momentum(k)``, skipped with the step. ``"window_start"`` (released LatentMIM): at the start
            of step k's accumulation window, before its first forward, with ``momentum(k)``.
        log_every / ckpt_every / keep_checkpoints: logging and checkpoint cadence.
        max_nonfinite: consecutive non-finite steps (skipped, EMA untouched) before the run stops.
        tensorboard: also write TensorBoard event files.
        online_probe: an :class:`crossscale_kit.train.online_probe.OnlineProbe` (``@OnlineProbe()``) that logs the
            student's linear-probe mIoU every ``every`` steps (rank 0), or None.
    """

    batch_size: int = 128
    accum_steps: int = 1
    epochs: float = 300
    total_steps: int | None = None
    lr: Callable[[int, int], float] | None = None
    lr_batch_ref: int | None = None
    weight_decay: Callable[[int, int], float] | float = 0.05
    no_decay: Callable[[str, torch.Tensor], bool] | None = None
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float | None = None
    compile: bool | str = False
    seed: int = 0
    device: str = "auto"
    precision: str = "bf16"
    ema_timing: str = "after_step"
    log_every: int = 10
    ckpt_every: int = 1000
    keep_checkpoints: int = 3
    max_nonfinite: int = 5
    tensorboard: bool = True
    online_probe: Any = None

    def horizon(self, num_samples: int) -> int:
        """Run length in optimizer steps: ``total_steps``, else ``epochs`` passes over ``num_samples`` pairs."""
        if self.total_steps is not None:
            return int(self.total_steps)
        steps_per_epoch = max(1, num_samples // (self.batch_size * self.accum_steps))
        return max(1, int(math.ceil(self.epochs * steps_per_epoch)))


@dataclass
class Run:
    """Everything the loop's functions share while a run is live.

    Attributes:
        cfg: the run's settings. info: this process's place among the ranks.
        workdir: the run folder. model: the framework (on the device); ``ddp_model`` wraps it under torchrun.
        optimizer: AdamW over the model's trainable parameters.
        data: this run's copy of the data object (its ``batch_size`` is the per-rank batch).
        stream: the resumable batch stream; ``batches`` its iterator.
        logger: metrics on rank 0. horizon: the schedules' length in optimizer steps.
        stepper: the :class:`crossscale_kit.train.step.TrainStep` that makes every optimizer step.
        start_step / stop: the steps this invocation runs, ``range(start_step, stop)``.
        export: the export description stored in every checkpoint (prefix, timm name and kwargs, meta).
        data_info: the data summary of preflight.
        config: the operative gin bindings (the resume fingerprint, stored in every checkpoint).
        lock: the run folder's lock (rank 0). stop_request: SIGTERM / SIGINT seen by this process.
        saved_step: the step of the newest checkpoint this invocation wrote.
    """

    cfg: TrainConfig
    info: DistInfo
    workdir: Path
    model: Framework
    ddp_model: nn.Module
    optimizer: torch.optim.Optimizer
    data: Any
    stream: Any
    logger: MetricsLogger
    horizon: int
    start_step: int
    stop: int
    export: dict
    data_info: dict
    stepper: Any = None
    scaler: Any = None
    config: dict = field(default_factory=dict)
    lock: RunLock | None = None
    stop_request: StopRequest | None = None
    batches: Iterator[dict] | None = None
    saved_step: int = -1
    nonfinite: int = 0
    skipped_since_log: int = 0
    last_logs: dict = field(default_factory=dict)
    t_last: float = 0.0

    @property
    def local_batch(self) -> int:
        """Images per rank per step."""
        return self.cfg.batch_size // self.info.world_size

    @property
    def lr_scale(self) -> float:
        """``batch_size * accum_steps / lr_batch_ref`` (the effective batch) when the recipe scales lr
        with the batch, else 1."""
        effective = self.cfg.batch_size * self.cfg.accum_steps
        return effective / self.cfg.lr_batch_ref if self.cfg.lr_batch_ref else 1.0

    @property
    def use_bf16(self) -> bool:
        return self.info.device.type == "cuda" and self.cfg.precision == "bf16"

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The forward's autocast dtype: bf16 / fp16 on CUDA as ``precision`` says, None (fp32) otherwise."""
        if self.info.device.type != "cuda":
            return None
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.cfg.precision)

    def release(self) -> None:
        """Give up the run folder (idempotent)."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def weight_decay(self, step: int, total: int) -> float:
        """The weight decay of ``step`` (a schedule or a constant)."""
        wd = self.cfg.weight_decay
        return float(wd(step, total)) if callable(wd) else float(wd)
