"""d x d Triton kernels of the gram loss: the mismatch-centred ``O(N d^2)`` scheme.

Layer 1 of the gram op (``@triton.jit`` only); the identity they evaluate is in docs/KERNELS.md
("d x d form").
"""
import triton
import triton.language as tl

from crossscale_kernels.gram.jit_rows import project_rows


@triton.jit
def _load_centred(S_b, T_b, ra, rb, nn, nmask, cc, cmask, ssn, ssd, stn, std_):
    """Normalised teacher rows ``B`` and the mismatch ``Delta = A - B`` (fp32) for a row x column block."""
    m = nmask[:, None] & cmask[None, :]
    a = tl.load(S_b + nn[:, None] * ssn + cc[None, :] * ssd, mask=m, other=0.0).to(tl.float32) * ra[:, None]
    bt = tl.load(T_b + nn[:, None] * stn + cc[None, :] * std_, mask=m, other=0.0).to(tl.float32) * rb[:, None]
    return a, bt, a - bt


@triton.jit
def gram_dxd_grams_kernel(S, T, RS, RT, P, C, Q, N, D, ssb, ssn, ssd, stb, stn, std_,
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
def gram_dxd_apply_kernel(S, T, RS, RT, P, C, Q, G, OUT, N, D, ssb, ssn, ssd, stb, stn, std_,
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
    project_rows(G_b, OUT + b * sob, S_b, rows, rmask, ra, keep, grad_scale, D, sgn, son, ssn, ssd,
                  BLOCK_M, BLOCK_D)

