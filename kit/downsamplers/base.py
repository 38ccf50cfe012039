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

    A downsampler with trained parameters sets ``learnable = True``. Such a one must run with
    gradients: calling it in training mode under ``torch.no_grad()`` raises instead of silently
    leaving its parameters untrained.
    """

    full_grid: bool = False
    learnable: bool = False

    def __call__(self, *args, **kwargs):
        if self.learnable and self.training and not torch.is_grad_enabled():
            raise RuntimeError(
                f"{type(self).__name__} is learnable but was called under torch.no_grad() in training mode, so it "
                "would get no gradient; call it outside the no_grad block (the teacher's encoder pass is what is no_grad)."
            )
        return super().__call__(*args, **kwargs)

    @abc.abstractmethod
    def forward(self, tokens: torch.Tensor, scale: int | None = None) -> torch.Tensor:
        ...


def check_blocks(tokens: torch.Tensor) -> None:
    """ValueError unless ``tokens`` is ``(B, K, s, s, D)``, the input of every block downsampler."""
    if tokens.dim() != 5 or tokens.shape[2] != tokens.shape[3]:
        raise ValueError(f"block downsamplers take (B, K, s, s, D) tokens, got {tuple(tokens.shape)}.")
