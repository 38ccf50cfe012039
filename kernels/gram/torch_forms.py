"""Pure-torch d x d form of the gram loss (the CPU path of ``form="dxd"``; same algebra as the Triton kernels).

Layer 4 of the gram op: the mismatch-centred scheme of docs/KERNELS.md ("d x d form") in torch ops,
float64 for float64 inputs, fp32 otherwise. The N x N torch form is :func:`crossscale_kernels.reference.gram_loss_reference`.
"""
from __future__ import annotations

import torch

from crossscale_kernels.reference import EPS, _check, _reduce


def dxd_torch_core(student: torch.Tensor, teacher: torch.Tensor, compute_grad: bool):
    dtype = torch.float64 if student.dtype == torch.float64 else torch.float32
    xs = student.to(dtype)
    xt = teacher.to(dtype)
    ns = torch.linalg.vector_norm(xs, dim=-1, keepdim=True)
    rs = 1.0 / ns.clamp_min(EPS)
    a = xs * rs
    b = xt / torch.linalg.vector_norm(xt, dim=-1, keepdim=True).clamp_min(EPS)
    d = a - b
    n = student.shape[1]
    bt = b.transpose(1, 2)
    p = bt @ b
    c = bt @ d
    q = d.transpose(1, 2) @ d
    sq = (q * (2.0 * p + 4.0 * c + q)).sum(dim=(1, 2), dtype=torch.float64) \
        + 2.0 * (c * c.transpose(1, 2)).sum(dim=(1, 2), dtype=torch.float64)
    per_image = (sq / (n * n)).to(dtype)
    if not compute_grad:
        return per_image, None
    g = (a @ (c.transpose(1, 2) + q) + d @ (p + c)) * (4.0 / (n * n))
    gz = (g * a).sum(dim=-1, keepdim=True)
    dx = rs * (g - torch.where(ns >= EPS, gz * a, torch.zeros_like(a)))
    return per_image, dx.to(student.dtype)


class DxdTorch(torch.autograd.Function):
    @staticmethod
    def forward(ctx, student, teacher):
        per_image, grad = dxd_torch_core(student, teacher, bool(ctx.needs_input_grad[0]))
        ctx.save_for_backward(grad if grad is not None else student.new_empty((0,)))
        return per_image

    @staticmethod
    def backward(ctx, grad_loss):
        (g,) = ctx.saved_tensors
        wdt = torch.float64 if g.dtype == torch.float64 else torch.float32
        return (g.to(wdt) * grad_loss.to(wdt).view(-1, 1, 1)).to(g.dtype), None


def gram_loss_dxd_torch(student: torch.Tensor, teacher: torch.Tensor, *, img_level: bool = True,
                        reduction: str = "mean") -> torch.Tensor:
    """Pure-torch d x d form with the mismatch-centred precision scheme (docs/KERNELS.md).

    Args:
        student: ``(B, N, D)``; gradients flow into it (computed in the forward, O(N D^2)).
        teacher: ``(B, N, D)``; constant.
        img_level: per-image grams, or one gram of the ``(B*N, D)`` flattened batch.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (``(B,)``, or ``(1,)`` when not img_level).

    Returns:
        float32 loss (float64 for float64 inputs).
    """
    _check(student, teacher)
    if not img_level:
        student = student.reshape(1, -1, student.shape[-1])
        teacher = teacher.reshape(1, -1, teacher.shape[-1])
    if student.requires_grad and torch.is_grad_enabled():
        return _reduce(DxdTorch.apply(student, teacher.detach()), reduction)
    return _reduce(dxd_torch_core(student, teacher, False)[0], reduction)
