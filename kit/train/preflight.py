"""Checks that run before step 1 and report every problem at once."""
from __future__ import annotations

import logging

import torch

from kit.frameworks.context import StepContext
from kit.io import BANDS, shard_units_warning


class ConfigError(ValueError):
    """The run's configuration cannot work; the message lists every problem found and its fix."""


def preflight(framework, data, *, batch_size: int, world_size: int = 1) -> dict:
    """Validate data and framework together before any training work.

    1. ``data.check()``: the shard folder exists, holds shards, and its first pair is valid
       (band count, exact integer MR/HR ratio, finite values).
    2. batch arithmetic (per-rank batch >= 1).
    3. a dry forward of the framework on a random batch of the exact shapes the loader will produce,
       which surfaces image size vs patch size, teacher grid vs scale, visible count vs grid, and
       losses that need more patches or images than the configuration gives.

    Returns:
        the data summary of ``data.check()``.

    Raises:
        ConfigError listing every problem found.
    """
    problems: list[str] = []
    info: dict = {}
    try:
        info = data.check()
    except (ValueError, FileNotFoundError, OSError) as exc:
        problems.append(f"data: {exc}")
    norm = getattr(data, "normalize", None)
    if info.get("root") and hasattr(norm, "describe"):  # stored units far from the recipe's normalisation: say so
        stats = norm.describe("mr")
        note = shard_units_warning(info["root"], stats["mean"], stats["std"], info.get("band_names") or BANDS)
        if note:
            logging.getLogger(__name__).warning("data: %s", note)
    per_rank = batch_size // max(world_size, 1)
    if per_rank < 1:
        problems.append(f"batch: batch_size {batch_size} gives {per_rank} images per rank on {world_size} ranks; raise it.")
    # the model check runs even when the data check failed (with the configured shapes), so one
    # error lists the problems of both
    crop = getattr(data, "crop", None)
    size = getattr(crop, "size", None)
    bands = info.get("bands", getattr(data, "bands", 4))
    scale = info.get("scale", getattr(data, "scale", None) or 2)
    if size is not None:
        if hasattr(crop, "output_sizes"):  # what the loader really emits (after any patch jitter)
            size, hr_size = crop.output_sizes(scale)
        else:
            size = size if isinstance(size, int) else size[0]
            hr_size = getattr(crop, "hr_size", None) or scale * size
        g = torch.Generator().manual_seed(0)
        b = 2  # two images exercise every shape check
        batch = {
            "mr": torch.randn(b, bands, size, size, generator=g),
            "hr": torch.randn(b, bands, hr_size, hr_size, generator=g),
        }
        was_training = framework.training
        try:
            framework.eval()  # a shape check, not a step: learned parts may refuse no_grad in training mode
            with torch.no_grad():
                framework(batch, StepContext.single(b, seed=0))
        except (ValueError, IndexError, TypeError, RuntimeError) as exc:
            problems.append(f"model: {exc}")
        finally:
            framework.train(was_training)
    if problems:
        raise ConfigError(
            "the run cannot start; fix the following and run again:\n" + "\n".join(f"  - {p}" for p in problems)
        )
    return info
