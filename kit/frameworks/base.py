"""The host-framework role: an SSL objective that the spatial-affinity add-on can wrap."""
from __future__ import annotations

import abc
from dataclasses import dataclass, field

import torch
from torch import nn

from kit.ema.ema import ema_update
from kit.encoders.vit import ViTEncoder
from kit.frameworks.context import StepContext


@dataclass
class HostOutput:
    """What a host framework returns for one batch.

    Attributes:
        loss: scalar tensor to minimise.
        logs: floats (or 0-d tensors) to log, e.g. ``{"loss/host": ...}``.
        student_idx: ``(B, K)`` long, the MR patch indices the student encoded (row-major over the
            student's patch grid), or None when the host has no patch subset.
        student_tokens: ``(B, K, D)`` student features at ``student_idx`` as the add-on should compare
            them (encoder output, or projection-head output for hosts with a head).
        grid: ``(gh, gw)`` patch grid of the student's input.
    """

    loss: torch.Tensor
    logs: dict = field(default_factory=dict)
    student_idx: torch.Tensor | None = None
    student_tokens: torch.Tensor | None = None
    grid: tuple[int, int] | None = None


class Framework(nn.Module, abc.ABC):
    """Role of every trainable objective (hosts and add-ons).

    A framework owns its online modules (trained by the optimizer) and its EMA copies. The train loop
    calls, each step: ``out = fw(batch, ctx)`` (``ctx`` a :class:`StepContext`); ``out.loss.backward()``; optimizer step;
    ``fw.ema_update(momentum)`` with ``momentum = fw.momentum(step, total_steps)``.
    """

    #: which image of the batch the student sees: "mr" or "hr"
    view: str = "mr"

    @abc.abstractmethod
    def forward(self, batch: dict[str, torch.Tensor], ctx: StepContext | None = None) -> HostOutput:
        """Compute the loss.

        Args:
            batch: ``{"mr": (B, C, H, W), "hr": (B, C, s*H, s*W)}`` float32, normalised per sensor.
                A host reads ``batch[self.view]``.
            ctx: the step context (step, the generator shared by all ranks, this rank's rows of the
                global batch); None means a one-process step with an unseeded generator.
        """

    @abc.abstractmethod
    def ema_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """``(online, ema)`` module pairs updated after every optimizer step."""

    @abc.abstractmethod
    def momentum(self, step: int, total_steps: int) -> float:
        """EMA momentum at ``step`` (a pure function of the step)."""

    @property
    @abc.abstractmethod
    def student_encoder(self) -> nn.Module:
        """The encoder that is exported at the end of training (a :class:`ViTEncoder`)."""

    def student_features(self, image: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Student features ``(B, K, D)`` of the patches ``idx`` (B, K) of ``image``, as in ``HostOutput``.

        Hosts with a projection head apply it here. Used by add-ons that sample their own patches.
        """
        return self.student_encoder(image, idx)

    def feature_modules(self) -> nn.ModuleDict:
        """The online modules whose composition gives :meth:`student_features` (copied by add-ons)."""
        return nn.ModuleDict({"encoder": self.student_encoder})

    def _init_host(self, encoder: nn.Module, view: str) -> None:
        """Shared argument checks of host frameworks: a ``ViTEncoder`` student and a valid view."""
        if view not in ("mr", "hr"):
            raise ValueError(f"{type(self).__name__}.view must be 'mr' or 'hr', got {view!r}.")
        if not isinstance(encoder, ViTEncoder):
            raise TypeError(f"{type(self).__name__}.encoder must be a ViTEncoder, got {type(encoder).__name__}.")
        self.encoder = encoder
        self.view = view

    def ema_feature_modules(self) -> nn.ModuleDict | None:
        """The EMA copies of :meth:`feature_modules` (same keys), if the host keeps them in lock-step.

        A host whose target encoder (and head) is the EMA of exactly the student feature path returns
        them here; the spatial-affinity add-on then uses them as its HR teacher instead of keeping a
        second, numerically identical copy. None (the default) makes the add-on keep its own copy.
        """
        return None

    @staticmethod
    def features_from_modules(modules: nn.ModuleDict, image: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
        """Apply a copy of :meth:`feature_modules` the way :meth:`student_features` applies the originals."""
        out = modules["encoder"](image, idx)
        if "head" in modules:
            out = modules["head"](out)
        return out

    @staticmethod
    def sample_patches(sampler, local_batch: int, grid: tuple[int, int], ctx: StepContext | None):
        """Draw patch index sets for this process's ``local_batch`` images, consistent with the global batch.

        The sampler draws for the whole global batch from ``ctx.generator`` (seeded identically on every
        rank) and each rank keeps its ``ctx.rows``, so N ranks draw exactly the masks one process would.

        Returns:
            the sampler's result with every tensor cut to the local batch ``(B, ...)``.
        """
        ctx = ctx if ctx is not None else StepContext()
        rows, total = ctx.local_rows(local_batch)
        masks = sampler.sample(total, grid, ctx.generator)
        if isinstance(masks, dict):
            return {k: (v[rows] if torch.is_tensor(v) else v) for k, v in masks.items()}
        return masks.rows(rows)

    def ema_update(self, momentum: float) -> None:
        """Update every EMA copy towards its online module (see :mod:`kit.ema`)."""
        ema_update(self.ema_pairs(), momentum)
