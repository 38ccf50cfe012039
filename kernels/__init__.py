"""Gram-loss operators. Imports torch and triton only, never ``crossscale_kit``.

``gram_loss`` is the one functional entry point: fused Triton kernels on CUDA (N x N and d x d forms,
layered in :mod:`crossscale_kernels.gram`), the pure-torch forms on CPU, the references of :mod:`crossscale_kernels.reference`
as the oracle. Triton is optional (the ``[gpu]`` extra): without it :data:`HAS_TRITON` is False and every call
runs the torch forms. Existing callers that pass only ``student, teacher, img_level, remove_neg, reduction`` keep
working; ``backend``, ``form`` and ``precision`` are optional keywords. How it works, how accurate each
mode is and what it costs: docs/KERNELS.md.
"""
from __future__ import annotations

from crossscale_kernels.gram.functional import HAS_TRITON, NXN_MAX_RATIO, NXN_MAX_RATIO_TORCH, choose_form, gram_loss
from crossscale_kernels.gram.torch_forms import gram_loss_dxd_torch
from crossscale_kernels.reference import gram_loss_dxd, gram_loss_reference, gram_matrix

__all__ = [
    "HAS_TRITON",
    "NXN_MAX_RATIO",
    "NXN_MAX_RATIO_TORCH",
    "choose_form",
    "gram_loss",
    "gram_loss_dxd",
    "gram_loss_dxd_torch",
    "gram_loss_reference",
    "gram_matrix",
]
