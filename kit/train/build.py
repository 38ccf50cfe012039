"""Build a run from the gin-built pieces, or resume it from its newest checkpoint."""
from __future__ import annotations

import copy
import inspect
import logging
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from crossscale_kit.frameworks.base import Framework
from crossscale_kit.train import checkpoint as ckpt
from crossscale_kit.train import distributed as distr
from crossscale_kit.train import fingerprint as fp
from crossscale_kit.train.distributed import DistInfo
from crossscale_kit.train.logger import MetricsLogger
from crossscale_kit.train.masks import MaskPlanner
from crossscale_kit.train.compile import compile_framework
from crossscale_kit.train.optim import build_adamw
from crossscale_kit.train.preflight import ConfigError, check_settings, preflight, problem_text
from crossscale_kit.train.rundir import Claim, RunFolderError, claim, write_record
from crossscale_kit.train.state import Run, TrainConfig
from crossscale_kit.train.seeds import seed_host_rngs
from crossscale_kit.train.step import TrainStep

log = logging.getLogger(__name__)


def build_framework(framework: Framework | Callable[[], Framework], seed: int) -> Framework:
    """The framework object; a recipe binds the class, which is built after seeding so the initial
    weights depend on ``seed`` alone."""
    if not isinstance(framework, nn.Module):
        torch.manual_seed(seed)
        framework = framework()
    if not isinstance(framework, Framework):
        raise TypeError(f"train.framework must build a kit Framework, got {type(framework).__name__}.")
    return framework


def mask_planning(model, data, data_info: dict, cfg: TrainConfig, info: DistInfo, *, start_step: int = 0,
                  data_state: dict | None = None) -> dict:
    """``{"planner": MaskPlanner}`` when the data's workers can draw the model's masks, else ``{}``.

    The planner needs the student's patch grid before the first batch: the data must say its output
    size (``PairedTiles``: ``crop.output_sizes(scale)``). Its batches are numbered from the stream's
    position (``data_state``), so a resumed run whose data order restarts still tags them with its steps.
    """
    sizes = getattr(getattr(data, "crop", None), "output_sizes", None)
    if sizes is None or "planner" not in inspect.signature(data.stream).parameters:
        return {}
    mr, hr = sizes(int(data_info["scale"]))
    side = hr if model.view == "hr" else mr
    grid = model.student_encoder.grid_size(side, side)
    planner = MaskPlanner.for_framework(model, grid, seed=cfg.seed, rank=info.rank, world_size=info.world_size,
                                        local_batch=data.batch_size, accum_steps=cfg.accum_steps,
                                        offset=start_step * cfg.accum_steps - int((data_state or {}).get("batches", 0)))
    return {"planner": planner} if planner is not None else {}


def rank_data(data: Any, cfg: TrainConfig, info: DistInfo) -> Any:
    """A copy of the gin-built data object that yields this rank's share of the global batch.

    The gin-built object itself is left as configured.
    """
    local = copy.copy(data)
    local.batch_size = cfg.batch_size // info.world_size
    return local


def export_description(model: Framework, data: Any, data_info: dict, horizon: int, recipe: list[str]) -> dict:
    """What ``tools/export.py`` needs to write the student encoder from a checkpoint alone.

    ``{"prefix", "timm_name", "timm_kwargs", "meta"}``: the student's timm weights are the model state
    entries under ``prefix``; the encoder describes itself through ``export_spec()``.
    """
    encoder = model.student_encoder
    spec = encoder.export_spec()
    name = next(n for n, m in model.named_modules() if m is encoder)
    prefix = ".".join(p for p in (name, spec["module"]) if p) + "."
    norm = getattr(data, "normalize", None)
    view = getattr(model, "view", "mr")
    bands = list(data_info.get("band_names", ("blue", "green", "red", "nir")))
    normalization = norm.describe(view) if hasattr(norm, "describe") else None
    if isinstance(normalization, dict):  # the order its statistics are in: the shards' (checked by the data)
        normalization = {**normalization, "bands": bands}
    meta = {
        "bands": bands,
        "normalization": normalization,
        "data": data_info.get("identity"),
        "gsd": data_info.get(f"{view}_gsd"),
        "view": view,
        "recipe": list(recipe),
        "framework": type(model).__name__,
        "total_steps": horizon,
        "pos_spacing": spec.get("pos_spacing", "integer"),
    }
    return {"prefix": prefix, "timm_name": spec["timm_name"], "timm_kwargs": spec["timm_kwargs"], "meta": meta}


def restore(run: Run, state: dict, path: Path) -> dict | None:
    """Load a checkpoint's weights, optimizer, step and RNG into ``run``; return this rank's data state.

    The data position is exact only for the world size that wrote it; with another world size the data
    order restarts (weights, optimizer and schedules still resume exactly).
    """
    info = run.info
    changes = fp.check_resume(state.get("config"), run.config, source=str(path))
    check_data_identity(state.get("data_identity"), run.data_info, source=str(path))
    try:
        run.model.load_state_dict(state["model"])
        run.optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as exc:  # only reachable for checkpoints without a config
        raise fp.ResumeMismatchError(f"cannot resume from {path}: its weights do not fit this model ({exc}).") from None
    if run.scaler is not None and state.get("scaler"):
        run.scaler.load_state_dict(state["scaler"])
    run.start_step = int(state["step"])
    same_world = len(state["data"]) == info.world_size
    if info.is_main:
        log.info("resumed from %s at step %d%s", path, run.start_step,
                 f" (allowed changes: {'; '.join(changes)})" if changes else "")
        if not same_world:
            log.warning("checkpoint was written by %d ranks, not %d: the data order restarts (weights, optimizer "
                        "and schedules resume exactly)", len(state["data"]), info.world_size)
    ckpt.restore_rng(state["rng"][info.rank] if same_world else state["rng"][0])
    return state["data"][info.rank] if same_world else None


