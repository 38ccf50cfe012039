"""The seeds that make every step reproducible: one function of ``(seed, step, rank, micro-batch)``.

Used by the train loop (:func:`micro_context`) and by the loader workers that draw a step's masks ahead
of time (:func:`mask_context`, see :mod:`crossscale_kit.train.masks`), so both make the same draws.
"""
from __future__ import annotations

import random

import numpy as np
import torch

from crossscale_kit.frameworks.context import StepContext

GLOBAL = 2**31  # the "rank" of draws shared by all ranks (patch masks of the global batch)


def step_seed(seed: int, step: int, rank: int, micro: int = 0) -> int:
    """A 63-bit seed that depends only on ``(seed, step, rank, micro)`` (micro-batch 0: ``(seed, step, rank)``)."""
    entropy = [seed, step, rank] + ([micro] if micro else [])
    return int(np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint64)[0] >> np.uint64(1))


def seed_host_rngs(seed: int, rank: int) -> None:
    """Seed Python's and NumPy's global generators from ``(seed, rank)`` at the start of a fresh run.

    The kit draws nothing from them (its draws come from :func:`micro_context`'s seeds), but checkpoints
    save their states for an exact resume: seeded, two identical runs write byte-identical checkpoints.
    """
    state = np.random.SeedSequence([seed, rank, 0x5EED]).generate_state(4, dtype=np.uint32)
    random.seed(int.from_bytes(state.tobytes(), "little"))
    np.random.seed(state)


def micro_context(seed: int, step: int, micro: int, *, rank: int, local_batch: int, world_size: int) -> StepContext:
    """Seed micro-batch ``micro`` of optimizer step ``step`` and describe it to the framework.

    Patch masks come from a generator seeded by ``(seed, step, micro)``, the same on every rank, drawn
    for the micro-batch's global batch (each rank keeps its rows): the micro-batches of a step get
    different masks, N ranks draw what one process would, and a resumed run redraws them exactly.
    Module randomness (drop-path) is seeded per rank by ``(seed, step, rank, micro)``.
    """
    torch.manual_seed(step_seed(seed, step, rank, micro))
    return mask_context(seed, step, micro, rank=rank, local_batch=local_batch, world_size=world_size)


def mask_context(seed: int, step: int, micro: int, *, rank: int, local_batch: int, world_size: int) -> StepContext:
    """:func:`micro_context` without touching the global RNG: what a loader worker planning masks needs."""
    gen = torch.Generator().manual_seed(step_seed(seed, step, GLOBAL, micro))
    return StepContext(step=step, micro=micro, generator=gen, global_batch=local_batch * world_size,
                       rows=slice(rank * local_batch, (rank + 1) * local_batch))
