"""The settings and the live state of one training run, shared by the loop's small functions."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn

from kit.frameworks.base import Framework
from kit.train.distributed import DistInfo
from kit.train.logger import MetricsLogger


@dataclass(frozen=True)
class TrainConfig:
    """The schedule, cadence and numerics bindings of ``train`` (``train.<name> = ...`` in a recipe).

    Args:
        batch_size: global batch (split evenly across ``torchrun`` ranks).
        epochs / total_steps: run length in passes over the data, or in steps (the schedules' horizon).
        lr: learning-rate schedule ``f(step, total_steps)``; ``lr_batch_ref``: if set, its values are
            scaled by ``batch_size / lr_batch_ref`` (LatentMIM: ``base_lr * batch / 256``).
        weight_decay: schedule or constant (biases, norms, tokens are never decayed).
        betas: AdamW betas. grad_clip: max gradient norm (None: no clipping).
        seed: seeds the initial weights, the data order, the crops and every per-step random draw.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``. precision: ``"bf16"`` autocast on CUDA (gram maths stay
            float32), ``"fp32"``. Ignored (fp32) on CPU.
        log_every / ckpt_every / keep_checkpoints: logging and checkpoint cadence.
        max_nonfinite: consecutive non-finite steps (skipped, EMA untouched) before the run stops.
        tensorboard: also write TensorBoard event files.
    """

    batch_size: int = 128
    epochs: float = 300
    total_steps: int | None = None
    lr: Callable[[int, int], float] | None = None
    lr_batch_ref: int | None = None
    weight_decay: Callable[[int, int], float] | float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float | None = None
    seed: int = 0
    device: str = "auto"
    precision: str = "bf16"
    log_every: int = 10
    ckpt_every: int = 1000
    keep_checkpoints: int = 3
    max_nonfinite: int = 5
    tensorboard: bool = True

    def horizon(self, num_samples: int) -> int:
        """Run length in steps: ``total_steps``, else ``epochs`` passes over ``num_samples`` pairs."""
        if self.total_steps is not None:
            return int(self.total_steps)
        steps_per_epoch = max(1, num_samples // self.batch_size)
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
        logger: metrics on rank 0. horizon: the schedules' length in steps.
        start_step / stop: the steps this invocation runs, ``range(start_step, stop)``.
        export: the export description stored in every checkpoint (prefix, timm name and kwargs, meta).
        data_info: the data summary of preflight.
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
    batches: Iterator[dict] | None = None
    nonfinite: int = 0
    last_logs: dict = field(default_factory=dict)
    t_last: float = 0.0

    @property
    def local_batch(self) -> int:
        """Images per rank per step."""
        return self.cfg.batch_size // self.info.world_size

    @property
    def lr_scale(self) -> float:
        """``batch_size / lr_batch_ref`` when the recipe scales lr with the batch, else 1."""
        return self.cfg.batch_size / self.cfg.lr_batch_ref if self.cfg.lr_batch_ref else 1.0

    @property
    def use_bf16(self) -> bool:
        return self.info.device.type == "cuda" and self.cfg.precision == "bf16"

    def weight_decay(self, step: int, total: int) -> float:
        """The weight decay of ``step`` (a schedule or a constant)."""
        wd = self.cfg.weight_decay
        return float(wd(step, total)) if callable(wd) else float(wd)
