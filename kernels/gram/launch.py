"""Launchers of the gram kernels: per-image loss and gradient of one group of images, N x N or d x d.

Layer 2 of the gram op. Each launcher picks the kernel and launch configuration (interpreter block
sizes on CPU, :data:`crossscale_kernels.gram.configs.GPU_CONFIGS` on CUDA), allocates what the kernel writes, and
returns ``(per_image (B,), grad (B, N, D) or None)``. How the kernels work: docs/KERNELS.md.
"""
from __future__ import annotations

import torch
import triton
from triton.tools.tensor_descriptor import TensorDescriptor

from crossscale_kernels.gram.configs import (
    GPU_CONFIGS,
    INTERPRET,
    REG_CHUNKS,
    dtype_class,
    fp32_precision,
    gpu_config,
    pow2,
    split_launch,
    split_mode,
)
from crossscale_kernels.gram.jit_dxd import gram_dxd_apply_kernel, gram_dxd_grams_kernel
from crossscale_kernels.gram.jit_nxn import gram_nxn_kernel, gram_nxn_reg_kernel
from crossscale_kernels.gram.jit_rows import inv_norm_kernel
from crossscale_kernels.gram.plan import nxn_register_plan, tma_ready
from crossscale_kernels.reference import EPS


def common_dtype(student: torch.Tensor, teacher: torch.Tensor) -> torch.dtype:
    """The dtype both sides run in on the Triton backend; float64 and others are refused."""
    dtype = torch.promote_types(student.dtype, teacher.dtype)
    if dtype not in (torch.float16, torch.bfloat16, torch.float32):
        raise TypeError(
            f"the Triton gram loss runs float16/bfloat16/float32, got student {student.dtype} and teacher "
            f"{teacher.dtype}; use backend='torch' for float64 (the oracle) or cast the tokens."
        )
    return dtype


def check_triton_device(x: torch.Tensor) -> None:
    """Refuse tensors the Triton kernels cannot run on here (CPU without the interpreter)."""
    if x.device.type == "cuda":
        return
    if x.device.type == "cpu" and INTERPRET:
        return
    raise RuntimeError(
        f"backend='triton' needs CUDA tensors (got {x.device}); on CPU set TRITON_INTERPRET=1 before "
        "importing kernels (slow, for tests) or use backend='torch'."
    )


def _grad_target(out: torch.Tensor | None, s: torch.Tensor, width: int, compute_grad: bool) -> torch.Tensor:
    """The tensor a launcher writes the gradient into: ``out`` itself when it has the kernel's padded
    width ``width``, else a fresh ``(B, N, width)`` tensor of ``s``'s dtype (copied into ``out`` after)."""
    if not compute_grad:
        return None
    if out is not None and out.shape[-1] == width:
        return out
    return torch.empty((*s.shape[:2], width), device=s.device, dtype=s.dtype)


def _grad_result(written: torch.Tensor, d: int, out: torch.Tensor | None) -> torch.Tensor:
    """The gradient of the true feature width, in ``out`` when one was given."""
    if out is not None:
        if written is not out:
            out.copy_(written[..., :d])
        return out
    return written if written.shape[-1] == d else written[..., :d].contiguous()


