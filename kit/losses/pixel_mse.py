"""MAE's reconstruction loss: MSE on (per-patch normalised) pixels of the masked patches."""
from __future__ import annotations

import gin
import torch
from torch import nn


@gin.register
class MaskedPixelMSE(nn.Module):
    """Mean squared error between predicted and true pixels of the masked patches (He et al., 2022).

    With ``norm_pix`` (MAE's ``norm_pix_loss``, its best setting) each target patch is standardised by
    its own mean and (unbiased) variance first: ``(t - mean) / sqrt(var + eps)``. The error is averaged
    over the pixels of a patch, then over every masked patch of the batch.

    Args:
        norm_pix: normalise each target patch.
        eps: added to the variance (MAE: 1e-6).

    Shapes:
        ``forward(pred (B, M, P), target (B, M, P)) -> ()``; ``P = p*p*C`` pixels of one patch.
    """

    def __init__(self, norm_pix: bool = True, eps: float = 1e-6) -> None:
        super().__init__()
        if eps <= 0:
            raise ValueError(f"MaskedPixelMSE.eps must be > 0, got {eps}.")
        self.norm_pix, self.eps = bool(norm_pix), float(eps)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if pred.shape != target.shape or pred.dim() != 3:
            raise ValueError(
                f"MaskedPixelMSE takes pred and target of one shape (B, M, p*p*C), got {tuple(pred.shape)} and "
                f"{tuple(target.shape)}; the decoder's patch_size/in_chans must match the encoder's."
            )
        target = target.float()
        if self.norm_pix:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + self.eps).sqrt()
        return (pred.float() - target).pow(2).mean()
