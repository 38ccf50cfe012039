"""Block downsamplers: each MR patch's ``s x s`` HR tokens on their own."""
from __future__ import annotations

import gin
import torch
import torch.nn.functional as F
from einops import rearrange, reduce

from crossscale_kit.downsamplers.base import Downsampler, check_blocks


@gin.register
class BlockMean(Downsampler):
    """Mean of the ``s x s`` block: ``(B, K, s, s, D) -> (B, K, D)``.

    This is what the authors' per-block "bilinear" (and, for s = 2, "bicubic") interpolation to 1 x 1
    computes with ``align_corners=False`` and border clamping.
    """

    def forward(self, tokens: torch.Tensor, scale: int | None = None) -> torch.Tensor:
        check_blocks(tokens)
        return reduce(tokens, "b k i j d -> b k d", "mean")


@gin.register
class BlockInterpolate(Downsampler):
    """The paper's per-block interpolation: each ``s x s`` block resized to ``1 x 1`` on its own.

    Args:
        mode: ``"bilinear"`` or ``"bicubic"`` (``align_corners=False``, no antialias, as in torch).
            For s = 2 both equal :class:`BlockMean`; for odd s bilinear picks the centre token.
    """

    def __init__(self, mode: str = "bilinear") -> None:
        super().__init__()
        if mode not in ("bilinear", "bicubic"):
            raise ValueError(f"mode must be 'bilinear' or 'bicubic', got {mode!r}.")
        self.mode = mode

    def forward(self, tokens: torch.Tensor, scale: int | None = None) -> torch.Tensor:
        check_blocks(tokens)
        x = rearrange(tokens, "b k i j d -> (b k) d i j")
        y = F.interpolate(x.float(), size=(1, 1), mode=self.mode, align_corners=False)
        return rearrange(y, "(b k) d 1 1 -> b k d", b=tokens.shape[0]).to(tokens.dtype)
