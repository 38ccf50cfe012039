"""Random visible / target split: LatentMIM (Wei, Gupta, Morgado, ECCV 2024) and MAE (He et al., CVPR 2022)."""
from __future__ import annotations

import gin
import torch

from crossscale_kit.samplers.base import PatchSampler, SplitMasks


@gin.register
class RandomSplit(PatchSampler):
    """Visible patches drawn uniformly at random without replacement per image; the rest are targets.

    Give either a fixed count ``num_visible`` (LatentMIM: 20 of 196) or a ``mask_ratio`` (MAE: 0.75,
    which keeps ``int(N * (1 - mask_ratio))`` patches visible, 49 of 196, as MAE's release rounds).

    Args:
        num_visible: visible patches per image; None when ``mask_ratio`` is given.
        num_targets: how many of the remaining patches are targets; None takes all of them.
        mask_ratio: fraction of the grid that is masked, in ``(0, 1)``; None when ``num_visible`` is given.

    Returns from ``sample``: :class:`SplitMasks` with ``visible`` ``(B, K)`` and ``targets`` ``(B, M)``
    long, disjoint, each row sorted.
    """

    def __init__(self, num_visible: int | None = 20, num_targets: int | None = None, mask_ratio: float | None = None) -> None:
        if (num_visible is None) == (mask_ratio is None):
            raise ValueError(
                f"RandomSplit takes exactly one of num_visible ({num_visible}) and mask_ratio ({mask_ratio}); "
                "set the other to None."
            )
        if num_visible is not None and num_visible < 1:
            raise ValueError(f"num_visible must be >= 1, got {num_visible}.")
        if mask_ratio is not None and not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must lie in (0, 1), got {mask_ratio}.")
        if num_targets is not None and num_targets < 1:
            raise ValueError(f"num_targets must be >= 1 or None, got {num_targets}.")
        self.num_visible, self.num_targets, self.mask_ratio = num_visible, num_targets, mask_ratio

    def __repr__(self) -> str:
        return f"RandomSplit(num_visible={self.num_visible}, num_targets={self.num_targets}, mask_ratio={self.mask_ratio})"

    def visible_count(self, num_patches: int) -> int:
        """Visible patches per image on a grid of ``num_patches``."""
        if self.num_visible is not None:
            return self.num_visible
        return int(num_patches * (1.0 - self.mask_ratio))

    def sample(self, batch_size: int, grid: tuple[int, int], generator: torch.Generator | None = None) -> SplitMasks:
        n = grid[0] * grid[1]
        k = self.visible_count(n)
        m = n - k if self.num_targets is None else self.num_targets
        if k + m > n or m < 1 or k < 1:
            raise ValueError(
                f"{k} visible + {m} target patches do not fit a {grid[0]}x{grid[1]} grid of {n}; "
                "lower RandomSplit.num_visible/num_targets (or change mask_ratio) or raise the image size."
            )
        order = torch.rand(batch_size, n, generator=generator).argsort(dim=1)
        visible = order[:, :k].sort(dim=1).values
        targets = order[:, k : k + m].sort(dim=1).values
        return SplitMasks(visible, targets, num_patches=n)
