"""LatentMIM patch-level InfoNCE."""
from __future__ import annotations

import gin
import torch
import torch.nn.functional as F
from torch import nn


@gin.register
class PatchInfoNCE(nn.Module):
    """Per-image patch InfoNCE between predicted and target latents (LatentMIM).

    For each image, predictions are standardised over its patches as LatentMIM's released loss does,
    ``(p - mean) / (std + eps)`` per channel with the unbiased std and ``eps = 1e-4``; both sides are
    L2-normalised, and each prediction must pick its own target among the image's other
    targets: ``CE(pred_n @ tgt_n^T / tau, arange(M))``. The loss is scaled by ``2 * tau`` as LatentMIM does.

    Args:
        tau: temperature (paper: 0.2).
        standardize: standardise predictions over patches first.
        eps: added to the std (released: 1e-4; it matters only when predictions are tiny).

    Shapes:
        ``forward(pred (B, M, D), target (B, M, D)) -> scalar``; ``M >= 2`` (one positive needs negatives).
    """

    def __init__(self, tau: float = 0.2, standardize: bool = True, eps: float = 1e-4) -> None:
        super().__init__()
        if tau <= 0:
            raise ValueError(f"tau must be > 0, got {tau}.")
        self.tau, self.standardize, self.eps = tau, standardize, eps

    def standardise(self, pred: torch.Tensor) -> torch.Tensor:
        """``(p - mean) / (std_unbiased + eps)`` over the patches of each image: ``(B, M, D) -> (B, M, D)``."""
        return (pred - pred.mean(dim=1, keepdim=True)) / (pred.std(dim=1, keepdim=True) + self.eps)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if pred.shape != target.shape or pred.dim() != 3:
            raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must both be (B, M, D).")
        b, m, _ = pred.shape
        if m < 2:
            raise ValueError(f"patch InfoNCE needs >= 2 targets per image for negatives, got {m}.")
        pred = pred.float()
        target = target.float().detach()
        if self.standardize:
            pred = self.standardise(pred)
        logits = F.normalize(pred, dim=-1) @ F.normalize(target, dim=-1).transpose(1, 2) / self.tau  # (B, M, M)
        labels = torch.arange(m, device=pred.device).expand(b, m)
        return F.cross_entropy(logits.reshape(b * m, m), labels.reshape(-1)) * (2 * self.tau)
