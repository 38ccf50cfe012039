"""LatentMIM cross-attention decoder (Wei, Gupta, Morgado, ECCV 2024)."""
from __future__ import annotations

from functools import partial

import gin
import torch
import torch.nn.functional as F
from timm.layers import Mlp
from torch import nn

from crossscale_kit.encoders.init import xavier_init_
from crossscale_kit.encoders.pos_embed import sincos_2d_on


class _CrossBlock(nn.Module):
    """Pre-norm block: self-attention over the queries, cross-attention to the context, MLP."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, norm_eps: float) -> None:
        super().__init__()
        norm = partial(nn.LayerNorm, eps=norm_eps)
        self.norm_q1 = norm(dim)
        self.self_attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.norm_q2 = norm(dim)
        self.norm_kv = norm(dim)
        self.cross_attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.norm_q3 = norm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Xavier-uniform weights, zero biases, as released: self-attention has one ``(3W, W)`` qkv
        projection, cross-attention a ``(W, W)`` query and a ``(2W, W)`` key/value projection."""
        d = self.self_attn.embed_dim
        nn.init.xavier_uniform_(self.self_attn.in_proj_weight)
        nn.init.xavier_uniform_(self.cross_attn.in_proj_weight[:d])
        nn.init.xavier_uniform_(self.cross_attn.in_proj_weight[d:])
        for attn in (self.self_attn, self.cross_attn):
            nn.init.zeros_(attn.in_proj_bias)

    def forward(self, q: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        h = self.norm_q1(q)
        q = q + self.self_attn(h, h, h, need_weights=False)[0]
        kv = self.norm_kv(ctx)
        q = q + self.cross_attn(self.norm_q2(q), kv, kv, need_weights=False)[0]
        return q + self.mlp(self.norm_q3(q))


@gin.register
class CrossAttentionDecoder(nn.Module):
    """Predicts target-patch latents from the visible ones, as LatentMIM's released decoder does.

    The visible tokens are embedded ``Linear(in_dim -> width)``. Each target query starts as
    ``mask_token + sum_v softmax_v(<pos_t, pos_v> / sqrt(width)) * embed(x_v)`` (the average is over the
    embedded tokens only) and gets its own position ``pos_t`` afterwards; the keys/values are
    ``embed(x_v) + pos_v``. Positions are the fixed 2-D sin-cos table evaluated at ``k * g / (g - 1)``
    (the released table; ``stretch_positions=False`` evaluates it at integer ``k``). With
    ``class_token`` a learned CLS query (no position) joins the queries and its output is dropped;
    ``prefix`` tokens (the encoder's CLS output) are embedded and join the keys/values without a position.
    ``depth`` blocks of (self-attention over the queries, cross-attention to the keys/values, MLP), a
    LayerNorm and ``Linear(width -> out_dim)`` follow. LayerNorm eps 1e-6; the mask token starts at
    zero, the CLS query at N(0, 0.02), every Linear xavier-uniform with zero bias.

    Args:
        in_dim: width of the visible tokens ``D``.
        out_dim: width of the predictions (None keeps ``in_dim``).
        width: decoder width (paper: 512). depth: blocks (paper: 3). num_heads: (paper: 16).
        mlp_ratio: MLP hidden / width.
        class_token: keep a CLS query (released: yes).
        stretch_positions: sin-cos table at ``k * g / (g - 1)`` (released) instead of at ``k``.
        norm_eps: LayerNorm eps (released: 1e-6).

    Shapes:
        ``forward(visible (B, K, in_dim), visible_idx (B, K), target_idx (B, M), grid (gh, gw),
        prefix (B, P, in_dim) | None) -> (B, M, out_dim)``; indices row-major over ``grid``.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int | None = None,
        width: int = 512,
        depth: int = 3,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        class_token: bool = True,
        stretch_positions: bool = True,
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        if width % num_heads or width % 4:
            raise ValueError(f"decoder width {width} must be divisible by num_heads {num_heads} and by 4.")
        if depth < 1:
            raise ValueError(f"decoder depth must be >= 1, got {depth}.")
        self.width, self.in_dim, self.stretch_positions = width, in_dim, bool(stretch_positions)
        self.embed = nn.Linear(in_dim, width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width)) if class_token else None
        self.blocks = nn.ModuleList(_CrossBlock(width, num_heads, mlp_ratio, norm_eps) for _ in range(depth))
        self.norm = nn.LayerNorm(width, eps=norm_eps)
        self.head = nn.Linear(width, out_dim or in_dim)
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        xavier_init_(self)
        for blk in self.blocks:
            blk.reset_parameters()
        nn.init.zeros_(self.mask_token)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=0.02)

    def pos_table(self, grid: tuple[int, int], device: torch.device) -> torch.Tensor:
        """``(gh*gw, width)`` sin-cos table of the decoder (computed once per grid and device)."""
        return sincos_2d_on(int(grid[0]), int(grid[1]), self.width, device, stretch=self.stretch_positions)

    def forward(
        self,
        visible: torch.Tensor,
        visible_idx: torch.Tensor,
        target_idx: torch.Tensor,
        grid: tuple[int, int],
        prefix: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if visible.shape[:2] != visible_idx.shape:
            raise ValueError(f"visible {tuple(visible.shape)} does not match visible_idx {tuple(visible_idx.shape)}.")
        if prefix is not None and (prefix.dim() != 3 or prefix.shape[0] != visible.shape[0] or prefix.shape[-1] != visible.shape[-1]):
            raise ValueError(f"prefix must be (B, P, {visible.shape[-1]}) with B = {visible.shape[0]}, got {tuple(prefix.shape)}.")
        b = visible.shape[0]
        x = self.embed(visible)  # (B, K, W)
        pos = self.pos_table(grid, visible.device)
        pos_v = pos[visible_idx].to(x.dtype)  # (B, K, W)
        pos_t = pos[target_idx].to(x.dtype)  # (B, M, W)
        weights = F.softmax(pos_t @ pos_v.transpose(1, 2) / self.width**0.5, dim=-1)  # (B, M, K)
        q = self.mask_token.to(x.dtype) + weights @ x + pos_t
        kv = x + pos_v
        if prefix is not None:
            kv = torch.cat([self.embed(prefix), kv], dim=1)  # prefix tokens carry no position
        n_cls = 0
        if self.cls_token is not None:
            q = torch.cat([self.cls_token.to(q.dtype).expand(b, -1, -1), q], dim=1)
            n_cls = 1
        for blk in self.blocks:
            q = blk(q, kv)
        return self.head(self.norm(q[:, n_cls:]))
