"""Contiguous block of patches for the spatial-affinity sampling ablation (the paper, Fig. 2c, Table IV)."""
from __future__ import annotations

import math

import gin
import torch

from kit.samplers.base import BlockMasks, PatchSampler


@gin.register
class BlockSampler(PatchSampler):
    """One random rectangle of patches per image.

    The rectangle's side is a fraction ``side`` of the grid side and its height / width ratio is
    ``aspect``, both drawn uniformly per image: ``h = round(side * sqrt(gh * gw) * sqrt(aspect))``,
    ``w = round(side * sqrt(gh * gw) / sqrt(aspect))``, clipped to the grid; the corner is uniform over
    every position where the rectangle fits (last row and column included). The blocks are then
    truncated to the smallest patch count of the batch, keeping the first patches in row-major order so
    the kept set stays contiguous. The paper: side 0.4-0.7 of the grid, aspect 0.5-2.

    Used as ``SpatialAffinity.sampler``: the student encodes these patches in an extra pass.

    Args:
        side: ``(min, max)`` fraction of the grid side, in ``(0, 1]``.
        aspect: ``(min, max)`` height / width ratio, > 0.
        min_keep: least number of patches per image (a block of fewer patches is redrawn; ValueError
            if the largest block cannot reach it).

    Returns from ``sample``: :class:`BlockMasks` with ``visible`` ``(B, K)`` long, row-major over the grid,
    each row sorted.
    """

    def __init__(self, side: tuple[float, float] = (0.4, 0.7), aspect: tuple[float, float] = (0.5, 2.0), min_keep: int = 1) -> None:
        try:
            lo, hi = (float(v) for v in side)
            alo, ahi = (float(v) for v in aspect)
        except (TypeError, ValueError):
            raise ValueError(f"side and aspect must be (min, max) pairs, got side={side!r}, aspect={aspect!r}.") from None
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"BlockSampler.side must satisfy 0 < min <= max <= 1, got {side!r}.")
        if not 0.0 < alo <= ahi:
            raise ValueError(f"BlockSampler.aspect must satisfy 0 < min <= max, got {aspect!r}.")
        if int(min_keep) < 1:
            raise ValueError(f"BlockSampler.min_keep must be >= 1, got {min_keep}.")
        self.side, self.aspect, self.min_keep = (lo, hi), (alo, ahi), int(min_keep)

    def __repr__(self) -> str:
        return f"BlockSampler(side={self.side}, aspect={self.aspect}, min_keep={self.min_keep})"

    def block_shape(self, side: float, aspect: float, grid: tuple[int, int]) -> tuple[int, int]:
        """``(h, w)`` of a block with the given side fraction and aspect ratio on ``grid``."""
        gh, gw = grid
        base = side * math.sqrt(gh * gw)
        h = min(max(int(round(base * math.sqrt(aspect))), 1), gh)
        w = min(max(int(round(base / math.sqrt(aspect))), 1), gw)
        return h, w

    def largest_block(self, grid: tuple[int, int], steps: int = 65) -> int:
        """Most patches any draw can give on ``grid`` (side and aspect scanned on a fine grid)."""
        sides = torch.linspace(self.side[0], self.side[1], steps).tolist()
        aspects = torch.linspace(self.aspect[0], self.aspect[1], steps).tolist()
        return max(h * w for h, w in (self.block_shape(s, a, grid) for s in sides for a in aspects))

    def sample(self, batch_size: int, grid: tuple[int, int], generator: torch.Generator | None = None) -> BlockMasks:
        """Draw one block per image: ``BlockMasks(visible (B, K))``."""
        gh, gw = int(grid[0]), int(grid[1])
        if batch_size < 1 or gh < 1 or gw < 1:
            raise ValueError(f"BlockSampler needs batch_size >= 1 and a non-empty grid, got {batch_size}, {grid}.")
        largest = self.largest_block((gh, gw))
        if largest < self.min_keep:
            raise ValueError(
                f"BlockSampler blocks on a {gh}x{gw} grid hold at most {largest} patches < min_keep {self.min_keep}; "
                "lower min_keep or raise the image size."
            )
        masks = torch.zeros(batch_size, gh * gw, dtype=torch.bool)
        for b in range(batch_size):
            while True:
                u = torch.rand(2, generator=generator).tolist()
                side = self.side[0] + u[0] * (self.side[1] - self.side[0])
                aspect = self.aspect[0] + u[1] * (self.aspect[1] - self.aspect[0])
                h, w = self.block_shape(side, aspect, (gh, gw))
                if h * w >= self.min_keep:
                    break
            top = int(torch.randint(0, gh - h + 1, (1,), generator=generator))
            left = int(torch.randint(0, gw - w + 1, (1,), generator=generator))
            m = masks[b].view(gh, gw)
            m[top : top + h, left : left + w] = True
        k = int(masks.sum(dim=1).min())
        key = torch.where(masks, torch.arange(gh * gw).expand_as(masks), torch.full_like(masks, gh * gw, dtype=torch.long))
        visible = key.sort(dim=1).values[:, :k]
        return BlockMasks(visible, num_patches=gh * gw)
