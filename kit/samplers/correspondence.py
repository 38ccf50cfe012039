"""MR -> HR patch correspondence.

MR patch ``(u, v)`` on grid ``(H, W)`` owns HR patches ``(s*u + i, s*v + j)``, ``0 <= i, j < s``, on grid
``(s*H, s*W)``. They are emitted in ``(i, j)`` row-major order, so HR tokens gathered with the result
reshape to ``(B, K, s, s, D)``.
"""
from __future__ import annotations

import torch


def mr_to_hr_indices(idx: torch.Tensor, mr_grid: tuple[int, int], scale: int) -> torch.Tensor:
    """HR patch indices under MR patch indices.

    Args:
        idx: ``(B, K)`` long, row-major over ``mr_grid`` ``(H, W)``.
        mr_grid: MR patch grid ``(H, W)``.
        scale: integer ``s >= 1``.

    Returns:
        ``(B, K * s * s)`` long, row-major over the HR grid ``(s*H, s*W)``; entries
        ``[k*s*s : (k+1)*s*s]`` are the block of ``idx[:, k]`` in ``(i, j)`` order.
    """
    if int(scale) != scale or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}.")
    h, w = mr_grid
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= h * w):
        raise IndexError(f"MR patch indices must lie in [0, {h * w}) for grid {h}x{w}.")
    u = torch.div(idx, w, rounding_mode="floor")
    v = idx % w
    off = torch.arange(scale, device=idx.device)
    rows = (scale * u)[..., None, None] + off[:, None]  # (B, K, s, 1)
    cols = (scale * v)[..., None, None] + off[None, :]  # (B, K, 1, s)
    hr = rows * (scale * w) + cols  # (B, K, s, s)
    return hr.reshape(idx.shape[0], -1)
