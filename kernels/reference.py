"""Pure-torch references of the gram loss.

These are the CPU path of :func:`crossscale_kernels.gram_loss`, the oracle of the kernel tests and the baseline of
``benchmarks/gram_kernel.py``. Nothing here is tuned; it is written to be obviously right.

Gram loss (DINOv3 semantics, Simeoni et al. 2025): each token is L2-normalised (``eps`` as in
``F.normalize``), ``G = Z Z^T`` is built per image (or once over the flattened batch when
``img_level=False``), optionally negative similarities are clamped to zero, and the loss is the mean
squared difference between the student's and the teacher's gram over all entries, diagonal kept.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = 1e-12  # F.normalize's default


def _check(student: torch.Tensor, teacher: torch.Tensor) -> None:
    if student.dim() != 3 or teacher.dim() != 3:
        raise ValueError(
            f"gram_loss expects (B, N, D) tokens, got student {tuple(student.shape)} and teacher "
            f"{tuple(teacher.shape)}; reshape to (batch, tokens, features)."
        )
    if student.shape[:2] != teacher.shape[:2]:
        raise ValueError(
            f"gram_loss needs the same (B, N) for student {tuple(student.shape)} and teacher "
            f"{tuple(teacher.shape)}: both grams are N x N over the same tokens."
        )
    for name, t in (("student", student), ("teacher", teacher)):
        if not t.is_floating_point():
            raise TypeError(f"gram_loss: {name} has dtype {t.dtype}; pass floating-point tokens.")


def gram_matrix(tokens: torch.Tensor, *, img_level: bool = True, remove_neg: bool = False) -> torch.Tensor:
    """Gram of L2-normalised tokens.

    Args:
        tokens: ``(B, N, D)``.
        img_level: one ``(N, N)`` gram per image; if False one ``(B*N, B*N)`` gram of the flattened batch.
        remove_neg: clamp negative similarities to zero.

    Returns:
        ``(B, N, N)`` if ``img_level`` else ``(1, B*N, B*N)``, in float32 (float64 stays float64).
    """
    dtype = torch.float64 if tokens.dtype == torch.float64 else torch.float32
    z = F.normalize(tokens.to(dtype), dim=-1, eps=EPS)
    if not img_level:
        z = z.reshape(1, -1, z.shape[-1])
    g = z @ z.transpose(-1, -2)
    if remove_neg:
        g = g.clamp_min(0.0)
    return g


def gram_loss_reference(
    student: torch.Tensor,
    teacher: torch.Tensor,
    *,
    img_level: bool = True,
    remove_neg: bool = False,
    reduction: str = "mean",
) -> torch.Tensor:
    """N x N gram-MSE, the literal definition.

    Args:
        student: ``(B, N, D)``, gradients flow into it.
        teacher: ``(B, N, D')``, treated as a constant (detached).
        reduction: ``"mean"`` (scalar, mean over images of the per-image MSE, which equals the
            mean over all entries), ``"sum"`` (sum over images of the per-image MSE) or ``"none"``
            (``(B,)`` per-image MSE; ``(1,)`` when ``img_level=False``).
    """
    _check(student, teacher)
    gs = gram_matrix(student, img_level=img_level, remove_neg=remove_neg)
    gt = gram_matrix(teacher.detach(), img_level=img_level, remove_neg=remove_neg)
    per_image = (gs - gt).square().mean(dim=(-1, -2))
    return _reduce(per_image, reduction)


def gram_loss_dxd(
    student: torch.Tensor,
    teacher: torch.Tensor,
    *,
    img_level: bool = True,
    reduction: str = "mean",
) -> torch.Tensor:
    """The same loss through the d x d identity, O(N d^2) and no N x N memory.

    ``||A A^T - B B^T||_F^2 = ||A^T A||^2 - 2 ||A^T B||^2 + ||B^T B||^2`` for row-normalised ``A``
    (student) and ``B`` (teacher). The value cancels when the loss is small (fp32 error about
    ``1e-7 / rho^2``, rho the relative gram mismatch); autograd's gradient is
    ``4 (A (A^T A) - B (B^T A)) / N^2`` and does not cancel. ``remove_neg`` has no d x d form.
    """
    _check(student, teacher)
    if student.shape[-1] != teacher.shape[-1]:
        # The cross term A^T B needs equal feature sizes.
        raise ValueError(
            f"the d x d form needs equal feature sizes, got {student.shape[-1]} and {teacher.shape[-1]}; "
            "use gram_loss_reference."
        )
    dtype = torch.float64 if student.dtype == torch.float64 else torch.float32
    a = F.normalize(student.to(dtype), dim=-1, eps=EPS)
    b = F.normalize(teacher.detach().to(dtype), dim=-1, eps=EPS)
    if not img_level:
        a = a.reshape(1, -1, a.shape[-1])
        b = b.reshape(1, -1, b.shape[-1])
    n = a.shape[1]
    ata = a.transpose(-1, -2) @ a
    atb = a.transpose(-1, -2) @ b
    btb = b.transpose(-1, -2) @ b
    sq = ata.square().sum((-1, -2)) - 2 * atb.square().sum((-1, -2)) + btb.square().sum((-1, -2))
    per_image = sq / (n * n)
    return _reduce(per_image, reduction)


def _reduce(per_image: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return per_image.mean()
    if reduction == "sum":
        return per_image.sum()
    if reduction == "none":
        return per_image
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}.")
