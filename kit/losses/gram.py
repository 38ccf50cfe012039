"""Gram loss module (DINOv3), backed by :func:`kernels.gram_loss`."""
from __future__ import annotations

import gin
import torch
from torch import nn

import kernels


@gin.register
class GramLoss(nn.Module):
    """MSE between the grams of L2-normalised student and teacher tokens.

    The maths runs in float32 (the fused Triton kernel on CUDA, the torch reference on CPU) whatever
    the autocast dtype. The teacher side is normally constant. If the teacher tokens require grad (a
    learned downsampler sits on the teacher side), the loss is symmetric in its two arguments, so the
    teacher's gradient is obtained as the student gradient of ``gram(teacher, student.detach())`` and
    added with zero value: ``loss + (l_t - l_t.detach())``.

    Args:
        img_level: one gram per image (True, the paper) or one over the flattened batch.
        remove_neg: clamp negative similarities (False in the paper).

    Shapes:
        ``forward(student (B, N, D), teacher (B, N, D)) -> scalar``.
    """

    def __init__(self, img_level: bool = True, remove_neg: bool = False) -> None:
        super().__init__()
        self.img_level, self.remove_neg = img_level, remove_neg

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        kw = dict(img_level=self.img_level, remove_neg=self.remove_neg)
        loss = kernels.gram_loss(student, teacher.detach(), **kw)
        if teacher.requires_grad:
            lt = kernels.gram_loss(teacher, student.detach(), **kw)
            loss = loss + (lt - lt.detach())
        return loss
