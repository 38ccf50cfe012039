"""What a training step hands a framework besides the batch: the typed step context."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from crossscale_kit.samplers.base import PatchMasks


@dataclass(frozen=True)
class StepContext:
    """Everything about the step that is not data.

    Attributes:
        step: the optimizer step being computed (0-based).
        micro: the micro-batch of the step (gradient accumulation; 0 without).
        generator: CPU generator for every patch/mask draw of the step. Seeded from ``(seed, step)``
            identically on every rank, so samplers draw for the *global* batch and each rank keeps
            ``rows``; a resumed run draws exactly what an uninterrupted one drew.
        rows: this rank's rows of the global batch, ``slice(offset, offset + local_batch)``.
        global_batch: number of images in the global batch (all ranks, one micro-batch).
        planned: the step's masks drawn ahead of time (in a loader worker, from the same generator seed),
            handed out in draw order by :meth:`Framework.sample_patches`; None draws them in the forward.
    """

    step: int = 0
    micro: int = 0
    generator: torch.Generator | None = None
    rows: slice | None = None
    global_batch: int | None = None
    planned: "PlannedMasks | None" = None

    @classmethod
    def single(cls, batch_size: int, step: int = 0, seed: int | None = None) -> "StepContext":
        """Context of a one-process step on ``batch_size`` images (tests, benchmarks, notebooks)."""
        gen = torch.Generator().manual_seed(seed if seed is not None else step)
        return cls(step=step, generator=gen, rows=slice(0, batch_size), global_batch=batch_size)

    def with_planned(self, planned: "PlannedMasks | None") -> "StepContext":
        """This context with ``planned`` masks (see :class:`PlannedMasks`)."""
        return dataclasses.replace(self, planned=planned)

    def local_rows(self, local_batch: int) -> tuple[slice, int]:
        """``(rows, global_batch)`` for a local batch of ``local_batch`` images (defaults: all of them)."""
        rows = self.rows if self.rows is not None else slice(0, local_batch)
        total = self.global_batch if self.global_batch is not None else local_batch
        if rows.stop - rows.start != local_batch or rows.stop > total:
            raise ValueError(
                f"StepContext rows {rows.start}:{rows.stop} of a global batch of {total} do not fit a local batch "
                f"of {local_batch}; build the context with this rank's rows (offset, offset + local batch)."
            )
        return rows, total


class PlannedMasks:
    """Masks of one micro-batch drawn off the critical path, handed out in the order the forward draws.

    A framework's forward draws from its samplers in a fixed order (:meth:`Framework.mask_samplers`: the
    host's sampler, then an add-on's); :meth:`Framework.draw_planned` makes the same draws from the same
    generator ahead of time, so the planned masks are bit-identical to the ones the forward would draw.
    Each :meth:`take` returns the next one after checking that it was drawn by the same kind of sampler,
    for the same grid and this rank's batch.
    """

    def __init__(self, masks: tuple[PatchMasks, ...], samplers: tuple[str, ...], grid: tuple[int, int]) -> None:
        if len(masks) != len(samplers):
            raise ValueError(f"{len(masks)} planned masks for {len(samplers)} samplers.")
        self.masks, self.samplers, self.grid = tuple(masks), tuple(samplers), tuple(grid)
        self._next = 0

    def pin_memory(self) -> "PlannedMasks":
        """Pinned copies (a DataLoader's pin thread calls this), so the copy to the GPU does not block."""
        return PlannedMasks(tuple(m.pin_memory() for m in self.masks), self.samplers, self.grid)

    def take(self, sampler, local_batch: int, grid: tuple[int, int]) -> PatchMasks:
        i = self._next
        name = type(sampler).__name__
        if i >= len(self.masks) or self.samplers[i] != name or self.grid != tuple(grid):
            have = f"{self.samplers[i]} on a {self.grid} grid" if i < len(self.masks) else "none left"
            raise ValueError(
                f"planned masks do not match the forward's draw #{i} ({name} on a {tuple(grid)} grid; planned: "
                f"{have}). The loader planned for another framework or input size: build the planner from the "
                "trained framework and the data's output size (crossscale_kit.train.masks.MaskPlanner)."
            )
        masks = self.masks[i]
        if masks.batch_size != local_batch:
            raise ValueError(f"planned masks hold {masks.batch_size} images, the batch {local_batch}.")
        self._next += 1
        return masks
