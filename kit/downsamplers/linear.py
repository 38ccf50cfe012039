"""Learned linear-projection downsampler (the paper's Table III "linear projection")."""
from __future__ import annotations

import gin
import torch
from einops import rearrange
from torch import nn

from crossscale_kit.downsamplers.base import Downsampler, check_blocks


@gin.register
class LinearProjection(Downsampler):
    """A learned ``Linear(s*s*D -> D)`` over each MR patch's ``s x s`` HR tokens.

    The ``s x s`` block is flattened in ``(i, j)`` row-major order (the correspondence order) and
    projected to one token. The module is trained with the student: it lives inside the
    spatial-affinity add-on, so the optimizer sees it, and the gram loss gives the teacher side its
    gradient (see :class:`crossscale_kit.losses.gram.GramLoss`).

    Args:
        dim: token width ``D`` of the teacher.
        scale: ``s``, the HR / MR ratio (paper: 2).
        init: ``"mean"`` starts as the block mean (:class:`BlockMean`), so training starts from the
            authors' default downsampler; ``"random"`` keeps PyTorch's default ``Linear`` initialisation.
        bias: learn a bias.

    Shapes:
        ``forward(tokens (B, K, s, s, D)) -> (B, K, D)``.
    """

    learnable = True

    def __init__(self, dim: int, scale: int = 2, init: str = "mean", bias: bool = True) -> None:
        super().__init__()
        if int(dim) < 1:
            raise ValueError(f"LinearProjection.dim must be >= 1, got {dim}; bind it to the encoder width (%EMBED_DIM).")
        if int(scale) != scale or scale < 1:
            raise ValueError(f"LinearProjection.scale must be a positive integer, got {scale}.")
        if init not in ("mean", "random"):
            raise ValueError(f"LinearProjection.init must be 'mean' or 'random', got {init!r}.")
        self.dim, self.scale = int(dim), int(scale)
        self.proj = nn.Linear(self.scale * self.scale * self.dim, self.dim, bias=bias)
        if init == "mean":
            with torch.no_grad():
                eye = torch.eye(self.dim) / (self.scale * self.scale)
                self.proj.weight.copy_(eye.repeat(1, self.scale * self.scale))
                if bias:
                    self.proj.bias.zero_()

    def forward(self, tokens: torch.Tensor, scale: int | None = None) -> torch.Tensor:
        check_blocks(tokens)
        s, d = tokens.shape[2], tokens.shape[4]
        if s != self.scale or d != self.dim:
            raise ValueError(
                f"LinearProjection was built for s = {self.scale}, D = {self.dim} but got blocks {tuple(tokens.shape)}; "
                "set LinearProjection.scale to the HR/MR ratio and LinearProjection.dim to the encoder width."
            )
        return self.proj(rearrange(tokens, "b k i j d -> b k (i j d)"))
