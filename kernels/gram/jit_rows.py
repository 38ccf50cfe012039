"""Row-wise Triton kernels shared by both forms: inverse row norms and the normalisation's projection.

Layer 1 of the gram op (``@triton.jit`` only, no launch logic); see docs/KERNELS.md.
"""
import triton
import triton.language as tl


@triton.jit
def inv_norm_kernel(X, R, N, D, sxb, sxn, sxd, EPS_: tl.constexpr, BLOCK_N: tl.constexpr,
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
def project_rows(G, OUT, X, rows, rmask, r, keep, scale, D, sgn, son, sxn, sxd,
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
