"""The training loop: the single gin-configurable root of every recipe.

``train(workdir=...)`` builds nothing itself: gin hands it the framework (host, optionally wrapped by
the spatial-affinity add-on), the paired-tile data and the schedules. One step is::

    batch -> framework(batch, ctx) -> loss -> backward -> (grad clip) -> AdamW step -> EMA update

with the learning rate, weight decay and EMA momentum read off pure step schedules, and every random
draw of the step (patch masks, drop-path) seeded from ``(seed, step, rank)``. Together with the data
stream's exact position this makes a resumed run continue as if it had never stopped.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Callable

import gin
import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from kit.encoders.export import export_encoder
from kit.frameworks.base import Framework
from kit.frameworks.context import StepContext
from kit.train import checkpoint as ckpt
from kit.train import distributed as distr
from kit.train.logger import MetricsLogger
from kit.train.optim import apply_schedules, build_adamw
from kit.train.preflight import preflight


class NonFiniteError(RuntimeError):
    """Raised when too many consecutive steps had a non-finite loss or gradient norm."""


GLOBAL = 2**31  # the "rank" of draws shared by all ranks (patch masks of the global batch)


def step_seed(seed: int, step: int, rank: int) -> int:
    """A 63-bit seed that depends only on ``(seed, step, rank)``."""
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(2, dtype=np.uint64)[0] >> np.uint64(1))


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}


@gin.configurable(denylist=["workdir", "resume", "max_steps", "recipe"])
def train(
    workdir: str | os.PathLike,
    *,
    framework: Framework | Callable[[], Framework] = gin.REQUIRED,
    data=gin.REQUIRED,
    batch_size: int = 128,
    epochs: float = 300,
    total_steps: int | None = None,
    lr: Callable[[int, int], float] = gin.REQUIRED,
    lr_batch_ref: int | None = None,
    weight_decay: Callable[[int, int], float] | float = 0.05,
    betas: tuple[float, float] = (0.9, 0.95),
    grad_clip: float | None = None,
    seed: int = 0,
    device: str = "auto",
    precision: str = "bf16",
    log_every: int = 10,
    ckpt_every: int = 1000,
    keep_checkpoints: int = 3,
    max_nonfinite: int = 5,
    tensorboard: bool = True,
    resume: bool = False,
    max_steps: int | None = None,
    recipe: list[str] | None = None,
) -> dict:
    """Pretrain ``framework`` on ``data`` and export the student encoder.

    Args:
        workdir: run folder: ``logs/`` (metrics.jsonl, metrics.csv, tb/, loss_curves.png),
            ``checkpoints/`` (ckpt-*.pt + operative gin config), ``export/`` (encoder.safetensors, meta.json).
        framework: host SSL framework or ``SpatialAffinity(host=...)``, or (as the recipes bind it, without
            parentheses) its class, built here after ``torch.manual_seed(seed)`` so the initial weights
            depend on the seed alone.
        data: a ``kit.data.loader.PairedTiles``.
        batch_size: global batch (split evenly across ``torchrun`` ranks).
        epochs: run length in passes over ``data.num_samples`` (the schedules' horizon).
        total_steps: run length in steps instead of epochs.
        lr: learning-rate schedule ``f(step, total_steps)``.
        lr_batch_ref: if set, the schedule's values are scaled by ``batch_size / lr_batch_ref``
            (LatentMIM: ``base_lr * batch / 256``).
        weight_decay: schedule or constant (biases, norms, tokens are never decayed).
        betas: AdamW betas. grad_clip: max gradient norm (None: no clipping).
        seed: seeds the data order, the crops and every per-step random draw.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``. precision: ``"bf16"`` autocast on CUDA (gram maths stay
            float32), ``"fp32"``. Ignored (fp32) on CPU.
        log_every / ckpt_every / keep_checkpoints: logging and checkpoint cadence.
        max_nonfinite: consecutive non-finite steps (skipped, EMA untouched) before the run stops.
        resume: continue from the newest checkpoint in ``workdir`` (a fresh start if there is none).
        max_steps: stop after this many steps (smoke runs); the schedules keep the recipe's length.
        recipe: the gin files of the run (recorded in the export's meta.json).

    Returns:
        summary dict (steps run, last losses, paths).
    """
    info = distr.setup(device)
    workdir = Path(workdir)
    if info.is_main:
        workdir.mkdir(parents=True, exist_ok=True)
    if batch_size % info.world_size:
        raise ValueError(
            f"batch_size {batch_size} is not divisible by the {info.world_size} ranks; pick a multiple of the world size."
        )
    if precision not in ("bf16", "fp32"):
        raise ValueError(f"precision must be 'bf16' or 'fp32', got {precision!r}.")
    data.batch_size = batch_size // info.world_size
    if not isinstance(framework, nn.Module):
        # a recipe binds the class (``train.framework = @SpatialAffinity``): build it here, after seeding,
        # so the initial weights depend on ``seed`` alone
        torch.manual_seed(seed)
        framework = framework()
    if not isinstance(framework, Framework):
        raise TypeError(f"train.framework must build a kit Framework, got {type(framework).__name__}.")

    # -- check everything before step 1 ------------------------------------------------------------
    data_info = preflight(framework, data, batch_size=batch_size, world_size=info.world_size)
    steps_per_epoch = max(1, data_info["num_samples"] // batch_size)
    horizon = int(total_steps) if total_steps is not None else max(1, int(math.ceil(epochs * steps_per_epoch)))

    model = framework.to(info.device)
    model.train()
    optimizer = build_adamw(model, betas=betas)
    wd_fn = weight_decay if callable(weight_decay) else (lambda step, total, _v=float(weight_decay): _v)
    lr_scale = batch_size / lr_batch_ref if lr_batch_ref else 1.0

    start_step, data_state = 0, None
    if resume:
        loaded = ckpt.load_latest(workdir, map_location=info.device)
        if loaded is not None:
            state, path = loaded
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            start_step = int(state["step"])
            data_state = state["data"][info.rank] if len(state["data"]) == info.world_size else None
            if data_state is None and info.is_main:
                print(f"warning: checkpoint was written by {len(state['data'])} ranks, not {info.world_size}: "
                      "the data order restarts (weights, optimizer and schedules resume exactly)")
            ckpt.restore_rng(state["rng"][info.rank] if len(state["rng"]) == info.world_size else state["rng"][0])
            if info.is_main:
                print(f"resumed from {path} at step {start_step}")
    ddp_model = model
    if info.enabled:
        ddp_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[info.device.index] if info.device.type == "cuda" else None
        )

    logger = MetricsLogger(workdir, resume_step=start_step if resume else None, enabled=info.is_main, tensorboard=tensorboard)
    stream = data.stream(seed=seed, rank=info.rank, world_size=info.world_size, state=data_state)
    stop = horizon if max_steps is None else min(horizon, start_step + int(max_steps))
    use_bf16 = info.device.type == "cuda" and precision == "bf16"
    if info.is_main:
        (workdir / "config.gin").write_text(gin.config_str())
        print(
            f"training {type(model).__name__} on {data_info['num_samples']} pairs from {data_info['root']}: "
            f"steps {start_step}->{stop} of {horizon} (batch {batch_size}, {info.world_size} rank(s), {info.device})"
        )

    norm = getattr(data, "normalize", None)
    view = getattr(model, "view", "mr")
    export_meta = {
        "bands": list(data_info.get("band_names", ("blue", "green", "red", "nir"))),
        "normalization": norm.describe(view) if hasattr(norm, "describe") else None,
        "gsd": data_info.get(f"{view}_gsd"),
        "view": view,
        "recipe": list(recipe or []),
        "framework": type(model).__name__,
        "total_steps": horizon,
    }
    encoder_prefix = next(name for name, m in model.named_modules() if m is model.student_encoder.vit) + "."

    def save(step: int) -> None:
        rng_all = distr.all_gather_objects(ckpt.capture_rng(), info)
        data_all = distr.all_gather_objects(stream.state_dict(), info)
        if info.is_main:
            state = {
                "step": step,
                "total_steps": horizon,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "rng": rng_all,
                "data": data_all,
                "world_size": info.world_size,
                "seed": seed,
                # what tools/export.py needs to write the student encoder from this checkpoint alone
                "export": {"prefix": encoder_prefix, "timm_name": model.student_encoder.timm_name,
                           "timm_kwargs": dict(model.student_encoder.timm_kwargs), "meta": export_meta},
            }
            ckpt.save_checkpoint(workdir, step, state, gin.operative_config_str(), keep=keep_checkpoints)

    it = iter(stream)
    bar = tqdm(total=stop, initial=start_step, disable=not info.is_main, desc="train", dynamic_ncols=True)
    nonfinite, last_logs, step = 0, {}, start_step
    t_last = time.perf_counter()
    try:
        for step in range(start_step, stop):
            raw = next(it)
            # the data object finishes the batch on the device when it can (crop/resize/normalise there)
            batch = data.to_device(raw, info.device) if hasattr(data, "to_device") else _to_device(raw, info.device)
            lr_now = lr(step, horizon) * lr_scale
            wd_now = wd_fn(step, horizon)
            apply_schedules(optimizer, lr_now, wd_now)
            # patch masks: one generator for the global batch, the same on every rank (each keeps its rows);
            # drop-path and other module randomness: per rank
            gen = torch.Generator().manual_seed(step_seed(seed, step, GLOBAL))
            torch.manual_seed(step_seed(seed, step, info.rank))
            ctx = StepContext(step=step, generator=gen, global_batch=batch_size,
                              rows=slice(info.rank * data.batch_size, (info.rank + 1) * data.batch_size))
            with torch.autocast(device_type=info.device.type, dtype=torch.bfloat16, enabled=use_bf16):
                out = ddp_model(batch, ctx)
            out.loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(
                [p for p in model.parameters() if p.grad is not None], grad_clip if grad_clip else float("inf")
            )
            finite = bool(torch.isfinite(out.loss.detach()) and torch.isfinite(grad_norm))
            finite = not distr.broadcast_flag(not finite, info)
            if finite:
                optimizer.step()
                model.ema_update(model.momentum(step, horizon))
                nonfinite = 0
            else:
                nonfinite += 1
                if info.is_main:
                    print(f"warning: step {step}: non-finite loss or gradient norm; step skipped, EMA untouched")
            optimizer.zero_grad(set_to_none=True)
            done = step + 1
            if done % log_every == 0 or done == stop or step == start_step or not finite:
                logs = distr.mean_over_ranks({**out.logs, "loss/total": out.loss.detach()}, info)
                logs["data/skipped"] = float(sum(stream.stats.values()))
                logs.update({"lr": lr_now, "wd": wd_now,
                             "momentum": model.momentum(step, horizon), "grad_norm": float(grad_norm),
                             "skipped": float(not finite)})
                now = time.perf_counter()
                logs["sec_per_step"] = (now - t_last) / (log_every if step != start_step else 1)
                t_last = now
                if info.is_main:
                    logger.log(done, logs)
                    bar.set_postfix(loss=f"{logs['loss/total']:.4f}")
                last_logs = logs
            bar.update(1)
            if nonfinite >= max_nonfinite:
                raise NonFiniteError(
                    f"{nonfinite} consecutive non-finite steps (last at step {done}); stopping. The last good "
                    f"checkpoint in {ckpt.checkpoint_dir(workdir)} is intact: lower the learning rate, enable "
                    "grad_clip, or check the data for NaN tiles."
                )
            if finite and done % ckpt_every == 0 and done != stop:
                save(done)
        step = stop
        save(stop)
    finally:
        bar.close()
        logger.close()
        stream.close()

    skipped = distr.all_gather_objects(stream.stats, info)
    result = {"steps": step, "total_steps": horizon, "workdir": str(workdir), "logs": last_logs,
              "world_size": info.world_size, "data_skipped": skipped}
    if info.is_main and any(skipped):
        print(f"data: skipped bad samples by reason, per rank: {skipped} (each logged with its shard and key)")
    if info.enabled:
        # every rank must hold the same weights after DDP training; record what each rank has
        with torch.no_grad():
            checksum = float(sum(p.double().sum() for p in model.parameters()).cpu())
        result["rank_param_checksums"] = distr.all_gather_objects(checksum, info)
    if info.is_main:
        result["export"] = str(export_encoder(model.student_encoder, workdir / "export", **export_meta, step=step))
        curve = logger.plot()
        result["loss_curve"] = str(curve) if curve else None
        (workdir / "summary.json").write_text(json.dumps(result, indent=2, default=str))
    distr.teardown()
    return result
