"""Gram-loss operators. Imports torch (and, for the fused path, triton) only, never ``kit``.

``gram_loss`` is the one functional entry point. Until the fused Triton kernel lands it runs the
pure-torch reference of :mod:`kernels.reference` on every device.
"""
from __future__ import annotations

import torch

from kernels.reference import gram_loss_dxd, gram_loss_reference, gram_matrix

__all__ = ["gram_loss", "gram_loss_reference", "gram_loss_dxd", "gram_matrix"]


def gram_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    *,
    img_level: bool = True,
    remove_neg: bool = False,
    reduction: str = "mean",
) -> torch.Tensor:
    """Mean squared difference of the grams of L2-normalised student and teacher tokens.

    Args:
        student: ``(B, N, D)`` tokens; gradients flow into it. Any float dtype; maths in float32.
        teacher: ``(B, N, D)`` tokens; treated as constant.
        img_level: one ``N x N`` gram per image (True) or one over the flattened batch (False).
        remove_neg: clamp negative similarities to zero before the difference.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` over images.

    Returns:
        A float32 scalar (or ``(B,)`` for ``reduction="none"``).
    """
    return gram_loss_reference(student, teacher, img_level=img_level, remove_neg=remove_neg, reduction=reduction)
