"""Schedules as pure functions of the step.

Every schedule is a small gin-registered callable ``sched(step, total_steps) -> float``: the value at a
step depends on nothing but the step and the run length, so a run resumed at step k sees exactly the
values of an uninterrupted run. Warm-ups are given as a fraction of the run or in steps via
``warmup_steps``/``warmup_fraction`` (a recipe's "40 of 300 epochs" is ``warmup_fraction = 0.1333``).
"""
from __future__ import annotations

import math

import gin


def _check_unit(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}.")


def _warmup_steps(total_steps: int, warmup_steps: int | None, warmup_fraction: float) -> int:
    if warmup_steps is not None:
        return max(0, min(int(warmup_steps), total_steps))
    return int(round(warmup_fraction * total_steps))


@gin.register
class Constant:
    """A constant value."""

    def __init__(self, value: float) -> None:
        self.value = float(value)

    def __call__(self, step: int, total_steps: int) -> float:
        return self.value


@gin.register
class Linear:
    """Linear from ``start`` at step 0 to ``end`` at ``total_steps`` (I-JEPA's EMA 0.996 -> 1)."""

    def __init__(self, start: float, end: float) -> None:
        self.start, self.end = float(start), float(end)

    def __call__(self, step: int, total_steps: int) -> float:
        t = min(max(step / max(total_steps, 1), 0.0), 1.0)
        return self.start + (self.end - self.start) * t


@gin.register
class Cosine:
    """Half-cosine from ``start`` (step 0) to ``end`` (``total_steps``): LatentMIM's EMA 0.99 -> 1,
    I-JEPA's weight decay 0.04 -> 0.4."""

    def __init__(self, start: float, end: float) -> None:
        self.start, self.end = float(start), float(end)

    def __call__(self, step: int, total_steps: int) -> float:
        t = min(max(step / max(total_steps, 1), 0.0), 1.0)
        return self.end + (self.start - self.end) * 0.5 * (1.0 + math.cos(math.pi * t))


@gin.register
class WarmupCosine:
    """Linear warm-up from ``warmup_start`` to ``peak``, then half-cosine to ``final``.

    Args:
        peak: value at the end of the warm-up (the learning rate the recipe names).
        final: value at ``total_steps`` (absolute), or ``final_ratio * peak`` when ``final`` is None.
        warmup_steps / warmup_fraction: warm-up length in steps, or as a fraction of the run.
        warmup_start: value at step 0 (I-JEPA: 2e-4; LatentMIM: 0).
    """

    def __init__(
        self,
        peak: float,
        final: float | None = None,
        final_ratio: float = 0.0,
        warmup_steps: int | None = None,
        warmup_fraction: float = 0.0,
        warmup_start: float = 0.0,
    ) -> None:
        _check_unit("warmup_fraction", warmup_fraction)
        self.peak = float(peak)
        self.final = float(final) if final is not None else float(final_ratio) * self.peak
        self.warmup_steps, self.warmup_fraction = warmup_steps, warmup_fraction
        self.warmup_start = float(warmup_start)

    def __call__(self, step: int, total_steps: int) -> float:
        w = _warmup_steps(total_steps, self.warmup_steps, self.warmup_fraction)
        if step < w:
            return self.warmup_start + (self.peak - self.warmup_start) * step / max(w, 1)
        t = min((step - w) / max(total_steps - w, 1), 1.0)
        return self.final + (self.peak - self.final) * 0.5 * (1.0 + math.cos(math.pi * t))
