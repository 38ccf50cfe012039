"""The downsampler role: HR teacher tokens -> one token per MR patch."""
from __future__ import annotations

import abc

import torch
from torch import nn


class Downsampler(nn.Module, abc.ABC):
    """Maps the ``s x s`` HR tokens under each MR patch to one token.

    Two kinds exist, told apart by ``full_grid``:

    * block downsamplers (``full_grid = False``) see only the ``s x s`` block of each chosen MR patch:
      ``forward(blocks (B, K, s, s, D)) -> (B, K, D)``;
    * grid downsamplers (``full_grid = True``) interpolate the whole HR token grid, so the HR teacher
      must encode the full HR image: ``forward(grid (B, s*H, s*W, D), scale s) -> (B, H, W, D)``;
      the add-on then gathers the student's MR patches from the result.
    """

    full_grid: bool = False

    @abc.abstractmethod
    def forward(self, tokens: torch.Tensor, scale: int | None = None) -> torch.Tensor:
        ...
