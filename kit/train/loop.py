"""The training loop: the single gin-configurable root of every recipe.

``train(workdir=...)`` builds nothing itself: gin hands it the framework (host, optionally wrapped by
the spatial-affinity add-on), the paired-tile data and the schedules. The work is split into small
functions with one job each::

    build_run (crossscale_kit.train.build)  ->  run_steps: train_step (crossscale_kit.train.step), log_step, save  ->  finish

Every random draw of a step is seeded from ``(seed, step, micro-batch, rank)`` and the schedules are
pure functions of the optimizer step; together with the data stream's exact position a resumed run
continues as if it had never stopped.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import time
from dataclasses import fields
from pathlib import Path
from typing import Callable

import gin
import torch
from tqdm.auto import tqdm

from crossscale_kit.encoders.export import export_encoder
from crossscale_kit.frameworks.base import Framework
from crossscale_kit.io import write_text_atomic, write_text_nofollow
from crossscale_kit.train import checkpoint as ckpt
from crossscale_kit.train import distributed as distr
from crossscale_kit.train.build import build_run
from crossscale_kit.train.signals import RunInterrupted, StopRequest
from crossscale_kit.train.state import Run, TrainConfig
from crossscale_kit.train.seeds import GLOBAL, step_seed
from crossscale_kit.train.step import StepResult, is_log_step, train_step

__all__ = ["GLOBAL", "NonFiniteError", "Run", "RunInterrupted", "TrainConfig", "step_seed", "train"]

log = logging.getLogger(__name__)

#: under torchrun, the ranks agree on a stop request at least every this many steps
STOP_CHECK_EVERY = 10


class NonFiniteError(RuntimeError):
    """Raised when too many consecutive steps had a non-finite loss or gradient norm (CLI exit code 2)."""

    exit_code = 2


@gin.configurable(denylist=["workdir", "resume", "overwrite", "max_steps", "recipe"])
def train(
    workdir: str | os.PathLike,
    *,
    framework: Framework | Callable[[], Framework] = gin.REQUIRED,
    data=gin.REQUIRED,
    batch_size: int = 128,
    accum_steps: int = 1,
    epochs: float = 300,
    total_steps: int | None = None,
    lr: Callable[[int, int], float] = gin.REQUIRED,
    lr_batch_ref: int | None = None,
    weight_decay: Callable[[int, int], float] | float = 0.05,
    no_decay: Callable | None = None,
    betas: tuple[float, float] = (0.9, 0.95),
    grad_clip: float | None = None,
    compile: bool | str = False,
    seed: int = 0,
    device: str = "auto",
    precision: str = "bf16",
    ema_timing: str = "after_step",
    log_every: int = 10,
    ckpt_every: int = 1000,
    keep_checkpoints: int = 3,
    max_nonfinite: int = 5,
    tensorboard: bool = True,
    online_probe=None,
    resume: bool | str = False,
    overwrite: bool = False,
    max_steps: int | None = None,
    recipe: list[str] | None = None,
) -> dict:
    """Pretrain ``framework`` on ``data``, export the student encoder, return a summary dict.

    Args:
        workdir: run folder: ``logs/``, ``checkpoints/`` (ckpt-*.pt + operative gin config), ``export/``.
        framework: host SSL framework or ``SpatialAffinity(host=...)``, or (as the recipes bind it) its
            class, built after ``torch.manual_seed(seed)``. data: a ``PairedTiles`` (left as configured).
        batch_size ... tensorboard: documented on :class:`crossscale_kit.train.state.TrainConfig`.
        resume: ``True``: continue from the newest usable checkpoint (an error if none, or if the config
            changes the trajectory); ``"auto"``: resume if ``workdir`` has a checkpoint, else start fresh;
            ``False``: fresh, refused in a folder that holds a run unless ``overwrite`` moves it aside.
        max_steps: stop after this many steps (smoke runs); the schedules keep the recipe's length.
        recipe: the gin files of the run (recorded in the export's meta.json).
    """
    given = locals()  # the bindings, by name (a comprehension has its own locals())
    cfg = TrainConfig(**{f.name: given[f.name] for f in fields(TrainConfig)})
    info, stop, run = distr.setup(cfg.device), StopRequest().install(), None  # workers fork later: inherit it
    try:
        run = build_run(cfg, framework, data, info, Path(workdir), resume=resume, overwrite=overwrite,
                        max_steps=max_steps, recipe=list(recipe or []))
        run.stop_request = stop
        try:
            step = run_steps(run)
        finally:
            run.logger.close()
            run.stream.close()
        return finish(run, step)
    finally:
        stop.restore()
        if run is not None:
            run.release()
        distr.teardown()


def run_steps(run: Run) -> int:
    """Train ``run.start_step .. run.stop``, checkpointing on cadence and at the end; return the last step."""
    announce(run)
    if run.stop_request is not None:
        run.stop_request.armed = True  # from now on SIGTERM / SIGINT end the run after a step and a checkpoint
    run.batches = iter(run.stream)
    bar = tqdm(total=run.stop, initial=run.start_step, disable=not run.info.is_main, desc="train",
               dynamic_ncols=True)
    run.t_last = time.perf_counter()
    try:
        for step in range(run.start_step, run.stop):
            result = train_step(run, step)
            done = step + 1
            log_now = is_log_step(run, step)
            ckpt_now = done % run.cfg.ckpt_every == 0 and done != run.stop
            # the only host reads of a step happen at log and checkpoint steps
            longest = read_nonfinite(run, done) if log_now or ckpt_now else 0
            probed = online_probe(run, done)
            if log_now:
                log_step(run, step, result, probed)
            elif probed and run.info.is_main:
                run.logger.log(done, probed)
                bar.set_postfix(loss=f"{run.last_logs['loss/total']:.4f}")
            bar.update(1)
            if longest >= run.cfg.max_nonfinite:
                raise NonFiniteError(
                    f"{longest} consecutive non-finite steps (read at step {done}); stopping. The last good "
                    f"checkpoint in {ckpt.checkpoint_dir(run.workdir)} is intact: lower the learning rate, "
                    "enable grad_clip, or check the data for NaN tiles.")
            if ckpt_now and run.nonfinite == 0:
                save(run, done)
            if done != run.stop and stop_requested(run, done, check_all=log_now or ckpt_now):
                interrupt(run, done)
        save(run, run.stop)
    finally:
        bar.close()
    return run.stop


def stop_requested(run: Run, done: int, check_all: bool = False) -> bool:
    """Whether a rank received SIGTERM / SIGINT; all ranks agree, so they stop at the same step.

    Alone, every step looks. Under torchrun the ranks agree (one tiny all-reduce, a host sync) at log and
    checkpoint steps and every :data:`STOP_CHECK_EVERY` steps, so a signal stops the run within that many
    steps while the other steps stay free of syncs.
    """
    seen = run.stop_request is not None and run.stop_request.signum is not None
    if not run.info.enabled:
        return seen
    if check_all or done % STOP_CHECK_EVERY == 0:
        return distr.broadcast_flag(seen, run.info)
    return False


def interrupt(run: Run, done: int) -> None:
    """Checkpoint step ``done`` (unless just saved) and stop the run with :class:`RunInterrupted`."""
    if run.saved_step != done:
        save(run, done)
    signum = run.stop_request.signum or signal.SIGTERM
    name = signal.Signals(signum).name
    raise RunInterrupted(
        f"stopped by {name} after step {done} of {run.horizon}; the checkpoint of step {done} is in "
        f"{ckpt.checkpoint_dir(run.workdir)}. Run the same command with --resume (or --resume auto) to continue.",
        signum)


def announce(run: Run) -> None:
    """Write the parsed config next to the run and say what is about to happen (rank 0)."""
    if not run.info.is_main:
        return
    write_text_nofollow(run.workdir / "config.gin", gin.config_str())
    log.info("training %s on %d pairs from %s: steps %d->%d of %d (batch %d, %d rank(s), %s)",
             type(run.model).__name__, run.data_info["num_samples"], run.data_info["root"], run.start_step,
             run.stop, run.horizon, run.cfg.batch_size, run.info.world_size, run.info.device)


def read_nonfinite(run: Run, done: int) -> int:
    """Read the device's count of skipped steps; return the longest run of them since the last read.

    A step with a non-finite loss or gradient on any rank is skipped on the device (no update, EMA
    untouched). The count is read at log and checkpoint steps only; see
    :class:`crossscale_kit.train.step.NonFiniteGuard` for what "consecutive" means between two reads.
    """
    current, longest, skipped = run.stepper.guard.read()
    run.nonfinite, run.skipped_since_log = current, run.skipped_since_log + skipped
    if skipped and run.info.is_main:
        log.warning("%d step(s) up to step %d had a non-finite loss or gradient: skipped, EMA untouched",
                    skipped, done)
    return longest


def online_probe(run: Run, done: int) -> dict:
    """The online probe's reading after step ``done`` when one is configured and due (rank 0), else ``{}``."""
    probe = run.cfg.online_probe
    if probe is None or not run.info.is_main or not probe.due(done, run.stop):
        return {}
    return probe(run.model.student_encoder, run.export["meta"].get("normalization"), run.info.device)


def log_step(run: Run, step: int, result: StepResult, extra: dict | None = None) -> None:
    """Average the step's logs over ranks and write them (rank 0) as the row of step ``step + 1``
    (with ``extra``, rank 0's own readings such as the online probe's)."""
    values = {**result.logs, "loss/total": result.loss}
    if result.grad_norm is not None:  # computed only when grad_clip is set
        values["grad_norm"] = result.grad_norm
    logs = distr.mean_over_ranks(values, run.info)
    logs["data/skipped"] = float(sum(run.stream.stats.values()))
    logs.update({"lr": result.lr, "wd": result.wd, "momentum": result.momentum,
                 "skipped": float(run.skipped_since_log)})
    run.skipped_since_log = 0
    now = time.perf_counter()
    probe_seconds = (extra or {}).get("probe/seconds", 0.0)  # the online probe's time is not a step's
    logs["sec_per_step"] = (now - run.t_last - probe_seconds) / (run.cfg.log_every if step != run.start_step else 1)
    run.t_last = now
    logs.update(extra or {})
    if run.info.is_main:
        run.logger.log(step + 1, logs)
    run.last_logs = logs


def save(run: Run, step: int) -> None:
    """Write the checkpoint of ``step`` (everything an exact resume needs) from rank 0."""
    run.saved_step = step
    rng_all = distr.all_gather_objects(ckpt.capture_rng(), run.info)
    data_all = distr.all_gather_objects(run.stream.state_dict(), run.info)
    if not run.info.is_main:
        return
    state = {
        "step": step,
        "total_steps": run.horizon,
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "rng": rng_all,
        "data": data_all,
        "world_size": run.info.world_size,
        "seed": run.cfg.seed,
        "export": run.export,
        "config": run.config,
        "data_identity": run.data_info.get("identity"),
    }
    if run.scaler is not None:  # fp16: the gradient scaler's scale and growth tracker
        state["scaler"] = run.scaler.state_dict()
    ckpt.save_checkpoint(run.workdir, step, state, gin.operative_config_str(), keep=run.cfg.keep_checkpoints)


def finish(run: Run, step: int) -> dict:
    """Summarise the run; on rank 0 export the student encoder, plot the losses, write summary.json."""
    info = run.info
    skipped = distr.all_gather_objects(run.stream.stats, info)
    result = {"steps": step, "total_steps": run.horizon, "workdir": str(run.workdir), "logs": run.last_logs,
              "world_size": info.world_size, "data_skipped": skipped}
    if info.is_main and any(skipped):
        log.warning("data: skipped bad samples by reason, per rank: %s (each logged with its shard and key)", skipped)
    if info.enabled:
        # every rank must hold the same weights after DDP training; record what each rank has
        with torch.no_grad():
            checksum = float(sum(p.double().sum() for p in run.model.parameters()).cpu())
        result["rank_param_checksums"] = distr.all_gather_objects(checksum, info)
    if info.is_main:
        out = export_encoder(run.model.student_encoder, run.workdir / "export", **run.export["meta"], step=step)
        result["export"] = str(out)
        recipe = ", ".join(Path(r).name for r in run.export["meta"].get("recipe", [])) or "recipe ?"
        curve = run.logger.plot(title=f"{recipe}: {step} of {run.horizon} optimizer steps")
        result["loss_curve"] = str(curve) if curve else None
        write_text_atomic(run.workdir / "summary.json", json.dumps(result, indent=2, default=str))
    return result
