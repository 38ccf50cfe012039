"""The host-framework role: an SSL objective that the spatial-affinity add-on can wrap."""
from __future__ import annotations

import abc
from dataclasses import dataclass, field

import torch
from torch import nn

from kit.ema.ema import ema_update
from kit.encoders.vit import ViTEncoder


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
    calls, each step: ``out = fw(batch, generator)``; ``out.loss.backward()``; optimizer step;
    ``fw.ema_update(momentum)`` with ``momentum = fw.momentum(step, total_steps)``.
    """

    #: which image of the batch the student sees: "mr" or "hr"
    view: str = "mr"

    @abc.abstractmethod
    def forward(self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None) -> HostOutput:
        """Compute the loss.

        Args:
            batch: ``{"mr": (B, C, H, W), "hr": (B, C, s*H, s*W)}`` float32, normalised per sensor.
                A host reads ``batch[self.view]``.
            generator: CPU generator for all mask/patch sampling of this step (seeded per step, so a
                resumed run draws the same patches).
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
    def sample_patches(sampler, batch: dict, grid: tuple[int, int], generator: torch.Generator | None) -> dict:
        """Draw patch index sets for this process's images, consistently with the global batch.

        Under data parallelism the loop puts ``batch["sample_slice"] = (offset, global_batch)`` and
        seeds ``generator`` identically on every rank: the sampler draws for the whole global batch and
        each rank keeps its rows, so N ranks draw exactly the masks a single process would.
        Without the key, the sampler draws for the local batch alone.

        Returns:
            the sampler's dict with every tensor cut to the local batch ``(B, ...)``.
        """
        local = next(v for k, v in batch.items() if torch.is_tensor(v) and v.dim() == 4).shape[0]
        offset, total = batch.get("sample_slice", (0, local))
        masks = sampler.sample(total, grid, generator)
        return {k: (v[offset : offset + local] if torch.is_tensor(v) else v) for k, v in masks.items()}

    def ema_update(self, momentum: float) -> None:
        """Update every EMA copy towards its online module (see :mod:`kit.ema`)."""
        ema_update(self.ema_pairs(), momentum)
