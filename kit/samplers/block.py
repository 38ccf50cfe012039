"""Contiguous block of patches for the spatial-affinity sampling ablation (the paper, Fig. 2c, Table IV)."""
from __future__ import annotations

import math

import gin
import torch

from crossscale_kit.samplers.base import BlockMasks, PatchSampler

DRAWS = ("area", "side")


@gin.register
class BlockSampler(PatchSampler):
    """One random rectangle of patches per image.

    ``draw="area"`` (default) is the paper authors' ``RectangularPatchMaskCollator``: side lengths are
    integers in ``[floor(side[0] g), floor(side[1] g)]`` (``[5, 9]`` on a 14 grid; per axis on a
    non-square grid), the area is an integer drawn uniformly from ``[min^2, max^2]`` and the aspect
    ``width / height`` from ``U(aspect)``; ``width = floor(clip(sqrt(area * aspect), min, max))``,
    ``height = floor(clip(sqrt(area / aspect), min, max))``. On a 14 grid a block holds 45.6 patches
    on average. ``draw="side"`` is the kit's earlier draw: a side fraction ``u ~ U(side)`` of
    ``sqrt(gh gw)`` and ``height / width`` ratio ``a ~ U(aspect)`` give ``h = round(u sqrt(gh gw a))``,
    ``w = round(u sqrt(gh gw / a))``, clipped to the grid (sides 4-14 on a 14 grid, about 61 patches).

    Either way the corner is uniform over every position where the block fits (last row and column
    included), and the blocks are truncated to the smallest patch count of the batch, keeping each
    block's first patches in row-major order (about 25 kept at batch 128 with the authors' draw).

    Used as ``SpatialAffinity.sampler``: the student encodes these patches in an extra pass.

    Args:
        side: ``(min, max)`` fraction of the grid side, in ``(0, 1]`` (paper: 0.4-0.7).
        aspect: ``(min, max)`` aspect ratio, > 0 (paper: 0.5-2); width / height for ``"area"``,
            height / width for ``"side"``.
        min_keep: least number of patches per image (a block of fewer patches is redrawn; ValueError
            if the largest block cannot reach it).
        draw: ``"area"`` (the authors' collator) or ``"side"`` (the kit's earlier draw).

    Returns from ``sample``: :class:`BlockMasks` with ``visible`` ``(B, K)`` long, row-major over the grid,
    each row sorted.
    """

    def __init__(
        self,
        side: tuple[float, float] = (0.4, 0.7),
        aspect: tuple[float, float] = (0.5, 2.0),
        min_keep: int = 1,
        draw: str = "area",
    ) -> None:
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
        if draw not in DRAWS:
            raise ValueError(f"BlockSampler.draw must be one of {DRAWS}, got {draw!r}.")
        self.side, self.aspect, self.min_keep, self.draw = (lo, hi), (alo, ahi), int(min_keep), draw

    def __repr__(self) -> str:
        return f"BlockSampler(side={self.side}, aspect={self.aspect}, min_keep={self.min_keep}, draw={self.draw!r})"

    def side_bounds(self, g: int) -> tuple[int, int]:
        """Integer side range ``[max(1, floor(side[0] g)), max(1, floor(side[1] g))]`` of the ``"area"`` draw."""
        return max(1, int(self.side[0] * g)), max(1, int(self.side[1] * g))

    def block_shape(self, side: float, aspect: float, grid: tuple[int, int]) -> tuple[int, int]:
        """``(h, w)`` of a ``"side"``-draw block with the given side fraction and aspect ratio on ``grid``."""
        gh, gw = grid
        base = side * math.sqrt(gh * gw)
        h = min(max(int(round(base * math.sqrt(aspect))), 1), gh)
        w = min(max(int(round(base / math.sqrt(aspect))), 1), gw)
        return h, w

    def largest_block(self, grid: tuple[int, int], steps: int = 65) -> int:
        """Most patches any draw can give on ``grid``."""
        if self.draw == "area":
            return min(self.side_bounds(grid[0])[1], grid[0]) * min(self.side_bounds(grid[1])[1], grid[1])
        sides = torch.linspace(self.side[0], self.side[1], steps).tolist()
        aspects = torch.linspace(self.aspect[0], self.aspect[1], steps).tolist()
        return max(h * w for h, w in (self.block_shape(s, a, grid) for s in sides for a in aspects))

    def _shapes(self, n: int, gh: int, gw: int, generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Heights and widths ``(n,)`` long of ``n`` blocks."""
        u = torch.rand(n, 2, generator=generator, dtype=torch.float64)
        alo, ahi = self.aspect
        aspect = alo + u[:, 1] * (ahi - alo)
        if self.draw == "area":
            (hlo, hhi), (wlo, whi) = self.side_bounds(gh), self.side_bounds(gw)
            area = torch.randint(hlo * wlo, hhi * whi + 1, (n,), generator=generator).double()
            w = (area * aspect).sqrt().clamp(wlo, whi).floor().long().clamp(max=gw)
            h = (area / aspect).sqrt().clamp(hlo, hhi).floor().long().clamp(max=gh)
            return h, w
        base = (self.side[0] + u[:, 0] * (self.side[1] - self.side[0])) * math.sqrt(gh * gw)
        h = torch.round(base * aspect.sqrt()).long().clamp(1, gh)
        w = torch.round(base / aspect.sqrt()).long().clamp(1, gw)
        return h, w

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
        h, w = self._shapes(batch_size, gh, gw, generator)
        small = h * w < self.min_keep
        while bool(small.any()):  # redraw the blocks below min_keep
            rh, rw = self._shapes(int(small.sum()), gh, gw, generator)
            h[small], w[small] = rh, rw
            small = h * w < self.min_keep
        u = torch.rand(batch_size, 2, generator=generator, dtype=torch.float64)
        top = (u[:, 0] * (gh - h + 1)).floor().long()
        left = (u[:, 1] * (gw - w + 1)).floor().long()
        rows = torch.arange(gh)[None, :, None]
        cols = torch.arange(gw)[None, None, :]
        t, l_, hh, ww = (v[:, None, None] for v in (top, left, h, w))
        masks = ((rows >= t) & (rows < t + hh) & (cols >= l_) & (cols < l_ + ww)).reshape(batch_size, gh * gw)
        k = int(masks.sum(dim=1).min())
        key = torch.where(masks, torch.arange(gh * gw).expand_as(masks), torch.full_like(masks, gh * gw, dtype=torch.long))
        visible = key.sort(dim=1).values[:, :k]
        return BlockMasks(visible, num_patches=gh * gw)
