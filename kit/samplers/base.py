"""The patch-sampler role."""
from __future__ import annotations

import abc

import torch


class PatchSampler(abc.ABC):
    """Chooses which patches of a ``(gh, gw)`` grid an encoder sees.

    ``sample(batch_size, grid, generator)`` returns a dict of ``LongTensor (B, K_name)`` index sets,
    row-major over the grid (``idx = row * gw + col``), every row of one set the same length ``K_name``.
    Which names a sampler returns is part of its contract (``"visible"``/``"target"`` for LatentMIM,
    ``"context"``/``"targets"`` for I-JEPA, ``"visible"`` for the SA block sampler).
    """

    @abc.abstractmethod
    def sample(self, batch_size: int, grid: tuple[int, int], generator: torch.Generator | None = None) -> dict:
        ...