def launch_nxn(s: torch.Tensor, t: torch.Tensor, remove_neg: bool, precision: str, compute_grad: bool,
               grad_in_registers: bool | None = None, out: torch.Tensor | None = None):
    """Per-image loss and (``compute_grad``) ``dloss_b/ds_b``, N x N form.

    ``grad_in_registers``: None picks :func:`gram_nxn_reg_kernel` whenever the gradient rows fit in
    its four register chunks (``D <= 512`` on the GPU), else the general kernel with its fp32 ``G``
    buffer; True/False force one (tests use this to run both). ``out``: where to write the gradient
    (contiguous, ``s``'s shape and dtype); allocated when None.
    """
    B, N, DS = s.shape
    if INTERPRET and s.dtype == torch.bfloat16:
        raise RuntimeError(
            "the N x N Triton kernel's bf16 dots do not run under TRITON_INTERPRET=1 (they return garbage); "
            "on CPU use float16/float32 tokens, form='dxd', or backend='torch'. bf16 runs on the GPU."
        )
    rs = inv_norms(s)
    rt = inv_norms(t)
    sp = tma_ready(s)
    tp = tma_ready(t)
    dsp, dtp = sp.shape[-1], tp.shape[-1]
    prec = fp32_precision(precision, s.dtype)
    flags = {"REMOVE_NEG": bool(remove_neg), "FOLD_R": s.dtype != torch.float16,
             "SPLIT": split_mode(s.dtype, precision), "PREC": prec}
    shape_key = (triton.next_power_of_2(N), dsp, dtp, compute_grad, bool(remove_neg))

    reg_cfgs, fits = nxn_register_plan(s.dtype, N, dsp, dtp, precision)
    if grad_in_registers and not fits:
        raise ValueError(f"the register-gradient kernel holds at most {REG_CHUNKS} chunks of "
                         f"{reg_cfgs[0]['BLOCK_C'] if reg_cfgs else 0} features of {s.dtype} without the split "
                         f"mode; got D = {dsp}, precision={precision!r}")
    use_reg = compute_grad and fits and grad_in_registers is not False

    final = out
    out = _grad_target(out, s, dsp, compute_grad)
    if use_reg:

        def launch(cfg):
            consts, opts = split_launch(cfg)
            bm, bk, bc = consts["BLOCK_M"], consts["BLOCK_K"], consts["BLOCK_C"]
            n_m = triton.cdiv(N, bm)
            loss_part = torch.empty((B, n_m), device=s.device, dtype=torch.float32)
            gram_nxn_reg_kernel[(n_m, B)](
                TensorDescriptor.from_tensor(sp, [1, bm, bk]), TensorDescriptor.from_tensor(sp, [1, bm, bc]),
                TensorDescriptor.from_tensor(tp, [1, bm, bk]), rs, rt, TensorDescriptor.from_tensor(out, [1, bm, bc]),
                loss_part, N, dsp, dtp, 4.0 / (N * N), EPS, D_CHUNKS=triton.cdiv(dsp, bc),
                BLOCK_M=bm, BLOCK_N=bm, BLOCK_K=bk, BLOCK_C=bc, **flags, **opts,
            )
            return loss_part

        cfg = reg_cfgs[0] if INTERPRET else gpu_config("nxn_reg", s.dtype, shape_key, launch)
    else:
        if not compute_grad:
            g = out = torch.empty((1, 1, 1), device=s.device, dtype=torch.float32)
        elif s.dtype == torch.float32:
            g = out
        else:
            g = torch.empty((B, N, dsp), device=s.device, dtype=torch.float32)

        def launch(cfg):
            consts, opts = split_launch(cfg)
            bm, bk = consts["BLOCK_M"], consts["BLOCK_K"]
            n_m = triton.cdiv(N, bm)
            loss_part = torch.empty((B, n_m), device=s.device, dtype=torch.float32)
            gram_nxn_kernel[(n_m, B)](
                TensorDescriptor.from_tensor(sp, [1, bm, bk]), TensorDescriptor.from_tensor(tp, [1, bm, bk]), sp,
                rs, rt, g, out, loss_part, N, dsp, dtp, sp.stride(0), sp.stride(1),
                g.stride(0), g.stride(1), out.stride(0), out.stride(1), 4.0 / (N * N), EPS,
                COMPUTE_GRAD=bool(compute_grad), BLOCK_M=bm, BLOCK_N=bm, BLOCK_K=bk, **flags, **opts,
            )
            return loss_part

        if INTERPRET:
            cfg = {"BLOCK_M": pow2(N, 16, 64), "BLOCK_K": pow2(max(dsp, dtp), 16, 64)}
        else:
            cfg = gpu_config("nxn", s.dtype, shape_key, launch)
    per_image = launch(cfg).sum(dim=1) / (N * N)  # fixed-order reduction of the per-tile partials
    if not compute_grad:
        return per_image, None
    return per_image, _grad_result(out, DS, final)


