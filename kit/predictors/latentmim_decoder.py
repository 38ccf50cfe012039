"""LatentMIM cross-attention decoder (Wei, Gupta, Morgado, ECCV 2024)."""
from __future__ import annotations

import gin
import torch
import torch.nn.functional as F
from timm.layers import Mlp
from torch import nn

from kit.encoders.pos_embed import sincos_2d


class _CrossBlock(nn.Module):
    """Pre-norm block: self-attention over the queries, cross-attention to the context, MLP."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm_q1 = nn.LayerNorm(dim)
        self.self_attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.norm_q2 = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.cross_attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.norm_q3 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, q: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        h = self.norm_q1(q)
        q = q + self.self_attn(h, h, h, need_weights=False)[0]
        kv = self.norm_kv(ctx)
        q = q + self.cross_attn(self.norm_q2(q), kv, kv, need_weights=False)[0]
        return q + self.mlp(self.norm_q3(q))


@gin.register
class CrossAttentionDecoder(nn.Module):
    """Predicts target-patch latents from the visible ones.

    Visible tokens are projected to the decoder width and given fixed sin-cos positions. Each target
    query starts as ``mask_token + pos_t + sum_v softmax_v(<pos_t, pos_v> / sqrt(width)) * ctx_v``, the
    position-weighted average of the visible tokens that LatentMIM uses instead of a bare mask token.
    ``depth`` blocks of (self-attention over the queries, cross-attention to the visible tokens, MLP),
    a LayerNorm and ``Linear(width -> out_dim)`` follow.

    Args:
        in_dim: width of the visible tokens ``D``.
        out_dim: width of the predictions (None keeps ``in_dim``).
        width: decoder width (paper: 512). depth: blocks (paper: 3). num_heads: (paper: 16).

    Shapes:
        ``forward(visible (B, K, in_dim), visible_idx (B, K), target_idx (B, M), grid (gh, gw))
        -> (B, M, out_dim)``; indices row-major over ``grid``.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int | None = None,
        width: int = 512,
        depth: int = 3,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        if width % num_heads or width % 4:
            raise ValueError(f"decoder width {width} must be divisible by num_heads {num_heads} and by 4.")
        if depth < 1:
            raise ValueError(f"decoder depth must be >= 1, got {depth}.")
        self.width = width
        self.embed = nn.Linear(in_dim, width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        nn.init.normal_(self.mask_token, std=0.02)
        self.blocks = nn.ModuleList(_CrossBlock(width, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, out_dim or in_dim)
        self._pos: dict[tuple[int, int, torch.device], torch.Tensor] = {}

    def _pos_table(self, grid: tuple[int, int], device: torch.device) -> torch.Tensor:
        key = (grid[0], grid[1], device)
        if key not in self._pos:
            self._pos[key] = sincos_2d(grid[0], grid[1], self.width).to(device)
        return self._pos[key]

    def forward(
        self,
        visible: torch.Tensor,
        visible_idx: torch.Tensor,
        target_idx: torch.Tensor,
        grid: tuple[int, int],
    ) -> torch.Tensor:
        if visible.shape[:2] != visible_idx.shape:
            raise ValueError(f"visible {tuple(visible.shape)} does not match visible_idx {tuple(visible_idx.shape)}.")
        pos = self._pos_table(grid, visible.device)
        pos_v = pos[visible_idx].to(visible.dtype)  # (B, K, W)
        pos_t = pos[target_idx].to(visible.dtype)  # (B, M, W)
        ctx = self.embed(visible) + pos_v
        weights = F.softmax(pos_t @ pos_v.transpose(1, 2) / self.width**0.5, dim=-1)  # (B, M, K)
        q = self.mask_token.to(ctx.dtype) + pos_t + weights @ ctx
        for blk in self.blocks:
            q = blk(q, ctx)
        return self.head(self.norm(q))
