"""Grid downsamplers: interpolate the whole HR token grid (DINOv3's high-resolution gram teacher)."""
from __future__ import annotations

import gin
import torch
import torch.nn.functional as F
from einops import rearrange

from crossscale_kit.downsamplers.base import Downsampler


@gin.register
class GridInterpolate(Downsampler):
    """Resize the full HR token grid ``(B, s*H, s*W, D)`` to ``(B, H, W, D)``.

    Args:
        mode: ``"bilinear"`` or ``"bicubic"``; ``align_corners=False`` and no antialias as DINOv3 does.
            Unlike the per-block variant, bicubic here mixes neighbouring blocks and differs from the mean.
    """

    full_grid = True

    def __init__(self, mode: str = "bicubic") -> None:
        super().__init__()
        if mode not in ("bilinear", "bicubic"):
            raise ValueError(f"mode must be 'bilinear' or 'bicubic', got {mode!r}.")
        self.mode = mode

    def forward(self, tokens: torch.Tensor, scale: int | None = None) -> torch.Tensor:
        if tokens.dim() != 4:
            raise ValueError(f"grid downsamplers take (B, s*H, s*W, D) tokens, got {tuple(tokens.shape)}.")
        if scale is None or tokens.shape[1] % scale or tokens.shape[2] % scale:
            raise ValueError(f"HR grid {tuple(tokens.shape[1:3])} is not divisible by scale {scale}.")
        hh, ww = tokens.shape[1:3]
        x = rearrange(tokens, "b h w d -> b d h w").float()
        y = F.interpolate(x, size=(hh // scale, ww // scale), mode=self.mode, align_corners=False, antialias=False)
        return rearrange(y, "b d h w -> b h w d").to(tokens.dtype)
