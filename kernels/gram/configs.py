"""GPU launch configurations of the gram kernels, their autotuning, and where the kernels run.

Layer 2 of the gram op (with :mod:`crossscale_kernels.gram.plan` and :mod:`crossscale_kernels.gram.launch`). Every entry of
:data:`GPU_CONFIGS` is compiled for sm_90a by ``python benchmarks/gram_build.py`` (no GPU needed), and
tests/kernels/test_gram_sm90.py holds each build to: no register spills, shared memory within the H100's
227 KiB, wgmma tensor-core instructions. The first entry of each list is the default; on CUDA the
others are timed once per shape class and the fastest kept (``KERNELS_GRAM_AUTOTUNE=0``: off).
"""
from __future__ import annotations

import os

import torch
import triton
from triton.runtime.interpreter import InterpretedFunction

from crossscale_kernels.gram.jit_rows import inv_norm_kernel

INTERPRET: bool = isinstance(inv_norm_kernel, InterpretedFunction)
"""The kernels run in Triton's CPU interpreter: ``TRITON_INTERPRET=1`` was set when ``crossscale_kernels`` was first
imported (``triton.jit`` decides once, when it decorates). Read here only; a plain constant, so
``torch.compile`` traces the launchers' branches on it freely."""

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


REG_CHUNKS = 4
"""Register accumulators (feature chunks of ``BLOCK_C``) of :func:`crossscale_kernels.gram.jit_nxn.gram_nxn_reg_kernel`."""

_TUNED: dict[tuple, dict] = {}


def pow2(n: int, lo: int, hi: int) -> int:
    """The power of two at or above ``n``, clamped to ``[lo, hi]`` (interpreter block sizes)."""
    return max(lo, min(hi, triton.next_power_of_2(max(int(n), 1))))


def dtype_class(dtype: torch.dtype) -> str:
    """Key of :data:`GPU_CONFIGS`: ``"fp32"`` or ``"16bit"``."""
    return "fp32" if dtype == torch.float32 else "16bit"


def fp32_precision(precision: str, dtype: torch.dtype) -> str:
    """``input_precision`` of the dots that take fp32 operands."""
    if precision != "auto":
        return precision
    return "tf32x3" if dtype == torch.float32 else "tf32"


def split_mode(dtype: torch.dtype, precision: str) -> bool:
    """16-bit inputs with an accurate ``precision``: ``E`` split in hi + lo halves."""
    return dtype != torch.float32 and precision in ("ieee", "tf32x3")


def split_launch(cfg: dict) -> tuple[dict, dict]:
    """``(constexprs, launch options)`` of a config dict."""
    opts = {k: cfg[k] for k in ("num_warps", "num_stages") if k in cfg}
    return {k: v for k, v in cfg.items() if k not in opts}, opts


def gpu_config(kind: str, dtype: torch.dtype, key: tuple, launch) -> dict:
    """Config for a CUDA launch: the default, or (autotuning on) the fastest candidate for ``key``.

    ``launch(cfg)`` runs the kernel once with ``cfg``; it must be idempotent (every output is overwritten).
    """
    cands = GPU_CONFIGS[(kind, dtype_class(dtype))]
    if len(cands) == 1 or os.environ.get("KERNELS_GRAM_AUTOTUNE", "1") == "0":
        return cands[0]
    full_key = (kind, dtype, *key)
    if full_key not in _TUNED:
        from triton.testing import do_bench

        times = [do_bench(lambda c=c: launch(c), warmup=5, rep=20) for c in cands]
        _TUNED[full_key] = cands[min(range(len(cands)), key=times.__getitem__)]
    return _TUNED[full_key]
