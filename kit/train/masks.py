"""Patch masks drawn in the loader workers, off the training process's critical path.

The released I-JEPA draws its multiblock masks in the DataLoader's collate; this kit's samplers draw
per step from a generator seeded by ``(seed, step, micro-batch)`` (:func:`crossscale_kit.train.seeds.mask_context`).
:class:`MaskPlanner` makes those same draws in the worker that makes the micro-batch: the stream hands
it the batch's position ``n`` in the rank's sequence (counted across resumes), the planner maps it to
``(step, micro) = divmod(n, accum_steps)`` and returns the framework's masks, bit-identical to what its
forward would draw. The loop checks the tag against the step it runs and puts the masks in the step's
context; a batch without a plan (or with a plan for another step) is drawn in the forward as before.
"""
from __future__ import annotations

from dataclasses import dataclass

from crossscale_kit.frameworks.base import Framework
from crossscale_kit.frameworks.context import PlannedMasks, StepContext
from crossscale_kit.train.seeds import mask_context


@dataclass(frozen=True)
class MaskPlanner:
    """Draws the masks of the rank's ``n``-th micro-batch (picklable: holds samplers, not the model).

    Args:
        samplers: the framework's :meth:`~crossscale_kit.frameworks.base.Framework.mask_samplers`, in draw order.
        grid: the student's patch grid at the data's output size.
        seed, rank, world_size, local_batch, accum_steps: as the train loop runs.
        offset: added to the stream's batch count ``n`` to give the run's micro-batch number: 0 when the stream
            continues from the checkpoint's position, ``start_step * accum_steps`` when a resumed run restarts
            its data stream (a checkpoint of another world size).
    """

    samplers: tuple
    grid: tuple[int, int]
    seed: int
    rank: int
    world_size: int
    local_batch: int
    accum_steps: int = 1
    offset: int = 0

    @classmethod
    def for_framework(cls, framework: Framework, grid: tuple[int, int], **kwargs) -> "MaskPlanner | None":
        """The planner of ``framework``, or None when its forward draws no masks."""
        samplers = tuple(framework.mask_samplers())
        return cls(samplers=samplers, grid=tuple(grid), **kwargs) if samplers else None

    def position(self, n: int) -> tuple[int, int]:
        """``(step, micro)`` of the rank's ``n``-th micro-batch."""
        return divmod(int(n) + self.offset, self.accum_steps)

    def context(self, step: int, micro: int) -> StepContext:
        return mask_context(self.seed, step, micro, rank=self.rank, local_batch=self.local_batch,
                            world_size=self.world_size)

    def __call__(self, n: int) -> dict:
        """``{"step", "micro", "masks": PlannedMasks}`` of micro-batch ``n``."""
        step, micro = self.position(n)
        masks = Framework.draw_planned(list(self.samplers), self.local_batch, self.grid, self.context(step, micro))
        return {"step": step, "micro": micro, "masks": masks}


def attach_plan(ctx: StepContext, plan: dict | None) -> StepContext:
    """``ctx`` with the planned masks of ``plan`` when they were drawn for ``ctx``'s step and micro-batch."""
    if plan is None or plan.get("masks") is None:
        return ctx
    if (plan["step"], plan["micro"]) != (ctx.step, ctx.micro):
        raise ValueError(
            f"the loader planned masks for step {plan['step']} micro-batch {plan['micro']} but the loop runs step "
            f"{ctx.step} micro-batch {ctx.micro}: the data stream and the step counter are out of step (a stream "
            "state from another run?); resume with the run's own checkpoint."
        )
    planned: PlannedMasks = plan["masks"]
    return ctx.with_planned(PlannedMasks(planned.masks, planned.samplers, planned.grid))
