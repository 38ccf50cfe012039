"""The fused gram-MSE op, in layers (bottom up; each module imports only the ones above it in this list).

1. ``jit_rows``, ``jit_nxn``, ``jit_dxd`` -- the ``@triton.jit`` kernels (inverse norms and the
   normalisation's projection; the N x N form; the d x d form).
2. ``configs`` (GPU launch configurations, autotuning, interpreter or GPU), ``plan`` (memory plan, TMA
   addressability), ``launch`` (the launchers: one group of images, per-image loss and gradient).
3. ``op`` -- ``torch.ops.crossscale_kernels.gram_fused``: custom op, fake implementation, autograd.
4. ``torch_forms`` -- the pure-torch d x d form (CPU path); the N x N one is :mod:`crossscale_kernels.reference`.
5. ``functional`` -- :func:`gram_loss` and :func:`choose_form`, re-exported by :mod:`crossscale_kernels`.

What is computed, the two forms, the form switch, the precision tables and the memory plan are written
up in docs/KERNELS.md.
"""
