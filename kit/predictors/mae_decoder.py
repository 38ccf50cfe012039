"""MAE's light pixel decoder (He et al., "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022)."""
from __future__ import annotations

from functools import partial

import gin
import torch
from timm.models.vision_transformer import Block
from torch import nn

from crossscale_kit.encoders.init import xavier_init_
from crossscale_kit.encoders.pos_embed import sincos_2d_on


@gin.register
class MAEDecoder(nn.Module):
    """Reconstructs the pixels of masked patches from the encoded visible ones.

    The visible tokens are projected to the decoder width and put back at their grid positions; every
    other position of the grid gets the shared learned mask token; fixed 2-D sin-cos positions are added
    to all ``N`` tokens; ``depth`` pre-norm transformer blocks (LayerNorm eps 1e-6, as MAE) run over the
    whole grid; a LayerNorm and ``Linear(width -> p*p*C)`` predict the pixels of the requested targets.
    MAE's released decoder is width 512, depth 8, 16 heads; its linear layers start xavier-uniform and
    the mask token normal(0.02), as here.

    Args:
        in_dim: encoder width ``D`` of the visible tokens.
        patch_size: ``p``; with ``in_chans`` it sets the prediction width ``p*p*C``.
        in_chans: image bands ``C``.
        width: decoder width (MAE: 512). depth: blocks (MAE: 8). num_heads: (MAE: 16).
        mlp_ratio: MLP hidden width / width.

    Shapes:
        ``forward(visible (B, K, D), visible_idx (B, K), target_idx (B, M), grid (gh, gw)) -> (B, M, p*p*C)``;
        indices row-major over ``grid``; the prediction of a patch is laid out as
        :meth:`crossscale_kit.encoders.vit.ViTEncoder.patchify` lays out its pixels, ``(c, i, j)``.
    """

    def __init__(
        self,
        in_dim: int,
        patch_size: int = 16,
        in_chans: int = 4,
        width: int = 512,
        depth: int = 8,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        if width % num_heads or width % 4:
            raise ValueError(f"MAEDecoder.width {width} must be divisible by num_heads {num_heads} and by 4.")
        if depth < 1 or patch_size < 1 or in_chans < 1:
            raise ValueError(f"MAEDecoder needs depth, patch_size and in_chans >= 1, got {depth}, {patch_size}, {in_chans}.")
        self.width, self.out_dim = width, patch_size * patch_size * in_chans
        self.embed = nn.Linear(in_dim, width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.blocks = nn.ModuleList(Block(width, num_heads, mlp_ratio, qkv_bias=True, norm_layer=norm) for _ in range(depth))
        self.norm = norm(width)
        self.pred = nn.Linear(width, self.out_dim)
        xavier_init_(self)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(
        self, visible: torch.Tensor, visible_idx: torch.Tensor, target_idx: torch.Tensor, grid: tuple[int, int]
    ) -> torch.Tensor:
        if visible.shape[:2] != visible_idx.shape or target_idx.dim() != 2 or target_idx.shape[0] != visible.shape[0]:
            raise ValueError(
                f"MAEDecoder takes visible (B, K, D), visible_idx (B, K) and target_idx (B, M), got "
                f"{tuple(visible.shape)}, {tuple(visible_idx.shape)}, {tuple(target_idx.shape)}."
            )
        b, n = visible.shape[0], grid[0] * grid[1]
        emb = self.embed(visible)  # (B, K, W)
        tokens = self.mask_token.to(emb.dtype).expand(b, n, -1)
        tokens = tokens.scatter(1, visible_idx[..., None].expand(-1, -1, self.width), emb)  # (B, N, W)
        tokens = tokens + sincos_2d_on(grid[0], grid[1], self.width, emb.device).to(emb.dtype)
        for blk in self.blocks:
            tokens = blk(tokens)
        out = torch.gather(tokens, 1, target_idx[..., None].expand(-1, -1, self.width))  # (B, M, W)
        return self.pred(self.norm(out))
