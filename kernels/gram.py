"""Fused gram-MSE loss (DINOv3 semantics): Triton kernels, launchers, autograd and the functional entry.

What is computed, for student ``S`` and teacher ``T`` of shape ``(B, N, D)``::

    Z = X / max(||X||_row, 1e-12)                     (row-L2-normalised tokens, as F.normalize)
    loss_b = mean_{i,j} (Zs Zs^T - Zt Zt^T)_{ij}^2      (N x N entries, diagonal kept)
    loss   = mean_b loss_b   (reduction "mean"; "sum" and "none" over images)

and, in the same pass, ``dloss_b / dS_b`` (the teacher is a constant). Layers, bottom up:

1. ``@triton.jit`` kernels and their launchers (``_launch_nxn``, ``_launch_dxd``),
2. ``torch.ops.kernels.gram_fused`` -- a ``torch.library.custom_op`` with a fake (meta) implementation
   and a registered autograd formula, so ``torch.compile`` of a model that calls it does not graph-break,
3. :func:`gram_loss`, the functional, which validates, picks a backend and a form, and reduces.

Two forms, same value:

* **N x N** (``form="nxn"``). A first small kernel writes every token's ``1/max(||x||, eps)`` (fp32).
  Program ``(b, row tile)`` of the main kernel then walks the column tiles ``j``: it builds the raw
  student and teacher gram tiles ``X_i X_j^T`` on chip (tensor cores, fp32 accumulation; operands
  streamed by TMA tensor descriptors, zero-filled past every edge) and applies ``1/||x_i|| * 1/||x_j||``
  as an fp32 epilogue (normalisation fused, never a normalised copy in memory). ``E = Gs - Gt``
  (clamped at 0 on both sides when ``remove_neg``) gives the loss partial ``sum E^2`` and the gradient
  contribution ``E_ij z_j``, summed over ``j`` in a fixed order by the program that owns those rows
  (no atomics, bit-reproducible): in registers, up to four ``64 x 128`` fp32 chunks, when ``D <= 512``
  (:func:`_gram_nxn_reg_kernel`, the default on the GPU for 16-bit inputs: no gradient buffer, no
  read-modify-write traffic), else in an fp32 row buffer in global memory re-read and rewritten per
  column tile (:func:`_gram_nxn_kernel`; ``8 B N^2 D / 64`` bytes of mostly-L2 traffic, which the
  register kernel exists to avoid; also fp32 inputs, whose TF32x3 dots leave no registers for it, and
  the 16-bit split mode). An epilogue applies the
  projection of the normalisation, ``dL/dx = (g - (g.z) z)/||x||`` with ``g = 4/N^2 E Z``. No
  ``B x N x N`` tensor ever reaches global memory. Loss partials are one float per (image, row tile),
  summed afterwards in a fixed order. ``remove_neg`` is supported.
  Cost per image: without the gradient ``2 N^2 D`` flop (``E`` is symmetric: only tiles on and above
  the diagonal, off-diagonal ones counted twice); with it ``6 N^2 D`` (``8 N^2 D`` in the split mode
  below), against a ``4 N^2 D`` minimum: each program recomputes the grams of its whole row block, the
  price of owning its gradient rows outright. Using symmetry there too would need the ``E_ij^T z_i``
  half of every tile added into rows another program owns (atomics: non-deterministic, and at
  ``B N D`` of them per column tile slower than the flop saved) or an ``N x N`` buffer.
* **d x d** (``form="dxd"``), ``O(N d^2)``, no N x N anything. Writing ``A = Zs``, ``B = Zt`` and
  ``Delta = A - B`` (formed in fp32 from the raw rows and their inverse norms), the kernel builds
  ``P = B^T B``, ``C = B^T Delta``, ``Q = Delta^T Delta`` (``d x d``, fp32) and uses

      ||A A^T - B B^T||^2 = <Q, 2P + 4C + Q> + 2 <C, C^T>
      (A A^T - B B^T) A   = A (C^T + Q) + Delta (P + C)

  This is the identity ``||A A^T - B B^T||^2 = ||A^T A||^2 - 2||A^T B||^2 + ||B^T B||^2`` re-expanded
  around the teacher: every term is already of the size of the mismatch, so neither the loss (which
  the textbook form loses as ``1e-7 / rho^2`` in fp32, rho the relative gram mismatch) nor the gradient
  ``4 (A (A^T A) - B (B^T A)) / N^2`` is a small difference of large numbers. Cost ``10 N d^2`` flop per
  image. ``remove_neg`` has no d x d form (the clamp is entrywise on the N x N gram): asking for it
  raises, and ``form="auto"`` always takes N x N then. Needs equal student/teacher feature sizes.

Form switch (``form="auto"``): d x d when ``N > ratio * D`` (``N`` = tokens per gram, i.e. ``B*N`` for
``img_level=False``). Flop counts alone give 6 N^2 D = 10 N D^2, ratio 1.67. For the Triton backend the
ratio is :data:`NXN_MAX_RATIO` = 2.7, FACTS.md's figure: the N x N kernel keeps everything on chip
while the d x d one round-trips three ``d x d`` fp32 matrices per image, which shifts the crossover up.
For the torch backend (the CPU path) it is :data:`NXN_MAX_RATIO_TORCH` = 1.25, measured on this repo's
CPU (fp32, forward + backward, one thread, B = 2, D = 384: N x N faster at N/D = 1.0 (13.7 vs 15.7 ms),
d x d faster at 1.5 (29.0 vs 33.2 ms) and 11x faster at N = 4096). **Both must be re-measured on the
GPU**: ``python benchmarks/gram_kernel.py --crossover`` on a CUDA machine times both Triton forms over
N/D = 0.5 ... 5 for D = 384 and 768.

Precision (``precision=``), errors relative to a float64 evaluation on the same inputs, rho the relative
gram mismatch (``||Gs - Gt|| / ||Gt||``):

==========  ========================  ==================================================================
inputs      mode                      what runs / error (relative, loss and gradient)
==========  ========================  ==================================================================
bf16/fp16   ``"auto"`` / ``"tf32"``   N x N: tensor-core bf16/fp16 dots on the raw inputs (exact products),
                                      fp32 accumulation and epilogues, so the grams carry no rounding of
                                      normalised tokens (which would cost 5e-4/rho in bf16). ``E Z`` rounds
                                      ``E`` to the input dtype: gradient error ~1.1e-3 (bf16) / ~1.4e-4
                                      (fp16), not amplified by 1/rho; then the gradient's cast to the input
                                      dtype adds 1.7e-3 (bf16) / 2e-4 (fp16): ~2.0e-3 in all for bf16
                                      (float64 emulation, N = 1024, D = 384, rho 0.1 and 1e-3 alike).
                                      Loss ~1e-7/rho. d x d: fp32 operands, TF32 dots on the
                                      mismatch-centred terms: ~1e-3 on both, not amplified by 1/rho.
bf16/fp16   ``"ieee"``/``"tf32x3"``   N x N as above but ``E`` split into hi + lo 16-bit halves (two dots;
                                      33 % more flop): before the final cast the gradient is ~1e-6; after
                                      it, the cast's 1.7e-3 (bf16) alone. d x d: 3-pass TF32 / exact fp32.
fp32        ``"auto"`` = ``"tf32x3"``  3-pass split TF32, fp32-accurate: measured (interpreter = exact fp32)
                                      loss ~2e-8 and gradient ~5e-7 at rho 0.3, ~5e-8/rho for small rho
                                      (the rounding of fp32 normalisation itself); the textbook d x d loss
                                      would be ~1e-7/rho^2 (1.0 at rho = 1e-4; ours 6e-5).
fp32        ``"ieee"``                exact fp32 FMA dots (slow on tensor-core GPUs): as tf32x3.
fp32        ``"tf32"`` (opt-in fast)  one TF32 pass. N x N (CPU emulation, D = 384): loss ~1e-7/rho^2,
                                      gradient ~3e-4/rho (3e-3 at rho 0.1, 3e-2 at 0.01) -- only for
                                      large mismatch. d x d: ~1e-3 (mismatch-centred, no 1/rho).
==========  ========================  ==================================================================

The fp32 rows are measured on CPU under ``TRITON_INTERPRET=1`` (tests/kernels holds the tolerance
table); the interpreter runs TF32 as exact fp32 and cannot run bf16 dots, so the TF32 and bf16 rows are
CPU emulations (operands rounded to 10/7-bit mantissas, float64 maths) awaiting a GPU confirmation:
``python benchmarks/gram_kernel.py`` reports the measured error of every provider on the device.

Memory: besides the gradient itself, a call's temporaries (inverse norms, fp32 gradient buffers of the
kernels that need one, the d x d form's three ``D x D`` matrices, padded copies) stay under
:data:`SCRATCH_FRACTION` = 0.2 of the gradient's size: :func:`scratch_plan` launches the images in
groups small enough for that (but large enough to give every SM a program); each image is computed on
its own, so grouping changes no bit. B = 64, N = 4096, D = 384 in bf16 thus peaks at ~1.16x the
gradient (eager: ~13 GB of ``N x N`` grams).

GPU launch configurations (:data:`GPU_CONFIGS`) are compiled for sm_90a on any machine by
``python benchmarks/gram_build.py`` (registers, spills, shared memory, wgmma; the tests require no
spills). Inputs a TMA descriptor cannot address (last stride not 1, rows not 16-byte aligned, e.g. bf16
``D = 37``) are copied once into a zero-padded contiguous buffer; zero features change nothing.

Backends: ``"auto"`` runs Triton on CUDA tensors and the pure-torch forms on CPU; ``"triton"`` forces
Triton (on CPU only under ``TRITON_INTERPRET=1``, set before ``kernels`` is imported); ``"torch"`` runs
the reference (N x N) or the pure-torch version of the d x d scheme above.
"""
from __future__ import annotations

