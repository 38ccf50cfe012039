"""Functional entry of the gram loss: validate, pick a backend and a form, run, reduce.

Layer 5 of the gram op, re-exported as :func:`crossscale_kernels.gram_loss`. What is computed, the two forms,
the form switch, precision and memory: docs/KERNELS.md.
"""
from __future__ import annotations

import warnings

import torch

from crossscale_kernels.gram.torch_forms import DxdTorch, dxd_torch_core
from crossscale_kernels.reference import _check, _reduce, gram_loss_reference

try:  # Triton is the GPU path (the [gpu] extra; CUDA torch on Linux brings it): without it, the torch forms
    import triton  # noqa: F401
except ImportError:
    HAS_TRITON = False
else:
    HAS_TRITON = True
    from crossscale_kernels.gram import op as _op  # noqa: F401  (registers torch.ops.crossscale_kernels.gram_fused)
    from crossscale_kernels.gram.launch import check_triton_device, common_dtype

NXN_MAX_RATIO = 2.7
"""Triton backend: ``form="auto"`` takes N x N while ``N <= NXN_MAX_RATIO * D`` (docs/KERNELS.md; re-measure
on the GPU with ``python benchmarks/gram_kernel.py --crossover``)."""

NXN_MAX_RATIO_TORCH = 1.25
"""Torch backend (CPU): measured crossover, fp32 forward+backward, 1 thread, D = 384 (between 1.0 and 1.5)."""

_BACKENDS = ("auto", "triton", "torch")
_FORMS = ("auto", "nxn", "dxd")
_PRECISIONS = ("auto", "ieee", "tf32x3", "tf32")
_REDUCTIONS = ("mean", "sum", "none")


def choose_form(n: int, d_student: int, d_teacher: int | None = None, *, remove_neg: bool = False,
                backend: str = "triton") -> str:
    """Form that ``form="auto"`` takes for a gram over ``n`` tokens of ``d`` features.

    N x N while ``n <= ratio * d`` -- ratio :data:`NXN_MAX_RATIO` for ``backend="triton"``,
    :data:`NXN_MAX_RATIO_TORCH` for ``"torch"`` -- and always for ``remove_neg`` or unequal feature
    sizes, which have no d x d form; d x d beyond.
    """
    d_teacher = d_student if d_teacher is None else d_teacher
    if remove_neg or d_student != d_teacher:
        return "nxn"
    ratio = NXN_MAX_RATIO_TORCH if backend == "torch" else NXN_MAX_RATIO
    return "nxn" if n <= ratio * d_student else "dxd"


def gram_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    *,
    img_level: bool = True,
    remove_neg: bool = False,
    reduction: str = "mean",
    backend: str = "auto",
    form: str = "auto",
    precision: str = "auto",
) -> torch.Tensor:
    """Mean squared difference of the grams of L2-normalised student and teacher tokens (DINOv3).

    Args:
        student: ``(B, N, D)`` tokens (float16/bfloat16/float32; float64 on the torch backend), any
            strides; gradients flow into it.
        teacher: ``(B, N, D)`` tokens (``D`` may differ in the N x N form), a constant. A teacher that
            requires grad is detached with a ``UserWarning`` (the loss never trains the teacher).
        img_level: one ``N x N`` gram per image (True) or one ``(B*N) x (B*N)`` gram of the flattened
            batch (False).
        remove_neg: clamp negative similarities to zero on both grams before the difference
            (N x N form only).
        reduction: ``"mean"`` (scalar, mean over images), ``"sum"`` or ``"none"`` (``(B,)``; ``(1,)``
            when ``img_level=False``).
        backend: ``"auto"`` (Triton on CUDA, torch on CPU or where triton is not installed), ``"triton"``
            or ``"torch"``.
        form: ``"auto"`` (:func:`choose_form`), ``"nxn"`` or ``"dxd"``.
        precision: ``"auto"``, ``"ieee"``, ``"tf32x3"`` or ``"tf32"`` for the Triton dots that take
            fp32 operands (errors in docs/KERNELS.md); ignored by the torch backend.

    Returns:
        float32 loss (float64 for float64 inputs on the torch backend): a scalar, or ``(B,)``.

    Raises:
        ValueError: wrong rank, mismatched ``(B, N)``, unknown option, ``remove_neg`` or unequal
            feature sizes with ``form="dxd"``, tensors on different devices.
        TypeError: non-floating tokens, float64 on the Triton backend.
        ImportError: ``backend="triton"`` where triton is not installed.
    """
    _check(student, teacher)
    for name, val, allowed in (("reduction", reduction, _REDUCTIONS), ("backend", backend, _BACKENDS),
                               ("form", form, _FORMS), ("precision", precision, _PRECISIONS)):
        if val not in allowed:
            raise ValueError(f"gram_loss: {name}={val!r} is not one of {allowed}; pick one of those.")
    if student.device != teacher.device:
        raise ValueError(
            f"gram_loss: student is on {student.device} and teacher on {teacher.device}; move both to one device."
        )
    if teacher.requires_grad:
        warnings.warn(
            "gram_loss: the teacher requires grad; it is detached (the gram loss never trains the teacher). "
            "Pass teacher.detach() or compute it under torch.no_grad() to silence this.",
            UserWarning,
            stacklevel=2,
        )
        teacher = teacher.detach()
    if not img_level:  # one gram over the flattened batch == one image of B*N tokens
        student = student.reshape(1, -1, student.shape[-1])
        teacher = teacher.reshape(1, -1, teacher.shape[-1])
    n, ds, dt = student.shape[1], student.shape[-1], teacher.shape[-1]
    if form == "dxd":
        if remove_neg:
            raise ValueError("gram_loss: remove_neg has no d x d form (the clamp is per N x N entry); "
                             "use form='nxn' or form='auto'.")
        if ds != dt:
            raise ValueError(f"gram_loss: form='dxd' needs equal feature sizes, got student {ds} and teacher "
                             f"{dt}; use form='nxn' or form='auto'.")
    if backend == "auto":
        backend = "triton" if (HAS_TRITON and student.device.type == "cuda" and student.dtype != torch.float64) \
            else "torch"
    elif backend == "triton" and not HAS_TRITON:
        raise ImportError("gram_loss: backend='triton' needs triton, which is not installed; "
                          "pip install 'crossscale-kit[gpu]' (or triton), or use backend='torch' / 'auto'.")
    chosen = choose_form(n, ds, dt, remove_neg=remove_neg, backend=backend) if form == "auto" else form
    if backend == "torch":
        if chosen == "nxn":
            per_image = gram_loss_reference(student, teacher, remove_neg=remove_neg, reduction="none")
        elif student.requires_grad and torch.is_grad_enabled():
            per_image = DxdTorch.apply(student, teacher)
        else:  # no gradient wanted: skip its O(N D^2) half
            per_image = dxd_torch_core(student, teacher, False)[0]
    else:
        common_dtype(student, teacher)
        check_triton_device(student)
        compute_grad = bool(student.requires_grad and torch.is_grad_enabled())
        per_image, _ = torch.ops.crossscale_kernels.gram_fused(student, teacher, chosen, bool(remove_neg), precision,
                                                    compute_grad)
    return _reduce(per_image, reduction)
