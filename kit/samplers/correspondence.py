"""MR -> HR patch correspondence.

MR patch ``(u, v)`` on grid ``(H, W)`` owns HR patches ``(s*u + i, s*v + j)``, ``0 <= i, j < s``, on grid
``(s*H, s*W)``. They are emitted in ``(i, j)`` row-major order, so HR tokens gathered with the result
reshape to ``(B, K, s, s, D)``.
"""
from __future__ import annotations

import torch
from einops import rearrange


def mr_to_hr_indices(idx: torch.Tensor, mr_grid: tuple[int, int], scale: int) -> torch.Tensor:
    """HR patch indices under MR patch indices.

    Args:
        idx: ``(B, K)`` long, row-major over ``mr_grid`` ``(H, W)``, in ``[0, H*W)`` (checked where drawn,
            by the samplers; an index outside the grid fails in the lookup, never a device read here).
        mr_grid: MR patch grid ``(H, W)``.
        scale: integer ``s >= 1``.

    Returns:
        ``(B, K * s * s)`` long, row-major over the HR grid ``(s*H, s*W)``; entries
        ``[k*s*s : (k+1)*s*s]`` are the block of ``idx[:, k]`` in ``(i, j)`` order.
    """
    if int(scale) != scale or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}.")
    h, w = mr_grid
    # the HR grid's indices, cut into s x s blocks: row (u*W + v) of `blocks` lists the HR patches of MR
    # patch (u, v) in (i, j) row-major order
    hr_grid = torch.arange(h * scale * w * scale, device=idx.device)
    blocks = rearrange(hr_grid, "(h i w j) -> (h w) (i j)", h=h, i=scale, w=w, j=scale)
    return rearrange(blocks[idx], "b k n -> b (k n)")
