"""Gram loss module (DINOv3), backed by :func:`crossscale_kernels.gram_loss`."""
from __future__ import annotations

import gin
import torch
import torch.nn.functional as F
from torch import nn

import crossscale_kernels


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
        precision: ``"fp32"`` (the kit): the maths in float32 whatever the autocast dtype. ``"autocast"``
            (both forks as released): DINOv3's torch form run as written inside the caller's autocast
            (``F.normalize``, the gram matmul in the autocast dtype, ``MSELoss``); without autocast it
            equals ``"fp32"`` up to rounding.

    Shapes:
        ``forward(student (B, N, D), teacher (B, N, D)) -> scalar``.
    """

    def __init__(self, img_level: bool = True, remove_neg: bool = False, precision: str = "fp32") -> None:
        super().__init__()
        if precision not in ("fp32", "autocast"):
            raise ValueError(f"GramLoss.precision must be 'fp32' or 'autocast', got {precision!r}.")
        self.img_level, self.remove_neg, self.precision = img_level, remove_neg, precision

    def _autocast_form(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """The forks' gram term: DINOv3's ``GramLoss`` maths in whatever autocast is active."""
        s, t = F.normalize(student, dim=-1), F.normalize(teacher, dim=-1)
        if not self.img_level:
            s, t = s.flatten(0, -2), t.flatten(0, -2)
        gs, gt = s @ s.transpose(-1, -2), t @ t.transpose(-1, -2)
        if self.remove_neg:
            gs, gt = gs.clamp(min=0.0), gt.clamp(min=0.0)
        return F.mse_loss(gs, gt)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        if self.precision == "autocast":  # the teacher's gradient (if it has one) flows through autograd
            return self._autocast_form(student, teacher if teacher.requires_grad else teacher.detach())
        kw = dict(img_level=self.img_level, remove_neg=self.remove_neg)
        loss = crossscale_kernels.gram_loss(student, teacher.detach(), **kw)
        if teacher.requires_grad:
            lt = crossscale_kernels.gram_loss(teacher, student.detach(), **kw)
            loss = loss + (lt - lt.detach())
        return loss
