"""N x N Triton kernels of the gram loss: grams built tile by tile on chip, never stored.

Layer 1 of the gram op (``@triton.jit`` only). The algorithm, costs and precision of the two kernels
(gradient rows in registers, or in an fp32 row buffer) are in docs/KERNELS.md ("N x N form").
"""
import triton
import triton.language as tl

from crossscale_kernels.gram.jit_rows import project_rows


@triton.jit
def _inv_norm_block(RS, RT, b, start, N, BLOCK: tl.constexpr):
    """Indices ``start + [0, BLOCK)``, their mask, and the student's and teacher's inverse norms there
    (0 past ``N``)."""
    idx = start + tl.arange(0, BLOCK)
    mask = idx < N
    r_s = tl.load(RS + b * N + idx, mask=mask, other=0.0)
    r_t = tl.load(RT + b * N + idx, mask=mask, other=0.0)
    return idx, mask, r_s, r_t


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
def gram_nxn_kernel(S, T, SX, RS, RT, G, OUT, LOSS, N, DS, DT, sxb, sxn, sgb, sgn, sob, son,
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
    rows, rmask, ri_s, ri_t = _inv_norm_block(RS, RT, b, i0, N, BLOCK_M)
    loss_rows = tl.zeros([BLOCK_M], dtype=tl.float32)
    if COMPUTE_GRAD:
        j_first = 0
    else:
        j_first = i0
    for j0 in range(j_first, N, BLOCK_N):
        _, _, rj_s, rj_t = _inv_norm_block(RS, RT, b, j0, N, BLOCK_N)
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
        project_rows(G + b.to(tl.int64) * sgb, OUT + b.to(tl.int64) * sob, SX + b.to(tl.int64) * sxb, rows, rmask,
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
def gram_nxn_reg_kernel(S, SC, T, RS, RT, OUT, LOSS, N, DS, DT, grad_scale, EPS_: tl.constexpr,
                         REMOVE_NEG: tl.constexpr, FOLD_R: tl.constexpr, SPLIT: tl.constexpr, PREC: tl.constexpr,
                         D_CHUNKS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                         BLOCK_K: tl.constexpr, BLOCK_C: tl.constexpr):
    """N x N loss and gradient with the program's gradient rows held in registers (``D <= 4 BLOCK_C``).

    As :func:`gram_nxn_kernel` with the gradient, but ``g_i = sum_j E_ij z_j`` accumulates in up to four
    ``BLOCK_M x BLOCK_C`` fp32 register tiles (one per feature chunk) instead of a global fp32 buffer
    read and rewritten for every column tile: no ``G`` buffer, no read-modify-write traffic (which
    would be ``8 B N^2 D / BLOCK_N`` bytes), one store of the finished gradient. ``SC`` is a descriptor of
    the student with blocks ``[1, BLOCK_N, BLOCK_C]``, ``OUT`` one of the output; ``BLOCK_N == BLOCK_M``.
    """
    pid_m = tl.program_id(0)
    b = tl.program_id(1)
    i0 = pid_m * BLOCK_M
    rows, rmask, ri_s, ri_t = _inv_norm_block(RS, RT, b, i0, N, BLOCK_M)
    loss_rows = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc0 = tl.zeros([BLOCK_M, BLOCK_C], dtype=tl.float32)
    acc1 = tl.zeros([BLOCK_M, BLOCK_C], dtype=tl.float32)
    acc2 = tl.zeros([BLOCK_M, BLOCK_C], dtype=tl.float32)
    acc3 = tl.zeros([BLOCK_M, BLOCK_C], dtype=tl.float32)
    for j0 in range(0, N, BLOCK_N):
        _, _, rj_s, rj_t = _inv_norm_block(RS, RT, b, j0, N, BLOCK_N)
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