def check_data_identity(saved: dict | None, data_info: dict, *, source: str) -> None:
    """Refuse a resume on another shard set than the run's (compared by content identity, not by path).

    Raises:
        fp.ResumeMismatchError naming the shard folder, both identities and the fix.
    """
    now = data_info.get("identity")
    if not saved or not now:
        return
    diffs = [f"{k}: run has {saved.get(k)!r}, now {now.get(k)!r}" for k in sorted(set(saved) | set(now))
             if saved.get(k) != now.get(k)]
    if diffs:
        raise fp.ResumeMismatchError(
            f"cannot resume from {source}: the shard set at {data_info.get('root')} is not the one the run trained "
            f"on ({'; '.join(diffs)}); the saved data position would point into other data. Resume with the "
            "original shard set, or start a new --workdir on the new one.")


def claim_folder(workdir: Path, info: DistInfo, *, resume: bool | str, overwrite: bool) -> Claim:
    """Rank 0 takes the run folder (:func:`crossscale_kit.train.rundir.claim`); every rank learns the outcome."""
    mine, error = None, None
    if info.is_main:
        try:
            mine = claim(workdir, resume=resume, overwrite=overwrite)
        except RunFolderError as exc:
            error = exc
    outcome = distr.broadcast_object(str(error) if error else mine.resume if mine else None, info)
    if error is not None:
        raise error
    if isinstance(outcome, str):
        raise RunFolderError(f"rank 0 could not take the run folder: {outcome}")
    return mine or Claim(lock=None, resume=outcome)


def build_run(cfg: TrainConfig, framework, data, info: DistInfo, workdir: Path, *, resume: bool | str,
              overwrite: bool = False, max_steps: int | None, recipe: list[str]) -> Run:
    """Build (or resume) everything a run needs; nothing is written before every check has passed."""
    if problems := check_settings(cfg, world_size=info.world_size, max_steps=max_steps):
        raise ConfigError(problem_text(problems))
    framework = build_framework(framework, cfg.seed)
    data_info = preflight(framework, data, cfg=cfg, world_size=info.world_size)
    data, horizon = rank_data(data, cfg, info), cfg.horizon(data_info["num_samples"])
    config = fp.current()  # every component is built: the operative config is the run's
    model = framework.to(info.device).train()
    folder = claim_folder(workdir, info, resume=resume, overwrite=overwrite)
    run = Run(cfg=cfg, info=info, workdir=workdir, model=model, ddp_model=model,
              optimizer=build_adamw(model, betas=cfg.betas, no_decay=cfg.no_decay), data=data, stream=None,
              logger=None, horizon=horizon, start_step=0, stop=horizon, data_info=data_info, config=config,
              lock=folder.lock, export=export_description(model, data, data_info, horizon, recipe))
    if cfg.precision == "fp16":
        run.scaler = torch.amp.GradScaler(info.device.type)
    try:
        if info.is_main and not folder.resume:
            write_record(workdir, data=data_info.get("identity"), data_root=data_info.get("root"))
        data_state = restore(run, *ckpt.load_newest(workdir, info.device)) if folder.resume else None
        if not folder.resume:
            seed_host_rngs(cfg.seed, info.rank)
        if cfg.compile:
            compile_framework(model, **({} if cfg.compile is True else {"backend": cfg.compile}))
        if info.enabled:
            run.ddp_model = nn.parallel.DistributedDataParallel(
                model, device_ids=[info.device.index] if info.device.type == "cuda" else None)
        run.stepper = TrainStep(model, run.optimizer, forward=run.ddp_model, accum_steps=cfg.accum_steps,
                                grad_clip=cfg.grad_clip, autocast_dtype=run.autocast_dtype, scaler=run.scaler,
                                ema_timing=cfg.ema_timing)
        run.stop = horizon if max_steps is None else min(horizon, run.start_step + int(max_steps))
        run.logger = MetricsLogger(workdir, resume_step=run.start_step if folder.resume else None,
                                   enabled=info.is_main, tensorboard=cfg.tensorboard)
        run.stream = data.stream(seed=cfg.seed, rank=info.rank, world_size=info.world_size, state=data_state,
                                 **mask_planning(model, data, data_info, cfg, info, start_step=run.start_step,
                                                 data_state=data_state))
    except BaseException:
        if info.is_main and not folder.resume:
            clear_fresh_folder(workdir)
        run.release()
        raise
    return run


def clear_fresh_folder(workdir: Path) -> None:
    """Undo what a fresh run wrote before it failed to start (its record, an empty log), so the same command
    can run again. The claim found the folder empty (or moved its content aside) and the lock is still held,
    so everything in it but the lock is this run's; links are removed, never followed."""
    import shutil

    from crossscale_kit.train.rundir import LOCK_NAME

    for entry in workdir.iterdir():
        if entry.name == LOCK_NAME:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
