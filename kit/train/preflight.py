"""Checks that run before step 1 and report every problem at once."""
from __future__ import annotations

import logging
import math
from numbers import Real

import torch

from crossscale_kit.frameworks.context import StepContext
from crossscale_kit.io import BANDS, shard_units_warning


class ConfigError(ValueError):
    """The run's configuration cannot work; the message lists every problem found and its fix."""


def _integer(name: str, value, low: int, *, none_ok: bool = False, what: str = "") -> list[str]:
    if value is None and none_ok:
        return []
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        alt = " (or None)" if none_ok else ""
        return [f"{name} = {value!r}: must be an integer >= {low}{alt}{what}."]
    return []


def _number(name: str, value, *, low: float, strict: bool, none_ok: bool = False) -> list[str]:
    if value is None and none_ok:
        return []
    ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < low or (strict and value == low):
        return [f"{name} = {value!r}: must be a number {'>' if strict else '>='} {low}{' (or None)' if none_ok else ''}."]
    return []


def problem_text(problems: list[str]) -> str:
    """One line for one problem (what the CLI prints as its error), a list for several."""
    if len(problems) == 1 and "\n" not in problems[0]:
        return f"the run cannot start: {problems[0]}"
    return "the run cannot start; fix the following and run again:\n" + "\n".join(f"  - {p}" for p in problems)


def check_settings(cfg, *, world_size: int = 1, max_steps: int | None = None) -> list[str]:
    """Type and range of every schedule, cadence and numerics binding of ``train`` (a list of problems)."""
    p = _integer("train.batch_size", cfg.batch_size, 1)
    if not p and cfg.batch_size % world_size:
        p.append(f"train.batch_size = {cfg.batch_size} is not divisible by the {world_size} ranks; pick a multiple "
                 "of the world size.")
    p += _integer("train.accum_steps", getattr(cfg, "accum_steps", 1), 1)
    p += _integer("train.total_steps", cfg.total_steps, 1, none_ok=True)
    if cfg.total_steps is None:
        p += _number("train.epochs", cfg.epochs, low=0, strict=True)
    if not callable(cfg.lr):
        p.append(f"train.lr = {cfg.lr!r}: must be a schedule f(step, total_steps), e.g. @lr/WarmupCosine() "
                 "with lr/WarmupCosine.peak = ... (a constant: @Constant() with Constant.value = ...).")
    p += _number("train.lr_batch_ref", cfg.lr_batch_ref, low=0, strict=True, none_ok=True)
    if not callable(cfg.weight_decay):
        p += _number("train.weight_decay", cfg.weight_decay, low=0, strict=False)
    betas = cfg.betas if isinstance(cfg.betas, (tuple, list)) else ()
    if len(betas) != 2 or any(_number("b", b, low=0, strict=False) or b >= 1 for b in betas):
        p.append(f"train.betas = {cfg.betas!r}: must be two numbers in [0, 1), e.g. (0.9, 0.95).")
    p += _number("train.grad_clip", cfg.grad_clip, low=0, strict=True, none_ok=True)
    p += _integer("train.seed", cfg.seed, 0)
    if cfg.precision not in ("bf16", "fp16", "fp32"):
        p.append(f"train.precision = {cfg.precision!r}: must be 'bf16', 'fp16' or 'fp32'.")
    if getattr(cfg, "ema_timing", "after_step") not in ("after_step", "window_start"):
        p.append(f"train.ema_timing = {cfg.ema_timing!r}: must be 'after_step' or 'window_start'.")
    for name in ("log_every", "ckpt_every", "max_nonfinite"):
        p += _integer(f"train.{name}", getattr(cfg, name), 1)
    p += _integer("train.keep_checkpoints", cfg.keep_checkpoints, 0, what=" (0 keeps every checkpoint)")
    p += _integer("max_steps", max_steps, 0, none_ok=True)
    return p


