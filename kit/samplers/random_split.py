"""LatentMIM's random visible / target split (Wei, Gupta, Morgado, ECCV 2024)."""
from __future__ import annotations

import gin
import torch

from kit.samplers.base import PatchSampler


@gin.register
class RandomSplit(PatchSampler):
    """``num_visible`` patches per image drawn uniformly at random without replacement; the rest are targets.

    Args:
        num_visible: visible patches per image (paper: 20 of 196, about 10 %).
        num_targets: how many of the remaining patches are targets; None takes all of them.

    Returns from ``sample``: ``{"visible": (B, K), "target": (B, M)}``, disjoint, each sorted.
    """

    def __init__(self, num_visible: int = 20, num_targets: int | None = None) -> None:
        if num_visible < 1:
            raise ValueError(f"num_visible must be >= 1, got {num_visible}.")
        if num_targets is not None and num_targets < 1:
            raise ValueError(f"num_targets must be >= 1 or None, got {num_targets}.")
        self.num_visible, self.num_targets = num_visible, num_targets

    def sample(self, batch_size: int, grid: tuple[int, int], generator: torch.Generator | None = None) -> dict:
        n = grid[0] * grid[1]
        m = n - self.num_visible if self.num_targets is None else self.num_targets
        if self.num_visible + m > n or m < 1:
            raise ValueError(
                f"{self.num_visible} visible + {m} target patches do not fit a {grid[0]}x{grid[1]} grid of {n}; "
                "lower RandomSplit.num_visible/num_targets or raise the image size."
            )
        order = torch.rand(batch_size, n, generator=generator).argsort(dim=1)
        visible = order[:, : self.num_visible].sort(dim=1).values
        target = order[:, self.num_visible : self.num_visible + m].sort(dim=1).values
        return {"visible": visible, "target": target}
