"""Fixed 2-D sin-cos position embeddings (MAE / I-JEPA convention)."""
from __future__ import annotations

import torch


def sincos_2d(
    grid_h: int, grid_w: int, dim: int, *, temperature: float = 10000.0, stretch: bool = False
) -> torch.Tensor:
    """2-D sin-cos embedding of a ``grid_h x grid_w`` patch grid.

    Half of the channels encode the row, half the column; each half is ``[sin, cos]`` over
    ``dim/4`` frequencies ``temperature ** (-k / (dim/4))``.

    Args:
        stretch: evaluate the table at ``k * g / (g - 1)`` instead of at the integer ``k`` (``g`` the
            grid side; ``g = 1`` gives 0): LatentMIM's released table, ``linspace(0, 1, g)`` scaled to
            ``g``, so the last patch sits at ``g``, not ``g - 1``.

    Returns:
        ``(grid_h * grid_w, dim)`` float32, row-major (``idx = row * grid_w + col``).
    """
    if dim % 4:
        raise ValueError(f"sin-cos position embedding needs an embedding size divisible by 4, got {dim}.")
    quarter = dim // 4
    omega = 1.0 / temperature ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    rows = torch.arange(grid_h, dtype=torch.float64)
    cols = torch.arange(grid_w, dtype=torch.float64)
    if stretch:
        rows = rows * (grid_h / max(grid_h - 1, 1))
        cols = cols * (grid_w / max(grid_w - 1, 1))
    rr, cc = torch.meshgrid(rows, cols, indexing="ij")
    out_r = rr.reshape(-1, 1) * omega  # (HW, dim/4)
    out_c = cc.reshape(-1, 1) * omega
    # MAE puts the width (column) half first: emb_h uses grid[0] which is w in their meshgrid.
    emb = torch.cat([out_c.sin(), out_c.cos(), out_r.sin(), out_r.cos()], dim=1)
    return emb.float()


_TABLES: dict[tuple[int, int, int, torch.device, bool], torch.Tensor] = {}


def sincos_2d_on(grid_h: int, grid_w: int, dim: int, device: torch.device, *, stretch: bool = False) -> torch.Tensor:
    """:func:`sincos_2d` on ``device``, computed once per grid, width, device and spacing (a constant: never trained)."""
    key = (grid_h, grid_w, dim, torch.device(device), bool(stretch))
    if key not in _TABLES:
        _TABLES[key] = sincos_2d(grid_h, grid_w, dim, stretch=stretch).to(device)
    return _TABLES[key]
