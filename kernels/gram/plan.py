"""Memory plan of the gram op: which N x N kernel fits, what TMA can address, how many images per launch.

Layer 2 of the gram op (host code, no launches). The memory goal and its numbers are in
docs/KERNELS.md ("Memory").
"""
from __future__ import annotations

import torch
import triton

from crossscale_kernels.gram.configs import GPU_CONFIGS, INTERPRET, REG_CHUNKS, dtype_class, pow2, split_mode

SCRATCH_FRACTION = 0.2
"""Temporary buffers of one launch stay under this fraction of the gradient's size: images are
launched in groups small enough for it, but never so small that a group leaves SMs idle."""


def tma_addressable(x: torch.Tensor) -> bool:
    """TMA needs a unit last stride and a 16-byte aligned base and strides."""
    elt = x.element_size()
    return (x.stride(-1) == 1 and x.data_ptr() % 16 == 0
            and all(st > 0 and (st * elt) % 16 == 0 for st in x.stride()[:-1]))


def tma_width(x: torch.Tensor) -> int:
    """Feature width the N x N kernels see: ``D``, or ``D`` padded to 16 bytes when ``x`` must be copied."""
    align = 16 // x.element_size()
    return x.shape[-1] if tma_addressable(x) else -(-x.shape[-1] // align) * align


def tma_ready(x: torch.Tensor) -> torch.Tensor:
    """``x`` itself if a TMA descriptor can address it, else a contiguous copy with ``D`` zero-padded.

    Zero features change neither the norms nor the grams, and their gradient (sliced off afterwards)
    is zero.
    """
    if tma_addressable(x):
        return x
    y = x.new_zeros((*x.shape[:2], tma_width(x)))
    y[..., :x.shape[-1]] = x
    return y


def nxn_register_plan(dtype: torch.dtype, n: int, dsp: int, dtp: int, precision: str,
                      interpret: bool = INTERPRET) -> tuple[list[dict], bool]:
    """Configs of the register-gradient kernel and whether ``dsp`` (padded) features fit its chunks."""
    if interpret:  # few, large programs: the interpreter pays per program and per loop step
        cfgs = [{"BLOCK_M": pow2(n, 16, 64), "BLOCK_K": pow2(max(dsp, dtp), 16, 64),
                 "BLOCK_C": pow2(triton.cdiv(dsp, REG_CHUNKS), 16, 64)}]
    else:
        cfgs = GPU_CONFIGS.get(("nxn_reg", dtype_class(dtype)), [])
    # The split-E mode doubles the gradient dots' operands: it spills in the register kernel.
    fits = bool(cfgs) and triton.cdiv(dsp, cfgs[0]["BLOCK_C"]) <= REG_CHUNKS and not split_mode(dtype, precision)
    return cfgs, fits


def scratch_plan(form: str, shape_s: tuple, d_teacher: int, dtype: torch.dtype, precision: str, compute_grad: bool,
                 num_sms: int, padded: tuple[int, int] | None = None, interpret: bool = INTERPRET) -> dict:
    """Bytes of temporary memory per image, images per launch, and the launch's total.

    Per image: the inverse norms; the N x N form's zero-padded TMA copies (awkward strides or ``D``),
    its fp32 gradient buffer (general kernel, 16-bit inputs) or padded output; the d x d form's three
    ``D x D`` fp32 matrices and, for 16-bit inputs, its fp32 gradient buffer. Images per launch: as
    many as :data:`SCRATCH_FRACTION` of the gradient allows, at least enough to give every SM a program.

    Args:
        form: ``"nxn"`` or ``"dxd"``.
        shape_s: the student's ``(B, N, D)``.
        d_teacher: the teacher's feature size.
        dtype, precision, compute_grad: as the launch will run.
        num_sms: streaming multiprocessors of the device (1 on CPU).
        padded: the N x N kernels' feature widths ``(student, teacher)`` after TMA padding.
        interpret: plan for the interpreter's launch configurations (default: whichever this process runs).

    Returns:
        ``{"per_image", "images", "launch_bytes", "grad_bytes"}``.
    """
    b, n, d = shape_s
    elt = torch.empty((), dtype=dtype).element_size()
    dsp, dtp = padded or (d, d_teacher)
    per = 2 * n * 4
    if form == "nxn":
        per += (n * dsp * elt if dsp != d else 0) + (n * dtp * elt if dtp != d_teacher else 0)
        if compute_grad:
            _, fits = nxn_register_plan(dtype, n, dsp, dtp, precision, interpret)
            if not fits and dtype != torch.float32:
                per += n * dsp * 4
            if dsp != d:
                per += n * dsp * elt
        programs = triton.cdiv(n, 64)
    else:
        per += 3 * d * d * 4 + (n * d * 4 if compute_grad and dtype != torch.float32 else 0)
        programs = min(triton.cdiv(d, 64) ** 2, triton.cdiv(n, 64))
    grad_bytes = b * n * d * elt
    by_memory = int(SCRATCH_FRACTION * grad_bytes // per)
    to_fill = triton.cdiv(num_sms, programs)
    images = max(1, min(b, max(by_memory, to_fill)))
    return {"per_image": per, "images": images, "launch_bytes": per * images, "grad_bytes": grad_bytes}