def check_schedules(cfg, framework, horizon: int) -> list[str]:
    """Values of the lr, weight-decay and EMA-momentum schedules over the run (a list of problems)."""
    steps = sorted({s for s in (0, 1, horizon // 4, horizon // 2, 3 * horizon // 4, horizon - 1) if 0 <= s < horizon})
    wd = cfg.weight_decay if callable(cfg.weight_decay) else (lambda s, t: cfg.weight_decay)
    problems, lr_values = [], []
    for name, fn, low, high in (("train.lr", cfg.lr, 0.0, math.inf), ("train.weight_decay", wd, 0.0, math.inf),
                                ("the framework's EMA momentum", framework.momentum, 0.0, 1.0)):
        for s in steps:
            try:
                v = float(fn(s, horizon))
            except (TypeError, ValueError, ArithmeticError) as exc:
                problems.append(f"{name} cannot be evaluated at step {s} of {horizon}: {exc}")
                break
            if not (math.isfinite(v) and low <= v <= high):
                problems.append(f"{name} is {v} at step {s} of {horizon}; it must lie in [{low}, {high}]: check the "
                                "schedule's values (peak, final, start, end).")
                break
            if name == "train.lr":
                lr_values.append(v)
    if lr_values and len(lr_values) == len(steps) and max(lr_values) <= 0:
        problems.append("train.lr is 0 at every step checked: set a positive peak learning rate.")
    return problems


def _model_problems(framework, data, info: dict) -> list[str]:
    """A dry forward on a random batch of the exact shapes the loader will produce.

    It surfaces image size vs patch size, teacher grid vs scale, visible count vs grid, and losses that
    need more patches or images than the configuration gives.
    """
    crop = getattr(data, "crop", None)
    size = getattr(crop, "size", None)
    if size is None:
        return []
    bands = info.get("bands", getattr(data, "bands", 4))
    scale = info.get("scale", getattr(data, "scale", None) or 2)
    if hasattr(crop, "output_sizes"):  # what the loader really emits (after any patch jitter)
        size, hr_size = crop.output_sizes(scale)
    else:
        size = size if isinstance(size, int) else size[0]
        hr_size = getattr(crop, "hr_size", None) or scale * size
    g = torch.Generator().manual_seed(0)
    b = 2  # two images exercise every shape check
    batch = {"mr": torch.randn(b, bands, size, size, generator=g),
             "hr": torch.randn(b, bands, hr_size, hr_size, generator=g)}
    was_training = framework.training
    try:
        framework.eval()  # a shape check, not a step: learned parts may refuse no_grad in training mode
        with torch.no_grad():
            framework(batch, StepContext.single(b, seed=0))
    except (ValueError, IndexError, TypeError, RuntimeError) as exc:
        return [f"model: {exc}"]
    finally:
        framework.train(was_training)
    return []


def _warn_about_units(data, info: dict) -> None:
    """Say so when the stored units are far from the recipe's normalisation (e.g. uint8 rasters)."""
    norm = getattr(data, "normalize", None)
    if info.get("root") and hasattr(norm, "describe"):
        stats = norm.describe("mr")
        note = shard_units_warning(info["root"], stats["mean"], stats["std"], info.get("band_names") or BANDS)
        if note:
            logging.getLogger(__name__).warning("data: %s", note)


def preflight(framework, data, *, cfg=None, batch_size: int | None = None, world_size: int = 1,
              max_steps: int | None = None) -> dict:
    """Validate settings, data and framework together before any training work.

    1. every schedule, cadence and numerics binding of ``train`` (:func:`check_settings`);
    2. ``data.check()``: the shard folder exists, holds shards, and its first pair is valid
       (band count, exact integer MR/HR ratio, finite values);
    3. a dry forward of the framework on a batch of the loader's exact shapes (:func:`_model_problems`);
    4. the lr, weight-decay and momentum schedules over the run's length (:func:`check_schedules`).

    Args:
        cfg: the run's :class:`crossscale_kit.train.state.TrainConfig`; None checks data and model only, with
            ``batch_size`` (default: one image per rank).

    Returns:
        the data summary of ``data.check()``.

    Raises:
        ConfigError listing every problem found.
    """
    schedules = cfg is not None
    if cfg is None:  # data and model only (tools and tests): a config of this batch size, no schedule check
        from crossscale_kit.train.state import TrainConfig

        cfg = TrainConfig(batch_size=batch_size or world_size, lr=lambda step, total: 1.0)
    problems = check_settings(cfg, world_size=world_size, max_steps=max_steps)
    info: dict = {}
    try:
        info = data.check()
    except (ValueError, FileNotFoundError, OSError) as exc:
        problems.append(f"data: {exc}")
    _warn_about_units(data, info)
    if info.get("scale") == 1 and type(framework).__name__ == "SpatialAffinity":
        problems.append(
            f"data: {info.get('root')} holds scale-1 pairs (HR on the MR grid) but the recipe is cross-scale "
            "(SpatialAffinity): its HR teacher would learn nothing of a finer grid. Use shards whose HR tiles are s x "
            "the MR side (s >= 2), or a single-scale recipe (e.g. gin/latentmim_mr.gin).")
    # the model check runs even when the data check failed (with the configured shapes), so one
    # error lists the problems of both
    problems += _model_problems(framework, data, info)
    if schedules and not problems:
        problems += check_schedules(cfg, framework, cfg.horizon(info["num_samples"]))
    if problems:
        raise ConfigError(problem_text(problems))
    return info
