"""I-JEPA predictor: a narrow ViT over context tokens and positioned mask tokens (Assran et al., CVPR 2023)."""
from __future__ import annotations

from functools import partial

import gin
import torch
from timm.models.vision_transformer import Block
from torch import nn

from crossscale_kit.encoders.pos_embed import sincos_2d_on


@gin.register
class IJEPAPredictor(nn.Module):
    """Predicts the target-encoder tokens of each target block from the context tokens.

    The context tokens are mapped ``Linear(D -> width)`` and given the fixed 2-D sin-cos positions of
    their patches. For every target block, one learned mask token plus the sin-cos position of each
    target patch is appended; ``depth`` pre-norm ViT blocks (timm ``Block``) attend over context + mask
    tokens; a LayerNorm and ``Linear(width -> out_dim)`` map the mask tokens back. Target blocks are
    predicted independently: the context is repeated once per block, as in I-JEPA.

    Initialised as I-JEPA's release trains it: its training script re-initialises every Linear to
    trunc_normal(std ``init_std``) with zero bias and every LayerNorm to (1, 0) after construction, which
    undoes the depth-scaled ``attn.proj`` / ``fc2`` init of its predictor class, so there is none here.
    The mask token is trunc_normal(std ``init_std``). Every LayerNorm, the final one included, has eps 1e-6.

    Args:
        in_dim: context-token width ``D`` (the encoder's embed dim).
        out_dim: prediction width (None keeps ``in_dim``).
        width: predictor width (paper: 384). depth: blocks (paper: 12). num_heads: heads (ViT-S: 6).
        mlp_ratio: MLP hidden / width. drop_path_rate: stochastic depth, linear over the blocks.
        init_std: std of the truncated-normal initialisation of the linear layers and the mask token.
        norm_eps: LayerNorm eps (released: 1e-6).

    Shapes:
        ``forward(context (B, Kc, in_dim), context_idx (B, Kc), target_idx (B, M, Kt) or (B, Kt),
        grid (gh, gw)) -> (B, M, Kt, out_dim)`` (or ``(B, Kt, out_dim)`` for a 2-D ``target_idx``);
        indices row-major over ``grid``.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int | None = None,
        width: int = 384,
        depth: int = 12,
        num_heads: int = 6,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.0,
        init_std: float = 0.02,
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        if in_dim < 1:
            raise ValueError(f"in_dim must be >= 1, got {in_dim}.")
        if depth < 1:
            raise ValueError(f"predictor depth must be >= 1, got {depth}.")
        if width % num_heads or width % 4:
            raise ValueError(
                f"predictor width {width} must be divisible by num_heads {num_heads} and by 4 (sin-cos positions)."
            )
        self.in_dim, self.width, self.depth = in_dim, width, depth
        self.embed = nn.Linear(in_dim, width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        rates = torch.linspace(0, drop_path_rate, depth).tolist()
        norm = partial(nn.LayerNorm, eps=norm_eps)
        self.blocks = nn.ModuleList(
            Block(width, num_heads, mlp_ratio=mlp_ratio, qkv_bias=True, drop_path=r, norm_layer=norm) for r in rates
        )
        self.norm = norm(width)
        self.proj = nn.Linear(width, out_dim or in_dim)
        self._init(init_std)

    def _init(self, std: float) -> None:
        nn.init.trunc_normal_(self.mask_token, std=std)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _pos_table(self, grid: tuple[int, int], device: torch.device) -> torch.Tensor:
        return sincos_2d_on(int(grid[0]), int(grid[1]), self.width, device)

    def forward(
        self,
        context: torch.Tensor,
        context_idx: torch.Tensor,
        target_idx: torch.Tensor,
        grid: tuple[int, int],
    ) -> torch.Tensor:
        if context.dim() != 3 or context.shape[:2] != context_idx.shape or context.shape[-1] != self.in_dim:
            raise ValueError(
                f"context {tuple(context.shape)} must be (B, Kc, {self.in_dim}) matching context_idx "
                f"{tuple(context_idx.shape)}."
            )
        flat = target_idx.dim() == 2
        tgt = target_idx[:, None] if flat else target_idx
        if tgt.dim() != 3 or tgt.shape[0] != context.shape[0]:
            raise ValueError(f"target_idx must be (B, M, Kt) or (B, Kt) with B = {context.shape[0]}, got {tuple(target_idx.shape)}.")
        # index ranges are checked once, where the samplers make them (MultiBlockMasks); reading them back
        # here would be a host sync every step. An index past the grid still fails in the table lookup.
        b, m, kt = tgt.shape
        kc = context.shape[1]
        pos = self._pos_table(grid, context.device)
        x = self.embed(context) + pos[context_idx].to(context.dtype)  # (B, Kc, W)
        x = x.repeat_interleave(m, dim=0)  # (B*M, Kc, W): image-major, block-minor
        q = self.mask_token.to(x.dtype) + pos[tgt.reshape(b * m, kt)].to(x.dtype)  # (B*M, Kt, W)
        h = torch.cat([x, q], dim=1)
        for blk in self.blocks:
            h = blk(h)
        out = self.proj(self.norm(h[:, kc:]))  # (B*M, Kt, out)
        out = out.reshape(b, m, kt, -1)
        return out[:, 0] if flat else out