import os
import warnings

import torch
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor

from kernels.reference import EPS, _check, _reduce, gram_loss_reference

__all__ = ["NXN_MAX_RATIO", "NXN_MAX_RATIO_TORCH", "choose_form", "gram_loss", "gram_loss_dxd_torch"]

NXN_MAX_RATIO = 2.7
"""Triton backend: ``form="auto"`` takes N x N while ``N <= NXN_MAX_RATIO * D`` (FACTS.md; re-measure on GPU)."""

NXN_MAX_RATIO_TORCH = 1.25
"""Torch backend (CPU): measured crossover, fp32 forward+backward, 1 thread, D = 384 (between 1.0 and 1.5)."""

_BACKENDS = ("auto", "triton", "torch")
_FORMS = ("auto", "nxn", "dxd")
_PRECISIONS = ("auto", "ieee", "tf32x3", "tf32")
_REDUCTIONS = ("mean", "sum", "none")


# ----------------------------------------------------------------------------------------------------
# Triton kernels
# ----------------------------------------------------------------------------------------------------
@triton.jit
def _gram_tile(X, b, i0, j0, D, PREC: tl.constexpr,
               BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """``X[b, i0:i0+BM] X[b, j0:j0+BN]^T`` of the raw (unnormalised) tokens, fp32 accumulation.

    ``X`` is a ``(B, N, D)`` tensor descriptor (TMA on Hopper; zero fill past every edge, so no masks).
    """
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for k0 in range(0, D, BLOCK_K):
        xi = X.load([b, i0, k0]).reshape(BLOCK_M, BLOCK_K)
        xj = X.load([b, j0, k0]).reshape(BLOCK_N, BLOCK_K)
        acc = tl.dot(xi, tl.trans(xj), acc, input_precision=PREC)
    return acc


@triton.jit
def _e_tile(S, T, b, i0, j0, DS, DT, ri_s, rj_s, ri_t, rj_t, REMOVE_NEG: tl.constexpr, FOLD_R: tl.constexpr,
            PREC: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """``(diff, e)`` of tile ``(i0, j0)``: ``diff = Gs - Gt`` (clamped grams with ``remove_neg``) for the
    loss, ``e`` its gradient weight (0 where the student's clamp is inactive), times ``r_j`` when FOLD_R.

    The normalisation is an fp32 epilogue on the grams of the raw inputs. Padded rows and columns are
    exact zeros (zero-filled loads, zero inverse norms).
    """
    gs = _gram_tile(S, b, i0, j0, DS, PREC, BLOCK_M, BLOCK_N, BLOCK_K) * ri_s[:, None] * rj_s[None, :]
    gt = _gram_tile(T, b, i0, j0, DT, PREC, BLOCK_M, BLOCK_N, BLOCK_K) * ri_t[:, None] * rj_t[None, :]
    if REMOVE_NEG:
        diff = tl.maximum(gs, 0.0) - tl.maximum(gt, 0.0)
        e = tl.where(gs > 0.0, diff, 0.0)  # clamp_min's gradient is 0 at 0, as torch's
    else:
        diff = gs - gt
        e = diff
    if FOLD_R:  # g_i = sum_j E_ij z_j, z_j = r_j x_j: r_j folded into E (bf16/fp32) or into z (fp16, range)
        e = e * rj_s[None, :]
    return diff, e


@triton.jit
def _project_rows(G, OUT, X, rows, rmask, r, keep, scale, D, sgn, son, sxn, sxd,
                  BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):
    """``OUT = scale * r * (g - (g.x) keep x)`` for the rows; ``keep = r^2`` (or 0 below eps).

    ``g`` is read back from the fp32 row buffer ``G``; ``(g.x) r^2 x = (g.z) z`` is the projection term
    of the normalisation's Jacobian, skipped (as ``F.normalize``'s clamp does) for norms below eps.
    """
    dk = tl.arange(0, BLOCK_D)
    gx = tl.zeros([BLOCK_M], dtype=tl.float32)
    for d0 in range(0, D, BLOCK_D):
        dd = d0 + dk
        m = rmask[:, None] & (dd < D)[None, :]
        g = tl.load(G + rows[:, None] * sgn + dd[None, :], mask=m, other=0.0)
        x = tl.load(X + rows[:, None] * sxn + dd[None, :] * sxd, mask=m, other=0.0).to(tl.float32)
        gx += tl.sum(g * x, axis=1)
    coef = gx * keep
    for d0 in range(0, D, BLOCK_D):
        dd = d0 + dk
        m = rmask[:, None] & (dd < D)[None, :]
        g = tl.load(G + rows[:, None] * sgn + dd[None, :], mask=m, other=0.0)
        x = tl.load(X + rows[:, None] * sxn + dd[None, :] * sxd, mask=m, other=0.0).to(tl.float32)
        dx = (g - coef[:, None] * x) * (r * scale)[:, None]
        tl.store(OUT + rows[:, None] * son + dd[None, :], dx.to(OUT.dtype.element_ty), mask=m)


@triton.jit
def _gram_nxn_kernel(S, T, SX, RS, RT, G, OUT, LOSS, N, DS, DT, sxb, sxn, sgb, sgn, sob, son,
                     grad_scale, EPS_: tl.constexpr,
                     REMOVE_NEG: tl.constexpr, COMPUTE_GRAD: tl.constexpr, FOLD_R: tl.constexpr,
                     SPLIT: tl.constexpr, PREC: tl.constexpr,
                     BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """One program = one image ``b`` x one tile of ``BLOCK_M`` rows.

    ``S``/``T`` are ``(B, N, D)`` tensor descriptors with blocks ``[1, BLOCK_M, BLOCK_K]``, ``SX`` the
    student's raw pointer (unit feature stride; the projection epilogue reads it); ``RS``/``RT``
    hold each row's ``1/max(||x||, eps)`` (fp32, ``(B, N)``). With the gradient the program walks every
    column tile (it needs its whole row block of ``E``); without it, only the tiles on and right of the
    diagonal, off-diagonal ones counted twice (``E`` is symmetric; needs ``BLOCK_N == BLOCK_M``).
    """
    pid_m = tl.program_id(0)
    b = tl.program_id(1)
    i0 = pid_m * BLOCK_M
    rows = i0 + tl.arange(0, BLOCK_M)
    rmask = rows < N
    ri_s = tl.load(RS + b * N + rows, mask=rmask, other=0.0)
    ri_t = tl.load(RT + b * N + rows, mask=rmask, other=0.0)
    loss_rows = tl.zeros([BLOCK_M], dtype=tl.float32)
    if COMPUTE_GRAD:
        j_first = 0
    else:
        j_first = i0
    for j0 in range(j_first, N, BLOCK_N):
        cols = j0 + tl.arange(0, BLOCK_N)
        cmask = cols < N
        rj_s = tl.load(RS + b * N + cols, mask=cmask, other=0.0)
        rj_t = tl.load(RT + b * N + cols, mask=cmask, other=0.0)
        diff, e = _e_tile(S, T, b, i0, j0, DS, DT, ri_s, rj_s, ri_t, rj_t, REMOVE_NEG, FOLD_R, PREC,
                          BLOCK_M, BLOCK_N, BLOCK_K)
        if COMPUTE_GRAD:
            loss_rows += tl.sum(diff * diff, axis=1)
            for d0 in range(0, DS, BLOCK_K):
                xj = S.load([b, j0, d0]).reshape(BLOCK_N, BLOCK_K)
                if not FOLD_R:
                    xj = (xj.to(tl.float32) * rj_s[:, None]).to(xj.dtype)
                part = _e_times(e, xj, tl.zeros([BLOCK_M, BLOCK_K], dtype=tl.float32), SPLIT, PREC)
                dd = d0 + tl.arange(0, BLOCK_K)
                gmask = rmask[:, None] & (dd < DS)[None, :]
                gptr = G + b.to(tl.int64) * sgb + rows[:, None] * sgn + dd[None, :]
                # This program owns these rows: plain read-modify-write in a fixed j order.
                if j0 > 0:
                    part += tl.load(gptr, mask=gmask, other=0.0)
                tl.store(gptr, part, mask=gmask)
            tl.debug_barrier()  # the next tile's read of G may come from other threads of this program
        else:
            w = tl.where(j0 == i0, 1.0, 2.0)
            loss_rows += w * tl.sum(diff * diff, axis=1)
    tl.store(LOSS + b * tl.num_programs(0) + pid_m, tl.sum(loss_rows, axis=0))
    if COMPUTE_GRAD:
        keep = tl.where(ri_s < 1.0 / EPS_, ri_s * ri_s, 0.0)
        _project_rows(G + b.to(tl.int64) * sgb, OUT + b.to(tl.int64) * sob, SX + b.to(tl.int64) * sxb, rows, rmask,
                      ri_s, keep, grad_scale, DS, sgn, son, sxn, 1, BLOCK_M, BLOCK_K)


@triton.jit
def _e_times(e, xj, acc, SPLIT: tl.constexpr, PREC: tl.constexpr):
    """``acc + E x_j`` with fp32 ``E``: split hi + lo (16-bit, SPLIT), TF32 modes (fp32), or ``E`` rounded
    to the input dtype (16-bit default: error 2^-9 bf16 / 2^-12 fp16 of ``E``, not amplified by 1/rho)."""
    if SPLIT:
        e_hi = e.to(xj.dtype)
        acc = tl.dot(e_hi, xj, acc)
        acc = tl.dot((e - e_hi.to(tl.float32)).to(xj.dtype), xj, acc)
    elif xj.dtype == tl.float32:
        acc = tl.dot(e, xj, acc, input_precision=PREC)
    else:
        acc = tl.dot(e.to(xj.dtype), xj, acc)
    return acc


@triton.jit
def _chunk_grad(acc, e, SC, b, j0, c: tl.constexpr, rj_s, FOLD_R: tl.constexpr, SPLIT: tl.constexpr,
                PREC: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr):
    """``acc += E_ij x_j[:, chunk c]`` (``z_j`` when the ``r_j`` is not folded into ``E``)."""
    xj = SC.load([b, j0, c * BLOCK_C]).reshape(BLOCK_N, BLOCK_C)
    if not FOLD_R:
        xj = (xj.to(tl.float32) * rj_s[:, None]).to(xj.dtype)
    return _e_times(e, xj, acc, SPLIT, PREC)


@triton.jit
def _chunk_gx(acc, SC, b, i0, c: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr):
    """Row sums of ``g . x`` over feature chunk ``c``."""
    x = SC.load([b, i0, c * BLOCK_C]).reshape(BLOCK_M, BLOCK_C).to(tl.float32)
    return tl.sum(acc * x, axis=1)


@triton.jit
def _chunk_store(acc, coef, scale, SC, OUT, b, i0, c: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr):
    """``OUT[rows, chunk c] = scale * (g - coef x)`` (the normalisation's projection), one TMA store."""
    x = SC.load([b, i0, c * BLOCK_C]).reshape(BLOCK_M, BLOCK_C).to(tl.float32)
    dx = (acc - coef[:, None] * x) * scale[:, None]
    OUT.store([b, i0, c * BLOCK_C], dx.to(OUT.dtype).reshape(1, BLOCK_M, BLOCK_C))


@triton.jit
def _gram_nxn_reg_kernel(S, SC, T, RS, RT, OUT, LOSS, N, DS, DT, grad_scale, EPS_: tl.constexpr,
                         REMOVE_NEG: tl.constexpr, FOLD_R: tl.constexpr, SPLIT: tl.constexpr, PREC: tl.constexpr,
                         D_CHUNKS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                         BLOCK_K: tl.constexpr, BLOCK_C: tl.constexpr):
    """N x N loss and gradient with the program's gradient rows held in registers (``D <= 4 BLOCK_C``).

    As :func:`_gram_nxn_kernel` with the gradient, but ``g_i = sum_j E_ij z_j`` accumulates in up to four
    ``BLOCK_M x BLOCK_C`` fp32 register tiles (one per feature chunk) instead of a global fp32 buffer
    read and rewritten for every column tile: no ``G`` buffer, no read-modify-write traffic (which
    would be ``8 B N^2 D / BLOCK_N`` bytes), one store of the finished gradient. ``SC`` is a descriptor of
    the student with blocks ``[1, BLOCK_N, BLOCK_C]``, ``OUT`` one of the output; ``BLOCK_N == BLOCK_M``.
    """
    pid_m = tl.program_id(0)
    b = tl.program_id(1)
    i0 = pid_m * BLOCK_M
    rows = i0 + tl.arange(0, BLOCK_M)
    rmask = rows < N
    ri_s = tl.load(RS + b * N + rows, mask=rmask, other=0.0)
    ri_t = tl.load(RT + b * N + rows, mask=rmask, other=0.0)
    loss_rows = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc0 = tl.zeros([BLOCK_M, BLOCK_C], dtype=tl.float32)
    acc1 = tl.zeros([BLOCK_M, BLOCK_C], dtype=tl.float32)
    acc2 = tl.zeros([BLOCK_M, BLOCK_C], dtype=tl.float32)
    acc3 = tl.zeros([BLOCK_M, BLOCK_C], dtype=tl.float32)
    for j0 in range(0, N, BLOCK_N):
        cols = j0 + tl.arange(0, BLOCK_N)
        cmask = cols < N
        rj_s = tl.load(RS + b * N + cols, mask=cmask, other=0.0)
        rj_t = tl.load(RT + b * N + cols, mask=cmask, other=0.0)
        diff, e = _e_tile(S, T, b, i0, j0, DS, DT, ri_s, rj_s, ri_t, rj_t, REMOVE_NEG, FOLD_R, PREC,
                          BLOCK_M, BLOCK_N, BLOCK_K)
        loss_rows += tl.sum(diff * diff, axis=1)
        acc0 = _chunk_grad(acc0, e, SC, b, j0, 0, rj_s, FOLD_R, SPLIT, PREC, BLOCK_N, BLOCK_C)
        if D_CHUNKS > 1:
            acc1 = _chunk_grad(acc1, e, SC, b, j0, 1, rj_s, FOLD_R, SPLIT, PREC, BLOCK_N, BLOCK_C)
        if D_CHUNKS > 2:
            acc2 = _chunk_grad(acc2, e, SC, b, j0, 2, rj_s, FOLD_R, SPLIT, PREC, BLOCK_N, BLOCK_C)
        if D_CHUNKS > 3:
            acc3 = _chunk_grad(acc3, e, SC, b, j0, 3, rj_s, FOLD_R, SPLIT, PREC, BLOCK_N, BLOCK_C)
    tl.store(LOSS + b * tl.num_programs(0) + pid_m, tl.sum(loss_rows, axis=0))
    # dL/dx = scale * r * (g - (g.z) z); (g.x) r^2 x == (g.z) z, skipped below eps as F.normalize does.
    gx = _chunk_gx(acc0, SC, b, i0, 0, BLOCK_M, BLOCK_C)
    if D_CHUNKS > 1:
        gx += _chunk_gx(acc1, SC, b, i0, 1, BLOCK_M, BLOCK_C)
    if D_CHUNKS > 2:
        gx += _chunk_gx(acc2, SC, b, i0, 2, BLOCK_M, BLOCK_C)
    if D_CHUNKS > 3:
        gx += _chunk_gx(acc3, SC, b, i0, 3, BLOCK_M, BLOCK_C)
    coef = gx * tl.where(ri_s < 1.0 / EPS_, ri_s * ri_s, 0.0)
    scale = ri_s * grad_scale
    _chunk_store(acc0, coef, scale, SC, OUT, b, i0, 0, BLOCK_M, BLOCK_C)
    if D_CHUNKS > 1:
        _chunk_store(acc1, coef, scale, SC, OUT, b, i0, 1, BLOCK_M, BLOCK_C)
    if D_CHUNKS > 2:
        _chunk_store(acc2, coef, scale, SC, OUT, b, i0, 2, BLOCK_M, BLOCK_C)
    if D_CHUNKS > 3:
        _chunk_store(acc3, coef, scale, SC, OUT, b, i0, 3, BLOCK_M, BLOCK_C)


@triton.jit
def _inv_norm_kernel(X, R, N, D, sxb, sxn, sxd, EPS_: tl.constexpr, BLOCK_N: tl.constexpr,
                     BLOCK_D: tl.constexpr):
    """``R[b, n] = 1 / max(||X[b, n]||, eps)`` in fp32."""
    b = tl.program_id(1).to(tl.int64)
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    rmask = rows < N
    dk = tl.arange(0, BLOCK_D)
    ss = tl.zeros([BLOCK_N], dtype=tl.float32)
    for d0 in range(0, D, BLOCK_D):
        dd = d0 + dk
        x = tl.load(X + b * sxb + rows[:, None] * sxn + dd[None, :] * sxd,
                    mask=rmask[:, None] & (dd < D)[None, :], other=0.0).to(tl.float32)
        ss += tl.sum(x * x, axis=1)
    tl.store(R + b * N + rows, 1.0 / tl.maximum(tl.sqrt(ss), EPS_), mask=rmask)


@triton.jit
def _load_centred(S_b, T_b, ra, rb, nn, nmask, cc, cmask, ssn, ssd, stn, std_):
    """Normalised teacher rows ``B`` and the mismatch ``Delta = A - B`` (fp32) for a row x column block."""
    m = nmask[:, None] & cmask[None, :]
    a = tl.load(S_b + nn[:, None] * ssn + cc[None, :] * ssd, mask=m, other=0.0).to(tl.float32) * ra[:, None]
    bt = tl.load(T_b + nn[:, None] * stn + cc[None, :] * std_, mask=m, other=0.0).to(tl.float32) * rb[:, None]
    return a, bt, a - bt


@triton.jit
def _gram_dxd_grams_kernel(S, T, RS, RT, P, C, Q, N, D, ssb, ssn, ssd, stb, stn, std_,
                           PREC: tl.constexpr, BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr,
                           BLOCK_N: tl.constexpr):
    """Tile ``(i, j)`` of ``P = B^T B``, ``C = B^T Delta``, ``Q = Delta^T Delta`` for image ``b``."""
    pid_i = tl.program_id(0)
    pid_j = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    S_b = S + b * ssb
    T_b = T + b * stb
    ci = pid_i * BLOCK_I + tl.arange(0, BLOCK_I)
    cj = pid_j * BLOCK_J + tl.arange(0, BLOCK_J)
    imask = ci < D
    jmask = cj < D
    p = tl.zeros([BLOCK_I, BLOCK_J], dtype=tl.float32)
    c = tl.zeros([BLOCK_I, BLOCK_J], dtype=tl.float32)
    q = tl.zeros([BLOCK_I, BLOCK_J], dtype=tl.float32)
    nk = tl.arange(0, BLOCK_N)
    for n0 in range(0, N, BLOCK_N):
        nn = n0 + nk
        nmask = nn < N
        ra = tl.load(RS + b * N + nn, mask=nmask, other=0.0)
        rb = tl.load(RT + b * N + nn, mask=nmask, other=0.0)
        _, b_i, d_i = _load_centred(S_b, T_b, ra, rb, nn, nmask, ci, imask, ssn, ssd, stn, std_)
        _, b_j, d_j = _load_centred(S_b, T_b, ra, rb, nn, nmask, cj, jmask, ssn, ssd, stn, std_)
        b_it = tl.trans(b_i)
        p = tl.dot(b_it, b_j, p, input_precision=PREC)
        c = tl.dot(b_it, d_j, c, input_precision=PREC)
        q = tl.dot(tl.trans(d_i), d_j, q, input_precision=PREC)
    off = b * D * D + ci[:, None] * D + cj[None, :]
    m = imask[:, None] & jmask[None, :]
    tl.store(P + off, p, mask=m)
    tl.store(C + off, c, mask=m)
    tl.store(Q + off, q, mask=m)


@triton.jit
def _gram_dxd_apply_kernel(S, T, RS, RT, P, C, Q, G, OUT, N, D, ssb, ssn, ssd, stb, stn, std_,
                           sgb, sgn, sob, son, grad_scale, EPS_: tl.constexpr, PREC: tl.constexpr,
                           BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):
    """Rows of ``g = A (C^T + Q) + Delta (P + C)``, then the normalisation's projection."""
    pid_m = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    S_b = S + b * ssb
    T_b = T + b * stb
    G_b = G + b * sgb
    M_b = b * D * D
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rmask = rows < N
    ra = tl.load(RS + b * N + rows, mask=rmask, other=0.0)
    rb = tl.load(RT + b * N + rows, mask=rmask, other=0.0)
    dk = tl.arange(0, BLOCK_D)
    for c0 in range(0, D, BLOCK_D):
        cc = c0 + dk
        cmask = cc < D
        acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
        for k0 in range(0, D, BLOCK_D):
            kk = k0 + dk
            kmask = kk < D
            a, _, d = _load_centred(S_b, T_b, ra, rb, rows, rmask, kk, kmask, ssn, ssd, stn, std_)
            mm = kmask[:, None] & cmask[None, :]
            kc = M_b + kk[:, None] * D + cc[None, :]
            m1 = tl.load(C + M_b + cc[None, :] * D + kk[:, None], mask=mm, other=0.0) \
                + tl.load(Q + kc, mask=mm, other=0.0)
            m2 = tl.load(P + kc, mask=mm, other=0.0) + tl.load(C + kc, mask=mm, other=0.0)
            acc = tl.dot(a, m1, acc, input_precision=PREC)
            acc = tl.dot(d, m2, acc, input_precision=PREC)
        tl.store(G_b + rows[:, None] * sgn + cc[None, :], acc, mask=rmask[:, None] & cmask[None, :])
    tl.debug_barrier()
    keep = tl.where(ra < 1.0 / EPS_, ra * ra, 0.0)
    _project_rows(G_b, OUT + b * sob, S_b, rows, rmask, ra, keep, grad_scale, D, sgn, son, ssn, ssd,
                  BLOCK_M, BLOCK_D)


# Decided once, when the kernels were decorated (a plain constant, so torch.compile traces it freely).
_INTERPRET = type(_gram_nxn_kernel).__name__ == "InterpretedFunction"


# ----------------------------------------------------------------------------------------------------
# Launchers
# ----------------------------------------------------------------------------------------------------
def _pow2(n: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, triton.next_power_of_2(max(int(n), 1))))


def _interpreting() -> bool:
    """The kernels were built for the interpreter (``TRITON_INTERPRET=1`` when this module was imported)."""
    return _INTERPRET


def _fp32_precision(precision: str, dtype: torch.dtype) -> str:
    """``input_precision`` of the dots that take fp32 operands."""
    if precision != "auto":
        return precision
    return "tf32x3" if dtype == torch.float32 else "tf32"


def _common_dtype(student: torch.Tensor, teacher: torch.Tensor) -> torch.dtype:
    dtype = torch.promote_types(student.dtype, teacher.dtype)
    if dtype not in (torch.float16, torch.bfloat16, torch.float32):
        raise TypeError(
            f"the Triton gram loss runs float16/bfloat16/float32, got student {student.dtype} and teacher "
            f"{teacher.dtype}; use backend='torch' for float64 (the oracle) or cast the tokens."
        )
    return dtype


# GPU launch configurations. Every entry is compiled for sm_90a by ``python benchmarks/gram_build.py``
# (no GPU needed), and tests/kernels/test_gram_sm90.py holds them to: no register spills, shared memory
# within the H100's 227 KiB, wgmma tensor-core instructions. The first entry of each list is the default;
# on CUDA the others are timed once per shape class and the fastest kept (KERNELS_GRAM_AUTOTUNE=0: off).
GPU_CONFIGS: dict[tuple[str, str], list[dict]] = {
    # N x N with the gradient rows in registers (D <= 4 BLOCK_C); fp32 has none (its TF32x3 dots spill)
    ("nxn_reg", "16bit"): [
        {"BLOCK_M": 64, "BLOCK_K": 64, "BLOCK_C": 128, "num_warps": 8, "num_stages": 3},
        {"BLOCK_M": 64, "BLOCK_K": 64, "BLOCK_C": 128, "num_warps": 8, "num_stages": 2},
    ],
    ("nxn", "16bit"): [
        {"BLOCK_M": 64, "BLOCK_K": 64, "num_warps": 8, "num_stages": 3},
        {"BLOCK_M": 64, "BLOCK_K": 64, "num_warps": 8, "num_stages": 4},
        {"BLOCK_M": 64, "BLOCK_K": 32, "num_warps": 4, "num_stages": 3},
    ],
    ("nxn", "fp32"): [
        {"BLOCK_M": 64, "BLOCK_K": 16, "num_warps": 8, "num_stages": 3},
        {"BLOCK_M": 64, "BLOCK_K": 16, "num_warps": 8, "num_stages": 4},
        {"BLOCK_M": 64, "BLOCK_K": 16, "num_warps": 4, "num_stages": 3},
    ],
    ("dxd_grams", "16bit"): [
        {"BLOCK_I": 64, "BLOCK_N": 32, "num_warps": 8, "num_stages": 3},
        {"BLOCK_I": 64, "BLOCK_N": 16, "num_warps": 8, "num_stages": 3},
    ],
    ("dxd_grams", "fp32"): [
        {"BLOCK_I": 64, "BLOCK_N": 16, "num_warps": 8, "num_stages": 3},
    ],
    ("dxd_apply", "16bit"): [
        {"BLOCK_M": 64, "BLOCK_D": 32, "num_warps": 4, "num_stages": 3},
        {"BLOCK_M": 64, "BLOCK_D": 32, "num_warps": 8, "num_stages": 3},
    ],
    ("dxd_apply", "fp32"): [
        {"BLOCK_M": 64, "BLOCK_D": 16, "num_warps": 8, "num_stages": 3},
        {"BLOCK_M": 64, "BLOCK_D": 16, "num_warps": 4, "num_stages": 3},
    ],
    # memory-bound; one config (the 64 x 128 tile spills its 64-bit pointers)
    ("inv_norm", "16bit"): [{"BLOCK_N": 32, "BLOCK_D": 64, "num_warps": 4}],
    ("inv_norm", "fp32"): [{"BLOCK_N": 32, "BLOCK_D": 64, "num_warps": 4}],
}


_REG_CHUNKS = 4  # register accumulators of _gram_nxn_reg_kernel


def _dtype_class(dtype: torch.dtype) -> str:
    return "fp32" if dtype == torch.float32 else "16bit"


_TUNED: dict[tuple, dict] = {}


def _gpu_config(kind: str, dtype: torch.dtype, key: tuple, launch) -> dict:
    """Config for a CUDA launch: the default, or (autotuning on) the fastest candidate for ``key``.

    ``launch(cfg)`` runs the kernel once with ``cfg``; it must be idempotent (every output is overwritten).
    """
    cands = GPU_CONFIGS[(kind, _dtype_class(dtype))]
    if len(cands) == 1 or os.environ.get("KERNELS_GRAM_AUTOTUNE", "1") == "0":
        return cands[0]
    full_key = (kind, dtype, *key)
    if full_key not in _TUNED:
        from triton.testing import do_bench

        times = [do_bench(lambda c=c: launch(c), warmup=5, rep=20) for c in cands]
        _TUNED[full_key] = cands[min(range(len(cands)), key=times.__getitem__)]
    return _TUNED[full_key]


def _split_launch(cfg: dict) -> tuple[dict, dict]:
    """``(constexprs, launch options)`` of a config dict."""
    opts = {k: cfg[k] for k in ("num_warps", "num_stages") if k in cfg}
    return {k: v for k, v in cfg.items() if k not in opts}, opts


def _tma_ready(x: torch.Tensor) -> torch.Tensor:
    """``x`` itself if a TMA descriptor can address it, else a contiguous copy with ``D`` zero-padded.

    Zero features change neither the norms nor the grams, and their gradient (sliced off afterwards)
    is zero.
    """
    if _tma_addressable(x):
        return x
    y = x.new_zeros((*x.shape[:2], _tma_width(x)))
    y[..., :x.shape[-1]] = x
    return y


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


def _split_mode(dtype: torch.dtype, precision: str) -> bool:
    """16-bit inputs with an accurate ``precision``: ``E`` split in hi + lo halves."""
    return dtype != torch.float32 and precision in ("ieee", "tf32x3")


def _nxn_register_plan(dtype: torch.dtype, n: int, dsp: int, dtp: int, precision: str,
                       interpret: bool | None = None) -> tuple[list[dict], bool]:
    """Configs of the register-gradient kernel and whether ``dsp`` (padded) features fit its chunks."""
    if _interpreting() if interpret is None else interpret:  # few, large programs: the interpreter pays per program and per loop step
        cfgs = [{"BLOCK_M": _pow2(n, 16, 64), "BLOCK_K": _pow2(max(dsp, dtp), 16, 64),
                 "BLOCK_C": _pow2(triton.cdiv(dsp, _REG_CHUNKS), 16, 64)}]
    else:
        cfgs = GPU_CONFIGS.get(("nxn_reg", _dtype_class(dtype)), [])
    # The split-E mode doubles the gradient dots' operands: it spills in the register kernel.
    fits = bool(cfgs) and triton.cdiv(dsp, cfgs[0]["BLOCK_C"]) <= _REG_CHUNKS and not _split_mode(dtype, precision)
    return cfgs, fits


SCRATCH_FRACTION = 0.2
"""Temporary buffers of one launch stay under this fraction of the gradient's size: images are
launched in groups small enough for it, but never so small that a group leaves SMs idle."""


def _tma_addressable(x: torch.Tensor) -> bool:
    """TMA needs a unit last stride and a 16-byte aligned base and strides."""
    elt = x.element_size()
    return (x.stride(-1) == 1 and x.data_ptr() % 16 == 0
            and all(st > 0 and (st * elt) % 16 == 0 for st in x.stride()[:-1]))


def _tma_width(x: torch.Tensor) -> int:
    """Feature width the N x N kernels see: ``D``, or ``D`` padded to 16 bytes when ``x`` must be copied."""
    align = 16 // x.element_size()
    return x.shape[-1] if _tma_addressable(x) else -(-x.shape[-1] // align) * align


def scratch_plan(form: str, shape_s: tuple, d_teacher: int, dtype: torch.dtype, precision: str, compute_grad: bool,
                 num_sms: int, padded: tuple[int, int] | None = None, interpret: bool | None = None) -> dict:
    """Bytes of temporary memory per image, images per launch, and the launch's total.

    Per image: the inverse norms; the N x N form's zero-padded TMA copies (awkward strides or ``D``),
    its fp32 gradient buffer (general kernel, 16-bit inputs) or padded output; the d x d form's three
    ``D x D`` fp32 matrices and, for 16-bit inputs, its fp32 gradient buffer. Images per launch: as
    many as :data:`SCRATCH_FRACTION` of the gradient allows, at least enough to give every SM a program.
    ``interpret``: plan for the interpreter's launch configurations (default: whichever this process runs).
    """
    b, n, d = shape_s
    elt = torch.empty((), dtype=dtype).element_size()
    dsp, dtp = padded or (d, d_teacher)
    per = 2 * n * 4
    if form == "nxn":
        per += (n * dsp * elt if dsp != d else 0) + (n * dtp * elt if dtp != d_teacher else 0)
        if compute_grad:
            _, fits = _nxn_register_plan(dtype, n, dsp, dtp, precision, interpret)
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


def _launch_nxn(s: torch.Tensor, t: torch.Tensor, remove_neg: bool, precision: str, compute_grad: bool,
                grad_in_registers: bool | None = None, out: torch.Tensor | None = None):
    """Per-image loss and (``compute_grad``) ``dloss_b/ds_b``, N x N form.

    ``grad_in_registers``: None picks :func:`_gram_nxn_reg_kernel` whenever the gradient rows fit in
    its four register chunks (``D <= 512`` on the GPU), else the general kernel with its fp32 ``G``
    buffer; True/False force one (tests use this to run both). ``out``: where to write the gradient
    (contiguous, ``s``'s shape and dtype); allocated when None.
    """
    B, N, DS = s.shape
    interp = _interpreting()
    if interp and s.dtype == torch.bfloat16:
        raise RuntimeError(
            "the N x N Triton kernel's bf16 dots do not run under TRITON_INTERPRET=1 (they return garbage); "
            "on CPU use float16/float32 tokens, form='dxd', or backend='torch'. bf16 runs on the GPU."
        )
    rs = _inv_norms(s, interp)
    rt = _inv_norms(t, interp)
    sp = _tma_ready(s)
    tp = _tma_ready(t)
    dsp, dtp = sp.shape[-1], tp.shape[-1]
    prec = _fp32_precision(precision, s.dtype)
    flags = {"REMOVE_NEG": bool(remove_neg), "FOLD_R": s.dtype != torch.float16,
             "SPLIT": _split_mode(s.dtype, precision), "PREC": prec}
    shape_key = (triton.next_power_of_2(N), dsp, dtp, compute_grad, bool(remove_neg))

    reg_cfgs, fits = _nxn_register_plan(s.dtype, N, dsp, dtp, precision)
    if grad_in_registers and not fits:
        raise ValueError(f"the register-gradient kernel holds at most {_REG_CHUNKS} chunks of "
                         f"{reg_cfgs[0]['BLOCK_C'] if reg_cfgs else 0} features of {s.dtype} without the split "
                         f"mode; got D = {dsp}, precision={precision!r}")
    use_reg = compute_grad and fits and grad_in_registers is not False

    final = out
    out = _grad_target(out, s, dsp, compute_grad)
    if use_reg:

        def launch(cfg):
            consts, opts = _split_launch(cfg)
            bm, bk, bc = consts["BLOCK_M"], consts["BLOCK_K"], consts["BLOCK_C"]
            n_m = triton.cdiv(N, bm)
            loss_part = torch.empty((B, n_m), device=s.device, dtype=torch.float32)
            _gram_nxn_reg_kernel[(n_m, B)](
                TensorDescriptor.from_tensor(sp, [1, bm, bk]), TensorDescriptor.from_tensor(sp, [1, bm, bc]),
                TensorDescriptor.from_tensor(tp, [1, bm, bk]), rs, rt, TensorDescriptor.from_tensor(out, [1, bm, bc]),
                loss_part, N, dsp, dtp, 4.0 / (N * N), EPS, D_CHUNKS=triton.cdiv(dsp, bc),
                BLOCK_M=bm, BLOCK_N=bm, BLOCK_K=bk, BLOCK_C=bc, **flags, **opts,
            )
            return loss_part

        cfg = reg_cfgs[0] if interp else _gpu_config("nxn_reg", s.dtype, shape_key, launch)
    else:
        if not compute_grad:
            g = out = torch.empty((1, 1, 1), device=s.device, dtype=torch.float32)
        elif s.dtype == torch.float32:
            g = out
        else:
            g = torch.empty((B, N, dsp), device=s.device, dtype=torch.float32)

        def launch(cfg):
            consts, opts = _split_launch(cfg)
            bm, bk = consts["BLOCK_M"], consts["BLOCK_K"]
            n_m = triton.cdiv(N, bm)
            loss_part = torch.empty((B, n_m), device=s.device, dtype=torch.float32)
            _gram_nxn_kernel[(n_m, B)](
                TensorDescriptor.from_tensor(sp, [1, bm, bk]), TensorDescriptor.from_tensor(tp, [1, bm, bk]), sp,
                rs, rt, g, out, loss_part, N, dsp, dtp, sp.stride(0), sp.stride(1),
                g.stride(0), g.stride(1), out.stride(0), out.stride(1), 4.0 / (N * N), EPS,
                COMPUTE_GRAD=bool(compute_grad), BLOCK_M=bm, BLOCK_N=bm, BLOCK_K=bk, **flags, **opts,
            )
            return loss_part

        if interp:
            cfg = {"BLOCK_M": _pow2(N, 16, 64), "BLOCK_K": _pow2(max(dsp, dtp), 16, 64)}
        else:
            cfg = _gpu_config("nxn", s.dtype, shape_key, launch)
    per_image = launch(cfg).sum(dim=1) / (N * N)  # fixed-order reduction of the per-tile partials
    if not compute_grad:
        return per_image, None
    return per_image, _grad_result(out, DS, final)


def _inv_norms(x: torch.Tensor, interp: bool) -> torch.Tensor:
    """``(B, N)`` fp32 ``1 / max(||x_row||, eps)``."""
    B, N, D = x.shape
    r = torch.empty((B, N), device=x.device, dtype=torch.float32)
    if interp:
        consts, opts = {"BLOCK_N": _pow2(N, 16, 64), "BLOCK_D": _pow2(D, 16, 64)}, {}
    else:
        consts, opts = _split_launch(GPU_CONFIGS[("inv_norm", _dtype_class(x.dtype))][0])
    _inv_norm_kernel[(triton.cdiv(N, consts["BLOCK_N"]), B)](x, r, N, D, x.stride(0), x.stride(1), x.stride(2),
                                                              EPS, **consts, **opts)
    return r


def _launch_dxd(s: torch.Tensor, t: torch.Tensor, precision: str, compute_grad: bool,
                out: torch.Tensor | None = None):
    B, N, D = s.shape
    interp = _interpreting()
    prec = _fp32_precision(precision, s.dtype)
    rs = _inv_norms(s, interp)
    rt = _inv_norms(t, interp)
    p = torch.empty((B, D, D), device=s.device, dtype=torch.float32)
    c = torch.empty_like(p)
    q = torch.empty_like(p)
    strides = (s.stride(0), s.stride(1), s.stride(2), t.stride(0), t.stride(1), t.stride(2))

    def launch_grams(cfg):
        consts, opts = _split_launch(cfg)
        bi = consts["BLOCK_I"]
        _gram_dxd_grams_kernel[(triton.cdiv(D, bi), triton.cdiv(D, bi), B)](
            s, t, rs, rt, p, c, q, N, D, *strides, PREC=prec, BLOCK_I=bi, BLOCK_J=bi,
            BLOCK_N=consts["BLOCK_N"], **opts,
        )

    if interp:
        launch_grams({"BLOCK_I": _pow2(D, 16, 64), "BLOCK_N": _pow2(N, 16, 64)})
    else:
        launch_grams(_gpu_config("dxd_grams", s.dtype, (triton.next_power_of_2(N), D), launch_grams))
    sq = (q * (2.0 * p + 4.0 * c + q)).sum(dim=(1, 2), dtype=torch.float64) \
        + 2.0 * (c * c.transpose(1, 2)).sum(dim=(1, 2), dtype=torch.float64)
    per_image = (sq / (N * N)).to(torch.float32)
    if not compute_grad:
        return per_image, None
    out = _grad_target(out, s, D, True)
    g = out if s.dtype == torch.float32 else torch.empty((B, N, D), device=s.device, dtype=torch.float32)

    def launch_apply(cfg):
        consts, opts = _split_launch(cfg)
        bm = consts["BLOCK_M"]
        _gram_dxd_apply_kernel[(triton.cdiv(N, bm), B)](
            s, t, rs, rt, p, c, q, g, out, N, D, *strides, g.stride(0), g.stride(1), out.stride(0),
            out.stride(1), 4.0 / (N * N), EPS, PREC=prec, BLOCK_M=bm, BLOCK_D=consts["BLOCK_D"], **opts,
        )

    if interp:
        launch_apply({"BLOCK_M": _pow2(N, 16, 64), "BLOCK_D": _pow2(D, 16, 64)})
    else:
        launch_apply(_gpu_config("dxd_apply", s.dtype, (triton.next_power_of_2(N), D), launch_apply))
    return per_image, out


def _check_triton_device(x: torch.Tensor) -> None:
    if x.device.type == "cuda":
        return
    if x.device.type == "cpu" and _interpreting():
        return
    raise RuntimeError(
        f"backend='triton' needs CUDA tensors (got {x.device}); on CPU set TRITON_INTERPRET=1 before "
        "importing kernels (slow, for tests) or use backend='torch'."
    )


# ----------------------------------------------------------------------------------------------------
# custom op: fake implementation + autograd, so torch.compile sees one opaque node
# ----------------------------------------------------------------------------------------------------
@torch.library.custom_op("kernels::gram_fused", mutates_args=())
def _gram_fused(student: torch.Tensor, teacher: torch.Tensor, form: str, remove_neg: bool, precision: str,
                compute_grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image loss ``(B,)`` fp32 and ``dloss_b/dstudent_b`` ``(B, N, D)`` (empty if not asked)."""
    _check_triton_device(student)
    dtype = _common_dtype(student, teacher)
    s = student.to(dtype)
    t = teacher.to(dtype)
    sms = torch.cuda.get_device_properties(s.device).multi_processor_count if s.device.type == "cuda" else 1
    plan = scratch_plan(form, tuple(s.shape), t.shape[-1], dtype, precision, compute_grad, sms,
                        padded=(_tma_width(s), _tma_width(t)) if form == "nxn" else None)
    grad = torch.empty(s.shape, device=s.device, dtype=dtype) if compute_grad else None
    losses = []
    for b0 in range(0, s.shape[0], plan["images"]):  # each image is independent: same bits in any grouping
        part = slice(b0, b0 + plan["images"])
        out = grad[part] if compute_grad else None
        if form == "nxn":
            losses.append(_launch_nxn(s[part], t[part], remove_neg, precision, compute_grad, out=out)[0])
        else:
            losses.append(_launch_dxd(s[part], t[part], precision, compute_grad, out=out)[0])
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


# ----------------------------------------------------------------------------------------------------
# pure-torch d x d scheme (CPU path of form="dxd"; same algebra as the Triton kernels)
# ----------------------------------------------------------------------------------------------------
def _dxd_torch_core(student: torch.Tensor, teacher: torch.Tensor, compute_grad: bool):
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


class _DxdTorch(torch.autograd.Function):
    @staticmethod
    def forward(ctx, student, teacher):
        per_image, grad = _dxd_torch_core(student, teacher, bool(ctx.needs_input_grad[0]))
        ctx.save_for_backward(grad if grad is not None else student.new_empty((0,)))
        return per_image

    @staticmethod
    def backward(ctx, grad_loss):
        (g,) = ctx.saved_tensors
        wdt = torch.float64 if g.dtype == torch.float64 else torch.float32
        return (g.to(wdt) * grad_loss.to(wdt).view(-1, 1, 1)).to(g.dtype), None


def gram_loss_dxd_torch(student: torch.Tensor, teacher: torch.Tensor, *, img_level: bool = True,
                        reduction: str = "mean") -> torch.Tensor:
    """Pure-torch d x d form with the mismatch-centred precision scheme (see module docstring).

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
        return _reduce(_DxdTorch.apply(student, teacher.detach()), reduction)
    return _reduce(_dxd_torch_core(student, teacher, False)[0], reduction)


# ----------------------------------------------------------------------------------------------------
# functional
# ----------------------------------------------------------------------------------------------------
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
        backend: ``"auto"`` (Triton on CUDA, torch on CPU), ``"triton"`` or ``"torch"``.
        form: ``"auto"`` (:func:`choose_form`), ``"nxn"`` or ``"dxd"``.
        precision: ``"auto"``, ``"ieee"``, ``"tf32x3"`` or ``"tf32"`` for the Triton dots that take
            fp32 operands (errors in the module docstring); ignored by the torch backend.

    Returns:
        float32 loss (float64 for float64 inputs on the torch backend): a scalar, or ``(B,)``.

    Raises:
        ValueError: wrong rank, mismatched ``(B, N)``, unknown option, ``remove_neg`` or unequal
            feature sizes with ``form="dxd"``, tensors on different devices.
        TypeError: non-floating tokens, float64 on the Triton backend.
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
        backend = "triton" if student.device.type == "cuda" and student.dtype != torch.float64 else "torch"
    chosen = choose_form(n, ds, dt, remove_neg=remove_neg, backend=backend) if form == "auto" else form
    if backend == "torch":
        if chosen == "nxn":
            per_image = gram_loss_reference(student, teacher, remove_neg=remove_neg, reduction="none")
        elif student.requires_grad and torch.is_grad_enabled():
            per_image = _DxdTorch.apply(student, teacher)
        else:  # no gradient wanted: skip its O(N D^2) half
            per_image = _dxd_torch_core(student, teacher, False)[0]
    else:
        _common_dtype(student, teacher)
        _check_triton_device(student)
        compute_grad = bool(student.requires_grad and torch.is_grad_enabled())
        per_image, _ = torch.ops.kernels.gram_fused(student, teacher, chosen, bool(remove_neg), precision,
                                                    compute_grad)
    return _reduce(per_image, reduction)