def inv_norms(x: torch.Tensor) -> torch.Tensor:
    """``(B, N)`` fp32 ``1 / max(||x_row||, eps)``."""
    B, N, D = x.shape
    r = torch.empty((B, N), device=x.device, dtype=torch.float32)
    if INTERPRET:
        consts, opts = {"BLOCK_N": pow2(N, 16, 64), "BLOCK_D": pow2(D, 16, 64)}, {}
    else:
        consts, opts = split_launch(GPU_CONFIGS[("inv_norm", dtype_class(x.dtype))][0])
    inv_norm_kernel[(triton.cdiv(N, consts["BLOCK_N"]), B)](x, r, N, D, x.stride(0), x.stride(1), x.stride(2),
                                                             EPS, **consts, **opts)
    return r


def launch_dxd(s: torch.Tensor, t: torch.Tensor, precision: str, compute_grad: bool,
               out: torch.Tensor | None = None):
    """Per-image loss and (``compute_grad``) ``dloss_b/ds_b``, d x d form (equal feature sizes).

    Two launches: the ``D x D`` fp32 matrices ``P, C, Q`` of every image (the loss is reduced from them
    by torch ops in float64), then the gradient rows. ``out`` as in :func:`launch_nxn`.
    """
    B, N, D = s.shape
    prec = fp32_precision(precision, s.dtype)
    rs = inv_norms(s)
    rt = inv_norms(t)
    p = torch.empty((B, D, D), device=s.device, dtype=torch.float32)
    c = torch.empty_like(p)
    q = torch.empty_like(p)
    strides = (s.stride(0), s.stride(1), s.stride(2), t.stride(0), t.stride(1), t.stride(2))

    def launch_grams(cfg):
        consts, opts = split_launch(cfg)
        bi = consts["BLOCK_I"]
        gram_dxd_grams_kernel[(triton.cdiv(D, bi), triton.cdiv(D, bi), B)](
            s, t, rs, rt, p, c, q, N, D, *strides, PREC=prec, BLOCK_I=bi, BLOCK_J=bi,
            BLOCK_N=consts["BLOCK_N"], **opts,
        )

    if INTERPRET:
        launch_grams({"BLOCK_I": pow2(D, 16, 64), "BLOCK_N": pow2(N, 16, 64)})
    else:
        launch_grams(gpu_config("dxd_grams", s.dtype, (triton.next_power_of_2(N), D), launch_grams))
    sq = (q * (2.0 * p + 4.0 * c + q)).sum(dim=(1, 2), dtype=torch.float64) \
        + 2.0 * (c * c.transpose(1, 2)).sum(dim=(1, 2), dtype=torch.float64)
    per_image = (sq / (N * N)).to(torch.float32)
    if not compute_grad:
        return per_image, None
    out = _grad_target(out, s, D, True)
    g = out if s.dtype == torch.float32 else torch.empty((B, N, D), device=s.device, dtype=torch.float32)

    def launch_apply(cfg):
        consts, opts = split_launch(cfg)
        bm = consts["BLOCK_M"]
        gram_dxd_apply_kernel[(triton.cdiv(N, bm), B)](
            s, t, rs, rt, p, c, q, g, out, N, D, *strides, g.stride(0), g.stride(1), out.stride(0),
            out.stride(1), 4.0 / (N * N), EPS, PREC=prec, BLOCK_M=bm, BLOCK_D=consts["BLOCK_D"], **opts,
        )

    if INTERPRET:
        launch_apply({"BLOCK_M": pow2(N, 16, 64), "BLOCK_D": pow2(D, 16, 64)})
    else:
        launch_apply(gpu_config("dxd_apply", s.dtype, (triton.next_power_of_2(N), D), launch_apply))
    return per_image, out

