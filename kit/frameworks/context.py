"""What a training step hands a framework besides the batch: the typed step context."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class StepContext:
    """Everything about the step that is not data.

    Attributes:
        step: the optimizer step being computed (0-based).
        generator: CPU generator for every patch/mask draw of the step. Seeded from ``(seed, step)``
            identically on every rank, so samplers draw for the *global* batch and each rank keeps
            ``rows``; a resumed run draws exactly what an uninterrupted one drew.
        rows: this rank's rows of the global batch, ``slice(offset, offset + local_batch)``.
        global_batch: number of images in the global batch (all ranks, one micro-batch).
    """

    step: int = 0
    generator: torch.Generator | None = None
    rows: slice | None = None
    global_batch: int | None = None

    @classmethod
    def single(cls, batch_size: int, step: int = 0, seed: int | None = None) -> "StepContext":
        """Context of a one-process step on ``batch_size`` images (tests, benchmarks, notebooks)."""
        gen = torch.Generator().manual_seed(seed if seed is not None else step)
        return cls(step=step, generator=gen, rows=slice(0, batch_size), global_batch=batch_size)

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
