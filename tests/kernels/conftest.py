"""Kernel tests: on a machine without CUDA the Triton code runs under ``TRITON_INTERPRET=1``.

The variable must be set before ``triton.jit`` decorates the kernels, i.e. before ``crossscale_kernels`` is first
imported; the root ``tests/conftest.py`` sets it, and this file sets it again for runs that point pytest
at this folder alone. If ``crossscale_kernels`` was already imported without the interpreter anyway, the Triton
tests skip rather than fail for a reason that has nothing to do with the kernels.
"""
from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

from crossscale_kernels import HAS_TRITON  # noqa: E402  (after the environment is set)

if HAS_TRITON:
    from crossscale_kernels.gram.configs import INTERPRET
else:  # a CPU install without the [gpu]/[test] extra: the torch forms only
    INTERPRET = False

ON_CUDA = torch.cuda.is_available()
DEVICE = "cuda" if ON_CUDA else "cpu"


def triton_runs() -> bool:
    """Triton kernels can run here: a GPU, or the interpreter was active when the kernels were made."""
    return HAS_TRITON and (ON_CUDA or INTERPRET)


needs_triton = pytest.mark.skipif(
    not triton_runs(),
    reason="triton is not installed (pip install -e '.[test]' or '.[gpu]')" if not HAS_TRITON else
    "kernels was imported before TRITON_INTERPRET=1 was set; run tests/kernels alone",
)

needs_triton_installed = pytest.mark.skipif(
    not HAS_TRITON, reason="triton is not installed (pip install -e '.[test]' or '.[gpu]')"
)
"""For tests of the Triton layers' plain-Python parts (memory plan, op registration): they import triton."""

# Triton dtypes by where we run: the interpreter cannot run bf16 tl.dot.
TRITON_DTYPES = [torch.float32, torch.float16] + ([torch.bfloat16] if ON_CUDA else [])
TORCH_DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]

# dtype -> (relative loss tolerance, relative gradient tolerance) against float64 on the same inputs,
# at a gram mismatch rho of about 0.3. The gradient is returned in the input dtype, so its own
# rounding (2^-11 fp16, 2^-8 bf16 per element) dominates the 16-bit rows.
TOL = {
    torch.float64: (1e-10, 1e-10),
    torch.float32: (2e-5, 2e-4),
    torch.float16: (2e-4, 2e-3),
    torch.bfloat16: (2e-3, 1.5e-2),
}

