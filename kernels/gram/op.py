"""Registration of the fused gram op: ``torch.ops.crossscale_kernels.gram_fused``, its fake and its autograd.

Layer 3 of the gram op. A ``torch.library.custom_op`` with a fake (meta) implementation and a registered
backward, so ``torch.compile`` of a model that calls :func:`crossscale_kernels.gram_loss` sees one opaque node and
does not graph-break. The op computes the per-image loss and its gradient in one pass (the teacher is a
constant); the backward only scales the saved gradient.
"""
from __future__ import annotations

import torch

from crossscale_kernels.gram.launch import check_triton_device, common_dtype, launch_dxd, launch_nxn
from crossscale_kernels.gram.plan import scratch_plan, tma_width


@torch.library.custom_op("crossscale_kernels::gram_fused", mutates_args=())
def _gram_fused(student: torch.Tensor, teacher: torch.Tensor, form: str, remove_neg: bool, precision: str,
                compute_grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image loss ``(B,)`` fp32 and ``dloss_b/dstudent_b`` ``(B, N, D)`` (empty if not asked)."""
    check_triton_device(student)
    dtype = common_dtype(student, teacher)
    s = student.to(dtype)
    t = teacher.to(dtype)
    sms = torch.cuda.get_device_properties(s.device).multi_processor_count if s.device.type == "cuda" else 1
    plan = scratch_plan(form, tuple(s.shape), t.shape[-1], dtype, precision, compute_grad, sms,
                        padded=(tma_width(s), tma_width(t)) if form == "nxn" else None)
    grad = torch.empty(s.shape, device=s.device, dtype=dtype) if compute_grad else None
    losses = []
    for b0 in range(0, s.shape[0], plan["images"]):  # each image is independent: same bits in any grouping
        part = slice(b0, b0 + plan["images"])
        out = grad[part] if compute_grad else None
        if form == "nxn":
            losses.append(launch_nxn(s[part], t[part], remove_neg, precision, compute_grad, out=out)[0])
        else:
            losses.append(launch_dxd(s[part], t[part], precision, compute_grad, out=out)[0])
    per_image = losses[0] if len(losses) == 1 else torch.cat(losses)
    if grad is None:
        grad = student.new_empty((0,))
    elif grad.dtype != student.dtype:
        grad = grad.to(student.dtype)
    return per_image, grad


@_gram_fused.register_fake
def _gram_fused_fake(student, teacher, form, remove_neg, precision, compute_grad):
    per_image = student.new_empty((student.shape[0],), dtype=torch.float32)
    grad = student.new_empty(student.shape) if compute_grad else student.new_empty((0,))
    return per_image, grad


def _gram_fused_setup(ctx, inputs, output):
    ctx.compute_grad = inputs[5]
    ctx.save_for_backward(output[1])


def _gram_fused_backward(ctx, grad_loss, grad_grad):
    (g,) = ctx.saved_tensors
    if not ctx.compute_grad:
        raise RuntimeError(
            "gram_loss was run with compute_grad=False (student did not require grad at forward time) "
            "but a gradient was requested; run the forward with grad enabled."
        )
    ds = (g.to(torch.float32) * grad_loss.to(torch.float32).view(-1, 1, 1)).to(g.dtype)
    return ds, None, None, None, None, None


_gram_fused.register_autograd(_gram_fused_backward, setup_context=_gram_fused_setup)
