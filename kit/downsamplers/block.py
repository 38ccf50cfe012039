"""Block downsamplers: each MR patch's ``s x s`` HR tokens on their own."""
from __future__ import annotations

import gin
import torch
import torch.nn.functional as F

from kit.downsamplers.base import Downsampler


@gin.register
class BlockMean(Downsampler):
    """Mean of the ``s x s`` block: ``(B, K, s, s, D) -> (B, K, D)``.

    This is what the authors' per-block "bilinear" (and, for s = 2, "bicubic") interpolation to 1 x 1
    computes with ``align_corners=False`` and border clamping.
    """

    def forward(self, tokens: torch.Tensor, scale: int | None = None) -> torch.Tensor:
        _check_blocks(tokens)
        return tokens.mean(dim=(2, 3))


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
        _check_blocks(tokens)
        b, k, s, _, d = tokens.shape
        x = tokens.permute(0, 1, 4, 2, 3).reshape(b * k, d, s, s)
        y = F.interpolate(x.float(), size=(1, 1), mode=self.mode, align_corners=False)
        return y.reshape(b, k, d).to(tokens.dtype)


def _check_blocks(tokens: torch.Tensor) -> None:
    if tokens.dim() != 5 or tokens.shape[2] != tokens.shape[3]:
        raise ValueError(f"block downsamplers take (B, K, s, s, D) tokens, got {tuple(tokens.shape)}.")
