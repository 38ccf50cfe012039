"""I-JEPA's latent regression loss: smooth L1 against layer-normed target-encoder tokens."""
from __future__ import annotations

import gin
import torch
import torch.nn.functional as F
from torch import nn


@gin.register
class SmoothL1Latent(nn.Module):
    """Smooth L1 between predicted and target latents (I-JEPA, Assran et al. 2023).

    The target side is the target encoder's output on the FULL image, layer-normed over the feature axis
    without affine parameters, then gathered at the target indices (normalising per token commutes with
    the gather). The loss is ``smooth_l1(pred, target, beta)`` averaged over every element, computed in
    float32; the target is detached.

    Args:
        beta: transition point of the smooth L1 (I-JEPA: 1).
        normalize_target: apply ``layer_norm`` (no affine) to the targets (I-JEPA: True).

    Shapes:
        ``forward(pred (B, M, Kt, D), target (B, N, D), target_idx (B, M, Kt)) -> scalar``: ``target`` holds
        all ``N`` patches of the image; ``target_idx`` row-major indices into it. Any leading index shape
        works (``(B, Kt)`` too) as long as ``pred.shape[:-1] == target_idx.shape``. With ``target_idx=None``
        the targets are already gathered and ``pred.shape == target.shape``.
    """

    def __init__(self, beta: float = 1.0, normalize_target: bool = True) -> None:
        super().__init__()
        if beta <= 0:
            raise ValueError(f"SmoothL1Latent.beta must be > 0, got {beta}.")
        self.beta, self.normalize_target = float(beta), bool(normalize_target)

    def forward(self, pred: torch.Tensor, target: torch.Tensor, target_idx: torch.Tensor | None = None) -> torch.Tensor:
        target = target.detach().float()
        if self.normalize_target:
            target = F.layer_norm(target, target.shape[-1:])
        if target_idx is not None:
            if target.dim() != 3 or target_idx.shape[0] != target.shape[0]:
                raise ValueError(
                    f"target must be (B, N, D) and target_idx (B, ...) with the same B, got {tuple(target.shape)} "
                    f"and {tuple(target_idx.shape)}."
                )
            if pred.shape[:-1] != target_idx.shape:
                raise ValueError(f"pred {tuple(pred.shape)} must be target_idx {tuple(target_idx.shape)} + (D,).")
            b, d = target.shape[0], target.shape[-1]
            flat = target_idx.reshape(b, -1)
            target = torch.gather(target, 1, flat[..., None].expand(-1, -1, d)).reshape(*target_idx.shape, d)
        if pred.shape != target.shape:
            raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape.")
        return F.smooth_l1_loss(pred.float(), target, beta=self.beta)
