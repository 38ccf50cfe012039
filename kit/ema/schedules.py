"""Schedules as pure functions of the step.

Every schedule is a small gin-registered callable ``sched(step, total_steps) -> float``: the value at a
step depends on nothing but the step and the run length, so a run resumed at step k sees exactly the
values of an uninterrupted run. ``step`` counts optimizer steps (with gradient accumulation, one step per
group of micro-batches). Warm-ups are given in steps or as a fraction of the run (``warmup_steps`` /
``warmup_fraction``: a recipe's "30 of 300 epochs" is ``warmup_fraction = 0.1``).

``offset`` shifts a schedule along the step axis: the value used at optimizer step k is
``f(k + offset)``. The released I-JEPA code steps its lr and weight-decay schedulers *before* each
optimizer step, so it applies ``f(k + 1)`` at step k; its recipes bind ``offset = 1``.

The kit keeps its own ~80 lines rather than timm's schedulers because exact resume needs values that are
pure functions of the step, and timm's schedulers are stateful objects that write into the optimizer.
"""
from __future__ import annotations

import math

import gin


def _check_unit(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}.")


def _check_offset(offset: int) -> int:
    if int(offset) != offset or offset < 0:
        raise ValueError(f"schedule offset must be a non-negative integer number of steps, got {offset!r}.")
    return int(offset)


def _warmup_steps(total_steps: int, warmup_steps: int | None, warmup_fraction: float) -> int:
    if warmup_steps is not None:
        return max(0, min(int(warmup_steps), total_steps))
    return int(round(warmup_fraction * total_steps))


def _progress(step: int, total_steps: int) -> float:
    return min(max(step / max(total_steps, 1), 0.0), 1.0)


@gin.register
class Linear:
    """Linear from ``start`` at step 0 to ``end`` at ``total_steps`` (I-JEPA's EMA momentum 0.996 -> 1).

    Args:
        start, end: values at step 0 and at ``total_steps`` (held after it).
        offset: the value at step k is that of step ``k + offset``.
    """

    def __init__(self, start: float, end: float, offset: int = 0) -> None:
        self.start, self.end = float(start), float(end)
        self.offset = _check_offset(offset)

    def __call__(self, step: int, total_steps: int) -> float:
        t = _progress(step + self.offset, total_steps)
        return self.start + (self.end - self.start) * t


@gin.register
class Cosine:
    """Half-cosine from ``start`` (step 0) to ``end`` (``total_steps``).

    LatentMIM's EMA momentum 0.99 -> 1 (per optimizer step); I-JEPA's weight decay 0.04 -> 0.4 (with
    ``offset = 1``).

    Args:
        start, end: values at step 0 and at ``total_steps`` (held after it).
        offset: the value at step k is that of step ``k + offset``.
    """

    def __init__(self, start: float, end: float, offset: int = 0) -> None:
        self.start, self.end = float(start), float(end)
        self.offset = _check_offset(offset)

    def __call__(self, step: int, total_steps: int) -> float:
        t = _progress(step + self.offset, total_steps)
        return self.end + (self.start - self.end) * 0.5 * (1.0 + math.cos(math.pi * t))


@gin.register
class WarmupCosine:
    """Linear warm-up from ``warmup_start`` to ``peak``, then half-cosine to ``final`` at ``total_steps``.

    The released recipes:

    - LatentMIM: warm-up over 30 of 300 epochs starting at 0.25 x peak, then cosine to 0.25 x peak
      (``final_ratio = warmup_start_ratio = 0.25``, ``warmup_fraction = 0.1``); the peak is
      ``1.5e-4 x effective batch / 256`` (the loop's ``lr_batch_ref``), 3e-4 at 4 x 128 images per step.
    - I-JEPA: warm-up from 2e-4 to 1e-3 over 40 epochs, cosine to 1e-6, stepped before use
      (``offset = 1``).

    Args:
        peak: value at the end of the warm-up (the learning rate the recipe names).
        final: value at ``total_steps`` (absolute), or ``final_ratio * peak`` when ``final`` is None.
        warmup_steps / warmup_fraction: warm-up length in steps, or as a fraction of the run.
        warmup_start: value at step 0 (absolute), or ``warmup_start_ratio * peak`` when None.
        offset: the value at step k is that of step ``k + offset``.
    """

    def __init__(
        self,
        peak: float,
        final: float | None = None,
        final_ratio: float = 0.0,
        warmup_steps: int | None = None,
        warmup_fraction: float = 0.0,
        warmup_start: float | None = None,
        warmup_start_ratio: float = 0.0,
        offset: int = 0,
    ) -> None:
        _check_unit("warmup_fraction", warmup_fraction)
        self.peak = float(peak)
        self.final = float(final) if final is not None else float(final_ratio) * self.peak
        self.warmup_steps, self.warmup_fraction = warmup_steps, warmup_fraction
        self.warmup_start = float(warmup_start) if warmup_start is not None else float(warmup_start_ratio) * self.peak
        self.offset = _check_offset(offset)

    def __call__(self, step: int, total_steps: int) -> float:
        step = step + self.offset
        w = _warmup_steps(total_steps, self.warmup_steps, self.warmup_fraction)
        if step < w:
            return self.warmup_start + (self.peak - self.warmup_start) * step / max(w, 1)
        t = min((step - w) / max(total_steps - w, 1), 1.0)
        return self.final + (self.peak - self.final) * 0.5 * (1.0 + math.cos(math.pi * t))
